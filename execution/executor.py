"""The execution stage's interface: what an executor takes and what it gives back.

Every executor (sequential, Block-STM) implements `Executor`. Sequential is the
reference: any other implementation must return exactly the same receipts, gas and
post-state root for the same block and pre-state.

The stage knows nothing of RPC, networking or how blocks are stored: it reads trie
nodes through a `StateView` and hands back the new nodes (`ExecutionResult.state_nodes`)
for storage to persist with the block in one atomic batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Protocol, Sequence, Type

from eth.abc import (
    BlockHeaderAPI,
    ReceiptAPI,
    SignedTransactionAPI,
    VirtualMachineAPI,
    WithdrawalAPI,
)

from execution.bal.codec import BlockAccessList


class NodeReader(Protocol):
    """Read-only access to content-addressed state nodes (trie nodes and code by hash)."""

    def __getitem__(self, key: bytes) -> bytes: ...

    def __contains__(self, key: object) -> bool: ...


@dataclass(frozen=True)
class StateView:
    """A read view of a world state: the nodes and the root to start from."""

    nodes: NodeReader
    state_root: bytes


@dataclass(frozen=True)
class ChainRules:
    """What a chain changes of its fork's rules. Laminar's own chain has no data
    availability layer (no blob transactions) and may start without the Prague system
    contracts; a replayed or tested Ethereum block runs under Ethereum's rules."""

    name: str
    blob_transactions: bool
    # EIP-7002 / EIP-7251: a Prague block whose request contract is missing, or whose
    # system call to it fails, is invalid. A chain without them has no such requests.
    system_contracts_required: bool


LAMINAR_RULES = ChainRules("laminar", blob_transactions=False, system_contracts_required=False)
ETHEREUM_RULES = ChainRules("ethereum", blob_transactions=True, system_contracts_required=True)


@dataclass(frozen=True)
class BlockEnv:
    """The block environment transactions run in (what the EVM sees of the header)."""

    vm_class: Type[VirtualMachineAPI]  # fork rules, e.g. PragueVM
    chain_id: int
    number: int
    timestamp: int
    coinbase: bytes
    gas_limit: int
    parent_hash: bytes
    difficulty: int = 0
    mix_hash: bytes = b"\x00" * 32  # prevRandao from Paris on
    base_fee_per_gas: Optional[int] = None  # London on
    excess_blob_gas: Optional[int] = None  # Cancun on
    parent_beacon_block_root: Optional[bytes] = None  # Cancun on
    # Hashes of earlier blocks, by number, for the BLOCKHASH opcode (up to 256 back).
    block_hashes: Mapping[int, bytes] = field(default_factory=dict)
    rules: ChainRules = LAMINAR_RULES

    @classmethod
    def of_header(
        cls, header: BlockHeaderAPI, vm_class: Type[VirtualMachineAPI], chain_id: int,
        block_hashes: Mapping[int, bytes], rules: ChainRules = LAMINAR_RULES,
    ) -> BlockEnv:
        """The environment the block with `header` runs in (fields a fork's header does not
        have yet, such as the base fee before London, are None)."""
        return cls(
            vm_class=vm_class,
            chain_id=chain_id,
            number=header.block_number,
            timestamp=header.timestamp,
            coinbase=header.coinbase,
            gas_limit=header.gas_limit,
            parent_hash=header.parent_hash,
            difficulty=header.difficulty,
            mix_hash=header.mix_hash,
            base_fee_per_gas=header_field(header, "base_fee_per_gas"),
            excess_blob_gas=header_field(header, "excess_blob_gas"),
            parent_beacon_block_root=header_field(header, "parent_beacon_block_root"),
            block_hashes=block_hashes,
            rules=rules,
        )


def header_field(header: BlockHeaderAPI, name: str) -> Any:
    """A header field, or None when the header's fork does not have it yet."""
    try:
        return getattr(header, name)
    except AttributeError:  # py-evm: a field of a later fork
        return None


