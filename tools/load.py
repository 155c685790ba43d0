"""`laminar load`: a load generator for a running node or devnet.

    laminar load [--rpc http://127.0.0.1:8545] --tps N --duration S
                 [--workload transfers|erc20|mixed] [--accounts 10] [--wait 60] [--json]

Sends transactions signed by the dev mnemonic's accounts (round robin over --accounts of
them, each with its own nonce counter, fees from the latest base fee) at a steady rate of
--tps for --duration seconds, through --rpc (eth_sendRawTransaction). A sender with
SENDER_WINDOW (48) transactions not yet in a block is skipped for the next one; when all
are, the slot is held back (counted in the report): an overloaded node shows up as
held-back slots instead of refusals that would leave gaps in the nonces. Workloads:

  transfers  1 wei ETH transfers to random fresh addresses (21,000 gas)
  erc20      bench/contracts/ERC20.vy, compiled with vyper and deployed once per run by
             account 0, which then gives each other sender tokens; then token transfers
  mixed      both, alternating

A poller follows the chain (eth_getBlockByNumber) and records when each sent transaction
is first seen in a block; then the receipts give the status. The report (rich table, or
--json) gives: submitted, held_back, rejected (the RPC refused the transaction), committed, reverted,
not committed within --wait seconds after the last send, latency percentiles p50/p90/p99
(from just before eth_sendRawTransaction to the poll that saw the block holding it, so
with a poll period of 0.2 s), and the sustained throughput: committed transactions per
second of wall time between the first and the last block holding them as observed by
the poller (the first block's transactions are left out: they accumulated before the
window starts), and the same over the blocks' own timestamps.

Exit codes: 0 every submitted transaction committed, 1 some did not (or were rejected),
2 bad flags or an unreachable RPC.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from tools.rpc_client import HTTP_TIMEOUT_S, LoadError, Rpc, RpcError, percentile

WORKLOADS = ("transfers", "erc20", "mixed")
POLL_INTERVAL_S = 0.2
SENDER_THREADS = 8
TRANSFER_GAS = 21_000
ERC20_TRANSFER_GAS = 80_000
ERC20_DEPLOY_GAS = 2_000_000
PRIORITY_FEE = 10**9
TOKEN_SUPPLY = 10**30
MAX_TPS = 10_000
# Transactions of one sender sent and not yet seen in a block (nor refused) before the
# generator holds that sender back: below the node's default per-sender pool limit (64),
# so an overloaded node shows up as held-back slots, not as refusals that would leave
# gaps in the sender's nonces (and everything after a gap would never be mined).
SENDER_WINDOW = 48


def add_load_parser(subparsers) -> None:
    load = subparsers.add_parser(
        "load",
        help="send signed transactions at a steady rate and report latency and throughput",
        description=__doc__.split("\n\n")[2] if __doc__ else None,
    )
    load.add_argument(
        "--rpc", default="http://127.0.0.1:8545",
        help="node JSON-RPC URL (default http://127.0.0.1:8545); --presign: several, comma-separated, round robin",
    )
    load.add_argument(
        "--tps", type=float, help="transactions per second to send (--presign: default as fast as admitted)"
    )
    load.add_argument("--duration", type=float, help="seconds to send for (not with --presign: use --count)")
    load.add_argument(
        "--presign", action="store_true",
        help="measure the node, not the generator: fund --accounts fresh senders, sign --count transfers "
        "before the clock starts, send them in JSON-RPC batches (tools/presign.py)",
    )
    load.add_argument("--count", type=int, help="--presign: transfers to sign and send")
    load.add_argument("--batch", type=int, default=100, help="--presign: transactions per JSON-RPC batch (default 100)")
    load.add_argument("--seed", default="laminar-load", help="--presign: derivation seed of the fresh senders")
    load.add_argument(
        "--node-pid", help="--presign: PID[,PID...] of local node processes: report their CPU per transaction "
        "(with their Block-STM workers) over the send window",
    )
    load.add_argument("--py-spy", metavar="FILE", help="--presign with --node-pid: also record a py-spy raw profile")
    load.add_argument("--workload", choices=WORKLOADS, default="transfers", help="default transfers")
    load.add_argument(
        "--accounts", type=int,
        help="senders: dev accounts to send from, 1..10 (default 10); --presign: fresh funded senders (default 400)",
    )
    load.add_argument(
        "--wait", type=float, default=60.0, help="seconds to wait for inclusion after the last send (default 60)"
    )
    load.add_argument("--json", action="store_true", help="print the report as JSON (and no progress bar)")


# ---- the ERC20 contract --------------------------------------------------------------------


def erc20_init_code() -> bytes:
    """ERC20.vy's init code (vyper), cached on disk by source hash like `laminar bench`."""
    from bench.contracts import SOURCE_DIR, default_cache_dir

    source = (SOURCE_DIR / "ERC20.vy").read_text()
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    cache = default_cache_dir() / f"ERC20-initcode-{digest}.json"
    try:
        return bytes.fromhex(json.loads(cache.read_text())["bytecode"][2:])
    except (OSError, ValueError, KeyError):
        pass
    try:
        import vyper
    except ImportError:
        raise LoadError(
            "--workload erc20 needs vyper (pip install vyper==0.4.3) to compile bench/contracts/ERC20.vy"
        ) from None
    bytecode = vyper.compile_code(source, output_formats=["bytecode"])["bytecode"]
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"bytecode": bytecode}))
        os.replace(tmp, cache)
    except OSError:
        pass
    return bytes.fromhex(bytecode[2:])


