"""Hooks into py-evm's computation for tracers.

py-evm has no tracing API, so a traced run uses a subclass of the fork's computation
class, made for that one run, whose `apply_message` / `apply_create_message` report a
frame's start and end and whose `apply_computation` is py-evm 0.12.1b1's opcode loop
with a callback around every opcode. The state class is subclassed the same way so the
transaction executor builds traced computations. Nothing else of py-evm changes, so the
traced run computes exactly what the block's executor computed.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Type

from eth.abc import ComputationAPI, MessageAPI, StateAPI, TransactionContextAPI
from eth.exceptions import Halt
from eth.vm.computation import NO_RESULT
from eth.vm.logic.invalid import InvalidOpcode

SELFDESTRUCT = 0xFF
ADDRESS_BYTES = 20
ADDRESS_MODULUS = 2 ** (8 * ADDRESS_BYTES)


class TraceAborted(Exception):
    """The trace went over a cap (time or steps). Not a py-evm VMError, so the EVM does
    not swallow it: it ends the whole run."""


class Tracer:
    """Callbacks a traced run makes; every one is optional (a no-op here)."""

    # Set by `traced_state_class`: the wall-clock deadline and the step budget.
    deadline: float = float("inf")
    steps_left: int = -1  # -1: no cap

    def enter(self, message: MessageAPI, kind: str, parent: Optional[ComputationAPI]) -> None:
        """A frame starts (kind: CALL, STATICCALL, DELEGATECALL, CALLCODE, CREATE, CREATE2)."""

    def exit(self, computation: ComputationAPI) -> None:
        """The frame started by the matching `enter` is done."""

    def abandon(self, error: BaseException) -> None:
        """The frame started by the last `enter` raised instead of returning (py-evm's
        depth and balance checks in apply_message; a cap): it ends with `error`."""

    def step(self, computation: ComputationAPI, opcode: int, pc: int) -> Any:
        """Before an opcode runs; what it returns is handed to `step_end`."""
        return None

    def step_end(self, computation: ComputationAPI, token: Any, error: Optional[Exception]) -> None:
        """After the opcode (error: the VMError it raised, if any)."""

    def child_started(self, parent: ComputationAPI, message: MessageAPI) -> None:
        """A CALL/CREATE opcode of `parent` is about to run `message` (parent's gas paid)."""

    def log(self, computation: ComputationAPI, address: bytes, topics: tuple, data: bytes) -> None:
        """LOGn ran in `computation`."""

    def self_destruct(self, computation: ComputationAPI, beneficiary: bytes, value: int) -> None:
        """SELFDESTRUCT ran in `computation`, sending `value` to `beneficiary`."""

    def wants_steps(self) -> bool:
        return False

    def finish(self, state: StateAPI) -> None:
        """The transaction is done and `state` is right after it (the next one has not
        started: a block replay goes on with the same state object)."""


_OPCODE_KINDS = {0xF1: "CALL", 0xF2: "CALLCODE", 0xF4: "DELEGATECALL", 0xFA: "STATICCALL",
                 0xF0: "CREATE", 0xF5: "CREATE2"}


def _check_caps(tracer: Tracer) -> None:
    if time.monotonic() > tracer.deadline:
        raise TraceAborted("execution timeout")
    if tracer.steps_left == 0:
        raise TraceAborted("trace step cap reached")
    if tracer.steps_left > 0:
        tracer.steps_left -= 1


def _frame_kind(message: MessageAPI, parent: Optional[ComputationAPI]) -> str:
    opcode = getattr(parent, "_trace_opcode", None) if parent is not None else None
    if opcode in _OPCODE_KINDS:
        return _OPCODE_KINDS[opcode]
    return "CREATE" if message.is_create else "CALL"


def traced_computation_class(base: Type[ComputationAPI], tracer: Tracer) -> Type[ComputationAPI]:
    """`base` (a fork's computation class) reporting to `tracer`."""

    class TracedComputation(base):
        _trace_opcode: Optional[int] = None  # the opcode running (names a child frame)
        _trace_parent: Optional[ComputationAPI] = None  # the frame that called this one

        @classmethod
        def apply_message(
            cls, state: StateAPI, message: MessageAPI,
            transaction_context: TransactionContextAPI,
            parent_computation: Optional[ComputationAPI] = None,
        ) -> ComputationAPI:
            if message.is_create:  # reported by apply_create_message, which calls this
                return super().apply_message(
                    state, message, transaction_context, parent_computation=parent_computation
                )
            tracer.enter(message, _frame_kind(message, parent_computation), parent_computation)
            try:
                computation = super().apply_message(
                    state, message, transaction_context, parent_computation=parent_computation
                )
            except BaseException as exc:
                tracer.abandon(exc)
                raise
            tracer.exit(computation)
            return computation

        @classmethod
        def apply_create_message(
            cls, state: StateAPI, message: MessageAPI,
            transaction_context: TransactionContextAPI,
            parent_computation: Optional[ComputationAPI] = None,
        ) -> ComputationAPI:
            tracer.enter(message, _frame_kind(message, parent_computation), parent_computation)
            try:
                computation = super().apply_create_message(
                    state, message, transaction_context, parent_computation=parent_computation
                )
            except BaseException as exc:
                tracer.abandon(exc)
                raise
            tracer.exit(computation)
            return computation

        def apply_child_computation(self, child_msg: MessageAPI) -> ComputationAPI:
            tracer.child_started(self, child_msg)
            return super().apply_child_computation(child_msg)

        def add_log_entry(self, account: Any, topics: Any, data: bytes) -> None:
            super().add_log_entry(account, topics, data)
            tracer.log(self, account, tuple(topics), data)

        @classmethod
        def apply_computation(
            cls, state: StateAPI, message: MessageAPI,
            transaction_context: TransactionContextAPI,
            parent_computation: Optional[ComputationAPI] = None,
        ) -> ComputationAPI:
            # py-evm 0.12.1b1's BaseComputation.apply_computation, with the tracer's
            # callbacks around each opcode (its debug logging left out).
            with cls(state, message, transaction_context) as computation:
                computation._trace_parent = parent_computation
                if computation.is_origin_computation:
                    computation.contracts_created = []
                    if message.is_create:
                        cls.consume_initcode_gas_cost(computation)
                if parent_computation is not None:
                    computation.contracts_created = parent_computation.contracts_created
                if message.is_create:
                    computation.contracts_created.append(message.storage_address)
                precompile = computation.precompiles.get(message.code_address, NO_RESULT)
                if precompile is not NO_RESULT:
                    if not message.is_delegation:
                        precompile(computation)
                    return computation

                stepping = tracer.wants_steps()
                opcode_lookup = computation.opcodes
                code = computation.code
                for opcode in code:
                    _check_caps(tracer)
                    try:
                        opcode_fn = opcode_lookup[opcode]
                    except KeyError:
                        opcode_fn = InvalidOpcode(opcode)
                    computation._trace_opcode = opcode
                    destruct = (
                        _self_destruct_target(computation) if opcode == SELFDESTRUCT else None
                    )
                    token = (
                        tracer.step(computation, opcode, code.program_counter - 1)
                        if stepping else None
                    )
                    try:
                        opcode_fn(computation=computation)
                    except Halt:
                        if stepping:
                            tracer.step_end(computation, token, None)
                        if destruct is not None:
                            tracer.self_destruct(computation, *destruct)
                        break
                    except Exception as exc:
                        if stepping:
                            tracer.step_end(computation, token, exc)
                        raise
                    if stepping:
                        tracer.step_end(computation, token, None)
            return computation

    return TracedComputation


def stack_ints(computation: ComputationAPI) -> list[int]:
    """The EVM stack, bottom first (py-evm keeps ints and bytes side by side)."""
    values = computation._stack.values
    return [v if isinstance(v, int) else int.from_bytes(v, "big") for v in values]


def _self_destruct_target(computation: ComputationAPI) -> Optional[tuple[bytes, int]]:
    """(beneficiary, value sent) of the SELFDESTRUCT about to run; None on underflow."""
    values = computation._stack.values
    if not values:
        return None
    top = values[-1]
    beneficiary_int = top if isinstance(top, int) else int.from_bytes(top, "big")
    beneficiary = (beneficiary_int % ADDRESS_MODULUS).to_bytes(ADDRESS_BYTES, "big")
    return beneficiary, computation.state.get_balance(computation.msg.storage_address)


def traced_state_class(base: Type[StateAPI], tracer: Tracer) -> Type[StateAPI]:
    """`base` (an executor's state class) whose transactions run traced computations."""
    computation_class = traced_computation_class(base.computation_class, tracer)
    return type("Traced" + base.__name__, (base,), {"computation_class": computation_class})
