"""`laminar devnet`: run a local BFT devnet of N validator processes on this machine.

    laminar devnet [--dir DIR] [--validators 4] [--base-rpc-port 8545] [--base-p2p-port 30303]
                   [--block-time 1] [--no-live]

DIR (default ~/.laminar/devnet) is made with `laminar devnet init` when it holds no
devnet yet; an existing one is resumed as it is (its validator count and ports are the
ones it was made with). Each validator is `laminar node --config DIR/node{i}/config.toml`,
a child process in its own session, logging to DIR/node{i}/node.log. The RPC URLs are
printed (http://127.0.0.1:<base-rpc-port + i>), then a live view (rich) polls the nodes' JSON-RPC
once a second: per node its height, round, peers and mempool; per recent block its
observed interval, transactions and how node 0 executed it (laminar_executionStats).

Ctrl-C (SIGINT) or SIGTERM: SIGTERM to every validator, wait up to --stop-timeout
seconds, then SIGKILL the rest, and in any case SIGKILL whatever is left in each child's
process group (Block-STM worker processes), so nothing outlives the command. The children
also get SIGTERM from the kernel if this process dies without cleaning up (PR_SET_PDEATHSIG).

Exit codes: 0 stopped by a signal, 1 a validator failed to start, 2 unusable input.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tools.devnet import layout

DEFAULT_DIR = Path("~/.laminar/devnet")
DEFAULT_VALIDATORS = 4
DEFAULT_BASE_PORT = 8545
DEFAULT_BASE_P2P_PORT = 30303
STARTUP_TIMEOUT_S = 120
POLL_INTERVAL_S = 1.0
HTTP_TIMEOUT_S = 3.0
RECENT_BLOCKS = 8


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"devnet directory (default {DEFAULT_DIR}); made with `devnet init` when absent",
    )
    parser.add_argument(
        "--validators", type=int, default=None, help=f"validators of a new devnet (default {DEFAULT_VALIDATORS})"
    )
    parser.add_argument(
        "--base-rpc-port",
        "--base-port",
        dest="base_port",
        type=int,
        default=None,
        help=f"RPC port of validator 0 of a new devnet; validator i gets base+i (default {DEFAULT_BASE_PORT};"
        " --base-port is the older name)",
    )
    parser.add_argument(
        "--base-p2p-port",
        type=int,
        default=None,
        help=f"libp2p port of validator 0 of a new devnet (default {DEFAULT_BASE_P2P_PORT})",
    )
    parser.add_argument(
        "--block-time", type=float, default=None, help="seconds between blocks of a new devnet (default 1)"
    )
    parser.add_argument(
        "--no-live",
        action="store_true",
        help="plain lines (one per block) instead of the live view (the default when stdout is not a terminal)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=20.0,
        help="seconds to wait for validators after SIGTERM before SIGKILL (default 20)",
    )


# ---- JSON-RPC over HTTP (standard library: one short request per call) ---------------------


def rpc_batch(url: str, calls: list[tuple[str, list]], timeout: float = HTTP_TIMEOUT_S) -> list:
    """Results of a JSON-RPC batch, in call order; an error reply gives None for that call."""
    import urllib.request

    body = json.dumps(
        [{"jsonrpc": "2.0", "id": i, "method": method, "params": params} for i, (method, params) in enumerate(calls)]
    ).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        replies = json.load(response)
    by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
    return [by_id.get(i, {}).get("result") for i in range(len(calls))]


# ---- the devnet directory ------------------------------------------------------------------


class RunnerError(Exception):
    pass


def prepare_dir(args: argparse.Namespace, out=print) -> dict:
    """DIR's devnet.json, after `devnet init` when DIR holds no devnet yet."""
    directory = (args.dir or DEFAULT_DIR).expanduser().resolve()
    summary_path = directory / "devnet.json"
    if (directory / "genesis.json").exists():
        if not summary_path.exists():
            raise RunnerError(
                f"{directory} has a genesis.json but no devnet.json: not a `laminar devnet init` directory"
            )
        summary = json.loads(summary_path.read_text())
        n = len(summary["nodes"])
        if args.validators is not None and args.validators != n:
            out(
                f"note: {directory} holds a devnet of {n} validators; --validators {args.validators} ignored "
                "(use another --dir for a new devnet)"
            )
        if args.base_port is not None and summary["nodes"][0]["rpc"].rsplit(":", 1)[1] != str(args.base_port):
            out(
                f"note: {directory} was made with RPC ports from {summary['nodes'][0]['rpc'].rsplit(':', 1)[1]}; "
                f"--base-rpc-port {args.base_port} ignored (use another --dir)"
            )
        out(f"resuming the devnet in {directory}")
    else:
        validators = DEFAULT_VALIDATORS if args.validators is None else args.validators
        try:
            nodes = layout.init(
                directory,
                validators,
                base_rpc_port=DEFAULT_BASE_PORT if args.base_port is None else args.base_port,
                base_p2p_port=DEFAULT_BASE_P2P_PORT if args.base_p2p_port is None else args.base_p2p_port,
                block_time=1.0 if args.block_time is None else args.block_time,
            )
        except layout.DevnetError as exc:
            raise RunnerError(str(exc)) from None
        out(f"created a devnet of {len(nodes)} validators in {directory} (laminar devnet init)")
        summary = json.loads(summary_path.read_text())
    summary["dir"] = str(directory)
    return summary


