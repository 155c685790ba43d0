"""GossipSub setup, tuning, validators and per-peer invalid-message accounting.

py-libp2p 0.8.1 defaults that silently drop messages at transaction rates, and what
we do about each (details and source locations in docs/p2p.md):

* ``GossipSub(max_messages_per_topic_per_second=10.0)`` — ``GossipSub._check_spam_protection``
  (libp2p/pubsub/gossipsub.py), called from ``GossipSub.publish`` for *every* message,
  including our own publications: the 11th message per second per (forwarder, topic) is
  not forwarded. We pass ``spam_protection_enabled=False`` (or a configured limit).
* ``SUBSCRIPTION_CHANNEL_SIZE = 32`` — module global in libp2p/pubsub/pubsub.py, read by
  ``Pubsub.subscribe``; ``Pubsub.notify_subscriptions`` does ``send_nowait`` and drops on
  ``WouldBlock``. We set the module global right before ``subscribe`` (the read happens
  synchronously, before ``subscribe``'s first checkpoint) and drain the channel.
* ``OutBoundQueueSize = 32`` — libp2p/pubsub/rpc_queue.py, bound as a *default argument*
  of ``RpcQueue.__init__``, so changing the module constant has no effect;
  ``Pubsub._handle_new_peer`` builds ``RpcQueue()`` and ``GossipSub.send_rpc`` drops when
  ``push`` fails. We resize every queue as it is registered (``_SizedQueues``) and add
  back-pressure on our publish path (``wait_for_outbound_room``).
* ``Pubsub.stream_handler`` catches stream, varint, short-read and oversize errors but
  not a frame that is not a protobuf ``RPC`` (``google.protobuf.message.DecodeError``),
  and ``Pubsub.push_msg`` (a task of the pubsub service) lets the signature check raise
  on a message whose ``key`` is not a protobuf public key (with ``MESSAGES_SIGNED`` off,
  as it is, that check never runs): either escapes into a service
  nursery and takes the whole host down. ``BatchingPubsub`` catches both, counts a
  penalty for the peer and drops the stream (py-libp2p then re-opens the peer's pubsub
  stream if it stays connected) or the message.
* Writers to one outbound pubsub stream are not serialised: the per-peer sending loop,
  ``GossipSub.flush_pending_messages`` and ``GossipSub.send_recent_messages`` all call
  ``Pubsub.write_msg``, and yamux takes its write lock per 64 KiB frame, so two RPCs
  larger than a frame interleave and the receiver reads garbage. ``BatchingPubsub``
  holds one lock per stream around ``write_msg``.

Delivery model: the application callback *is* the topic validator. py-libp2p runs a
synchronous validator between its "seen?" check and "mark seen" without a checkpoint,
so each distinct message reaches the callback exactly once, and the callback's verdict
decides whether the message is forwarded. Message ids are content-addressed
(sha256(topic, data)), so the same transaction published by two nodes is one message.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import math
import time
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Union

import trio
from google.protobuf.message import DecodeError as ProtobufDecodeError
from libp2p.abc import IHost, INetStream
from libp2p.exceptions import ValidationError
from libp2p.peer.id import ID
from libp2p.pubsub import pubsub as _pubsub_module
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub, ValidationResult

from p2p import codec
from p2p.config import BanPolicy, Caps, GossipTuning

log = logging.getLogger(__name__)


class Verdict(enum.Enum):
    """What a receiver callback may return (``True``/``False`` also accepted)."""

    ACCEPT = "accept"  # deliver and forward
    IGNORE = "ignore"  # drop, do not forward, do not penalise the sender (e.g. stale)
    REJECT = "reject"  # drop, do not forward, count against the forwarding peer


CallbackResult = Union[bool, Verdict]
# callback(payload, from_peer) -> bool | Verdict. Synchronous on purpose: see module doc.
Receiver = Callable[[bytes, ID], CallbackResult]


# GossipSub messages travel unsigned, as Ethereum's consensus layer does (its gossip
# spec's StrictNoSign): every payload authenticates itself (a transaction by its sender's
# ECDSA signature, a proposal or vote by its validator's), message ids are content
# hashes, and penalties and bans count the forwarding peer, which the transport (Noise)
# authenticates. A libp2p signature per message added an Ed25519 sign per publish and a
# verify per first receipt: 4% of a loaded 4-validator devnet's samples (2026-12-07).
# Every node of a network must agree: a node that signs drops unsigned messages.
MESSAGES_SIGNED = False


def content_message_id(msg: rpc_pb2.Message) -> bytes:
    """Content-addressed id: the same bytes on the same topic are the same message."""
    h = hashlib.sha256()
    for topic in msg.topicIDs:
        h.update(topic.encode())
        h.update(b"\x00")
    h.update(msg.data)
    return h.digest()


# ---------------------------------------------------------------------------
# Invalid-message accounting
# ---------------------------------------------------------------------------


class PeerPenalties:
    """Decaying per-peer invalid-message score, with a ban at a threshold.

    ``record(peer, reason)`` adds 1 to the peer's score (which decays as
    ``exp(-dt / decay_seconds)``); reaching ``threshold`` bans the peer for
    ``ban_seconds`` and calls ``on_ban(peer)`` (the service disconnects it).
    """

    def __init__(
        self,
        policy: BanPolicy,
        on_ban: Callable[[ID], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.on_ban = on_ban
        self._clock = clock
        self._scores: dict[ID, tuple[float, float]] = {}  # peer -> (score, at)
        self._banned_until: dict[ID, float] = {}
        self.invalid_by_reason: Counter[str] = Counter()
        self.invalid_by_peer: Counter[ID] = Counter()
        self.bans: int = 0
        self._reason_waiters: list[tuple[str, int, trio.Event]] = []

    def score(self, peer: ID) -> float:
        entry = self._scores.get(peer)
        if entry is None:
            return 0.0
        value, at = entry
        return value * math.exp(-(self._clock() - at) / self.policy.decay_seconds)

    def record(self, peer: ID, reason: str) -> bool:
        """Count one invalid message from ``peer``. Returns True if this banned it."""
        self.invalid_by_reason[reason] += 1
        self.invalid_by_peer[peer] += 1
        self._wake_reason_waiters()
        if self.is_banned(peer):
            return False
        value = self.score(peer) + 1.0
        self._scores[peer] = (value, self._clock())
        if value < self.policy.threshold:
            return False
        self.ban(peer)
        return True

    async def wait_for_reason(self, reason: str, count: int = 1) -> None:
        """Return once ``count`` invalid messages of ``reason`` have been recorded."""
        if self.invalid_by_reason[reason] >= count:
            return
        event = trio.Event()
        self._reason_waiters.append((reason, count, event))
        await event.wait()

    def _wake_reason_waiters(self) -> None:
        for waiter in list(self._reason_waiters):
            reason, count, event = waiter
            if self.invalid_by_reason[reason] >= count:
                event.set()
                self._reason_waiters.remove(waiter)

    def ban(self, peer: ID, seconds: float | None = None) -> None:
        duration = self.policy.ban_seconds if seconds is None else seconds
        self._banned_until[peer] = self._clock() + duration
        self._scores.pop(peer, None)
        self.bans += 1
        log.warning("banning peer %s for %.0fs (invalid messages)", peer, duration)
        if self.on_ban is not None:
            self.on_ban(peer)

    def is_banned(self, peer: ID) -> bool:
        until = self._banned_until.get(peer)
        if until is None:
            return False
        if self._clock() >= until:
            del self._banned_until[peer]
            return False
        return True

    def banned_peers(self) -> list[ID]:
        return [p for p in list(self._banned_until) if self.is_banned(p)]

    def expire(self) -> list[ID]:
        """Drop expired bans; returns the peers whose ban just ended."""
        now = self._clock()
        ended = [p for p, until in self._banned_until.items() if now >= until]
        for p in ended:
            del self._banned_until[p]
        # Forget scores that decayed to nothing, so the table does not grow forever.
        for p, (value, at) in list(self._scores.items()):
            if value * math.exp(-(now - at) / self.policy.decay_seconds) < 0.01:
                del self._scores[p]
        return ended


# ---------------------------------------------------------------------------
# py-libp2p plumbing
# ---------------------------------------------------------------------------


class _SizedQueues(dict):
    """``Pubsub.peer_queues`` replacement that resizes each queue as it is registered.

    ``Pubsub._handle_new_peer`` does ``queue = RpcQueue()`` (max 32, a default argument)
    then ``self.peer_queues[peer_id] = queue`` before any RPC is pushed to it.
    """

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self.max_size = max_size

    def __setitem__(self, key: Any, queue: Any) -> None:
        inner = getattr(queue, "_queue", None)
        if inner is not None and hasattr(inner, "max_size"):
            inner.max_size = self.max_size
        else:  # pragma: no cover - guards against a py-libp2p upgrade changing internals
            log.error("py-libp2p RpcQueue internals changed; outbound queue stays at 32")
        super().__setitem__(key, queue)


#: Called with (peer, reason) when a peer sent pubsub input we could not handle.
BadInputHandler = Callable[[ID, str], object]


class BatchingPubsub(Pubsub):
    """Pubsub hardened against what py-libp2p 0.8.1 lets through (module docstring),
    whose per-peer sender coalesces queued publish-only RPCs into one frame.

    py-libp2p writes every queued RPC as its own length-prefixed frame (one yamux frame,
    one noise frame, one syscall). Under a burst, everything already sitting in the
    queue that carries only ``publish`` entries is merged (up to ``batch_bytes``) into one
    RPC. RPCs with control or subscription parts are never merged, so their relative
    order is kept.
    """

    batch_bytes: int = 256 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_bad_input: BadInputHandler | None = None
        self._write_locks: weakref.WeakKeyDictionary[INetStream, trio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    async def write_msg(self, stream: INetStream, rpc_msg: rpc_pb2.RPC) -> bool:
        """``Pubsub.write_msg`` with one writer at a time per stream (frames stay whole),
        without the signed peer record py-libp2p attaches to every RPC: the receiver
        parses it and checks its Ed25519 signature once per RPC (twice when the RPC has a
        control part), while identify has already given it the same record once per
        connection, and Laminar uses no peer exchange that would need it."""
        if rpc_msg.HasField("senderRecord"):
            rpc_msg.ClearField("senderRecord")
        lock = self._write_locks.get(stream)
        if lock is None:
            lock = self._write_locks[stream] = trio.Lock()
        async with lock:
            return await super().write_msg(stream, rpc_msg)

    def get_hello_packet(self) -> rpc_pb2.RPC:
        """``Pubsub.get_hello_packet`` without the signed peer record (see ``write_msg``):
        the hello is written to the stream directly, not through ``write_msg``."""
        hello = super().get_hello_packet()
        hello.ClearField("senderRecord")
        return hello

    async def stream_handler(self, stream: INetStream) -> None:
        """Read a peer's pubsub stream; a frame we cannot handle costs the peer, not the host."""
        try:
            await super().stream_handler(stream)
        except Exception as exc:  # noqa: BLE001 - peer input must never take the host down
            peer_id = stream.muxed_conn.peer_id
            self._penalise(peer_id, _peer_input_reason(exc, "malformed_rpc"), exc)
            try:
                await stream.reset()
            except Exception:  # noqa: BLE001 - the connection may already be gone
                log.debug("reset of pubsub stream from %s failed", peer_id, exc_info=True)
            self._handle_dead_peer(peer_id)

    async def validate_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        """``Pubsub.validate_msg`` for synchronous validators (the only kind Laminar sets),
        without formatting the message into the error: py-libp2p 0.8.1 builds
        ``f"Validation failed for msg={msg}"``, the protobuf text of up to 1 MiB of data,
        for every message a validator refuses or ignores (a re-sent proposal, a batch of
        transactions already known): 9% of a loaded validator's CPU. Same caching."""
        validators = self.get_msg_validators(msg)
        if any(v.is_async for v in validators):
            await super().validate_msg(msg_forwarder, msg)
            return
        msg_id = self._msg_id_constructor(msg)
        cached = self.validation_cache.get(msg_id)
        if cached is not None:
            if not cached.is_valid:
                raise ValidationError(f"cached validation failed: {cached.error_message or 'unknown error'}")
            return
        for topic_validator in validators:
            if not topic_validator.validator(msg_forwarder, msg):
                reason = "Synchronous validation failed"
                self.validation_cache.put(
                    msg_id, ValidationResult(is_valid=False, timestamp=time.time(), error_message=reason)
                )
                raise ValidationError(f"{reason} for a message of {len(msg.data)} bytes")
        self.validation_cache.put(msg_id, ValidationResult(is_valid=True, timestamp=time.time()))

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        """``Pubsub.push_msg``, where a message py-libp2p cannot check costs its forwarder."""
        if msg_forwarder == self.my_id:
            await super().push_msg(msg_forwarder, msg)
            return
        try:
            await super().push_msg(msg_forwarder, msg)
        except Exception as exc:  # noqa: BLE001 - peer input must never take the host down
            self._penalise(msg_forwarder, _peer_input_reason(exc, "malformed_message"), exc)

    def _penalise(self, peer_id: ID, reason: str, exc: Exception) -> None:
        if reason == "peer_input_error":  # not a parse error: possibly a py-libp2p bug
            log.warning("pubsub input from %s raised; dropped", peer_id, exc_info=exc)
        else:
            log.info("dropping pubsub input from %s: %s (%s)", peer_id, reason, exc)
        if self.on_bad_input is not None:
            self.on_bad_input(peer_id, reason)

    async def handle_sending_messages(self, peer_id: ID, stream: Any, queue: Any) -> None:
        inner = queue._queue
        pending: Any = None
        try:
            while True:
                rpc = pending if pending is not None else await queue.pop()
                pending = None
                if rpc is None:
                    return
                if _publish_only(rpc):
                    size = rpc.ByteSize()
                    merged = None
                    while size < self.batch_bytes:
                        nxt = inner.pop()
                        if nxt is None:
                            break
                        if not _publish_only(nxt):
                            pending = nxt
                            break
                        if merged is None:
                            merged = rpc_pb2.RPC()
                            merged.CopyFrom(rpc)
                        merged.publish.extend(nxt.publish)
                        size += nxt.ByteSize()
                    if merged is not None:
                        rpc = merged
                ok = await self.write_msg(stream, rpc)
                if not ok:
                    return
        except Exception:
            log.debug("sending loop for %s terminated with error", peer_id)
            self._handle_dead_peer(peer_id)


