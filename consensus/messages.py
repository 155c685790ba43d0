"""BFT consensus messages: proposals and votes, their signing digests and wire encoding.

Every signature is over a domain-separated, chain-id-bound digest, so a signature made for
one message kind (or one chain) is never valid for another. The precommit digest is
exactly `certificate.precommit_digest`, so the precommits that commit a block assemble
into a `CommitCertificate` unchanged. A nil vote signs an empty block hash.

Wire format (strict, canonical RLP of a flat list of byte strings, versioned):

    proposal:  [version, 1, height, round, block_hash, pol_round + 1, block_bytes, signature]
    prevote:   [version, 2, height, round, block_hash | b"", validator, signature]
    precommit: [version, 3, height, round, block_hash | b"", validator, signature]

`decode_message` never raises anything but `DecodeError` on any input: size caps are
checked before parsing, nesting is refused (the parser is flat and non-recursive),
integers must be canonical and in range, lengths must be exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Optional, Union

import rlp
from eth_hash.auto import keccak
from eth_keys import keys
from eth_keys.datatypes import PrivateKey
from eth_keys.exceptions import BadSignature, ValidationError

from consensus.certificate import precommit_digest

MESSAGE_VERSION = 1
PROPOSAL_DOMAIN = b"laminar/proposal/v1"
PREVOTE_DOMAIN = b"laminar/prevote/v1"

MAX_HEIGHT = 2**63 - 1
MAX_ROUND = 2**31 - 1
MAX_VALIDATORS = 2**16
MAX_BLOCK_BYTES = 16 * 1024 * 1024
MAX_VOTE_BYTES = 256
MAX_MESSAGE_BYTES = MAX_BLOCK_BYTES + 1024
HASH_BYTES = 32
SIGNATURE_BYTES = 65

TYPE_PROPOSAL = 1
TYPE_PREVOTE = 2
TYPE_PRECOMMIT = 3


class Step(IntEnum):
    """The steps of a round, in order; also the `step` of a WAL record and of a timeout."""

    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


class DecodeError(ValueError):
    """The bytes are not a well-formed consensus message of a known version."""


class InvalidSignatureError(ValueError):
    """The signature does not recover, or recovers to someone other than the signer."""


def proposal_digest(chain_id: int, height: int, round_: int, block_hash: bytes, pol_round: int) -> bytes:
    return keccak(
        PROPOSAL_DOMAIN + rlp.encode([chain_id, height, round_, block_hash, pol_round + 1])
    )


def prevote_digest(chain_id: int, height: int, round_: int, block_hash: Optional[bytes]) -> bytes:
    return keccak(PREVOTE_DOMAIN + rlp.encode([chain_id, height, round_, block_hash or b""]))


def vote_digest(
    kind: Step, chain_id: int, height: int, round_: int, block_hash: Optional[bytes]
) -> bytes:
    if kind == Step.PREVOTE:
        return prevote_digest(chain_id, height, round_, block_hash)
    if kind == Step.PRECOMMIT:
        return precommit_digest(chain_id, height, round_, block_hash or b"")
    raise ValueError(f"not a vote kind: {kind!r}")


def _recover(digest: bytes, signature: bytes) -> bytes:
    try:
        public_key = keys.Signature(signature).recover_public_key_from_msg_hash(digest)
    except (BadSignature, ValidationError, ValueError) as exc:
        raise InvalidSignatureError(f"bad signature: {exc}") from None
    return public_key.to_canonical_address()


def _recovered_signer(message: Any, chain_id: int) -> bytes:
    """The signer's address, recovered once per message object: the reactor checks it when
    the message arrives and the state machine again when it handles it (it must stay
    correct fed directly, as the simulations do); the second answer comes from here."""
    cached = message.__dict__.get("_signer")
    if cached is not None and cached[0] == chain_id:
        return cached[1]
    address = _recover(message.digest(chain_id), message.signature)
    object.__setattr__(message, "_signer", (chain_id, address))  # not a field: eq ignores it
    return address


def _sign(private_key: Union[bytes, PrivateKey], digest: bytes) -> bytes:
    if not isinstance(private_key, keys.PrivateKey):
        private_key = keys.PrivateKey(private_key)
    return private_key.sign_msg_hash(digest).to_bytes()


@dataclass(frozen=True)
class Proposal:
    """The proposer of (height, round) proposes `block_hash`; `pol_round` is -1 or the
    round of the prevote quorum (proof of lock) that justifies re-proposing the block."""

    height: int
    round: int
    block_hash: bytes
    pol_round: int
    block_bytes: bytes
    signature: bytes

    @property
    def step(self) -> Step:
        return Step.PROPOSE

    def digest(self, chain_id: int) -> bytes:
        return proposal_digest(chain_id, self.height, self.round, self.block_hash, self.pol_round)

    def signer(self, chain_id: int) -> bytes:
        return _recovered_signer(self, chain_id)

    @classmethod
    def sign(
        cls, private_key, chain_id: int, height: int, round_: int, block_hash: bytes,
        pol_round: int, block_bytes: bytes,
    ) -> "Proposal":
        signature = _sign(
            private_key, proposal_digest(chain_id, height, round_, block_hash, pol_round)
        )
        return cls(height, round_, block_hash, pol_round, block_bytes, signature)

    def encode(self) -> bytes:
        return rlp.encode([
            MESSAGE_VERSION, TYPE_PROPOSAL, self.height, self.round, self.block_hash,
            self.pol_round + 1, self.block_bytes, self.signature,
        ])


@dataclass(frozen=True)
class Vote:
    """A prevote or precommit by validator number `validator` (its index in the set);
    `block_hash` None is a nil vote."""

    kind: Step
    height: int
    round: int
    block_hash: Optional[bytes]
    validator: int
    signature: bytes

    @property
    def step(self) -> Step:
        return self.kind

    def digest(self, chain_id: int) -> bytes:
        return vote_digest(self.kind, chain_id, self.height, self.round, self.block_hash)

    def signer(self, chain_id: int) -> bytes:
        return _recovered_signer(self, chain_id)

    @classmethod
    def sign(
        cls, private_key, kind: Step, chain_id: int, height: int, round_: int,
        block_hash: Optional[bytes], validator: int,
    ) -> "Vote":
        signature = _sign(private_key, vote_digest(kind, chain_id, height, round_, block_hash))
        return cls(Step(kind), height, round_, block_hash, validator, signature)

    def encode(self) -> bytes:
        type_ = TYPE_PREVOTE if self.kind == Step.PREVOTE else TYPE_PRECOMMIT
        return rlp.encode([
            MESSAGE_VERSION, type_, self.height, self.round, self.block_hash or b"",
            self.validator, self.signature,
        ])


Message = Union[Proposal, Vote]


# ---- strict decoding ----------------------------------------------------------------


def _length(data: bytes, offset: int, size: int) -> int:
    """A big-endian long-form RLP length: canonical (no leading zero, > 55)."""
    if size > 4 or offset + size > len(data):
        raise DecodeError("truncated or oversized RLP length")
    raw = data[offset:offset + size]
    if raw[0] == 0:
        raise DecodeError("non-canonical RLP length (leading zero)")
    value = int.from_bytes(raw, "big")
    if value <= 55:
        raise DecodeError("non-canonical RLP length (short form expected)")
    return value


def _flat_list(data: bytes) -> list[bytes]:
    """Decode canonical RLP that must be a list of byte strings (no nesting)."""
    if not data:
        raise DecodeError("empty message")
    prefix = data[0]
    if prefix < 0xC0:
        raise DecodeError("message is not an RLP list")
    if prefix <= 0xF7:
        start, body = 1, prefix - 0xC0
    else:
        size = prefix - 0xF7
        start, body = 1 + size, _length(data, 1, size)
    if start + body != len(data):
        raise DecodeError("RLP list length does not match the message length")
    items: list[bytes] = []
    offset = start
    while offset < len(data):
        b = data[offset]
        if b < 0x80:
            items.append(data[offset:offset + 1])
            offset += 1
            continue
        if b >= 0xC0:
            raise DecodeError("nested RLP lists are not allowed")
        if b <= 0xB7:
            head, length = 1, b - 0x80
            if length == 1 and offset + 1 < len(data) and data[offset + 1] < 0x80:
                raise DecodeError("non-canonical RLP (single byte encoded as a string)")
        else:
            size = b - 0xB7
            head, length = 1 + size, _length(data, offset + 1, size)
        end = offset + head + length
        if end > len(data):
            raise DecodeError("RLP item runs past the end of the message")
        items.append(data[offset + head:end])
        offset = end
    return items


def _uint(raw: bytes, name: str, maximum: int) -> int:
    if raw[:1] == b"\x00":
        raise DecodeError(f"{name}: non-canonical integer (leading zero)")
    if len(raw) > 8:
        raise DecodeError(f"{name}: integer too large")
    value = int.from_bytes(raw, "big")
    if value > maximum:
        raise DecodeError(f"{name}: {value} exceeds {maximum}")
    return value


def _exact(raw: bytes, name: str, size: int) -> bytes:
    if len(raw) != size:
        raise DecodeError(f"{name}: expected {size} bytes, got {len(raw)}")
    return raw


def decode_message(data: bytes) -> Message:
    """Decode a proposal or vote; any malformed input raises `DecodeError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    items = _flat_list(data)
    if len(items) < 2:
        raise DecodeError("message too short")
    version = _uint(items[0], "version", 2**32)
    if version != MESSAGE_VERSION:
        raise DecodeError(f"unsupported message version {version}")
    type_ = _uint(items[1], "type", 255)
    if type_ == TYPE_PROPOSAL:
        if len(items) != 8:
            raise DecodeError(f"proposal: expected 8 fields, got {len(items)}")
        height = _uint(items[2], "height", MAX_HEIGHT)
        round_ = _uint(items[3], "round", MAX_ROUND)
        block_hash = _exact(items[4], "block_hash", HASH_BYTES)
        pol_round = _uint(items[5], "pol_round", MAX_ROUND) - 1
        if pol_round >= round_:
            raise DecodeError("proposal: pol_round must be below round")
        block_bytes = items[6]
        if not block_bytes or len(block_bytes) > MAX_BLOCK_BYTES:
            raise DecodeError(f"proposal: block of {len(block_bytes)} bytes")
        signature = _exact(items[7], "signature", SIGNATURE_BYTES)
        return Proposal(height, round_, block_hash, pol_round, block_bytes, signature)
    if type_ in (TYPE_PREVOTE, TYPE_PRECOMMIT):
        if len(data) > MAX_VOTE_BYTES:
            raise DecodeError(f"vote of {len(data)} bytes exceeds {MAX_VOTE_BYTES}")
        if len(items) != 7:
            raise DecodeError(f"vote: expected 7 fields, got {len(items)}")
        height = _uint(items[2], "height", MAX_HEIGHT)
        round_ = _uint(items[3], "round", MAX_ROUND)
        if items[4] and len(items[4]) != HASH_BYTES:
            raise DecodeError(f"block_hash: expected 0 or {HASH_BYTES} bytes, got {len(items[4])}")
        validator = _uint(items[5], "validator", MAX_VALIDATORS - 1)
        signature = _exact(items[6], "signature", SIGNATURE_BYTES)
        kind = Step.PREVOTE if type_ == TYPE_PREVOTE else Step.PRECOMMIT
        return Vote(kind, height, round_, items[4] or None, validator, signature)
    raise DecodeError(f"unknown message type {type_}")
