"""`python -m bench.pairs`: a node's throughput under pre-signed load, for two or more
checkouts run alternately on the same machine in one sitting (issue 10's measure).

Each sitting of `docs/performance.md` compared commits this way by hand; this is that
recipe. A checkout is a directory holding the project at some commit (`git worktree add
/tmp/base REV`); its node runs from its own code with this interpreter (its `tools.cli`
is found from its directory), while the genesis, the configs and the load generator come
from this tree, so every checkout gets the same genesis and the same load.

* `--setup dev`: a dev node (one validator, no p2p) on a 300M-gas genesis with a pool of
  50,000, `--count` pre-signed transfers sent as fast as it admits them.
* `--setup devnet`: `laminar devnet` (4 validators on loopback, default genesis) from the
  checkout, `--count` transfers offered at `--tps` round robin to the four RPCs.

Runs alternate A, B, A, B, ... for `--pairs` rounds, so the machine's drift falls on
every checkout. Reported per run: committed and admitted tx/s, the node's CPU per
committed transaction (all its processes, from the kernel), p50 inclusion in blocks and
the highest commit round and the transactions not committed, one JSON line a run, then
each checkout's medians; `--json` keeps every run's whole `laminar load` report.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import psutil

from bench.runner import machine_info

THIS_TREE = Path(__file__).resolve().parent.parent
DEV_GAS_LIMIT = 300_000_000
DEV_POOL_SIZE = 50_000
DEVNET_VALIDATORS = 4
DEVNET_FIRST_HEIGHT = 3  # load starts once every validator is past startup
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60
LOAD_TIMEOUT_S = 1800
POLL_S = 0.5


class PairsError(RuntimeError):
    """A run could not be made; the message says which and why."""


@dataclass(frozen=True)
class Checkout:
    label: str
    path: Path


@dataclass
class RunResult:
    label: str
    report: dict[str, Any]

    def row(self) -> dict[str, Any]:
        report = self.report
        cpu = report.get("node_cpu") or {}
        return {
            "checkout": self.label,
            "committed_per_s": report.get("committed_per_s"),
            "admitted_per_s": report.get("admitted_per_s"),
            "cpu_us_per_committed_tx": cpu.get("cpu_us_per_committed_tx"),
            "p50_blocks": (report.get("latency_blocks") or {}).get("p50"),
            "max_commit_round": (report.get("blocks") or {}).get("max_commit_round"),
            "not_committed": report.get("not_committed"),
        }


def medians(results: list[RunResult]) -> list[dict[str, Any]]:
    """Per checkout, in order of first appearance: the median of each figure over its runs."""
    labels = list(dict.fromkeys(r.label for r in results))
    summary = []
    for label in labels:
        rows = [r.row() for r in results if r.label == label]
        line: dict[str, Any] = {"checkout": label, "runs": len(rows)}
        for key in ("committed_per_s", "admitted_per_s", "cpu_us_per_committed_tx"):
            values = [row[key] for row in rows if row[key] is not None]
            line[f"median_{key}"] = statistics.median(values) if values else None
        summary.append(line)
    return summary


def laminar(*args: str) -> list[str]:
    """`laminar ARGS`, from the code of the directory it runs in (python -m looks for
    `tools` there first): the caller's `cwd` picks the checkout."""
    return [sys.executable, "-m", "tools.cli", *args]


