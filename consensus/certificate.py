"""Commit certificates: the signatures that make a block final.

A certificate says "these validators precommitted block B at height H, round R". It is
stored with the block and served over JSON-RPC; a syncing node checks it against the
validator set before it executes the block. The single-validator engine issues
one-signature certificates; the BFT engine issues 2f+1.
"""

from __future__ import annotations

from dataclasses import dataclass

import rlp
from eth_hash.auto import keccak
from eth_keys import keys
from eth_keys.exceptions import BadSignature, ValidationError
from rlp.sedes import CountableList, big_endian_int, binary

CERTIFICATE_VERSION = 1
PRECOMMIT_DOMAIN = b"laminar/precommit/v1"


class InvalidCertificateError(ValueError):
    pass


def precommit_digest(chain_id: int, height: int, round_: int, block_hash: bytes) -> bytes:
    """What a validator signs when it precommits a block (domain-separated, chain-bound)."""
    return keccak(
        PRECOMMIT_DOMAIN + rlp.encode([chain_id, height, round_, block_hash])
    )


@dataclass(frozen=True)
class CommitCertificate:
    height: int
    round: int
    block_hash: bytes
    signatures: tuple[bytes, ...]  # 65-byte secp256k1 signatures (r, s, v)

    def encode(self) -> bytes:
        return rlp.encode(
            [CERTIFICATE_VERSION, self.height, self.round, self.block_hash, list(self.signatures)]
        )

    @classmethod
    def decode(cls, data: bytes) -> "CommitCertificate":
        try:
            version, height, round_, block_hash, signatures = rlp.decode(
                data,
                sedes=rlp.sedes.List(
                    [big_endian_int, big_endian_int, big_endian_int, binary, CountableList(binary)]
                ),
            )
        except rlp.exceptions.DecodingError as exc:
            raise InvalidCertificateError(f"undecodable certificate: {exc}") from None
        if version != CERTIFICATE_VERSION:
            raise InvalidCertificateError(f"unknown certificate version {version}")
        return cls(height, round_, block_hash, tuple(signatures))

    def signers(self, chain_id: int) -> list[bytes]:
        digest = precommit_digest(chain_id, self.height, self.round, self.block_hash)
        addresses = []
        for signature in self.signatures:
            try:
                public_key = keys.Signature(signature).recover_public_key_from_msg_hash(digest)
            except (BadSignature, ValidationError, ValueError) as exc:
                raise InvalidCertificateError(f"bad signature: {exc}") from None
            addresses.append(public_key.to_canonical_address())
        return addresses

    def verify(self, chain_id: int, validators: tuple[bytes, ...], block_hash: bytes) -> None:
        """Raise unless more than two thirds of `validators` signed exactly `block_hash`."""
        if block_hash != self.block_hash:
            raise InvalidCertificateError("certificate is for another block")
        signers = set(self.signers(chain_id))
        unknown = signers - set(validators)
        if unknown:
            raise InvalidCertificateError("certificate signed by a non-validator")
        if 3 * len(signers) <= 2 * len(validators):
            raise InvalidCertificateError(
                f"{len(signers)} of {len(validators)} validators signed; more than 2/3 needed"
            )


def sign_precommit(private_key: bytes, chain_id: int, height: int, round_: int, block_hash: bytes) -> bytes:
    digest = precommit_digest(chain_id, height, round_, block_hash)
    return keys.PrivateKey(private_key).sign_msg_hash(digest).to_bytes()
