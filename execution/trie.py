"""Merkle Patricia tries built or updated in one pass, each changed node hashed once.

py-evm's `HexaryTrie` re-encodes and re-hashes the whole path from a key to the root on
every insert. A block changes thousands of keys at once: the transactions and receipts
tries are built from scratch (keys `rlp(index)`), and the state trie takes the changes of
a whole block. Here the changed keys are sorted once and the trie is built (or rebuilt
along the changed paths only) bottom-up, so each new node is encoded and hashed exactly
once. The tries are the same (Yellow Paper, appendix D): `tests/test_trie.py` checks
roots and nodes against py-evm's trie on every shape that matters.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import rlp
import rusty_rlp
from eth_hash.auto import keccak
from sha3 import keccak_256  # safe-pysha3: eth-hash's backend, without its two wrappers

#: A node shorter than this (RLP-encoded) is embedded in its parent instead of hashed.
HASHED_NODE_MIN_LENGTH = 32
BRANCH_WIDTH = 16
BLANK_NODE = b""
#: keccak(rlp(b"")): the root of the empty trie.
BLANK_ROOT_HASH = keccak(rlp.encode(b""))

Nibbles = bytes  # one nibble (0..15) per byte
_HEX_TO_NIBBLE = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))
_NIBBLE_TO_HEX = bytes.maketrans(bytes(range(16)), b"0123456789abcdef")


def to_nibbles(key: bytes) -> Nibbles:
    return key.hex().encode().translate(_HEX_TO_NIBBLE)


def hex_prefix(nibbles: Nibbles, is_leaf: bool) -> bytes:
    """The compact ("hex-prefix") encoding of a leaf's or extension's path."""
    flag = 2 if is_leaf else 0
    if len(nibbles) % 2:
        padded = bytes((flag + 1,)) + nibbles
    else:
        padded = bytes((flag, 0)) + nibbles
    return bytes.fromhex(padded.translate(_NIBBLE_TO_HEX).decode())


# ------------------------------------------------------------------------ node RLP
# Trie nodes are nested lists of byte strings. pyrlp handles any sedes and spends most
# of its time finding out which one applies; these two do only this shape (about 5x
# faster), and `tests/test_trie.py` checks them against pyrlp.

SHORT_STRING = 0x80
LONG_STRING = 0xB7
SHORT_LIST = 0xC0
LONG_LIST = 0xF7
SHORT_PAYLOAD_MAX = 55


def _length_prefix(length: int, offset: int) -> bytes:
    if length <= SHORT_PAYLOAD_MAX:
        return bytes((offset + length,))
    length_bytes = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((offset + SHORT_PAYLOAD_MAX + len(length_bytes),)) + length_bytes


def encode_node(item: Any) -> bytes:
    """RLP of a byte string or a (nested) list of them: rusty-rlp's encoder (Rust, about
    ten times faster than this module's), this module's for what it refuses (a
    bytearray, say)."""
    try:
        return _rust_encode(item)
    except rusty_rlp.EncodingError:
        return _encode_node_python(item)


_rust_encode = rusty_rlp.encode_raw


def _encode_node_python(item: Any) -> bytes:
    if type(item) is list:
        payload = b"".join([_encode_node_python(child) for child in item])
        return _length_prefix(len(payload), SHORT_LIST) + payload
    item = bytes(item)
    if len(item) == 1 and item[0] < SHORT_STRING:
        return item
    return _length_prefix(len(item), SHORT_STRING) + item


def decode_node(data: bytes) -> Any:
    """The (nested) list of byte strings `data` encodes; ValueError if malformed."""
    item, end = _decode_item(data, 0)
    if end != len(data):
        raise ValueError("trailing bytes after an RLP item")
    return item


def _decode_item(data: bytes, position: int) -> tuple[Any, int]:
    if position >= len(data):
        raise ValueError("RLP item runs past the end")
    first = data[position]
    if first < SHORT_STRING:
        return data[position:position + 1], position + 1
    if first < SHORT_LIST:
        start, end = _payload_bounds(data, position, first, SHORT_STRING, LONG_STRING)
        return data[start:end], end
    start, end = _payload_bounds(data, position, first, SHORT_LIST, LONG_LIST)
    items = []
    while start < end:
        item, start = _decode_item(data, start)
        items.append(item)
    if start != end:
        raise ValueError("RLP list items overrun the list")
    return items, end


def _payload_bounds(data: bytes, position: int, first: int, short: int,
                    long: int) -> tuple[int, int]:
    if first <= long:
        start = position + 1
        end = start + first - short
    else:
        length_size = first - long
        start = position + 1 + length_size
        end = start + int.from_bytes(data[position + 1:start], "big")
    if end > len(data):
        raise ValueError("RLP payload runs past the end")
    return start, end


NodeReader = Callable[[bytes], bytes]  # node hash -> its RLP encoding


def _hashed(node: list, nodes: dict[bytes, bytes], decoded: Optional[dict[bytes, Any]] = None) -> Any:
    """What a parent holds for `node`: the node itself when short, else its hash (the
    encoding then goes to `nodes`, and the node, as decoding would give it, to
    `decoded`: the next update or lookup over this trie need not decode it again)."""
    try:
        encoded = _rust_encode(node)  # encode_node, inlined: called for every new node
    except rusty_rlp.EncodingError:
        encoded = _encode_node_python(node)
    if len(encoded) < HASHED_NODE_MIN_LENGTH:
        return node
    # keccak_256 directly: this is the hash of every new trie node, and eth-hash's
    # wrappers (type checks, backend dispatch) cost a quarter of the hash itself.
    node_hash = keccak_256(encoded).digest()
    nodes[node_hash] = encoded
    if decoded is not None:
        decoded[node_hash] = node
    return node_hash


def _root_of(node: Any, nodes: dict[bytes, bytes], decoded: Optional[dict[bytes, Any]] = None) -> bytes:
    if node == BLANK_NODE:
        return BLANK_ROOT_HASH
    encoded = encode_node(node)
    root_hash = keccak(encoded)  # the root is hashed even when short
    nodes[root_hash] = encoded
    if decoded is not None:
        decoded[root_hash] = node
    return root_hash


def _build(keys: Sequence[Nibbles], values: Sequence[bytes], low: int, high: int, depth: int,
           nodes: dict[bytes, bytes], decoded: Optional[dict[bytes, Any]] = None) -> list:
    """The node holding keys[low:high] (sorted, distinct, sharing their first `depth`
    nibbles) with their values; new hashed nodes go to `nodes` (and `decoded`)."""
    first = keys[low]
    if high - low == 1:
        return [hex_prefix(first[depth:], is_leaf=True), values[low]]
    last = keys[high - 1]  # sorted: the common prefix of all is that of first and last
    end = depth
    limit = min(len(first), len(last))
    while end < limit and first[end] == last[end]:
        end += 1
    if end > depth:
        child = _build(keys, values, low, high, end, nodes, decoded)
        return [hex_prefix(first[depth:end], is_leaf=False), _hashed(child, nodes, decoded)]
    branch: list = [BLANK_NODE] * (BRANCH_WIDTH + 1)
    index = low
    if len(first) == depth:  # a key ending here keeps its value in the branch
        branch[BRANCH_WIDTH] = values[low]
        index += 1
    while index < high:
        nibble = keys[index][depth]
        group_end = index + 1
        while group_end < high and keys[group_end][depth] == nibble:
            group_end += 1
        branch[nibble] = _hashed(
            _build(keys, values, index, group_end, depth + 1, nodes, decoded), nodes, decoded
        )
        index = group_end
    return branch


def trie_root_and_nodes(items: Mapping[bytes, bytes]) -> tuple[bytes, dict[bytes, bytes]]:
    """Root hash and hashed nodes of the trie holding `items` (key -> non-empty value)."""
    nodes: dict[bytes, bytes] = {}
    if not items:
        return BLANK_ROOT_HASH, nodes
    ordered = sorted(items.items())
    keys = [to_nibbles(key) for key, _ in ordered]
    values = [value for _, value in ordered]
    return _root_of(_build(keys, values, 0, len(keys), 0, nodes), nodes), nodes


# ------------------------------------------------------------------------ updates


def decode_hex_prefix(encoded: bytes) -> tuple[Nibbles, bool]:
    """(path nibbles, is_leaf) of a leaf's or extension's compact path."""
    nibbles = to_nibbles(encoded)
    flag = nibbles[0]
    return (nibbles[1:] if flag & 1 else nibbles[2:]), flag >= 2


def _leaf(path: Nibbles, value: bytes) -> list:
    return [hex_prefix(path, is_leaf=True), value]


class _TrieUpdater:
    """Applies a sorted batch of changes to an existing trie, touching only the paths of
    changed keys; nodes off those paths keep their references (hashes) as they are."""

    def __init__(self, read_node: NodeReader, keys: Sequence[Nibbles],
                 values: Sequence[Optional[bytes]], decoded: Optional[dict[bytes, Any]] = None) -> None:
        self.read_node = read_node
        self.keys = keys
        self.values = values  # None: delete the key
        self.nodes: dict[bytes, bytes] = {}
        # Nodes already decoded, by hash (shared with the caller): read, and filled with
        # the stored nodes this update decodes and the nodes it makes. A cached node is
        # never changed in place: every changed node is a new list.
        self.decoded = decoded

    def resolve(self, reference: Any) -> Any:
        """The node a parent's reference points to (blank, embedded, or by hash)."""
        if isinstance(reference, list) or reference == BLANK_NODE:
            return reference
        if self.decoded is None:
            encoded = self.nodes.get(reference)  # made by this update (an extension's split)
            if encoded is not None:
                return decode_node(encoded)
        return self.stored(reference)

    def stored(self, node_hash: bytes) -> Any:
        decoded = self.decoded
        if decoded is None:
            return decode_node(self.read_node(node_hash))
        node = decoded.get(node_hash)
        if node is None:
            node = decoded[node_hash] = decode_node(self.read_node(node_hash))
        return node

    def build(self, low: int, high: int, depth: int, extra: Optional[tuple] = None) -> Any:
        """A fresh subtree from the sets among changes[low:high] (deletes drop out), plus
        an existing `(key, value)` not overridden by them."""
        keys: list[Nibbles] = []
        values: list[bytes] = []
        pending = extra
        for index in range(low, high):
            key = self.keys[index]
            if pending is not None and pending[0] <= key:
                if pending[0] < key:
                    keys.append(pending[0])
                    values.append(pending[1])
                pending = None  # added, or replaced/deleted by the change for the same key
            value = self.values[index]
            if value is not None:
                keys.append(key)
                values.append(value)
        if pending is not None:
            keys.append(pending[0])
            values.append(pending[1])
        if not keys:
            return BLANK_NODE
        return _build(keys, values, 0, len(keys), depth, self.nodes, self.decoded)

    def update(self, node: Any, low: int, high: int, depth: int) -> Any:
        """`node` (at `depth` nibbles) with changes[low:high] applied, as a node structure
        (not yet hashed); BLANK_NODE when nothing is left."""
        if node == BLANK_NODE:
            return self.build(low, high, depth)
        if len(node) == BRANCH_WIDTH + 1:
            return self.update_branch(node, low, high, depth)
        path, is_leaf = decode_hex_prefix(node[0])
        if is_leaf:
            key = self.keys[low]
            if high - low == 1 and len(key) == depth + len(path) and key.endswith(path):
                # The one change is to this leaf's own key (an account or slot that
                # exists already): the same path, a new value, or nothing.
                value = self.values[low]
                return BLANK_NODE if value is None else [node[0], value]
            return self.build(low, high, depth, extra=(key[:depth] + path, node[1]))
        end = depth + len(path)
        if self.keys[low][depth:end] == path and self.keys[high - 1][depth:end] == path:
            child = self.update(self.resolve(node[1]), low, high, end)
            return self.join(path, child)
        # Some changed key leaves the extension's path: split it into a branch first.
        branch: list = [BLANK_NODE] * (BRANCH_WIDTH + 1)
        rest = path[1:]
        branch[path[0]] = (
            node[1] if not rest else _hashed([hex_prefix(rest, is_leaf=False), node[1]],
                                             self.nodes, self.decoded)
        )
        return self.update_branch(branch, low, high, depth)

    def update_branch(self, node: list, low: int, high: int, depth: int) -> Any:
        branch = list(node)
        index = low
        if len(self.keys[index]) == depth:  # the change for the key ending at this branch
            value = self.values[index]
            branch[BRANCH_WIDTH] = BLANK_NODE if value is None else value
            index += 1
        fresh = self.update_children(branch, index, high, depth)
        blank_children = branch[:BRANCH_WIDTH].count(BLANK_NODE)  # C speed: most have many
        if blank_children == BRANCH_WIDTH:
            if branch[BRANCH_WIDTH] == BLANK_NODE:
                return BLANK_NODE
            return _leaf(b"", branch[BRANCH_WIDTH])
        if blank_children == BRANCH_WIDTH - 1 and branch[BRANCH_WIDTH] == BLANK_NODE:
            # A branch with one child and no value is no branch: fold it into the child.
            slot = next(slot for slot in range(BRANCH_WIDTH) if branch[slot] != BLANK_NODE)
            child = fresh[slot] if slot in fresh else self.resolve(branch[slot])
            return self.join(bytes((slot,)), child, reference=branch[slot] if slot not in fresh
                             else None)
        for slot, child in fresh.items():
            branch[slot] = BLANK_NODE if child == BLANK_NODE else _hashed(child, self.nodes, self.decoded)
        return branch

    def update_children(self, branch: list, low: int, high: int, depth: int) -> dict[int, Any]:
        """Changes[low:high] (all longer than `depth`) applied under the children of
        `branch`, in place: {slot: the updated child structure}, not yet hashed."""
        fresh: dict[int, Any] = {}
        index = low
        while index < high:
            nibble = self.keys[index][depth]
            group_end = index + 1
            while group_end < high and self.keys[group_end][depth] == nibble:
                group_end += 1
            fresh[nibble] = self.update(self.resolve(branch[nibble]), index, group_end, depth + 1)
            branch[nibble] = fresh[nibble]
            index = group_end
        return fresh

    def join(self, path: Nibbles, child: Any, reference: Any = None) -> Any:
        """The node for `path` followed by `child`: merged into it when it is a leaf or an
        extension, an extension above it when it is a branch."""
        if child == BLANK_NODE:
            return BLANK_NODE
        if len(child) == 2:
            child_path, is_leaf = decode_hex_prefix(child[0])
            return [hex_prefix(path + child_path, is_leaf=is_leaf), child[1]]
        if reference is None:
            reference = _hashed(child, self.nodes, self.decoded)
        return [hex_prefix(path, is_leaf=False), reference]


