"""`execution.transaction_decoding`: the object py-evm's decoder builds, for every
transaction of the 27 mainnet blocks and the shared consensus tests and for damaged
copies of them; the hash and the signed message py-evm computes; py-evm's own error
for whatever it refuses; and the same inside a Laminar block."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import rlp
from eth.abc import SignedTransactionAPI
from eth.vm.forks import PragueVM
from hypothesis import given, settings
from hypothesis import strategies as st

import execution  # noqa: F401  (the process-level keccak and RLP decoder)
from execution.replay import decode_transaction as from_json
from execution.transaction_decoding import _decode_canonical, decode_transaction
from node.blocks import LaminarBlock, LaminarBlockHeader
from node.mempool import encode_transaction

REPO = Path(__file__).resolve().parents[1]
MAINNET = REPO / "tests" / "data" / "mainnet"
SHARED = REPO.parent / "shared" / "conformance" / "blockchain-tests"
BUILDER = PragueVM.get_transaction_builder()  # every type Laminar decodes: legacy, 1, 2, 3, 4
TYPES_ON_THE_FAST_PATH = (None, 1, 2, 4)  # legacy (type_id None) and the typed ones mapped


def _mainnet_transactions() -> list[bytes]:
    raws = []
    for block_dir in sorted(p for p in MAINNET.iterdir() if p.is_dir()):
        with gzip.open(block_dir / "block.json.gz") as f:
            block = json.load(f)
        for i, tx in enumerate(block["transactions"]):
            raws.append(encode_transaction(from_json(tx, PragueVM, f"{block_dir.name}[{i}]")))
    return raws


MAINNET_TRANSACTIONS = _mainnet_transactions()


def _shared_transactions() -> Iterator[bytes]:
    """Every transaction in the blocks of the shared fixtures, valid or not."""
    for path in sorted(SHARED.rglob("*.json")):
        with open(path) as f:
            content: dict[str, Any] = json.load(f)
        for fixture in content.values():
            for entry in fixture.get("blocks", ()):
                try:
                    items = rlp.decode(bytes.fromhex(entry["rlp"][2:]))
                except Exception:
                    continue  # a block the tests mean to be undecodable
                if not isinstance(items, list) or len(items) < 2 or not isinstance(items[1], list):
                    continue
                for tx in items[1]:
                    yield tx if isinstance(tx, bytes) else rlp.encode(tx)


def _outcome(decode, raw: bytes) -> tuple[str, Any]:
    try:
        return "ok", decode(raw)
    except Exception as exc:
        return "refused", (type(exc), str(exc))


def assert_agrees_with_py_evm(raw: bytes) -> bool:
    """Both decoders accept `raw` with the same result or refuse it with the same error.
    True when the fast path (not py-evm's, as a fallback) decoded it."""
    expected_status, expected = _outcome(BUILDER.decode, raw)
    status, decoded = _outcome(lambda r: decode_transaction(BUILDER, r), raw)
    assert status == expected_status, (raw.hex(), expected, decoded)
    if status == "refused":
        assert decoded == expected
        return False
    tx = decoded.tx
    assert type(tx) is type(expected) and tx == expected
    assert getattr(tx, "_inner", tx).__class__ is getattr(expected, "_inner", expected).__class__
    assert encode_transaction(tx) == encode_transaction(expected)
    assert decoded.hash == tx.hash == expected.hash
    if decoded.signing_message is not None:
        assert decoded.signing_message == expected.get_message_for_signing()
    took_it = _decode_canonical(BUILDER, raw) is not None
    if encode_transaction(expected) == raw and tx.type_id in TYPES_ON_THE_FAST_PATH:
        assert took_it, f"the fast path left a canonical type {tx.type_id} transaction to py-evm"
        assert tx.type_id is None or decoded.signing_message is not None
    return took_it


def test_every_mainnet_transaction_decodes_as_py_evm_decodes_it() -> None:
    kinds = {}
    for raw in MAINNET_TRANSACTIONS:
        assert assert_agrees_with_py_evm(raw) or raw[0] == 3
        kinds[raw[0] if raw[0] < 0x80 else "legacy"] = True
    assert {"legacy", 1, 2} <= set(kinds), kinds  # the corpus covers the common types


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"the shared consensus tests are not at {SHARED} (CI has them)")
def test_every_transaction_of_the_consensus_tests_decodes_as_py_evm_decodes_it() -> None:
    seen = fast = 0
    for raw in _shared_transactions():
        seen += 1
        fast += assert_agrees_with_py_evm(raw)
    assert seen > 1000 and fast > seen // 2, (seen, fast)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(MAINNET_TRANSACTIONS), st.data())
