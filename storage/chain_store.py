"""Blocks, receipts, the transaction index, commit certificates and chain metadata.

Key layout (every key has a one-byte prefix, so none is 32 bytes long and none can
collide with a state node, which is keyed by its bare 32-byte hash):

    h + block_hash            -> header RLP
    b + block_hash            -> block RLP (header, transactions, uncles, withdrawals)
    r + block_hash            -> RLP list of receipts, each in its consensus encoding
                                 (typed receipts as type || payload); logs live inside
    c + block_hash            -> commit certificate (opaque bytes from consensus)
    n + number (8 bytes BE)   -> canonical block hash
    t + tx_hash               -> RLP [block_hash, tx_index]
    i + tx_hash               -> sender of a dev-chain transaction sent from an
                                 impersonated account (its signature is a placeholder)
    m + name                  -> chain metadata (head hash, chain config JSON, format)

`commit_block` writes a block, its receipts, index entries, the state nodes it produced
and the new head pointer in one synced batch: after a crash the node is either at the
old head or at the new one, with every state node of that head present.
`commit_blocks` does the same for several consecutive blocks at once (block sync).
`rewind_to` (dev chain: evm_revert) removes the blocks above a height and moves the
head back in one synced batch too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Type

import rlp
from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, ReceiptBuilderAPI
from rlp.sedes import CountableList, big_endian_int, binary

from storage.leveldb import LevelDB

HEADER_PREFIX = b"h"
BLOCK_PREFIX = b"b"
RECEIPTS_PREFIX = b"r"
CERTIFICATE_PREFIX = b"c"
CANONICAL_PREFIX = b"n"
TX_INDEX_PREFIX = b"t"
IMPERSONATED_PREFIX = b"i"
META_PREFIX = b"m"

HEAD_KEY = META_PREFIX + b"head"
CHAIN_CONFIG_KEY = META_PREFIX + b"chain-config"
FORMAT_KEY = META_PREFIX + b"format"

STATE_NODE_KEY_LENGTH = 32
NUMBER_KEY_BYTES = 8


class CorruptDatabaseError(RuntimeError):
    """The database holds something the node did not write (or was damaged)."""


@dataclass(frozen=True)
class BlockToCommit:
    """A block with what is written beside it (see `ChainStore.commit_blocks`)."""

    block: BlockAPI
    receipts: Sequence[ReceiptAPI]
    state_nodes: Mapping[bytes, bytes]
    certificate: bytes
    impersonated: Mapping[bytes, bytes] = field(default_factory=dict)  # tx hash -> sender


@dataclass(frozen=True)
class TxLocation:
    block_hash: bytes
    index: int


def _number_key(number: int) -> bytes:
    return CANONICAL_PREFIX + number.to_bytes(NUMBER_KEY_BYTES, "big")


class ChainStore:
    """The canonical chain as persisted: one block per height (BFT finality, no reorgs)."""

    def __init__(
        self,
        db: LevelDB,
        block_class: Type[BlockAPI],
        receipt_builder: Type[ReceiptBuilderAPI],
    ) -> None:
        self.db = db
        self._block_class = block_class
        self._header_class = block_class._meta.sedes[block_class._meta.field_names.index("header")]
        self._receipt_builder = receipt_builder

    # ---- metadata -------------------------------------------------------------------

    def get_chain_config(self) -> Optional[bytes]:
        return self.db.get(CHAIN_CONFIG_KEY)

    def get_format(self) -> Optional[bytes]:
        """What the chain's blocks look like (written with the genesis block)."""
        return self.db.get(FORMAT_KEY)

    def head_hash(self) -> Optional[bytes]:
        return self.db.get(HEAD_KEY)

    # ---- reads ----------------------------------------------------------------------

    def canonical_hash(self, number: int) -> Optional[bytes]:
        return self.db.get(_number_key(number))

    def get_header(self, block_hash: bytes) -> Optional[BlockHeaderAPI]:
        encoded = self.db.get(HEADER_PREFIX + block_hash)
        if encoded is None:
            return None
        return rlp.decode(encoded, sedes=self._header_class)

    def get_block(self, block_hash: bytes) -> Optional[BlockAPI]:
        encoded = self.db.get(BLOCK_PREFIX + block_hash)
        if encoded is None:
            return None
        return rlp.decode(encoded, sedes=self._block_class)

    def get_receipts(self, block_hash: bytes) -> Optional[tuple[ReceiptAPI, ...]]:
        encoded = self.db.get(RECEIPTS_PREFIX + block_hash)
        if encoded is None:
            return None
        return self.decode_receipts(encoded)

    def get_receipts_rlp(self, block_hash: bytes) -> Optional[bytes]:
        """A block's receipts as stored (what block sync serves)."""
        return self.db.get(RECEIPTS_PREFIX + block_hash)

    def decode_receipts(self, encoded: bytes) -> tuple[ReceiptAPI, ...]:
        return tuple(
            self._receipt_builder.decode(item)
            for item in rlp.decode(encoded, sedes=CountableList(binary))
        )

    def get_certificate(self, block_hash: bytes) -> Optional[bytes]:
        return self.db.get(CERTIFICATE_PREFIX + block_hash)

    def get_tx_location(self, tx_hash: bytes) -> Optional[TxLocation]:
        encoded = self.db.get(TX_INDEX_PREFIX + tx_hash)
        if encoded is None:
            return None
        block_hash, index = rlp.decode(encoded, sedes=rlp.sedes.List([binary, big_endian_int]))
        return TxLocation(block_hash, index)

    # ---- the one write path ---------------------------------------------------------

    def commit_block(
        self,
        block: BlockAPI,
        receipts: Sequence[ReceiptAPI],
        state_nodes: Mapping[bytes, bytes],
        certificate: bytes,
        chain_config: Optional[bytes] = None,
        chain_format: Optional[bytes] = None,
        impersonated: Optional[Mapping[bytes, bytes]] = None,
    ) -> None:
        """Persist a block as the new head, with its state, atomically and durably.
        `impersonated`: tx hash -> sender of the block's impersonated transactions."""
        puts = self._block_puts(BlockToCommit(block, receipts, state_nodes, certificate,
                                              impersonated or {}))
        if chain_config is not None:
            puts[CHAIN_CONFIG_KEY] = chain_config
        if chain_format is not None:
            puts[FORMAT_KEY] = chain_format
        puts[HEAD_KEY] = block.header.hash
        self.db.write_atomically(puts)

    def commit_blocks(self, blocks: Sequence[BlockToCommit]) -> None:
        """Persist consecutive blocks (each the child of the one before, the first the
        head's) in one synced batch, the last the new head: a syncing node pays one
        fsync for a batch of certified blocks, and a crash leaves it at the old head or
        at the last of them, never in between."""
        if not blocks:
            return
        puts: dict[bytes, bytes] = {}
        for entry in blocks:
            puts.update(self._block_puts(entry))
        puts[HEAD_KEY] = blocks[-1].block.header.hash
        self.db.write_atomically(puts)

    def _block_puts(self, entry: BlockToCommit) -> dict[bytes, bytes]:
        header = entry.block.header
        block_hash = header.hash
        puts: dict[bytes, bytes] = {}
        for key, value in entry.state_nodes.items():
            if len(key) != STATE_NODE_KEY_LENGTH:
                raise ValueError(f"state node key of {len(key)} bytes; expected 32")
            puts[key] = value
        puts[HEADER_PREFIX + block_hash] = rlp.encode(header)
        puts[BLOCK_PREFIX + block_hash] = rlp.encode(entry.block)
        puts[RECEIPTS_PREFIX + block_hash] = rlp.encode(
            [receipt.encode() for receipt in entry.receipts], sedes=CountableList(binary)
        )
        puts[CERTIFICATE_PREFIX + block_hash] = entry.certificate
        puts[_number_key(header.block_number)] = block_hash
        for index, tx in enumerate(entry.block.transactions):
            puts[TX_INDEX_PREFIX + tx.hash] = rlp.encode([block_hash, index])
        for tx_hash, sender in entry.impersonated.items():
            puts[IMPERSONATED_PREFIX + tx_hash] = sender
        return puts

    def impersonated_senders(self) -> dict[bytes, bytes]:
        """Every stored impersonated transaction's sender, by tx hash (dev chains only
        have any, and few: loaded once when the chain opens)."""
        return {
            key[len(IMPERSONATED_PREFIX):]: value
            for key, value in self.db.iterate_prefix(IMPERSONATED_PREFIX)
        }

    def rewind_to(self, number: int, head_number: int) -> list[bytes]:
        """Make canonical height `number` the head again: the blocks above it (up to
        `head_number`) go with their headers, bodies, receipts, certificates, canonical
        entries, transaction index and impersonation entries, in one synced batch with
        the head pointer, so a crash leaves the old chain or the rewound one. State nodes
        stay (content-addressed: the kept blocks' nodes may be shared). Returns the
        hashes of the transactions removed."""
        target = self.canonical_hash(number)
        if target is None:
            raise CorruptDatabaseError(f"no canonical block at height {number}")
        deletes: list[bytes] = []
        removed_txs: list[bytes] = []
        for height in range(number + 1, head_number + 1):
            block_hash = self.canonical_hash(height)
            if block_hash is None:
                raise CorruptDatabaseError(f"no canonical block at height {height}")
            block = self.get_block(block_hash)
            if block is None:
                raise CorruptDatabaseError(f"block {block_hash.hex()} has no body")
            for tx in block.transactions:
                removed_txs.append(bytes(tx.hash))
                deletes.append(TX_INDEX_PREFIX + tx.hash)
                deletes.append(IMPERSONATED_PREFIX + tx.hash)
            for prefix in (HEADER_PREFIX, BLOCK_PREFIX, RECEIPTS_PREFIX, CERTIFICATE_PREFIX):
                deletes.append(prefix + block_hash)
            deletes.append(_number_key(height))
        self.db.write_atomically({HEAD_KEY: target}, deletes)
        return removed_txs
