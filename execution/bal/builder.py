"""Building a block's access list from what each block access index did.

Every executor describes each index (0: pre-execution system writes, 1..n: the
transactions, n+1: what follows them) as an `AccessRecord`: the addresses and slots it
accessed, the locations it wrote with their values after it, blind balance credits, and
the accounts whose storage it wiped. `AccessListBuilder` turns the records, in index
order, into the canonical list: a write whose value equals the value before the index is
no change (a written-back slot is a read), a slot read and never changed is a read, an
account accessed without a change is listed with empty lists.

The executors record in different ways (sequential: around py-evm's account database;
Block-STM: from the committed read and write sets), so the builder is the one place the
rules live, and both give byte-identical lists (tests/test_bal.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from execution.bal.codec import BlockAccessList, sorted_account
from execution.locations import ADDRESS_LEN, BAL, COD, NON, Location, is_slot, slot_of


class AccessListUnsupported(Exception):
    """The block does something a block-level access list cannot express (before Cancun,
    SELFDESTRUCT could wipe a pre-existing contract's storage, whose slots the list would
    have to name one by one and the trie does not know)."""


@dataclass
class AccessRecord:
    """What one block access index did.

    writes: location -> value after the index (balance, nonce: int; code: the code bytes
    under COD; storage slot: int). deltas: balance location -> credit, for balances the
    index credited without reading them (Block-STM's blind credits)."""

    addresses: set[bytes] = field(default_factory=set)
    slots: set[Location] = field(default_factory=set)
    writes: dict[Location, Any] = field(default_factory=dict)
    deltas: dict[Location, int] = field(default_factory=dict)
    wiped: set[bytes] = field(default_factory=set)


class AccessListBuilder:
    """Folds `AccessRecord`s, in index order, into a `BlockAccessList`.

    pre_value(location): the location's value before the block (only asked for locations
    that no earlier index wrote). pre_has_storage(address): whether the account had
    storage before the block (asked when an index wipes it)."""

    def __init__(self, pre_value: Callable[[Location], Any],
                 pre_has_storage: Callable[[bytes], bool]) -> None:
        self._pre_value = pre_value
        self._pre_has_storage = pre_has_storage
        self._current: dict[Location, Any] = {}  # values changed by the indexes so far
        self._accessed: dict[bytes, set[int]] = {}  # address -> slots accessed
        self._changes: dict[Location, list[tuple[int, Any]]] = {}
        self._last_index = -1

    def value_before(self, location: Location) -> Any:
        current = self._current
        if location in current:
            return current[location]
        return self._pre_value(location)

    def add(self, index: int, record: AccessRecord) -> None:
        if index <= self._last_index:
            raise ValueError(f"access record {index} after record {self._last_index}")
        self._last_index = index
        accessed = self._accessed
        for address in record.addresses:
            accessed.setdefault(address, set())
        for location in record.slots:
            accessed.setdefault(location[:ADDRESS_LEN], set()).add(slot_of(location))
        post: dict[Location, Any] = {}
        for address in record.wiped:
            if self._pre_has_storage(address):
                raise AccessListUnsupported(
                    f"block access index {index} wipes the storage of 0x{address.hex()}, "
                    "which had storage before the block"
                )
            accessed.setdefault(address, set())
            for location, value in self._current.items():
                if is_slot(location) and location[:ADDRESS_LEN] == address and value != 0:
                    post[location] = 0
        post.update(record.writes)
        for location, credit in record.deltas.items():
            post[location] = self.value_before(location) + credit
        for location, value in post.items():
            if value == self.value_before(location):
                if is_slot(location):  # written back: a read
                    accessed.setdefault(location[:ADDRESS_LEN], set()).add(slot_of(location))
                else:
                    accessed.setdefault(location[:ADDRESS_LEN], set())
                continue
            self._current[location] = value
            self._changes.setdefault(location, []).append((index, value))
            if is_slot(location):
                accessed.setdefault(location[:ADDRESS_LEN], set()).add(slot_of(location))
            else:
                accessed.setdefault(location[:ADDRESS_LEN], set())

    def build(self) -> BlockAccessList:
        by_address: dict[bytes, dict[bytes, Any]] = {}
        for location, changes in self._changes.items():
            parts = by_address.setdefault(location[:ADDRESS_LEN], {})
            if is_slot(location):
                parts.setdefault(b"slots", {})[slot_of(location)] = changes
            else:
                parts[location[ADDRESS_LEN:]] = changes
        accounts = []
        for address in sorted(self._accessed):
            parts = by_address.get(address, {})
            accounts.append(sorted_account(
                address,
                storage=parts.get(b"slots", {}),
                reads=self._accessed[address],
                balances=parts.get(BAL, ()),
                nonces=parts.get(NON, ()),
                codes=parts.get(COD, ()),
            ))
        return BlockAccessList(tuple(accounts))


def build_access_list(records: list[AccessRecord], pre_value: Callable[[Location], Any],
                      pre_has_storage: Callable[[bytes], bool]) -> BlockAccessList:
    """The access list of a block whose indexes 0..n+1 did `records`."""
    builder = AccessListBuilder(pre_value, pre_has_storage)
    for index, record in enumerate(records):
        builder.add(index, record)
    return builder.build()
