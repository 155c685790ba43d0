"""The chain: wires storage and execution into propose / commit / read.

Consensus decides *when* and *what* to commit; `Chain` knows *how*: it builds a block
from ordered transactions with the configured executor (`propose`), persists it with its
state in one atomic batch (`commit`), and answers state reads at any committed block.
It holds no networking and no RPC.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import rlp
from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3, EMPTY_UNCLE_HASH, ZERO_HASH32
from eth.db.account import AccountDB
from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas
from eth.vm.forks.prague.headers import calc_excess_blob_gas_prague
from eth_hash.auto import keccak

from consensus.engine import BlockRejected
from execution.account_rlp import AccountFields
from execution.bal.apply import PostStateAccounts, apply_access_list, read_pre_account
from execution.bal.builder import AccessListUnsupported
from execution.bal.codec import AccessListDecodeError, BlockAccessList
from execution.bal.importer import describe_difference
from execution.blockstm.triereader import NodeMissing, decode_node
from execution.executor import (
    BlockEnv,
    BlockInput,
    BlockRuleError,
    ExecutionResult,
    ExecutionStats,
    Executor,
    InvalidBlockError,
    StateView,
)
from execution.forks import LAMINAR_VM
from execution.overlay import LayeredNodes, OverlayDB
from execution.prestate import load_prestate
from execution.roots import TransactionsRootInBackground, receipts_root, transactions_root
from node.blocks import LaminarBlock, LaminarBlockHeader
from node.genesis import Genesis
from storage.chain_store import BlockToCommit, ChainStore, TxLocation
from storage.leveldb import LevelDB

log = logging.getLogger(__name__)

BLOCKHASH_WINDOW = 256  # BLOCKHASH reaches this many blocks back
RECENT_STATS_BLOCKS = 64  # laminar_executionStats reports this many recent blocks
EIP7702_DELEGATION_PREFIX = b"\xef\x01\x00"
# Decoded trie nodes the chain keeps for its state readers and executionless sync.
DECODED_NODES_CACHED = 500_000
HASH_BYTES = 32
ACCESS_LIST_CACHE = 64  # decoded access lists kept (blocks of the heights in flight)
# The latest committed blocks and their receipts, kept decoded: RPC clients poll the head
# (a 1,400-transaction block took 0.1 s to decode for every eth_getBlockByNumber, and
# every receipt lookup decoded the block's whole receipt list).
RECENT_BLOCKS_CACHED = 16
# What the data dir's blocks look like; a data dir of another format is refused.
CHAIN_FORMAT = b"laminar/2: blocks carry EIP-7928 access lists"


def _show(value) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()[:16]
    return repr(value)


class GenesisMismatchError(RuntimeError):
    """The data dir holds a chain from another genesis than the one given."""


class InvalidProposalError(BlockRejected):
    """A block from another validator (a proposal, or a synced block) is not the block
    this node computes from the same parent and transactions; the message says which
    field differs or which check failed. Consensus sees it as `BlockRejected`."""


@dataclass
class Proposal:
    """A block built and executed but not yet committed."""

    block: BlockAPI
    result: ExecutionResult
    dropped: list[tuple[SignedTransactionAPI, str]] = field(default_factory=list)
    # Dev chain: tx hash -> sender of the block's impersonated transactions.
    impersonated: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def header(self) -> BlockHeaderAPI:
        return self.block.header


class SyncedBlocks:
    """Certified blocks imported one on top of the other but not written yet: block sync
    imports a batch this way and writes it with one synced batch (`Chain.write_blocks`).
    The next block of the batch reads its pre-state through the batch's new nodes."""

    def __init__(self, head: BlockHeaderAPI) -> None:
        self.parent = head  # what the next block must extend
        self.proposals: list[Proposal] = []
        self.certificates: list[bytes] = []
        self.nodes: dict[bytes, bytes] = {}  # every new state node of the batch
        self.hashes: dict[int, bytes] = {}  # number -> hash of the batch's blocks

    def add(self, proposal: Proposal, certificate: bytes) -> None:
        if proposal.header.parent_hash != self.parent.hash:
            raise RuntimeError("a synced block must extend the batch's last block")
        self.proposals.append(proposal)
        self.certificates.append(certificate)
        self.nodes.update(proposal.result.state_nodes)
        self.hashes[proposal.header.block_number] = proposal.header.hash
        self.parent = proposal.header


