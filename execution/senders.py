"""Sender recovery, once per transaction object, straight through libsecp256k1.

py-evm's `tx.sender` builds an eth-keys `Signature`, recovers a `PublicKey` object and
derives the address through several layers of validation wrappers: 210 us a transfer
here, against 130 us for the same recovery done with coincurve (the binding eth-keys
itself uses) on the same message hash. `recover_sender` computes exactly that address
and stores it where py-evm caches `tx.sender` (a `cached_property`), so every later
reader (the mempool, the executors, a Block-STM worker that receives the object pickled)
gets it without recovering again.

The caller checks the signature's value ranges first (`rules.signature_values_in_range`:
r and s in [1, n), low s, y parity 0 or 1), as py-evm's Signature does on construction.
"""

from __future__ import annotations

from typing import Optional

import coincurve
from eth.abc import SignedTransactionAPI
from eth_hash.auto import keccak
from eth_typing import Address

SIGNATURE_SCALAR_BYTES = 32
UNCOMPRESSED_PREFIX_BYTES = 1  # 0x04 before X || Y
ADDRESS_OFFSET = 12  # an address is the last 20 bytes of keccak(X || Y)


class SenderRecoveryError(ValueError):
    """The signature recovers no public key (not a point on the curve)."""


def recover_sender(tx: SignedTransactionAPI, signing_message: Optional[bytes] = None) -> Address:
    """The transaction's sender, recovered at most once per object. `signing_message`:
    what the sender signed, if the caller has it (`execution.transaction_decoding`
    gets it from the raw bytes for less than py-evm's `get_message_for_signing`)."""
    cached = tx.__dict__.get("sender")
    if cached is not None:
        return cached
    if signing_message is None:
        signing_message = tx.get_message_for_signing()
    message_hash = keccak(signing_message)
    signature = (
        tx.r.to_bytes(SIGNATURE_SCALAR_BYTES, "big")
        + tx.s.to_bytes(SIGNATURE_SCALAR_BYTES, "big")
        + bytes([tx.y_parity])
    )
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(signature, message_hash, hasher=None)
    except (ValueError, OverflowError) as exc:
        raise SenderRecoveryError(f"cannot recover the signer: {exc}") from None
    uncompressed = public_key.format(compressed=False)[UNCOMPRESSED_PREFIX_BYTES:]
    sender = Address(keccak(uncompressed)[ADDRESS_OFFSET:])
    tx.__dict__["sender"] = sender
    return sender
