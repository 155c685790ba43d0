"""`laminar devnet` (no Docker): the runner starts N validator processes from a devnet
directory (made on the fly), prints their RPC URLs, follows the chain, and on SIGINT stops
every child (and the children's Block-STM workers) cleanly: no orphans (psutil)."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import time

import psutil
import pytest
import requests
from conftest import LAMINAR, REPO_ROOT, free_port_block

pytestmark = pytest.mark.slow

URL_LINE = re.compile(r"node(\d+): JSON-RPC (http://127\.0\.0\.1:(\d+))")
DEADLINE_S = 150


def height(url: str) -> int:
    try:
        reply = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
                              timeout=5).json()
        return int(reply["result"], 16)
    except (requests.RequestException, KeyError, ValueError):
        return -1


def test_runner_starts_four_validators_and_sigint_stops_all(tmp_path):
    rpc_base, p2p_base = free_port_block(4), free_port_block(4)
    runner = subprocess.Popen(
        [*LAMINAR, "devnet", "--dir", str(tmp_path / "devnet"), "--validators", "4",
         "--base-rpc-port", str(rpc_base), "--base-p2p-port", str(p2p_base), "--block-time", "0.5"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(runner.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + DEADLINE_S
        urls: dict[int, str] = {}
        while len(urls) < 4:
            assert runner.poll() is None, "runner exited:\n" + "".join(lines)
            assert time.monotonic() < deadline, "no RPC URLs printed:\n" + "".join(lines)
            for line in list(lines):
                match = URL_LINE.search(line)
                if match:
                    urls[int(match.group(1))] = match.group(2)
            time.sleep(0.2)
        assert [int(urls[i].rsplit(":", 1)[1]) for i in range(4)] == [rpc_base + i for i in range(4)]
        # the chain advances on all four (an idle BFT devnet makes empty blocks)
        while not all(height(urls[i]) >= 3 for i in range(4)):
            assert runner.poll() is None, "runner exited:\n" + "".join(lines)
            assert time.monotonic() < deadline, "chain did not reach height 3:\n" + "".join(lines)
            time.sleep(0.5)
        # the plain (non-terminal) view: a line per block with the nodes' heights
        while not any(line.startswith("block #") for line in lines):
            assert time.monotonic() < deadline, "no block lines:\n" + "".join(lines)
            time.sleep(0.2)
        children = psutil.Process(runner.pid).children(recursive=True)
        nodes = [c for c in children if "tools.cli" in " ".join(c.cmdline()) and "--config" in c.cmdline()]
        assert len(nodes) == 4, [c.cmdline() for c in children]
        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=60) == 0, "".join(lines)
        reader.join(timeout=10)
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"orphans left: {[(p.pid, p.cmdline()) for p in alive]}"
        text = "".join(lines)
        assert "received SIGINT" in text and "all validators stopped" in text
        for i in range(4):
            assert height(urls[i]) == -1
            log = (tmp_path / "devnet" / f"node{i}" / "node.log").read_text()
            assert "received SIGTERM, shutting down" in log  # a clean stop, not SIGKILL
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        for proc in psutil.process_iter(["cmdline"]):  # never leak into other tests
            if str(tmp_path) in " ".join(proc.info["cmdline"] or []):
                proc.kill()


def test_runner_rejects_bad_flags_and_busy_ports(tmp_path):
    bad = subprocess.run([*LAMINAR, "devnet", "--dir", str(tmp_path / "a"), "--validators", "0"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--validators" in bad.stderr
    base = free_port_block(4)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", base + 2))
        busy.listen()
        result = subprocess.run(
            [*LAMINAR, "devnet", "--dir", str(tmp_path / "b"), "--base-port", str(base),
             "--base-p2p-port", str(free_port_block(4))],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"127.0.0.1:{base + 2}" in result.stderr and "in use" in result.stderr
