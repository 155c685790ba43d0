"""The debug_trace* JSON-RPC methods: geth's tracers over re-executed blocks and calls.

debug_traceTransaction, debug_traceBlockByNumber / ByHash re-execute a committed block on
its parent's state (execution/tracing/replay.py), so the result is the same whichever
executor committed the block; debug_traceCall runs a call as eth_call does. Work runs
in a worker thread, one trace at a time (a trace is CPU-bound: two at once would only
take turns on the GIL and double the memory), within a time and step budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import trio
from eth.abc import BlockAPI, BlockHeaderAPI, SignedTransactionAPI, StateAPI

from execution.call import CallError
from execution.tracing.call_tracer import CallTracer
from execution.tracing.hooks import TraceAborted, Tracer
from execution.tracing.prestate_tracer import PrestateTracer
from execution.tracing.replay import (
    MakeTracer,
    ReplayError,
    TraceCaps,
    TracedRun,
    replay_block,
    trace_call,
)
from execution.tracing.struct_logger import StructLogger
from node.chain import Chain
from node.config import RpcSettings
from node.rpc import params
from node.rpc.errors import limit_exceeded, server_error
from node.rpc.eth_api import EthApi
from node.rpc.server import Methods
from node.rpc.trace_params import CALL_TRACER, PRESTATE_TRACER, TraceConfig, parse_trace_config

# The most opcodes one request may execute (every re-executed transaction counted), and
# the most struct log entries it may return when the client sets no `limit`.
MAX_TRACE_STEPS = 5_000_000
MAX_STRUCT_LOGS = 100_000
# The most stack items, memory words and storage entries all struct logs may hold
# together (about 70 bytes of JSON each): enableMemory over a large memory adds up fast.
MAX_CAPTURED_VALUES = 5_000_000
CONCURRENT_TRACES = 1


@dataclass
class DebugApi:
    chain: Chain
    eth: EthApi  # block resolution and call parameters, as eth_call parses them
    settings: RpcSettings
    limiter: trio.CapacityLimiter = field(
        default_factory=lambda: trio.CapacityLimiter(CONCURRENT_TRACES)
    )

    # ---- entry points -----------------------------------------------------------------

    async def trace_transaction(self, tx_hash: Any, config: Any = None) -> Any:
        raw_hash = params.hash32(tx_hash, "transactionHash")
        trace_config = parse_trace_config(config)
        location = self.chain.tx_location(raw_hash)
        if location is None:
            raise server_error("transaction not found")
        header = self.chain.header_by_hash(location.block_hash)
        assert header is not None  # tx_location answers only for visible blocks
        results = await self._trace_block(header, trace_config, location.index)
        return results[0]

    async def trace_block_by_number(self, block: Any, config: Any = None) -> list:
        ref = params.block_ref(block)
        trace_config = parse_trace_config(config)
        header = self.eth._header(ref)
        if header is None:
            raise server_error(f"block #{ref} not found")
        return await self._block_entries(header, trace_config)

    async def trace_block_by_hash(self, block_hash: Any, config: Any = None) -> list:
        raw_hash = params.hash32(block_hash, "blockHash")
        trace_config = parse_trace_config(config)
        header = self.chain.header_by_hash(raw_hash)
        if header is None:
            raise server_error(f"block 0x{raw_hash.hex()} not found")
        return await self._block_entries(header, trace_config)

    async def trace_call(self, call: Any, block: Any = None, config: Any = None) -> Any:
        request = self.eth._call_request(call)
        trace_config = parse_trace_config(config)
        header = self.eth._require_header(block)
        env, view = self.chain.env_of(header), self.chain.state_view(header)
        caps = TraceCaps(trace_config.timeout_s, MAX_TRACE_STEPS)

        def run() -> Any:
            traced = trace_call(
                env, view, request, self.settings.gas_cap, _tracer_factory(trace_config), caps
            )
            return _format(traced)

        try:
            return await trio.to_thread.run_sync(run, limiter=self.limiter)
        except CallError as exc:
            raise server_error(str(exc)) from None
        except TraceAborted as exc:
            raise server_error(str(exc)) from None

    # ---- blocks -------------------------------------------------------------------------

    async def _block_entries(self, header: BlockHeaderAPI, config: TraceConfig) -> list:
        block = self._block(header)
        results = await self._trace_block(header, config, None)
        return [
            {"txHash": "0x" + tx.hash.hex(), "result": result}
            for tx, result in zip(block.transactions, results)
        ]

    def _block(self, header: BlockHeaderAPI) -> BlockAPI:
        block = self.chain.block_by_hash(header.hash)
        if block is None:
            raise server_error(f"block 0x{header.hash.hex()} not found")
        return block

    async def _trace_block(
        self, header: BlockHeaderAPI, config: TraceConfig, only_index: Optional[int]
    ) -> list:
        if header.block_number == 0:
            raise server_error("genesis is not traceable")
        parent = self.chain.header_by_hash(header.parent_hash)
        if parent is None:
            raise server_error(f"parent 0x{header.parent_hash.hex()} not found")
        block = self._block(header)
        env = self.chain.env_of(header)
        view = self.chain.state_view(parent)
        caps = TraceCaps(config.timeout_s, MAX_TRACE_STEPS)
        transactions = tuple(block.transactions)

        def run() -> list:
            runs = replay_block(
                env, view, transactions, _tracer_factory(config), caps, only_index
            )
            return [_format(traced) for traced in runs]

        try:
            return await trio.to_thread.run_sync(run, limiter=self.limiter)
        except TraceAborted as exc:
            raise server_error(str(exc)) from None
        except ReplayError as exc:
            raise server_error(str(exc)) from None


def _tracer_factory(config: TraceConfig) -> MakeTracer:
    def make(state: StateAPI, tx: SignedTransactionAPI) -> Tracer:
        if config.tracer == CALL_TRACER:
            return CallTracer(config.call)
        if config.tracer == PRESTATE_TRACER:
            return PrestateTracer(config.prestate, state, tx)
        return StructLogger(config.struct, MAX_STRUCT_LOGS, MAX_CAPTURED_VALUES)

    return make


def _format(run: TracedRun) -> Any:
    tracer = run.tracer
    if isinstance(tracer, CallTracer):
        result = tracer.result()
        result["gas"] = hex(run.gas_limit)
        result["gasUsed"] = hex(run.gas_used)
        return result
    if isinstance(tracer, PrestateTracer):
        return tracer.result()
    assert isinstance(tracer, StructLogger)
    if tracer.over_cap and tracer.cap_is_the_nodes:
        raise limit_exceeded(
            f"trace has more than {MAX_STRUCT_LOGS} struct logs: set a smaller `limit`"
        )
    if tracer.over_size:
        raise limit_exceeded(
            f"trace captures more than {MAX_CAPTURED_VALUES} stack, memory and storage "
            "values: disable some (disableStack, disableStorage) or set a `limit`"
        )
    computation = run.computation
    return {
        "gas": run.gas_used,
        "failed": not computation.is_success,
        "returnValue": "0x" + bytes(computation.output).hex(),
        "structLogs": tracer.logs,
    }


def register_debug_api(methods: Methods, api: DebugApi) -> None:
    table: dict[str, Callable[..., Any]] = {
        "debug_traceTransaction": api.trace_transaction,
        "debug_traceCall": api.trace_call,
        "debug_traceBlockByNumber": api.trace_block_by_number,
        "debug_traceBlockByHash": api.trace_block_by_hash,
    }
    for name, handler in table.items():
        methods.register(name, handler)