def _peer_input_reason(exc: Exception, parse_reason: str) -> str:
    """Penalty reason for an error raised while handling what a peer sent."""
    if isinstance(exc, (ProtobufDecodeError, ValueError)):
        return parse_reason
    return "peer_input_error"


def _publish_only(rpc: rpc_pb2.RPC) -> bool:
    return len(rpc.publish) > 0 and not rpc.subscriptions and not rpc.HasField("control")


def build_pubsub(host: IHost, tuning: GossipTuning) -> tuple[BatchingPubsub, GossipSub]:
    """A tuned GossipSub router and its Pubsub, attached to ``host`` (not yet running)."""
    limit = tuning.max_messages_per_topic_per_second
    router = GossipSub(
        # v1.1/v1.2 only: v1.2 adds IDONTWANT; v1.3+ extensions/observers are unused.
        protocols=[PROTOCOL_ID_V11],
        degree=tuning.degree,
        degree_low=tuning.degree_low,
        degree_high=tuning.degree_high,
        gossip_window=tuning.gossip_window,
        gossip_history=tuning.gossip_history,
        heartbeat_initial_delay=tuning.heartbeat_initial_delay,
        heartbeat_interval=tuning.heartbeat_interval,
        spam_protection_enabled=limit is not None,
        max_messages_per_topic_per_second=limit if limit is not None else math.inf,
        # Per-peer ordering/mesh decisions must not depend on loopback "IP diversity".
        eclipse_protection_enabled=False,
        adaptive_gossip_enabled=False,
        max_pending_messages_per_peer=tuning.outbound_queue_size,
    )
    pubsub = BatchingPubsub(
        host,
        router,
        cache_size=tuning.validation_cache_size,
        seen_ttl=tuning.seen_ttl,
        strict_signing=MESSAGES_SIGNED,
        msg_id_constructor=content_message_id,
        validation_cache_size=tuning.validation_cache_size,
    )
    pubsub.peer_queues = _SizedQueues(tuning.outbound_queue_size)
    return pubsub, router


