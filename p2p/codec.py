"""Wire envelope: ``RLP([version, kind, payload])`` with a strict decoder.

Every byte string Laminar puts on the wire (gossip message data, sync requests and
responses) is one envelope. Decoding is strict and bounded:

* the raw size is checked *before* RLP decoding (``max_envelope_size(kind)``);
* RLP must be canonical (``rlp.decode(strict=True)``, minimal integers) and be a list
  of exactly three items: two minimal big-endian integers and a byte string;
* ``version`` must be :data:`WIRE_VERSION`; ``kind`` must be a known :class:`Kind`
  and, where the caller says which kinds it expects, one of those;
* the payload is limited per kind, and structured payloads (sync requests and
  responses) are decoded with the same strictness.

Any violation raises :class:`DecodeError` with a short machine-readable ``reason``
(used as a counter label). Callers drop the message, log it and charge the peer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable

import rlp
from rlp.exceptions import DeserializationError
from rlp.sedes import big_endian_int

from p2p.config import Caps

WIRE_VERSION = 1
# RLP list header (<= 9 bytes) + two small ints + payload string header (<= 9 bytes).
_ENVELOPE_OVERHEAD = 32


class Kind(enum.IntEnum):
    TX = 1
    CONSENSUS = 2
    STATUS_REQUEST = 3
    STATUS_RESPONSE = 4
    BLOCKS_REQUEST = 5
    BLOCKS_RESPONSE = 6
    ERROR = 7
    TX_BATCH = 8  # RLP list of raw transactions, gossiped as one message


class ErrorCode(enum.IntEnum):
    BAD_REQUEST = 1
    UNAVAILABLE = 2  # no handler registered
    INTERNAL = 3  # the handler raised
    TOO_LARGE = 4  # the handler's answer exceeded the caps


class DecodeError(ValueError):
    """Raised for any malformed, oversized or unexpected envelope."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Envelope:
    version: int
    kind: Kind
    payload: bytes


def max_payload_size(kind: Kind, caps: Caps) -> int:
    if kind == Kind.TX:
        return caps.max_tx_size
    if kind == Kind.CONSENSUS:
        return caps.max_consensus_size
    if kind == Kind.STATUS_RESPONSE:
        return caps.max_status_size
    if kind == Kind.BLOCKS_RESPONSE:
        return caps.max_blocks_response_size
    if kind == Kind.STATUS_REQUEST:
        return 0
    if kind == Kind.BLOCKS_REQUEST:
        return 32  # two small integers
    if kind == Kind.ERROR:
        return 1024
    if kind == Kind.TX_BATCH:
        return caps.max_tx_batch_size
    raise AssertionError(kind)


def max_envelope_size(kinds: Iterable[Kind], caps: Caps) -> int:
    return max(max_payload_size(k, caps) for k in kinds) + _ENVELOPE_OVERHEAD


def encode(kind: Kind, payload: bytes, caps: Caps) -> bytes:
    """Encode one envelope; refuses (ValueError) to produce what a peer would reject."""
    if not isinstance(payload, (bytes, bytearray)):
        raise TypeError("payload must be bytes")
    limit = max_payload_size(kind, caps)
    if len(payload) > limit:
        raise ValueError(f"{kind.name} payload of {len(payload)} bytes exceeds cap {limit}")
    return rlp.encode([WIRE_VERSION, int(kind), bytes(payload)])


def _int(item: object, what: str) -> int:
    if not isinstance(item, bytes):
        raise DecodeError("malformed", f"{what} is a list")
    try:
        return big_endian_int.deserialize(item)
    except DeserializationError as exc:
        raise DecodeError("malformed", f"{what} is not a minimal integer") from exc


def decode(data: bytes, caps: Caps, expected: Iterable[Kind] | None = None) -> Envelope:
    """Strictly decode one envelope. ``expected``: kinds acceptable in this context."""
    allowed = frozenset(expected) if expected is not None else frozenset(Kind)
    if not isinstance(data, (bytes, bytearray)):
        raise DecodeError("malformed", "not bytes")
    limit = max_envelope_size(allowed, caps)
    if len(data) > limit:
        raise DecodeError("oversized", f"{len(data)} bytes > {limit}")
    try:
        items = rlp.decode(bytes(data), strict=True)
    except Exception as exc:  # noqa: BLE001 - any rlp failure is a decode error
        raise DecodeError("undecodable", str(exc)[:120]) from exc
    if not isinstance(items, list) or len(items) != 3:
        raise DecodeError("malformed", "envelope is not a 3-item list")
    version = _int(items[0], "version")
    if version != WIRE_VERSION:
        raise DecodeError("bad_version", f"version {version}")
    kind_num = _int(items[1], "kind")
    try:
        kind = Kind(kind_num)
    except ValueError as exc:
        raise DecodeError("bad_kind", f"kind {kind_num}") from exc
    if kind not in allowed:
        raise DecodeError("unexpected_kind", kind.name)
    payload = items[2]
    if not isinstance(payload, bytes):
        raise DecodeError("malformed", "payload is a list")
    if len(payload) > max_payload_size(kind, caps):
        raise DecodeError("oversized", f"{kind.name} payload {len(payload)} bytes")
    return Envelope(version, kind, payload)


