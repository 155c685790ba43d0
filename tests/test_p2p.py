"""p2p/: real py-libp2p hosts on 127.0.0.1 inside one trio test process."""

from __future__ import annotations

import random
import stat
import struct
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pytest
import rlp
import trio
from conftest import free_port_block
from libp2p.pubsub import pubsub as libp2p_pubsub_module
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.stream_muxer.yamux.yamux import (
    HEADER_SIZE,
    TYPE_DATA,
    TYPE_WINDOW_UPDATE,
    YAMUX_HEADER_FORMAT,
    Yamux,
)
from libp2p.tools.anyio_service.trio_manager import TrioManager
from libp2p.utils.varint import encode_uvarint, encode_varint_prefixed

from p2p import codec
from p2p.codec import DecodeError, ErrorCode, Kind
from p2p.config import BanPolicy, Caps, P2PConfig
from p2p.gossip import PeerPenalties, Verdict
from p2p.identity import IdentityError, load_or_create_key_pair, peer_id_of
from p2p.service import P2PService
from p2p.service_manager import IndexedTrioManager
from p2p.sync import RemoteError

pytestmark = pytest.mark.timeout(120)

LOCAL = "/ip4/127.0.0.1/tcp/0"


class Node:
    """A P2PService running in its own cancel scope, so a test can stop and restart it."""

    def __init__(self, config: P2PConfig) -> None:
        self.config = config
        self.svc = P2PService(config)
        self.scope = trio.CancelScope()
        self.stopped = trio.Event()
        self.txs: list[tuple[bytes, object]] = []
        self.cons: list[tuple[bytes, object]] = []
        self.tx_waiters: list[tuple[int, trio.Event]] = []
        self.cons_waiters: list[tuple[int, trio.Event]] = []
        self.tx_verdict = lambda raw: True
        self.svc.on_transaction(self._on_tx)
        self.svc.on_consensus(self._on_cons)

    def _on_tx(self, raw: bytes, peer: object) -> bool | Verdict:
        verdict = self.tx_verdict(raw)
        if verdict is True or verdict is Verdict.ACCEPT:
            self.txs.append((raw, peer))
            _wake(self.tx_waiters, len(self.txs))
        return verdict

    def _on_cons(self, payload: bytes, peer: object) -> bool:
        self.cons.append((payload, peer))
        _wake(self.cons_waiters, len(self.cons))
        return True

    async def wait_txs(self, n: int) -> None:
        if len(self.txs) < n:
            ev = trio.Event()
            self.tx_waiters.append((n, ev))
            await ev.wait()

    async def wait_cons(self, n: int) -> None:
        if len(self.cons) < n:
            ev = trio.Event()
            self.cons_waiters.append((n, ev))
            await ev.wait()

    async def _runner(self, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with self.scope:
                await self.svc.run(task_status=task_status)
        finally:
            self.stopped.set()

    async def stop(self) -> None:
        self.scope.cancel()
        await self.stopped.wait()

    @property
    def addr(self) -> str:
        return self.svc.listen_addrs[0]


def _wake(waiters: list[tuple[int, trio.Event]], count: int) -> None:
    for n, ev in list(waiters):
        if count >= n:
            ev.set()
            waiters.remove((n, ev))


def cfg(tmp_path: Path, name: str, **kw: object) -> P2PConfig:
    kw.setdefault("listen_addr", LOCAL)
    kw.setdefault("reconnect_max_delay", 1.0)
    return P2PConfig(data_dir=tmp_path / name, **kw)  # type: ignore[arg-type]


async def start(nursery: trio.Nursery, config: P2PConfig) -> Node:
    node = Node(config)
    await nursery.start(node._runner)
    return node


async def victim_bad_honest(
    nursery: trio.Nursery, tmp_path: Path, **victim_config: object
) -> tuple[Node, Node, Node]:
    """A victim host and two peers that have it as bootstrap peer (a misbehaving one and an
    honest one), returned once both are in the victim's gossip mesh and it in theirs."""
    victim = await start(nursery, cfg(tmp_path, "victim", **victim_config))
    bad = await start(nursery, cfg(tmp_path, "bad", bootstrap_peers=(victim.addr,)))
    honest = await start(nursery, cfg(tmp_path, "honest", bootstrap_peers=(victim.addr,)))
    for peer in (bad, honest):
        await peer.svc.wait_gossip_ready(victim.svc.peer_id)
        await victim.svc.wait_gossip_ready(peer.svc.peer_id)
    assert victim.svc.host is not None and bad.svc.host is not None
    return victim, bad, honest


async def pair(nursery: trio.Nursery, tmp_path: Path) -> tuple[Node, Node]:
    """Host a, which dials host b; returned once each is in the other's gossip mesh."""
    b = await start(nursery, cfg(tmp_path, "b"))
    a = await start(nursery, cfg(tmp_path, "a", bootstrap_peers=(b.addr,)))
    await a.svc.wait_gossip_ready(b.svc.peer_id)
    await b.svc.wait_gossip_ready(a.svc.peer_id)
    return a, b


async def star(nursery: trio.Nursery, tmp_path: Path, leaves: int = 3) -> list[Node]:
    """Hub + leaves that have the hub as bootstrap peer; returns once the mesh is formed."""
    hub = await start(nursery, cfg(tmp_path, "hub"))
    nodes = [hub]
    for i in range(leaves):
        nodes.append(await start(nursery, cfg(tmp_path, f"leaf{i}", bootstrap_peers=(hub.addr,))))
    for leaf in nodes[1:]:
        await hub.svc.wait_gossip_ready(leaf.svc.peer_id)
        await leaf.svc.wait_gossip_ready(hub.svc.peer_id)
    return nodes


# ---------------------------------------------------------------------------- identity


def test_identity_persists_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "p2p_key"
    first = load_or_create_key_pair(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["p2p_key"]  # no temp file left
    again = load_or_create_key_pair(path)
    assert peer_id_of(first) == peer_id_of(again)
    path.write_bytes(b"garbage")
    with pytest.raises(IdentityError):
        load_or_create_key_pair(path)


async def test_identity_same_peer_id_across_restarts(tmp_path: Path) -> None:
    config = cfg(tmp_path, "n")
    async with trio.open_nursery() as nursery:
        node = await start(nursery, config)
        first_id, first_addr = node.svc.peer_id, node.addr
        await node.stop()
        node = await start(nursery, config)
        assert node.svc.peer_id == first_id
        assert node.addr.endswith(f"/p2p/{first_id}")
        assert first_addr.endswith(f"/p2p/{first_id}")
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------------- codec


def test_codec_roundtrip_and_strictness() -> None:
    caps = Caps(max_tx_size=100)
    data = codec.encode(Kind.TX, b"\x02abc", caps)
    env = codec.decode(data, caps, expected=(Kind.TX,))
    assert (env.version, env.kind, env.payload) == (1, Kind.TX, b"\x02abc")
    with pytest.raises(ValueError):
        codec.encode(Kind.TX, b"x" * 101, caps)

    def reason(raw: bytes, expected=(Kind.TX,)) -> str:
        with pytest.raises(DecodeError) as info:
            codec.decode(raw, caps, expected=expected)
        return info.value.reason

    assert reason(rlp.encode([2, 1, b"abc"])) == "bad_version"
    assert reason(rlp.encode([1, 99, b"abc"])) == "bad_kind"
    assert reason(rlp.encode([1, 2, b"abc"])) == "unexpected_kind"
    assert reason(rlp.encode([1, 1, b"x" * 101])) == "oversized"
    assert reason(b"\xff" * 10_000) == "oversized"  # checked before decoding
    assert reason(b"\xc3\x01\x01") == "undecodable"
    assert reason(rlp.encode([1, 1])) == "malformed"
    assert reason(rlp.encode([1, 1, [b"a"]])) == "malformed"
    assert reason(b"\xc4\x01\x01\x81\x01") == "undecodable"  # non-canonical RLP
    assert reason(rlp.encode([b"\x00\x01", 1, b"a"])) == "malformed"  # non-minimal int
    # sync payloads
    assert codec.decode_blocks_request(rlp.encode([5, 3])) == (5, 3)
    with pytest.raises(DecodeError):
        codec.decode_blocks_request(rlp.encode([5]))
    with pytest.raises(DecodeError):
        codec.decode_blocks_response(rlp.encode([b"a", b"b"]), Caps(), requested=1)


def test_penalties_decay_and_ban() -> None:
    now = [0.0]
    banned: list[object] = []
    p = PeerPenalties(
        BanPolicy(threshold=3, decay_seconds=10, ban_seconds=5), banned.append, lambda: now[0]
    )
    assert not p.record("peer", "x") and not p.record("peer", "x")
    now[0] += 100  # decayed away
    assert not p.record("peer", "x") and not p.record("peer", "x")
    assert p.record("peer", "x") and banned == ["peer"] and p.is_banned("peer")
    now[0] += 6
    assert p.expire() == ["peer"] and not p.is_banned("peer")


def test_tx_batch_codec_is_strict() -> None:
    caps = Caps(max_tx_size=100, max_txs_per_batch=3)
    txs = [b"\x02a", b"\x02" + b"b" * 99, b"c"]
    env = codec.decode(codec.encode_tx_batch(txs, caps), caps, expected=(Kind.TX, Kind.TX_BATCH))
    assert env.kind == Kind.TX_BATCH and codec.decode_tx_batch(env.payload, caps) == txs
    with pytest.raises(ValueError):
        codec.encode_tx_batch([], caps)
    with pytest.raises(ValueError):
        codec.encode_tx_batch(txs + [b"d"], caps)

    def reason(payload: bytes) -> str:
        with pytest.raises(DecodeError) as info:
            codec.decode_tx_batch(payload, caps)
        return info.value.reason

    assert reason(rlp.encode([])) == "malformed"
    assert reason(rlp.encode(b"not a list")) == "malformed"
    assert reason(rlp.encode([b"a", [b"nested"]])) == "malformed"
    assert reason(rlp.encode([b"a"] * 4)) == "oversized"
    assert reason(rlp.encode([b"x" * 101])) == "oversized"
    assert reason(b"\xc3\x01\x01") == "undecodable"
    # the size helpers bound the real encoding from above
    body = sum(codec.rlp_item_size(t) for t in txs)
    assert len(rlp.encode(txs)) <= codec.rlp_list_size(body)


# ---------------------------------------------------------------------------- gossip


async def test_star_mesh_delivers_both_topics(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nodes = await star(nursery, tmp_path)
            hub, leaf0 = nodes[0], nodes[1]
            assert len(hub.svc.connected_peers()) == 3
            await leaf0.svc.publish_transaction(b"\x02tx-from-leaf0")
            await leaf0.svc.publish_consensus(b"vote-from-leaf0")
            await hub.svc.publish_consensus(b"vote-from-hub")
            for node in nodes:
                if node is not leaf0:
                    await node.wait_txs(1)
                    await node.wait_cons(1 if node is hub else 2)
            assert leaf0.txs == [] and [c for c, _ in leaf0.cons] == [b"vote-from-hub"]
            for node in nodes[2:]:
                assert node.txs == [(b"\x02tx-from-leaf0", hub.svc.peer_id)]
                assert sorted(c for c, _ in node.cons) == [b"vote-from-hub", b"vote-from-leaf0"]
            assert hub.txs == [(b"\x02tx-from-leaf0", leaf0.svc.peer_id)]
            nursery.cancel_scope.cancel()


async def test_5000_messages_none_lost_no_duplicates(tmp_path: Path) -> None:
    n = 5000
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            nodes = await star(nursery, tmp_path)
            publisher = nodes[1]  # a leaf: the hub must forward to the two other leaves
            payloads = [b"\x02" + i.to_bytes(4, "big") * 16 for i in range(n)]
            t0 = time.monotonic()
            for p in payloads:
                await publisher.svc.publish_transaction(p)
            t_pub = time.monotonic() - t0
            receivers = [nd for nd in nodes if nd is not publisher]
            for nd in receivers:
                await nd.wait_txs(n)
            elapsed = time.monotonic() - t0
            for nd in receivers:
                got = [raw for raw, _ in nd.txs]
                assert len(got) == n and set(got) == set(payloads)
                assert nd.svc.tx_validator.stats.accepted == n
            print(f"\n5000 msgs: published in {t_pub:.2f}s, all delivered to 3 hosts in {elapsed:.2f}s")
            nursery.cancel_scope.cancel()


async def test_pubsub_task_parents_match_py_libp2p_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The indexed parent lookup of p2p.service_manager gives, for every task pubsub and
    the router spawn while peers join and gossip flows, the parent py-libp2p's own walk of
    the task tree gives: tasks spawned by service tasks keep their parents (and their
    ordered cancellation), per-message tasks stay roots."""
    lookups: list[tuple[object, object]] = []
    managers: set[IndexedTrioManager] = set()
    indexed = IndexedTrioManager._find_parent_task

    def both(self: IndexedTrioManager, trio_task: trio.lowlevel.Task) -> object:
        managers.add(self)
        found = indexed(self, trio_task)
        lookups.append((found, TrioManager._find_parent_task(self, trio_task)))
        return found

    monkeypatch.setattr(IndexedTrioManager, "_find_parent_task", both)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nodes = await star(nursery, tmp_path)
            for i in range(200):
                await nodes[1].svc.publish_consensus(b"vote" + i.to_bytes(2, "big"))
            for node in (nodes[0], nodes[2], nodes[3]):
                await node.wait_cons(200)
            nursery.cancel_scope.cancel()
    assert [pair for pair in lookups if pair[0] is not pair[1]] == []
    with_parent = [found for found, _ in lookups if found is not None]
    assert with_parent, "no task was spawned by a service task: the check saw nothing"
    # Each of the 3 receivers spawned a root task per message it was sent.
    assert sum(found is None for found, _ in lookups) >= 3 * 200
    # Stopped services leave no task in the index (it would keep every finished task).
    assert managers and all(m._running_function_tasks == {} for m in managers)


async def test_gossip_rpcs_carry_no_signed_peer_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our RPCs (subscriptions, messages, mesh control) travel without the signed peer
    record py-libp2p attaches to each, so receivers do not check an Ed25519 signature per
    RPC; gossip is delivered all the same."""
    seen: list[bool] = []
    consume = libp2p_pubsub_module.maybe_consume_signed_record

    def recording(rpc: rpc_pb2.RPC, host: object, peer_id: object) -> bool:
        seen.append(rpc.HasField("senderRecord"))
        return consume(rpc, host, peer_id)  # type: ignore[arg-type]

    monkeypatch.setattr(libp2p_pubsub_module, "maybe_consume_signed_record", recording)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nodes = await star(nursery, tmp_path, leaves=2)
            await nodes[1].svc.publish_consensus(b"vote")
            await nodes[2].wait_cons(1)
            nursery.cancel_scope.cancel()
    # Each host received at least a subscription RPC and the hub the vote.
    assert len(seen) >= 4 and not any(seen), seen


async def test_transactions_travel_in_batches(tmp_path: Path) -> None:
    """1,000 transactions published back to back reach the peer in a few messages (one
    signature and validation each), all of them, once each."""
    n = 1000
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            a, b = await pair(nursery, tmp_path)
            payloads = [b"\x02" + i.to_bytes(4, "big") for i in range(n)]
            for p in payloads:
                await a.svc.publish_transaction(p)
            await b.wait_txs(n)
            assert sorted(raw for raw, _ in b.txs) == sorted(payloads)
            assert b.svc.tx_validator.stats.accepted == n
            messages = b.svc.tx_validator.stats.delivered
            assert messages <= n // a.svc.config.caps.max_txs_per_batch * 4, messages
            nursery.cancel_scope.cancel()


async def test_a_message_read_costs_at_most_one_yamux_window_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages sent one at a time (as votes are): the receiver answers each with at
    most one WINDOW_UPDATE frame (`p2p.service.tune_yamux`); py-libp2p's default also
    gives back every read's bytes in a frame of their own, two per message here."""
    frames: dict[int, Counter] = {}
    write_frame = Yamux._write_frame

    async def counting(self: Yamux, data: bytes) -> None:
        frame_type = struct.unpack(YAMUX_HEADER_FORMAT, data[:HEADER_SIZE])[1]
        frames.setdefault(id(self), Counter())[frame_type] += 1
        await write_frame(self, data)

    monkeypatch.setattr(Yamux, "_write_frame", counting)
    n = 300
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            a, b = await pair(nursery, tmp_path)
            assert a.svc.host is not None and b.svc.host is not None
            a_muxer = a.svc.host.get_network().get_connections(b.svc.peer_id)[0].muxed_conn
            b_muxer = b.svc.host.get_network().get_connections(a.svc.peer_id)[0].muxed_conn
            before_a, before_b = Counter(frames.get(id(a_muxer))), Counter(frames.get(id(b_muxer)))
            for i in range(n):
                await a.svc.publish_transaction(b"\x02" + i.to_bytes(4, "big"))
                await b.wait_txs(i + 1)  # one message on the wire at a time
            sent = frames[id(a_muxer)][TYPE_DATA] - before_a[TYPE_DATA]
            window_updates = frames[id(b_muxer)][TYPE_WINDOW_UPDATE] - before_b[TYPE_WINDOW_UPDATE]
            assert sent >= n and len(b.txs) == n
            # about one per message (heartbeats and control messages add a few), not two
            assert window_updates < 1.5 * n, (window_updates, sent)
            nursery.cancel_scope.cancel()


async def test_transactions_without_peers_are_not_published(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            lonely = await start(nursery, cfg(tmp_path, "lonely"))
            await lonely.svc.publish_transaction(b"\x02nobody-listens")
            while lonely.svc.txs_without_peers < 1:
                await trio.sleep(0.01)
            assert lonely.svc.tx_validator.stats.published == 0
            nursery.cancel_scope.cancel()


async def test_rejected_message_is_not_regossiped(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            b = await start(nursery, cfg(tmp_path, "b"))
            a = await start(nursery, cfg(tmp_path, "a", bootstrap_peers=(b.addr,)))
            c = await start(nursery, cfg(tmp_path, "c", bootstrap_peers=(b.addr,)))
            for x, y in ((a, b), (b, a), (b, c), (c, b)):
                await x.svc.wait_gossip_ready(y.svc.peer_id)
            assert c.svc.peer_id not in a.svc.connected_peers()  # a line: A - B - C
            b.tx_verdict = lambda raw: raw != b"\x02bad"
            await a.svc.publish_transaction(b"\x02bad")
            await a.svc.publish_transaction(b"\x02good")
            # B handles both; "good" reaches C over the same B->C stream any "bad" would.
            await c.wait_txs(1)
            assert [raw for raw, _ in c.txs] == [b"\x02good"]
            assert [raw for raw, _ in b.txs] == [b"\x02good"]
            assert b.svc.tx_validator.stats.rejected == 1
            assert b.svc.penalties.invalid_by_peer[a.svc.peer_id] == 1
            assert c.svc.tx_validator.stats.rejected == 0
            nursery.cancel_scope.cancel()


async def test_garbage_is_dropped_counted_and_flooder_banned(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            victim = await start(
                nursery, cfg(tmp_path, "victim", bans=BanPolicy(threshold=8, ban_seconds=60))
            )
            bad = await start(nursery, cfg(tmp_path, "bad", bootstrap_peers=(victim.addr,)))
            await bad.svc.wait_gossip_ready(victim.svc.peer_id)
            await victim.svc.wait_gossip_ready(bad.svc.peer_id)
            topic = bad.svc.config.tx_topic
            garbage = [
                rlp.encode([2, int(Kind.TX), b"\x02v2"]),  # wrong version
                rlp.encode([1, int(Kind.TX), b"x" * (Caps().max_tx_size + 1)]),  # oversized
                b"\xc3\x01\x01",  # undecodable
                rlp.encode([1, int(Kind.CONSENSUS), b"vote"]),  # wrong kind for the topic
            ]
            for g in garbage:
                await bad.svc.pubsub.publish(topic, g)  # bypasses our encoder
            await bad.svc.publish_transaction(b"\x02still-works")
            await victim.wait_txs(1)  # the host kept running and still accepts valid ones
            assert [raw for raw, _ in victim.txs] == [b"\x02still-works"]
            reasons = victim.svc.penalties.invalid_by_reason
            assert reasons["bad_version"] == 1 and reasons["oversized"] == 1
            assert reasons["undecodable"] == 1 and reasons["unexpected_kind"] == 1
            assert victim.svc.tx_validator.stats.malformed == 4
            assert not victim.svc.penalties.is_banned(bad.svc.peer_id)
            # Keep flooding: the victim bans and disconnects the peer.
            for i in range(10):
                await bad.svc.pubsub.publish(topic, b"\xc3junk" + bytes([i]))
            await victim.svc.wait_disconnected(bad.svc.peer_id)
            assert victim.svc.penalties.is_banned(bad.svc.peer_id)
            assert victim.svc.penalties.bans == 1
            assert bad.svc.peer_id not in victim.svc.connected_peers()
            nursery.cancel_scope.cancel()


def _rpc_with_a_key_that_is_not_a_public_key(topic: str) -> bytes:
    msg = rpc_pb2.Message(
        data=b"x", topicIDs=[topic], from_id=b"\x00", seqno=b"\x01", key=b"\xff", signature=b"s"
    )
    return rpc_pb2.RPC(publish=[msg]).SerializeToString()


@pytest.mark.parametrize(
    ("rpc_bytes", "reason"),
    [
        (lambda topic: b"\xff\xff\xff not a protobuf", "malformed_rpc"),
        # Messages are unsigned (p2p.gossip.MESSAGES_SIGNED): a garbage signing key is
        # never parsed, and the message is judged by its payload.
        (_rpc_with_a_key_that_is_not_a_public_key, "malformed"),
    ],
    ids=["not-protobuf", "bad-signing-key"],
)
async def test_gossipsub_input_py_libp2p_cannot_parse_costs_the_sender_not_the_host(
    tmp_path: Path, rpc_bytes: Callable[[str], bytes], reason: str
) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            victim, bad, honest = await victim_bad_honest(nursery, tmp_path)
            # A second gossipsub stream that bypasses the sender's pubsub: raw bytes.
            stream = await bad.svc.host.new_stream(victim.svc.peer_id, [PROTOCOL_ID_V11])
            await stream.write(encode_varint_prefixed(rpc_bytes(victim.config.tx_topic)))
            await victim.svc.penalties.wait_for_reason(reason)
            assert victim.svc.penalties.invalid_by_peer[bad.svc.peer_id] == 1
            # The host kept running: gossip from another peer still arrives.
            await honest.svc.publish_transaction(b"\x02after-garbage")
            await victim.wait_txs(1)
            assert [raw for raw, _ in victim.txs] == [b"\x02after-garbage"]
            nursery.cancel_scope.cancel()


def _gossip_rpc(pubsub: Pubsub, topic: str, data: bytes) -> rpc_pb2.RPC:
    """One publish RPC as ``Pubsub.publish`` makes it (unsigned: MESSAGES_SIGNED)."""
    assert not pubsub.strict_signing
    msg = rpc_pb2.Message(
        data=data, topicIDs=[topic], from_id=pubsub.my_id.to_bytes(), seqno=pubsub._next_seqno()
    )
    return rpc_pb2.RPC(publish=[msg])


async def test_concurrent_writers_keep_rpcs_larger_than_a_yamux_frame_whole(
    tmp_path: Path,
) -> None:
    """py-libp2p writes to one peer stream from its sending loop and from catch-up tasks
    (pending flush, recent-message replay); yamux splits writes into 64 KiB frames."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            receiver = await start(nursery, cfg(tmp_path, "receiver"))
            sender = await start(nursery, cfg(tmp_path, "sender", bootstrap_peers=(receiver.addr,)))
            await sender.svc.wait_gossip_ready(receiver.svc.peer_id)
            await receiver.svc.wait_gossip_ready(sender.svc.peer_id)
            pubsub = sender.svc.pubsub
            assert pubsub is not None
            stream = pubsub.peers[receiver.svc.peer_id]
            txs = [b"\x02" + bytes([i]) * 100_000 for i in range(3)]  # each > one frame
            rpcs = [
                _gossip_rpc(
                    pubsub, sender.config.tx_topic, codec.encode(Kind.TX, tx, sender.config.caps)
                )
                for tx in txs
            ]
            async with trio.open_nursery() as writers:
                for rpc in rpcs:
                    writers.start_soon(pubsub.write_msg, stream, rpc)
            await receiver.wait_txs(len(txs))
            assert sorted(raw for raw, _ in receiver.txs) == txs
            assert receiver.svc.penalties.invalid_by_reason["malformed_rpc"] == 0
            nursery.cancel_scope.cancel()


def _hostile_rpc(rng: random.Random, topics: list[str]) -> rpc_pb2.RPC:
    """A well-formed gossipsub RPC whose fields carry random bytes where py-libp2p parses."""

    def junk() -> bytes:
        return rng.randbytes(rng.choice([0, 1, 2, 8, 32, 40, 100]))

    def topic() -> str:
        return rng.choice([*topics, "", "x" * 300, "\u00e9", junk().hex()])

    rpc = rpc_pb2.RPC()
    part = rng.randrange(7)
    if part == 0:
        rpc.senderRecord = junk()
    if part in (1, 6):
        rpc.subscriptions.add(subscribe=rng.random() < 0.5, topicid=topic())
    if part in (2, 6):
        rpc.publish.add(
            data=junk(), topicIDs=[topic()], from_id=junk(), seqno=junk(), signature=junk(),
            key=junk(),
        )
    if part in (3, 6):
        rpc.control.graft.add(topicID=topic())
        prune = rpc.control.prune.add(topicID=topic(), backoff=rng.choice([0, 1, 2**63]))
        prune.peers.add(peerID=junk(), signedPeerRecord=junk())
    if part in (4, 6):
        rpc.control.ihave.add(topicID=topic(), messageIDs=[junk(), junk()])
        rpc.control.iwant.add(messageIDs=[junk(), junk()])
    if part in (5, 6):
        rpc.control.idontwant.add(messageIDs=[junk(), junk()])
    return rpc


async def test_random_well_formed_rpcs_do_not_take_the_host_down(tmp_path: Path) -> None:
    rng = random.Random(1)
    never_ban = BanPolicy(threshold=10**9, ban_seconds=60)  # keep the fuzzer connected
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            victim, bad, honest = await victim_bad_honest(nursery, tmp_path, bans=never_ban)
            topics = [victim.config.tx_topic, victim.config.consensus_topic]
            for round_number in range(10):
                stream = await bad.svc.host.new_stream(victim.svc.peer_id, [PROTOCOL_ID_V11])
                for _ in range(20):
                    rpc = _hostile_rpc(rng, topics)
                    await stream.write(encode_varint_prefixed(rpc.SerializeToString()))
                await stream.close()
                # Each round ends with a valid transaction from another peer arriving.
                await honest.svc.publish_transaction(b"\x02round-%d" % round_number)
                await victim.wait_txs(round_number + 1)
            # The fuzzer's publishes reached the payload checks and cost the sender.
            assert victim.svc.penalties.invalid_by_peer[bad.svc.peer_id] > 0
            nursery.cancel_scope.cancel()


async def test_random_bytes_on_every_served_protocol_do_not_take_the_host_down(
    tmp_path: Path,
) -> None:
    """identify, identify push, ping, gossipsub and our sync protocol, each given random
    bytes, random frames and absurd length prefixes, then closed or reset."""
    rng = random.Random(2)
    never_ban = BanPolicy(threshold=10**9, ban_seconds=60)  # keep the fuzzer connected
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            victim, bad, honest = await victim_bad_honest(nursery, tmp_path, bans=never_ban)
            protocols = list(victim.svc.host.get_mux().handlers)
            assert victim.svc.config.sync_protocol in protocols
            for round_number in range(6):
                for protocol in protocols:
                    stream = await bad.svc.host.new_stream(victim.svc.peer_id, [protocol])
                    await stream.write(
                        rng.choice([
                            rng.randbytes(rng.randrange(1, 3000)),
                            encode_varint_prefixed(rng.randbytes(rng.randrange(500))),
                            encode_uvarint(rng.choice([0, 1, 2**20, 2**31, 2**62])),
                            encode_varint_prefixed(b"") * 50,
                        ])
                    )
                    await (stream.close() if rng.random() < 0.5 else stream.reset())
                await honest.svc.publish_transaction(b"\x02round-%d" % round_number)
                await victim.wait_txs(round_number + 1)
            nursery.cancel_scope.cancel()


async def test_restarted_bootstrap_peer_is_redialed(tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            port = free_port_block(1)  # the server restarts on it
            server_cfg = cfg(tmp_path, "server", listen_addr=f"/ip4/127.0.0.1/tcp/{port}")
            server = await start(nursery, server_cfg)
            client = await start(nursery, cfg(tmp_path, "client", bootstrap_peers=(server.addr,)))
            await client.svc.wait_gossip_ready(server.svc.peer_id)
            server_id = server.svc.peer_id

            await server.stop()
            await client.svc.wait_disconnected(server_id)
            server = await start(nursery, server_cfg)  # same key file, same port
            assert server.svc.peer_id == server_id
            await client.svc.wait_connected(server_id)
            await client.svc.wait_gossip_ready(server_id)
            await server.svc.wait_gossip_ready(client.svc.peer_id)
            await client.svc.publish_transaction(b"\x02after-restart")
            await server.wait_txs(1)
            nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------------- sync


async def test_sync_status_blocks_caps_and_handler_errors(tmp_path: Path) -> None:
    chain = [b"block-%d" % h + b"\x00" * h for h in range(200)]

    async def status() -> bytes:
        return b"head:199"

    async def blocks(from_height: int, count: int) -> list[bytes]:
        if from_height == 666:
            raise RuntimeError("handler bug")
        return chain[from_height : from_height + count]

    caps = Caps(max_blocks_per_request=16)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await start(nursery, cfg(tmp_path, "server", caps=caps))
            client = await start(nursery, cfg(tmp_path, "client", bootstrap_peers=(server.addr,)))
            await client.svc.wait_connected(server.svc.peer_id)
            sid = server.svc.peer_id

            with pytest.raises(RemoteError) as info:  # nothing registered yet
                await client.svc.request_status(sid)
            assert info.value.code == ErrorCode.UNAVAILABLE
            server.svc.serve_sync(status, blocks)

            assert await client.svc.request_status(sid) == b"head:199"
            assert await client.svc.request_blocks(sid, 10, 3) == chain[10:13]
            assert await client.svc.request_blocks(sid, 195, 10) == chain[195:]  # fewer exist
            assert await client.svc.request_blocks(sid, 0, 1000) == chain[:16]  # capped
            # A client with a bigger cap asks for more: the server still caps at 16.
            client.svc.sync.caps = replace(client.svc.sync.caps, max_blocks_per_request=100)
            assert await client.svc.request_blocks(sid, 0, 100) == chain[:16]
            with pytest.raises(RemoteError) as info:
                await client.svc.request_blocks(sid, 666, 1)
            assert info.value.code == ErrorCode.INTERNAL
            assert server.svc.sync.handler_errors == 1
            assert await client.svc.request_status(sid) == b"head:199"  # server still up

            # Garbage request on a raw stream: answered with BAD_REQUEST and counted.
            proto = server.svc.config.sync_protocol
            raw = await client.svc.sync._rr.send_request(
                sid, [proto], rlp.encode([9, 9, b""]), client.svc.sync._codec
            )
            env = codec.decode(raw, Caps(), expected=(Kind.ERROR,))
            assert codec.decode_error(env.payload)[0] == ErrorCode.BAD_REQUEST
            assert server.svc.penalties.invalid_by_peer[client.svc.peer_id] == 1
            assert await client.svc.request_blocks(sid, 1, 1) == chain[1:2]
            nursery.cancel_scope.cancel()