async def subscribe(pubsub: Pubsub, topic: str, channel_size: int) -> Any:
    """``pubsub.subscribe`` with our subscription-channel size.

    ``Pubsub.subscribe`` reads the module global ``SUBSCRIPTION_CHANNEL_SIZE`` when it
    opens the channel, before its first ``await``; the value is restored afterwards.
    """
    previous = _pubsub_module.SUBSCRIPTION_CHANNEL_SIZE
    _pubsub_module.SUBSCRIPTION_CHANNEL_SIZE = channel_size
    try:
        return await pubsub.subscribe(topic)
    finally:
        _pubsub_module.SUBSCRIPTION_CHANNEL_SIZE = previous


def max_outbound_queue_len(pubsub: Pubsub) -> int:
    return max((len(q) for q in pubsub.peer_queues.values()), default=0)


async def wait_for_outbound_room(pubsub: Pubsub, high_watermark: int) -> None:
    """Back-pressure for publishers: wait while some peer's outbound queue is too full.

    RpcQueue exposes no "space available" event, so this polls every 5 ms, and only
    while a queue is above the watermark (never on the normal path).
    """
    while max_outbound_queue_len(pubsub) > high_watermark:
        await trio.sleep(0.005)


# ---------------------------------------------------------------------------
# Topic validators
# ---------------------------------------------------------------------------


