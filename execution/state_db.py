"""py-evm's account and storage databases, with their tries updated once per state root.

py-evm applies a block's account changes (and each contract's storage changes) to its
`HexaryTrie` one key at a time, re-encoding and re-hashing the path to the root for
every key: for a block of 2,000 transfers that was 1.4 s, as long as running the
transactions. These subclasses keep py-evm's journals, caches, reverts and storage
wipes exactly as they are and change only the last step: the changed keys of one state
root go to the trie in one batch (`execution.trie.update_trie`), so each changed node
is encoded and hashed once.

Both executors build their py-evm state through `batched_state_class`, so they share
this path; `tests/test_state_db.py` checks it against py-evm's own. `make_state_root`
repeats py-evm 0.12.1b1's own steps around the trie update and uses its private
attributes: an upgrade of py-evm must re-check them (the tests will say if they differ).
"""

from __future__ import annotations

import functools
from typing import Any, Optional

from eth.abc import AccountStorageDatabaseAPI, AtomicDatabaseAPI, DatabaseAPI, StateAPI
from eth.constants import BLANK_ROOT_HASH
from eth.db.account import AccountDB
from eth.db.cache import CacheDB
from eth.db.journal import JournalDB
from eth.db.storage import AccountStorageDB, StorageLookup
from eth_hash.auto import keccak
from eth_typing import Address, Hash32
from eth_utils import get_extended_debug_logger

from execution.trie import update_trie


class BatchedStorageLookup(StorageLookup):
    """A contract's storage trie whose writes wait in a buffer until a root is needed."""

    _pending: dict[bytes, Optional[bytes]]  # hashed slot -> new value (None: deleted)

    def _initialize_to_root_hash(self, root_hash: Hash32) -> None:
        super()._initialize_to_root_hash(root_hash)
        self._pending = {}

    def __getitem__(self, key: bytes) -> bytes:
        hashed_slot = self._decode_key(key)
        if hashed_slot in self._pending:
            value = self._pending[hashed_slot]
            if value is None:
                raise KeyError(key)
            return value
        return super().__getitem__(key)

    def _exists(self, key: bytes) -> bool:
        hashed_slot = self._decode_key(key)
        if hashed_slot in self._pending:
            return self._pending[hashed_slot] is not None
        return super()._exists(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._get_write_trie()  # a write makes the root "changed", as in py-evm
        self._pending[self._decode_key(key)] = value

    def __delitem__(self, key: bytes) -> None:
        self._get_write_trie()
        self._pending[self._decode_key(key)] = None

    def _flush(self) -> None:
        if not self._pending:
            return
        trie = self._get_write_trie()
        nodes_batch = self._trie_nodes_batch
        root, nodes = update_trie(trie.root_hash, nodes_batch.__getitem__, self._pending)
        for node_hash, encoded in nodes.items():
            nodes_batch[node_hash] = encoded
        trie.root_hash = root
        self._pending = {}

    def get_changed_root(self) -> Hash32:
        self._flush()
        return super().get_changed_root()

    def commit_to(self, db: DatabaseAPI) -> None:
        self._flush()
        super().commit_to(db)

    def new_trie(self) -> int:
        self._flush()  # the buffered writes belong to the trie being put aside
        return super().new_trie()

    def rollback_trie(self, trie_index: int) -> None:
        self._pending = {}  # they belonged to the trie being dropped
        super().rollback_trie(trie_index)


class BatchedAccountStorageDB(AccountStorageDB):
    """py-evm's `AccountStorageDB` over a `BatchedStorageLookup`."""

    def __init__(self, db: AtomicDatabaseAPI, storage_root: Hash32, address: Address) -> None:
        super().__init__(db, storage_root, address)
        # The same pipe as py-evm's (lookup -> cache -> locked changes -> journal).
        self._storage_lookup = BatchedStorageLookup(db, storage_root, address)
        self._storage_cache = CacheDB(self._storage_lookup)
        self._locked_changes = JournalDB(self._storage_cache)
        self._journal_storage = JournalDB(self._locked_changes)


class StorageCollisionRule:
    """EIP-7610 (retroactive to Frontier): creating a contract where an account already has
    storage collides, as it does where there is code or a nonce. py-evm checks code and
    nonce only; both executors' states mix this in before the fork's py-evm state.

    Within a block an address only gains storage by running code that gives it a nonce or
    code, so the storage that matters is the pre-state's (less what the block wiped)."""

    # Set by the py-evm State this is mixed into (BatchedAccountDB, or Block-STM's TxDB).
    _account_db: Any

    def has_code_or_nonce(self, address: Address) -> bool:  # py-evm's collision check
        # misc: the superclass is the py-evm State it is mixed into (batched_state_class,
        # blockstm_state_class), which mypy cannot see from this class alone.
        return (
            super().has_code_or_nonce(address)  # type: ignore[misc]
            or self._account_db.account_has_storage(address)
        )


class BatchedAccountDB(AccountDB):
    """py-evm's `AccountDB`, applying each state root's account changes in one batch."""

    state_root: Hash32  # AccountDB's property (py-evm's own annotations are not followed)

    def account_has_storage(self, address: Address) -> bool:
        """A non-empty storage root (deleting an account or its storage empties it)."""
        return self._get_storage_root(address) != BLANK_ROOT_HASH

    def _get_address_store(self, address: Address) -> AccountStorageDatabaseAPI:
        store = self._account_stores.get(address)
        if store is None:
            storage_root = self._get_storage_root(address)
            store = BatchedAccountStorageDB(self._raw_store_db, storage_root, address)
            self._account_stores[address] = store
        return store

    def make_state_root(self) -> Hash32:
        # As AccountDB.make_state_root, up to applying the account diff to the trie.
        for _address, store in self._dirty_account_stores():
            store.make_storage_root()
        for address, storage_root in self._get_changed_roots():
            if self.account_exists(address) or storage_root != BLANK_ROOT_HASH:
                self._set_storage_root(address, storage_root)
        self._journaldb.persist()

        diff = self._journaltrie.diff()
        changes: dict[bytes, Optional[bytes]] = {
            keccak(address): None for address in diff.deleted_keys()
        }
        changes.update((keccak(address), rlp_account) for address, rlp_account in
                       diff.pending_items())
        if changes:
            # Nothing changes unless the whole batch applies (update_trie is pure).
            root, nodes = update_trie(self.state_root, self._batchtrie.__getitem__, changes)
            for node_hash, encoded in nodes.items():
                self._batchtrie[node_hash] = encoded
            self.state_root = root
        self._journaltrie.reset()
        self._trie_cache.reset_cache()
        return self.state_root


def laminar_state_class(prefix: str, state_class: type[StateAPI], namespace: dict[str, Any]) -> type:
    """`state_class` (a fork's py-evm State) named `prefix` + its name, with
    `StorageCollisionRule` mixed in and `namespace` (its account DB, overrides) set.

    The class gets its logger once. py-evm's `State.logger` is a property that looks the
    logger up again on every access: a logger-class swap under logging's lock, a few times
    per transaction even with debug logging off. That was 8% of a transfer's execution in
    a Block-STM worker. The name is the one py-evm's property would give."""
    name = prefix + state_class.__name__
    logger = get_extended_debug_logger(f"eth.vm.state.{name}")
    return type(name, (StorageCollisionRule, state_class), {**namespace, "logger": logger})


@functools.cache
def batched_state_class(state_class: type[StateAPI]) -> type[StateAPI]:
    """`state_class` (a fork's py-evm State) over `BatchedAccountDB`."""
    return laminar_state_class("Batched", state_class, {"account_db_class": BatchedAccountDB})
