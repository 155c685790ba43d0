"""Recording what py-evm's account database is asked, for the block access list.

`RecordingAccountDB` is the batched account DB (execution/state_db.py) that, while a
record is open, notes every address and slot py-evm's state reads or writes, and the
value each written location had before its first write of the block. Closing the record
reads the written locations' values after the index. The sequential executor records
every index this way; Block-STM records the indexes it runs on its coordinator state
(the pre-execution writes, anything after the transactions, a sequential tail).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

from eth.abc import StateAPI

from execution.bal.builder import AccessRecord
from execution.executor import StateView
from execution.locations import BAL, COD, NON, Location, is_slot, slot_key, slot_of
from execution.overlay import OverlayDB
from execution.state_db import BatchedAccountDB, laminar_state_class


class RecordingAccountDB(BatchedAccountDB):
    """`BatchedAccountDB` that records accesses while `record` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_record: Optional[AccessRecord] = None
        self._written: set[Location] = set()
        # Values before the block of the locations written so far (captured at their
        # first write of the block, so they are the pre-block values).
        self.pre_values: dict[Location, Any] = {}

    # ---- records -----------------------------------------------------------------------
    def open_record(self) -> None:
        self.access_record = AccessRecord()
        self._written = set()

    def close_record(self) -> AccessRecord:
        record = self.access_record
        assert record is not None, "close_record without open_record"
        self.access_record = None
        for location in self._written:
            record.writes[location] = self._value(location)
        return record

    def _value(self, location: Location) -> Any:
        address = location[:20]
        if is_slot(location):
            return super().get_storage(address, slot_of(location))
        tag = location[20:]
        if tag == BAL:
            return super().get_balance(address)
        if tag == NON:
            return super().get_nonce(address)
        return super().get_code(address)

    def _access(self, address: bytes) -> None:
        record = self.access_record
        if record is not None:
            record.addresses.add(address)

    def _write(self, location: Location) -> None:
        record = self.access_record
        if record is None:
            return
        record.addresses.add(location[:20])
        if is_slot(location):
            record.slots.add(location)
        if location not in self.pre_values:
            self.pre_values[location] = self._value(location)
        self._written.add(location)

    def _wipe(self, address: bytes) -> None:
        record = self.access_record
        if record is not None:
            record.addresses.add(address)
            record.wiped.add(address)

    # ---- reads -------------------------------------------------------------------------
    def get_storage(self, address: Any, slot: int, from_journal: bool = True) -> int:
        record = self.access_record
        if record is not None:
            record.addresses.add(address)
            record.slots.add(slot_key(address, slot))
        return super().get_storage(address, slot, from_journal)

    def get_balance(self, address: Any) -> int:
        self._access(address)
        return super().get_balance(address)

    def get_nonce(self, address: Any) -> int:
        self._access(address)
        return super().get_nonce(address)

    def get_code(self, address: Any) -> bytes:
        self._access(address)
        return super().get_code(address)

    def get_code_hash(self, address: Any) -> Any:
        self._access(address)
        return super().get_code_hash(address)

    def account_has_code_or_nonce(self, address: Any) -> bool:
        self._access(address)
        return super().account_has_code_or_nonce(address)

    def account_exists(self, address: Any) -> bool:
        self._access(address)
        return super().account_exists(address)

    def account_is_empty(self, address: Any) -> bool:
        self._access(address)
        return super().account_is_empty(address)

    def account_has_storage(self, address: bytes) -> bool:
        self._access(address)
        return super().account_has_storage(address)

    # ---- writes ------------------------------------------------------------------------
    def set_storage(self, address: Any, slot: int, value: int) -> None:
        self._write(slot_key(address, slot))
        super().set_storage(address, slot, value)

    def delete_storage(self, address: Any) -> None:
        self._wipe(address)
        super().delete_storage(address)

    def set_balance(self, address: Any, balance: int) -> None:
        self._write(address + BAL)
        super().set_balance(address, balance)

    def set_nonce(self, address: Any, nonce: int) -> None:
        self._write(address + NON)
        super().set_nonce(address, nonce)

    def increment_nonce(self, address: Any) -> None:
        self._write(address + NON)
        super().increment_nonce(address)

    def set_code(self, address: Any, code: bytes) -> None:
        self._write(address + COD)
        super().set_code(address, code)

    def delete_code(self, address: Any) -> None:
        self._write(address + COD)
        super().delete_code(address)

    def delete_account(self, address: Any) -> None:
        self._wipe(address)
        for tag in (BAL, NON, COD):
            self._write(address + tag)
        super().delete_account(address)

    def touch_account(self, address: Any) -> None:
        self._access(address)
        super().touch_account(address)


@functools.cache
def recording_state_class(state_class: type[StateAPI]) -> type[StateAPI]:
    """`state_class` (a fork's py-evm State) over `RecordingAccountDB`."""
    return laminar_state_class("Recording", state_class, {"account_db_class": RecordingAccountDB})


def pre_state_storage(pre_state: StateView) -> Callable[[bytes], bool]:
    """Whether an account had storage before the block (asked only when the block wipes
    an account's storage: rare, so a plain py-evm read of the pre-state does)."""
    db = BatchedAccountDB(OverlayDB(pre_state.nodes), pre_state.state_root)
    return db.account_has_storage