# ---------------------------------------------------------------------------
# Structured payloads of the sync protocol
# ---------------------------------------------------------------------------


def encode_blocks_request(from_height: int, count: int, caps: Caps) -> bytes:
    if from_height < 0 or count < 0:
        raise ValueError("from_height and count must be >= 0")
    return encode(Kind.BLOCKS_REQUEST, rlp.encode([from_height, count]), caps)


def decode_blocks_request(payload: bytes) -> tuple[int, int]:
    try:
        items = rlp.decode(payload, strict=True)
    except Exception as exc:  # noqa: BLE001 - any rlp failure is a decode error
        raise DecodeError("undecodable", "blocks request") from exc
    if not isinstance(items, list) or len(items) != 2:
        raise DecodeError("malformed", "blocks request is not [from, count]")
    from_height = _int(items[0], "from_height")
    count = _int(items[1], "count")
    if from_height >= 2**64 or count >= 2**32:
        raise DecodeError("malformed", "blocks request out of range")
    return from_height, count


def encode_blocks_response(blocks: list[bytes], caps: Caps) -> bytes:
    if len(blocks) > caps.max_blocks_per_request:
        raise ValueError("too many blocks for one response")
    for b in blocks:
        if not isinstance(b, (bytes, bytearray)):
            raise TypeError("blocks must be bytes")
        if len(b) > caps.max_block_size:
            raise ValueError(f"block of {len(b)} bytes exceeds cap {caps.max_block_size}")
    return encode(Kind.BLOCKS_RESPONSE, rlp.encode([bytes(b) for b in blocks]), caps)


def decode_blocks_response(payload: bytes, caps: Caps, requested: int) -> list[bytes]:
    try:
        items = rlp.decode(payload, strict=True)
    except Exception as exc:  # noqa: BLE001 - any rlp failure is a decode error
        raise DecodeError("undecodable", "blocks response") from exc
    if not isinstance(items, list):
        raise DecodeError("malformed", "blocks response is not a list")
    if len(items) > min(requested, caps.max_blocks_per_request):
        raise DecodeError("malformed", f"{len(items)} blocks for a request of {requested}")
    return _byte_strings(items, caps.max_block_size, "block")


def encode_tx_batch(raw_txs: list[bytes], caps: Caps) -> bytes:
    """One gossip message for several transactions (Kind.TX_BATCH)."""
    if not 0 < len(raw_txs) <= caps.max_txs_per_batch:
        raise ValueError(f"a transaction batch holds 1..{caps.max_txs_per_batch} transactions")
    for raw in raw_txs:
        if len(raw) > caps.max_tx_size:
            raise ValueError(f"transaction of {len(raw)} bytes exceeds cap {caps.max_tx_size}")
    return encode(Kind.TX_BATCH, rlp.encode([bytes(raw) for raw in raw_txs]), caps)


def rlp_item_size(raw: bytes) -> int:
    """Bytes a string takes inside an RLP list (an upper bound: one-byte strings may
    encode as themselves)."""
    return len(raw) + _rlp_length_prefix(len(raw))


def rlp_list_size(body: int) -> int:
    """Bytes of an RLP list whose items take `body` bytes."""
    return body + _rlp_length_prefix(body)


def _rlp_length_prefix(length: int) -> int:
    return 1 if length < 56 else 1 + (length.bit_length() + 7) // 8


def decode_tx_batch(payload: bytes, caps: Caps) -> list[bytes]:
    """The transactions of a TX_BATCH payload: a non-empty list of byte strings within the
    caps (what each transaction is, the node judges)."""
    try:
        items = rlp.decode(payload, strict=True)
    except Exception as exc:  # noqa: BLE001 - any rlp failure is a decode error
        raise DecodeError("undecodable", "transaction batch") from exc
    if not isinstance(items, list) or not items:
        raise DecodeError("malformed", "transaction batch is not a non-empty list")
    if len(items) > caps.max_txs_per_batch:
        raise DecodeError("oversized", f"{len(items)} transactions in one batch")
    return _byte_strings(items, caps.max_tx_size, "batched transaction")


def _byte_strings(items: list, max_size: int, what: str) -> list[bytes]:
    """`items` when each is a byte string of at most `max_size` bytes (a decoded list's
    members: blocks of a response, transactions of a batch)."""
    for item in items:
        if not isinstance(item, bytes):
            raise DecodeError("malformed", f"{what} is a list")
        if len(item) > max_size:
            raise DecodeError("oversized", f"{what} of {len(item)} bytes")
    return items


def encode_error(code: ErrorCode, message: str, caps: Caps) -> bytes:
    text = message.encode("utf-8", "replace")[:512]
    return encode(Kind.ERROR, rlp.encode([int(code), text]), caps)


def decode_error(payload: bytes) -> tuple[int, str]:
    try:
        items = rlp.decode(payload, strict=True)
    except Exception as exc:  # noqa: BLE001 - any rlp failure is a decode error
        raise DecodeError("undecodable", "error payload") from exc
    if not isinstance(items, list) or len(items) != 2 or not isinstance(items[1], bytes):
        raise DecodeError("malformed", "error payload is not [code, message]")
    return _int(items[0], "error code"), items[1].decode("utf-8", "replace")