def _host_port(url_or_addr: str) -> tuple[str, int]:
    text = url_or_addr.split("://", 1)[-1]
    host, port = text.rsplit(":", 1)
    return host, int(port)


def _p2p_host_port(multiaddr: str) -> tuple[str, int]:
    parts = multiaddr.split("/")
    return parts[2], int(parts[4])


def busy_ports(summary: dict) -> list[str]:
    """The RPC and p2p addresses of the devnet that something else already listens on."""
    busy = []
    for node in summary["nodes"]:
        for what, (host, port) in (("RPC", _host_port(node["rpc"])), ("p2p", _p2p_host_port(node["p2p"]))):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, port))
                except OSError:
                    busy.append(f"node{node['index']} {what} {host}:{port}")
    return busy


# ---- the validator processes ---------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux)."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # noqa: BLE001 - best effort (not Linux)
        pass


@dataclass
class Validator:
    index: int
    url: str
    config: Path
    log_path: Path
    process: Optional[subprocess.Popen] = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        log.write(f"\n==== laminar devnet: starting node{self.index} at {time.ctime()} ====\n".encode())
        log.flush()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tools.cli", "node", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # Ctrl-C in the terminal reaches only the runner
                preexec_fn=_die_with_parent,
                cwd=str(Path(__file__).resolve().parent.parent),
            )
        finally:
            log.close()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "".join(self.log_path.read_text(errors="replace").splitlines(True)[-lines:])
        except OSError:
            return ""


def stop_all(validators: list[Validator], timeout: float, out=print) -> None:
    """SIGTERM every running validator, wait up to `timeout`, SIGKILL the rest; then
    SIGKILL whatever is left in each validator's process group."""
    for v in validators:
        if v.running:
            try:
                v.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for v in validators:
        if v.process is None:
            continue
        try:
            v.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            out(f"node{v.index} (pid {v.process.pid}) did not stop within {timeout:g}s: SIGKILL")
    for v in validators:
        if v.process is None:
            continue
        try:
            os.killpg(v.process.pid, signal.SIGKILL)  # the group: the node and its workers
        except (ProcessLookupError, PermissionError):
            pass
        try:
            v.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


# ---- polling and the view ------------------------------------------------------------------


@dataclass
class NodeView:
    height: Optional[int] = None
    round: Optional[int] = None
    peers: Optional[int] = None
    pending: Optional[int] = None
    error: Optional[str] = None


