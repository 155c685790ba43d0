"""eth_createAccessList: the EIP-2930 access list of a call, found as geth finds it.

geth's `AccessListTracer` watches opcodes, not py-evm's warm sets (which a reverted frame
rolls back): SLOAD and SSTORE add (the executing contract, the slot); BALANCE,
EXTCODESIZE, EXTCODECOPY, EXTCODEHASH and SELFDESTRUCT add the address on top of the
stack; CALL, CALLCODE, DELEGATECALL and STATICCALL add their target. The sender, the
recipient (or the address a creation deploys to) and the precompiles are never listed as
addresses, since they are warm anyway; the recipient's slots are. A list changes the gas
the call has, so the call runs again with the list it produced until a run touches
nothing new; the gas used reported is that of the last run, which carries the list.

Here the tracer wraps py-evm's opcode functions in a subclass of the fork's computation.
Every run is over an `OverlayDB` whose writes are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from eth._utils.address import generate_contract_address
from eth.abc import ComputationAPI, StateAPI
from eth.exceptions import Revert
from eth.vm.spoof import SpoofTransaction
from eth_utils import ValidationError

from execution.call import CallError, CallRequest
from execution.executor import BlockEnv, StateView
from execution.overlay import OverlayDB
from execution.rules import make_execution_context
from execution.state_db import batched_state_class

SLOAD, SSTORE = 0x54, 0x55
ADDRESS_ON_TOP_OPS = (0x31, 0x3B, 0x3C, 0x3F, 0xFF)  # BALANCE EXTCODESIZE EXTCODECOPY EXTCODEHASH SELFDESTRUCT
CALL_OPS = (0xF1, 0xF2, 0xF4, 0xFA)  # CALL CALLCODE DELEGATECALL STATICCALL
CALL_STACK_ITEMS = 5  # a call's target is the second item; geth needs at least this many
ADDRESS_BYTES = 20
#: Each run adds at least one entry or ends the search; this bounds a pathological call.
MAX_RUNS = 256

AccessList = dict[bytes, dict[int, None]]  # address -> slots, both in first-touched order


@dataclass(frozen=True)
class AccessListResult:
    access_list: list[tuple[bytes, list[int]]]
    gas_used: int
    error: Optional[str]  # why the last run failed ("execution reverted", ...), None: success
    output: bytes


class AccessTracer:
    """What one run touched, on top of the list it started from."""

    def __init__(self, start: AccessList, excluded: set[bytes]) -> None:
        self.list: AccessList = {address: dict(slots) for address, slots in start.items()}
        self.excluded = excluded

    def add_address(self, address: bytes) -> None:
        if address not in self.excluded:
            self.list.setdefault(address, {})

    def add_slot(self, address: bytes, slot: int) -> None:
        self.list.setdefault(address, {})[slot] = None


def _stack_int(computation: Any, depth: int) -> int:
    value = computation._stack.values[-depth]  # py-evm keeps ints or bytes on its stack
    return value if isinstance(value, int) else int.from_bytes(value, "big")


def _stack_address(computation: Any, depth: int) -> bytes:
    return (_stack_int(computation, depth) % 2 ** (8 * ADDRESS_BYTES)).to_bytes(ADDRESS_BYTES, "big")


def _traced(opcode: int, opcode_fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(computation: Any) -> Any:
        tracer = computation.state.access_tracer
        depth = len(computation._stack.values)
        if opcode in (SLOAD, SSTORE) and depth >= 1:
            tracer.add_slot(computation.msg.storage_address, _stack_int(computation, 1))
        elif opcode in ADDRESS_ON_TOP_OPS and depth >= 1:
            tracer.add_address(_stack_address(computation, 1))
        elif opcode in CALL_OPS and depth >= CALL_STACK_ITEMS:
            tracer.add_address(_stack_address(computation, 2))
        return opcode_fn(computation=computation)

    return run


_TRACED_CLASSES: dict[type, type[StateAPI]] = {}


def traced_state_class(state_class: type[StateAPI]) -> type[StateAPI]:
    """`state_class` whose computations report accesses to `state.access_tracer`
    (made once per class)."""
    known = _TRACED_CLASSES.get(state_class)
    if known is not None:
        return known
    computation_class = state_class.computation_class
    opcodes = dict(computation_class.opcodes)
    for opcode in (SLOAD, SSTORE, *ADDRESS_ON_TOP_OPS, *CALL_OPS):
        if opcode in opcodes:
            opcodes[opcode] = _traced(opcode, opcodes[opcode])
    traced_computation = type(
        f"AccessTraced{computation_class.__name__}", (computation_class,), {"opcodes": opcodes}
    )
    traced = type(
        f"AccessTraced{state_class.__name__}", (state_class,),
        {"computation_class": traced_computation},
    )
    return _TRACED_CLASSES.setdefault(state_class, traced)


def _transaction(env: BlockEnv, state: StateAPI, request: CallRequest, gas: int,
                 access_list: AccessList) -> SpoofTransaction:
    """An EIP-2930 transaction carrying `access_list`, gas price zero (as eth_call)."""
    unsigned = env.vm_class.get_transaction_builder().new_unsigned_access_list_transaction(
        chain_id=env.chain_id,
        nonce=state.get_nonce(request.sender),
        gas_price=0,
        gas=gas,
        to=request.to if request.to is not None else b"",
        value=request.value,
        data=request.data,
        access_list=[(address, list(slots)) for address, slots in access_list.items()],
    )
    return SpoofTransaction(unsigned, from_=request.sender)


def _failure(computation: ComputationAPI) -> Optional[str]:
    if computation.is_success:
        return None
    if isinstance(computation.error, Revert):
        return "execution reverted"
    text = str(computation.error)
    return type(computation.error).__name__ + (f": {text}" if text else "")


def create_access_list(env: BlockEnv, view: StateView, request: CallRequest, gas_cap: int,
                       given: Optional[AccessList] = None) -> AccessListResult:
    """The access list of `request` over `view`, starting from `given` (the caller's own
    list, kept as geth keeps it); raises `CallError` when the call cannot start."""
    gas = min(request.gas if request.gas is not None else gas_cap, gas_cap)
    free_env = replace(env, base_fee_per_gas=0) if env.base_fee_per_gas is not None else env
    state_class = traced_state_class(batched_state_class(env.vm_class.get_state_class()))
    state = state_class(OverlayDB(view.nodes), make_execution_context(free_env), view.state_root)
    to = request.to
    if to is None:
        to = generate_contract_address(request.sender, state.get_nonce(request.sender))
    excluded = {request.sender, to, *state_class.computation_class.get_precompiles()}
    previous = AccessTracer({}, excluded)
    for address, slots in (given or {}).items():  # geth keeps the caller's slots, drops
        previous.add_address(address)               # only the excluded addresses
        for slot in slots:
            previous.add_slot(address, slot)
    for _ in range(MAX_RUNS):
        tracer = AccessTracer(previous.list, excluded)
        tx = _transaction(env, state, request, gas, previous.list)
        snapshot = state.snapshot()
        state.access_tracer = tracer  # read by _traced
        try:
            computation = state.apply_transaction(tx)
        except ValidationError as exc:
            raise CallError(str(exc)) from None
        finally:
            state.revert(snapshot)
        gas_used = env.vm_class.finalize_gas_used(tx, computation)
        if tracer.list == previous.list:
            return AccessListResult(
                [(address, list(slots)) for address, slots in previous.list.items()],
                gas_used, _failure(computation), computation.output,
            )
        previous = tracer
    raise CallError(f"access list still growing after {MAX_RUNS} runs")
