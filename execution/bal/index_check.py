"""One transaction checked against the access list at its index, where it ran.

The importer's workers run transaction i over the state the list gives as of i (the
list's changes below i installed as write sets). What the transaction changed there, by
the builder's rules (`execution.bal.builder`: a write equal to the value before is no
change, a blind credit adds to the value before, a storage wipe zeroes the slots changed
earlier), must be exactly the list's changes at i; the addresses and slots it accessed go
to the block's union, which must be the list's accounts and slots. If every index passes,
by induction on the index every transaction ran on the state sequential execution gives
it, and the list the builder would make from the executions is the block's, byte for
byte: the same verdict as building the list again, without sending every read and write
to one process (`docs/bal.md`, "Importing a block with its BAL", step 4).

Locations and values are Block-STM's (`execution.locations`): code as its hash, existence
(EXI) derived and never compared.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from eth_hash.auto import keccak

from execution.bal.builder import AccessListUnsupported, AccessRecord
from execution.bal.codec import BlockAccessList
from execution.locations import ADDRESS_LEN, BAL, COD, NON, SLOT_KEY_LEN, WIP, Location, slot_key

CHANGED_FIELDS = (BAL, NON, COD)  # the account fields a list records; EXI follows from them


def changes_of(writes: dict[Location, Any], deltas: dict[Location, int],
               value_before: Callable[[Location], Any],
               slots_changed_before: Callable[[bytes], Iterable[Location]],
               had_storage: Callable[[bytes], bool]) -> dict[Location, Any]:
    """What one index changed, by the builder's rules (`AccessListBuilder.add`), from its
    Block-STM write set; AccessListUnsupported when it wipes storage the account had
    before the block."""
    post: dict[Location, Any] = {}
    for location in writes:
        if len(location) != SLOT_KEY_LEN and location[ADDRESS_LEN:] == WIP:
            address = location[:ADDRESS_LEN]
            if had_storage(address):
                raise AccessListUnsupported(
                    f"a transaction wipes the storage of 0x{address.hex()}, which had "
                    "storage before the block")
            for changed in slots_changed_before(address):
                if value_before(changed) != 0:
                    post[changed] = 0
    for location, value in writes.items():
        if len(location) == SLOT_KEY_LEN or location[ADDRESS_LEN:] in CHANGED_FIELDS:
            post[location] = value
    for location, credit in deltas.items():
        post[location] = value_before(location) + credit
    return {location: value for location, value in post.items()
            if value != value_before(location)}


def record_changes(record: AccessRecord, value_before: Callable[[Location], Any]
                   ) -> dict[Location, Any]:
    """What the coordinator's own index (0: before the transactions, n+1: after them)
    changed, from its `AccessRecord`, by the builder's rules, in Block-STM's terms (code
    as its hash). A wipe there is left to the builder: AccessListUnsupported."""
    if record.wiped:
        raise AccessListUnsupported("storage wiped before or after the transactions")
    post = dict(record.writes)
    for location, credit in record.deltas.items():
        post[location] = value_before(location) + credit
    changes = {}
    for location, value in post.items():
        if value != value_before(location):
            if len(location) != SLOT_KEY_LEN and location[ADDRESS_LEN:] == COD:
                value = keccak(value)
            changes[location] = value
    return changes


def listed_changes(write_set: Optional[dict[Location, Any]]) -> dict[Location, Any]:
    """The list's changes at an index, from the write set it seeds (`seed_write_sets`)."""
    if not write_set:
        return {}
    return {location: value for location, value in write_set.items()
            if len(location) == SLOT_KEY_LEN or location[ADDRESS_LEN:] in CHANGED_FIELDS}


def note_accesses(addresses: set[bytes], slots: set[Location], reads: Iterable[Location],
                  writes: Iterable[Location], deltas: Iterable[Location]) -> None:
    """Add one index's accessed addresses and slots (as `record_of` names them)."""
    for group in (reads, writes):
        for location in group:
            addresses.add(location[:ADDRESS_LEN])
            if len(location) == SLOT_KEY_LEN:
                slots.add(location)
    for location in deltas:
        addresses.add(location[:ADDRESS_LEN])


class ListedAccesses:
    """The accounts and slots a list names, or why it cannot be checked index by index
    (`problem`: not canonical, or an index outside the block; such a list is never one
    the builder makes, and the caller builds the list to say where it differs)."""

    def __init__(self, access_list: BlockAccessList, transactions: int) -> None:
        self.accounts = {account.address: account for account in access_list.accounts}
        self.read_slots: set[Location] = set()
        self.changed_slots: set[Location] = set()
        self.problem: Optional[str] = None
        last_index = transactions + 1
        previous = b""
        for account in access_list.accounts:
            address = account.address
            if address <= previous:
                self.problem = "accounts out of order"
                return
            previous = address
            changed = self.changed_slots
            last_slot = -1
            for slot_changes in account.storage_changes:
                if slot_changes.slot <= last_slot or not slot_changes.changes:
                    self.problem = f"0x{address.hex()}: storage changes not canonical"
                    return
                last_slot = slot_changes.slot
                changed.add(slot_key(address, slot_changes.slot))
                if not _ascending_within(slot_changes.changes, last_index):
                    self.problem = f"0x{address.hex()}: a slot's indexes"
                    return
            for field_changes in (account.balance_changes, account.nonce_changes,
                                  account.code_changes):
                if not _ascending_within(field_changes, last_index):
                    self.problem = f"0x{address.hex()}: a field's indexes"
                    return
            last_slot = -1
            for slot in account.storage_reads:
                location = slot_key(address, slot)
                if slot <= last_slot or location in changed:
                    self.problem = f"0x{address.hex()}: storage reads not canonical"
                    return
                last_slot = slot
                self.read_slots.add(location)

    def value_at(self, location: Location, index: int, otherwise: Callable[[Location], Any]
                 ) -> Any:
        """The location's value as of `index` (after every listed change below it), by
        the list; `otherwise(location)` when the list changes it nowhere below."""
        account = self.accounts.get(location[:ADDRESS_LEN])
        changes: Any = ()
        field = "value"
        if account is not None:
            if len(location) == SLOT_KEY_LEN:
                slot = int.from_bytes(location[ADDRESS_LEN:], "big")
                changes = next((c.changes for c in account.storage_changes if c.slot == slot), ())
            else:
                tag = location[ADDRESS_LEN:]
                changes, field = {BAL: (account.balance_changes, "balance"),
                                  NON: (account.nonce_changes, "nonce"),
                                  COD: (account.code_changes, "code")}.get(tag, ((), field))
        latest = None
        for change in changes:
            if change.index >= index:
                break
            latest = change
        if latest is None:
            return otherwise(location)
        return getattr(latest, field)

    def difference(self, addresses: set[bytes], slots: set[Location]) -> Optional[str]:
        """How the executions' accesses differ from the list's, or None."""
        listed = self.accounts.keys()
        if addresses != listed:
            return (f"accounts listed, never accessed: {len(listed - addresses)}; "
                    f"accessed, not listed: {len(addresses - listed)}")
        if slots - self.changed_slots != self.read_slots:
            return "the slots read and never changed are not the list's storage reads"
        return None


def _ascending_within(changes: Any, last_index: int) -> bool:
    previous = -1
    for change in changes:
        index = change.index
        if index <= previous or index > last_index:
            return False
        previous = index
    return True
