"""The py-evm account database a worker executes an incarnation on.

`TxDB` implements every method py-evm's state calls on its account DB (see
eth/db/account.py), without a trie: a transaction-local journal (with py-evm's
record/discard/commit checkpoints and journaled warm sets) over a read function that
resolves a location in the worker's multi-version memory replica, then the block prelude,
then the base (pre-state) cache. Every first read of a location is recorded with what it
resolved to (for validation); the journal's final content is the write set.

Balance credits on a balance the transaction has not read are *blind deltas* (commutative,
folded at commit); a later read of that balance resolves the base and turns the delta into
an absolute write. `account_is_empty` knows a positive delta makes a balance non-zero
without reading it, so the coinbase fee credit and EIP-161 touch checks stay blind.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Type

from eth.abc import StateAPI
from eth.constants import EMPTY_SHA3
from eth.db.journal import get_next_checkpoint
from eth.rlp.accounts import Account
from eth_hash.auto import keccak

from execution.blockstm.messages import BAL, COD, EXI, NON, OK, SLOT_KEY_LEN, STO, WIP
from execution.state_db import laminar_state_class

_MISSING = object()


class TxDB:
    """Account DB of one incarnation. `read(key)` resolves a location (and records it)."""

    def __init__(self, read: Callable[..., Any], code_of: Callable[[bytes], bytes]) -> None:
        self._read = read
        self._code_of = code_of
        self.writes: dict[bytes, Any] = {}
        self.deltas: dict[bytes, int] = {}
        self.codes: dict[bytes, bytes] = {}
        self._warm: set = set()
        self._undo: list = []
        self._checkpoints: dict[int, int] = {}

    # ------------------------------------------------------------------ journal
    def _set(self, key: bytes, value: Any) -> None:
        w = self.writes
        self._undo.append((w, key, w.get(key, _MISSING)))
        w[key] = value

    def _drop_delta(self, key: bytes) -> None:
        d = self.deltas
        if key in d:
            self._undo.append((d, key, d.pop(key)))

    def record(self) -> int:
        # py-evm's process-wide checkpoint counter: the state passes this checkpoint on
        # to its own journals (transient storage), whose ids come from that counter.
        cp = get_next_checkpoint()
        self._checkpoints[cp] = len(self._undo)
        return cp

    def discard(self, checkpoint: int) -> None:
        mark = self._checkpoints.pop(checkpoint)
        undo = self._undo
        while len(undo) > mark:
            target, key, old = undo.pop()
            if old is _MISSING:
                if type(target) is set:
                    target.discard(key)
                else:
                    target.pop(key, None)
            elif type(target) is not set:
                target[key] = old
        for cp in [c for c in self._checkpoints if c > checkpoint]:
            del self._checkpoints[cp]

    def commit(self, checkpoint: int) -> None:
        self._checkpoints.pop(checkpoint, None)
        for cp in [c for c in self._checkpoints if c > checkpoint]:
            del self._checkpoints[cp]

    def lock_changes(self) -> None:  # a TxDB lives for one transaction
        pass

    @property
    def state_root(self) -> bytes:
        return b""

    @state_root.setter
    def state_root(self, value: bytes) -> None:  # BaseState.revert sets it back
        pass

    def make_state_root(self) -> bytes:
        raise NotImplementedError("a Block-STM incarnation cannot compute a state root")

    def persist(self) -> None:
        raise NotImplementedError("a Block-STM incarnation cannot persist")

    # ------------------------------------------------------------------ fields
    def _field(self, key: bytes) -> Any:
        w = self.writes
        if key in w:
            return w[key]
        return self._read(key)

    def _mark_exists(self, address: bytes) -> None:
        key = address + EXI
        if self.writes.get(key) is not True:
            self._set(key, True)

    def get_balance(self, address: bytes) -> int:
        key = address + BAL
        w = self.writes
        if key in w:
            return w[key]
        value = self._read(key)
        d = self.deltas.get(key)
        if d is not None:  # resolve the pending blind credit into an absolute write
            value += d
            self._drop_delta(key)
            self._set(key, value)
        return value

    def set_balance(self, address: bytes, balance: int) -> None:
        key = address + BAL
        self._drop_delta(key)
        self._set(key, balance)
        self._mark_exists(address)

    def delta_balance(self, address: bytes, delta: int) -> None:
        key = address + BAL
        w = self.writes
        if key in w:
            self._set(key, w[key] + delta)
            self._mark_exists(address)
        elif delta >= 0:
            d = self.deltas
            self._undo.append((d, key, d.get(key, _MISSING)))
            d[key] = d.get(key, 0) + delta
            self._mark_exists(address)
        else:
            self.set_balance(address, self.get_balance(address) + delta)

    def _balance_is_zero(self, address: bytes) -> bool:
        key = address + BAL
        if key not in self.writes and self.deltas.get(key, 0) > 0:
            return False  # base >= 0 plus a positive credit: non-zero, no read needed
        return self.get_balance(address) == 0

    def get_nonce(self, address: bytes) -> int:
        return self._field(address + NON)

    def set_nonce(self, address: bytes, nonce: int) -> None:
        self._set(address + NON, nonce)
        self._mark_exists(address)

    def increment_nonce(self, address: bytes) -> None:
        self.set_nonce(address, self.get_nonce(address) + 1)

    def get_code_hash(self, address: bytes) -> bytes:
        return self._field(address + COD)

    def get_code(self, address: bytes) -> bytes:
        code_hash = self.get_code_hash(address)
        if code_hash == EMPTY_SHA3:
            return b""
        code = self.codes.get(code_hash)
        if code is None:
            code = self._code_of(code_hash)
        return code

    def set_code(self, address: bytes, code: bytes) -> None:
        code_hash = keccak(code)
        self.codes[code_hash] = code
        self._set(address + COD, code_hash)
        self._mark_exists(address)

    def delete_code(self, address: bytes) -> None:
        self._set(address + COD, EMPTY_SHA3)
        self._mark_exists(address)

    def account_has_code_or_nonce(self, address: bytes) -> bool:
        return self.get_nonce(address) != 0 or self.get_code_hash(address) != EMPTY_SHA3

    def account_has_storage(self, address: bytes) -> bool:
        """EIP-7610's storage: the pre-state's, unless this block wiped it (here or in an
        earlier transaction). Nothing writes STO: it always resolves to the base."""
        if self._field(address + WIP):
            return False
        return self._read(address + STO)

    def account_exists(self, address: bytes) -> bool:
        return self._field(address + EXI)

    def touch_account(self, address: bytes) -> None:
        self._mark_exists(address)

    def account_is_empty(self, address: bytes) -> bool:
        return not self.account_has_code_or_nonce(address) and self._balance_is_zero(address)

    def _wipe(self, address: bytes) -> None:
        # Forget this transaction's own slot writes of the account (journaled), then mark
        # the wipe: older values (lower transactions, base) now read as 0.
        w = self.writes
        for key in [k for k in w if len(k) == SLOT_KEY_LEN and k[:20] == address]:
            self._undo.append((w, key, w.pop(key)))
        self._set(address + WIP, True)

    def delete_account(self, address: bytes) -> None:
        self._wipe(address)
        self._drop_delta(address + BAL)
        self._set(address + BAL, 0)
        self._set(address + NON, 0)
        self._set(address + COD, EMPTY_SHA3)
        self._set(address + EXI, False)

    def delete_storage(self, address: bytes) -> None:
        # py-evm sets the storage root (creating the account if absent), then wipes.
        self._mark_exists(address)
        self._wipe(address)

    # ------------------------------------------------------------------ storage
    def get_storage(self, address: bytes, slot: int, from_journal: bool = True) -> int:
        key = address + slot.to_bytes(32, "big")
        w = self.writes
        if from_journal:
            if key in w:
                return w[key]
            if (address + WIP) in w:
                return 0
            return self._read(key)
        # The "original value" (EIP-2200): the value at the start of the transaction.
        if (address + WIP) in w:
            # py-evm quirk: after a wipe in this transaction the original value comes from
            # earlier transactions' locked writes only; the pre-state trie reads as empty.
            return self._read_original_after_wipe(key)
        return self._read(key)

    def _read_original_after_wipe(self, key: bytes) -> int:
        return self._read(key, True)

    def set_storage(self, address: bytes, slot: int, value: int) -> None:
        self._set(address + slot.to_bytes(32, "big"), value)

    # ------------------------------------------------------------------ access lists
    def _warm_add(self, item: Any) -> None:
        warm = self._warm
        if item not in warm:
            warm.add(item)
            self._undo.append((warm, item, _MISSING))

    def is_address_warm(self, address: bytes) -> bool:
        return address in self._warm

    def mark_address_warm(self, address: bytes) -> None:
        self._warm_add(address)

    def is_storage_warm(self, address: bytes, slot: int) -> bool:
        return (address, slot) in self._warm

    def mark_storage_warm(self, address: bytes, slot: int) -> None:
        self._warm_add((address, slot))


_STATE_CLASSES: dict[type, type] = {}


def blockstm_state_class(state_class: Type[StateAPI]) -> type:
    """`state_class` with its account DB replaced by a TxDB and `delta_balance` blind."""
    cls = _STATE_CLASSES.get(state_class)
    if cls is None:

        def __init__(self, account_db: TxDB, execution_context: Any) -> None:
            self._db = None
            self.execution_context = execution_context
            self._account_db = account_db
            # no set_system_contracts(): it only rewrites code already equal to itself

        def delta_balance(self, address: bytes, delta: int) -> None:
            self._account_db.delta_balance(address, delta)

        cls = laminar_state_class("BlockSTM", state_class,
                                  {"__init__": __init__, "delta_balance": delta_balance})
        _STATE_CLASSES[state_class] = cls
    return cls


def make_tx_state(
    vm_class: Any, execution_context: Any, read: Callable, code_of: Callable
) -> tuple[StateAPI, TxDB]:
    db = TxDB(read, code_of)
    state = blockstm_state_class(vm_class.get_state_class())(db, execution_context)
    return state, db


def outcome_of(computation: Any) -> tuple:
    """What the coordinator needs of a computation to build the receipt."""
    return (
        OK,
        computation.get_gas_remaining(),
        computation.get_gas_refund(),
        getattr(computation, "data_floor_gas", 0),
        bool(computation.is_error),
        tuple(computation.get_log_entries()),
    )


class OutcomeComputation:
    """Duck-typed computation for py-evm's `make_receipt` / `finalize_gas_used`."""

    __slots__ = ("_remaining", "_refund", "data_floor_gas", "is_error", "_logs")

    def __init__(self, outcome: tuple) -> None:
        _, self._remaining, self._refund, self.data_floor_gas, self.is_error, self._logs = outcome

    def get_gas_remaining(self) -> int:
        return self._remaining

    def get_gas_refund(self) -> int:
        return self._refund

    def get_log_entries(self) -> tuple:
        return self._logs


