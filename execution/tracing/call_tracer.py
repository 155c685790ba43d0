"""geth's callTracer: the tree of calls a transaction made.

A frame is `{type, from, to, value, gas, gasUsed, input, output, error, revertReason,
calls, logs}` with geth's hex quantities; `error`, `revertReason`, `calls`, `logs` and
`output` appear only when there is something to say, as in geth. The top frame's `gas`
is the transaction's gas limit and its `gasUsed` the receipt's (the replay sets them);
a SELFDESTRUCT is a child frame sending the contract's balance to the beneficiary.
`onlyTopCall` keeps only the top frame; `withLog` adds each frame's logs with their
`position` (how many child calls came before the log). Logs of frames that failed, or
whose caller failed, are dropped, as geth does: they never happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from eth.abc import ComputationAPI, MessageAPI
from eth.exceptions import Revert
from eth_abi import decode as abi_decode

from execution.tracing.errors import geth_error
from execution.tracing.hooks import Tracer

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
WORD = 32
CODE_CALLS = ("DELEGATECALL", "CALLCODE")  # run another account's code on their own


@dataclass(frozen=True)
class CallTracerConfig:
    only_top_call: bool = False
    with_log: bool = False


def decode_revert_reason(output: bytes) -> Optional[str]:
    """The string of a Solidity/Vyper `Error(string)` revert, None for anything else."""
    if output[:4] != ERROR_STRING_SELECTOR:
        return None
    try:
        (reason,) = abi_decode(["string"], output[4:])
    except Exception:
        return None
    return str(reason)


def _hex(data: bytes) -> str:
    return "0x" + bytes(data).hex()


def _address(value: bytes) -> str:
    return "0x" + bytes(value).hex()


class CallTracer(Tracer):
    def __init__(self, config: CallTracerConfig) -> None:
        self.config = config
        self.root: Optional[dict[str, Any]] = None
        self._stack: list[dict[str, Any]] = []

    def _in_recorded_frame(self) -> bool:
        """onlyTopCall: what happens below the top frame is not recorded."""
        return not self.config.only_top_call or len(self._stack) == 1

    def enter(self, message: MessageAPI, kind: str, parent: Optional[ComputationAPI]) -> None:
        # As geth: `from` is the account whose code made the call (for DELEGATECALL and
        # CALLCODE too) and `to` the account whose code runs; STATICCALL has no value.
        sender = parent.msg.storage_address if parent is not None else message.sender
        target = message.code_address if kind in CODE_CALLS else message.storage_address
        frame: dict[str, Any] = {
            "from": _address(sender),
            "gas": hex(message.gas),
            "gasUsed": "0x0",
            "to": _address(target),
            # A creation's input is its init code (py-evm keeps it as the message's code).
            "input": _hex(message.code if message.is_create else message.data),
            "type": kind,
        }
        if kind != "STATICCALL":
            frame["value"] = hex(message.value)
        if self.root is None:
            self.root = frame
        elif not self.config.only_top_call:
            self._stack[-1].setdefault("calls", []).append(frame)
        self._stack.append(frame)

    def exit(self, computation: ComputationAPI) -> None:
        frame = self._stack.pop()
        gas = int(frame["gas"], 16)
        frame["gasUsed"] = hex(gas - computation.get_gas_remaining())
        if computation.is_success:
            if computation.output:
                frame["output"] = _hex(computation.output)
            return
        error = computation.error
        frame["error"] = geth_error(error)
        if isinstance(error, Revert):
            if computation.output:
                frame["output"] = _hex(computation.output)
            reason = decode_revert_reason(computation.output)
            if reason is not None:
                frame["revertReason"] = reason
        if computation.msg.is_create:
            frame.pop("to", None)  # geth leaves `to` out of a failed creation
        _clear_logs(frame)

    def abandon(self, error: BaseException) -> None:
        frame = self._stack.pop()
        frame["gasUsed"] = frame["gas"]
        frame["error"] = geth_error(error)
        _clear_logs(frame)

    def log(self, computation: ComputationAPI, address: bytes, topics: tuple, data: bytes) -> None:
        if not self.config.with_log or not self._stack or not self._in_recorded_frame():
            return
        frame = self._stack[-1]
        frame.setdefault("logs", []).append({
            "address": _address(address),
            "topics": ["0x" + topic.to_bytes(WORD, "big").hex() for topic in topics],
            "data": _hex(data),
            "position": hex(len(frame.get("calls", ()))),
        })

    def self_destruct(self, computation: ComputationAPI, beneficiary: bytes, value: int) -> None:
        if not self._stack or self.config.only_top_call:
            return
        self._stack[-1].setdefault("calls", []).append({
            "from": _address(computation.msg.storage_address),
            "gas": "0x0",
            "gasUsed": "0x0",
            "to": _address(beneficiary),
            "input": "0x",
            "value": hex(value),
            "type": "SELFDESTRUCT",
        })

    def result(self) -> dict[str, Any]:
        assert self.root is not None, "the transaction ran no frame"
        return self.root


def _clear_logs(frame: dict[str, Any]) -> None:
    frame.pop("logs", None)
    for child in frame.get("calls", ()):
        _clear_logs(child)
