"""Shared fixtures: real `laminar node` processes on loopback, with their own data dirs."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMINAR = [sys.executable, "-m", "tools.cli"]
# `laminar` with test-only behaviour (Byzantine validators, partitions): tests/harness_node.py
HARNESS = [sys.executable, str(REPO_ROOT / "tests" / "harness_node.py")]
RPC_LINE = re.compile(r"JSON-RPC \(HTTP \+ WebSocket\): http://([\d.]+):(\d+)")
STARTUP_TIMEOUT_S = 60
TEST_BLOCK_TIME_S = "0.2"

DEV_KEYS = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
]


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_TEST_PORT = 10_000
HIGHEST_PORT = 65_535


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux's default if unknown)."""
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32_768, 60_999
    return low, high


def free_port_block(count: int) -> int:
    """A base port with `count` consecutive free loopback ports, outside the ephemeral range.

    A node restarted on its old port must find it free. A port from the ephemeral range
    can meanwhile become the local end of some outgoing connection (a test's HTTP
    request, a peer's dial), and the restart then fails with "address already in use"
    (seen in CI: a validator's RPC port, taken while the validator was down).
    """
    low, high = ephemeral_port_range()
    spans = [(LOWEST_TEST_PORT, low - 1), (high + 1, HIGHEST_PORT)]
    bases = [b for first, last in spans for b in range(first, last - count + 2)]
    if not bases:
        raise RuntimeError(f"the ephemeral port range {low}-{high} leaves no room for test ports")
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.choice(bases)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports outside the ephemeral range")


@dataclass
class NodeProcess:
    """A node subprocess; `output` collects everything it printed (stdout and stderr)."""

    datadir: Path
    process: subprocess.Popen
    port: int
    output: list[str] = field(default_factory=list)
    _reader: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as a crash or power loss would leave it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def text(self) -> str:
        return "".join(self.output)


def start_node(datadir: Path, *extra: str, block_time: str = TEST_BLOCK_TIME_S) -> NodeProcess:
    """Start `laminar node` on a free port and return once its RPC server listens."""
    command = [
        *LAMINAR, "node", "--datadir", str(datadir), "--rpc", "127.0.0.1:0",
        "--block-time", block_time, *extra,
    ]
    return spawn_node(command, datadir)


def start_node_with_config(
    config: Path, *extra: str, env: Optional[dict] = None, datadir: Optional[Path] = None,
    harness: tuple[str, ...] = (),
) -> NodeProcess:
    """`laminar node --config CONFIG` (e.g. from `laminar devnet init`); the RPC port is
    the config's (parsed from the banner like `start_node`). `harness` flags run it
    through tests/harness_node.py (e.g. "--equivocate", "--partitions")."""
    launcher = [*HARNESS, *harness] if harness else LAMINAR
    return spawn_node(
        [*launcher, "node", "--config", str(config), *extra], datadir or config.parent, env
    )


def spawn_node(command: list, datadir: Path, env: Optional[dict] = None) -> NodeProcess:
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    output: list[str] = []
    ready = threading.Event()
    port_holder: list[int] = []

    def read() -> None:
        for line in process.stdout:
            output.append(line)
            match = RPC_LINE.search(line)
            if match and not port_holder:
                port_holder.append(int(match.group(2)))
                ready.set()
        ready.set()  # process ended: wake the waiter

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not ready.wait(STARTUP_TIMEOUT_S) or not port_holder:
        process.kill()
        process.wait()
        raise RuntimeError("node did not start:\n" + "".join(output))
    return NodeProcess(datadir, process, port_holder[0], output, reader)


@pytest.fixture
def node_factory(tmp_path):
    """Start nodes on demand; every node started is killed at teardown."""
    started: list[NodeProcess] = []

    def factory(*extra: str, datadir: Optional[Path] = None, **kwargs) -> NodeProcess:
        node = start_node(datadir or tmp_path / f"node{len(started)}", *extra, **kwargs)
        started.append(node)
        return node

    yield factory
    for node in started:
        node.kill()


@pytest.fixture
def dev_node(node_factory) -> NodeProcess:
    return node_factory()


@pytest.fixture(scope="session")
def erc20():
    """The ERC20 of bench/contracts, compiled with vyper once per test session."""
    from contracts.compile import compile_contract

    return compile_contract("ERC20")
