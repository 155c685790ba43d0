"""EIP-1186 Merkle proofs of an account and its storage slots, read from the node's trie.

The world state is py-evm's: trie nodes keyed by their keccak in LevelDB, the state trie
keyed by keccak(address) with RLP accounts as values, each contract's storage trie keyed
by keccak(slot as 32 bytes) with RLP of the value. A proof is the encoded nodes on the
path from the root to the key, in order; nodes shorter than 32 bytes sit inside their
parent, so they are never items of their own (as geth returns them). The same walk that
collects the path also says what is at the key, so a proof of absence (the path ends at
an empty slot, a diverging leaf or extension) comes out of the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import rlp
from eth.rlp.accounts import Account
from eth_hash.auto import keccak

from execution.executor import NodeReader
from execution.trie import (
    BLANK_NODE,
    BLANK_ROOT_HASH,
    BRANCH_WIDTH,
    decode_hex_prefix,
    decode_node,
    to_nibbles,
)

EMPTY_CODE_HASH = keccak(b"")
SLOT_BYTES = 32


@dataclass(frozen=True)
class StorageProof:
    slot: int
    value: int
    proof: list[bytes]


@dataclass(frozen=True)
class AccountProof:
    address: bytes
    nonce: int
    balance: int
    storage_root: bytes
    code_hash: bytes
    proof: list[bytes]
    storage: list[StorageProof]


class MissingTrieNode(Exception):
    """A node the path needs is not in the database (the state is incomplete)."""


def trie_path(nodes: NodeReader, root_hash: bytes, key: bytes) -> tuple[list[bytes], Optional[bytes]]:
    """(the encoded nodes from the root along `key`'s path, the value at `key` or None).

    An empty trie has no nodes: the proof is empty and the key absent."""
    if root_hash == BLANK_ROOT_HASH:
        return [], None
    path = to_nibbles(key)
    proof: list[bytes] = []
    reference: Any = root_hash
    while True:
        if isinstance(reference, list):
            node = reference  # embedded in its parent: already part of the proof
        elif reference == BLANK_NODE:
            return proof, None
        else:
            try:
                encoded = nodes[reference]
            except KeyError:
                raise MissingTrieNode("0x" + bytes(reference).hex()) from None
            proof.append(encoded)
            node = decode_node(encoded)
        if len(node) == BRANCH_WIDTH + 1:
            if not path:
                value = node[BRANCH_WIDTH]
                return proof, value if value != BLANK_NODE else None
            reference, path = node[path[0]], path[1:]
            continue
        node_path, is_leaf = decode_hex_prefix(node[0])
        if is_leaf:
            return proof, node[1] if node_path == path else None
        if path[:len(node_path)] != node_path:
            return proof, None
        reference, path = node[1], path[len(node_path):]


def account_proof(nodes: NodeReader, state_root: bytes, address: bytes,
                  slots: Sequence[int]) -> AccountProof:
    """The account at `address` in the state with root `state_root`, and `slots` of its
    storage, each with its proof. A missing account reads as geth reports it: nonce and
    balance zero, the empty code hash and the empty storage root."""
    proof, encoded_account = trie_path(nodes, state_root, keccak(address))
    if encoded_account is None:
        account = Account(0, 0, BLANK_ROOT_HASH, EMPTY_CODE_HASH)
    else:
        account = rlp.decode(encoded_account, sedes=Account)
    storage = []
    for slot in slots:
        slot_proof, encoded_value = trie_path(
            nodes, account.storage_root, keccak(slot.to_bytes(SLOT_BYTES, "big"))
        )
        value = 0 if encoded_value is None else int.from_bytes(rlp.decode(encoded_value), "big")
        storage.append(StorageProof(slot, value, slot_proof))
    return AccountProof(
        address=address,
        nonce=account.nonce,
        balance=account.balance,
        storage_root=account.storage_root,
        code_hash=account.code_hash,
        proof=proof,
        storage=storage,
    )