def update_trie(
    root_hash: bytes, read_node: NodeReader, changes: Mapping[bytes, Optional[bytes]],
    decoded: Optional[dict[bytes, Any]] = None,
) -> tuple[bytes, dict[bytes, bytes]]:
    """Apply `changes` (key -> new value; None or b"" deletes the key) to the trie with
    root `root_hash` whose nodes `read_node` returns. Returns the new root hash and the
    new hashed nodes (the old ones are left where they are: nodes are content-addressed).
    `decoded`: nodes already decoded, by hash, kept by the caller across updates
    (content-addressed, so valid under any root); read, and filled with what this update
    decodes and makes. Its entries are never changed in place, so they may be shared.
    """
    if not changes:
        return root_hash, {}
    ordered = sorted((to_nibbles(key), value or None) for key, value in changes.items())
    updater = _TrieUpdater(read_node, [key for key, _ in ordered],
                           [value for _, value in ordered], decoded)
    root = BLANK_NODE if root_hash == BLANK_ROOT_HASH else updater.stored(root_hash)
    root_hash = _root_of(updater.update(root, 0, len(ordered), 0), updater.nodes, decoded)
    return root_hash, updater.nodes


# ------------------------------------------------------------------ split updates
# A state trie's root is a branch; the changes under each of its sixteen children are
# independent. `update_subtries` applies the changes under some children (a worker's
# share of the first nibbles) and `join_subtries` puts the children back under the root:
# together they give `update_trie`'s root and nodes, with the work spread over processes.