@dataclass
class BlockView:
    number: int
    seen: float  # monotonic time the runner first saw it
    interval: Optional[float]  # seconds since the previous height was seen
    txs: int
    gas_used: int
    stats: Optional[dict] = None  # node 0's laminar_executionStats entry


@dataclass
class Monitor:
    validators: list[Validator]
    nodes: list[NodeView] = field(default_factory=list)
    blocks: deque = field(default_factory=lambda: deque(maxlen=64))
    last_number: Optional[int] = None
    last_seen: Optional[float] = None
    started: float = field(default_factory=time.monotonic)
    total_txs: int = 0

    def __post_init__(self) -> None:
        self.nodes = [NodeView() for _ in self.validators]

    def poll(self) -> list[BlockView]:
        """Poll every node; returns the blocks that became visible on the reference node."""
        for v, view in zip(self.validators, self.nodes):
            try:
                number, state, pool = rpc_batch(
                    v.url,
                    [
                        ("eth_blockNumber", []),
                        ("laminar_consensusState", []),
                        ("laminar_mempoolStatus", []),
                    ],
                )
                view.height = int(number, 16) if number else None
                view.round = (state or {}).get("round")
                view.peers = (state or {}).get("peers")
                view.pending = int(pool["pending"], 16) if pool else None
                view.error = None
            except Exception as exc:  # noqa: BLE001 - a node down or busy: show it
                view.error = "exited" if not v.running else type(exc).__name__
        return self._new_blocks()

    def _reference(self) -> Optional[int]:
        for i, view in enumerate(self.nodes):
            if view.error is None and view.height is not None:
                return i
        return None

    def _new_blocks(self) -> list[BlockView]:
        ref = self._reference()
        if ref is None:
            return []
        head = self.nodes[ref].height
        now = time.monotonic()
        if self.last_number is None:
            self.last_number, self.last_seen = head, now
            return []
        if head <= self.last_number:
            return []
        first = max(self.last_number + 1, head - 31)
        numbers = list(range(first, head + 1))
        try:
            results = rpc_batch(
                self.validators[ref].url,
                [("eth_getBlockByNumber", [hex(n), False]) for n in numbers] + [("laminar_executionStats", [])],
            )
        except Exception:  # noqa: BLE001
            return []
        stats = {int(s["number"], 16): s for s in (results[-1] or [])}
        new = []
        interval = (now - self.last_seen) / (head - self.last_number)
        for n, block in zip(numbers, results[:-1]):
            if block is None:
                continue
            txs = len(block.get("transactions", []))
            self.total_txs += txs
            new.append(BlockView(n, now, interval, txs, int(block.get("gasUsed", "0x0"), 16), stats.get(n)))
        self.blocks.extend(new)
        self.last_number, self.last_seen = head, now
        return new

    def rates(self, window: int = 20) -> tuple[Optional[float], Optional[float]]:
        """(seconds per block, transactions per second) over the last `window` blocks seen."""
        recent = list(self.blocks)[-window:]
        if len(recent) < 2:
            return None, None
        span = recent[-1].seen - recent[0].seen
        if span <= 0:
            return None, None
        blocks = recent[-1].number - recent[0].number
        return span / blocks, sum(b.txs for b in recent[1:]) / span


def _exec_columns(stats: Optional[dict]) -> tuple[str, str, str, str, str]:
    """executor, incarnations per tx, execution ms, commit ms, executed tx/s."""
    if not stats:
        return "-", "-", "-", "-", "-"
    txs = stats.get("transactions") or 0
    executor = stats.get("executor", "?")
    if stats.get("workers"):
        executor += f"/{stats['workers']}"
    if stats.get("fallback"):
        executor += " seq"  # Block-STM fell back to running the block sequentially
    elif stats.get("narrowedAt") is not None:
        executor += " 1w"  # contention: Block-STM went on with one worker
    per_tx = f"{stats['incarnations'] / txs:.2f}" if txs else "-"
    exec_s = stats.get("executionSeconds") or 0.0
    rate = f"{txs / exec_s:,.0f}" if txs and exec_s > 0 else "-"
    return executor, per_tx, f"{exec_s * 1000:.1f}", f"{(stats.get('commitSeconds') or 0) * 1000:.1f}", rate