@dataclass(frozen=True)
class BlockInput:
    """A block to execute: its environment and its ordered transactions."""

    env: BlockEnv
    transactions: Sequence[SignedTransactionAPI]
    withdrawals: Sequence[WithdrawalAPI] = ()
    # Proof-of-work rewards (mainnet replay only): uncle headers' (number, coinbase).
    apply_pow_rewards: bool = False
    uncles: Sequence[tuple[int, bytes]] = ()
    # How many uncles the block has, for the miner's nephew reward, when their headers are
    # unknown (replay from a block JSON that lists only uncle hashes): uncle rewards are
    # then skipped. None means len(uncles).
    uncle_count: Optional[int] = None
    # Senders recovered before execution (by the mempool: a proposer's transactions, and
    # a validator's when it imports a proposal of transactions it holds), by index; None
    # where unknown. The same hash means the same signature, hence the same sender.
    # Executors then need not recover them, and Block-STM routes each sender's
    # transactions to one worker.
    senders: Optional[Sequence[Optional[bytes]]] = None
    # Build the block's EIP-7928 access list while executing it (ExecutionResult.access_list).
    build_access_list: bool = False
    # The access list the block came with (an importer checks it and runs from it).
    access_list: Optional[BlockAccessList] = None

    def known_senders(self) -> list[Optional[bytes]]:
        if self.senders is None:
            return [None] * len(self.transactions)
        return list(self.senders)


def adopt_known_senders(block: BlockInput) -> None:
    """Give py-evm the senders recovered up front: it recovers `tx.sender` once per
    transaction object and caches it (a functools.cached_property), so an object that
    carries it is never recovered again, in this process or in a Block-STM worker that
    receives it pickled."""
    if block.senders is None:
        return
    for tx, sender in zip(block.transactions, block.senders):
        if sender is not None:
            tx.__dict__.setdefault("sender", sender)


@dataclass
class ExecutionStats:
    """What it cost: for logs, metrics and `laminar bench`."""

    executor: str
    transactions: int
    seconds: float  # the whole execute() call
    workers: int = 1
    # The two parts of `seconds`. Execution: running the transactions to their final
    # effects (receipts and state changes, in memory). Commit: folding those changes into
    # the state trie, the state root and the new nodes. Block-STM parallelises execution;
    # the commit tail is the same serial trie work for every executor.
    execution_seconds: float = 0.0
    commit_seconds: float = 0.0
    incarnations: int = 0  # Block-STM: executions including re-runs; sequential: = transactions
    fallback: bool = False  # Block-STM: the block ran on the sequential executor instead
    # Block-STM: contention made the block go on with one worker from this transaction on.
    narrowed_at: Optional[int] = None


@dataclass
class ExecutionResult:
    """The outcome of a block: receipts in transaction order and the new state."""

    receipts: tuple[ReceiptAPI, ...]
    gas_used: int
    logs_bloom: int
    post_state_root: bytes
    # New state nodes (trie nodes, contract code) keyed by hash; storage persists them.
    state_nodes: dict[bytes, bytes]
    stats: ExecutionStats
    # EIP-7685 execution-layer requests (Prague on): each is its type byte and data,
    # in type order, empty ones left out; the header commits to them as requestsHash.
    requests: tuple[bytes, ...] = ()
    # The block's EIP-7928 access list, when the block asked for it (build_access_list).
    access_list: Optional[BlockAccessList] = None


class InvalidBlockError(Exception):
    """A transaction in the block cannot be applied (bad nonce, no funds, gas over limit...).

    Carries the index of the offending transaction so a proposer can drop it and a
    validator can reject the proposal.
    """

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"transaction {index} is invalid: {reason}")
        self.index = index
        self.reason = reason


class BlockRuleError(Exception):
    """The block as a whole breaks a rule of its fork, not one transaction (a failed
    system call, a malformed deposit log): the block is invalid, nothing can be dropped."""


class Executor(Protocol):
    """Runs a block over a pre-state; pure with respect to the pre-state (writes nothing)."""

    name: str

    def execute(self, block: BlockInput, pre_state: StateView) -> ExecutionResult: ...