def root_branch(root_hash: bytes, read_node: NodeReader,
                decoded: Optional[dict[bytes, Any]] = None) -> Optional[list]:
    """The root node of the trie `root_hash` when it is a branch, else None (an empty
    trie, or one whose keys all share their first nibble)."""
    if root_hash == BLANK_ROOT_HASH:
        return None
    node = _TrieUpdater(read_node, (), (), decoded).stored(root_hash)
    return node if len(node) == BRANCH_WIDTH + 1 else None


def update_subtries(
    root_hash: bytes, read_node: NodeReader, changes: Mapping[bytes, Optional[bytes]],
    decoded: Optional[dict[bytes, Any]] = None,
) -> tuple[dict[int, Any], dict[bytes, bytes]]:
    """`changes` applied under the children of the root branch of `root_hash` (which
    `root_branch` must have found): {first nibble: the child's new reference (a hash, an
    embedded node, or BLANK_NODE)} for each nibble the changes touch, and the new nodes."""
    ordered = sorted((to_nibbles(key), value or None) for key, value in changes.items())
    keys = [key for key, _ in ordered]
    updater = _TrieUpdater(read_node, keys, [value for _, value in ordered], decoded)
    root = updater.stored(root_hash)
    assert len(root) == BRANCH_WIDTH + 1, "update_subtries needs a root branch (root_branch)"
    fresh = updater.update_children(list(root), 0, len(keys), 0)
    children = {nibble: BLANK_NODE if child == BLANK_NODE else _hashed(child, updater.nodes, decoded)
                for nibble, child in fresh.items()}
    return children, updater.nodes


def join_subtries(
    root_hash: bytes, read_node: NodeReader, children: Mapping[int, Any],
    decoded: Optional[dict[bytes, Any]] = None,
) -> Optional[tuple[bytes, dict[bytes, bytes]]]:
    """The root hash and new root node of the root branch of `root_hash` with `children`
    (`update_subtries`' references) in place; None when fewer than two children are
    left: the root is then no branch, and the caller applies the changes with
    `update_trie` instead."""
    root = _TrieUpdater(read_node, (), (), decoded).stored(root_hash)
    branch = list(root)
    for nibble, reference in children.items():
        branch[nibble] = reference
    if branch[:BRANCH_WIDTH].count(BLANK_NODE) >= BRANCH_WIDTH - 1:
        return None
    nodes: dict[bytes, bytes] = {}
    return _root_of(branch, nodes, decoded), nodes
