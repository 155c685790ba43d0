"""Importing an Ethereum block: its fork's header rules, the body its header commits to,
execution on any `Executor`, and the result checked against the header.

This is how `laminar blocktest` runs the consensus test suites: every check a client
makes before it accepts a block, in the order geth makes them (header against parent,
body against header, then execution and the post-execution fields). Laminar's own chain
recomputes its headers instead (`node/chain.py`); both execute through the same stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Type

import rlp
from eth.abc import BlockAPI, BlockHeaderAPI, VirtualMachineAPI
from eth.vm.forks import CancunVM, ParisVM, PragueVM, ShanghaiVM
from eth.vm.forks.cancun.constants import MAX_BLOB_GAS_PER_BLOCK as CANCUN_MAX_BLOB_GAS
from eth.vm.forks.cancun.headers import calc_excess_blob_gas_cancun
from eth.vm.forks.cancun.state import get_total_blob_gas
from eth.vm.forks.prague.constants import MAX_BLOB_GAS_PER_BLOCK as PRAGUE_MAX_BLOB_GAS
from eth.vm.forks.prague.headers import calc_excess_blob_gas_prague
from eth_hash.auto import keccak
from eth_utils import ValidationError

from execution.executor import (
    ETHEREUM_RULES,
    BlockEnv,
    BlockInput,
    BlockRuleError,
    ExecutionResult,
    Executor,
    InvalidBlockError,
    StateView,
    header_field,
)
from execution.roots import ordered_trie_root, receipts_root, transactions_root
from execution.rules import requests_hash


class BlockRejected(Exception):
    """The block is invalid; `reason` says which rule it breaks."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _hex(value: object) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def _mismatch(what: str, header_value: object, computed: object) -> BlockRejected:
    return BlockRejected(
        f"{what} mismatch: header has {_hex(header_value)}, computed {_hex(computed)}"
    )


def expected_excess_blob_gas(
    vm_class: Type[VirtualMachineAPI], parent: BlockHeaderAPI
) -> int:
    """EIP-4844 (Cancun) / EIP-7691 (Prague) excess blob gas of a child of `parent`; 0 on
    the fork block, whose parent carries no blob fields."""
    if header_field(parent, "excess_blob_gas") is None:
        return 0
    if issubclass(vm_class, PragueVM):
        return calc_excess_blob_gas_prague(parent)
    return calc_excess_blob_gas_cancun(parent)


def max_blob_gas_per_block(vm_class: Type[VirtualMachineAPI]) -> int:
    return PRAGUE_MAX_BLOB_GAS if issubclass(vm_class, PragueVM) else CANCUN_MAX_BLOB_GAS


def check_header(
    vm_class: Type[VirtualMachineAPI], header: BlockHeaderAPI, parent: BlockHeaderAPI
) -> None:
    """The header against its parent: number, timestamp, gas limit, base fee, extra data,
    the post-merge constants and the blob gas fields."""
    if header.parent_hash != parent.hash:
        raise BlockRejected("parent hash does not name the given parent")
    try:
        vm_class.validate_header(header, parent)
    except ValidationError as exc:
        raise BlockRejected(f"header: {_one_line(exc)}") from None
    if header.gas_used > header.gas_limit:
        raise BlockRejected(
            f"header: gas used {header.gas_used} exceeds the gas limit {header.gas_limit}"
        )
    if issubclass(vm_class, CancunVM):
        excess = expected_excess_blob_gas(vm_class, parent)
        if header.excess_blob_gas != excess:
            raise _mismatch("excessBlobGas", header.excess_blob_gas, excess)


