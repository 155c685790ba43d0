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
from typing import Any, Callable, Generator, Optional

from eth.abc import VirtualMachineAPI
from eth.constants import EMPTY_SHA3
from eth.rlp.accounts import Account
from eth.vm.forks import ByzantiumVM
from eth_hash.auto import keccak
from sha3 import keccak_256  # the trie's hash, without eth-hash's wrappers (execution.trie)

from execution.account_rlp import (
    AccountFields,
    AccountLike,
    decode_account_fields,
)
from execution.bal.builder import AccessListUnsupported
from execution.bal.codec import AccountChanges, BlockAccessList
from execution.bal.write_sets import PreAccount, writes_by_index
from execution.blockstm.state import fold_write_set
from execution.blockstm.triereader import decode_node, lookup
from execution.executor import StateView
from execution.overlay import OverlayDB
from execution.post_state import (
    APPLY_CHUNK,
    NO_ACCOUNT,
    RootInput,
    account_trie_change_steps,
    run_to_end,
)
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


class PostStateAccounts:
    """The accounts the blocks applied so far read or left, valid at one state root.

    A syncing node applies block after block, and the same senders and contracts come
    back in most of them: reading each from the trie again (a walk from the root and a
    decode) was an eighth of an apply. An applied block leaves here its pre-state reads
    and its final values, under its post-state root; the next block uses them only if
    its pre-state root is that root. A root names exactly one state, so the cache can
    never answer for another one; any other root starts it afresh."""

    def __init__(self, limit: int = 200_000) -> None:
        self.root: Optional[bytes] = None
        self.accounts: dict[bytes, AccountLike] = {}
        self.limit = limit

    def at(self, root: bytes) -> dict[bytes, AccountLike]:
        """The accounts known at state `root` (a dict the caller may add `root`'s own
        accounts to)."""
        if root != self.root or len(self.accounts) > self.limit:
            self.root, self.accounts = root, {}
        return self.accounts

    def advance(self, pre_root: bytes, post_root: bytes,
                finals: dict[bytes, AccountLike]) -> None:
        """The block from `pre_root` to `post_root` left these accounts."""
        if self.root == pre_root:
            self.accounts.update(finals)
            self.root = post_root


def apply_access_list(access_list: BlockAccessList, vm_class: type[VirtualMachineAPI],
                      pre_state: StateView,
                      decoded: Optional[dict[bytes, Any]] = None,
                      accounts: Optional[PostStateAccounts] = None) -> AppliedBlock:
    """The post-state of a block from its access list alone. `decoded`: a cache of
    decoded trie nodes by hash, `accounts`: of accounts, both kept by the caller across
    blocks."""
    return run_to_end(apply_steps(access_list, vm_class, pre_state, decoded,
                                  accounts=accounts))


def apply_steps(access_list: BlockAccessList, vm_class: type[VirtualMachineAPI],
                pre_state: StateView, decoded: Optional[dict[bytes, Any]] = None,
                pre_account: Optional[PreAccount] = None,
                accounts: Optional[PostStateAccounts] = None,
                ) -> Generator[None, None, AppliedBlock]:
    """`apply_access_list` a chunk at a time: yields between chunks of accounts, so that
    a caller can do other work in between (the importer answers its workers), and
    returns the applied block. `pre_account`: the caller's reader of pre-state accounts
    (default: read through `decoded`, and `accounts` when given)."""
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

    known = accounts.at(pre_state.state_root) if accounts is not None and pre_account is None \
        else {}

    def read_account(address: bytes) -> AccountLike:
        account = known.get(address)
        if account is None:
            account = known[address] = read_pre_account(node_of, pre_state.state_root, address)
        return account

    read = read_account if pre_account is None else pre_account
    pre_accounts: dict[bytes, AccountLike] = {}

    def pre_account_of(address: bytes) -> AccountLike:
        account = pre_accounts[address] = read(address)
        return account

    finals = yield from final_account_steps(access_list, pre_account_of)
    if finals is None:  # an account emptied at some index: deleted, maybe made again
        return _apply_index_by_index(access_list, pre_state, pre_account_of, pre_accounts,
                                     started)
    applied, post_accounts = yield from _fold_final_values(finals, pre_state, decoded, started)
    if accounts is not None and pre_account is None:
        accounts.advance(pre_state.state_root, applied.post_state_root, post_accounts)
    return applied


def read_pre_account(node_of: Callable[[bytes], Any], state_root: bytes, address: bytes) -> AccountFields:
    """An account of the state `state_root` through the lean trie reader (`node_of`: a
    decoded node by hash); an absent account reads as `NO_ACCOUNT`."""
    encoded = lookup(node_of, state_root, keccak_256(address).digest())
    return decode_account_fields(encoded) if encoded else NO_ACCOUNT


