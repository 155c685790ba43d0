"""Block-STM's block access list: built from the committed read and write sets, with no
extra pass over the transactions.

A committed incarnation's reads name every location the transaction resolved outside its
own writes, its writes and blind credits every location it changed; `record_of` turns
them into the transaction's `AccessRecord`. Values before the block come from the
accounts the coordinator already primed for the fold and the lean trie reader.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3
from eth_hash.auto import keccak

from execution.account_rlp import AccountLike, decode_storage_value
from execution.bal.builder import AccessRecord
from execution.blockstm.messages import TxResult
from execution.blockstm.triereader import lookup
from execution.locations import ADDRESS_LEN, BAL, COD, NON, WIP, Location, is_slot


def record_of(result: TxResult, code_of: Callable[[bytes], bytes]) -> AccessRecord:
    """The access record of one committed transaction."""
    record = AccessRecord()
    addresses = record.addresses
    slots = record.slots
    for location in result.reads:
        addresses.add(location[:ADDRESS_LEN])
        if is_slot(location):
            slots.add(location)
    writes = record.writes
    for location, value in result.writes.items():
        address = location[:ADDRESS_LEN]
        addresses.add(address)
        if is_slot(location):
            slots.add(location)
            writes[location] = value
            continue
        tag = location[ADDRESS_LEN:]
        if tag == BAL or tag == NON:
            writes[location] = value
        elif tag == COD:
            writes[location] = result.codes.get(value) or code_of(value)
        elif tag == WIP:
            record.wiped.add(address)
        # EXI: existence follows from the fields (EIP-161), it is not listed
    for location, credit in result.deltas.items():
        addresses.add(location[:ADDRESS_LEN])
        record.deltas[location] = credit
    return record


class PreBlockValues:
    """Values of locations before the block, for the builder: accounts from the fold's
    primed cache (pre-state accounts), storage through the lean trie reader."""

    def __init__(self, accounts: Mapping[bytes, AccountLike], account_of: Callable[[bytes], AccountLike],
                 node_of: Callable[[bytes], Any], code_of: Callable[[bytes], bytes]) -> None:
        self._accounts = accounts
        self._account_of = account_of
        self._node_of = node_of
        self._code_of = code_of

    def _account(self, address: bytes) -> AccountLike:
        account = self._accounts.get(address)
        if account is None:
            account = self._account_of(address)
        return account

    def value(self, location: Location) -> Any:
        account = self._account(location[:ADDRESS_LEN])
        if is_slot(location):
            if account.storage_root == BLANK_ROOT_HASH:
                return 0
            encoded = lookup(self._node_of, account.storage_root, keccak(location[ADDRESS_LEN:]))
            return decode_storage_value(encoded) if encoded else 0
        tag = location[ADDRESS_LEN:]
        if tag == BAL:
            return account.balance
        if tag == NON:
            return account.nonce
        return self._code_of(account.code_hash)

    def has_storage(self, address: bytes) -> bool:
        return self._account(address).storage_root != BLANK_ROOT_HASH


def code_reader(nodes: Any) -> Callable[[bytes], bytes]:
    """Code by hash from a node store (the empty code has no entry)."""

    def code_of(code_hash: bytes) -> bytes:
        if code_hash == EMPTY_SHA3:
            return b""
        return nodes[code_hash]

    return code_of