@dataclass
class TopicStats:
    accepted: int = 0
    ignored: int = 0
    rejected: int = 0  # by the callback
    malformed: int = 0  # envelope errors
    delivered: int = 0  # drained from the pubsub subscription (sanity counter)
    published: int = 0


class TopicValidator:
    """The pubsub validator of one topic: strict envelope decoding + the app callback.

    On the transaction topic a message is one transaction (Kind.TX) or a batch of them
    (Kind.TX_BATCH); the callback judges each transaction and `stats` count transactions.
    A batch is forwarded when none of its members is invalid. One invalid member marks the
    forwarder and stops the batch; the members this node accepted go to `republish`, so
    honest transactions still travel on under this node's name."""

    def __init__(
        self,
        topic: str,
        kind: codec.Kind,
        caps: Caps,
        penalties: PeerPenalties,
        self_id: ID,
        batch_kind: codec.Kind | None = None,
    ) -> None:
        self.topic = topic
        self.kind = kind
        self.batch_kind = batch_kind
        self.kinds = (kind,) if batch_kind is None else (kind, batch_kind)
        self.caps = caps
        self.penalties = penalties
        self.self_id = self_id
        self.receiver: Receiver | None = None
        # Called with the members of a rejected batch that this node accepted.
        self.republish: Callable[[list[bytes]], None] | None = None
        # peer -> True to drop everything it forwards, without blame (P2PService.peer_filter)
        self.ignores: Callable[[ID], bool] | None = None
        self.stats = TopicStats()

    def __call__(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        if forwarder == self.self_id:
            return True  # our own publication: the node already handled it
        try:
            envelope = codec.decode(msg.data, self.caps, expected=self.kinds)
            if envelope.kind == self.batch_kind:
                items = codec.decode_tx_batch(envelope.payload, self.caps)
            else:
                items = [envelope.payload]
        except codec.DecodeError as exc:
            self.stats.malformed += 1
            log.info("dropping bad %s message from %s: %s", self.topic, forwarder, exc)
            self.penalties.record(forwarder, exc.reason)
            return False
        if self.penalties.is_banned(forwarder):
            return False
        if self.ignores is not None and self.ignores(forwarder):
            self.stats.ignored += len(items)
            return False
        receiver = self.receiver
        if receiver is None:
            # Nobody to judge it yet: don't forward what we cannot vouch for.
            self.stats.ignored += len(items)
            return False
        accepted, rejected = [], 0
        for item in items:
            verdict = self._judge(receiver, item, forwarder)
            if verdict is Verdict.ACCEPT:
                accepted.append(item)
            elif verdict is Verdict.REJECT:
                rejected += 1
        self.stats.accepted += len(accepted)
        self.stats.rejected += rejected
        self.stats.ignored += len(items) - len(accepted) - rejected
        if rejected:
            self.penalties.record(forwarder, "rejected_by_node")
            if accepted and self.republish is not None:
                self.republish(accepted)
            return False
        return bool(accepted)

    def _judge(self, receiver: Receiver, item: bytes, forwarder: ID) -> Verdict:
        try:
            result = receiver(item, forwarder)
        except Exception:  # noqa: BLE001 - a node bug must not kill the pubsub task
            log.exception("%s receiver raised; message dropped", self.topic)
            return Verdict.IGNORE
        if isinstance(result, Verdict):
            return result
        return Verdict.ACCEPT if result else Verdict.REJECT
