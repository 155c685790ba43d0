"""The block rules: what makes a transaction applicable and what surrounds a block's
transactions, in one place for every executor and for the mempool.

Modelled on ethereum/execution-specs' `fork.py`: `check_transaction` (the checks before
a transaction may run, with the reason in words), `block_preprocessing` (EIP-4788 beacon
root, EIP-2935 parent hash), `finish_block` (withdrawals, the Prague request system calls
and requests, proof-of-work rewards), `make_execution_context` (what the EVM sees of the
block). The sequential executor applies them around py-evm's transaction loop; Block-STM
derives its pre-transaction writes from the same `block_preprocessing` and finishes with
the same `finish_block`; the mempool's stateless checks call `signature_values_in_range`.
Chain policy (Laminar's no-blob rule) comes in through `BlockEnv.rules`.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Optional, Protocol, Sequence, Type

from eth.abc import (
    ReceiptAPI,
    SignedTransactionAPI,
    StateAPI,
    VirtualMachineAPI,
    WithdrawalAPI,
)
from eth.constants import EMPTY_SHA3, SECPK1_N, SYSTEM_ADDRESS, SYSTEM_MESSAGE_GAS
from eth.vm.execution_context import ExecutionContext
from eth.vm.forks import CancunVM, LondonVM, PragueVM, ShanghaiVM
from eth.vm.forks.cancun.constants import (
    BEACON_ROOTS_ADDRESS,
    BEACON_ROOTS_CONTRACT_CODE,
    BLOB_TX_TYPE,
    HISTORY_BUFFER_LENGTH,
)
from eth.vm.forks.prague.constants import (
    CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS,
    CONSOLIDATION_REQUEST_TYPE,
    DELEGATION_DESIGNATION_PREFIX,
    DEPOSIT_CONTRACT_ADDRESS,
    DEPOSIT_EVENT_SIGNATURE_HASH,
    DEPOSIT_REQUEST_TYPE,
    HISTORY_SERVE_WINDOW,
    HISTORY_STORAGE_ADDRESS,
    HISTORY_STORAGE_CONTRACT_CODE,
    WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS,
    WITHDRAWAL_REQUEST_TYPE,
)
from eth.vm.interrupt import EVMMissingData
from eth.vm.message import Message

from execution.executor import BlockEnv, BlockInput, BlockRuleError
from execution.senders import recover_sender

MAX_PREV_HASHES = 256
_DELEGATED_CODE_LENGTH = len(DELEGATION_DESIGNATION_PREFIX) + 20


class GasHeader:
    """What py-evm's `make_receipt` reads of the header: the cumulative gas so far."""

    __slots__ = ("gas_used",)

    def __init__(self, gas_used: int) -> None:
        self.gas_used = gas_used


class _UncleHeader:
    """What py-evm's `get_uncle_reward` reads of an uncle header."""

    __slots__ = ("block_number", "coinbase")

    def __init__(self, block_number: int, coinbase: bytes) -> None:
        self.block_number = block_number
        self.coinbase = coinbase


def prev_hashes_for(env: BlockEnv) -> list[bytes]:
    """Ancestor hashes newest first (parent at index 0), as py-evm's BLOCKHASH reads them.

    Unknown ancestors in the middle of the window read as empty (BLOCKHASH gives 0); the
    list stops after the oldest known one.
    """
    hashes = env.block_hashes
    known = {int(n): h for n, h in hashes.items()} if hashes else {}
    if env.number > 0:
        known.setdefault(env.number - 1, env.parent_hash)
    lowest = max(env.number - MAX_PREV_HASHES, 0)
    in_window = [n for n in known if lowest <= n < env.number]
    if not in_window:
        return []
    oldest = min(in_window)
    return [known.get(n, b"") for n in range(env.number - 1, oldest - 1, -1)]


def make_execution_context(env: BlockEnv) -> ExecutionContext:
    vm_class = env.vm_class
    base_fee = env.base_fee_per_gas
    if issubclass(vm_class, LondonVM) and base_fee is None:
        raise ValueError(
            f"{vm_class.__name__} block {env.number} needs base_fee_per_gas (EIP-1559)"
        )
    excess_blob_gas = env.excess_blob_gas
    if issubclass(vm_class, CancunVM) and excess_blob_gas is None:
        excess_blob_gas = 0  # no blobs on this chain: BLOBBASEFEE reads the minimum
    return ExecutionContext(
        coinbase=env.coinbase,
        timestamp=env.timestamp,
        block_number=env.number,
        difficulty=env.difficulty,
        mix_hash=env.mix_hash,
        gas_limit=env.gas_limit,
        prev_hashes=prev_hashes_for(env),
        chain_id=env.chain_id,
        base_fee_per_gas=base_fee,
        excess_blob_gas=excess_blob_gas,
    )


