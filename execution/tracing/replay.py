"""Re-execution for tracing: a committed block's transactions, or a call, under a tracer.

A block is replayed with the sequential executor's own steps (block pre-processing, then
`execution.sequential.apply_transactions` for the transactions before the traced ones)
on the parent block's state, whatever executor committed it: sequential, Block-STM and
BAL must all give the same results, so the trace is the same on every node. Only the
traced transactions run with the traced computation class (set on the state object for
their duration); system calls and the transactions before them run as the block ran them,
under a no-op tracer that still enforces the caps. Every write lands in an `OverlayDB`
that is thrown away.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from eth.abc import ComputationAPI, SignedTransactionAPI, StateAPI
from eth_utils import ValidationError

from execution.call import CallError, CallRequest, _build_state, _spoof
from execution.executor import BlockEnv, InvalidBlockError, StateView
from execution.overlay import OverlayDB
from execution.rules import (
    block_preprocessing,
    check_transaction,
    make_execution_context,
    readable_error,
)
from execution.sequential import apply_transactions
from execution.state_db import batched_state_class
from execution.tracing.hooks import Tracer, traced_computation_class

# Makes the tracer of one transaction, given the state just before it.
MakeTracer = Callable[[StateAPI, SignedTransactionAPI], Tracer]


@dataclass(frozen=True)
class TraceCaps:
    """What one trace request may cost: wall-clock seconds and executed opcodes, summed
    over every transaction it re-executes (those before the traced one included)."""

    seconds: float
    steps: int


@dataclass
class TracedRun:
    """One traced transaction (or call): its tracer and what the receipt would say."""

    tracer: Tracer
    computation: ComputationAPI
    gas_used: int  # as the receipt says (after refunds)
    gas_limit: int


class ReplayError(Exception):
    """The block cannot be replayed (a transaction that is invalid on its parent state:
    should never happen for a committed block)."""


def _arm(tracer: Tracer, caps: TraceCaps, started: float, steps: list[int]) -> None:
    tracer.deadline = started + caps.seconds
    tracer.steps_left = steps[0]


def _run_traced(
    state: StateAPI, tx: SignedTransactionAPI, tracer: Tracer, env: BlockEnv,
    cumulative_gas: int, budget: list[int],
) -> tuple[ComputationAPI, int]:
    """Apply `tx` with `tracer` in py-evm's computation; (computation, cumulative gas)."""
    base_class = type(state).computation_class
    state.computation_class = traced_computation_class(base_class, tracer)
    try:
        state.lock_changes()
        computation = state.apply_transaction(tx)
    finally:
        del state.computation_class  # back to the class attribute
        budget[0] = tracer.steps_left
    # What the receipt's gas is made of (make_receipt adds it to the cumulative gas; a
    # call's spoofed transaction cannot make a receipt).
    gas_used = env.vm_class.finalize_gas_used(tx, computation)
    return computation, cumulative_gas + gas_used


def replay_block(
    env: BlockEnv,
    parent: StateView,
    transactions: Sequence[SignedTransactionAPI],
    make_tracer: MakeTracer,
    caps: TraceCaps,
    only_index: Optional[int] = None,
) -> list[TracedRun]:
    """Trace every transaction of the block (or only `only_index`, running the ones before
    it untraced). `make_tracer(state, tx)` is given the state just before each one."""
    started = time.monotonic()
    budget = [caps.steps]
    state_class = batched_state_class(env.vm_class.get_state_class())
    state = state_class(OverlayDB(parent.nodes), make_execution_context(env), parent.state_root)
    block_preprocessing(state, env)
    first = 0 if only_index is None else only_index
    last = len(transactions) - 1 if only_index is None else only_index
    gas_used = 0
    if first > 0:
        capped = Tracer()
        _arm(capped, caps, started, budget)
        state.computation_class = traced_computation_class(
            type(state).computation_class, capped
        )
        try:
            gas_used, _ = apply_transactions(state, env, transactions[:first], [])
        except InvalidBlockError as exc:
            raise ReplayError(f"cannot replay the block's transactions: {exc}") from exc
        finally:
            del state.computation_class
        budget[0] = capped.steps_left
    runs = []
    for index in range(first, last + 1):
        tx = transactions[index]
        reason = check_transaction(state, env, tx, gas_used)
        if reason is not None:
            raise ReplayError(f"transaction {index} does not apply on replay: {reason}")
        tracer = make_tracer(state, tx)
        _arm(tracer, caps, started, budget)
        try:
            computation, cumulative = _run_traced(state, tx, tracer, env, gas_used, budget)
        except ValidationError as exc:
            raise ReplayError(readable_error(exc)) from exc
        tracer.finish(state)
        runs.append(TracedRun(tracer, computation, cumulative - gas_used, tx.gas))
        gas_used = cumulative
    return runs


def trace_call(
    env: BlockEnv, view: StateView, request: CallRequest, gas_cap: int,
    make_tracer: MakeTracer, caps: TraceCaps,
) -> TracedRun:
    """A call (eth_call's semantics: zero gas price and base fee) on top of `view`."""
    gas = min(request.gas if request.gas is not None else gas_cap, gas_cap)
    state = _build_state(env, view)
    spoofed = _spoof(env, state, request, gas)
    tracer = make_tracer(state, spoofed)
    _arm(tracer, caps, time.monotonic(), [caps.steps])
    budget = [caps.steps]
    try:
        computation, gas_used = _run_traced(state, spoofed, tracer, env, 0, budget)
    except ValidationError as exc:
        raise CallError(str(exc)) from None
    tracer.finish(state)
    return TracedRun(tracer, computation, gas_used, gas)
