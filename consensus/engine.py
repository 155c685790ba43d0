"""The consensus stage's whole contract: what its engines need of the node, declared here
by the consumer (as CometBFT's `State` declares `blockExec`, `txNotifier`, `evpool`), and
what an engine offers the node.

Data flows one way: the mempool feeds the engine (`TransactionSource`), the engine
orders transactions into blocks that the chain executes and persists (`BlockChain`),
and it talks to the other validators through a port of the network layer
(`ConsensusNetwork`). Nothing in this package imports the node, the RPC or p2p: the
node wires a `node.chain.Chain`, a `node.mempool.Mempool` and an adapter of
`p2p.service.P2PService` (node/consensus_port.py) into these protocols.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Protocol, Sequence, TypeVar

import trio
from eth.abc import BlockAPI, BlockHeaderAPI, SignedTransactionAPI

if TYPE_CHECKING:
    # trio's own TaskStatus is hidden from mypy by trio-typing's trio-stubs (a libp2p
    # dependency), which take precedence over trio's inline types and do not re-export it.
    from trio_typing import TaskStatus


class BlockRejected(Exception):
    """A block this node will not accept (a proposal, or a synced block): it is not the
    block this node computes from the same parent and transactions, or it cannot be
    decoded; the message says which field differs or which check failed."""


class PeerRequestFailed(Exception):
    """A request to a peer (its status, blocks) failed: timeout, reset, remote error."""


class Verdict(enum.Enum):
    """What consensus says of a gossiped message, for the network to act on."""

    ACCEPT = "accept"  # deliver and forward
    IGNORE = "ignore"  # drop without blame (stale, from the future, inbox full)
    REJECT = "reject"  # drop and count it against the peer that forwarded it


class ExecutedBlock(Protocol):
    """A block built or re-executed on a parent, ready to be written with a certificate."""

    @property
    def block(self) -> BlockAPI: ...

    @property
    def header(self) -> BlockHeaderAPI: ...

    @property
    def dropped(self) -> Sequence[tuple[SignedTransactionAPI, str]]: ...


# The chain's own executed-block type (node.chain.Proposal): what `propose` and
# `import_block` return is what `write_block` and `advance_head` take.
ExecutedT = TypeVar("ExecutedT", bound=ExecutedBlock)


class SyncBatch(Protocol[ExecutedT]):
    """Certified blocks imported one on top of the other, written together
    (node.chain.SyncedBlocks implements it)."""

    @property
    def parent(self) -> BlockHeaderAPI:
        """What the batch's next block must extend (the head while it is empty)."""

    @property
    def proposals(self) -> Sequence[ExecutedT]: ...

    def add(self, executed: ExecutedT, certificate: bytes) -> None: ...


class BlockChain(Protocol[ExecutedT]):
    """The chain as consensus sees it (node.chain.Chain implements it)."""

    @property
    def head(self) -> BlockHeaderAPI: ...

    @property
    def chain_id(self) -> int: ...

    def next_base_fee(self) -> int: ...

    def propose(
        self, transactions: Sequence[SignedTransactionAPI], timestamp: Optional[int] = None,
        coinbase: bytes = ..., parent: Optional[BlockHeaderAPI] = None,
        senders: Optional[Sequence[Optional[bytes]]] = None,
        state_patch: Any = None, impersonated: Optional[dict[bytes, bytes]] = None,
    ) -> ExecutedT:
        """Build and execute a block on `parent` (default: the head); invalid
        transactions are dropped (`ExecutedBlock.dropped`), never fatal. The dev chain
        alone gives `state_patch` and `impersonated` (see node.chain.Chain.propose)."""

    def decode_block(self, data: bytes) -> BlockAPI:
        """A block from a peer's bytes; BlockRejected when they are not one."""

    def import_block(
        self, block: BlockAPI, parent: Optional[BlockHeaderAPI] = None,
        senders: Optional[Sequence[Optional[bytes]]] = None,
        synced: Any = None,  # a batch from `begin_sync_batch` (the chain's own type)
    ) -> ExecutedT:
        """Re-execute another validator's block (on `synced`'s last block, when given);
        BlockRejected naming what differs."""

    def write_block(self, executed: ExecutedT, certificate: bytes) -> None:
        """Persist a block with its commit certificate (blocking I/O: a worker thread)."""

    def advance_head(self, executed: ExecutedT) -> None:
        """Make a written block the head (on the trio thread)."""

    def committed_block(self, number: int) -> Optional[tuple[bytes, bytes, bytes]]:
        """(block RLP, certificate, receipts RLP) of a committed height, for block sync
        to serve."""

    def apply_synced_block(
        self, block: BlockAPI, receipts: bytes, parent: Optional[BlockHeaderAPI] = None,
        synced: Any = None,  # a batch from `begin_sync_batch`
    ) -> ExecutedT:
        """A certified block from its access list, without executing it; BlockRejected
        when the list does not give the header's state root or the receipts do not
        match the header."""

    def begin_sync_batch(self) -> SyncBatch[ExecutedT]:
        """An empty batch of synced blocks on the head."""

    def write_blocks(self, synced: Any) -> None:  # a batch from `begin_sync_batch`
        """Persist a sync batch in one synced write (blocking I/O: a worker thread);
        then `advance_head` each of its blocks."""