def test_damaged_transactions_are_refused_as_py_evm_refuses_them(raw: bytes, data) -> None:
    damaged = bytearray(raw)
    how = data.draw(st.sampled_from(["flip", "truncate", "append", "type"]))
    if how == "flip":
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    elif how == "truncate":
        damaged = damaged[:data.draw(st.integers(0, len(damaged) - 1))]
    elif how == "append":
        damaged += data.draw(st.binary(min_size=1, max_size=4))
    else:
        damaged[0] = data.draw(st.integers(0, 0x7F))
    assert_agrees_with_py_evm(bytes(damaged))


def _block_of(transactions: list[SignedTransactionAPI]) -> bytes:
    header = LaminarBlockHeader(difficulty=0, block_number=1, gas_limit=30_000_000, timestamp=1)
    return rlp.encode(LaminarBlock(header, transactions))


def test_blocks_decode_their_transactions_as_py_evm_does() -> None:
    by_type: dict[Any, list[bytes]] = {}
    for raw in MAINNET_TRANSACTIONS:
        by_type.setdefault(raw[0] if raw[0] < 0x80 else "legacy", []).append(raw)
    raws = [raw for group in by_type.values() for raw in group[:40]]
    expected = [BUILDER.decode(raw) for raw in raws]
    block = rlp.decode(_block_of(expected), sedes=LaminarBlock)
    assert list(block.transactions) == expected
    assert [type(tx) for tx in block.transactions] == [type(tx) for tx in expected]
    assert [tx.hash for tx in block.transactions] == [tx.hash for tx in expected]
    typed = [tx for tx in block.transactions if tx.type_id is not None]
    assert typed and all("hash" in tx.__dict__ for tx in typed)  # decoded by the fast path


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([raw for raw in MAINNET_TRANSACTIONS if raw[0] < 0x80]), st.data())
def test_a_block_with_a_damaged_transaction_is_refused_as_py_evm_refuses_it(raw: bytes, data) -> None:
    """A typed transaction with a byte changed (its type byte half the time) inside a
    block: decoded or refused as py-evm's builder does."""
    damaged = bytearray(raw)
    at = data.draw(st.sampled_from([0, data.draw(st.integers(0, len(damaged) - 1))]))
    damaged[at] = data.draw(st.integers(0, 255))
    encoded = rlp.encode([rlp.decode(_block_of([]))[0], [bytes(damaged)], [], [], b""])
    mine = _outcome(lambda data: rlp.decode(data, sedes=LaminarBlock), encoded)
    reference = _outcome(lambda data: BUILDER.deserialize(rlp.decode(data)[1][0]), encoded)
    assert mine[0] == reference[0]
    if mine[0] == "ok":
        assert list(mine[1].transactions) == [reference[1]]


def test_a_legacy_transaction_as_a_byte_string_in_a_block_is_refused() -> None:
    """Inside a block a legacy transaction is an RLP list; its encoding given as a
    string is not a transaction (py-evm: no typed transaction starts at 0xc0 or above)."""
    legacy = next(raw for raw in MAINNET_TRANSACTIONS if raw[0] >= 0xC0)
    encoded = rlp.encode([rlp.decode(_block_of([]))[0], [legacy], [], [], b""])
    with pytest.raises(Exception, match="Cannot build typed transaction"):
        rlp.decode(encoded, sedes=LaminarBlock)
