"""Log criteria (eth_getLogs, eth_newFilter, logs subscriptions) and polled filters.

A polled filter remembers the last block it reported; eth_getFilterChanges returns what
came after. Filters that nobody polls for `timeout_s` are dropped, as geth does, and
their number is capped so a client cannot grow the node's memory without bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from eth_bloom import BloomFilter

from node.rpc import encoding, params
from node.rpc.errors import invalid_params, limit_exceeded, server_error
from node.rpc.subscriptions import random_quantity_id

MAX_TOPIC_POSITIONS = 4
MAX_ADDRESSES = 1_000
FILTER_ID_BYTES = 16


@dataclass(frozen=True)
class LogCriteria:
    addresses: frozenset[str]  # lower-case 0x-hex; empty: any address
    topics: tuple[Optional[frozenset[str]], ...]  # per position: None = any
    from_block: Optional[int] = None  # None: latest
    to_block: Optional[int] = None
    block_hash: Optional[bytes] = None

    def might_match(self, bloom: BloomFilter) -> bool:
        """Cheap pre-check on a block's bloom; false positives possible, no false negatives."""
        if self.addresses and not any(
            bytes.fromhex(a[2:]) in bloom for a in self.addresses
        ):
            return False
        for position in self.topics:
            if position is not None and not any(bytes.fromhex(t[2:]) in bloom for t in position):
                return False
        return True

    def matches(self, log: dict) -> bool:
        if self.addresses and log["address"] not in self.addresses:
            return False
        if len(self.topics) > len(log["topics"]):
            return False
        return all(
            wanted is None or log["topics"][i] in wanted for i, wanted in enumerate(self.topics)
        )


