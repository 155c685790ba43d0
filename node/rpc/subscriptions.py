"""WebSocket subscriptions (``eth_subscribe`` / ``eth_unsubscribe``).

The chain side owns a :class:`SubscriptionHub`, registers the subscription
kinds it supports, and publishes events into it; the RPC server's WebSocket
layer creates and removes subscriptions on behalf of its connections.

Example (chain side)::

    hub = SubscriptionHub()
    hub.register_kind("newHeads")                       # one notification per event
    hub.register_kind(
        "logs",
        parse_params=parse_log_filter,                  # (*params) -> filter object
        select=lambda flt, logs: [l for l in logs if flt.matches(l)],
    )
    ...
    hub.publish("newHeads", header_json)                # for each new block
    hub.publish("logs", block_logs_json)                # one notification per selected log

``publish`` is synchronous and never blocks: each subscriber has a bounded send
queue; a subscriber whose queue is full is disconnected by its connection.
It must be called from the trio thread (from a worker thread use
``trio.from_thread.run_sync(hub.publish, kind, event)``).

Notifications are formatted exactly like geth's::

    {"jsonrpc":"2.0","method":"eth_subscription",
     "params":{"subscription":"0x<32 hex>","result":<result>}}
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from node.rpc.errors import RpcError, invalid_params, limit_exceeded

log = logging.getLogger(__name__)

#: (*params after the kind name) -> filter object (anything). Raise RpcError
#: (e.g. ``invalid_params(...)``) for bad params.
ParseParams = Callable[..., Any]
#: (filter object, published event) -> iterable of notification results.
Select = Callable[[Any, Any], Iterable[Any]]


class SubscriptionSink(Protocol):
    """Receiver of notifications (the server's WebSocket connection)."""

    def deliver(self, notification_json: str) -> bool:
        """Queue one encoded notification without blocking.

        Return False if the sink is gone or overflowed (it then tears itself
        down; the hub keeps going).
        """
        ...


SUBSCRIPTION_ID_BYTES = 16


def random_quantity_id(size: int) -> str:
    """A random id of `size` bytes that is also a valid hex quantity (execution-apis types
    filter and subscription ids as `uint`): the top bit set, so no leading zero digit."""
    value = int.from_bytes(secrets.token_bytes(size), "big") | (1 << (8 * size - 1))
    return hex(value)


def new_subscription_id() -> str:
    """Random 16-byte id, ``0x`` + 32 hex digits (geth's format)."""
    return random_quantity_id(SUBSCRIPTION_ID_BYTES)


def notification_json(subscription_id: str, result: Any) -> str:
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "method": "eth_subscription",
            "params": {"subscription": subscription_id, "result": result},
        },
        separators=(",", ":"),
    )


def _no_params(*params: Any) -> None:
    if params:
        raise invalid_params("too many arguments, want at most 1")
    return None


def _select_all(_filter: Any, event: Any) -> Iterable[Any]:
    return (event,)


@dataclass
class SubscriptionKind:
    name: str
    parse_params: ParseParams = _no_params
    select: Select = _select_all


@dataclass(eq=False)
class Subscription:
    id: str
    kind: str
    filter: Any
    sink: SubscriptionSink
    active: bool = False
    # Notifications produced between creation and activation (i.e. before the
    # eth_subscribe response went out); flushed in order on activation.
    pending: list[str] = field(default_factory=list)