class TransactionSource(Protocol):
    """The mempool as consensus sees it."""

    async def wait_for_transactions(self) -> None: ...

    def selection(
        self, base_fee: int, gas_limit: int, max_txs: Optional[int] = None
    ) -> Callable[[], list[SignedTransactionAPI]]:
        """The next block's pick over a snapshot of the pool taken now; call it in a
        worker thread (a big pool's pick would hold the event loop)."""

    def senders_of(
        self, transactions: Sequence[SignedTransactionAPI]
    ) -> list[Optional[bytes]]:
        """The senders the pool already recovered for these transactions (same hash),
        None where it holds none: execution need not recover them again."""


class DevTransactionSource(TransactionSource, Protocol):
    """The mempool as the dev chain's producer sees it (automine, interval mining,
    impersonated transactions)."""

    @property
    def new_tx_event(self) -> trio.Event: ...

    def has_executable(self) -> bool: ...

    def impersonated_senders(
        self, transactions: Sequence[SignedTransactionAPI]
    ) -> dict[bytes, bytes]:
        """tx hash -> sender for those of `transactions` sent unsigned (impersonated)."""


MessageHandler = Callable[[bytes, Any], Verdict]
StatusServer = Callable[[], Awaitable[bytes]]
BlocksServer = Callable[[int, int], Awaitable[list[bytes]]]


class ConsensusNetwork(Protocol):
    """The network as consensus sees it: one gossip topic, peers, and block sync."""

    def on_message(self, handler: MessageHandler) -> None:
        """`handler(payload, peer) -> Verdict`, synchronous, once per gossiped message."""

    async def publish(self, payload: bytes) -> None: ...

    def peers(self) -> list[Any]:
        """Connected peers consensus may talk to (not banned)."""

    def penalize(self, peer: Any, reason: str) -> None: ...

    def serve_sync(self, status: StatusServer, blocks: BlocksServer) -> None: ...

    async def request_status(self, peer: Any) -> bytes:
        """PeerRequestFailed on failure."""

    async def request_blocks(self, peer: Any, first: int, count: int) -> list[bytes]:
        """PeerRequestFailed on failure."""


# Test harnesses may give the reactor an outbound hook: every message it publishes (just
# signed, or re-sent when the round makes no progress) goes through it, and what it
# returns is published instead, in order (a Byzantine validator in tests/ sends two
# proposals; the shipped node installs none).
OutboundHook = Callable[[Any], Awaitable[Sequence[Any]]]


@dataclass(frozen=True)
class OutboundContext:
    """What an outbound hook may use: the chain, this validator's key, and the lock that
    keeps block executions one at a time."""

    chain: BlockChain[Any]
    chain_id: int
    private_key: Optional[bytes]
    address: Optional[bytes]
    execution_lock: trio.Lock
    # Register a block the hook executed, so that committing it needs no re-execution.
    remember_executed: Callable[[bytes, ExecutedBlock], None]


class ConsensusEngine(Protocol):
    """An engine: the single validator, or BFT among several (consensus/bft.py)."""

    @property
    def address(self) -> Optional[bytes]:
        """This node's validator address; None for an observer."""

    def status(self) -> dict:
        """For laminar_consensusState and the devnet view: mode, height, round, ..."""

    def describe(self) -> str:
        """One line for the start-up banner."""

    def bad_blocks(self) -> list:
        """Proposals from other validators this node refused after executing them, oldest
        first (debug_getBadBlocks)."""

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Order and commit blocks until cancelled."""