def check_body(vm_class: Type[VirtualMachineAPI], block: BlockAPI) -> None:
    """The body is the one the header commits to: transactions, uncles, withdrawals and
    the blob gas its transactions use."""
    header = block.header
    tx_root = transactions_root(block.transactions)
    if tx_root != header.transaction_root:
        raise _mismatch("transactionsRoot", header.transaction_root, tx_root)
    uncles_hash = keccak(rlp.encode(block.uncles))
    if uncles_hash != header.uncles_hash:
        raise _mismatch("uncle hash", header.uncles_hash, uncles_hash)
    if issubclass(vm_class, ParisVM) and block.uncles:
        raise BlockRejected("uncles after the merge")
    if issubclass(vm_class, ShanghaiVM):
        root = ordered_trie_root([rlp.encode(w) for w in block.withdrawals])
        if root != header.withdrawals_root:
            raise _mismatch("withdrawalsRoot", header.withdrawals_root, root)
    if issubclass(vm_class, CancunVM):
        blob_gas = sum(get_total_blob_gas(tx) for tx in block.transactions)
        limit = max_blob_gas_per_block(vm_class)
        if blob_gas > limit:
            raise BlockRejected(f"blob gas {blob_gas} exceeds the block limit {limit}")
        if blob_gas != header.blob_gas_used:
            raise _mismatch("blobGasUsed", header.blob_gas_used, blob_gas)


def block_input(
    vm_class: Type[VirtualMachineAPI],
    block: BlockAPI,
    chain_id: int,
    block_hashes: Mapping[int, bytes],
) -> BlockInput:
    """What the executor needs of an Ethereum block, under Ethereum's rules."""
    header = block.header
    pow_block = not issubclass(vm_class, ParisVM)
    return BlockInput(
        env=BlockEnv.of_header(header, vm_class, chain_id, block_hashes, ETHEREUM_RULES),
        transactions=tuple(block.transactions),
        withdrawals=tuple(getattr(block, "withdrawals", ()) or ()),
        apply_pow_rewards=pow_block,
        uncles=tuple((u.block_number, u.coinbase) for u in block.uncles) if pow_block else (),
    )


def check_result(
    vm_class: Type[VirtualMachineAPI], block: BlockAPI, result: ExecutionResult
) -> None:
    """The header's post-execution fields against what execution produced."""
    header = block.header
    if result.gas_used != header.gas_used:
        raise _mismatch("gasUsed", header.gas_used, result.gas_used)
    computed_receipts_root = receipts_root(result.receipts)
    if computed_receipts_root != header.receipt_root:
        raise _mismatch("receiptsRoot", header.receipt_root, computed_receipts_root)
    if result.logs_bloom != header.bloom:
        raise BlockRejected("logsBloom mismatch")
    if issubclass(vm_class, PragueVM):
        computed = requests_hash(result.requests)
        if computed != header.requests_hash:
            raise _mismatch("requestsHash", header.requests_hash, computed)
    if result.post_state_root != header.state_root:
        raise _mismatch("stateRoot", header.state_root, result.post_state_root)


@dataclass(frozen=True)
class ImportedBlock:
    block: BlockAPI
    result: ExecutionResult


def import_block(
    vm_class: Type[VirtualMachineAPI],
    block: BlockAPI,
    parent: BlockHeaderAPI,
    executor: Executor,
    pre_state: StateView,
    chain_id: int,
    block_hashes: Mapping[int, bytes],
) -> ImportedBlock:
    """Validate and execute `block` on `parent`'s state; BlockRejected names the first
    rule it breaks. Writes nothing: the new state nodes are in the result."""
    check_header(vm_class, block.header, parent)
    check_body(vm_class, block)
    block_in = block_input(vm_class, block, chain_id, block_hashes)
    try:
        result = executor.execute(block_in, pre_state)
    except InvalidBlockError as exc:
        raise BlockRejected(f"transaction {exc.index}: {exc.reason}") from None
    except BlockRuleError as exc:
        raise BlockRejected(str(exc)) from None
    except ValidationError as exc:  # py-evm outside a transaction (e.g. a withdrawal)
        raise BlockRejected(_one_line(exc)) from None
    check_result(vm_class, block, result)
    return ImportedBlock(block=block, result=result)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())

