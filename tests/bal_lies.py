"""Wrong block access lists of every kind, made from a true one: for the importer's
tests (tests/test_bal.py) and for the lying proposer of the multi-node tests
(tests/harness_node.py --lie-bal)."""

from __future__ import annotations

import dataclasses
from typing import Callable

from execution.bal.codec import AccountChanges, BalanceChange, BlockAccessList, StorageChange

STRANGER = b"\xee" * 20  # an address no test block touches

# Kinds a lying proposer cycles through (the last two are caught before execution).
LIE_KINDS = ("value", "missing", "extra", "index", "read", "hash", "garbage")


def replace_account(access_list: BlockAccessList, address: bytes, **fields) -> BlockAccessList:
    return BlockAccessList(tuple(dataclasses.replace(a, **fields) if a.address == address
                                 else a for a in access_list.accounts))


def _with_balance(access_list: BlockAccessList, txs: int) -> AccountChanges:
    """An account a transaction (not the block's pre- or post-execution part) credits
    or debits."""
    return next(a for a in access_list.accounts
                if a.balance_changes and 1 <= a.balance_changes[-1].index <= txs)


def wrong_balance(access_list: BlockAccessList, txs: int) -> BlockAccessList:
    account = _with_balance(access_list, txs)
    last = account.balance_changes[-1]
    return replace_account(access_list, account.address, balance_changes=(
        account.balance_changes[:-1] + (BalanceChange(last.index, last.balance - 1),)))


def wrong_index(access_list: BlockAccessList, txs: int) -> BlockAccessList:
    account = _with_balance(access_list, txs)
    last = account.balance_changes[-1]
    previous = account.balance_changes[-2].index if len(account.balance_changes) > 1 else 0
    moved = last.index + 1 if last.index < txs else last.index - 1
    if moved <= previous:
        moved = last.index + 1
    return replace_account(access_list, account.address, balance_changes=(
        account.balance_changes[:-1] + (BalanceChange(moved, last.balance),)))


def missing_account(access_list: BlockAccessList, txs: int) -> BlockAccessList:
    dropped = _with_balance(access_list, txs).address
    return BlockAccessList(tuple(a for a in access_list.accounts if a.address != dropped))


def extra_account(access_list: BlockAccessList, txs: int) -> BlockAccessList:
    assert access_list.account(STRANGER) is None
    return BlockAccessList(tuple(sorted(access_list.accounts + (AccountChanges(STRANGER),),
                                        key=lambda a: a.address)))


def extra_read(access_list: BlockAccessList, txs: int) -> BlockAccessList:
    account = _with_balance(access_list, txs)
    return replace_account(access_list, account.address, storage_reads=tuple(
        sorted(set(account.storage_reads) | {2**255})))


def past_the_block(access_list: BlockAccessList, txs: int) -> BlockAccessList:
    account = _with_balance(access_list, txs)
    last = account.balance_changes[-1]
    return replace_account(access_list, account.address, balance_changes=(
        account.balance_changes + (BalanceChange(txs + 5, last.balance + 1),)))


def wrong_storage_value(access_list: BlockAccessList, txs: int) -> BlockAccessList:
    account = next(a for a in access_list.accounts if a.storage_changes)
    slot = account.storage_changes[0]
    last = slot.changes[-1]
    wrong = dataclasses.replace(slot, changes=slot.changes[:-1]
                                + (StorageChange(last.index, last.value + 1),))
    return replace_account(access_list, account.address,
                           storage_changes=(wrong,) + account.storage_changes[1:])


def missing_slot(access_list: BlockAccessList, txs: int) -> BlockAccessList:
    account = next(a for a in access_list.accounts if a.storage_changes)
    return replace_account(access_list, account.address,
                           storage_changes=account.storage_changes[1:])


LIES: dict[str, Callable[[BlockAccessList, int], BlockAccessList]] = {
    "value": wrong_balance,
    "missing": missing_account,
    "extra": extra_account,
    "index": wrong_index,
    "read": extra_read,
    "past": past_the_block,
    "storage value": wrong_storage_value,
    "missing slot": missing_slot,
}
