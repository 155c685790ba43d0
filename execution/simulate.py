"""eth_simulateV1: calls run in a chain of simulated blocks on top of a committed block.

Each simulated block gets its environment (number, time, gas limit, fee recipient, base
fee, prevRandao, withdrawals) from its overrides or from its parent, has its state
overrides applied (balance, nonce, code, whole storage or single slots, precompiles
moved), then runs its calls one after another, each on the state the previous left.
Skipped block numbers are filled with empty blocks, as geth does. The state lives in an
`OverlayDB` over the node's nodes: nothing reaches the node's database.

Without `validation` a call is like eth_call (gas price zero, no nonce or base-fee check);
with it, the checks a block applies (nonce, fee caps against the base fee, funds for
gas and value, sender without code) fail the whole request with the spec's codes. The
intrinsic-gas, funds-for-value and block-gas checks apply in both modes, as in geth.
With `trace_transfers`, every value transfer (the call's own and every inner CALL or
CREATE with value, and what a SELFDESTRUCT sends) adds an ERC-20-style Transfer log from
0xeeee...eeee.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import rlp
from eth._utils.spoof import SpoofAttributes
from eth.abc import BlockHeaderAPI, ComputationAPI, ReceiptAPI, StateAPI
from eth.constants import BLANK_ROOT_HASH, EMPTY_UNCLE_HASH, ZERO_HASH32
from eth.exceptions import Revert
from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas
from eth.vm.forks.shanghai.withdrawals import Withdrawal
from eth.vm.spoof import SpoofTransaction
from eth_hash.auto import keccak
from eth_utils import ValidationError

from execution.executor import BlockEnv, StateView
from execution.overlay import OverlayDB
from execution.roots import make_header_roots, ordered_trie_root
from execution.rules import GasHeader, block_preprocessing, make_execution_context
from execution.state_db import batched_state_class

# The spec's error codes (execution-apis src/eth/execute.yaml).
SERVER_ERROR = -32000
INTERNAL_ERROR = -32603
NONCE_TOO_LOW = -38010
NONCE_TOO_HIGH = -38011
BASE_FEE_TOO_LOW = -38012
INTRINSIC_GAS_TOO_LOW = -38013
INSUFFICIENT_FUNDS = -38014
BLOCK_GAS_LIMIT_REACHED = -38015
BLOCK_NUMBER_ORDER = -38020
BLOCK_TIMESTAMP_ORDER = -38021
PRECOMPILE_SELF_REFERENCE = -38022
PRECOMPILE_DUPLICATE_TARGET = -38023
SENDER_NOT_EOA = -38024
CLIENT_LIMIT_EXCEEDED = -38026

#: The spec's suggestion (and geth's limit), BLOCKHASH's window: blocks per request,
#: counting those filled in for skipped numbers.
MAX_SIMULATED_BLOCKS = 256
BLOCKHASH_WINDOW = 256
#: A block without a time override comes this many seconds after its parent (geth's).
BLOCK_TIME_STEP_S = 12
GWEI = 10**9
MAX_NONCE = 2**64 - 1  # EIP-2681
ETH_TRANSFER_LOG_ADDRESS = b"\xee" * 20
TRANSFER_TOPIC = int.from_bytes(keccak(b"Transfer(address,address,uint256)"), "big")
DELEGATION_PREFIX = b"\xef\x01\x00"  # EIP-7702: such code is not a contract
SELFDESTRUCT = 0xFF
ADDRESS_SPACE = 2**160


class SimulationError(Exception):
    """The request as a whole fails: the JSON-RPC error code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SimCall:
    sender: bytes
    to: Optional[bytes]  # None: create
    data: bytes = b""
    value: int = 0
    gas: Optional[int] = None  # None: what is left of the block (at most the gas cap)
    nonce: Optional[int] = None  # None: the sender's
    gas_price: Optional[int] = None
    max_fee_per_gas: Optional[int] = None
    max_priority_fee_per_gas: Optional[int] = None
    access_list: tuple[tuple[bytes, tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class AccountOverride:
    balance: Optional[int] = None
    nonce: Optional[int] = None
    code: Optional[bytes] = None
    storage: Optional[Mapping[int, int]] = None  # "state": the whole storage
    storage_diff: Optional[Mapping[int, int]] = None  # "stateDiff": these slots
    move_precompile_to: Optional[bytes] = None


@dataclass(frozen=True)
class BlockOverrides:
    number: Optional[int] = None
    time: Optional[int] = None
    gas_limit: Optional[int] = None
    fee_recipient: Optional[bytes] = None
    base_fee_per_gas: Optional[int] = None
    prev_randao: Optional[bytes] = None
    withdrawals: Optional[tuple[Withdrawal, ...]] = None


@dataclass(frozen=True)
class SimBlock:
    overrides: BlockOverrides = BlockOverrides()
    state_overrides: Mapping[bytes, AccountOverride] = field(default_factory=dict)
    calls: tuple[SimCall, ...] = ()


@dataclass(frozen=True)
class SimOptions:
    validation: bool = False
    trace_transfers: bool = False
    gas_cap: int = 50_000_000


@dataclass(frozen=True)
class CallOutcome:
    success: bool
    return_data: bytes
    gas_used: int  # as the receipt counts it (after refunds)
    max_used_gas: int  # before refunds
    logs: tuple[tuple[bytes, tuple[int, ...], bytes], ...]
    reverted: bool
    error: Optional[str]  # a VM error in words ("out of gas", ...); None on success or revert


@dataclass(frozen=True)
class SimulatedBlock:
    header: BlockHeaderAPI
    transactions: tuple[Any, ...]  # the calls as signed transactions (SpoofAttributes)
    outcomes: tuple[CallOutcome, ...]
    withdrawals: tuple[Withdrawal, ...]


# ---- the EVM classes of one simulation ----------------------------------------------


def _simulation_state_class(base: type[StateAPI], precompiles: Mapping[bytes, Any],
                            trace_transfers: bool) -> type[StateAPI]:
    """The fork's state with this simulation's precompiles, optional transfer logs, and the
    transaction checks left to `_check_call` (they ran already, with the spec's codes)."""
    computation_class = base.computation_class
    fork_precompiles = computation_class.get_precompiles()

    opcodes = dict(computation_class.opcodes)
    if trace_transfers:
        opcodes[SELFDESTRUCT] = _logging_selfdestruct(opcodes[SELFDESTRUCT])

    class SimulationComputation(computation_class):  # type: ignore[misc,valid-type]
        _precompiles = dict(precompiles)

        def __init__(self, state: Any, message: Any, transaction_context: Any) -> None:
            super().__init__(state, message, transaction_context)
            if trace_transfers and message.value and message.should_transfer_value:
                _transfer_log(self, message.sender, message.storage_address, message.value)

    SimulationComputation.opcodes = opcodes

    class SimulationState(base):
        computation_class = SimulationComputation

        def is_address_warm(self, address: Any) -> bool:
            # geth warms the fork's precompile addresses, not where they were moved to.
            return self._account_db.is_address_warm(address) or address in fork_precompiles

        def validate_transaction(self, transaction: Any) -> None:
            pass  # _check_call did the checks that apply

        def get_tip(self, transaction: Any) -> int:
            return max(0, super().get_tip(transaction))  # zero-fee calls under a base fee

    return SimulationState


def _transfer_log(computation: Any, sender: bytes, recipient: bytes, value: int) -> None:
    computation.add_log_entry(
        ETH_TRANSFER_LOG_ADDRESS,
        (TRANSFER_TOPIC, int.from_bytes(sender, "big"), int.from_bytes(recipient, "big")),
        value.to_bytes(32, "big"),
    )


def _logging_selfdestruct(selfdestruct: Any) -> Any:
    """SELFDESTRUCT that first logs the balance it sends (to another account) as a transfer;
    a failing frame drops the log with its others."""
    def run(computation: Any) -> Any:
        stack = computation._stack.values
        if stack:
            top = stack[-1] if isinstance(stack[-1], int) else int.from_bytes(stack[-1], "big")
            beneficiary = (top % ADDRESS_SPACE).to_bytes(20, "big")
            contract = computation.msg.storage_address
            balance = computation.state.get_balance(contract)
            if balance and beneficiary != contract:
                _transfer_log(computation, contract, beneficiary, balance)
        return selfdestruct(computation=computation)

    return run


def _move_precompiles(precompiles: dict[bytes, Any], overrides: Mapping[bytes, AccountOverride],
                      ) -> None:
    moves = [(source, o.move_precompile_to) for source, o in overrides.items()
             if o.move_precompile_to is not None]
    targets: set[bytes] = set()
    for source, target in moves:
        assert target is not None
        if source not in precompiles:
            raise SimulationError(SERVER_ERROR, f"account 0x{source.hex()} is not a precompile")
        if target == source:
            raise SimulationError(
                PRECOMPILE_SELF_REFERENCE,
                f"account 0x{source.hex()} is already a precompile: it cannot move to itself",
            )
        if target in targets:
            raise SimulationError(
                PRECOMPILE_DUPLICATE_TARGET,
                f"account 0x{target.hex()} has already been overridden by a precompile",
            )
        targets.add(target)
    moved = {source: precompiles.pop(source) for source, _ in moves}
    for source, target in moves:
        assert target is not None
        precompiles[target] = moved[source]


def _apply_state_overrides(state: StateAPI, overrides: Mapping[bytes, AccountOverride]) -> None:
    for address, override in overrides.items():
        if override.balance is not None:
            state.set_balance(address, override.balance)
        if override.nonce is not None:
            state.set_nonce(address, override.nonce)
        if override.code is not None:
            state.set_code(address, override.code)
        if override.storage is not None:
            state.delete_storage(address)
            for slot, value in override.storage.items():
                state.set_storage(address, slot, value)
        if override.storage_diff is not None:
            for slot, value in override.storage_diff.items():
                state.set_storage(address, slot, value)


# ---- one call -------------------------------------------------------------------------


def _fees(call: SimCall, validation: bool) -> tuple[int, int]:
    """(max fee, max priority fee) the transaction carries."""
    if not validation:
        return 0, 0
    if call.gas_price is not None:
        return call.gas_price, call.gas_price
    max_fee = call.max_fee_per_gas or 0
    return max_fee, call.max_priority_fee_per_gas if call.max_priority_fee_per_gas is not None \
        else max_fee


def _transaction(env: BlockEnv, call: SimCall, nonce: int, gas: int,
                 fees: tuple[int, int]) -> tuple[SpoofTransaction, SpoofAttributes]:
    """The call as an EIP-1559 transaction: the one py-evm runs (unsigned, sender set) and
    the one the block lists (an all-zero signature, which names no sender: `sender` is
    set on it too), whose encoding and hash go into the simulated block."""
    max_fee, tip = fees
    fields = dict(
        chain_id=env.chain_id, nonce=nonce, max_priority_fee_per_gas=tip,
        max_fee_per_gas=max_fee, gas=gas, to=call.to if call.to is not None else b"",
        value=call.value, data=call.data,
        access_list=[(address, list(slots)) for address, slots in call.access_list],
    )
    builder = env.vm_class.get_transaction_builder()
    unsigned = builder.new_unsigned_dynamic_fee_transaction(**fields)
    signed = builder.new_dynamic_fee_transaction(**fields, y_parity=0, r=0, s=0)
    return SpoofTransaction(unsigned, from_=call.sender), SpoofAttributes(signed,
                                                                          sender=call.sender)


def _check_call(state: StateAPI, env: BlockEnv, call: SimCall, tx: SpoofTransaction,
                gas_left: int, options: SimOptions) -> None:
    """The checks before a call may run, with the spec's error codes (geth's wording)."""
    sender = "0x" + call.sender.hex()
    supplied = f"(supplied gas {tx.gas})"
    if tx.gas > gas_left:
        raise SimulationError(BLOCK_GAS_LIMIT_REACHED,
                              f"block gas limit reached: {tx.gas} > {gas_left} left")
    if options.validation:
        nonce = state.get_nonce(call.sender)
        if nonce >= MAX_NONCE:  # geth's ErrNonceMax, which the spec's vector has as -32603
            raise SimulationError(INTERNAL_ERROR, f"err: nonce has max value: address {sender}, "
                                  f"nonce: {nonce} {supplied}")
        if tx.nonce < nonce:
            raise SimulationError(NONCE_TOO_LOW, f"err: nonce too low: address {sender}, "
                                  f"tx: {tx.nonce} state: {nonce} {supplied}")
        if tx.nonce > nonce:
            raise SimulationError(NONCE_TOO_HIGH, f"err: nonce too high: address {sender}, "
                                  f"tx: {tx.nonce} state: {nonce} {supplied}")
        base_fee = env.base_fee_per_gas or 0
        if tx.max_fee_per_gas < base_fee:
            raise SimulationError(
                BASE_FEE_TOO_LOW, f"err: max fee per gas less than block base fee: address "
                f"{sender}, maxFeePerGas: {tx.max_fee_per_gas}, baseFee: {base_fee} {supplied}")
        code = state.get_code(call.sender)
        if code and not code.startswith(DELEGATION_PREFIX):
            raise SimulationError(SENDER_NOT_EOA, f"err: sender not an eoa: address {sender}, "
                                  f"codehash: 0x{keccak(code).hex()} {supplied}")
    intrinsic = tx.intrinsic_gas
    if tx.gas < intrinsic:
        raise SimulationError(INTRINSIC_GAS_TOO_LOW, f"err: intrinsic gas too low: have "
                              f"{tx.gas}, want {intrinsic} {supplied}")
    balance = state.get_balance(call.sender)
    cost = call.value + tx.gas * tx.max_fee_per_gas
    if balance < cost:
        raise SimulationError(INSUFFICIENT_FUNDS, f"err: insufficient funds for gas * price + "
                              f"value: address {sender} have {balance} want {cost} {supplied}")


def _outcome(env: BlockEnv, tx: SpoofTransaction, computation: ComputationAPI) -> CallOutcome:
    gas_used = env.vm_class.finalize_gas_used(tx, computation)
    max_used = tx.gas - computation.get_gas_remaining()
    if computation.is_success:
        return CallOutcome(True, computation.output, gas_used, max_used,
                           computation.get_log_entries(), False, None)
    error = computation.error
    if isinstance(error, Revert):  # the revert data goes in the error (returnData: 0x)
        return CallOutcome(False, computation.output, gas_used, max_used, (), True, None)
    text = str(error)
    words = type(error).__name__ + (f": {text}" if text else "")
    return CallOutcome(False, b"", gas_used, max_used, (), False, words)


# ---- blocks ---------------------------------------------------------------------------


def _plan(parent: BlockHeaderAPI, blocks: Sequence[SimBlock]) -> list[tuple[int, int, SimBlock]]:
    """(number, time, block) for every block to build, empty ones for skipped numbers."""
    planned: list[tuple[int, int, SimBlock]] = []
    number, time = parent.block_number, parent.timestamp
    for block in blocks:
        target = block.overrides.number if block.overrides.number is not None else number + 1
        if target <= number:
            raise SimulationError(BLOCK_NUMBER_ORDER,
                                  f"block numbers must be in order: {target} <= {number}")
        if len(planned) + target - number > MAX_SIMULATED_BLOCKS:
            raise SimulationError(CLIENT_LIMIT_EXCEEDED,
                                  f"too many blocks: at most {MAX_SIMULATED_BLOCKS} per request")
        for filler in range(number + 1, target):
            time += BLOCK_TIME_STEP_S
            planned.append((filler, time, SimBlock()))
        block_time = block.overrides.time if block.overrides.time is not None \
            else time + BLOCK_TIME_STEP_S
        if block_time <= time:
            raise SimulationError(BLOCK_TIMESTAMP_ORDER,
                                  f"block timestamps must be in order: {block_time} <= {time}")
        planned.append((target, block_time, block))
        number, time = target, block_time
    return planned


def simulate(parent: BlockHeaderAPI, parent_env: BlockEnv, view: StateView,
             blocks: Sequence[SimBlock], options: SimOptions,
             header_class: type[BlockHeaderAPI]) -> list[SimulatedBlock]:
    """Build the simulated blocks on `parent` (whose environment, with its BLOCKHASH
    window, is `parent_env`); raises `SimulationError` when the request fails as a whole."""
    vm_class = parent_env.vm_class
    base_state_class = batched_state_class(vm_class.get_state_class())
    fork_precompiles = base_state_class.computation_class.get_precompiles()
    db = OverlayDB(view.nodes)
    state_root = view.state_root
    hashes = dict(parent_env.block_hashes)
    hashes[parent.block_number] = parent.hash
    results: list[SimulatedBlock] = []
    previous = parent
    budget = options.gas_cap  # gas left for the request's calls, all blocks together
    for number, time, block in _plan(parent, blocks):
        overrides = block.overrides
        if overrides.base_fee_per_gas is not None:
            base_fee = overrides.base_fee_per_gas
        else:
            base_fee = calculate_expected_base_fee_per_gas(previous) if options.validation else 0
        env = BlockEnv(
            vm_class=vm_class, chain_id=parent_env.chain_id, number=number, timestamp=time,
            coinbase=overrides.fee_recipient if overrides.fee_recipient is not None
            else b"\x00" * 20,
            gas_limit=overrides.gas_limit if overrides.gas_limit is not None
            else previous.gas_limit,
            parent_hash=previous.hash, difficulty=0,
            mix_hash=overrides.prev_randao if overrides.prev_randao is not None else ZERO_HASH32,
            base_fee_per_gas=base_fee, excess_blob_gas=0, parent_beacon_block_root=ZERO_HASH32,
            block_hashes={n: h for n, h in hashes.items() if 0 < number - n <= BLOCKHASH_WINDOW},
            rules=parent_env.rules,
        )
        # As geth: each block moves precompiles from where the fork has them.
        precompiles = dict(fork_precompiles)
        _move_precompiles(precompiles, block.state_overrides)
        state_class = _simulation_state_class(base_state_class, precompiles,
                                              options.trace_transfers)
        state = state_class(db, make_execution_context(env), state_root)
        block_preprocessing(state, env)
        _apply_state_overrides(state, block.state_overrides)
        transactions: list[Any] = []  # SpoofAttributes over signed transactions
        outcomes: list[CallOutcome] = []
        receipts: list[ReceiptAPI] = []
        gas_used = 0
        for call in block.calls:
            gas_left = env.gas_limit - gas_used
            if call.gas is not None and call.gas > gas_left:
                raise SimulationError(BLOCK_GAS_LIMIT_REACHED,
                                      f"block gas limit reached: {call.gas} > {gas_left} left")
            # The gas cap is a budget for the whole request, not per call: a request of
            # 256 blocks of calls does at most as much EVM work as one capped eth_call.
            if budget <= 0:
                raise SimulationError(CLIENT_LIMIT_EXCEEDED,
                                      f"the request's gas budget ({options.gas_cap}) is used up")
            gas = min(call.gas if call.gas is not None else gas_left, budget)
            # Without validation the given nonce is not checked, and not used (as geth).
            nonce = state.get_nonce(call.sender)
            if options.validation and call.nonce is not None:
                nonce = call.nonce
            tx, listed = _transaction(env, call, nonce, gas, _fees(call, options.validation))
            _check_call(state, env, call, tx, gas_left, options)
            state.lock_changes()
            try:
                computation = state.apply_transaction(tx)
            except ValidationError as exc:
                raise SimulationError(SERVER_ERROR, f"err: {exc}") from None
            receipt = vm_class.make_receipt(GasHeader(gas_used), listed, computation, state)
            budget -= receipt.gas_used - gas_used
            gas_used = receipt.gas_used
            receipts.append(receipt)
            transactions.append(listed)
            outcomes.append(_outcome(env, tx, computation))
        withdrawals = overrides.withdrawals or ()
        for withdrawal in withdrawals:
            state.delta_balance(withdrawal.address, withdrawal.amount * GWEI)
        state.persist()
        state_root = state.state_root
        header = _header(header_class, env, state_root, transactions, receipts, gas_used,
                         withdrawals)
        hashes[number] = header.hash
        results.append(SimulatedBlock(header, tuple(transactions), tuple(outcomes),
                                      tuple(withdrawals)))
        previous = header
    return results


def _header(header_class: type[BlockHeaderAPI], env: BlockEnv, state_root: bytes,
            transactions: Sequence[Any], receipts: Sequence[ReceiptAPI],
            gas_used: int, withdrawals: Sequence[Withdrawal]) -> BlockHeaderAPI:
    tx_root, receipt_root = make_header_roots(transactions, receipts)
    bloom = 0
    for receipt in receipts:
        bloom |= int(receipt.bloom)
    withdrawals_root = ordered_trie_root([rlp.encode(w) for w in withdrawals]) if withdrawals \
        else BLANK_ROOT_HASH
    return header_class(
        difficulty=0, block_number=env.number, gas_limit=env.gas_limit,
        timestamp=env.timestamp, coinbase=env.coinbase, parent_hash=env.parent_hash,
        uncles_hash=EMPTY_UNCLE_HASH, state_root=state_root, transaction_root=tx_root,
        receipt_root=receipt_root, bloom=bloom, gas_used=gas_used, mix_hash=env.mix_hash,
        base_fee_per_gas=env.base_fee_per_gas, withdrawals_root=withdrawals_root,
        blob_gas_used=0, excess_blob_gas=0, parent_beacon_block_root=ZERO_HASH32,
    )

