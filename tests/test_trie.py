"""`execution.trie`: one-pass builds and batched updates give exactly py-evm's tries (root
and every hashed node), and its node codec is pyrlp's for trie nodes."""

from __future__ import annotations

import random

import pytest
import rlp
from eth.constants import BLANK_ROOT_HASH
from hypothesis import given, settings
from hypothesis import strategies as st
from trie import HexaryTrie

from execution.roots import TransactionsRootInBackground, ordered_trie_root, transactions_root
from execution.trie import (
    _encode_node_python,
    decode_node,
    encode_node,
    trie_root_and_nodes,
    update_trie,
)


def py_evm_trie(items: dict[bytes, bytes]) -> tuple[bytes, dict[bytes, bytes]]:
    """The reference: py-evm's own trie, one insert at a time."""
    store: dict[bytes, bytes] = {}
    trie = HexaryTrie(store, BLANK_ROOT_HASH)
    with trie.squash_changes() as batch:
        for key, value in items.items():
            batch[key] = value
    return trie.root_hash, store


def test_empty_trie_has_the_blank_root() -> None:
    assert trie_root_and_nodes({}) == (BLANK_ROOT_HASH, {})
    assert ordered_trie_root([]) == BLANK_ROOT_HASH


# Sizes around the points where the shape of an index-keyed trie changes: rlp(0) = 0x80,
# 1..127 are one byte, 128..255 two, 256.. three; 16 and 17 fill a branch.
@pytest.mark.parametrize("count", [1, 2, 3, 15, 16, 17, 127, 128, 129, 255, 256, 257, 2000])
@pytest.mark.parametrize("max_item_size", [1, 20, 31, 32, 200])
def test_index_keyed_trie_matches_py_evm(count: int, max_item_size: int) -> None:
    rng = random.Random(count * 1000 + max_item_size)
    items = [rng.randbytes(rng.randint(1, max_item_size)) for _ in range(count)]
    keyed = {rlp.encode(index): item for index, item in enumerate(items)}
    assert trie_root_and_nodes(keyed) == py_evm_trie(keyed)
    assert ordered_trie_root(items) == py_evm_trie(keyed)[0]


# Arbitrary keys: empty keys, keys that are prefixes of others, short values embedded
# in their parents, long values hashed.
@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.binary(max_size=4), st.binary(min_size=1, max_size=48), min_size=1,
                       max_size=40))
def test_arbitrary_keys_match_py_evm(items: dict[bytes, bytes]) -> None:
    assert trie_root_and_nodes(items) == py_evm_trie(items)


# ---- batched updates --------------------------------------------------------------


def py_evm_update(base: dict[bytes, bytes], changes: dict[bytes, bytes | None]):
    """py-evm's trie of `base`, then `changes` applied one key at a time."""
    store: dict[bytes, bytes] = {}
    trie = HexaryTrie(store, BLANK_ROOT_HASH)
    with trie.squash_changes() as batch:
        for key, value in base.items():
            batch[key] = value
    before = (trie.root_hash, dict(store))
    with trie.squash_changes() as batch:
        for key, value in changes.items():
            if value:
                batch[key] = value
            elif key in batch:
                del batch[key]
    return before, trie.root_hash


