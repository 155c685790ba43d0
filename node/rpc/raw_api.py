"""execution-apis' debug getters: blocks, headers, receipts and transactions as the bytes
the chain stores and hashes, for tools that verify them against the roots themselves.

A Laminar block's RLP is Prague's block with a fifth field, the block access list's RLP,
and its header has `blockAccessListHash` after `requestsHash` (node/blocks.py): the
bytes returned are exactly the ones the block hash and the peers' sync cover. Receipts
and transactions are their EIP-2718 encodings (the items of the header's tries).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import rlp
from eth.abc import BlockAPI, BlockHeaderAPI

from node.rpc import encoding, params
from node.rpc.errors import server_error
from node.rpc.eth_api import EthApi
from node.rpc.server import Methods


def _header_or_error(api: EthApi, block: Any, what: str) -> BlockHeaderAPI:
    """geth answers these getters for a missing block with an error, not null."""
    ref = params.block_ref(block)
    header = api._header(ref)
    if header is None:
        shown = encoding.data(ref[1]) if isinstance(ref, tuple) else str(ref)
        raise server_error(f"{what} #{shown} not found")
    return header


def get_raw_header(api: EthApi, block: Any) -> str:
    return encoding.data(rlp.encode(_header_or_error(api, block, "header")))


def get_raw_block(api: EthApi, block: Any) -> str:
    header = _header_or_error(api, block, "block")
    return encoding.data(rlp.encode(api._block(header)))


def get_raw_receipts(api: EthApi, block: Any) -> list[str]:
    header = _header_or_error(api, block, "block")
    return [encoding.data(receipt.encode()) for receipt in api.chain.receipts(header.hash)]


def get_raw_transaction(api: EthApi, tx_hash: Any) -> str:
    """A committed transaction's bytes, or a pooled one's (as geth looks in its pool too);
    "0x" for a hash the node has never seen (geth's empty bytes: the spec's result is
    bytes, never null)."""
    raw_hash = params.hash32(tx_hash, "transactionHash")
    location = api.chain.tx_location(raw_hash)
    if location is not None:
        block = api.chain.block_by_hash(location.block_hash)
        assert block is not None  # tx_location answers only for a visible committed block
        return encoding.data(block.transactions[location.index].encode())
    pooled = api.mempool.get(raw_hash)
    return encoding.data(pooled.raw) if pooled is not None else encoding.data(b"")


def bad_block_json(block: BlockAPI) -> dict:
    """execution-apis BadBlock: the block as eth_getBlockByHash shows it (with its
    transactions), its hash and RLP. A transaction whose sender cannot be recovered (a
    bad block may hold one) leaves the block with transaction hashes only."""
    try:
        shown = encoding.encode_block(block, full_transactions=True)
    except Exception:  # noqa: BLE001 - any failure to recover a sender of a refused block
        shown = encoding.encode_block(block, full_transactions=False)
    return {
        "block": shown,
        "hash": encoding.data(block.header.hash),
        "rlp": encoding.data(rlp.encode(block)),
    }


def get_bad_blocks(bad_blocks: Callable[[], Sequence[BlockAPI]]) -> list[dict]:
    """Proposals this node refused after executing them (a wrong state root, access list,
    ...), the most recent BAD_BLOCKS_KEPT of the BFT reactor; a single-validator dev
    chain proposes every block itself and has none."""
    return [bad_block_json(block) for block in bad_blocks()]


def no_bad_blocks() -> Sequence[BlockAPI]:
    return ()


def register_raw_api(
    methods: Methods, api: EthApi, bad_blocks: Callable[[], Sequence[BlockAPI]] = no_bad_blocks
) -> None:
    methods.register("debug_getRawHeader", lambda block: get_raw_header(api, block))
    methods.register("debug_getRawBlock", lambda block: get_raw_block(api, block))
    methods.register("debug_getRawReceipts", lambda block: get_raw_receipts(api, block))
    methods.register("debug_getRawTransaction", lambda tx_hash: get_raw_transaction(api, tx_hash))
    methods.register("debug_getBadBlocks", lambda: get_bad_blocks(bad_blocks))
