"""geth's txpool_ namespace over the mempool: counts, contents and a one-line summary
of every pooled transaction, split as geth splits them.

`pending` holds a sender's transactions with consecutive nonces from its account nonce
(the next block can take them); `queued` the rest, waiting behind a nonce gap. Senders
are keyed by their EIP-55 address and transactions by their nonce in decimal, as geth
does; the transactions are eth_getTransactionByHash's pending objects.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from eth_utils import to_checksum_address

from node.mempool import Mempool, PooledTx
from node.rpc import encoding, params
from node.rpc.server import Methods

CONTRACT_CREATION = "contract creation"


def _by_sender_and_nonce(
    pooled: Iterable[PooledTx], show: Callable[[PooledTx], Any]
) -> dict[str, dict[str, Any]]:
    grouped: dict[str, dict[str, Any]] = {}
    for item in sorted(pooled, key=lambda p: (p.sender, p.nonce)):
        grouped.setdefault(to_checksum_address(item.sender), {})[str(item.nonce)] = show(item)
    return grouped


def _transaction(pooled: PooledTx) -> dict:
    return encoding.encode_transaction(pooled.tx, None, None)


def _summary(pooled: PooledTx) -> str:
    """geth's txpool_inspect line: recipient, value, gas limit and fee cap per gas."""
    tx = pooled.tx
    to = to_checksum_address(tx.to) if tx.to else CONTRACT_CREATION
    return f"{to}: {tx.value} wei + {tx.gas} gas × {tx.max_fee_per_gas} wei"


def txpool_status(mempool: Mempool) -> dict[str, str]:
    pending = len(mempool.pending_transactions())
    return {
        "pending": encoding.quantity(pending),
        "queued": encoding.quantity(len(mempool) - pending),
    }


def txpool_content(mempool: Mempool) -> dict[str, dict]:
    return {
        "pending": _by_sender_and_nonce(mempool.pending_transactions(), _transaction),
        "queued": _by_sender_and_nonce(mempool.queued_transactions(), _transaction),
    }


def txpool_content_from(mempool: Mempool, address: Any) -> dict[str, dict]:
    """One sender's part of txpool_content: its transactions by nonce, no address level."""
    sender = params.address(address, "address")
    key = to_checksum_address(sender)
    pending = [p for p in mempool.pending_transactions() if p.sender == sender]
    queued = [p for p in mempool.queued_transactions() if p.sender == sender]
    return {
        "pending": _by_sender_and_nonce(pending, _transaction).get(key, {}),
        "queued": _by_sender_and_nonce(queued, _transaction).get(key, {}),
    }


def txpool_inspect(mempool: Mempool) -> dict[str, dict]:
    return {
        "pending": _by_sender_and_nonce(mempool.pending_transactions(), _summary),
        "queued": _by_sender_and_nonce(mempool.queued_transactions(), _summary),
    }


def register_txpool_api(methods: Methods, mempool: Mempool) -> None:
    def status() -> dict:
        return txpool_status(mempool)

    def content() -> dict:
        return txpool_content(mempool)

    def content_from(address: Any) -> dict:
        return txpool_content_from(mempool, address)

    def inspect() -> dict:
        return txpool_inspect(mempool)

    methods.register("txpool_status", status)
    methods.register("txpool_content", content)
    methods.register("txpool_contentFrom", content_from)
    methods.register("txpool_inspect", inspect)
