"""P2PService: the narrow interface the node uses for networking.

    p2p = P2PService(P2PConfig(data_dir=..., listen_addr=..., bootstrap_peers=(...)))
    p2p.on_transaction(lambda raw, peer: mempool_accepts(raw))   # -> bool | Verdict
    p2p.on_consensus(lambda payload, peer: engine.offer(payload))
    p2p.serve_sync(status_handler, blocks_handler)
    async with trio.open_nursery() as nursery:
        await nursery.start(p2p.run)          # returns once listening and subscribed
        await p2p.publish_transaction(raw)

Everything runs inside the caller's nursery (``run`` never returns until cancelled);
cancelling that nursery closes the host, pubsub and all connections.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import time
from typing import TYPE_CHECKING, Any, Callable

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from p2p import codec
from p2p.codec import Kind
from p2p.config import P2PConfig, parse_bootstrap_addr
from p2p.gossip import (
    PeerPenalties,
    Receiver,
    TopicValidator,
    build_pubsub,
    subscribe,
    wait_for_outbound_room,
)
from p2p.identity import load_or_create_key_pair, peer_id_of
from p2p.service_manager import background_service
from p2p.sync import BlocksHandler, StatusHandler, SyncProtocol

if TYPE_CHECKING:
    # trio.TaskStatus is hidden from mypy by trio-typing's stubs: see consensus/engine.py.
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)


class P2PNotRunning(RuntimeError):
    pass


class P2PListenError(OSError):
    """The listen address could not be opened: a node must not run unreachable.

    py-libp2p logs the failure and runs on with no listener; the service refuses that.
    """


def listen_failure_reason(listen: multiaddr.Multiaddr) -> str:
    """Why a TCP listen address cannot be bound, found by trying it (py-libp2p keeps it)."""
    try:
        family, host = (
            (socket.AF_INET6, listen.value_for_protocol("ip6"))
            if "ip6" in [protocol.name for protocol in listen.protocols()]
            else (socket.AF_INET, listen.value_for_protocol("ip4"))
        )
        port = int(listen.value_for_protocol("tcp"))
        with socket.socket(family) as probe:
            probe.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    except Exception:  # noqa: BLE001 - not an ip/tcp address: no probe to make
        pass
    return "py-libp2p opened no listener (its log line above says why)"


class _Notifee(INotifee):
    """Connection events: ban enforcement and wake-ups for waiters."""

    def __init__(self, service: "P2PService") -> None:
        self.service = service

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self.service._on_connected(conn.muxed_conn.peer_id)
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self.service._on_disconnected(conn.muxed_conn.peer_id)
        await trio.lowlevel.checkpoint()

    async def listen(self, network: INetwork, multiaddr: Any) -> None:
        await trio.lowlevel.checkpoint()

    async def listen_close(self, network: INetwork, multiaddr: Any) -> None:
        await trio.lowlevel.checkpoint()


async def _noop() -> None:
    await trio.lowlevel.checkpoint()


def _cache_host_addrs(host: IHost, ttl: float = 2.0) -> None:
    """Memoise ``host.get_addrs()`` for ``ttl`` seconds (per instance).

    GossipSub attaches our signed peer record to every RPC it sends and, to decide
    whether the cached record is still current, rebuilds the address list (multiaddr
    parsing, ~0.3 ms) once per message: a third of the per-message CPU at 5,000 msg/s.
    """
    original = host.get_addrs
    cache: list[Any] = [0.0, None]

    def get_addrs() -> list[multiaddr.Multiaddr]:
        now = time.monotonic()
        if cache[1] is None or now - cache[0] > ttl:
            addrs = original()
            if not addrs:
                return addrs
            cache[0], cache[1] = now, addrs
        return list(cache[1])

    host.get_addrs = get_addrs


# py-libp2p 0.8.1's yamux gives back each read's bytes in a WINDOW_UPDATE frame of its
# own by default (its PY_YAMUX_RELEASE_ON_READ=1), on top of the update its partial-slack
# rule already sends: with votes and transaction batches travelling one at a time, two
# more encrypted frames and socket writes per message received. Off, one is left (go-yamux
# would send none until half the window is read; that rule is py-libp2p's private code).
# The library reads its PY_YAMUX_* settings from the environment on every read; an
# operator's own setting wins.
YAMUX_SETTINGS = {"PY_YAMUX_RELEASE_ON_READ": "0"}


def tune_yamux() -> None:
    for name, value in YAMUX_SETTINGS.items():
        os.environ.setdefault(name, value)


class P2PService:
    def __init__(self, config: P2PConfig) -> None:
        self.config = config
        self.key_pair = load_or_create_key_pair(config.key_path)
        self._peer_id = peer_id_of(self.key_pair)
        self.penalties = PeerPenalties(config.bans, on_ban=self._on_ban)
        self.tx_validator = TopicValidator(
            config.tx_topic, Kind.TX, config.caps, self.penalties, self._peer_id, batch_kind=Kind.TX_BATCH
        )
        self.tx_validator.republish = self._republish
        self.consensus_validator = TopicValidator(
            config.consensus_topic, Kind.CONSENSUS, config.caps, self.penalties, self._peer_id
        )
        self._bootstrap = [parse_bootstrap_addr(a) for a in config.bootstrap_peers]
        self._status_handler: StatusHandler | None = None
        self._blocks_handler: BlocksHandler | None = None
        self.host: IHost | None = None
        self.pubsub: Pubsub | None = None
        self.router: GossipSub | None = None
        self.sync: SyncProtocol | None = None
        self._nursery: trio.Nursery | None = None
        self._connect_events: dict[ID, trio.Event] = {}
        self._disconnect_events: dict[ID, trio.Event] = {}
        self._ignores: Callable[[ID], bool] | None = None
        self._tx_outbox_in, self._tx_outbox = trio.open_memory_channel[bytes](config.gossip.tx_outbox_size)
        # Transactions dropped at flush time because no peer subscribed to the topic.
        self.txs_without_peers = 0

    # ------------------------------------------------------------------ identity

    @property
    def peer_id(self) -> ID:
        return self._peer_id

    @property
    def listen_addrs(self) -> list[str]:
        """Actual listen multiaddrs with ``/p2p/<id>`` (valid once ``run`` has started)."""
        if self.host is None:
            return []
        return [str(a) for a in self.host.get_addrs()]

    # ------------------------------------------------------------------ registration

    def on_transaction(self, callback: Receiver) -> None:
        """``callback(raw_tx, from_peer) -> bool | Verdict``; synchronous, called once per
        distinct gossiped transaction. True/ACCEPT forwards it, IGNORE drops it quietly,
        False/REJECT drops it and counts against the peer. Exceptions count as IGNORE."""
        self.tx_validator.receiver = callback

    def on_consensus(self, callback: Receiver) -> None:
        """Same contract as :meth:`on_transaction`, for consensus messages."""
        self.consensus_validator.receiver = callback

    def set_peer_filter(self, ignores: Callable[[ID], bool] | None) -> None:
        """``ignores(peer) -> True``: drop all gossip that peer forwards (no penalty) and
        leave it out of :meth:`usable_peers`. For test harnesses that cut a network in
        two without touching its connections; the shipped node sets none."""
        self._ignores = ignores
        self.tx_validator.ignores = ignores
        self.consensus_validator.ignores = ignores

    def usable_peers(self) -> list[ID]:
        """Connected peers that are neither banned nor filtered out."""
        ignores = self._ignores
        return [
            p for p in self.connected_peers()
            if not self.penalties.is_banned(p) and (ignores is None or not ignores(p))
        ]

    def serve_sync(self, status_handler: StatusHandler, blocks_handler: BlocksHandler) -> None:
        """``async status_handler() -> bytes``; ``async blocks_handler(from, count) -> list[bytes]``."""
        self._status_handler = status_handler
        self._blocks_handler = blocks_handler
        if self.sync is not None:
            self.sync.status_handler = status_handler
            self.sync.blocks_handler = blocks_handler

    # ------------------------------------------------------------------ gossip

    def _require_running(self) -> Pubsub:
        if self.pubsub is None:
            raise P2PNotRunning("P2PService.run() has not started")
        return self.pubsub

    async def _publish(self, topic: str, kind: Kind, payload: bytes, stats: Any) -> None:
        pubsub = self._require_running()
        data = codec.encode(kind, payload, self.config.caps)  # ValueError if over the cap
        await wait_for_outbound_room(pubsub, self.config.gossip.publish_high_watermark)
        await pubsub.publish(topic, data)
        stats.published += 1

    async def publish_transaction(self, raw: bytes) -> None:
        """Gossip a raw signed transaction the node has already accepted locally.

        It joins the outbox; `_flush_transactions` publishes the outbox in batches. Never
        calls the node's own ``on_transaction`` callback. Waits (back-pressure) while the
        outbox is full, which it is when peers' outbound queues are.
        """
        self._require_running()
        if len(raw) > self.config.caps.max_tx_size:
            raise ValueError(f"transaction of {len(raw)} bytes exceeds cap {self.config.caps.max_tx_size}")
        await self._tx_outbox_in.send(bytes(raw))

    def _republish(self, raws: list[bytes]) -> None:
        """Members this node accepted from a batch it would not forward (see TopicValidator)."""
        for raw in raws:
            try:
                self._tx_outbox_in.send_nowait(raw)
            except trio.WouldBlock:
                return  # outbox full: they are in our pool and will reach peers in a block

    async def _flush_transactions(self) -> None:
        """Publishes the outbox: a batch once it is full or `tx_batch_linger` has passed
        since its first transaction. With no subscribed peer the batch is dropped, as a
        publish would reach nobody (the transactions stay in the pool)."""
        caps, linger = self.config.caps, self.config.gossip.tx_batch_linger
        carry: bytes | None = None  # the transaction that did not fit the last batch
        while True:
            first = carry if carry is not None else await self._tx_outbox.receive()
            carry = None
            batch, body = [first], codec.rlp_item_size(first)
            # Only receiving happens under the timeout (cancel-safe); publishing, outside it.
            with trio.move_on_after(linger):
                while len(batch) < caps.max_txs_per_batch:
                    raw = await self._tx_outbox.receive()
                    item = codec.rlp_item_size(raw)
                    if codec.rlp_list_size(body + item) > caps.max_tx_batch_size:
                        carry = raw
                        break
                    batch.append(raw)
                    body += item
            await self._publish_batch(batch)

    async def _publish_batch(self, batch: list[bytes]) -> None:
        if not self.gossip_peers():
            self.txs_without_peers += len(batch)
            return
        pubsub = self._require_running()
        data = codec.encode_tx_batch(batch, self.config.caps)
        await wait_for_outbound_room(pubsub, self.config.gossip.publish_high_watermark)
        await pubsub.publish(self.config.tx_topic, data)
        self.tx_validator.stats.published += len(batch)

    async def publish_consensus(self, payload: bytes) -> None:
        await self._publish(
            self.config.consensus_topic, Kind.CONSENSUS, payload, self.consensus_validator.stats
        )

    # ------------------------------------------------------------------ sync

    def _require_sync(self) -> SyncProtocol:
        if self.sync is None:
            raise P2PNotRunning("P2PService.run() has not started")
        return self.sync

    async def request_status(self, peer: ID) -> bytes:
        """Raises :class:`p2p.sync.SyncError` (or its ``RemoteError``) on failure."""
        return await self._require_sync().request_status(peer)

    async def request_blocks(self, peer: ID, from_height: int, count: int) -> list[bytes]:
        """Blocks [from_height, from_height+count) as opaque bytes; possibly fewer
        (count is capped at ``Caps.max_blocks_per_request``, and the peer may not
        have them all). Raises :class:`p2p.sync.SyncError` on failure."""
        return await self._require_sync().request_blocks(peer, from_height, count)

    # ------------------------------------------------------------------ peers

    def connected_peers(self) -> list[ID]:
        if self.host is None:
            return []
        return [p for p in self.host.get_connected_peers() if self.is_connected(p)]

    def is_connected(self, peer: ID) -> bool:
        if self.host is None:
            return False
        for conn in self.host.get_network().get_connections(peer):
            muxed = getattr(conn, "muxed_conn", None)
            if not getattr(conn, "is_closed", False) and not getattr(muxed, "is_closed", False):
                return True
        return False

    def gossip_peers(self, topic: str | None = None) -> list[ID]:
        """Peers we have a pubsub stream with that subscribe to ``topic`` (default: tx)."""
        if self.pubsub is None:
            return []
        topic = topic or self.config.tx_topic
        subscribed = self.pubsub.peer_topics.get(topic, set())
        return [p for p in self.pubsub.peers if p in subscribed]

    async def wait_connected(self, peer: ID) -> None:
        """Return once ``peer`` is connected (no timeout: wrap in ``trio.fail_after``)."""
        while not self.is_connected(peer):
            event = self._connect_events.setdefault(peer, trio.Event())
            with trio.move_on_after(1.0):  # safety re-check; normally woken by the event
                await event.wait()

    async def wait_disconnected(self, peer: ID) -> None:
        while self.is_connected(peer):
            event = self._disconnect_events.setdefault(peer, trio.Event())
            with trio.move_on_after(1.0):
                await event.wait()

    async def wait_gossip_ready(self, peer: ID, timeout: float = 10.0) -> None:
        """Wait until ``peer`` has a pubsub stream with us, subscribes to both topics and
        is in our mesh for both (so a publish now reaches it directly)."""
        pubsub = self._require_running()
        with trio.fail_after(timeout):
            await self.wait_connected(peer)
            await pubsub.wait_for_peer(peer, timeout=timeout)
            for topic in (self.config.tx_topic, self.config.consensus_topic):
                await pubsub.wait_for_subscription(peer, topic, timeout=timeout)
                await pubsub.wait_for_mesh(peer, topic, timeout=timeout)

    def ban(self, peer: ID, seconds: float | None = None) -> None:
        """Ban a peer by hand (e.g. the node found it serving a bad block)."""
        self.penalties.ban(peer, seconds)

    # ------------------------------------------------------------------ events

    def _on_connected(self, peer: ID) -> None:
        if self.penalties.is_banned(peer):
            log.info("closing connection from banned peer %s", peer)
            self._spawn(self._disconnect, peer)
            return
        event = self._connect_events.pop(peer, None)
        if event is not None:
            event.set()

    def _on_disconnected(self, peer: ID) -> None:
        if self.is_connected(peer):
            return
        event = self._disconnect_events.pop(peer, None)
        if event is not None:
            event.set()

    def _on_ban(self, peer: ID) -> None:
        if self.pubsub is not None:
            try:
                self.pubsub.add_to_blacklist(peer)
            except Exception:  # noqa: BLE001 - pubsub not running (shutdown)
                log.debug("could not blacklist %s in pubsub", peer, exc_info=True)
        self._spawn(self._disconnect, peer)

    def _spawn(self, fn: Any, *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    async def _disconnect(self, peer: ID) -> None:
        if self.host is None:
            return
        try:
            await self.host.disconnect(peer)
        except Exception:  # noqa: BLE001 - already gone
            log.debug("disconnect %s failed", peer, exc_info=True)

    async def _ban_expiry_loop(self) -> None:
        while True:
            await trio.sleep(1.0)
            for peer in self.penalties.expire():
                log.info("ban of peer %s expired", peer)
                if self.pubsub is not None:
                    self.pubsub.remove_from_blacklist(peer)

    # ------------------------------------------------------------------ bootstrap

    async def _keep_connected(self, addr: multiaddr.Multiaddr, peer_str: str) -> None:
        """Dial a bootstrap peer; re-dial with exponential backoff whenever it is lost."""
        assert self.host is not None
        peer = ID.from_base58(peer_str)
        if peer == self._peer_id:
            return
        network = self.host.get_network()
        delay = self.config.reconnect_initial_delay
        while True:
            if self.penalties.is_banned(peer):
                await trio.sleep(self.config.reconnect_max_delay)
                continue
            if not self.is_connected(peer):
                # py-libp2p's swarm refuses to dial a peer for 60 s after all its
                # addresses failed once ("negative cache"): we do our own backoff.
                unblock = getattr(network, "unblock_peer", None)
                if unblock is not None:
                    unblock(peer)
                try:
                    with trio.fail_after(self.config.dial_timeout):
                        # py-libp2p's host.connect returns at once, without a checkpoint,
                        # while the swarm still lists a connection for the peer, even a
                        # closed one (peer killed): drop those first, or this loop spins
                        # without ever yielding to other tasks.
                        for stale in list(network.get_connections(peer)):
                            with contextlib.suppress(Exception):
                                await stale.close()
                            with contextlib.suppress(Exception):
                                network.remove_conn(stale)
                        await self.host.connect(PeerInfo(peer, [addr]))
                    if not self.is_connected(peer):
                        raise ConnectionError("connection closed right after the dial")
                    log.info("connected to bootstrap peer %s", peer)
                    delay = self.config.reconnect_initial_delay
                except Exception as exc:  # noqa: BLE001 - any dial failure: retry later
                    log.debug("dial %s failed (%s); retry in %.2fs", peer, exc, delay)
                    await trio.sleep(delay * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, self.config.reconnect_max_delay)
                    continue
            await self.wait_disconnected(peer)
            log.info("lost bootstrap peer %s; reconnecting", peer)
            await trio.sleep(self.config.reconnect_initial_delay * random.uniform(0.5, 1.0))

    # ------------------------------------------------------------------ run

    def _build_host(self) -> IHost:
        tune_yamux()
        listen = multiaddr.Multiaddr(self.config.listen_addr)
        noise = NoiseTransport(self.key_pair, noise_privkey=create_x25519_key_pair().private_key)
        host = new_host(
            key_pair=self.key_pair,
            listen_addrs=[listen],
            # Noise only (py-libp2p's default set also offers TLS, SECIO and plaintext).
            sec_opt={NOISE_PROTOCOL_ID: noise},
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            connection_config=ConnectionConfig(dial_timeout=self.config.dial_timeout),
        )
        network: Any = host.get_network()
        # One attempt per dial: the bootstrap loop owns retries and backoff.
        network.retry_config = RetryConfig(max_retries=0)
        # The swarm's auto-connector dials any peer in the peerstore (including peers
        # learned from gossip and banned ones) to reach 100 connections: we only want
        # the configured bootstrap peers and whoever dials us.
        auto = getattr(network, "auto_connector", None)
        if auto is not None:
            auto.maybe_connect = _noop
        network.register_notifee(_Notifee(self))
        return host

    async def _drain(self, subscription: Any, validator: TopicValidator) -> None:
        # Delivery already happened in the validator; keep pubsub's channel empty.
        while True:
            await subscription.get()
            validator.stats.delivered += 1

    async def run(self, *, task_status: TaskStatus[P2PService] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the host in the caller's nursery: ``await nursery.start(service.run)``."""
        host = self._build_host()
        pubsub, router = build_pubsub(host, self.config.gossip)
        pubsub.on_bad_input = self.penalties.record
        pubsub.set_topic_validator(self.config.tx_topic, self.tx_validator, False)
        pubsub.set_topic_validator(self.config.consensus_topic, self.consensus_validator, False)
        sync = SyncProtocol(host, self.config.sync_protocol, self.config.caps, self.penalties)
        sync.status_handler = self._status_handler
        sync.blocks_handler = self._blocks_handler
        sync.install()
        listen = multiaddr.Multiaddr(self.config.listen_addr)
        try:
            async with host.run(listen_addrs=[listen]):
                if not host.get_addrs():
                    raise P2PListenError(
                        f"cannot listen for p2p on {listen}: {listen_failure_reason(listen)}"
                        " (is another process using it? choose another --p2p-listen address)"
                    )
                _cache_host_addrs(host)
                async with background_service(pubsub), background_service(router):
                    await pubsub.wait_until_ready()
                    self.host, self.pubsub, self.router, self.sync = host, pubsub, router, sync
                    size = self.config.gossip.subscription_channel_size
                    tx_sub = await subscribe(pubsub, self.config.tx_topic, size)
                    cons_sub = await subscribe(pubsub, self.config.consensus_topic, size)
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        nursery.start_soon(self._drain, tx_sub, self.tx_validator)
                        nursery.start_soon(self._drain, cons_sub, self.consensus_validator)
                        nursery.start_soon(self._ban_expiry_loop)
                        nursery.start_soon(self._flush_transactions)
                        for addr, peer_str in self._bootstrap:
                            nursery.start_soon(self._keep_connected, addr, peer_str)
                        log.info(
                            "p2p listening on %s", ", ".join(self.listen_addrs) or "(none)"
                        )
                        task_status.started(self)
                        await trio.sleep_forever()
        finally:
            self._nursery = None
            self.host = self.pubsub = self.router = self.sync = None
