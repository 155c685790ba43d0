"""Header roots of a block's transactions and receipts.

Built in one pass (`execution.trie`): py-evm's `make_trie_root_and_nodes` inserts items
one at a time, which for a 2,000-transaction block was 1.3 s of a 4.3 s block on this
project's machine; the one-pass builder takes well under a tenth of that.
"""

from __future__ import annotations

from typing import Sequence

import rlp
from eth.abc import ReceiptAPI, SignedTransactionAPI

from execution.trie import trie_root_and_nodes


def ordered_trie_root(encoded_items: Sequence[bytes]) -> bytes:
    """Root of the trie mapping `rlp(i)` to the i-th item: how headers commit to lists."""
    root, _ = trie_root_and_nodes(
        {rlp.encode(index): item for index, item in enumerate(encoded_items)}
    )
    return root


def transactions_root(transactions: Sequence[SignedTransactionAPI]) -> bytes:
    return ordered_trie_root([tx.encode() for tx in transactions])


def receipts_root(receipts: Sequence[ReceiptAPI]) -> bytes:
    return ordered_trie_root([receipt.encode() for receipt in receipts])


def make_header_roots(
    transactions: Sequence[SignedTransactionAPI], receipts: Sequence[ReceiptAPI]
) -> tuple[bytes, bytes]:
    """`(transactions_root, receipts_root)` as they go in the block header."""
    return transactions_root(transactions), receipts_root(receipts)
