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
from typing import Any, Callable, Optional

from eth.abc import VirtualMachineAPI
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3
from eth.rlp.accounts import Account
from eth.vm.forks import ByzantiumVM
from eth_hash.auto import keccak

from execution.account_rlp import (
    AccountFields,
    decode_account_fields,
    encode_account,
    encode_storage_value,
)
from execution.bal.builder import AccessListUnsupported
from execution.bal.codec import AccountChanges, BlockAccessList
from execution.bal.importer import writes_by_index
from execution.blockstm.state import fold_write_set
from execution.blockstm.triereader import decode_node, lookup
from execution.executor import StateView
from execution.overlay import OverlayDB
from execution.state_db import BatchedAccountDB
from execution.trie import update_trie


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
SLOT_BYTES = 32
NO_ACCOUNT = AccountFields(0, 0, BLANK_ROOT_HASH, EMPTY_SHA3)  # what an absent account reads as


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

    accounts: dict[bytes, AccountFields] = {}

    def pre_account(address: bytes) -> AccountFields:
        encoded = lookup(node_of, pre_state.state_root, keccak(address))
        account = decode_account_fields(encoded) if encoded else NO_ACCOUNT
        accounts[address] = account
        return account

    finals = []
    for changes in access_list.accounts:
        if changes.has_changes():
            final = final_account(changes, pre_account(changes.address))
            if final is None:  # emptied at some index: deleted, maybe made again
                return _apply_index_by_index(access_list, pre_state, pre_account, accounts, started)
            finals.append(final)
    return _fold_final_values(finals, pre_state, decoded, started)


@dataclass(frozen=True)
class FinalAccount:
    """An account as the block leaves it, from the last change of each field."""

    address: bytes
    pre: AccountFields
    balance: int
    nonce: int
    code_hash: bytes
    code: Optional[bytes]  # new code, when the block changed it
    slots: dict[int, int]  # slot -> value after the block (0: cleared)

    @property
    def exists(self) -> bool:  # EIP-161: an account the block changed exists unless empty
        return self.nonce != 0 or self.balance != 0 or self.code_hash != EMPTY_SHA3


def final_account(changes: AccountChanges, pre: AccountFields) -> Optional[FinalAccount]:
    """The account after the block; None when some index leaves it empty (EIP-161 deletes
    it there, and what follows must start from nothing: `_apply_index_by_index`)."""
    balances = {c.index: c.balance for c in changes.balance_changes}
    nonces = {c.index: c.nonce for c in changes.nonce_changes}
    codes = {c.index: c.code for c in changes.code_changes}
    indexes = sorted(set(balances) | set(nonces) | set(codes)
                     | {c.index for slot in changes.storage_changes for c in slot.changes})
    balance, nonce, code_hash, code = pre.balance, pre.nonce, pre.code_hash, None
    for index in indexes:
        balance = balances.get(index, balance)
        nonce = nonces.get(index, nonce)
        if index in codes:
            code = codes[index]
            code_hash = keccak(code)
        if nonce == 0 and balance == 0 and code_hash == EMPTY_SHA3:
            return None
    slots = {slot.slot: slot.changes[-1].value for slot in changes.storage_changes}
    return FinalAccount(changes.address, pre, balance, nonce, code_hash, code, slots)


def _fold_final_values(finals: list[FinalAccount], pre_state: StateView, decoded: dict[bytes, Any],
                       started: float) -> AppliedBlock:
    """Each changed storage trie, then the account trie, updated once from the final
    values (`execution.trie.update_trie`), sharing the decoded-node cache of the reads."""
    read = pre_state.nodes.__getitem__
    new_nodes: dict[bytes, bytes] = {}
    account_changes: dict[bytes, Optional[bytes]] = {}
    for final in finals:
        storage_root = final.pre.storage_root
        if final.slots:
            storage_changes = {
                keccak(slot.to_bytes(SLOT_BYTES, "big")): encode_storage_value(value) if value else None
                for slot, value in final.slots.items()
            }
            storage_root, created = update_trie(storage_root, read, storage_changes, decoded)
            new_nodes.update(created)
        if final.code:
            new_nodes[final.code_hash] = final.code
        account_changes[keccak(final.address)] = (
            encode_account(final.nonce, final.balance, storage_root, final.code_hash)
            if final.exists else None
        )
    root, created = update_trie(pre_state.state_root, read, account_changes, decoded)
    new_nodes.update(created)
    return AppliedBlock(post_state_root=root, state_nodes=new_nodes, seconds=time.perf_counter() - started)


def _apply_index_by_index(access_list: BlockAccessList, pre_state: StateView,
                          pre_account: Callable[[bytes], AccountFields],
                          accounts: dict[bytes, AccountFields], started: float) -> AppliedBlock:
    """The general fold: Block-STM's write sets index by index over py-evm's account DB
    (an account deleted at one index and changed again at a later one)."""
    nodes = pre_state.nodes
    codes: dict[bytes, bytes] = {}
    by_index: dict[int, dict] = {}
    for changes in access_list.accounts:
        for index, writes in writes_by_index(changes, pre_account, codes).items():
            by_index.setdefault(index, {}).update(writes)

    db = OverlayDB(nodes)
    account_db = BatchedAccountDB(db, pre_state.state_root)
    # pre-state accounts, read once above
    account_db._account_cache = {address: Account(*fields) for address, fields in accounts.items()}
    state = _AccountState(account_db)
    for index in sorted(by_index):
        state.lock_changes()
        fold_write_set(state, by_index[index], {}, codes)
    account_db.persist()
    return AppliedBlock(
        post_state_root=account_db.state_root,
        state_nodes=db.pending(),
        seconds=time.perf_counter() - started,
    )
