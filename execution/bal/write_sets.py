"""A block's access list as Block-STM write sets: the importer seeds its workers with
them, and executionless sync folds them index by index when an account is deleted."""

from __future__ import annotations

from typing import Callable, Optional

from eth.constants import EMPTY_SHA3
from eth_hash.auto import keccak

from execution.account_rlp import AccountLike
from execution.bal.codec import AccountChanges, BlockAccessList
from execution.locations import BAL, COD, EXI, NON, slot_key

PreAccount = Callable[[bytes], AccountLike]  # address -> the account before the block


def seed_write_sets(access_list: BlockAccessList, n: int,
                    pre_account: PreAccount, edges: Optional[dict[int, dict]] = None
                    ) -> tuple[list[Optional[dict]], dict[bytes, bytes]]:
    """The list's changes at indexes 1..n as Block-STM write sets (one per transaction,
    None where it changes nothing), and the code they install by hash. With `edges`,
    the changes at 0 and n+1 (the coordinator's own indexes) go there."""
    seeds: list[Optional[dict]] = [None] * n
    codes: dict[bytes, bytes] = {}
    for account in access_list.accounts:
        for index, writes in writes_by_index(account, pre_account, codes).items():
            if 1 <= index <= n:
                seed = seeds[index - 1]
                if seed is None:
                    seeds[index - 1] = writes
                else:
                    seed.update(writes)
            elif edges is not None and index in (0, n + 1):  # others fail the check
                edges.setdefault(index, {}).update(writes)
    return seeds, codes


def writes_by_index(account: AccountChanges, pre_account: PreAccount,
                    codes: dict[bytes, bytes]) -> dict[int, dict]:
    """One account's changes as Block-STM write sets by block access index (code goes to
    `codes` by hash). Existence follows EIP-161: an account an index changes exists
    after it unless it is empty."""
    if not account.has_changes():
        return {}
    address = account.address
    by_index: dict[int, dict] = {}
    for slot in account.storage_changes:
        key = slot_key(address, slot.slot)
        for change in slot.changes:
            by_index.setdefault(change.index, {})[key] = change.value
    for balance_change in account.balance_changes:
        by_index.setdefault(balance_change.index, {})[address + BAL] = balance_change.balance
    for nonce_change in account.nonce_changes:
        by_index.setdefault(nonce_change.index, {})[address + NON] = nonce_change.nonce
    for code in account.code_changes:
        code_hash = keccak(code.code)
        if code.code:
            codes[code_hash] = code.code
        by_index.setdefault(code.index, {})[address + COD] = code_hash
    fields = pre_account(address)
    balance, nonce, code_hash = fields.balance, fields.nonce, fields.code_hash
    for index in sorted(by_index):
        writes = by_index[index]
        balance = writes.get(address + BAL, balance)
        nonce = writes.get(address + NON, nonce)
        code_hash = writes.get(address + COD, code_hash)
        writes[address + EXI] = nonce != 0 or balance != 0 or code_hash != EMPTY_SHA3
    return by_index
