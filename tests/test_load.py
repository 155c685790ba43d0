"""`laminar load` against a dev node: every submitted transaction is committed, the report
has its fields; bad flags and an unreachable RPC exit 2."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import LAMINAR, REPO_ROOT
from test_bft_network import free_base


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


def test_load_bad_flags_exit_2():
    for args, needle in (
        (["--tps", "0", "--duration", "1"], "--tps"),
        (["--tps", "5", "--duration", "-1"], "--duration"),
        (["--tps", "5", "--duration", "1", "--accounts", "11"], "--accounts"),
        (["--tps", "5", "--duration", "1", "--workload", "nft"], "--workload"),
        (["--tps", "fast", "--duration", "1"], "--tps"),
        (["--duration", "1"], "--tps"),
        (["--tps", "5", "--duration", "1", "--rpc", "127.0.0.1:8545"], "--rpc"),
    ):
        result = load(*args, timeout=120)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert needle in result.stderr, (args, result.stderr)


def test_load_unreachable_rpc_exit_2():
    port = free_base(1)
    result = load("--rpc", f"http://127.0.0.1:{port}", "--tps", "5", "--duration", "1", timeout=120)
    assert result.returncode == 2
    assert "cannot reach a JSON-RPC node" in result.stderr and str(port) in result.stderr
