"""EIP-7928 block-level access lists: the types, their one canonical RLP encoding, its
hash, and the execution-apis JSON form.

Wire form (EIP-7928, the RLP revision of the draft; see docs/bal.md):

    StorageChange   = [block_access_index, new_value]
    SlotChanges     = [slot, [StorageChange, ...]]
    BalanceChange   = [block_access_index, post_balance]
    NonceChange     = [block_access_index, new_nonce]
    CodeChange      = [block_access_index, new_code]
    AccountChanges  = [address, [SlotChanges, ...], [slot, ...] (reads),
                       [BalanceChange, ...], [NonceChange, ...], [CodeChange, ...]]
    BlockAccessList = [AccountChanges, ...]
    block_access_list_hash = keccak256(rlp(BlockAccessList))

Index 0 is the block's pre-execution system writes (EIP-4788, EIP-2935), 1..n its
transactions, n+1 what follows them (withdrawals, request system calls, rewards).
Canonical means one encoding per list: accounts by address, slots by number, changes by
index, all strictly ascending; no empty change list for a slot; a read slot is not also
a changed one; integers minimal. `decode` refuses anything else with the reason.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from eth_hash.auto import keccak

from execution.trie import decode_node as decode_rlp

ADDRESS_BYTES = 20
MAX_INDEX = 2**32 - 1  # BlockAccessIndex: uint32
MAX_UINT256 = 2**256 - 1
MAX_NONCE = 2**64 - 1
# Refused before parsing: the consensus codec's cap on a whole block (a list longer than
# the block it describes is a lie anyway).
MAX_ENCODED_BYTES = 16 * 1024 * 1024
EMPTY_ACCESS_LIST_RLP = b"\xc0"


class AccessListDecodeError(ValueError):
    """Bytes that are not the canonical encoding of a block access list."""


@dataclass(frozen=True)
class StorageChange:
    index: int
    value: int


@dataclass(frozen=True)
class SlotChanges:
    slot: int
    changes: tuple[StorageChange, ...]


@dataclass(frozen=True)
class BalanceChange:
    index: int
    balance: int


@dataclass(frozen=True)
class NonceChange:
    index: int
    nonce: int


@dataclass(frozen=True)
class CodeChange:
    index: int
    code: bytes


@dataclass(frozen=True)
class AccountChanges:
    """Everything the block did to one account; an account only read has empty lists."""

    address: bytes
    storage_changes: tuple[SlotChanges, ...] = ()
    storage_reads: tuple[int, ...] = ()
    balance_changes: tuple[BalanceChange, ...] = ()
    nonce_changes: tuple[NonceChange, ...] = ()
    code_changes: tuple[CodeChange, ...] = ()

    def has_changes(self) -> bool:
        return bool(self.storage_changes or self.balance_changes or self.nonce_changes
                    or self.code_changes)


@dataclass(frozen=True)
class BlockAccessList:
    accounts: tuple[AccountChanges, ...] = ()

    def encode(self) -> bytes:
        return self.encoded

    @functools.cached_property
    def encoded(self) -> bytes:
        """The RLP, made once (the block body and the header's hash both need it)."""
        return _rlp_list([_encode_account(account) for account in self.accounts])

    def hash(self) -> bytes:
        return self.hashed

    @functools.cached_property
    def hashed(self) -> bytes:
        return keccak(self.encoded)

    @classmethod
    def decode(cls, data: bytes, max_bytes: int = MAX_ENCODED_BYTES) -> BlockAccessList:
        return decode_access_list(data, max_bytes)

    def account(self, address: bytes) -> Optional[AccountChanges]:
        for account in self.accounts:  # lists are small next to the block's execution
            if account.address == address:
                return account
        return None


# ---- encoding: RLP of this one shape, without pyrlp's type inference (50x faster) -----


def _rlp_length(length: int, offset: int) -> bytes:
    if length < 56:
        return bytes((offset + length,))
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((offset + 55 + len(size),)) + size


def _rlp_bytes(value: bytes) -> bytes:
    if len(value) == 1 and value[0] < 0x80:
        return value
    return _rlp_length(len(value), 0x80) + value


def _rlp_uint(value: int) -> bytes:
    if value == 0:
        return b"\x80"
    if value < 0x80:
        return bytes((value,))
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return _rlp_length(len(raw), 0x80) + raw


def _rlp_list(encoded_items: list[bytes]) -> bytes:
    payload = b"".join(encoded_items)
    return _rlp_length(len(payload), 0xC0) + payload


def _rlp_pairs(pairs: Iterable[tuple[int, Any]], value_is_bytes: bool = False) -> bytes:
    encode_value = _rlp_bytes if value_is_bytes else _rlp_uint
    return _rlp_list([_rlp_list([_rlp_uint(index), encode_value(value)])
                      for index, value in pairs])


def _encode_account(account: AccountChanges) -> bytes:
    return _rlp_list([
        _rlp_bytes(account.address),
        _rlp_list([
            _rlp_list([_rlp_uint(slot.slot),
                       _rlp_pairs((c.index, c.value) for c in slot.changes)])
            for slot in account.storage_changes
        ]),
        _rlp_list([_rlp_uint(slot) for slot in account.storage_reads]),
        _rlp_pairs((c.index, c.balance) for c in account.balance_changes),
        _rlp_pairs((c.index, c.nonce) for c in account.nonce_changes),
        _rlp_pairs(((c.index, c.code) for c in account.code_changes), value_is_bytes=True),
    ])


# ---- decoding -------------------------------------------------------------------------


def decode_access_list(data: bytes, max_bytes: int = MAX_ENCODED_BYTES) -> BlockAccessList:
    """The access list `data` encodes; AccessListDecodeError unless it is canonical."""
    if len(data) > max_bytes:
        raise AccessListDecodeError(
            f"block access list of {len(data)} bytes exceeds the limit of {max_bytes}"
        )
    try:
        # The trie's RLP reader (a few times pyrlp's speed on a list this deep); whatever it
        # accepts must also re-encode to `data` below, which only canonical RLP does.
        items = decode_rlp(data)
    except ValueError as exc:
        raise AccessListDecodeError(f"block access list is not valid RLP: {exc}") from None
    accounts = tuple(_decode_account(item, i) for i, item in enumerate(_list(items, "list")))
    _ascending((a.address for a in accounts), "accounts", "address")
    access_list = BlockAccessList(accounts)
    if access_list.encode() != data:  # e.g. a long-form length where the short form fits
        raise AccessListDecodeError("block access list RLP is not in canonical form")
    return access_list


def _list(item: Any, what: str, length: Optional[int] = None) -> list:
    if not isinstance(item, list):
        raise AccessListDecodeError(f"{what} must be a list")
    if length is not None and len(item) != length:
        raise AccessListDecodeError(f"{what} must have {length} items, not {len(item)}")
    return item


def _uint(item: Any, what: str, maximum: int) -> int:
    if not isinstance(item, bytes):
        raise AccessListDecodeError(f"{what} must be an integer, not a list")
    if item[:1] == b"\x00":
        raise AccessListDecodeError(f"{what} has a leading zero byte")
    value = int.from_bytes(item, "big")
    if value > maximum:
        raise AccessListDecodeError(f"{what} {value} is above {maximum}")
    return value


def _ascending(keys: Iterable[Any], what: str, key_name: str) -> None:
    previous = None
    for key in keys:
        if previous is not None and key <= previous:
            raise AccessListDecodeError(
                f"{what} must be in strictly ascending {key_name} order (no repeats)"
            )
        previous = key


def _changes(item: Any, what: str, maximum: Optional[int]) -> list[tuple[int, Any]]:
    pairs = []
    for i, change in enumerate(_list(item, what)):
        index_item, value_item = _list(change, f"{what}[{i}]", 2)
        index = _uint(index_item, f"{what}[{i}] index", MAX_INDEX)
        if maximum is None:
            if not isinstance(value_item, bytes):
                raise AccessListDecodeError(f"{what}[{i}] code must be bytes")
            value: Any = value_item
        else:
            value = _uint(value_item, f"{what}[{i}] value", maximum)
        pairs.append((index, value))
    _ascending((index for index, _ in pairs), what, "index")
    return pairs


def _decode_account(item: Any, position: int) -> AccountChanges:
    fields = _list(item, f"account {position}", 6)
    address = fields[0]
    if not isinstance(address, bytes) or len(address) != ADDRESS_BYTES:
        raise AccessListDecodeError(f"account {position}: address must be 20 bytes")
    where = f"account 0x{address.hex()}"
    slots = []
    for i, slot_item in enumerate(_list(fields[1], f"{where} storage changes")):
        slot_raw, changes_raw = _list(slot_item, f"{where} storage changes[{i}]", 2)
        slot = _uint(slot_raw, f"{where} slot", MAX_UINT256)
        changes = _changes(changes_raw, f"{where} slot {slot:#x} changes", MAX_UINT256)
        if not changes:
            raise AccessListDecodeError(f"{where} slot {slot:#x} has an empty change list")
        slots.append(SlotChanges(slot, tuple(StorageChange(i, v) for i, v in changes)))
    _ascending((s.slot for s in slots), f"{where} storage changes", "slot")
    reads = tuple(_uint(r, f"{where} storage read", MAX_UINT256)
                  for r in _list(fields[2], f"{where} storage reads"))
    _ascending(reads, f"{where} storage reads", "slot")
    changed = {s.slot for s in slots}
    for slot in reads:
        if slot in changed:
            raise AccessListDecodeError(f"{where} slot {slot:#x} is both read-only and changed")
    balances = _changes(fields[3], f"{where} balance changes", MAX_UINT256)
    nonces = _changes(fields[4], f"{where} nonce changes", MAX_NONCE)
    codes = _changes(fields[5], f"{where} code changes", None)
    return AccountChanges(
        address=address,
        storage_changes=tuple(slots),
        storage_reads=reads,
        balance_changes=tuple(BalanceChange(i, v) for i, v in balances),
        nonce_changes=tuple(NonceChange(i, v) for i, v in nonces),
        code_changes=tuple(CodeChange(i, v) for i, v in codes),
    )


# ---- the JSON form (execution-apis eth_getBlockAccessList) ----------------------------


def _quantity(value: int) -> str:
    return hex(value)


def _word(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def access_list_json(access_list: BlockAccessList) -> list[dict]:
    """The execution-apis `BlockAccessList` object."""
    return [
        {
            "address": "0x" + account.address.hex(),
            "storageChanges": [
                {"key": _word(slot.slot),
                 "changes": [{"index": _quantity(c.index), "value": _word(c.value)}
                             for c in slot.changes]}
                for slot in account.storage_changes
            ],
            "storageReads": [_word(slot) for slot in account.storage_reads],
            "balanceChanges": [{"index": _quantity(c.index), "value": _quantity(c.balance)}
                               for c in account.balance_changes],
            "nonceChanges": [{"index": _quantity(c.index), "value": _quantity(c.nonce)}
                             for c in account.nonce_changes],
            "codeChanges": [{"index": _quantity(c.index), "code": "0x" + c.code.hex()}
                            for c in account.code_changes],
        }
        for account in access_list.accounts
    ]


def sorted_account(address: bytes, storage: dict[int, Sequence[tuple[int, int]]],
                   reads: Iterable[int], balances: Sequence[tuple[int, int]],
                   nonces: Sequence[tuple[int, int]],
                   codes: Sequence[tuple[int, bytes]]) -> AccountChanges:
    """An account's changes in canonical order, from unordered parts."""
    return AccountChanges(
        address=address,
        storage_changes=tuple(
            SlotChanges(slot, tuple(StorageChange(i, v) for i, v in sorted(storage[slot])))
            for slot in sorted(storage)
        ),
        storage_reads=tuple(sorted(set(reads) - set(storage))),
        balance_changes=tuple(BalanceChange(i, v) for i, v in sorted(balances)),
        nonce_changes=tuple(NonceChange(i, v) for i, v in sorted(nonces)),
        code_changes=tuple(CodeChange(i, v) for i, v in sorted(codes)),
    )
