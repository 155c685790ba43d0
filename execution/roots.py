"""Header roots of a block's transactions and receipts."""

from __future__ import annotations

from typing import Sequence

from eth.abc import ReceiptAPI, SignedTransactionAPI
from eth.db.trie import make_trie_root_and_nodes


def make_header_roots(
    transactions: Sequence[SignedTransactionAPI], receipts: Sequence[ReceiptAPI]
) -> tuple[bytes, bytes]:
    """`(transactions_root, receipts_root)` as they go in the block header."""
    transactions_root, _ = make_trie_root_and_nodes(tuple(transactions))
    receipts_root, _ = make_trie_root_and_nodes(tuple(receipts))
    return transactions_root, receipts_root
