"""State locations: the vocabulary every part of execution that tracks reads and writes
shares (Block-STM's multi-version memory, block-level access lists).

A location is bytes: the 20-byte address plus a one-byte field tag (balance, nonce, code
hash, existence, storage wipe, pre-state storage), or plus the 32-byte big-endian slot
number for a storage slot (52 bytes).
"""

from __future__ import annotations

Location = bytes  # address + field tag, or address + slot

BAL = b"b"  # balance (int); Block-STM may carry commutative deltas on it
NON = b"n"  # nonce (int)
COD = b"c"  # code hash (bytes)
EXI = b"e"  # account exists in the trie (bool)
WIP = b"w"  # storage wiped in this transaction (True): older slot values read as 0
STO = b"s"  # the pre-state account has storage (bool; read-only, never written: EIP-7610)

ADDRESS_LEN = 20
FIELD_KEY_LEN = 21
SLOT_KEY_LEN = 52


def slot_key(address: bytes, slot: int) -> Location:
    return address + slot.to_bytes(32, "big")


def is_slot(location: Location) -> bool:
    return len(location) == SLOT_KEY_LEN


def slot_of(location: Location) -> int:
    return int.from_bytes(location[ADDRESS_LEN:], "big")
