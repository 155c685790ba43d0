"""Prometheus metrics of one node, served as text at /metrics on the RPC port.

Each node process has its own `CollectorRegistry` (not prometheus_client's global one),
so tests and tools that run several nodes in one process never mix their series.
Values that are a reading of the node's state (head height, pool size, peers) are
collected at scrape time from the same objects the RPC methods read, so a scrape and
eth_blockNumber / laminar_mempoolStatus / net_peerCount agree; per-block series are
observed by a commit listener.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Optional, Sequence

from eth.abc import BlockAPI, ReceiptAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from consensus.certificate import CommitCertificate
from node.admission import AdmissionWorkers
from node.chain import Chain
from node.mempool import Mempool

log = logging.getLogger(__name__)

NAMESPACE = "laminar"
INTERVAL_BUCKETS_S = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600)
TXS_PER_BLOCK_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
EXECUTION_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
INCARNATION_BUCKETS = (1, 1.05, 1.1, 1.25, 1.5, 2, 3, 5, 10)
ROUND_BUCKETS = (1, 2, 3, 4, 5, 8, 13, 20)
# RPC methods outside the registry are counted under one label: a client cannot grow
# the series without bound by calling made-up names.
UNKNOWN_METHOD = "other"


class _Readings(Collector):
    """Gauges read at scrape time."""

    def __init__(
        self, chain: Chain, mempool: Mempool, peers: Callable[[], int],
        admission: Optional[AdmissionWorkers],
    ) -> None:
        self.chain, self.mempool, self.peers = chain, mempool, peers
        self.admission = admission

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            f"{NAMESPACE}_head_height", "Number of the head (last committed) block.",
            value=self.chain.head.block_number,
        )
        pending = len(self.mempool.pending_transactions())
        pool = GaugeMetricFamily(
            f"{NAMESPACE}_mempool_transactions",
            "Transactions in the pool: pending (executable) or queued (behind a nonce gap).",
            labels=["state"],
        )
        pool.add_metric(["pending"], pending)
        pool.add_metric(["queued"], len(self.mempool) - pending)
        yield pool
        yield GaugeMetricFamily(
            f"{NAMESPACE}_peers", "Connected p2p peers.", value=self.peers(),
        )
        if self.admission is not None:
            checked = CounterMetricFamily(
                f"{NAMESPACE}_admission_checked_transactions",
                "Raw transactions whose stateless checks ran in an admission worker process "
                "or inline on the event loop.",
                labels=["where"],
            )
            checked.add_metric(["workers"], self.admission.checked_in_workers)
            checked.add_metric(["inline"], self.admission.checked_inline)
            yield checked


class NodeMetrics:
    """The series of one node; `on_commit` and `on_rpc_call` feed them."""

    def __init__(
        self, chain: Chain, mempool: Mempool, peers: Callable[[], int],
        rpc_methods: Callable[[str], bool], admission: Optional[AdmissionWorkers] = None,
    ) -> None:
        self.chain = chain
        self._known_method = rpc_methods
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Readings(chain, mempool, peers, admission))
        reg = self.registry
        self.block_interval = Histogram(
            f"{NAMESPACE}_block_interval_seconds",
            "Timestamp difference between a committed block and its parent.",
            buckets=INTERVAL_BUCKETS_S, registry=reg,
        )
        self.block_transactions = Histogram(
            f"{NAMESPACE}_block_transactions", "Transactions per committed block.",
            buckets=TXS_PER_BLOCK_BUCKETS, registry=reg,
        )
        self.execution_seconds = Histogram(
            f"{NAMESPACE}_block_execution_seconds",
            "Time to execute a block this node executed (or applied), by executor.",
            ["executor"], buckets=EXECUTION_BUCKETS_S, registry=reg,
        )
        self.incarnations = Histogram(
            f"{NAMESPACE}_blockstm_incarnations_per_transaction",
            "Block-STM executions (first runs and re-runs) per transaction, per block.",
            buckets=INCARNATION_BUCKETS, registry=reg,
        )
        self.fallbacks = Counter(
            f"{NAMESPACE}_blockstm_fallbacks",
            "Blocks Block-STM handed to the sequential executor.", registry=reg,
        )
        self.rounds = Histogram(
            f"{NAMESPACE}_consensus_rounds_per_height",
            "Consensus rounds a committed height took (1: decided in its first round).",
            buckets=ROUND_BUCKETS, registry=reg,
        )
        self.rpc_requests = Counter(
            f"{NAMESPACE}_rpc_requests", "JSON-RPC calls, by method.", ["method"], registry=reg,
        )
        self.rpc_errors = Counter(
            f"{NAMESPACE}_rpc_errors", "JSON-RPC calls answered with an error, by method.",
            ["method"], registry=reg,
        )

    def on_commit(self, block: BlockAPI, receipts: Sequence[ReceiptAPI]) -> None:
        header = block.header
        parent = self.chain.header_by_hash(header.parent_hash)
        if parent is not None:
            self.block_interval.observe(header.timestamp - parent.timestamp)
        self.block_transactions.observe(len(block.transactions))
        if self.chain.recent_stats and self.chain.recent_stats[-1][0] == header.block_number:
            stats = self.chain.recent_stats[-1][1]
            self.execution_seconds.labels(stats.executor).observe(stats.seconds)
            if stats.executor == "blockstm" and stats.transactions:
                if stats.fallback:
                    self.fallbacks.inc()
                else:
                    self.incarnations.observe(stats.incarnations / stats.transactions)
        certificate = self.chain.store.get_certificate(header.hash)
        if certificate:
            try:
                self.rounds.observe(CommitCertificate.decode(certificate).round + 1)
            except Exception:  # a metric must never stop a commit
                log.exception("metrics: undecodable certificate of block %d", header.block_number)

    def on_rpc_call(self, method: str, failed: bool) -> None:
        label = method if self._known_method(method) else UNKNOWN_METHOD
        self.rpc_requests.labels(label).inc()
        if failed:
            self.rpc_errors.labels(label).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def peer_counter(p2p: Optional[Any]) -> Callable[[], int]:
    return (lambda: len(p2p.connected_peers())) if p2p is not None else (lambda: 0)
