"""An account's and a storage slot's RLP, without pyrlp's sedes machinery.

The state trie's leaves are `rlp([nonce, balance, storageRoot, codeHash])` (Yellow
Paper, section 4.1) and a storage trie's are `rlp(value)`. pyrlp spends most of its
10 us per account decode (7 us per encode) finding out which sedes applies; a fold of a
block's final values (executionless sync, the access-list importer) does thousands.
These give pyrlp's bytes and values, with its checks on what is decoded
(`tests/test_trie.py` compares them).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from execution.trie import decode_node, encode_node

HASH_BYTES = 32
ACCOUNT_FIELDS = 4


class AccountLike(Protocol):
    """What the folds read of an account: `AccountFields` or py-evm's `Account`."""

    @property
    def nonce(self) -> int: ...

    @property
    def balance(self) -> int: ...

    @property
    def storage_root(self) -> bytes: ...

    @property
    def code_hash(self) -> bytes: ...


class AccountFields(NamedTuple):
    """The four fields of a state-trie leaf, named as py-evm's `Account` names them."""

    nonce: int
    balance: int
    storage_root: bytes
    code_hash: bytes


def int_bytes(value: int) -> bytes:
    """An unsigned integer as RLP holds it: big-endian, no leading zero bytes (0: b"")."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _int_of(raw: bytes, name: str) -> int:
    if type(raw) is not bytes or (raw and raw[0] == 0):
        raise ValueError(f"account {name} is not a canonical unsigned integer")
    return int.from_bytes(raw, "big")


def encode_account(nonce: int, balance: int, storage_root: bytes, code_hash: bytes) -> bytes:
    return encode_node([int_bytes(nonce), int_bytes(balance), storage_root, code_hash])


def decode_account_fields(encoded: bytes) -> AccountFields:
    """The fields of an account's RLP; ValueError when it is not one."""
    items = decode_node(encoded)
    if type(items) is not list or len(items) != ACCOUNT_FIELDS:
        raise ValueError("an account's RLP is a list of four items")
    nonce, balance, storage_root, code_hash = items
    for name, value in (("storage root", storage_root), ("code hash", code_hash)):
        if type(value) is not bytes or len(value) != HASH_BYTES:
            raise ValueError(f"account {name} is not {HASH_BYTES} bytes")
    return AccountFields(_int_of(nonce, "nonce"), _int_of(balance, "balance"), storage_root,
                         code_hash)


def encode_storage_value(value: int) -> bytes:
    """A storage slot's leaf: rlp of the value (a cleared slot is deleted, not stored)."""
    return encode_node(int_bytes(value))


def decode_storage_value(encoded: bytes) -> int:
    """A storage slot's leaf as its value (rlp's big_endian_int sedes takes five times
    as long); ValueError when it is not a canonical unsigned integer."""
    raw = decode_node(encoded)
    if type(raw) is not bytes:
        raise ValueError("a storage value's RLP is a byte string")
    return _int_of(raw, "storage value")