@dataclass(frozen=True)
class FinalAccount:
    """An account as the block leaves it, from the last change of each field."""

    address: bytes
    pre: AccountLike
    balance: int
    nonce: int
    code_hash: bytes
    code: Optional[bytes]  # new code, when the block changed it
    slots: dict[int, int]  # slot -> value after the block (0: cleared)

    @property
    def exists(self) -> bool:  # EIP-161: an account the block changed exists unless empty
        return self.nonce != 0 or self.balance != 0 or self.code_hash != EMPTY_SHA3


def final_account(changes: AccountChanges, pre: AccountLike) -> Optional[FinalAccount]:
    """The account after the block; None when some index leaves it empty (EIP-161 deletes
    it there, and what follows must start from nothing: `_apply_index_by_index`)."""
    if not _never_empty(changes, pre):
        return final_account_by_index(changes, pre)
    # The last change of each field is all it takes.
    slots = {slot.slot: slot.changes[-1].value for slot in changes.storage_changes}
    balance = changes.balance_changes[-1].balance if changes.balance_changes else pre.balance
    nonce = changes.nonce_changes[-1].nonce if changes.nonce_changes else pre.nonce
    if changes.code_changes:
        new_code = changes.code_changes[-1].code
        return FinalAccount(changes.address, pre, balance, nonce, keccak(new_code), new_code, slots)
    return FinalAccount(changes.address, pre, balance, nonce, pre.code_hash, None, slots)


def final_account_by_index(changes: AccountChanges, pre: AccountLike) -> Optional[FinalAccount]:
    """`final_account` walking every index the account changes at."""
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


def _never_empty(changes: AccountChanges, pre: AccountLike) -> bool:
    """Whether no index of the block can leave the account empty, seen without walking
    its indexes: no change sets a field to its empty value, and the account is not empty
    before its first change, or that first change gives it a balance, a nonce or code.
    (Lists are in ascending index order: the codec refuses any other.)"""
    if (any(c.balance == 0 for c in changes.balance_changes)
            or any(c.nonce == 0 for c in changes.nonce_changes)
            or any(not c.code for c in changes.code_changes)):
        return False
    if pre.nonce or pre.balance or pre.code_hash != EMPTY_SHA3:
        return True
    firsts = [changes_of_field[0].index for changes_of_field in
              (changes.balance_changes, changes.nonce_changes, changes.code_changes)
              if changes_of_field]
    if not firsts:
        return False
    storage_first = min((slot.changes[0].index for slot in changes.storage_changes), default=None)
    return storage_first is None or min(firsts) <= storage_first


def _fold_final_values(finals: list[FinalAccount], pre_state: StateView, decoded: dict[bytes, Any],
                       started: float
                       ) -> Generator[None, None, tuple[AppliedBlock, dict[bytes, AccountLike]]]:
    """Each changed storage trie, then the account trie, updated once from the final
    values (`execution.trie.update_trie`), sharing the decoded-node cache of the reads
    (yields after every `APPLY_CHUNK` accounts). Also returns the accounts as the block
    leaves them (for `PostStateAccounts`)."""
    read = pre_state.nodes.__getitem__
    account_changes, new_nodes, post_accounts = yield from account_trie_change_steps(
        [root_input(final) for final in finals], read, decoded)
    new_nodes.update(new_code(finals))
    yield
    root, created = update_trie(pre_state.state_root, read, account_changes, decoded)
    new_nodes.update(created)
    applied = AppliedBlock(post_state_root=root, state_nodes=new_nodes,
                           seconds=time.perf_counter() - started)
    return applied, post_accounts


def root_input(final: FinalAccount) -> RootInput:
    """What the state root needs of `final` (`execution.post_state.RootInput`)."""
    return (final.address, final.pre.storage_root, final.nonce, final.balance, final.code_hash,
            final.slots)


def new_code(finals: list[FinalAccount]) -> dict[bytes, bytes]:
    """The code the block installs, by hash (stored beside the trie nodes)."""
    return {final.code_hash: final.code for final in finals if final.code}


def final_account_steps(access_list: BlockAccessList, pre_account: PreAccount
                        ) -> Generator[None, None, Optional[list[FinalAccount]]]:
    """Every changed account as the block leaves it (yields every `APPLY_CHUNK`); None
    when some index leaves an account empty (EIP-161 deletes it there)."""
    finals = []
    for changes in access_list.accounts:
        if changes.has_changes():
            final = final_account(changes, pre_account(changes.address))
            if final is None:
                return None
            finals.append(final)
            if len(finals) % APPLY_CHUNK == 0:
                yield
    return finals


def _apply_index_by_index(access_list: BlockAccessList, pre_state: StateView,
                          pre_account: PreAccount, accounts: dict[bytes, AccountLike],
                          started: float) -> AppliedBlock:
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
    account_db._account_cache = {
        address: Account(a.nonce, a.balance, a.storage_root, a.code_hash)
        for address, a in accounts.items()
    }
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
