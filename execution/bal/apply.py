"""Applying a block's access list to the state without executing it (executionless sync).

The list holds the value after the block of every location the block changed; folding
them into the pre-state trie gives the post-state root and its new nodes, with no EVM at
all. The caller must trust the list: a node behind the chain does, for a block whose
2f+1 commit certificate vouches for the header, because the header commits to the list
(blockAccessListHash) and to the post-state root, which the fold must reproduce.

Existence follows EIP-161 (an account the block changed exists unless it ends empty),
so blocks before Byzantium (Spurious Dragon's rules and a root in every receipt) cannot
be applied this way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

import rlp
from eth.abc import VirtualMachineAPI
from eth.rlp.accounts import Account
from eth.vm.forks import ByzantiumVM
from eth_hash.auto import keccak

from execution.bal.builder import AccessListUnsupported
from execution.bal.codec import BlockAccessList
from execution.bal.importer import writes_by_index
from execution.blockstm.state import fold_write_set
from execution.blockstm.triereader import decode_node, lookup
from execution.executor import StateView
from execution.locations import EXI
from execution.overlay import OverlayDB
from execution.state_db import BatchedAccountDB


@dataclass
class AppliedBlock:
    post_state_root: bytes
    state_nodes: dict[bytes, bytes]  # new trie nodes and code, for storage to persist
    seconds: float


class _AccountState:
    """What `fold_write_set` needs of a state: its account DB."""

    def __init__(self, account_db: BatchedAccountDB) -> None:
        self._account_db = account_db

    def lock_changes(self) -> None:
        self._account_db.lock_changes()


# Decoded trie nodes kept across calls (content-addressed: valid under any root); a
# syncing node applies block after block over the same upper trie.
DECODED_NODE_CACHE_LIMIT = 500_000


def apply_access_list(access_list: BlockAccessList, vm_class: type[VirtualMachineAPI],
                      pre_state: StateView,
                      decoded: Optional[dict[bytes, Any]] = None) -> AppliedBlock:
    """The post-state of a block from its access list alone. `decoded`: a cache of
    decoded trie nodes by hash, kept by the caller across blocks."""
    if not issubclass(vm_class, ByzantiumVM):
        raise AccessListUnsupported(
            f"a {vm_class.fork} block cannot be applied from its access list "
            "(existence of empty accounts and per-receipt roots came before Byzantium)"
        )
    started = time.perf_counter()
    nodes = pre_state.nodes
    if decoded is None or len(decoded) > DECODED_NODE_CACHE_LIMIT:
        decoded = {} if decoded is None else decoded
        decoded.clear()

    def node_of(key: bytes) -> Any:
        node = decoded.get(key)
        if node is None:
            node = decoded[key] = decode_node(nodes[key])
        return node

    accounts: dict[bytes, Account] = {}

    def pre_account(address: bytes) -> Account:
        encoded = lookup(node_of, pre_state.state_root, keccak(address))
        account = rlp.decode(encoded, sedes=Account) if encoded else Account()
        accounts[address] = account
        return account

    codes: dict[bytes, bytes] = {}
    by_index: dict[int, dict] = {}
    for changes in access_list.accounts:
        for index, writes in writes_by_index(changes, pre_account, codes).items():
            by_index.setdefault(index, {}).update(writes)

    db = OverlayDB(nodes)
    account_db = BatchedAccountDB(db, pre_state.state_root)
    account_db._account_cache = dict(accounts)  # pre-state accounts, read once above
    state = _AccountState(account_db)
    deletes = any(value is False and key[20:] == EXI
                  for writes in by_index.values() for key, value in writes.items())
    if deletes:  # an account deleted (and maybe made again): index by index
        for index in sorted(by_index):
            state.lock_changes()
            fold_write_set(state, by_index[index], {}, codes)
    else:
        final: dict = {}
        for index in sorted(by_index):
            final.update(by_index[index])
        fold_write_set(state, final, {}, codes)
    account_db.persist()
    return AppliedBlock(
        post_state_root=account_db.state_root,
        state_nodes=db.pending(),
        seconds=time.perf_counter() - started,
    )