def erc20_deploy_data() -> bytes:
    from eth_abi import encode

    return erc20_init_code() + encode(
        ["string", "string", "uint8", "uint256"], ["Load Token", "LOAD", 18, TOKEN_SUPPLY]
    )


def erc20_transfer_data(to: bytes, amount: int) -> bytes:
    from eth_abi import encode
    from eth_utils import keccak

    return keccak(b"transfer(address,uint256)")[:4] + encode(["address", "uint256"], [to, amount])


# ---- sending -------------------------------------------------------------------------------


@dataclass
class Sender:
    account: object  # eth_account LocalAccount
    nonce: int
    hashes: list = field(default_factory=list)  # its transactions, in nonce order
    settled: int = 0  # how many of `hashes`, from the start, are in a block or refused


@dataclass
class Tracker:
    """Send times and first-seen inclusions, shared by the sender threads and the poller."""

    sent: dict = field(default_factory=dict)  # tx hash (hex, lower) -> send time (monotonic)
    included: dict = field(default_factory=dict)  # tx hash -> (block number, seen time)
    rejected: list = field(default_factory=list)  # (tx hash, error message)
    refused: set = field(default_factory=set)  # the hashes in `rejected`
    blocks: dict = field(default_factory=dict)  # block number -> (seen time, timestamp, our txs)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def accepted(self) -> int:
        return len(self.sent) - len(self.rejected)


class Poller(threading.Thread):
    """Follows the chain head; records when each of our transactions is first seen."""

    def __init__(self, url: str, tracker: Tracker, start_block: int) -> None:
        super().__init__(daemon=True)
        self.rpc = Rpc(url)
        self.tracker = tracker
        self.next_block = start_block
        self.stopping = threading.Event()
        self.error: Optional[str] = None

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.poll_once()
                self.error = None
            except Exception as exc:  # noqa: BLE001 - keep polling: the node may be busy
                self.error = f"{type(exc).__name__}: {exc}"
            self.stopping.wait(POLL_INTERVAL_S)

    def poll_once(self) -> None:
        head = int(self.rpc.call("eth_blockNumber"), 16)
        if head < self.next_block:
            return
        numbers = list(range(self.next_block, head + 1))
        blocks = self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        seen = time.monotonic()
        with self.tracker.lock:
            for n, block in zip(numbers, blocks):
                if block is None:
                    return  # not served yet: retry from here
                ours = 0
                for tx_hash in block["transactions"]:
                    key = tx_hash.lower()
                    if key in self.tracker.sent and key not in self.tracker.included:
                        self.tracker.included[key] = (n, seen)
                        ours += 1
                self.tracker.blocks[n] = (seen, int(block["timestamp"], 16), ours)
                self.next_block = n + 1