def random_key(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(rng.randint(0, size) if size < 32 else 32)


@pytest.mark.parametrize("seed", range(40))
def test_batched_update_matches_py_evm(seed: int) -> None:
    """Inserts, overwrites, deletes (of present and absent keys), keys that are prefixes
    of others, embedded and hashed nodes: the same root, and every key readable from the
    new root through the old nodes plus the new ones."""
    rng = random.Random(seed)
    for _ in range(40):
        size = rng.choice([1, 2, 3, 32])
        value_size = rng.choice([4, 40])
        base = {random_key(rng, size): rng.randbytes(rng.randint(1, value_size))
                for _ in range(rng.randint(0, 50))}
        changes: dict[bytes, bytes | None] = {}
        for _ in range(rng.randint(1, 30)):
            key = rng.choice(list(base)) if base and rng.random() < 0.5 else random_key(rng, size)
            roll = rng.random()
            changes[key] = (None if roll < 0.3 else b"" if roll < 0.4
                            else rng.randbytes(rng.randint(1, value_size)))
        (root, store), expected_root = py_evm_update(base, changes)
        new_root, new_nodes = update_trie(root, store.__getitem__, changes)
        assert new_root == expected_root
        merged = HexaryTrie({**store, **new_nodes}, new_root)
        expected = {**base, **{k: v for k, v in changes.items() if v}}
        for key in changes:
            if not changes[key]:
                expected.pop(key, None)
        for key, value in expected.items():
            assert merged[key] == value


def test_batched_update_of_a_block_sized_change() -> None:
    from eth_hash.auto import keccak

    rng = random.Random(7)
    base = {keccak(i.to_bytes(20, "big")): rng.randbytes(70) for i in range(5000)}
    changes: dict[bytes, bytes | None] = {key: rng.randbytes(70) for key in rng.sample(list(base), 800)}
    changes.update({key: None for key in rng.sample(list(base), 200)})
    changes.update({keccak(b"new" + bytes([i])): b"\x01" for i in range(100)})
    (root, store), expected_root = py_evm_update(base, changes)
    assert update_trie(root, store.__getitem__, changes)[0] == expected_root
    assert update_trie(root, store.__getitem__, {}) == (root, {})


@pytest.mark.parametrize("seed", range(10))
def test_chained_updates_sharing_a_decoded_cache_match_py_evm(seed: int) -> None:
    """Update after update over one decoded-node cache (as executionless sync keeps it
    across blocks): each root is py-evm's, and every cached node is exactly what decoding
    its stored encoding gives (the cache is filled with the nodes an update makes)."""
    rng = random.Random(seed)
    size = rng.choice([2, 32])
    current = {random_key(rng, size): rng.randbytes(rng.randint(1, 40)) for _ in range(60)}
    root, store = trie_root_and_nodes(current)
    decoded: dict = {}
    for _ in range(15):
        changes: dict[bytes, bytes | None] = {}
        for _ in range(rng.randint(1, 25)):
            key = rng.choice(list(current)) if current and rng.random() < 0.6 else random_key(rng, size)
            changes[key] = None if rng.random() < 0.3 else rng.randbytes(rng.randint(1, 40))
        (_, _), expected_root = py_evm_update(current, changes)
        root, new_nodes = update_trie(root, store.__getitem__, changes, decoded)
        assert root == expected_root
        store.update(new_nodes)
        for key, value in changes.items():
            if value:
                current[key] = value
            else:
                current.pop(key, None)
        for node_hash, node in decoded.items():
            assert node == decode_node(store[node_hash])


def test_update_of_a_missing_node_raises_key_error() -> None:
    items = {bytes([i]) * 32: bytes([i]) * 40 for i in range(1, 40)}
    root, nodes = trie_root_and_nodes(items)
    del nodes[root]
    with pytest.raises(KeyError):
        update_trie(root, nodes.__getitem__, {b"\x05" * 32: None})


# ---- node codec -------------------------------------------------------------------

nested = st.recursive(
    st.binary(max_size=70), lambda children: st.lists(children, max_size=17), max_leaves=40
)


@settings(max_examples=500, deadline=None)
@given(nested)
def test_node_codec_is_rlp(item) -> None:
    """rusty-rlp's encoder, this module's own and pyrlp's (whichever backend pyrlp picked)
    give the same bytes."""
    encoded = encode_node(item)
    assert encoded == _encode_node_python(item) == rlp.encode(item)
    assert decode_node(encoded) == rlp.decode(encoded)


@pytest.mark.parametrize("malformed", [b"", b"\x81", b"\xb8\x40" + b"a" * 10, b"\xc2\x81",
                                       b"\xc1\x01\x02", b"\xf8\xff\x00"])
def test_node_codec_rejects_malformed_input(malformed: bytes) -> None:
    with pytest.raises(ValueError):
        decode_node(malformed)


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_keccak_backend_gives_pycryptodome_digests(data: bytes) -> None:
    """The node hashes with safe-pysha3 (execution/__init__.py); every digest must be the
    one eth-hash's default backend computes, or every root and hash would change."""
    from eth_hash.auto import keccak
    from eth_hash.backends.pycryptodome import backend as reference

    assert keccak(data) == reference.keccak256(data)


def test_node_and_worker_processes_hash_with_safe_pysha3() -> None:
    """A fresh process that imports the node, or only a Block-STM worker, uses the fast
    backend (the one that loses it would run every trie at a fifth of the speed)."""
    import subprocess
    import sys

    probe = (
        "import {module}\n"
        "from eth_hash.auto import keccak\n"
        "print(type(keccak.hasher.__self__).__name__)\n"
    )
    for module in ("node.service", "execution.blockstm.worker"):
        out = subprocess.run(
            [sys.executable, "-c", probe.format(module=module)],
            check=True, capture_output=True, text=True, timeout=120,
        ).stdout.strip()
        assert out == "PySha3Backend", (module, out)


# ---- account and storage leaves ---------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**256 - 1), st.binary(min_size=32, max_size=32),
       st.binary(min_size=32, max_size=32), st.integers(1, 2**256 - 1))
def test_account_and_storage_leaves_are_pyrlp_s(nonce, balance, storage_root, code_hash, value) -> None:
    from eth.rlp.accounts import Account

    from execution.account_rlp import (
        decode_account_fields,
        decode_storage_value,
        encode_account,
        encode_storage_value,
    )

    account = Account(nonce, balance, storage_root, code_hash)
    encoded = encode_account(nonce, balance, storage_root, code_hash)
    assert encoded == rlp.encode(account)
    assert Account(*decode_account_fields(encoded)) == account
    assert encode_storage_value(value) == rlp.encode(value)
    assert decode_storage_value(rlp.encode(value)) == value