def _fee_cap(tx: SignedTransactionAPI) -> int:
    try:
        return tx.max_fee_per_gas
    except AttributeError:  # pre-Berlin legacy transactions
        return tx.gas_price


def _eth(wei: int) -> str:
    return f"{wei} wei ({wei / 10**18:.6g} ETH)"


def signature_values_in_range(tx: SignedTransactionAPI) -> bool:
    """0 < r < n, 0 < s <= n/2 (EIP-2's low s) and y parity 0 or 1."""
    return 0 < tx.r < SECPK1_N and 0 < tx.s <= SECPK1_N // 2 and tx.y_parity in (0, 1)


def block_level_reason(env: BlockEnv, tx: SignedTransactionAPI, gas_used: int) -> Optional[str]:
    """The checks that need no state, only the block: no blob transactions, signature
    values in range, and the transaction's gas must fit in what the block has left.
    None when it passes."""
    type_id = getattr(tx, "type_id", None)
    if type_id == BLOB_TX_TYPE and not env.rules.blob_transactions:
        return (
            "blob transactions (type 3) are not accepted: this chain has no data "
            "availability layer for blobs"
        )
    # py-evm checks EIP-2's low s only for legacy transactions; typed ones (EIP-2718) must
    # meet it too (as geth requires), or a proposer could include a malleated copy.
    if type_id is not None and not signature_values_in_range(tx):
        return "invalid signature values: r, s or y parity out of range (s must be low, EIP-2)"
    if gas_used + tx.gas > env.gas_limit:
        return (
            f"gas limit {tx.gas} exceeds the block's remaining gas "
            f"{env.gas_limit - gas_used} (block gas limit {env.gas_limit}, "
            f"{gas_used} already used)"
        )
    return None


def check_transaction(
    state: StateAPI,
    env: BlockEnv,
    tx: SignedTransactionAPI,
    gas_used: int,
) -> Optional[str]:
    """Why `tx` cannot be applied to `state` now, in words; None when it can.

    The same rules py-evm enforces (and it still enforces them after this), checked first
    so the reason is readable, plus the ones py-evm leaves to the client: chain id,
    EIP-3607 (no transactions from accounts with code) and no blob transactions.
    """
    reason = block_level_reason(env, tx, gas_used)
    if reason is not None:
        return reason
    tx_chain_id = getattr(tx, "chain_id", None)
    if tx_chain_id is not None and tx_chain_id != env.chain_id:
        return f"signed for chain id {tx_chain_id}, but this chain's id is {env.chain_id}"
    try:
        sender = recover_sender(tx)
    except Exception:  # noqa: BLE001 - py-evm's own recovery gives the reason (and the verdict)
        try:
            sender = tx.sender
        except Exception as exc:  # eth_keys BadSignature, ValidationError...
            return f"invalid signature: cannot recover the sender ({exc})"
    intrinsic = tx.intrinsic_gas
    if tx.gas < intrinsic:
        return f"intrinsic gas too low: gas limit {tx.gas} is below the intrinsic cost {intrinsic}"
    nonce = state.get_nonce(sender)
    if tx.nonce != nonce:
        which = "too low" if tx.nonce < nonce else "too high"
        return (
            f"nonce {which}: sender 0x{sender.hex()} has nonce {nonce}, "
            f"transaction has nonce {tx.nonce}"
        )
    code_hash = state.get_code_hash(sender)
    if code_hash != EMPTY_SHA3:
        code = state.get_code(sender)
        delegated = (
            issubclass(env.vm_class, PragueVM)
            and len(code) == _DELEGATED_CODE_LENGTH
            and code.startswith(DELEGATION_DESIGNATION_PREFIX)
        )
        if not delegated:
            return f"sender 0x{sender.hex()} is a contract (has code): rejected by EIP-3607"
    fee_cap = _fee_cap(tx)
    base_fee = env.base_fee_per_gas
    if base_fee is not None and issubclass(env.vm_class, LondonVM) and fee_cap < base_fee:
        return f"max fee per gas {fee_cap} is below the block's base fee {base_fee}"
    max_cost = tx.gas * fee_cap + tx.value
    balance = state.get_balance(sender)
    if balance < max_cost:
        return (
            f"insufficient funds: sender 0x{sender.hex()} has {_eth(balance)}, "
            f"the transaction may cost up to {_eth(max_cost)} (gas {tx.gas} x "
            f"fee cap {fee_cap} + value {tx.value})"
        )
    return None