def plain_line(monitor: Monitor, block: BlockView) -> str:
    heights = "/".join("-" if v.error or v.height is None else str(v.height) for v in monitor.nodes)
    executor, per_tx, exec_ms, commit_ms, rate = _exec_columns(block.stats)
    interval = f"{block.interval:.2f}s" if block.interval is not None else "-"
    return (
        f"block #{block.number}  +{interval}  txs {block.txs}  heights {heights}  "
        f"exec {executor} incarnations/tx {per_tx} exec {exec_ms} ms commit {commit_ms} ms"
    )


def render(monitor: Monitor, summary: dict):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    elapsed = time.monotonic() - monitor.started
    header = Text.assemble(
        ("Laminar devnet", "bold"),
        f"  {len(monitor.validators)} validators, chain id {summary.get('chainId')}, {summary['dir']}  ",
        (f"up {int(elapsed // 60)}m{int(elapsed % 60):02d}s", "dim"),
        "   ",
        ("Ctrl-C stops all", "yellow"),
    )
    nodes = Table(box=None, pad_edge=False, header_style="bold")
    for name, justify in (
        ("node", "left"),
        ("rpc", "left"),
        ("height", "right"),
        ("round", "right"),
        ("peers", "right"),
        ("pending txs", "right"),
        ("process", "left"),
    ):
        nodes.add_column(name, justify=justify)
    for v, view in zip(monitor.validators, monitor.nodes):
        if v.running:
            process = f"pid {v.process.pid}"
        elif v.process is None:
            process = "not started"
        else:
            process = f"[red]exited ({v.process.returncode})[/red] see {v.log_path}"
        if view.error and v.running:
            process += f" [yellow]rpc: {view.error}[/yellow]"

        def cell(value, view=view):
            return "-" if view.error or value is None else str(value)

        nodes.add_row(
            str(v.index), v.url, cell(view.height), cell(view.round), cell(view.peers), cell(view.pending), process
        )
    blocks = Table(
        box=None,
        pad_edge=False,
        header_style="bold",
        title="recent blocks (execution as measured by node 0)",
        title_justify="left",
    )
    for name in ("block", "dt s", "txs", "gas", "executor", "inc/tx", "exec ms", "commit ms", "exec tx/s"):
        blocks.add_column(name, justify="left" if name == "executor" else "right", no_wrap=True)
    for b in list(monitor.blocks)[-RECENT_BLOCKS:][::-1]:
        blocks.add_row(
            f"#{b.number}",
            f"{b.interval:.2f}" if b.interval is not None else "-",
            str(b.txs),
            f"{b.gas_used:,}",
            *_exec_columns(b.stats),
        )
    spb, tps = monitor.rates()
    footer = Text(
        f"last 20 blocks: {spb:.2f} s/block, {tps:.1f} tx/s committed (wall clock as polled)"
        if spb
        else "waiting for blocks...",
        style="dim",
    )
    legend = Text(
        "dt: time since the previous height was seen; executor/workers (seq: ran sequentially, "
        "e.g. a tiny block); inc/tx: Block-STM executions per transaction (1.00 = no "
        "re-execution); exec tx/s: transactions / execution seconds of the block, not a "
        "speedup against the sequential executor (`laminar bench` measures that)",
        style="dim",
    )
    return Group(header, nodes, Text(""), blocks, footer, legend)


# ---- the command ---------------------------------------------------------------------------