class SubscriptionHub:
    """Registry of subscription kinds and live subscriptions; publish target."""

    def __init__(self, *, max_pending_before_activation: int = 1024) -> None:
        self._kinds: dict[str, SubscriptionKind] = {}
        self._by_id: dict[str, Subscription] = {}
        self._by_kind: dict[str, dict[str, Subscription]] = {}
        self._max_pending = max_pending_before_activation

    # ---- chain side -------------------------------------------------------

    def register_kind(
        self,
        name: str,
        parse_params: ParseParams | None = None,
        select: Select | None = None,
    ) -> None:
        """Declare a subscription kind.

        ``parse_params(*params)`` receives the eth_subscribe params after the
        kind name and returns a filter object (default: accept no params, filter
        None). ``select(filter, event)`` returns the results to notify for one
        published event, each sent as its own notification (default: the event
        itself). Exceptions from ``select`` are logged; that subscriber is skipped.
        """
        self._kinds[name] = SubscriptionKind(
            name, parse_params or _no_params, select or _select_all
        )
        self._by_kind.setdefault(name, {})

    def kinds(self) -> list[str]:
        return list(self._kinds)

    def has_subscribers(self, kind: str) -> bool:
        return bool(self._by_kind.get(kind))

    def subscription_count(self, kind: str | None = None) -> int:
        if kind is None:
            return len(self._by_id)
        return len(self._by_kind.get(kind, ()))

    def publish(self, kind: str, event: Any) -> int:
        """Deliver ``event`` to every subscription of ``kind``. Non-blocking.

        ``event`` may be a zero-argument callable, invoked (once) only if there
        is at least one subscriber. Returns the number of notifications queued.
        """
        subs = self._by_kind.get(kind)
        if not subs:
            return 0
        spec = self._kinds[kind]
        if callable(event):
            event = event()
        delivered = 0
        for sub in list(subs.values()):
            try:
                results = list(spec.select(sub.filter, event))
            except Exception:
                log.exception("subscription select failed (kind=%s id=%s)", kind, sub.id)
                continue
            for result in results:
                try:
                    msg = notification_json(sub.id, result)
                except (TypeError, ValueError):
                    log.exception("unserialisable %s notification", kind)
                    continue
                if not sub.active:
                    if len(sub.pending) >= self._max_pending:
                        continue
                    sub.pending.append(msg)
                    delivered += 1
                    continue
                if sub.sink.deliver(msg):
                    delivered += 1
                else:
                    break  # sink is gone / overflowed; it will drop its subscriptions
        return delivered

    # ---- server side ------------------------------------------------------

    def subscribe(
        self,
        kind: Any,
        params: list[Any],
        sink: SubscriptionSink,
        *,
        max_per_sink: int | None = None,
    ) -> Subscription:
        """Create an (inactive) subscription; raises RpcError on bad input."""
        if not isinstance(kind, str):
            raise invalid_params("invalid subscription name")
        spec = self._kinds.get(kind)
        if spec is None:
            # geth's wording (geth uses code -32601 here; we use -32602)
            raise invalid_params(f'no "{kind}" subscription in eth namespace')
        if max_per_sink is not None:
            owned = sum(1 for s in self._by_id.values() if s.sink is sink)
            if owned >= max_per_sink:
                raise limit_exceeded(f"too many subscriptions on this connection (max {max_per_sink})")
        try:
            flt = spec.parse_params(*params)
        except RpcError:
            raise
        except TypeError as exc:
            raise invalid_params(f"invalid {kind} subscription params: {exc}") from None
        except ValueError as exc:
            raise invalid_params(str(exc) or f"invalid {kind} subscription params") from None
        sub = Subscription(id=new_subscription_id(), kind=kind, filter=flt, sink=sink)
        self._by_id[sub.id] = sub
        self._by_kind[kind][sub.id] = sub
        return sub

    def activate(self, sub: Subscription) -> None:
        """Start live delivery, after flushing notifications buffered since creation."""
        if sub.active or sub.id not in self._by_id:
            return
        sub.active = True
        pending, sub.pending = sub.pending, []
        for msg in pending:
            if not sub.sink.deliver(msg):
                break

    def unsubscribe(self, subscription_id: Any, sink: SubscriptionSink | None = None) -> bool:
        """Remove a subscription; with ``sink``, only if owned by it. True if removed."""
        if not isinstance(subscription_id, str):
            return False
        sub = self._by_id.get(subscription_id)
        if sub is None or (sink is not None and sub.sink is not sink):
            return False
        self._remove(sub)
        return True

    def drop_sink(self, sink: SubscriptionSink) -> int:
        """Remove every subscription of ``sink`` (connection closed)."""
        subs = [s for s in self._by_id.values() if s.sink is sink]
        for sub in subs:
            self._remove(sub)
        return len(subs)

    def _remove(self, sub: Subscription) -> None:
        self._by_id.pop(sub.id, None)
        self._by_kind.get(sub.kind, {}).pop(sub.id, None)
        sub.active = False
        sub.pending.clear()


__all__ = [
    "SubscriptionHub",
    "SubscriptionKind",
    "Subscription",
    "SubscriptionSink",
    "new_subscription_id",
    "notification_json",
]
