"""pyrlp's raw decoder, without rusty-rlp's cost per byte.

With rusty-rlp installed (pinned for its encoder, `execution.trie`), pyrlp decodes
through it too, and rusty-rlp's decoder costs about 15 ns per input byte whatever the
shape: 4.4 ms for a 260 KB consensus envelope (one string), 4.3 ms for a block of
2,000 transactions. `execution.trie.decode_node` takes 0.01 ms and 0.9 ms for the same
bytes. Every gossip message, proposal, block read from storage and transaction goes
through `rlp.decode`, so `install` puts this one in pyrlp's place, process-wide (as
`execution/__init__.py` selects keccak's backend).

Strictness is kept by construction: the bytes are decoded, then encoded again, and only
an exact match is returned. RLP has one canonical encoding per item, so a match means the
input is that encoding and rusty-rlp would have returned the same item; anything else
(non-canonical lengths, trailing bytes, malformed input, nesting too deep) goes to
rusty-rlp's decoder, which returns it or raises pyrlp's `DecodingError` as before.
`tests/test_rlp_decoding.py` checks both agree.
"""

from __future__ import annotations

from typing import Any, Callable

import rlp.codec

from execution.trie import decode_node, encode_node

RawDecoder = Callable[[Any, bool, bool], tuple[Any, list]]


def make_decode_raw(fallback: RawDecoder) -> RawDecoder:
    """pyrlp's `decode_raw(item, strict, preserve_per_item_rlp)` through the fast path,
    `fallback` (rusty-rlp's) for what the fast path does not take."""

    def decode_raw(item: Any, strict: bool, preserve_per_item_rlp: bool) -> tuple[Any, list]:
        if strict and not preserve_per_item_rlp and type(item) is bytes:
            try:
                decoded = decode_node(item)
            except (ValueError, RecursionError):
                decoded = None
            if decoded is not None and encode_node(decoded) == item:
                return decoded, []  # pyrlp's decode takes [] as "the whole input"
        return fallback(item, strict, preserve_per_item_rlp)

    decode_raw.fallback = fallback  # type: ignore[attr-defined]
    return decode_raw


def install() -> None:
    """Put the fast path in `rlp.codec.decode_raw` (once)."""
    current = rlp.codec.decode_raw
    if getattr(current, "fallback", None) is None:
        rlp.codec.decode_raw = make_decode_raw(current)
