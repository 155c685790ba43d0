"""`laminar load` against a dev node: every submitted transaction is committed, the report
has its fields; bad flags and an unreachable RPC exit 2."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import LAMINAR, REPO_ROOT, free_port_block


def load(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*LAMINAR, "load", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("workload, tps, duration", [("transfers", "25", "3"), ("mixed", "10", "2")])
def test_load_all_committed(node_factory, workload, tps, duration):
    node = node_factory()
    result = load("--rpc", node.url, "--tps", tps, "--duration", duration, "--workload", workload, "--json")
    assert result.returncode == 0, result.stdout + result.stderr + "\nnode:\n" + node.text()[-4000:]
    report = json.loads(result.stdout)
    expected = round(float(tps) * float(duration))
    assert report["submitted"] == expected and report["held_back"] == 0
    assert report["committed"] == expected
    assert report["rejected"] == report["not_committed"] == report["reverted"] == 0
    for key in ("p50", "p90", "p99", "max"):
        assert report["latency_ms"][key] is not None and report["latency_ms"][key] > 0
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p90"] <= report["latency_ms"]["p99"]
    assert report["blocks"]["count"] >= 2
    assert report["sustained_tps"]["wall_clock"] > 0
    if workload == "mixed":
        assert report["token"] and report["setup_transactions"] == 10  # deploy + 9 token grants


@pytest.mark.slow
def test_load_holds_back_instead_of_leaving_nonce_gaps(node_factory):
    """One sender, 90 transactions in 3 s, a block at most every 5 s: the node cannot keep
    up, so past its window the sender is held back; nothing is refused and everything
    that was sent is committed (no nonce gap strands the rest)."""
    node = node_factory(block_time="5.0")
    result = load("--rpc", node.url, "--tps", "30", "--duration", "3", "--accounts", "1",
                  "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["held_back"] > 0
    assert report["submitted"] + report["held_back"] == 90
    assert report["rejected"] == report["not_committed"] == 0
    assert report["committed"] == report["submitted"]


@pytest.mark.slow
def test_presigned_load_funds_senders_and_commits_everything(node_factory):
    """--presign: fresh senders funded from the dev accounts, 600 transfers signed up
    front and sent in batches of 50; every one committed, from the funded senders, and
    the report's rates and percentiles come from what the chain shows."""
    node = node_factory()
    result = load("--rpc", node.url, "--presign", "--count", "600", "--accounts", "30", "--batch", "50",
                  "--json")
    assert result.returncode == 0, result.stdout + result.stderr + "\nnode:\n" + node.text()[-4000:]
    report = json.loads(result.stdout)
    assert report["mode"] == "presign"
    assert report["senders"] == report["senders_funded"] == 30
    assert report["submitted"] == report["admitted"] == report["committed"] == 600
    assert report["refused"] == report["not_committed"] == 0
    assert report["admitted_per_s"] > 0 and report["committed_per_s"] > 0
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    assert report["latency_blocks"]["p50"] >= 1
    # the poller timed its eth_blockNumber calls while the load ran
    head = report["block_number_ms"]
    assert head["calls"] >= 1 and head["failed"] == 0
    assert 0 < head["p50"] <= head["p99"] <= head["max"]
    blocks = report["blocks"]
    assert blocks["count"] >= 1 and 0 < blocks["mean_fill"] <= blocks["max_fill"] <= 1
    # the chain agrees: 600 transfers of 1 wei, 20 from each sender, all in those blocks
    from web3 import Web3
    w3 = Web3(Web3.HTTPProvider(node.url))
    mined = sum(
        len(w3.eth.get_block(n)["transactions"]) for n in range(blocks["first"], blocks["last"] + 1)
    )
    assert mined >= 600
    # a second run reuses the now-funded senders (same seed): nothing to fund; with
    # --node-pid it reports the node's CPU (node process and its workers) per transaction
    again = load("--rpc", node.url, "--presign", "--count", "60", "--accounts", "30",
                 "--node-pid", str(node.process.pid), "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    second = json.loads(again.stdout)
    assert second["senders_funded"] == 0 and second["committed"] == 60
    cpu = second["node_cpu"]
    assert cpu["cpu_seconds"] > 0 and cpu["cpu_seconds_by_node"] == {str(node.process.pid): cpu["cpu_seconds"]}
    assert cpu["cpu_us_per_committed_tx"] == pytest.approx(cpu["cpu_seconds"] / 60 * 1e6, rel=0.01)
    assert cpu["cpu_seconds_node_processes"] > 0 and cpu["cpu_seconds_workers"] >= 0
    parts = cpu["cpu_seconds_node_processes"] + cpu["cpu_seconds_workers"]
    assert parts == pytest.approx(cpu["cpu_seconds"], abs=0.002)


def test_load_bad_flags_exit_2():
    for args, needle in (
        (["--tps", "0", "--duration", "1"], "--tps"),
        (["--tps", "5", "--duration", "-1"], "--duration"),
        (["--tps", "5", "--duration", "1", "--accounts", "11"], "--accounts"),
        (["--tps", "5", "--duration", "1", "--workload", "nft"], "--workload"),
        (["--tps", "fast", "--duration", "1"], "--tps"),
        (["--duration", "1"], "--tps"),
        (["--tps", "5", "--duration", "1", "--rpc", "127.0.0.1:8545"], "--rpc"),
        (["--presign"], "--count"),
        (["--presign", "--count", "10", "--duration", "1"], "--duration"),
        (["--presign", "--count", "10", "--batch", "0"], "--batch"),
        (["--presign", "--count", "10", "--tps", "-1"], "--tps"),
        (["--presign", "--count", "10", "--workload", "erc20"], "--workload"),
        (["--presign", "--count", "10", "--rpc", "http://127.0.0.1:1,127.0.0.1:2"], "--rpc"),
        (["--presign", "--count", "10", "--node-pid", "one"], "--node-pid"),
        (["--presign", "--count", "10", "--py-spy", "out.raw"], "--py-spy"),
    ):
        result = load(*args, timeout=120)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert needle in result.stderr, (args, result.stderr)


def test_load_unreachable_rpc_exit_2():
    port = free_port_block(1)
    result = load("--rpc", f"http://127.0.0.1:{port}", "--tps", "5", "--duration", "1", timeout=120)
    assert result.returncode == 2
    assert "cannot reach a JSON-RPC node" in result.stderr and str(port) in result.stderr
