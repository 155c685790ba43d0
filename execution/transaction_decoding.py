"""Signed transactions decoded once, with their hash and the message their sender signed.

py-evm's `builder.decode` spends about 45 us on a transfer going through pyrlp's generic
layers (the payload decoder, `Serializable.deserialize`'s argument merging and checks),
and then `tx.hash` encodes the object again and `tx.get_message_for_signing()` builds an
unsigned copy and encodes that (38 us a fresh transfer). From the raw bytes all three are
cheaper: the payload's RLP items are decoded once (`execution.trie.decode_node`), the
transaction class's own field sedes turn them into values (the same checks pyrlp makes),
and the signed message of a typed transaction is its type byte and the RLP of every field
but the signature's last three. About 23 us instead of 100 here.

The result is the object py-evm builds: the same class and values, its pyrlp encoding
cache set to the payload, its `hash` and `_type_byte` (cached properties on typed
transactions) set to keccak of the bytes and their first byte. Anything this path does
not take (an unknown type, a non-canonical or malformed encoding, a field its sedes
refuses) goes to py-evm's decoder, so what is refused is refused with py-evm's own error.
`tests/test_transaction_decoding.py` checks both agree on every transaction of the
mainnet corpus and the conformance fixtures, and on damaged copies of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Type

from eth.abc import SignedTransactionAPI, TransactionBuilderAPI
from eth.vm.forks.berlin.transactions import AccessListPayloadDecoder, AccessListTransaction
from eth.vm.forks.london.transactions import DynamicFeePayloadDecoder, DynamicFeeTransaction
from eth.vm.forks.prague.transactions import SetCodePayloadDecoder, SetCodeTransaction
from eth_hash.auto import keccak
from rlp import Serializable

from execution.trie import decode_node, encode_node

# The payload decoders py-evm's typed transactions dispatch to, and the class each one
# decodes with `rlp.decode(payload, sedes=...)`. A builder whose decoder for a type is not
# here (blob transactions, a future type) keeps py-evm's path for that type.
SERIALIZABLE_OF_PAYLOAD_DECODER: dict[type, Type[Serializable]] = {
    AccessListPayloadDecoder: AccessListTransaction,
    DynamicFeePayloadDecoder: DynamicFeeTransaction,
    SetCodePayloadDecoder: SetCodeTransaction,
}

LEGACY_LIST_PREFIX = 0xC0  # a legacy transaction is an RLP list; typed ones start below 0x80
SIGNATURE_FIELDS = 3  # y parity (or v), r, s: the last fields of every signed transaction


@dataclass(frozen=True)
class DecodedTransaction:
    """A transaction as py-evm's decoder gives it, with what decoding it made cheap:
    its hash and, for typed transactions, the message its sender signed (None: ask
    `tx.get_message_for_signing()`)."""

    tx: SignedTransactionAPI
    hash: bytes
    signing_message: Optional[bytes]


def decode_transaction(builder: Type[TransactionBuilderAPI], raw: bytes) -> DecodedTransaction:
    """`raw` (a transaction's canonical wire bytes) decoded by `builder`'s rules.

    Raises what `builder.decode(raw)` raises for bytes it refuses. Bytes py-evm's
    decoder accepts but that are not the canonical encoding come back decoded by it
    (the caller's canonical check refuses them, as before)."""
    decoded = _decode_canonical(builder, raw)
    if decoded is not None:
        return decoded
    tx = builder.decode(raw)
    return DecodedTransaction(tx=tx, hash=bytes(tx.hash), signing_message=None)


def _decode_canonical(builder: Type[TransactionBuilderAPI], raw: bytes) -> Optional[DecodedTransaction]:
    """The fast path, or None for anything it does not take."""
    if not raw:
        return None
    first = raw[0]
    try:
        if first >= LEGACY_LIST_PREFIX:
            legacy = _positional(builder.legacy_signed, raw)
            if legacy is None:
                return None
            return DecodedTransaction(tx=legacy, hash=keccak(raw), signing_message=None)
        typed_class = builder.typed_transaction
        inner_class = SERIALIZABLE_OF_PAYLOAD_DECODER.get(typed_class.decoders.get(first))
        if inner_class is None:
            return None
        payload = raw[1:]
        items = _canonical_items(payload)
        if items is None:
            return None
        inner = _from_items(inner_class, items, payload)
        tx = typed_class(first, inner)
        tx_hash = keccak(raw)
        tx.__dict__["hash"] = tx_hash  # TypedTransaction.hash and _type_byte are
        tx.__dict__["_type_byte"] = raw[:1]  # cached_property: encode() is a concatenation
        signing_message = raw[:1] + encode_node(items[:-SIGNATURE_FIELDS])
        return DecodedTransaction(tx=tx, hash=tx_hash, signing_message=signing_message)
    except Exception:  # any refusal: py-evm's decoder says it in its own words
        return None


def _canonical_items(encoded: bytes) -> Optional[list]:
    """The RLP list `encoded` holds, if it is that list's one canonical encoding."""
    try:
        items = decode_node(encoded)
    except (ValueError, RecursionError):
        return None
    if type(items) is not list or encode_node(items) != encoded:
        return None
    return items


def _positional(cls: Type[Serializable], encoded: bytes) -> Optional[SignedTransactionAPI]:
    items = _canonical_items(encoded)
    if items is None:
        return None
    return _from_items(cls, items, encoded)


def _from_items(cls: Type[Serializable], items: list, encoded: bytes) -> SignedTransactionAPI:
    """What `rlp.decode(encoded, sedes=cls)` returns: the class's field sedes over the
    items, the values passed positionally, the encoding cached as pyrlp caches it."""
    values = cls._meta.sedes.deserialize(items)
    tx = cls(*values)
    tx._cached_rlp = encoded
    return tx


class TransactionSedes:
    """py-evm's transaction builder as a block's `transactions` field sedes, with each
    typed transaction decoded by the path above: a proposal of 2,000 transfers decodes
    in a third of the time, and every transaction's hash (which the pool lookups and the
    index writes ask for) comes with it. What the path does not take, legacy
    transactions (already RLP lists inside the block) included, goes to the builder."""

    def __init__(self, builder: Type[TransactionBuilderAPI]) -> None:
        self.builder = builder

    def serialize(self, obj: SignedTransactionAPI) -> object:
        return self.builder.serialize(obj)

    def deserialize(self, encoded: object) -> SignedTransactionAPI:
        if type(encoded) is bytes and encoded and encoded[0] < LEGACY_LIST_PREFIX:
            decoded = _decode_canonical(self.builder, encoded)
            if decoded is not None:
                return decoded.tx
        return self.builder.deserialize(encoded)