def _system_call(state: StateAPI, address: bytes, required: bool) -> bytes:
    """A Prague system call (EIP-7002/7251 request dequeue), as py-evm's `execute_bytecode`;
    its output. Under Ethereum's rules (`required`) a missing contract or a failed call
    makes the block invalid (the EIPs' final text; py-evm ignores both); otherwise a chain
    without the contract simply has no such requests."""
    code = state.get_code(address)
    if not code:
        if required:
            raise BlockRuleError(f"system contract 0x{address.hex()} has no code")
        return b""
    message = Message(
        gas=SYSTEM_MESSAGE_GAS,
        to=address,
        sender=SYSTEM_ADDRESS,
        value=0,
        data=b"",
        code=code,
        code_address=address,
    )
    tx_context = state.get_transaction_context_class()(gas_price=0, origin=SYSTEM_ADDRESS)
    computation = state.computation_class.apply_computation(state, message, tx_context)
    if computation.is_error:
        if required:
            raise BlockRuleError(
                f"system call to 0x{address.hex()} failed: {computation.error!r}"
            )
        return b""
    return computation.output


# EIP-6110: the DepositEvent's ABI layout (five dynamic `bytes` fields), checked in full.
DEPOSIT_EVENT_DATA_LENGTH = 576
DEPOSIT_FIELD_LAYOUT = ((160, 48), (256, 32), (320, 8), (384, 96), (512, 8))  # (offset, size)
ABI_WORD = 32


def _deposit_request(data: bytes) -> bytes:
    """pubkey ++ withdrawal_credentials ++ amount ++ signature ++ index of one deposit log;
    BlockRuleError when the log does not have the DepositEvent layout (EIP-6110)."""
    if len(data) != DEPOSIT_EVENT_DATA_LENGTH:
        raise BlockRuleError(f"deposit log data is {len(data)} bytes, not {DEPOSIT_EVENT_DATA_LENGTH}")
    request = b""
    for field_index, (offset, size) in enumerate(DEPOSIT_FIELD_LAYOUT):
        head = data[field_index * ABI_WORD:(field_index + 1) * ABI_WORD]
        declared_size = data[offset:offset + ABI_WORD]
        if int.from_bytes(head, "big") != offset or int.from_bytes(declared_size, "big") != size:
            raise BlockRuleError(f"deposit log field {field_index} has a bad ABI offset or size")
        request += data[offset + ABI_WORD:offset + ABI_WORD + size]
    return request


def deposit_requests(receipts: Sequence[ReceiptAPI]) -> bytes:
    """EIP-6110 deposit requests: the deposit contract's DepositEvent logs, in order."""
    requests = b""
    for receipt in receipts:
        for log in receipt.logs:
            if (
                log.address == DEPOSIT_CONTRACT_ADDRESS
                and log.topics
                and log.topics[0].to_bytes(32, "big") == DEPOSIT_EVENT_SIGNATURE_HASH
            ):
                requests += _deposit_request(log.data)
    return requests


def requests_hash(requests: Sequence[bytes]) -> bytes:
    """EIP-7685's commitment: sha256 over the sha256 of each non-empty request."""
    outer = hashlib.sha256()
    for request in requests:
        if len(request) > 1:
            outer.update(hashlib.sha256(request).digest())
    return outer.digest()


class PreprocessingState(Protocol):
    """What `block_preprocessing` touches of a state: py-evm's state, or Block-STM's
    recorder of the block's pre-transaction writes."""

    def get_code(self, address: bytes) -> bytes: ...

    def set_storage(self, address: bytes, slot: int, value: int) -> None: ...