def _validators_of(summary: dict) -> list[Validator]:
    directory = Path(summary["dir"])
    return [
        Validator(
            index=node["index"],
            url=node["rpc"],
            config=directory / f"node{node['index']}" / "config.toml",
            log_path=directory / f"node{node['index']}" / "node.log",
        )
        for node in summary["nodes"]
    ]


def _wait_ready(validators: list[Validator], stop: threading.Event) -> Optional[Validator]:
    """Wait until every validator's RPC answers; returns one that exited, if any."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    pending = list(validators)
    while pending and not stop.is_set():
        for v in list(pending):
            if not v.running:
                return v
            try:
                rpc_batch(v.url, [("eth_blockNumber", [])], timeout=1.0)
                pending.remove(v)
            except Exception:  # noqa: BLE001 - not up yet
                pass
        if time.monotonic() > deadline:
            raise RunnerError(
                "validators did not answer within %ds: %s"
                % (STARTUP_TIMEOUT_S, ", ".join(f"node{v.index}" for v in pending))
            )
        stop.wait(0.3)
    return None


def run_devnet_network(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    for name, flag in (("validators", "--validators"), ("base_port", "--base-rpc-port"),
                       ("base_p2p_port", "--base-p2p-port")):
        value = getattr(args, name)
        if value is not None and value < 1:
            err.print(f"error: {flag}: must be at least 1")
            return 2
    if args.block_time is not None and args.block_time <= 0:
        err.print("error: --block-time: must be > 0")
        return 2
    try:
        summary = prepare_dir(args, out=lambda m: console.print(m, markup=False))
        busy = busy_ports(summary)
        if busy:
            raise RunnerError(
                "ports already in use: "
                + ", ".join(busy)
                + " (another `laminar node` or devnet running? stop it, "
                "or make a new devnet with --dir and --base-rpc-port)"
            )
    except (RunnerError, OSError) as exc:
        err.print(f"error: {exc}", markup=False)
        return 2

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, frame):  # noqa: ARG001
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    validators = _validators_of(summary)
    live = None
    try:
        for v in validators:
            v.start()
        console.print(f"starting {len(validators)} validators (logs: {summary['dir']}/node<i>/node.log)", markup=False)
        failed = _wait_ready(validators, stop)
        if failed is not None:
            err.print(
                f"error: node{failed.index} exited during start-up (code {failed.process.returncode}); "
                f"last lines of {failed.log_path}:\n{failed.log_tail()}",
                markup=False,
            )
            return 1
        if stop.is_set():
            return 0
        console.print(f"devnet up: chain id {summary.get('chainId')}, {len(validators)} validators", markup=False)
        for v in validators:
            console.print(f"  node{v.index}: JSON-RPC {v.url}", markup=False)
        console.print(
            'dev accounts: the ten of the mnemonic "test test test test test test test test test test '
            'test junk" (10,000 ETH each; `laminar node` prints their keys). Ctrl-C stops all.',
            markup=False,
        )
        monitor = Monitor(validators)
        use_live = console.is_terminal and not args.no_live
        if use_live:
            from rich.live import Live

            live = Live(render(monitor, summary), console=console, refresh_per_second=4, transient=False)
            live.start()
        while not stop.is_set():
            new = monitor.poll()
            if live is not None:
                live.update(render(monitor, summary))
            else:
                for block in new:
                    print(plain_line(monitor, block), flush=True)
            stop.wait(POLL_INTERVAL_S)
        return 0
    except RunnerError as exc:
        err.print(f"error: {exc}", markup=False)
        return 1
    finally:
        if live is not None:
            live.stop()
        if received:
            name = signal.Signals(received[0]).name
            print(f"received {name}: stopping {sum(v.running for v in validators)} validators", flush=True)
        # a second Ctrl-C while stopping must not leave children behind: ignore it
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        stop_all(validators, args.stop_timeout, out=lambda m: print(m, flush=True))
        print("all validators stopped", flush=True)
        for s, handler in previous.items():
            signal.signal(s, handler)