def block_number(url: str) -> Optional[int]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
    request = urllib.request.Request(url, body.encode(), {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(json.loads(response.read())["result"], 16)
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return None


def wait_for_height(url: str, height: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PairsError(f"{what} exited with code {process.returncode} before serving")
        number = block_number(url)
        if number is not None and number >= height:
            return
        time.sleep(POLL_S)
    raise PairsError(f"{what} did not reach height {height} on {url} in {START_TIMEOUT_S} s")


def stop(process: subprocess.Popen) -> None:
    """SIGINT (a clean stop), then SIGKILL if it does not end."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
            process.kill()
            process.wait()


def run_load(urls: list[str], pids: list[int], count: int, tps: Optional[float],
             workdir: Path) -> dict[str, Any]:
    """`laminar load --presign` from this tree; its JSON report."""
    out = workdir / "load.json"
    command = laminar("load", "--presign", "--count", str(count),
                      "--rpc", ",".join(urls), "--node-pid", ",".join(map(str, pids)),
                      "--json")
    if tps is not None:
        command += ["--tps", str(tps)]
    with out.open("w") as sink:
        done = subprocess.run(command, cwd=THIS_TREE, stdout=sink, stderr=subprocess.PIPE,
                              text=True, timeout=LOAD_TIMEOUT_S)
    if done.returncode != 0:
        raise PairsError(f"laminar load failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return json.loads(out.read_text())


def dev_run(checkout: Checkout, count: int, rpc_port: int, workdir: Path) -> dict[str, Any]:
    out = workdir / "net"
    subprocess.run(
        laminar("devnet", "init", "--validators", "1", "--out", str(out),
                "--gas-limit", str(DEV_GAS_LIMIT), "--mempool-max-pool-size", str(DEV_POOL_SIZE),
                "--base-rpc-port", str(rpc_port)),
        cwd=THIS_TREE, check=True, capture_output=True, text=True,
    )
    config = (out / "node0" / "config.toml").read_text()
    dev_config = out / "node0" / "dev.toml"
    dev_config.write_text(config[:config.index("\n[p2p]")] + "\n")  # no networking
    url = f"http://127.0.0.1:{rpc_port}"
    with (workdir / "node.log").open("w") as log:
        node = subprocess.Popen(laminar("node", "--config", str(dev_config)),
                                cwd=checkout.path, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_height(url, 0, node, f"{checkout.label}'s dev node")
        return run_load([url], [node.pid], count, None, workdir)
    finally:
        stop(node)


def devnet_run(checkout: Checkout, count: int, tps: float, rpc_port: int, p2p_port: int,
               workdir: Path) -> dict[str, Any]:
    urls = [f"http://127.0.0.1:{rpc_port + i}" for i in range(DEVNET_VALIDATORS)]
    with (workdir / "devnet.log").open("w") as log:
        runner = subprocess.Popen(
            laminar("devnet", "--dir", str(workdir / "net"),
                    # --base-port: the name older checkouts know too
                    "--base-port", str(rpc_port), "--base-p2p-port", str(p2p_port), "--no-live"),
            cwd=checkout.path, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_height(urls[0], DEVNET_FIRST_HEIGHT, runner, f"{checkout.label}'s devnet")
        nodes = [p.pid for p in psutil.Process(runner.pid).children(recursive=True)
                 if "node" in p.cmdline()]
        if len(nodes) != DEVNET_VALIDATORS:
            raise PairsError(f"{checkout.label}'s devnet runs {len(nodes)} node processes, "
                             f"expected {DEVNET_VALIDATORS}")
        return run_load(urls, nodes, count, tps, workdir)
    finally:
        stop(runner)


def parse_checkout(text: str) -> Checkout:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {text!r}")
    directory = Path(path).resolve()
    if not (directory / "tools" / "cli.py").is_file():
        raise argparse.ArgumentTypeError(f"{directory} is not a Laminar checkout (no tools/cli.py)")
    return Checkout(label, directory)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.pairs",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=parse_checkout, action="append", required=True,
                        metavar="LABEL=PATH", help="a checkout to run (repeat: at least two)")
    parser.add_argument("--setup", choices=("dev", "devnet"), default="dev")
    parser.add_argument("--pairs", type=int, default=3, help="rounds of one run each")
    parser.add_argument("--count", type=int, default=16_000, help="pre-signed transfers a run")
    parser.add_argument("--tps", type=float, default=550.0,
                        help="devnet: offered transactions per second")
    parser.add_argument("--base-rpc-port", type=int, default=18545)
    parser.add_argument("--base-p2p-port", type=int, default=31303)
    parser.add_argument("--json", type=Path, help="write every run's report here")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if len({c.label for c in args.checkout}) < 2:
        print("error: --checkout: give at least two, with different labels", file=sys.stderr)
        return 2
    if args.pairs < 1 or args.count < 1 or args.tps <= 0:
        print("error: --pairs, --count and --tps must be positive", file=sys.stderr)
        return 2
    results: list[RunResult] = []
    try:
        for round_number in range(args.pairs):
            for checkout in args.checkout:
                with tempfile.TemporaryDirectory(prefix="laminar-pairs-") as tmp:
                    if args.setup == "dev":
                        report = dev_run(checkout, args.count, args.base_rpc_port, Path(tmp))
                    else:
                        report = devnet_run(checkout, args.count, args.tps, args.base_rpc_port,
                                            args.base_p2p_port, Path(tmp))
                result = RunResult(checkout.label, report)
                results.append(result)
                print(json.dumps({"round": round_number + 1, **result.row()}), flush=True)
    except (PairsError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else ""
        print(f"error: {exc} {detail or ''}".strip(), file=sys.stderr)
        return 1
    for line in medians(results):
        print(json.dumps(line), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(
            {"setup": args.setup, "count": args.count, "machine": machine_info(),
             "runs": [{"checkout": r.label, "report": r.report} for r in results]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