def _parse_topics(raw: Any) -> tuple[Optional[frozenset[str]], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_TOPIC_POSITIONS:
        raise invalid_params(f"topics: expected a list of at most {MAX_TOPIC_POSITIONS} positions")
    positions: list[Optional[frozenset[str]]] = []
    for i, entry in enumerate(raw):
        if entry is None:
            positions.append(None)
        elif isinstance(entry, str):
            positions.append(frozenset([encoding.data(params.hash32(entry, f"topics[{i}]"))]))
        elif isinstance(entry, list):
            if not entry:
                positions.append(None)
            else:
                positions.append(
                    frozenset(encoding.data(params.hash32(t, f"topics[{i}]")) for t in entry)
                )
        else:
            raise invalid_params(f"topics[{i}]: expected null, a topic, or a list of topics")
    return tuple(positions)


def _parse_addresses(raw: Any) -> frozenset[str]:
    if raw is None:
        return frozenset()
    items = raw if isinstance(raw, list) else [raw]
    if len(items) > MAX_ADDRESSES:
        raise invalid_params(f"address: at most {MAX_ADDRESSES} addresses")
    return frozenset(encoding.data(params.address(a, "address")) for a in items)


def parse_log_criteria(
    raw: Any, resolve_header: Callable[[Any], Any], allow_range: bool = True
) -> LogCriteria:
    filter_object = params.obj(raw if raw is not None else {}, "filter")
    known = {"fromBlock", "toBlock", "address", "topics", "blockHash"}
    unknown = set(filter_object) - known
    if unknown:
        raise invalid_params(f"filter: unknown field(s) {sorted(unknown)}")
    block_hash = None
    from_block = to_block = None
    if "blockHash" in filter_object and filter_object["blockHash"] is not None:
        if filter_object.get("fromBlock") is not None or filter_object.get("toBlock") is not None:
            raise invalid_params("filter: blockHash cannot be combined with fromBlock/toBlock")
        block_hash = params.hash32(filter_object["blockHash"], "blockHash")
    elif allow_range:
        from_block = _block_number(filter_object.get("fromBlock"), resolve_header, "fromBlock")
        to_block = _block_number(filter_object.get("toBlock"), resolve_header, "toBlock")
    return LogCriteria(
        addresses=_parse_addresses(filter_object.get("address")),
        topics=_parse_topics(filter_object.get("topics")),
        from_block=from_block,
        to_block=to_block,
        block_hash=block_hash,
    )


def _block_number(raw: Any, resolve_header, name: str) -> Optional[int]:
    if raw is None:
        return None
    ref = params.block_ref(raw, name)
    if isinstance(ref, int):
        return ref
    if ref in ("latest", "pending", "safe", "finalized"):
        return None
    header = resolve_header(ref)
    if header is None:
        raise server_error(f"{name}: unknown block")
    return header.block_number


@dataclass
class Filter:
    kind: str  # "logs", "blocks", "pending"
    last_block: int  # highest block already reported
    criteria: Optional[LogCriteria] = None
    last_poll: float = field(default_factory=time.monotonic)
    pending_hashes: list[bytes] = field(default_factory=list)


class FilterManager:
    def __init__(self, max_filters: int, timeout_s: float) -> None:
        self._filters: dict[str, Filter] = {}
        self.max_filters = max_filters
        self.timeout_s = timeout_s

    def _expire(self) -> None:
        now = time.monotonic()
        for filter_id in [f for f, flt in self._filters.items() if now - flt.last_poll > self.timeout_s]:
            del self._filters[filter_id]

    def _install(self, flt: Filter) -> str:
        self._expire()
        if len(self._filters) >= self.max_filters:
            raise limit_exceeded(f"too many filters installed (at most {self.max_filters})")
        filter_id = random_quantity_id(FILTER_ID_BYTES)
        self._filters[filter_id] = flt
        return filter_id

    def new_log_filter(self, criteria: LogCriteria, head: int) -> str:
        start = criteria.from_block - 1 if criteria.from_block is not None else head
        return self._install(Filter("logs", start, criteria))

    def new_block_filter(self, head: int) -> str:
        return self._install(Filter("blocks", head))

    def new_pending_filter(self) -> str:
        return self._install(Filter("pending", 0))

    def on_pending_transaction(self, tx_hash: bytes) -> None:
        for flt in self._filters.values():
            if flt.kind == "pending":
                flt.pending_hashes.append(tx_hash)

    def _get(self, filter_id: Any) -> Filter:
        if not isinstance(filter_id, str):
            raise invalid_params("filter id: expected a hex string")
        self._expire()
        flt = self._filters.get(filter_id)
        if flt is None:
            raise server_error("filter not found")
        flt.last_poll = time.monotonic()
        return flt

    def log_criteria(self, filter_id: Any) -> LogCriteria:
        flt = self._get(filter_id)
        if flt.kind != "logs":
            raise server_error("filter not found")  # geth: not a log filter
        assert flt.criteria is not None  # a log filter has criteria
        return flt.criteria

    def changes(self, filter_id: Any, api) -> list:
        flt = self._get(filter_id)
        head = api.chain.head.block_number
        if flt.kind == "pending":
            pending, flt.pending_hashes = flt.pending_hashes, []
            return [encoding.data(h) for h in pending]
        if flt.kind == "blocks":
            hashes = [
                encoding.data(api.chain.header_by_number(n).hash)
                for n in range(flt.last_block + 1, head + 1)
            ]
            flt.last_block = head
            return hashes
        assert flt.criteria is not None  # a log filter (the only other kind) has criteria
        last = head if flt.criteria.to_block is None else min(head, flt.criteria.to_block)
        first = flt.last_block + 1
        if first > last:
            return []
        last = min(last, first + api.settings.logs_block_range - 1)
        logs = api.collect_logs(flt.criteria, first, last)
        flt.last_block = last
        return logs

    def uninstall(self, filter_id: Any) -> bool:
        if not isinstance(filter_id, str):
            raise invalid_params("filter id: expected a hex string")
        return self._filters.pop(filter_id, None) is not None