def fold_write_set(
    state: StateAPI, writes: dict, deltas: dict, codes: dict, get_code: Optional[Callable] = None
) -> None:
    """Apply one transaction's final write set to a py-evm state over an AccountDB."""
    adb = state._account_db
    by_address: dict[bytes, list] = {}
    slots: list = []
    for key, value in writes.items():
        if len(key) == SLOT_KEY_LEN:
            slots.append((key, value))
        else:
            by_address.setdefault(key[:20], []).append((key[20:], value))
    for key, d in deltas.items():
        by_address.setdefault(key[:20], []).append((b"d", d))
    for address, fields in by_address.items():
        f = dict(fields)
        if f.get(WIP):
            if f.get(EXI) is False:
                adb.delete_account(address)
                continue
            balance = f.get(BAL, _MISSING)
            if balance is _MISSING:
                balance = adb.get_balance(address)
            nonce = f.get(NON, _MISSING)
            if nonce is _MISSING:
                nonce = adb.get_nonce(address)
            code_hash = f.get(COD, _MISSING)
            if code_hash is _MISSING:
                code_hash = adb.get_code_hash(address)
            adb.delete_account(address)
            adb.touch_account(address)
            adb.set_balance(address, balance + f.get(b"d", 0))
            adb.set_nonce(address, nonce)
            _set_code_hash(adb, address, code_hash, codes)
            continue
        if f.get(EXI) is False:
            adb.delete_account(address)
            continue
        if BAL in f or b"d" in f or NON in f:
            # What set_balance then set_nonce would leave, in one account write (values
            # come from the EVM, already in range; this is most of a block's fold).
            account = adb._get_account(address)
            if BAL in f:
                balance = f[BAL]
            elif b"d" in f:
                balance = account.balance + f[b"d"]
            else:
                balance = account.balance
            nonce = f[NON] if NON in f else account.nonce
            adb._set_account(
                address, Account(nonce, balance, account.storage_root, account.code_hash)
            )
        if COD in f:
            _set_code_hash(adb, address, f[COD], codes)
        if f.get(EXI) is True and not adb.account_exists(address):
            adb.touch_account(address)
    for key, value in slots:
        adb.set_storage(key[:20], int.from_bytes(key[20:], "big"), value)