@pytest.mark.parametrize("malformed", [
    rlp.encode(b"\x00\x01"),  # a leading zero
    rlp.encode([b"\x01"]),  # a list
])
def test_storage_value_decoder_refuses_what_pyrlp_refuses(malformed: bytes) -> None:
    from execution.account_rlp import decode_storage_value

    with pytest.raises((rlp.exceptions.DeserializationError, TypeError)):  # pyrlp: either
        rlp.decode(malformed, sedes=rlp.sedes.big_endian_int)
    with pytest.raises(ValueError):
        decode_storage_value(malformed)


@pytest.mark.parametrize("malformed", [
    rlp.encode([b"\x00\x01", b"", b"r" * 32, b"c" * 32]),  # a nonce with a leading zero
    rlp.encode([b"", b"", b"r" * 31, b"c" * 32]),  # a short storage root
    rlp.encode([b"", b"", b"r" * 32]),  # three fields
    rlp.encode([b"", [b""], b"r" * 32, b"c" * 32]),  # a list for the balance
    rlp.encode(b"not a list"),
])
def test_account_decoder_refuses_what_pyrlp_refuses(malformed: bytes) -> None:
    from eth.rlp.accounts import Account

    from execution.account_rlp import decode_account_fields

    with pytest.raises((rlp.exceptions.DeserializationError, TypeError)):  # pyrlp: either
        rlp.decode(malformed, sedes=Account)
    with pytest.raises(ValueError):
        decode_account_fields(malformed)


def test_transactions_root_in_background_is_the_root_of_the_final_transactions() -> None:
    from bench.workloads import build

    transactions = list(build("transfers", 12).decode_transactions())
    full_root = transactions_root(transactions)
    assert TransactionsRootInBackground(transactions).root(transactions) == full_root
    background = TransactionsRootInBackground(transactions)
    del transactions[5]  # the proposer dropped an invalid transaction meanwhile
    assert background.root(transactions) == transactions_root(transactions) != full_root


@pytest.mark.parametrize("seed", range(12))
def test_a_trie_updated_in_shares_by_first_nibble_is_the_trie_updated_whole(seed: int) -> None:
    """The importer's workers each update the root's children for their first nibbles
    (`update_subtries`), and the coordinator joins them (`join_subtries`): the root and
    the nodes are `update_trie`'s, or the join says it cannot (the root stops being a
    branch) and the caller updates whole."""
    from execution.trie import join_subtries, root_branch, update_subtries, update_trie

    rng = random.Random(seed)
    size = rng.choice([2, 5, 40, 300])
    items = {rng.randbytes(32): rng.randbytes(rng.choice([1, 5, 40])) for _ in range(size)}
    one_nibble = {bytes([0x12]) + rng.randbytes(31): b"\x01", bytes([0x1f]) + rng.randbytes(31): b"\x02"}
    assert root_branch(trie_root_and_nodes(one_nibble)[0], trie_root_and_nodes(one_nibble)[1].__getitem__) is None
    items[bytes([0x80 ^ (next(iter(items))[0] & 0xF0)]) + rng.randbytes(31)] = b"\x03"  # two nibbles at least
    root, nodes = trie_root_and_nodes(items)
    present = list(items)
    changes: dict = {}
    for _ in range(rng.choice([1, 10, 200])):
        roll = rng.random()
        if roll < 0.4 and present:
            changes[rng.choice(present)] = rng.randbytes(rng.choice([1, 40]))
        elif roll < 0.7 and present:
            changes[rng.choice(present)] = None
        else:
            changes[rng.randbytes(32)] = rng.randbytes(rng.choice([1, 40]))
    if seed % 3 == 0:  # delete all but one first nibble's keys: the root folds away
        keep = present[0][0] >> 4
        changes = {key: None for key in present if key[0] >> 4 != keep}
    expected_root, expected_nodes = update_trie(root, nodes.__getitem__, changes)

    assert root_branch(root, nodes.__getitem__) is not None
    shares = [{}, {}, {}]
    for key, value in changes.items():
        shares[(key[0] >> 4) % 3][key] = value
    children: dict = {}
    made: dict = {}
    for share in shares:
        if share:
            part, part_nodes = update_subtries(root, nodes.__getitem__, share, {})
            assert not set(part) & set(children)
            children.update(part)
            made.update(part_nodes)
    joined = join_subtries(root, nodes.__getitem__, children)
    remaining = {key for key in items if changes.get(key, items[key]) is not None}
    remaining |= {key for key, value in changes.items() if value is not None}
    if len({key[0] >> 4 for key in remaining}) < 2:
        assert joined is None
        return
    assert joined is not None
    joined_root, root_nodes = joined
    made.update(root_nodes)
    assert joined_root == expected_root
    assert made == expected_nodes