class Load:
    def __init__(self, url: str, accounts: int) -> None:
        from eth_account import Account

        from node.genesis import dev_accounts

        self.url = url
        self.rpc = Rpc(url)
        try:
            self.chain_id = int(self.rpc.call("eth_chainId"), 16)
        except Exception as exc:  # noqa: BLE001 - connection refused, timeout, not JSON-RPC
            raise LoadError(f"cannot reach a JSON-RPC node at {url}: {type(exc).__name__}: {exc}") from None
        self.senders = []
        for acct in dev_accounts()[:accounts]:
            local = Account.from_key(acct.private_key)
            nonce = int(self.rpc.call("eth_getTransactionCount", local.address, "pending"), 16)
            self.senders.append(Sender(local, nonce))
        self.tracker = Tracker()
        self.token: Optional[str] = None
        self.base_fee = self._base_fee()
        self.base_fee_at = time.monotonic()
        self._jobs: queue.Queue = queue.Queue(maxsize=10_000)
        self._threads: list[threading.Thread] = []

    def _base_fee(self) -> int:
        block = self.rpc.call("eth_getBlockByNumber", "latest", False)
        return int(block.get("baseFeePerGas", "0x0"), 16)

    def sign(self, sender: Sender, to: Optional[str], data: bytes, gas: int, value: int = 0):
        if time.monotonic() - self.base_fee_at > 2.0:
            try:
                self.base_fee, self.base_fee_at = self._base_fee(), time.monotonic()
            except Exception:  # noqa: BLE001 - keep the last one
                pass
        tx = {
            "chainId": self.chain_id,
            "nonce": sender.nonce,
            "gas": gas,
            "value": value,
            "maxFeePerGas": 2 * self.base_fee + PRIORITY_FEE,
            "maxPriorityFeePerGas": PRIORITY_FEE,
            "data": data,
        }
        if to is not None:
            tx["to"] = to
        sender.nonce += 1
        signed = sender.account.sign_transaction(tx)
        return "0x" + signed.hash.hex().removeprefix("0x"), signed.raw_transaction

    def send_now(self, tx_hash: str, raw: bytes) -> None:
        """Send one transaction from this thread (the setup transactions)."""
        self.tracker.sent[tx_hash] = time.monotonic()
        try:
            self.rpc.call("eth_sendRawTransaction", "0x" + bytes(raw).hex())
        except RpcError as exc:
            raise LoadError(f"the node refused a setup transaction: {exc}") from None

    def wait_included(self, hashes: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.tracker.lock:
                if all(h in self.tracker.included for h in hashes):
                    return
            time.sleep(POLL_INTERVAL_S)
        raise LoadError(f"setup transactions not included within {timeout:g}s")

    def setup_erc20(self, wait: float) -> list[str]:
        """Deploy the token from account 0 and give every other sender a share."""
        from eth_utils import to_canonical_address, to_checksum_address

        owner = self.senders[0]
        deploy_hash, raw = self.sign(owner, None, erc20_deploy_data(), ERC20_DEPLOY_GAS)
        self.send_now(deploy_hash, raw)
        self.wait_included([deploy_hash], wait)
        receipt = self.rpc.call("eth_getTransactionReceipt", deploy_hash)
        if not receipt or int(receipt["status"], 16) != 1 or not receipt.get("contractAddress"):
            raise LoadError(f"the ERC20 deployment failed: {receipt}")
        self.token = to_checksum_address(receipt["contractAddress"])
        hashes = [deploy_hash]
        share = TOKEN_SUPPLY // (2 * len(self.senders))
        for sender in self.senders[1:]:
            h, raw = self.sign(
                owner,
                self.token,
                erc20_transfer_data(to_canonical_address(sender.account.address), share),
                ERC20_TRANSFER_GAS,
            )
            self.send_now(h, raw)
            hashes.append(h)
        self.wait_included(hashes, wait)
        return hashes

    def unsettled(self, sender: Sender) -> int:
        """Its transactions sent but neither seen in a block nor refused yet."""
        tracker = self.tracker
        with tracker.lock:
            refused = tracker.refused
            while sender.settled < len(sender.hashes):
                tx_hash = sender.hashes[sender.settled]
                if tx_hash not in tracker.included and tx_hash not in refused:
                    break
                sender.settled += 1
        return len(sender.hashes) - sender.settled

    def make_tx(self, k: int, workload: str):
        """The k-th transaction, from sender k mod N or the next one with room in its
        window; None (the slot is held back) when every sender's window is full."""
        count = len(self.senders)
        for step in range(count):
            sender = self.senders[(k + step) % count]
            if self.unsettled(sender) < SENDER_WINDOW:
                break
        else:
            return None
        kind = workload if workload != "mixed" else ("transfers", "erc20")[k % 2]
        recipient = random.randbytes(20)
        if kind == "transfers":
            from eth_utils import to_checksum_address

            signed = self.sign(sender, to_checksum_address(recipient), b"", TRANSFER_GAS, value=1)
        else:
            signed = self.sign(sender, self.token, erc20_transfer_data(recipient, 1), ERC20_TRANSFER_GAS)
        sender.hashes.append(signed[0])
        return signed

    def _send_worker(self) -> None:
        rpc = Rpc(self.url)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            tx_hash, raw = job
            with self.tracker.lock:
                self.tracker.sent[tx_hash] = time.monotonic()
            try:
                rpc.call("eth_sendRawTransaction", "0x" + bytes(raw).hex())
            except Exception as exc:  # noqa: BLE001 - counted as rejected
                with self.tracker.lock:
                    self.tracker.rejected.append((tx_hash, f"{type(exc).__name__}: {exc}"))
                    self.tracker.refused.add(tx_hash)

    def start_senders(self) -> None:
        # One sender account per thread queue would keep nonce order strictly; the mempool
        # queues a nonce gap and promotes it, so plain parallel sends are fine.
        for _ in range(SENDER_THREADS):
            t = threading.Thread(target=self._send_worker, daemon=True)
            t.start()
            self._threads.append(t)

    def stop_senders(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(timeout=HTTP_TIMEOUT_S + 5)


def run_load(
    url: str, tps: float, duration: float, workload: str, accounts: int = 10, wait: float = 60.0, progress: bool = True
) -> dict:
    """Run the load and return the report (see the module docstring)."""
    load = Load(url, accounts)
    start_block = int(load.rpc.call("eth_blockNumber"), 16) + 1
    poller = Poller(url, load.tracker, start_block)
    poller.start()
    setup_hashes: set[str] = set()
    try:
        if workload in ("erc20", "mixed"):
            setup_hashes = set(load.setup_erc20(max(wait, 30.0)))
        total = max(1, round(tps * duration))
        load.start_senders()
        ui = _Progress(total, enabled=progress)
        hashes: list[str] = []
        held_back = 0
        with ui:
            began = time.monotonic()
            for k in range(total):
                target = began + k / tps
                while True:
                    delay = target - time.monotonic()
                    if delay <= 0:
                        break
                    time.sleep(min(delay, 0.1))
                    ui.update(load.tracker, hashes)
                made = load.make_tx(k, workload)
                if made is None:
                    held_back += 1
                    continue
                tx_hash, raw = made
                hashes.append(tx_hash)
                load._jobs.put((tx_hash, raw))
                ui.update(load.tracker, hashes)
            send_seconds = time.monotonic() - began
            load.stop_senders()
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                with load.tracker.lock:
                    rejected = {h for h, _ in load.tracker.rejected}
                    done = all(h in load.tracker.included or h in rejected for h in hashes)
                ui.update(load.tracker, hashes)
                if done:
                    break
                time.sleep(POLL_INTERVAL_S)
    finally:
        poller.stopping.set()
        poller.join(timeout=HTTP_TIMEOUT_S + 5)
    report = _report(load, hashes, setup_hashes, tps, duration, workload, send_seconds)
    report["held_back"] = held_back
    return report


def _report(
    load: Load, hashes: list[str], setup: set[str], tps: float, duration: float, workload: str, send_seconds: float
) -> dict:
    tracker = load.tracker
    rejected = {h: msg for h, msg in tracker.rejected}
    included = {h: tracker.included[h] for h in hashes if h in tracker.included}
    latencies = [seen - tracker.sent[h] for h, (_, seen) in included.items()]
    reverted = 0
    if included:
        receipts = load.rpc.batch([("eth_getTransactionReceipt", [h]) for h in included])
        reverted = sum(1 for r in receipts if r is not None and int(r["status"], 16) != 1)
    per_block: dict[int, int] = {}
    for number, _ in included.values():
        per_block[number] = per_block.get(number, 0) + 1
    wall_tps = ts_tps = None
    window_s = ts_window = None
    if per_block:
        first, last = min(per_block), max(per_block)
        in_window = sum(per_block.values()) - per_block[first]
        window_s = tracker.blocks[last][0] - tracker.blocks[first][0]
        ts_window = tracker.blocks[last][1] - tracker.blocks[first][1]
        if last > first and window_s > 0:
            wall_tps = in_window / window_s
        if last > first and ts_window > 0:
            ts_tps = in_window / ts_window

    def ms(value):
        return None if value is None else round(value * 1000, 1)

    return {
        "rpc": load.url,
        "workload": workload,
        "target_tps": tps,
        "duration_s": duration,
        "send_seconds": round(send_seconds, 3),
        "accounts": len(load.senders),
        "token": load.token,
        "setup_transactions": len(setup),
        "submitted": len(hashes),
        "rejected": len(rejected),
        "rejected_examples": list(rejected.values())[:3],
        "committed": len(included),
        "reverted": reverted,
        "not_committed": len(hashes) - len(included) - len(rejected),
        "latency_ms": {
            "p50": ms(percentile(latencies, 50)),
            "p90": ms(percentile(latencies, 90)),
            "p99": ms(percentile(latencies, 99)),
            "max": ms(max(latencies) if latencies else None),
        },
        "blocks": {
            "first": min(per_block) if per_block else None,
            "last": max(per_block) if per_block else None,
            "count": len(per_block),
            "max_txs": max(per_block.values()) if per_block else 0,
        },
        "sustained_tps": {
            "wall_clock": None if wall_tps is None else round(wall_tps, 2),
            "wall_clock_window_s": None if window_s is None else round(window_s, 3),
            "block_timestamps": None if ts_tps is None else round(ts_tps, 2),
            "block_timestamps_window_s": ts_window,
            "definition": "committed txs in blocks after the first inclusion block, divided by the "
            "time from the first to the last inclusion block (wall clock as seen by "
            "the poller; and by block timestamps, whole seconds)",
        },
    }


class _Progress:
    """The rich progress bar (submitted of total; committed alongside)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("[bold]load"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("sent"),
                TextColumn("{task.fields[committed]} committed, {task.fields[rejected]} rejected"),
                TimeElapsedColumn(),
                transient=False,
            )
            self.task = self.progress.add_task("load", total=total, committed=0, rejected=0)

    def __enter__(self):
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()

    def update(self, tracker: Tracker, hashes: list[str]) -> None:
        if self.progress is None:
            return
        with tracker.lock:
            committed = sum(1 for h in hashes if h in tracker.included)
            rejected = len(tracker.rejected)
        self.progress.update(self.task, completed=len(hashes), committed=committed, rejected=rejected)


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"laminar load: {report['workload']} at {report['target_tps']:g} tx/s for "
        f"{report['duration_s']:g} s via {report['rpc']}",
        show_header=False,
    )
    table.add_column(style="bold")
    table.add_column()
    lat = report["latency_ms"]
    sus = report["sustained_tps"]
    rows = [
        ("submitted", report["submitted"]),
        ("held back (sender window full)", report.get("held_back", 0)),
        ("rejected by the node", report["rejected"]),
        ("committed", report["committed"]),
        ("reverted (committed, status 0)", report["reverted"]),
        ("not committed in time", report["not_committed"]),
        (
            "latency p50 / p90 / p99 / max",
            " / ".join("-" if lat[k] is None else f"{lat[k]:.0f} ms" for k in ("p50", "p90", "p99", "max")),
        ),
        (
            "inclusion blocks",
            f"{report['blocks']['count']} (#{report['blocks']['first']}..#{report['blocks']['last']}), "
            f"at most {report['blocks']['max_txs']} of ours in one",
        ),
        (
            "sustained tx/s (wall clock)",
            "-" if sus["wall_clock"] is None else f"{sus['wall_clock']:.1f} over {sus['wall_clock_window_s']:.1f} s",
        ),
        (
            "sustained tx/s (block timestamps)",
            "-"
            if sus["block_timestamps"] is None
            else f"{sus['block_timestamps']:.1f} over {sus['block_timestamps_window_s']} s",
        ),
    ]
    if report["token"]:
        rows.append(("ERC20 token", report["token"]))
    for name, value in rows:
        table.add_row(name, str(value))
    console = Console()
    console.print(table)
    console.print(
        "latency: from just before eth_sendRawTransaction to the poll (every 0.2 s) that saw "
        "its block. sustained tx/s: committed txs in the inclusion blocks after the first, "
        "over the time from the first to the last of them.",
        style="dim",
    )
    for example in report["rejected_examples"]:
        console.print(f"rejected: {example}", style="yellow", markup=False)
    if report.get("held_back"):
        console.print(
            f"{report['held_back']} slots held back: every sender already had "
            f"{SENDER_WINDOW} transactions waiting for a block, so the node did not keep "
            f"up with {report['target_tps']:g} tx/s",
            style="yellow",
            markup=False,
        )


def run_presign_command(args: argparse.Namespace) -> int:
    from tools.presign import NodeCpuMeter, PresignPlan, check_plan, print_presign_report, run_presigned

    problems = []
    if args.count is None:
        problems.append("--presign needs --count: how many transfers to sign up front")
    if args.duration is not None:
        problems.append("--duration: not with --presign (it sends --count transactions; --tps paces them)")
    if args.workload != "transfers":
        problems.append("--workload: --presign signs transfers only")
    plan = PresignPlan(
        rpcs=tuple(url.strip() for url in args.rpc.split(",") if url.strip()),
        count=args.count or 0,
        accounts=400 if args.accounts is None else args.accounts,
        batch=args.batch,
        tps=args.tps,
        wait=args.wait,
        seed=args.seed,
    )
    problems += check_plan(plan)
    pids: list[int] = []
    if args.node_pid:
        try:
            pids = [int(p) for p in args.node_pid.split(",")]
        except ValueError:
            problems.append(f"--node-pid: process ids, comma-separated (got {args.node_pid!r})")
    if args.py_spy and not args.node_pid:
        problems.append("--py-spy needs --node-pid: which processes to profile")
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    def presigned() -> dict:
        meter = NodeCpuMeter(pids, args.py_spy) if pids else None
        report = run_presigned(plan, around_send=meter)
        if meter is not None:
            report["node_cpu"] = meter.report(report["committed"])
        return report

    return _run_and_report(presigned, print_presign_report, args.json, args.rpc)


def _run_and_report(run: Callable[[], dict], print_table: Callable[[dict], None], as_json: bool, rpc: str) -> int:
    """Runs a load, prints its report; the exit code says whether all committed."""
    try:
        report = run()
    except LoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, RpcError, ValueError) as exc:  # requests' errors are OSErrors
        print(f"error: lost the node at {rpc} during the run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0 if report["committed"] == report["submitted"] else 1


def run_load_command(args: argparse.Namespace) -> int:
    if args.presign:
        return run_presign_command(args)
    problems = []
    if args.tps is None or args.duration is None:
        print("error: --tps and --duration are required (or --presign with --count)", file=sys.stderr)
        return 2
    if args.accounts is None:
        args.accounts = 10
    if not (0 < args.tps <= MAX_TPS):
        problems.append(f"--tps: must be > 0 and at most {MAX_TPS} (got {args.tps:g})")
    if not args.duration > 0:
        problems.append(f"--duration: must be > 0 seconds (got {args.duration:g})")
    if not 1 <= args.accounts <= 10:
        problems.append(f"--accounts: 1..10 (the dev mnemonic's funded accounts; got {args.accounts})")
    if args.wait < 0:
        problems.append("--wait: must be >= 0")
    if not args.rpc.startswith(("http://", "https://")):
        problems.append(f"--rpc: an http:// or https:// URL (got {args.rpc!r})")
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    return _run_and_report(
        lambda: run_load(
            args.rpc, args.tps, args.duration, args.workload, args.accounts, args.wait,
            progress=not args.json and sys.stdout.isatty(),
        ),
        print_report, args.json, args.rpc,
    )
