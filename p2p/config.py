"""P2P configuration: one dataclass, plain values, validated in ``__post_init__``.

Everything the network layer can be tuned with lives here; the node builds a
:class:`P2PConfig` from its own configuration and hands it to
:class:`p2p.service.P2PService`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import multiaddr
from multiaddr.exceptions import ProtocolLookupError

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class GossipTuning:
    """GossipSub knobs (see docs/p2p.md for where each one lives in py-libp2p 0.8.1)."""

    # Mesh degree (D, D_low, D_high). Small networks: every peer ends up in the mesh.
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    heartbeat_interval: int = 1  # seconds; py-libp2p default is 120 (!)
    heartbeat_initial_delay: float = 0.1
    gossip_window: int = 3
    gossip_history: int = 5
    seen_ttl: int = 120  # seconds a message id stays in the de-dup cache
    # py-libp2p's per-topic, per-forwarding-peer rate limit (default 10 msg/s, and it
    # also applies to our own publishes). None disables the check entirely.
    max_messages_per_topic_per_second: float | None = None
    # Size of pubsub's per-topic subscription channel (default 32, overflow = silent drop).
    subscription_channel_size: int = 65_536
    # Per-peer outbound RPC queue (default 32, overflow = silent drop).
    outbound_queue_size: int = 65_536
    # ``publish_*`` waits while any peer's outbound queue holds more than this many RPCs
    # (back-pressure instead of drops). Must be below ``outbound_queue_size``.
    publish_high_watermark: int = 16_384
    # Validation-result cache (py-libp2p: validation_cache_size, default 1000).
    validation_cache_size: int = 65_536
    # Transactions to gossip wait up to this long (seconds) for others to share their
    # message: one publish, signature and validation per batch instead of per transaction.
    tx_batch_linger: float = 0.02
    # Transactions accepted for gossip but not yet published; publish_transaction waits
    # (back-pressure) when it is full.
    tx_outbox_size: int = 8_192

    def __post_init__(self) -> None:
        if not (0 < self.degree_low <= self.degree <= self.degree_high):
            raise ValueError("gossip degrees must satisfy 0 < low <= degree <= high")
        if self.heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be > 0")
        if self.subscription_channel_size <= 0 or self.outbound_queue_size <= 0:
            raise ValueError("channel and queue sizes must be > 0")
        if not (0 < self.publish_high_watermark < self.outbound_queue_size):
            raise ValueError("publish_high_watermark must be in (0, outbound_queue_size)")
        if self.tx_batch_linger < 0 or self.tx_outbox_size <= 0:
            raise ValueError("tx_batch_linger must be >= 0 and tx_outbox_size > 0")


@dataclass(frozen=True)
class Caps:
    """Size and count limits enforced on everything read from the network."""

    max_tx_size: int = 128 * KIB  # geth's txMaxSize
    # One gossip message carries up to this many transactions (Kind.TX_BATCH), within
    # py-libp2p's 1 MiB RPC frame once the pubsub envelope is around it.
    max_txs_per_batch: int = 256
    max_tx_batch_size: int = 960 * KIB
    max_consensus_size: int = 1 * MIB
    max_status_size: int = 4 * KIB
    max_block_size: int = 4 * MIB  # one block + certificate, opaque bytes
    max_blocks_per_request: int = 64
    max_blocks_response_size: int = 16 * MIB  # whole BLOCKS response frame
    sync_request_timeout: float = 10.0
    max_concurrent_sync_inbound: int = 32

    def __post_init__(self) -> None:
        for name in (
            "max_tx_size",
            "max_txs_per_batch",
            "max_tx_batch_size",
            "max_consensus_size",
            "max_status_size",
            "max_block_size",
            "max_blocks_per_request",
            "max_blocks_response_size",
            "max_concurrent_sync_inbound",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.sync_request_timeout <= 0:
            raise ValueError("sync_request_timeout must be > 0")


@dataclass(frozen=True)
class BanPolicy:
    """Per-peer invalid-message accounting.

    Every invalid message (undecodable envelope, wrong version, oversized, wrong kind on
    a topic, a receiver callback saying "invalid", a malformed sync request) adds 1 to the
    peer's score; the score decays exponentially with ``decay_seconds`` time constant. At
    ``threshold`` the peer is disconnected and banned for ``ban_seconds`` (its inbound
    connections are closed at once and we do not dial it).
    """

    threshold: float = 20.0
    decay_seconds: float = 60.0
    ban_seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.threshold <= 0 or self.decay_seconds <= 0 or self.ban_seconds < 0:
            raise ValueError("ban policy values must be positive")


@dataclass(frozen=True)
class P2PConfig:
    data_dir: Path
    listen_addr: str = "/ip4/127.0.0.1/tcp/30303"  # tcp/0 = pick a free port
    # Multiaddrs with a /p2p/<peer id> suffix: dialled at start and re-dialled on loss.
    bootstrap_peers: tuple[str, ...] = ()
    # Topic names and the sync protocol id embed this, so two networks never mix.
    network_name: str = "laminar"
    key_file_name: str = "p2p_key"
    gossip: GossipTuning = field(default_factory=GossipTuning)
    caps: Caps = field(default_factory=Caps)
    bans: BanPolicy = field(default_factory=BanPolicy)
    # Bootstrap reconnect backoff: initial, doubling, capped; reset on success.
    reconnect_initial_delay: float = 0.25
    reconnect_max_delay: float = 30.0
    dial_timeout: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "bootstrap_peers", tuple(self.bootstrap_peers))
        try:
            listen = multiaddr.Multiaddr(self.listen_addr)
            listen.value_for_protocol("tcp")
        except Exception as exc:  # noqa: BLE001 - any parse failure is a config error
            raise ValueError(f"invalid listen multiaddr {self.listen_addr!r}: {exc}") from exc
        for addr in self.bootstrap_peers:
            parse_bootstrap_addr(addr)
        if not self.network_name or "/" in self.network_name:
            raise ValueError("network_name must be non-empty and contain no '/'")
        if not (0 < self.reconnect_initial_delay <= self.reconnect_max_delay):
            raise ValueError("reconnect delays must satisfy 0 < initial <= max")
        if self.dial_timeout <= 0:
            raise ValueError("dial_timeout must be > 0")

    @property
    def key_path(self) -> Path:
        return self.data_dir / self.key_file_name

    @property
    def tx_topic(self) -> str:
        return f"/{self.network_name}/tx/2"  # 2: batches of transactions (Kind.TX_BATCH)

    @property
    def consensus_topic(self) -> str:
        return f"/{self.network_name}/consensus/1"

    @property
    def sync_protocol(self) -> str:
        # The issue names it /laminar/sync/1; other network names get their own id.
        return f"/{self.network_name}/sync/1"


def parse_bootstrap_addr(addr: str) -> tuple[multiaddr.Multiaddr, str]:
    """Split ``/ip4/../tcp/../p2p/<id>`` into (transport multiaddr, peer id string)."""
    try:
        ma = multiaddr.Multiaddr(addr)
        peer_id = ma.value_for_protocol("p2p")
    except ProtocolLookupError as exc:
        raise ValueError(f"bootstrap address {addr!r} has no /p2p/<peer id>") from exc
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"invalid bootstrap multiaddr {addr!r}: {exc}") from exc
    if not peer_id:
        raise ValueError(f"bootstrap address {addr!r} has no /p2p/<peer id>")
    transport = ma.decapsulate(multiaddr.Multiaddr(f"/p2p/{peer_id}"))
    return transport, str(peer_id)
