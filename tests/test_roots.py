"""The one-pass trie builder gives exactly py-evm's tries (root and every hashed node)."""

from __future__ import annotations

import random

import pytest
import rlp
from eth.constants import BLANK_ROOT_HASH
from hypothesis import given, settings
from hypothesis import strategies as st
from trie import HexaryTrie

from execution.roots import ordered_trie_root, trie_root_and_nodes


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
