"""A lean, read-only Merkle-Patricia trie lookup over content-addressed node caches.

Workers read pre-state values (account RLPs, storage slots) with it instead of py-evm's
AccountDB/HexaryTrie stack: decoded nodes are cached by hash (content-addressed, so valid
under any root, across blocks), a lookup is a handful of dict and string operations, and
a node that is not cached yet is reported as `NodeMissing(hash)` so the caller can fetch
several at once (batched prefetch) or one at a time.

Paths are handled as hex strings (one character per nibble): a 32-byte hashed key is
`key.hex()`, a hex-prefix encoded node path is `raw.hex()` minus its flag characters.
"""

from __future__ import annotations

from typing import Any, Callable

from execution.trie import BLANK_ROOT_HASH as BLANK_ROOT
from execution.trie import decode_node as decode_rlp_node

_INDEX = {c: i for i, c in enumerate("0123456789abcdef")}

Node = list[Any]  # decoded: 17 items (branch), 2 items (leaf/extension), or [] (blank)


class NodeMissing(Exception):
    """The node with this hash is not in the cache."""

    def __init__(self, node_hash: bytes) -> None:
        super().__init__(node_hash)
        self.node_hash = node_hash


def lookup(node_of: Callable[[bytes], Node], root: bytes, hashed_key: bytes) -> bytes:
    """The value stored at `hashed_key` (32 bytes) in the trie `root`; b"" when absent.

    `node_of(hash)` returns the decoded node or raises NodeMissing.
    """
    if root == BLANK_ROOT:
        return b""
    path = hashed_key.hex()
    end = len(path)
    pos = 0
    node: Node = node_of(root)
    while True:
        size = len(node)
        if size == 17:
            if pos == end:
                return node[16]
            child = node[_INDEX[path[pos]]]
            pos += 1
        elif size == 2:
            encoded = node[0].hex()
            flag = encoded[0]
            segment = encoded[1:] if flag in "13" else encoded[2:]
            if flag in "23":  # leaf
                return node[1] if path[pos:] == segment else b""
            if not path.startswith(segment, pos):
                return b""
            pos += len(segment)
            child = node[1]
        elif size == 0:
            return b""
        else:
            raise ValueError(f"malformed trie node with {size} items")
        if type(child) is list:  # embedded node (encoding shorter than 32 bytes)
            node = child
        elif not child:
            return b""
        else:
            node = node_of(child)


def decode_node(raw: bytes) -> Node:
    node = decode_rlp_node(raw)
    if type(node) is not list:
        # py-trie stores the blank node as rlp(b"")
        if node == b"":
            return []
        raise ValueError("malformed trie node")
    return node