@dataclass
class AccountPatch:
    """Dev chain (anvil_set*): what to overwrite in one account; None keeps the value."""

    balance: Optional[int] = None
    nonce: Optional[int] = None
    code: Optional[bytes] = None
    storage: dict[int, int] = field(default_factory=dict)


StatePatch = dict[bytes, AccountPatch]  # address -> edits


def apply_state_patch(
    db: LevelDB, state_root: bytes, patch: StatePatch
) -> tuple[dict[bytes, bytes], bytes]:
    """The state `patch` makes of the state at `state_root`: (new nodes, new root).
    Nothing is written: the nodes are committed with the block whose header names the
    root, so no stored header ever disagrees with the state it points at."""
    overlay = OverlayDB(db)
    accounts = AccountDB(overlay, state_root)
    for address, edit in patch.items():
        if edit.balance is not None:
            accounts.set_balance(address, edit.balance)
        if edit.nonce is not None:
            accounts.set_nonce(address, edit.nonce)
        if edit.code is not None:
            accounts.set_code(address, edit.code)
        for slot, value in edit.storage.items():
            accounts.set_storage(address, slot, value)
    accounts.persist()
    root = accounts.state_root
    nodes = {key: value for key, value in overlay.pending().items() if len(key) == HASH_BYTES}
    return nodes, root


@dataclass(frozen=True)
class AccountState:
    balance: int
    nonce: int
    code: bytes


class StateReader:
    """Account reads at one state root, over the node's database (read-only).

    Accounts are read through the lean trie reader over a decoded-node cache the chain's
    readers share, and each account once per reader: the pool re-checks every sender's
    nonce, balance and code at every new head, and py-evm's account walk cost about
    100 us an account (40-90 ms of the event loop per block under load). Storage reads
    go through py-evm's AccountDB."""

    def __init__(
        self, db: LevelDB, state_root: bytes, decoded_nodes: Optional[dict[bytes, object]] = None,
    ) -> None:
        self._db = db
        self._state_root = state_root
        self._decoded = decoded_nodes if decoded_nodes is not None else {}
        self._read: dict[bytes, AccountFields] = {}
        self._account_db: Optional[AccountDB] = None

    def _node_of(self, node_hash: bytes) -> object:
        node = self._decoded.get(node_hash)
        if node is None:
            encoded = self._db.get(node_hash)
            if encoded is None:
                raise NodeMissing(node_hash)
            node = self._decoded[node_hash] = decode_node(encoded)
        return node

    def _account(self, address: bytes) -> AccountFields:
        fields = self._read.get(address)
        if fields is None:
            fields = self._read[address] = read_pre_account(self._node_of, self._state_root, address)
        return fields

    def get_balance(self, address: bytes) -> int:
        return self._account(address).balance

    def get_nonce(self, address: bytes) -> int:
        return self._account(address).nonce

    def get_code(self, address: bytes) -> bytes:
        code_hash = self._account(address).code_hash
        if code_hash == EMPTY_SHA3:
            return b""
        return self._db[code_hash]

    def has_code(self, address: bytes) -> bool:
        """True for contracts; an EIP-7702 delegation (0xef0100 || address) is not code here."""
        if self._account(address).code_hash == EMPTY_SHA3:
            return False
        return not self.get_code(address).startswith(EIP7702_DELEGATION_PREFIX)

    def get_storage(self, address: bytes, slot: int) -> int:
        if self._account_db is None:
            self._account_db = AccountDB(OverlayDB(self._db), self._state_root)
        return self._account_db.get_storage(address, slot)


