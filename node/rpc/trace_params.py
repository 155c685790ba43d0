"""Strict decoding of geth's TraceConfig (debug_trace*'s last parameter).

Where geth would fail to unmarshal a field, or to find the tracer, the client gets
-32602 with geth's words ("tracer not found", "time: invalid duration ..."). Fields
geth does not know are ignored, as geth's JSON decoding ignores them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from execution.tracing.call_tracer import CallTracerConfig
from execution.tracing.prestate_tracer import PrestateTracerConfig
from execution.tracing.struct_logger import StructLogConfig
from node.rpc.errors import invalid_params

CALL_TRACER = "callTracer"
PRESTATE_TRACER = "prestateTracer"
STRUCT_LOGGER = ""  # no tracer named: the struct logger
DEFAULT_TIMEOUT_S = 5.0  # geth's default trace timeout
MAX_TIMEOUT_S = 30.0  # a client may ask for more; the node gives at most this
# Go's time.ParseDuration units, in seconds.
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


@dataclass(frozen=True)
class TraceConfig:
    tracer: str = STRUCT_LOGGER
    struct: StructLogConfig = field(default_factory=StructLogConfig)
    call: CallTracerConfig = field(default_factory=CallTracerConfig)
    prestate: PrestateTracerConfig = field(default_factory=PrestateTracerConfig)
    timeout_s: float = DEFAULT_TIMEOUT_S


def _go_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _flag(fields: dict, name: str, where: str) -> bool:
    value = fields.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid_params(
            f"json: cannot unmarshal {_go_kind(value)} into Go struct field "
            f"{where}.{name} of type bool"
        )
    return value


def parse_duration(text: Any) -> float:
    """Go's time.ParseDuration ("5s", "300ms", "1m30s"), in seconds."""
    if not isinstance(text, str):
        raise invalid_params(
            f"json: cannot unmarshal {_go_kind(text)} into Go struct field "
            "TraceConfig.timeout of type string"
        )
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    position, total = 0, 0.0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None:
            raise invalid_params(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if not body:
        raise invalid_params(f'time: invalid duration "{text}"')
    return -total if text.startswith("-") else total


def _limit(fields: dict) -> int:
    value = fields.get("limit", 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_params(
            f"json: cannot unmarshal {_go_kind(value)} into Go struct field "
            "TraceConfig.limit of type int"
        )
    if value < 0:
        raise invalid_params("limit: must not be negative")
    return value


def parse_trace_config(raw: Any) -> TraceConfig:
    if raw is None:
        return TraceConfig()
    if not isinstance(raw, dict):
        raise invalid_params(
            f"json: cannot unmarshal {_go_kind(raw)} into Go value of type tracers.TraceConfig"
        )
    tracer = raw.get("tracer") or STRUCT_LOGGER
    if not isinstance(tracer, str):
        raise invalid_params(
            f"json: cannot unmarshal {_go_kind(tracer)} into Go struct field "
            "TraceConfig.tracer of type string"
        )
    if tracer not in (STRUCT_LOGGER, CALL_TRACER, PRESTATE_TRACER):
        raise invalid_params("tracer not found")
    for name in ("stateOverrides", "blockOverrides"):
        if raw.get(name) is not None:
            raise invalid_params(f"{name}: not supported by this node")
    tracer_config = raw.get("tracerConfig") or {}
    if not isinstance(tracer_config, dict):
        raise invalid_params(
            f"json: cannot unmarshal {_go_kind(tracer_config)} into Go value of type "
            f"native.{tracer or 'logger'}Config"
        )
    timeout = DEFAULT_TIMEOUT_S
    if raw.get("timeout") is not None:
        timeout = min(parse_duration(raw["timeout"]), MAX_TIMEOUT_S)
        if timeout <= 0:
            raise invalid_params(f'timeout: must be positive, got "{raw["timeout"]}"')
    return TraceConfig(
        tracer=tracer,
        struct=StructLogConfig(
            disable_stack=_flag(raw, "disableStack", "TraceConfig"),
            disable_storage=_flag(raw, "disableStorage", "TraceConfig"),
            enable_memory=_flag(raw, "enableMemory", "TraceConfig"),
            enable_return_data=_flag(raw, "enableReturnData", "TraceConfig"),
            limit=_limit(raw),
        ),
        call=CallTracerConfig(
            only_top_call=_flag(tracer_config, "onlyTopCall", "callTracerConfig"),
            with_log=_flag(tracer_config, "withLog", "callTracerConfig"),
        ) if tracer == CALL_TRACER else CallTracerConfig(),
        prestate=PrestateTracerConfig(
            diff_mode=_flag(tracer_config, "diffMode", "prestateTracerConfig"),
            disable_code=_flag(tracer_config, "disableCode", "prestateTracerConfig"),
            disable_storage=_flag(tracer_config, "disableStorage", "prestateTracerConfig"),
        ) if tracer == PRESTATE_TRACER else PrestateTracerConfig(),
        timeout_s=timeout,
    )