def block_preprocessing(state: PreprocessingState, env: BlockEnv) -> None:
    """py-evm's `block_preprocessing`: EIP-4788 beacon root (Cancun), EIP-2935 (Prague)."""
    vm_class = env.vm_class
    if issubclass(vm_class, CancunVM):
        if state.get_code(BEACON_ROOTS_ADDRESS) == BEACON_ROOTS_CONTRACT_CODE:
            root = env.parent_beacon_block_root or b"\x00" * 32
            slot = env.timestamp % HISTORY_BUFFER_LENGTH
            state.set_storage(BEACON_ROOTS_ADDRESS, slot, env.timestamp)
            state.set_storage(
                BEACON_ROOTS_ADDRESS,
                slot + HISTORY_BUFFER_LENGTH,
                int.from_bytes(root, "big"),
            )
    if issubclass(vm_class, PragueVM):
        if state.get_code(HISTORY_STORAGE_ADDRESS) == HISTORY_STORAGE_CONTRACT_CODE:
            state.set_storage(
                HISTORY_STORAGE_ADDRESS,
                (env.number - 1) % HISTORY_SERVE_WINDOW,
                int.from_bytes(env.parent_hash, "big"),
            )


# What `block_postprocessing` calls (EIP-7002, EIP-7251) when they have code.
REQUEST_SYSTEM_CONTRACTS = (WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS, CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS)


def block_postprocessing(
    state: StateAPI, env: BlockEnv, receipts: Sequence[ReceiptAPI]
) -> tuple[bytes, ...]:
    """Prague's `block_postprocessing`: the request system calls, and the EIP-7685 requests
    (type byte + data, empty ones left out). Laminar's own chain keeps no requests: its
    header carries none, and it may run without the system contracts."""
    if not issubclass(env.vm_class, PragueVM):
        return ()
    ethereum = env.rules.system_contracts_required
    deposits = deposit_requests(receipts) if ethereum else b""
    withdrawals = _system_call(state, WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS, ethereum)
    consolidations = _system_call(state, CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS, ethereum)
    if not ethereum:
        return ()
    typed = (
        (DEPOSIT_REQUEST_TYPE, deposits),
        (WITHDRAWAL_REQUEST_TYPE, withdrawals),
        (CONSOLIDATION_REQUEST_TYPE, consolidations),
    )
    return tuple(kind + data for kind, data in typed if data)


def apply_withdrawals(state: StateAPI, withdrawals: Sequence[WithdrawalAPI]) -> None:
    """py-evm's `VM.apply_all_withdrawals`: credit (gwei), then drop touched empty accounts."""
    touched: list[bytes] = []
    for withdrawal in withdrawals:
        withdrawal.validate()
        state.apply_withdrawal(withdrawal)
        if withdrawal.address not in touched:
            touched.append(withdrawal.address)
    for address in touched:
        if state.account_is_empty(address):
            state.delete_account(address)


def assign_pow_rewards(
    state: StateAPI,
    vm_class: Type[VirtualMachineAPI],
    number: int,
    coinbase: bytes,
    uncles: Iterable[tuple[int, bytes]],
    uncle_count: int,
) -> None:
    """py-evm's `VM._assign_block_rewards`: miner reward + nephew rewards, uncle rewards."""
    reward = vm_class.get_block_reward() + uncle_count * vm_class.get_nephew_reward()
    state.delta_balance(coinbase, reward)
    for uncle_number, uncle_coinbase in uncles:
        uncle = _UncleHeader(uncle_number, uncle_coinbase)
        state.delta_balance(uncle_coinbase, vm_class.get_uncle_reward(number, uncle))


def finish_block(
    state: StateAPI, block: BlockInput, receipts: Sequence[ReceiptAPI]
) -> tuple[bytes, ...]:
    """What follows the transactions: withdrawals, system calls, proof-of-work rewards;
    returns the block's EIP-7685 requests."""
    env = block.env
    vm_class = env.vm_class
    if block.withdrawals:
        if not issubclass(vm_class, ShanghaiVM):
            raise ValueError(
                f"withdrawals given for a {vm_class.fork} block: they start at Shanghai"
            )
        apply_withdrawals(state, block.withdrawals)
    requests = block_postprocessing(state, env, receipts)
    if block.apply_pow_rewards and env.number > 0:
        uncle_count = len(block.uncles) if block.uncle_count is None else block.uncle_count
        snapshot = state.snapshot()
        try:
            assign_pow_rewards(
                state, vm_class, env.number, env.coinbase, block.uncles, uncle_count
            )
        except EVMMissingData:
            state.revert(snapshot)
            raise
        else:
            state.commit(snapshot)
    return requests


def readable_error(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.replace("\n", " ")
