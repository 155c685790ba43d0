"""Laminar's block format: Prague's, with the block-level access list (EIP-7928).

The header gains `block_access_list_hash` (keccak of the list's RLP; an empty block's is
keccak(0xc0)) after Prague's `requests_hash`, as EIP-7928 places it. Unlike Ethereum,
where the list travels beside the block (Engine API), Laminar's block carries it as a
fifth field, the list's RLP bytes: a proposal, a synced block and a stored block all
hold it, and the header commits to it. `node.chain.Chain.decode_block` checks the bytes
are a canonical list that hashes to the header's field before anything else.
"""

from __future__ import annotations

from typing import Optional, Sequence

import rlp
from eth.abc import BlockHeaderAPI, SignedTransactionAPI, WithdrawalAPI
from eth.constants import (
    BLANK_ROOT_HASH,
    EMPTY_SHA256,
    EMPTY_UNCLE_HASH,
    GENESIS_NONCE,
    ZERO_ADDRESS,
    ZERO_HASH32,
)
from eth.rlp.sedes import hash32
from eth.vm.forks.prague.blocks import PragueBlock, PragueBlockHeader
from eth.vm.forks.shanghai.withdrawals import Withdrawal
from eth_bloom import BloomFilter
from eth_hash.auto import keccak
from rlp.sedes import CountableList, binary

from execution.bal.codec import EMPTY_ACCESS_LIST_RLP
from execution.transaction_decoding import TransactionSedes

EMPTY_ACCESS_LIST_HASH = keccak(EMPTY_ACCESS_LIST_RLP)


class LaminarBlockHeader(PragueBlockHeader):
    """Prague's header plus `block_access_list_hash`."""

    fields = list(zip(PragueBlockHeader._meta.field_names, PragueBlockHeader._meta.sedes)) + [
        ("block_access_list_hash", hash32),
    ]

    def __init__(  # noqa: PLR0913 - one argument per header field, as py-evm's headers
        self,
        difficulty: int,
        block_number: int,
        gas_limit: int,
        timestamp: int,
        coinbase: bytes = ZERO_ADDRESS,
        parent_hash: bytes = ZERO_HASH32,
        uncles_hash: bytes = EMPTY_UNCLE_HASH,
        state_root: bytes = BLANK_ROOT_HASH,
        transaction_root: bytes = BLANK_ROOT_HASH,
        receipt_root: bytes = BLANK_ROOT_HASH,
        bloom: int = 0,
        gas_used: int = 0,
        extra_data: bytes = b"",
        mix_hash: bytes = ZERO_HASH32,
        nonce: bytes = GENESIS_NONCE,
        base_fee_per_gas: int = 0,
        withdrawals_root: bytes = BLANK_ROOT_HASH,
        blob_gas_used: int = 0,
        excess_blob_gas: int = 0,
        parent_beacon_block_root: bytes = ZERO_HASH32,
        requests_hash: bytes = EMPTY_SHA256,
        block_access_list_hash: bytes = EMPTY_ACCESS_LIST_HASH,
    ) -> None:
        # rlp.Serializable's constructor, with every field (Prague's __init__ would pass
        # its own fields only).
        rlp.Serializable.__init__(
            self,
            parent_hash=parent_hash,
            uncles_hash=uncles_hash,
            coinbase=coinbase,
            state_root=state_root,
            transaction_root=transaction_root,
            receipt_root=receipt_root,
            bloom=bloom,
            difficulty=difficulty,
            block_number=block_number,
            gas_limit=gas_limit,
            gas_used=gas_used,
            timestamp=timestamp,
            extra_data=extra_data,
            mix_hash=mix_hash,
            nonce=nonce,
            base_fee_per_gas=base_fee_per_gas,
            withdrawals_root=withdrawals_root,
            blob_gas_used=blob_gas_used,
            excess_blob_gas=excess_blob_gas,
            parent_beacon_block_root=parent_beacon_block_root,
            requests_hash=requests_hash,
            block_access_list_hash=block_access_list_hash,
        )

    def __str__(self) -> str:
        return f"<LaminarBlockHeader #{self.block_number} {self.hash.hex()[:8]}>"


class LaminarBlock(PragueBlock):
    """Prague's block plus the access list's RLP bytes."""

    fields = [
        ("header", LaminarBlockHeader),
        ("transactions", CountableList(TransactionSedes(PragueBlock.transaction_builder))),
        ("uncles", CountableList(None, max_length=0)),
        ("withdrawals", CountableList(Withdrawal)),
        ("access_list", binary),
    ]

    def __init__(
        self,
        header: BlockHeaderAPI,
        transactions: Optional[Sequence[SignedTransactionAPI]] = None,
        uncles: Optional[Sequence[BlockHeaderAPI]] = None,
        withdrawals: Optional[Sequence[WithdrawalAPI]] = None,
        access_list: bytes = EMPTY_ACCESS_LIST_RLP,
    ) -> None:
        self.bloom_filter = BloomFilter(header.bloom)
        rlp.Serializable.__init__(
            self,
            header=header,
            transactions=list(transactions or ()),
            uncles=list(uncles or ()),
            withdrawals=list(withdrawals or ()),
            access_list=access_list,
        )