class Chain:
    """One canonical chain over one LevelDB; every block is final once committed."""

    vm_class = LAMINAR_VM

    def __init__(self, db: LevelDB, executor: Executor, genesis: Genesis) -> None:
        self.db = db
        self.executor = executor
        self.genesis = genesis
        self.block_class = LaminarBlock
        self.header_class = LaminarBlockHeader
        self.store = ChainStore(db, LaminarBlock, self.vm_class.get_receipt_builder())
        # Decoded access lists of blocks decoded lately, by block hash (decode_block
        # checks them; import_block runs from them).
        self._access_lists: OrderedDict[bytes, BlockAccessList] = OrderedDict()
        # Header hash -> the transactions `decode_block` checked against its root (the
        # very tuple), so importing that block does not build the same root again.
        self._checked_transactions: OrderedDict[bytes, Sequence] = OrderedDict()
        self._decoded_nodes: dict[bytes, object] = {}  # executionless sync's node cache
        self._synced_accounts = PostStateAccounts()  # and its accounts (valid at one root)
        self._recent_blocks: OrderedDict[bytes, tuple[BlockAPI, tuple[ReceiptAPI, ...]]] = OrderedDict()
        self._head: BlockHeaderAPI = self._open()
        self._recent_hashes: deque[bytes] = deque(maxlen=BLOCKHASH_WINDOW)
        self._load_recent_hashes()
        # (height, ExecutionStats) of the last blocks this node executed itself.
        self.recent_stats: deque = deque(maxlen=RECENT_STATS_BLOCKS)
        self._commit_listeners: list[Callable[[BlockAPI, Sequence[ReceiptAPI]], None]] = []
        # Dev chain: senders of committed impersonated transactions (their signatures are
        # placeholders, so `tx.sender` must be given, not recovered).
        self._impersonated: dict[bytes, bytes] = self.store.impersonated_senders()
        self._sequential: Optional[Executor] = None

    # ---- opening --------------------------------------------------------------------

    def _genesis_config_bytes(self) -> bytes:
        return json.dumps(self.genesis.to_json(), sort_keys=True).encode()

    def _open(self) -> BlockHeaderAPI:
        head_hash = self.store.head_hash()
        if head_hash is None:
            return self._write_genesis()
        if self.store.get_format() != CHAIN_FORMAT:
            raise GenesisMismatchError(
                f"the data dir {self.db.path} was written by an earlier Laminar (its blocks "
                "have no access lists); start this version on a new --datadir"
            )
        stored = self.store.get_chain_config()
        if stored != self._genesis_config_bytes():
            raise GenesisMismatchError(
                f"the data dir {self.db.path} holds a chain made from a different genesis; "
                "use another --datadir, or start without --genesis to resume it"
            )
        header = self.store.get_header(head_hash)
        if header is None:
            raise RuntimeError(f"database corrupt: head block {head_hash.hex()} has no header")
        return header

    def _write_genesis(self) -> BlockHeaderAPI:
        prestate = {
            "0x" + address.hex(): {
                "balance": hex(account.balance),
                "nonce": account.nonce,
                "code": "0x" + account.code.hex(),
                "storage": {hex(k): hex(v) for k, v in account.storage.items()},
            }
            for address, account in self.genesis.alloc.items()
        }
        nodes, state_root = load_prestate(prestate)
        header = self.header_class(
            difficulty=0,
            block_number=0,
            gas_limit=self.genesis.gas_limit,
            timestamp=self.genesis.timestamp,
            coinbase=b"\x00" * 20,
            parent_hash=ZERO_HASH32,
            uncles_hash=EMPTY_UNCLE_HASH,
            state_root=state_root,
            transaction_root=BLANK_ROOT_HASH,
            receipt_root=BLANK_ROOT_HASH,
            bloom=0,
            gas_used=0,
            extra_data=self.genesis.extra_data,
            base_fee_per_gas=self.genesis.base_fee_per_gas,
        )
        block = self.block_class(header, [], [], [])
        self.store.commit_block(
            block, [], nodes, certificate=b"", chain_config=self._genesis_config_bytes(),
            chain_format=CHAIN_FORMAT,
        )
        log.info("wrote genesis block %s", "0x" + header.hash.hex())
        return header

    def _load_recent_hashes(self) -> None:
        first = max(0, self._head.block_number - BLOCKHASH_WINDOW + 1)
        for number in range(first, self._head.block_number + 1):
            block_hash = self.store.canonical_hash(number)
            if block_hash is None:
                raise RuntimeError(f"database corrupt: no canonical hash at height {number}")
            self._recent_hashes.append(block_hash)

    # ---- reads ----------------------------------------------------------------------

    @property
    def head(self) -> BlockHeaderAPI:
        return self._head

    @property
    def chain_id(self) -> int:
        return self.genesis.chain_id

    def header_by_number(self, number: int) -> Optional[BlockHeaderAPI]:
        if number > self._head.block_number or number < 0:
            return None
        block_hash = self.store.canonical_hash(number)
        return self.store.get_header(block_hash) if block_hash else None

    def header_by_hash(self, block_hash: bytes) -> Optional[BlockHeaderAPI]:
        """A committed block's header, once that block is the head or below it.

        A block is written (in a worker thread) before it becomes the head; in between it
        must stay invisible, or a reader could see a receipt in block N while the head,
        "latest" and header_by_number(N) still answer from block N-1.
        """
        header = self.store.get_header(block_hash)
        if header is None or header.block_number > self._head.block_number:
            return None
        return header

    def tx_location(self, tx_hash: bytes) -> Optional[TxLocation]:
        """Where a transaction was committed (same visibility rule as header_by_hash)."""
        location = self.store.get_tx_location(tx_hash)
        if location is None or self.header_by_hash(location.block_hash) is None:
            return None
        return location

    def block_by_hash(self, block_hash: bytes) -> Optional[BlockAPI]:
        recent = self._recent_blocks.get(block_hash)
        if recent is not None:
            return recent[0]
        block = self.store.get_block(block_hash)
        if block is not None and self._impersonated:
            for tx in block.transactions:
                sender = self._impersonated.get(bytes(tx.hash))
                if sender is not None:
                    tx.__dict__["sender"] = sender  # py-evm caches tx.sender there
        return block

    def receipts(self, block_hash: bytes) -> tuple[ReceiptAPI, ...]:
        recent = self._recent_blocks.get(block_hash)
        if recent is not None:
            return recent[1]
        return self.store.get_receipts(block_hash) or ()

    def state_at(self, header: BlockHeaderAPI) -> StateReader:
        return StateReader(self.db, header.state_root, self._node_cache())

    def _node_cache(self) -> dict[bytes, object]:
        """Decoded trie nodes by hash (content-addressed, so valid at every root), for
        the state readers and executionless sync; emptied when it grows past its cap."""
        if len(self._decoded_nodes) > DECODED_NODES_CACHED:
            self._decoded_nodes.clear()
        return self._decoded_nodes

    def head_state(self) -> StateReader:
        return self.state_at(self._head)

    def state_view(self, header: BlockHeaderAPI, synced: Optional[SyncedBlocks] = None) -> StateView:
        """The state after `header` (`synced`: a sync batch not written yet, whose new
        nodes are read before the database's)."""
        if synced is not None and synced.nodes:
            return StateView(LayeredNodes(synced.nodes, self.db), header.state_root)
        return StateView(self.db, header.state_root)

    def next_base_fee(self) -> int:
        return calculate_expected_base_fee_per_gas(self._head)

    def _hashes_before(self, number: int, synced: Optional[SyncedBlocks] = None) -> dict[int, bytes]:
        """Canonical hashes of the BLOCKHASH window below block `number` (`synced`: the
        blocks of a sync batch above the head, not written yet)."""
        if synced is not None and synced.hashes:
            hashes = self._hashes_before(self._head.block_number + 1)
            hashes.update(synced.hashes)
            return {n: h for n, h in hashes.items() if number - BLOCKHASH_WINDOW <= n < number}
        if number == self._head.block_number + 1:
            first = number - len(self._recent_hashes)
            return {first + i: h for i, h in enumerate(self._recent_hashes)}
        hashes = {}
        for n in range(max(0, number - BLOCKHASH_WINDOW), number):
            block_hash = self.store.canonical_hash(n)
            if block_hash is not None:
                hashes[n] = block_hash
        return hashes

    def env_for_child_of(
        self, parent: BlockHeaderAPI, timestamp: int, coinbase: bytes,
        synced: Optional[SyncedBlocks] = None,
    ) -> BlockEnv:
        """The environment of the block to build on `parent`."""
        return BlockEnv(
            vm_class=self.vm_class,
            chain_id=self.chain_id,
            number=parent.block_number + 1,
            timestamp=max(timestamp, parent.timestamp + 1),
            coinbase=coinbase,
            gas_limit=parent.gas_limit,
            parent_hash=parent.hash,
            difficulty=0,
            # prevRandao: no beacon chain here; derived from the parent so it is deterministic.
            mix_hash=keccak(parent.hash),
            base_fee_per_gas=calculate_expected_base_fee_per_gas(parent),
            excess_blob_gas=calc_excess_blob_gas_prague(parent),
            parent_beacon_block_root=ZERO_HASH32,
            block_hashes=self._hashes_before(parent.block_number + 1, synced),
        )

    def env_of(self, header: BlockHeaderAPI) -> BlockEnv:
        """The environment a committed block ran in (eth_call at that block uses it)."""
        return BlockEnv.of_header(
            header, self.vm_class, self.chain_id, self._hashes_before(header.block_number)
        )

    # ---- propose and commit -----------------------------------------------------------

    def propose(
        self,
        transactions: Sequence[SignedTransactionAPI],
        timestamp: Optional[int] = None,
        coinbase: bytes = b"\x00" * 20,
        parent: Optional[BlockHeaderAPI] = None,
        senders: Optional[Sequence[Optional[bytes]]] = None,
        state_patch: Optional[StatePatch] = None,
        impersonated: Optional[dict[bytes, bytes]] = None,
    ) -> Proposal:
        """Build and execute the next block; invalid transactions are dropped, not fatal.

        `parent` defaults to the head; give it when building from a worker thread while
        the head may move (the caller discards a block built on a stale parent).
        `senders`: the ones the mempool recovered, by index (see `BlockInput.senders`).
        Dev chain only: `state_patch` edits the parent's state before the block runs
        (the header's root includes the edits); `impersonated` (tx hash -> sender) names
        transactions whose signatures are placeholders: such a block runs on the
        sequential executor, in this process, where the given senders hold (Block-STM's
        workers would recover them from the placeholder signatures)."""
        parent = parent if parent is not None else self._head
        env = self.env_for_child_of(
            parent, int(timestamp if timestamp is not None else time.time()), coinbase
        )
        txs = list(transactions)
        known = list(senders) if senders is not None else [None] * len(txs)
        dropped: list[tuple[SignedTransactionAPI, str]] = []
        pre_state = self.state_view(parent)
        patch_nodes: dict[bytes, bytes] = {}
        if state_patch:
            patch_nodes, patched_root = apply_state_patch(self.db, parent.state_root, state_patch)
            pre_state = StateView(LayeredNodes(patch_nodes, self.db), patched_root)
        executor = self.executor
        background_root = TransactionsRootInBackground(txs)
        if impersonated:
            if self._sequential is None:
                from execution.sequential import SequentialExecutor

                self._sequential = SequentialExecutor()
            executor = self._sequential
        try:
            while True:
                try:
                    result = executor.execute(
                        BlockInput(env=env, transactions=txs, senders=known,
                                   build_access_list=True),
                        pre_state,
                    )
                    break
                except InvalidBlockError as exc:
                    dropped.append((txs[exc.index], exc.reason))
                    del txs[exc.index]
                    del known[exc.index]
        except BaseException:
            background_root.wait()  # no thread outlives the proposal
            raise
        access_list = self._access_list_of(result)
        tx_root = background_root.root(txs)
        receipt_root = receipts_root(result.receipts)
        header = self._make_header(
            env, coinbase, result, tx_root, receipt_root, access_list_hash=access_list.hash()
        )
        block = self.block_class(header, txs, [], [], access_list=access_list.encode())
        self._remember_access_list(header.hash, access_list)
        if patch_nodes:
            result.state_nodes = {**patch_nodes, **result.state_nodes}
        kept = {bytes(tx.hash) for tx in txs}
        return Proposal(
            block=block, result=result, dropped=dropped,
            impersonated={h: s for h, s in (impersonated or {}).items() if h in kept},
        )

    def _access_list_of(self, result: ExecutionResult) -> BlockAccessList:
        if result.access_list is None:
            raise RuntimeError(
                f"the {result.stats.executor} executor built no access list for the block"
            )
        return result.access_list

    def _remember_access_list(self, block_hash: bytes, access_list: BlockAccessList) -> None:
        self._access_lists[block_hash] = access_list
        while len(self._access_lists) > ACCESS_LIST_CACHE:
            self._access_lists.popitem(last=False)

    def access_list(self, block: BlockAPI) -> BlockAccessList:
        """A block's access list (decoded; its bytes were checked by decode_block or
        came from this node's own execution)."""
        known = self._access_lists.get(block.header.hash)
        if known is not None:
            return known
        return BlockAccessList.decode(block.access_list)

    def _make_header(
        self, env: BlockEnv, coinbase: bytes, result: ExecutionResult, tx_root: bytes,
        receipt_root: bytes, extra_data: bytes = b"", *, access_list_hash: bytes,
    ) -> BlockHeaderAPI:
        # A Laminar block's environment has every Cancun field (env_for_child_of).
        assert env.base_fee_per_gas is not None and env.excess_blob_gas is not None
        assert env.parent_beacon_block_root is not None
        return self.header_class(
            difficulty=0,
            block_number=env.number,
            gas_limit=env.gas_limit,
            timestamp=env.timestamp,
            coinbase=coinbase,
            parent_hash=env.parent_hash,
            uncles_hash=EMPTY_UNCLE_HASH,
            state_root=result.post_state_root,
            transaction_root=tx_root,
            receipt_root=receipt_root,
            bloom=result.logs_bloom,
            gas_used=result.gas_used,
            extra_data=extra_data,
            mix_hash=env.mix_hash,
            base_fee_per_gas=env.base_fee_per_gas,
            withdrawals_root=BLANK_ROOT_HASH,
            blob_gas_used=0,
            excess_blob_gas=env.excess_blob_gas,
            parent_beacon_block_root=env.parent_beacon_block_root,
            block_access_list_hash=access_list_hash,
        )

    # ---- blocks from other validators ---------------------------------------------------

    def decode_block(self, data: bytes) -> BlockAPI:
        """Decode a block's RLP and check that its body is the one its header commits to
        (transactions root, no uncles, no withdrawals, an access list in canonical form
        that hashes to blockAccessListHash), so the header hash names exactly these
        bytes' contents. Raises `InvalidProposalError` on any problem."""
        try:
            block = rlp.decode(bytes(data), sedes=self.block_class)
        except Exception as exc:  # attacker-controlled bytes: any decoder error
            raise InvalidProposalError(f"undecodable block: {type(exc).__name__}: {exc}") from None
        header = block.header
        if block.uncles:
            raise InvalidProposalError("block has uncles")
        if getattr(block, "withdrawals", ()):
            raise InvalidProposalError("block has withdrawals")
        if transactions_root(block.transactions) != header.transaction_root:
            raise InvalidProposalError("transactions do not match the header's transactions root")
        self._checked_transactions[header.hash] = block.transactions
        while len(self._checked_transactions) > ACCESS_LIST_CACHE:
            self._checked_transactions.popitem(last=False)
        if keccak(block.access_list) != header.block_access_list_hash:
            raise InvalidProposalError(
                "the access list does not hash to the header's blockAccessListHash"
            )
        try:
            access_list = BlockAccessList.decode(block.access_list)
        except AccessListDecodeError as exc:
            raise InvalidProposalError(f"undecodable access list: {exc}") from None
        self._remember_access_list(header.hash, access_list)
        return block

    def block_hash_of(self, data: bytes) -> bytes:
        """The hash a block's bytes are known by (consensus' `block_hash_of`)."""
        return self.decode_block(data).header.hash

    def import_block(
        self, block: BlockAPI, parent: Optional[BlockHeaderAPI] = None,
        senders: Optional[Sequence[Optional[bytes]]] = None,
        synced: Optional[SyncedBlocks] = None,
    ) -> Proposal:
        """Re-execute another validator's block on `parent` (default: the head, or the
        last block of `synced`, a sync batch not written yet) and check every header
        field this node can recompute. Returns the executed block, ready for
        `write_block`; raises `InvalidProposalError` naming what differs. `senders`: the
        ones this node's mempool recovered for the same transactions (or None)."""
        parent = parent if parent is not None else synced.parent if synced is not None else self._head
        header = block.header
        self._check_extends(header, parent)
        if block.uncles or getattr(block, "withdrawals", ()):
            raise InvalidProposalError("block has uncles or withdrawals")
        env = self.env_for_child_of(parent, header.timestamp, header.coinbase, synced)
        txs = list(block.transactions)
        given = self.access_list(block)
        try:
            # The bal executor runs every transaction from the list and checks it; any
            # other builds the list while it executes, and the two must be the same.
            result = self.executor.execute(
                BlockInput(env=env, transactions=txs, senders=senders, build_access_list=True,
                           access_list=given),
                self.state_view(parent, synced),
            )
        except InvalidBlockError as exc:
            raise InvalidProposalError(f"invalid transaction: {exc}") from None
        except BlockRuleError as exc:  # e.g. AccessListMismatch
            raise InvalidProposalError(f"block {header.block_number}: {exc}") from None
        built = self._access_list_of(result)
        if built != given:
            raise InvalidProposalError(
                f"block {header.block_number}: the block's access list is wrong: "
                + describe_difference(given, built)
            )
        if self._checked_transactions.get(header.hash) is block.transactions:
            tx_root = header.transaction_root  # decode_block built it from these
        else:
            tx_root = transactions_root(txs)
        receipt_root = receipts_root(result.receipts)
        expected = self._make_header(
            env, header.coinbase, result, tx_root, receipt_root, header.extra_data,
            access_list_hash=header.block_access_list_hash,
        )
        if expected.hash != header.hash:
            names = self.header_class._meta.field_names
            wrong = [
                f"{name} (got {_show(getattr(header, name))}, expected {_show(getattr(expected, name))})"
                for name in names if getattr(header, name) != getattr(expected, name)
            ]
            raise InvalidProposalError(
                f"block {header.block_number} 0x{header.hash.hex()[:16]}: wrong "
                + (", ".join(wrong) or "header encoding")
            )
        return Proposal(block=block, result=result)

    def apply_synced_block(
        self, block: BlockAPI, receipts_rlp: bytes, parent: Optional[BlockHeaderAPI] = None,
        synced: Optional[SyncedBlocks] = None,
    ) -> Proposal:
        """A certified block, without executing it: its access list applied to the parent
        state must give the header's state root, and the served receipts must be the
        ones the header commits to (receipts root, bloom, gas). The caller has verified
        the block's commit certificate: 2f+1 validators executed it. Raises
        `InvalidProposalError` naming what differs. `parent` and `synced` as for
        `import_block`."""
        started = time.perf_counter()
        parent = parent if parent is not None else synced.parent if synced is not None else self._head
        header = block.header
        self._check_extends(header, parent)
        try:
            receipts = self.store.decode_receipts(receipts_rlp)
        except Exception as exc:  # peer bytes: any decoder error
            raise InvalidProposalError(f"block {header.block_number}: undecodable receipts: "
                                       f"{type(exc).__name__}: {exc}") from None
        if len(receipts) != len(block.transactions):
            raise InvalidProposalError(
                f"block {header.block_number}: {len(receipts)} receipts for "
                f"{len(block.transactions)} transactions"
            )
        if receipts_root(receipts) != header.receipt_root:
            raise InvalidProposalError(
                f"block {header.block_number}: the receipts do not match the receipts root"
            )
        bloom = 0
        for receipt in receipts:
            bloom |= int(receipt.bloom)
        gas_used = receipts[-1].gas_used if receipts else 0
        if bloom != header.bloom or gas_used != header.gas_used:
            raise InvalidProposalError(
                f"block {header.block_number}: the receipts' bloom or gas differ from the header"
            )
        try:
            applied = apply_access_list(
                self.access_list(block), self.vm_class, self.state_view(parent, synced),
                self._node_cache(), self._synced_accounts,
            )
        except AccessListUnsupported as exc:
            raise InvalidProposalError(f"block {header.block_number}: {exc}") from None
        if applied.post_state_root != header.state_root:
            raise InvalidProposalError(
                f"block {header.block_number}: its access list gives state root "
                f"{_show(applied.post_state_root)}, the header says {_show(header.state_root)}"
            )
        seconds = time.perf_counter() - started
        result = ExecutionResult(
            receipts=receipts,
            gas_used=gas_used,
            logs_bloom=bloom,
            post_state_root=applied.post_state_root,
            state_nodes=applied.state_nodes,
            stats=ExecutionStats(
                executor="bal-sync", transactions=len(block.transactions), seconds=seconds,
                commit_seconds=applied.seconds, execution_seconds=seconds - applied.seconds,
                incarnations=0,
            ),
            access_list=self.access_list(block),
        )
        return Proposal(block=block, result=result)

    def _check_extends(self, header: BlockHeaderAPI, parent: BlockHeaderAPI) -> None:
        if header.parent_hash != parent.hash:
            raise InvalidProposalError(
                f"block {header.block_number} does not extend the head "
                f"#{parent.block_number} 0x{parent.hash.hex()[:16]}"
            )
        if header.block_number != parent.block_number + 1:
            raise InvalidProposalError(
                f"block number {header.block_number}, expected {parent.block_number + 1}"
            )
        if header.timestamp <= parent.timestamp:
            raise InvalidProposalError(
                f"timestamp {header.timestamp} is not after the parent's {parent.timestamp}"
            )

    def write_block(self, proposal: Proposal, certificate: bytes) -> None:
        """The durable part of a commit (blocking I/O; may run in a worker thread)."""
        if proposal.header.parent_hash != self._head.hash:
            raise RuntimeError("proposal does not extend the current head")
        self.store.commit_block(
            proposal.block, proposal.result.receipts, proposal.result.state_nodes, certificate,
            impersonated=proposal.impersonated,
        )

    def begin_sync_batch(self) -> SyncedBlocks:
        """An empty sync batch on the current head (`import_block`/`apply_synced_block`
        with `synced=`, then `write_blocks`)."""
        return SyncedBlocks(self._head)

    def write_blocks(self, synced: SyncedBlocks) -> None:
        """The durable part of committing a sync batch: every block of it, in one synced
        batch (blocking I/O; may run in a worker thread). Then `advance_head` each."""
        if not synced.proposals:
            return
        if synced.proposals[0].header.parent_hash != self._head.hash:
            raise RuntimeError("sync batch does not extend the current head")
        self.store.commit_blocks([
            BlockToCommit(proposal.block, proposal.result.receipts, proposal.result.state_nodes,
                          certificate, proposal.impersonated)
            for proposal, certificate in zip(synced.proposals, synced.certificates)
        ])

    def rewind_to(self, number: int) -> list[bytes]:
        """Dev chain (evm_revert): make canonical block `number` the head again, on disk
        in one synced batch, then in memory. The caller keeps block production out
        meanwhile. Returns the hashes of the transactions of the removed blocks."""
        if not 0 <= number <= self._head.block_number:
            raise ValueError(f"no block {number} at or below the head")
        removed = self.store.rewind_to(number, self._head.block_number)
        for tx_hash in removed:
            self._impersonated.pop(tx_hash, None)
        head_hash = self.store.canonical_hash(number)
        assert head_hash is not None  # rewind_to checked it
        header = self.store.get_header(head_hash)
        assert header is not None
        self._head = header
        self._recent_hashes.clear()
        self._load_recent_hashes()
        self.recent_stats.clear()
        self._recent_blocks.clear()
        return removed

    def advance_head(self, proposal: Proposal) -> None:
        """Make a written block the head in memory and tell listeners (trio thread)."""
        self._impersonated.update(proposal.impersonated)
        self._head = proposal.header
        self._recent_hashes.append(proposal.header.hash)
        self._recent_blocks[proposal.header.hash] = (proposal.block, tuple(proposal.result.receipts))
        while len(self._recent_blocks) > RECENT_BLOCKS_CACHED:
            self._recent_blocks.popitem(last=False)
        self.recent_stats.append((proposal.header.block_number, proposal.result.stats))
        for listener in self._commit_listeners:
            try:
                listener(proposal.block, proposal.result.receipts)
            except Exception:  # a listener bug must not stop the chain
                log.exception("commit listener failed")

    def committed_block(self, number: int) -> Optional[tuple[bytes, bytes, bytes]]:
        """(block RLP, commit certificate, receipts RLP) of canonical height `number`,
        for block sync."""
        block_hash = self.store.canonical_hash(number)
        if block_hash is None:
            return None
        block = self.store.get_block(block_hash)
        certificate = self.store.get_certificate(block_hash)
        receipts = self.store.get_receipts_rlp(block_hash)
        if block is None or not certificate or receipts is None:
            return None
        return rlp.encode(block), certificate, receipts

    def on_commit(self, listener: Callable[[BlockAPI, Sequence[ReceiptAPI]], None]) -> None:
        self._commit_listeners.append(listener)
