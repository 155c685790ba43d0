"""pyrlp's raw decoder as `execution.rlp_decoding` installs it: the same items as
rusty-rlp's decoder on every input it accepts, the same refusals (`DecodingError`) on
every input it refuses, transactions and blocks decoded the same."""

from __future__ import annotations

import rlp
import rlp.codec
from hypothesis import given, settings
from hypothesis import strategies as st

import execution  # noqa: F401  (installs the decoder)
from execution.rlp_decoding import install

ITEMS = st.recursive(
    st.binary(max_size=70),
    lambda children: st.lists(children, max_size=6),
    max_leaves=30,
)


def _rusty(data: bytes, strict: bool = True):
    return rlp.codec.decode_raw.fallback(data, strict, False)[0]


def _outcome(decode, data: bytes):
    try:
        return "ok", decode(data)
    except rlp.DecodingError:
        return "refused", None


def test_installed_once() -> None:
    installed = rlp.codec.decode_raw
    assert getattr(installed, "fallback", None) is not None
    install()
    assert rlp.codec.decode_raw is installed


@settings(max_examples=400, deadline=None)
@given(ITEMS)
def test_canonical_encodings_decode_the_same(item) -> None:
    data = rlp.encode(item)
    assert rlp.decode(data) == _rusty(data) == item


@settings(max_examples=600, deadline=None)
@given(ITEMS, st.data())
def test_damaged_encodings_are_refused_the_same(item, data) -> None:
    encoded = bytearray(rlp.encode(item))
    how = data.draw(st.sampled_from(["flip", "truncate", "append", "random"]))
    if how == "flip" and encoded:
        at = data.draw(st.integers(0, len(encoded) - 1))
        encoded[at] = data.draw(st.integers(0, 255))
    elif how == "truncate":
        encoded = encoded[:data.draw(st.integers(0, len(encoded)))]
    elif how == "append":
        encoded += data.draw(st.binary(min_size=1, max_size=4))
    else:
        encoded = bytearray(data.draw(st.binary(max_size=40)))
    damaged = bytes(encoded)
    assert _outcome(rlp.decode, damaged) == _outcome(_rusty, damaged)


def test_non_canonical_forms_are_refused() -> None:
    for data in (
        b"\x81\x05",  # a single byte below 0x80 given a length prefix
        b"\xb8\x01\x80",  # a long-form length for a one-byte string
        b"\xf8\x01\xc0",  # a long-form length for a short list
        b"\x82\x00",  # payload shorter than its prefix says
        b"\xc0\x00",  # trailing bytes
        b"",
    ):
        assert _outcome(rlp.decode, data) == ("refused", None), data
    assert rlp.decode(b"\xc0\x00", strict=False) == []  # not strict: rusty-rlp's answer


def test_a_long_string_and_a_signed_transaction_decode_as_before() -> None:
    from eth.vm.forks import PragueVM
    from eth_account import Account

    payload = bytes(range(256)) * 1000
    envelope = rlp.encode([1, 3, payload])
    assert rlp.decode(envelope) == _rusty(envelope) == [b"\x01", b"\x03", payload]

    signed = Account.from_key(b"\x01" * 32).sign_transaction({
        "type": 2, "chainId": 31337, "nonce": 7, "to": "0x" + "22" * 20, "value": 5,
        "gas": 21_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
    })
    raw = bytes(signed.raw_transaction)
    tx = PragueVM.get_transaction_builder().decode(raw)
    assert tx.encode() == raw and tx.nonce == 7 and tx.value == 5
