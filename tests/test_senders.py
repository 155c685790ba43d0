"""`execution.senders.recover_sender`: the same sender as py-evm's own `tx.sender` for every
transaction type and any key, refused where py-evm refuses, and recovered once."""

from __future__ import annotations

import pytest
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_account import Account
from eth_keys.exceptions import BadSignature
from eth_utils import ValidationError, to_canonical_address
from hypothesis import given, settings
from hypothesis import strategies as st

import execution  # noqa: F401  (the process-level keccak and recursion settings)
from execution.senders import SenderRecoveryError, recover_sender

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
TYPES = ("legacy", "eip155", "eip2930", "eip1559")


def signed(key: bytes, kind: str, nonce: int, data: bytes) -> bytes:
    tx: dict = {"nonce": nonce, "gas": 100_000, "value": 1, "to": b"\x11" * 20, "data": data}
    if kind != "legacy":
        tx["chainId"] = 31337
    if kind in ("legacy", "eip155", "eip2930"):
        tx["gasPrice"] = 10**9
    if kind == "eip2930":
        tx["accessList"] = [{"address": "0x" + "22" * 20, "storageKeys": ["0x" + "00" * 32]}]
    if kind == "eip1559":
        tx.update(maxFeePerGas=3 * 10**9, maxPriorityFeePerGas=10**9)
    return bytes(Account.from_key(key).sign_transaction(tx).raw_transaction)


@given(
    key=st.integers(min_value=1, max_value=SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big")),
    kind=st.sampled_from(TYPES),
    nonce=st.integers(min_value=0, max_value=2**32),
    data=st.binary(max_size=64),
)
@settings(max_examples=150, deadline=None)
def test_recovers_py_evm_s_sender(key: bytes, kind: str, nonce: int, data: bytes) -> None:
    raw = signed(key, kind, nonce, data)
    fast, reference = PragueTransactionBuilder.decode(raw), PragueTransactionBuilder.decode(raw)
    assert recover_sender(fast) == reference.sender == to_canonical_address(Account.from_key(key).address)
    assert fast.sender == reference.sender  # what py-evm reads afterwards is the same


def test_recovered_once_and_refused_where_py_evm_refuses() -> None:
    raw = signed(b"\x07" * 32, "eip155", 0, b"")
    tx = PragueTransactionBuilder.decode(raw)
    first = recover_sender(tx)
    assert tx.__dict__["sender"] is first and recover_sender(tx) is first
    # r = 0 and r = n name no point on the curve: py-evm refuses both, and so does this
    for bad_r in (0, SECP256K1_N):
        forged = PragueTransactionBuilder.decode(raw).copy(r=bad_r)
        with pytest.raises(SenderRecoveryError):
            recover_sender(forged)
        with pytest.raises((BadSignature, ValidationError)):
            _ = PragueTransactionBuilder.decode(raw).copy(r=bad_r).sender
