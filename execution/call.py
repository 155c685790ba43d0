"""Read-only message calls (eth_call) and gas estimation over a committed state.

Nothing here writes: every call runs over an `OverlayDB` whose buffer is thrown away.
As geth does for a call without a gas price, the block's base fee is taken as zero so a
caller with no ether can still call, and the gas price is zero.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from eth.abc import StateAPI
from eth.exceptions import Revert
from eth.vm.spoof import SpoofTransaction
from eth_utils import ValidationError

from execution.executor import BlockEnv, StateView
from execution.overlay import OverlayDB
from execution.rules import make_execution_context
from execution.state_db import batched_state_class

TRANSFER_GAS = 21_000


@dataclass(frozen=True)
class CallRequest:
    sender: bytes
    to: Optional[bytes]  # None: contract creation
    data: bytes = b""
    value: int = 0
    gas: Optional[int] = None  # None: the call gas cap


@dataclass(frozen=True)
class CallResult:
    success: bool
    output: bytes  # return data, or revert data when reverted
    gas_used: int
    reverted: bool  # REVERT opcode (output is the revert data)
    error: Optional[str]  # why it failed, in words (out of gas, invalid opcode, ...)


class CallError(Exception):
    """The call cannot even start (for example: value above the sender's balance)."""


def _build_state(env: BlockEnv, view: StateView) -> StateAPI:
    free_env = replace(env, base_fee_per_gas=0) if env.base_fee_per_gas is not None else env
    # The executors' state class: the same EVM rules (EIP-7610's collision) as blocks.
    state_class = batched_state_class(env.vm_class.get_state_class())
    return state_class(OverlayDB(view.nodes), make_execution_context(free_env), view.state_root)


def _spoof(env: BlockEnv, state: StateAPI, request: CallRequest, gas: int) -> SpoofTransaction:
    unsigned = env.vm_class.create_unsigned_transaction(
        nonce=state.get_nonce(request.sender),
        gas_price=0,
        gas=gas,
        to=request.to if request.to is not None else b"",
        value=request.value,
        data=request.data,
    )
    return SpoofTransaction(unsigned, from_=request.sender)


def _run(env: BlockEnv, state: StateAPI, request: CallRequest, gas: int) -> CallResult:
    snapshot = state.snapshot()
    try:
        try:
            computation = state.apply_transaction(_spoof(env, state, request, gas))
        except ValidationError as exc:
            raise CallError(str(exc)) from None
        gas_used = gas - computation.get_gas_remaining()
        if computation.is_success:
            return CallResult(True, computation.output, gas_used, False, None)
        error = computation.error
        if isinstance(error, Revert):
            return CallResult(False, computation.output, gas_used, True, "execution reverted")
        return CallResult(False, b"", gas_used, False, type(error).__name__ + _detail(error))
    finally:
        state.revert(snapshot)


def _detail(error: Exception) -> str:
    text = str(error)
    return f": {text}" if text else ""


def call(env: BlockEnv, view: StateView, request: CallRequest, gas_cap: int) -> CallResult:
    """Run a message call on top of `view` and report what it returned; state is untouched."""
    gas = min(request.gas if request.gas is not None else gas_cap, gas_cap)
    state = _build_state(env, view)
    return _run(env, state, request, gas)


def estimate_gas(env: BlockEnv, view: StateView, request: CallRequest, gas_cap: int) -> int:
    """The least gas the call succeeds with, found by binary search as geth does.

    Raises `CallError` when it cannot start, and returns the failing `CallResult` inside
    `EstimateFailed` when it fails even with the cap (so the caller can show revert data).
    """
    upper = min(request.gas if request.gas is not None else gas_cap, gas_cap)
    state = _build_state(env, view)
    at_cap = _run(env, state, request, upper)
    if not at_cap.success:
        raise EstimateFailed(at_cap)
    lower = TRANSFER_GAS - 1 if request.to is not None else TRANSFER_GAS
    # The gas actually used is a tight lower bound for success in most calls: try it first.
    lower = max(lower, at_cap.gas_used - 1)
    if _run(env, state, request, at_cap.gas_used).success:
        return at_cap.gas_used
    while upper - lower > 1:
        middle = (upper + lower) // 2
        if _run(env, state, request, middle).success:
            upper = middle
        else:
            lower = middle
    return upper


class EstimateFailed(Exception):
    def __init__(self, result: CallResult) -> None:
        super().__init__(result.error or "execution failed")
        self.result = result