def _set_code_hash(adb: Any, address: bytes, code_hash: bytes, codes: dict) -> None:
    if adb.get_code_hash(address) == code_hash:
        return
    if code_hash == EMPTY_SHA3:
        adb.delete_code(address)
        return
    code = codes.get(code_hash)
    if code is not None:
        adb.set_code(address, code)
    else:  # code already known to the database (e.g. a re-created contract)
        account = adb._get_account(address)
        adb._set_account(address, account.copy(code_hash=code_hash))


def merge_write_sets(results: list, end: int) -> Optional[tuple[dict, dict]]:
    """The write sets of results[0:end] merged in order into one (writes, deltas): the
    last absolute write of a location wins, later credits add to it (or to each other
    when the location was never written). None when a write set wipes storage, deletes
    an account or changes code: those go through `fold_write_set` one by one."""
    writes: dict = {}
    deltas: dict = {}
    for i in range(end):
        result = results[i]
        tx_writes, tx_deltas, tx_codes = result.writes, result.deltas, result.codes
        if tx_codes:
            return None
        for key, value in tx_writes.items():
            if len(key) != SLOT_KEY_LEN:
                tag = key[20:]
                if tag == WIP or tag == COD or (tag == EXI and value is not True):
                    return None
            writes[key] = value
            if key in deltas:
                del deltas[key]
        for key, d in tx_deltas.items():
            if key in writes:
                writes[key] += d
            else:
                deltas[key] = deltas.get(key, 0) + d
    return writes, deltas
