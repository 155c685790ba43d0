"""A network of 4 BFT validators as real `laminar node` processes on loopback, made by
`laminar devnet init`: agreement under transactions, crashes (SIGTERM and SIGKILL),
a Byzantine harness peer sending garbage, an equivocating proposer, and a 2/2 partition.

Each test starts its own network on free ports. Waits poll the nodes' JSON-RPC with
generous deadlines (the machine is small and loaded); the only fixed windows are the
ones that check that something does *not* happen (no commits without a quorum).
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import trio
from conftest import LAMINAR, REPO_ROOT, NodeProcess, free_port_block, start_node_with_config
from eth_account import Account
from eth_utils import to_checksum_address

from consensus.certificate import CommitCertificate
from consensus.messages import Proposal, Step, Vote
from consensus.reactor import encode_frame
from consensus.wal import RECORD_HEADER, WAL, WAL_MAGIC
from node.genesis import dev_accounts

pytestmark = pytest.mark.slow

CHAIN_ID = 31337
GWEI = 10**9
HTTP_TIMEOUT = 20
DEADLINE_S = 120
BLOCK_TIME = "0.5"
ACCOUNTS = [Account.from_key(a.private_key) for a in dev_accounts()]
SINK = to_checksum_address("0x" + "5e" * 20)


# ---- helpers -------------------------------------------------------------------------------


def rpc(url: str, method: str, *params):
    reply = requests.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
        timeout=HTTP_TIMEOUT,
    ).json()
    assert "error" not in reply, (method, params, reply)
    return reply["result"]


def rpc_batch(url: str, calls: list, chunk: int = 100) -> list:
    results = []
    for start in range(0, len(calls), chunk):
        body = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": p}
            for i, (m, p) in enumerate(calls[start:start + chunk])
        ]
        replies = sorted(requests.post(url, json=body, timeout=HTTP_TIMEOUT).json(),
                         key=lambda r: r["id"])
        for reply in replies:
            assert "error" not in reply, reply
        results.extend(r["result"] for r in replies)
    return results


def height(node: NodeProcess) -> int:
    return int(rpc(node.url, "eth_blockNumber"), 16)


def wait_until(predicate, what: str, timeout: float = DEADLINE_S, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def wait_height(nodes, target: int, timeout: float = DEADLINE_S) -> None:
    wait_until(lambda: all(height(n) >= target for n in nodes),
               f"height {target} on {len(nodes)} nodes", timeout)


def devnet_init(out: Path, validators: int = 4, *extra: str) -> dict:
    rpc_base, p2p_base = free_port_block(validators), free_port_block(validators)
    subprocess.run(
        [*LAMINAR, "devnet", "init", "--validators", str(validators), "--out", str(out),
         "--base-rpc-port", str(rpc_base), "--base-p2p-port", str(p2p_base),
         "--block-time", BLOCK_TIME, "--timeout-propose", "2.5", "--timeout-prevote", "1",
         "--timeout-precommit", "1", *extra],
        cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=120,
    )
    return json.loads((out / "devnet.json").read_text())


class Network:
    def __init__(self, out: Path, info: dict, env: dict | None = None) -> None:
        self.out = out
        self.info = info
        self.env = dict(env or {})
        self.nodes: list[NodeProcess | None] = [None] * len(info["nodes"])
        self.outputs: list[list[str]] = [[] for _ in info["nodes"]]  # every run's output

    @property
    def validators(self) -> list[str]:
        return [n["address"] for n in self.info["nodes"]]

    def config(self, i: int) -> Path:
        return self.out / f"node{i}" / "config.toml"

    def start(self, *indices: int, env: dict | None = None,
              harness: tuple[str, ...] = ("--partitions",)) -> None:
        """Start nodes concurrently (each start waits for its RPC banner), through the
        test harness (tests/harness_node.py: partitions on by default)."""
        errors = []

        def one(i: int) -> None:
            try:
                node = start_node_with_config(
                    self.config(i), env={**self.env, **(env or {})}, harness=harness,
                )
                self.nodes[i] = node
                self.outputs[i].append(node.output)  # the live list, appended to later
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in indices]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors

    def running(self) -> list[NodeProcess]:
        return [n for n in self.nodes if n is not None and n.process.poll() is None]

    def stop(self, i: int) -> None:
        self.nodes[i].stop()

    def kill(self, i: int) -> None:
        self.nodes[i].kill()

    def text(self, i: int) -> str:
        return "".join("".join(out) for out in self.outputs[i])

    def shutdown(self) -> None:
        for node in self.nodes:
            if node is not None:
                node.kill()


@pytest.fixture
def network(tmp_path):
    created = []

    def make(*extra: str, env: dict | None = None, start=(0, 1, 2, 3)) -> Network:
        out = tmp_path / f"devnet{len(created)}"
        net = Network(out, devnet_init(out, 4, *extra), env)
        created.append(net)
        if start:
            net.start(*start)
        return net

    yield make
    for net in created:
        net.shutdown()


def assert_agree(nodes, upto: int | None = None, check_certs: bool = True, validators=()):
    """Identical block hashes and state roots at every height up to the lowest head."""
    top = min(height(n) for n in nodes) if upto is None else upto
    calls = [("eth_getBlockByNumber", [hex(h), False]) for h in range(1, top + 1)]
    chains = [rpc_batch(n.url, calls) for n in nodes]
    for h in range(top):
        seen = {(c[h]["hash"], c[h]["stateRoot"]) for c in chains}
        assert len(seen) == 1, f"fork at height {h + 1}: {seen}"
    if check_certs and top:
        commits = rpc_batch(nodes[0].url, [("laminar_getCommit", [hex(h)]) for h in range(1, top + 1)])
        for h, (commit, block) in enumerate(zip(commits, chains[0]), start=1):
            assert commit["blockHash"] == block["hash"]
            assert int(commit["height"], 16) == h
            signers = set(commit["signers"])
            assert signers <= set(validators), (h, signers)
            assert len(signers) >= 3, (h, signers)
            cert = CommitCertificate.decode(
                CommitCertificate(h, int(commit["round"], 16), bytes.fromhex(commit["blockHash"][2:]),
                                  tuple(bytes.fromhex(s[2:]) for s in commit["signatures"])).encode()
            )
            cert.verify(CHAIN_ID, tuple(bytes.fromhex(v[2:]) for v in validators),
                        bytes.fromhex(block["hash"][2:]))
    return top


def transfer(account, nonce: int, value: int = 1) -> str:
    return "0x" + bytes(account.sign_transaction({
        "type": 2, "chainId": CHAIN_ID, "nonce": nonce, "to": SINK, "value": value,
        "gas": 21_000, "maxFeePerGas": 20 * GWEI, "maxPriorityFeePerGas": 1 * GWEI,
    }).raw_transaction).hex()


def assert_stalled(nodes, window: float = 6.0) -> int:
    """No node commits anything for `window` seconds (a quorum is missing)."""
    wait_until(lambda: len({height(n) for n in nodes}) == 1, "stalled nodes to agree on a height", 30)
    before = [height(n) for n in nodes]
    time.sleep(window)  # a window in which nothing may happen: no event to wait for
    after = [height(n) for n in nodes]
    assert before == after, f"committed without a quorum: {before} -> {after}"
    return after[0]


# ---- (a) + (f): transactions, agreement, certificates, 5,000 transactions ----------------


def test_transactions_commit_identically_on_all_validators(network):
    net = network("--max-block-txs", "400")
    nodes = net.running()
    wait_height(nodes, 2)
    state = rpc(nodes[1].url, "laminar_consensusState")
    assert state["mode"] == "validator" and state["validators"] == 4
    assert "BFT" in nodes[0].text()

    per_account, senders = 500, ACCOUNTS  # 10 x 500 = 5,000 transactions
    window = 60  # the mempool takes nonces at most 64 ahead of the account's
    started = time.monotonic()
    sent = [0] * len(senders)
    hashes = []
    deadline = time.monotonic() + 240
    while min(sent) < per_account:
        assert time.monotonic() < deadline, f"sending stalled at {sent}"
        committed = [int(n, 16) for n in rpc_batch(
            nodes[0].url, [("eth_getTransactionCount", [a.address, "latest"]) for a in senders]
        )]
        calls = []
        for i, account in enumerate(senders):
            upto = min(per_account, committed[i] + window)
            calls += [("eth_sendRawTransaction", [transfer(account, n, 1 + n)])
                      for n in range(sent[i], upto)]
            sent[i] = max(sent[i], upto)
        if calls:
            hashes += rpc_batch(nodes[0].url, calls)
        else:
            time.sleep(0.2)  # wait for the next block to free window room
    assert len(set(hashes)) == 5000

    def all_committed() -> bool:
        return all(
            rpc_batch(n.url, [("eth_getTransactionCount", [a.address, "latest"]) for a in senders])
            == [hex(per_account)] * len(senders)
            for n in nodes
        )

    wait_until(all_committed, "5,000 transactions committed on all 4 nodes", 240, 1.0)
    elapsed = time.monotonic() - started
    top = assert_agree(nodes, validators=net.validators)
    blocks = rpc_batch(nodes[2].url, [("eth_getBlockByNumber", [hex(h), False]) for h in range(1, top + 1)])
    with_txs = [b for b in blocks if b["transactions"]]
    assert sum(len(b["transactions"]) for b in blocks) == 5000
    # Blocks with transactions came from several proposers: the transactions sent to node 0
    # reached the other validators' mempools by gossip.
    assert len({b["miner"] for b in with_txs}) >= 2, {b["miner"] for b in with_txs}
    receipt = rpc(nodes[3].url, "eth_getTransactionReceipt", hashes[-1])
    assert receipt["status"] == "0x1"
    assert rpc(nodes[3].url, "laminar_mempoolStatus") == {"pending": "0x0", "queued": "0x0"}
    print(f"5,000 txs committed on 4 nodes in {elapsed:.1f}s over {len(with_txs)} blocks")


# ---- (b) + (c): stop 1, stop 2, restart; SIGKILL mid-round and WAL discipline --------------


def wal_records(path: Path) -> list:
    """Every record in a WAL file, in order (raw parse: duplicates stay visible)."""
    from consensus.messages import decode_message

    data = path.read_bytes()
    assert data[:len(WAL_MAGIC)] == WAL_MAGIC
    offset, out = len(WAL_MAGIC), []
    while offset + RECORD_HEADER.size <= len(data):
        length, _ = RECORD_HEADER.unpack_from(data, offset)
        end = offset + RECORD_HEADER.size + length
        if length == 0 or end > len(data):
            break
        out.append(decode_message(data[offset + RECORD_HEADER.size:end]))
        offset = end
    return out


def test_crashes_stop_the_chain_only_without_a_quorum_and_never_fork(network):
    net = network()
    wait_height(net.running(), 3)

    # One of four down (f = 1): the chain keeps committing.
    net.stop(3)
    live = net.running()
    h = max(height(n) for n in live)
    wait_height(live, h + 3)

    # Two of four down: nothing commits, and the two survivors agree.
    net.stop(2)
    live = net.running()
    stalled = assert_stalled(live)
    assert_agree(live, validators=net.validators)

    # One back: it syncs the blocks it missed and the chain resumes.
    net.start(2)
    live = net.running()
    wait_height(live, stalled + 3)
    assert_agree(live, validators=net.validators)
    net.start(3)
    wait_height(net.running(), height(net.nodes[0]) + 1)

    # SIGKILL validator 1 in the middle of heights, twice, and restart it each time.
    victim = 1
    rng = random.Random(7)
    for _ in range(2):
        target = height(net.nodes[0]) + 1
        wait_height([net.nodes[0]], target)
        time.sleep(rng.uniform(0.05, 0.6))  # a random point inside the next height's rounds
        net.kill(victim)
        wait_height([net.nodes[0]], target + 2)
        net.start(victim)
        wait_height(net.running(), height(net.nodes[0]) + 2)
    wait_height(net.running(), height(net.nodes[0]) + 2)
    assert "synced block" in net.text(victim)
    final = assert_agree(net.running(), validators=net.validators)
    assert final > stalled + 5

    # WAL discipline: one value per (height, round, step) in the victim's log...
    address = net.validators[victim]
    for n in net.running():
        n.stop()
    records = wal_records(net.out / f"node{victim}" / "consensus" / f"wal-{address[2:]}.log")
    assert records
    values: dict = {}
    for m in records:
        step = Step.PROPOSE if isinstance(m, Proposal) else m.kind
        values.setdefault((m.height, m.round, step), set()).add(m.block_hash)
    assert all(len(v) == 1 for v in values.values()), values
    with WAL(net.out / f"node{victim}" / "consensus" / f"wal-{address[2:]}.log") as wal:
        assert len(wal) == len(values)
    # ...and no peer ever saw it sign two values (no equivocation evidence against it).
    for i in range(4):
        assert f"EVIDENCE: validator {victim} " not in net.text(i), net.text(i)[-3000:]
        assert "EVIDENCE" not in net.text(i)


# ---- (d) + (e): a garbage-spewing peer and an equivocating proposer -------------------------


async def test_garbage_and_an_equivocating_proposer_cause_no_fork(network, tmp_path):
    from libp2p.peer.id import ID

    from p2p import P2PConfig, P2PService
    from p2p.sync import SyncError

    byzantine = 3
    net = await trio.to_thread.run_sync(lambda: network(start=()))
    await trio.to_thread.run_sync(lambda: net.start(0, 1, 2))
    await trio.to_thread.run_sync(lambda: net.start(byzantine, harness=("--partitions", "--equivocate")))
    honest = [net.nodes[i] for i in range(3)]
    await trio.to_thread.run_sync(wait_height, net.running(), 2)

    harness = P2PService(P2PConfig(
        data_dir=tmp_path / "harness", listen_addr="/ip4/127.0.0.1/tcp/0",
        bootstrap_peers=tuple(n["p2p"] for n in net.info["nodes"]),
    ))
    async with trio.open_nursery() as nursery:
        await nursery.start(harness.run)
        with trio.fail_after(60):
            for n in net.info["nodes"]:
                await harness.wait_connected(ID.from_base58(n["peerId"]))
        peers = [ID.from_base58(n["peerId"]) for n in net.info["nodes"]]
        await trio.sleep(1.0)  # let the gossip mesh form (heartbeat 1 s)
        start_height = await trio.to_thread.run_sync(height, honest[0])
        rng = random.Random(3)
        key = bytes(range(1, 33))  # not a validator
        h = start_height + 1
        garbage = [
            b"", b"\x00" * 10, rng.randbytes(200), b"\xc0", b"\xc3\x01\x02\x03",
            encode_frame(Vote.sign(key, Step.PREVOTE, CHAIN_ID, h, 0, b"\x11" * 32, 0)),  # forged
            encode_frame(Vote.sign(key, Step.PRECOMMIT, CHAIN_ID, h, 0, b"\x11" * 32, 9)),  # bad index
            encode_frame(Proposal.sign(key, CHAIN_ID, h, 0, b"\x22" * 32, -1, b"\x01\x02")),
            encode_frame(Vote.sign(key, Step.PREVOTE, CHAIN_ID, 2**40, 0, None, 1)),  # far future
            b"\xc4\x02\x00\x80\x80",  # bad frame version
            rng.randbytes(900 * 1024),  # large garbage under the cap
        ]
        for payload in garbage:
            await harness.publish_consensus(payload)
        with pytest.raises(ValueError):
            await harness.publish_consensus(b"\x00" * (2 * 1024 * 1024))  # over the cap
        # Bad sync requests: absurd ranges, unknown heights; and a raw garbage request.
        for start, count in ((0, 64), (2**62, 64), (1, 10**6), (10**9, 1)):
            try:
                await harness.request_blocks(peers[0], start, count)
            except SyncError:
                pass
        try:
            await harness.sync._rr.send_request(
                peers[1], [harness.sync.protocol_id], b"\xff" * 40, harness.sync._codec,
                harness.sync._client_config,
            )
        except Exception:  # noqa: BLE001 - the node answers with an error or closes
            pass
        nursery.cancel_scope.cancel()

    # Honest nodes stay live and agree; the equivocator's double proposals were noticed.
    def evidence_seen() -> bool:
        return any(f"EVIDENCE: validator {byzantine} " in n.text() and "conflicting proposals"
                   in n.text() for n in honest)

    await trio.to_thread.run_sync(wait_height, honest, start_height + 8)
    await trio.to_thread.run_sync(wait_until, evidence_seen, "equivocation evidence", 120)
    # No fork anywhere (up to the lowest head: the equivocator may lag while it syncs), and the
    # honest three kept committing certified blocks.
    await trio.to_thread.run_sync(lambda: assert_agree(net.running(), validators=net.validators))
    top = await trio.to_thread.run_sync(lambda: assert_agree(honest, validators=net.validators))
    assert top >= start_height + 8
    for n in honest:
        assert n.process.poll() is None, n.text()[-3000:]
        assert "Traceback" not in n.text(), n.text()[-5000:]
        assert f"EVIDENCE: validator {(byzantine + 1) % 4} " not in n.text()
    assert "FAULT INJECTION: equivocating" in net.nodes[byzantine].text()
    assert any("rejected consensus message" in n.text() or "dropping" in n.text() for n in honest)
    state = await trio.to_thread.run_sync(rpc, honest[0].url, "laminar_consensusState")
    assert state["mode"] == "validator"


# ---- (g): a 2/2 partition ---------------------------------------------------------------


def test_partition_two_two_stalls_without_fork_and_heals(network):
    net = network()
    nodes = net.running()
    wait_height(nodes, 3)
    ids = [n["peerId"] for n in net.info["nodes"]]
    left, right = [0, 1], [2, 3]
    for i in left:
        assert rpc(nodes[i].url, "laminar_debugBlockPeers", [ids[j] for j in right])
    for i in right:
        assert rpc(nodes[i].url, "laminar_debugBlockPeers", [ids[j] for j in left])

    # Neither side has 3 of 4: each side settles and then nothing commits anywhere.
    wait_until(lambda: all(len({height(nodes[i]) for i in side}) == 1 for side in (left, right)),
               "each side to settle", 30)
    before = [height(n) for n in nodes]
    time.sleep(6.0)  # nothing may happen in this window
    assert [height(n) for n in nodes] == before, before
    assert_agree(nodes, validators=net.validators)  # no fork: the common prefix is identical

    for n in nodes:
        assert rpc(n.url, "laminar_debugBlockPeers", []) == []
    wait_height(nodes, max(before) + 3)
    assert_agree(nodes, validators=net.validators)
