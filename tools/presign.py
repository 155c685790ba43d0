"""`laminar load --presign`: load that measures the node, not the generator.

    laminar load --presign --count 20000 [--accounts 400] [--tps R] [--batch 100]
                 [--rpc URL[,URL...]] [--wait 60] [--json]

Steps, and what the clock sees:
1. fund: the dev mnemonic's accounts send each of --accounts fresh senders (keys derived
   from --seed) enough ETH for its share, and the tool waits for those blocks;
2. sign: every transfer is signed up front (nonces 0..k-1 per sender, fees high enough to
   stay valid while full blocks raise the base fee), in a process per core; not timed;
3. send: JSON-RPC batches of --batch eth_sendRawTransaction, round robin over the --rpc
   URLs (a devnet's validators) from SENDER_THREADS threads, at --tps or, without it, as
   fast as the node admits. A transaction refused because the pool is full is sent again
   after the next block; any other refusal is final.
The report: admitted/s (over the send window), committed/s (over the inclusion blocks),
inclusion latency from just before the batch's POST to the poll that saw its block (p50,
p90, p99; also in blocks), the blocks' fill (transactions, gas used / gas limit) and their
commit rounds where the node serves `laminar_getCommit`; and eth_blockNumber's latency
while the load runs, timed by a process of its own (`HeadProbe`) so that the senders'
threads do not add to it.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from tools.rpc_client import LoadError, Rpc, RpcError, percentile

TRANSFER_GAS = 21_000
GWEI = 10**9
PRIORITY_FEE = 1 * GWEI
# Signed before the clock starts, the transactions must outlive the base fee's rise under
# full blocks (12.5% a block): a fee cap of 100 gwei, or 50x today's base fee, holds for
# about 35 full blocks from 1 gwei. The sender pays base fee + tip, not the cap.
MIN_FEE_CAP = 100 * GWEI
FEE_CAP_OVER_BASE_FEE = 50
POLL_INTERVAL_S = 0.1
PROBE_START_TIMEOUT_S = 30.0  # the head prober's process: to start, and to hand back its calls
SENDER_THREADS = 4
FUNDING_BATCH = 100
POOL_FULL = "txpool is full"
ALREADY_KNOWN = "already known"
DEFAULT_SEED = "laminar-load"


@dataclass(frozen=True)
class PresignPlan:
    """The run's knobs, checked by `check_plan` before anything is sent."""

    rpcs: tuple[str, ...]
    count: int
    accounts: int = 400
    batch: int = 100
    tps: Optional[float] = None
    wait: float = 60.0
    seed: str = DEFAULT_SEED


def check_plan(plan: PresignPlan) -> list[str]:
    problems = []
    if plan.count < 1:
        problems.append(f"--count: at least 1 transaction (got {plan.count})")
    if plan.accounts < 1:
        problems.append(f"--accounts: at least 1 sender (got {plan.accounts})")
    if not 1 <= plan.batch <= 1000:
        problems.append(f"--batch: 1..1000 transactions a request (got {plan.batch})")
    if plan.tps is not None and not plan.tps > 0:
        problems.append(f"--tps: must be > 0 (got {plan.tps:g}); leave it out to send as fast as admitted")
    if plan.wait < 0:
        problems.append("--wait: must be >= 0")
    for url in plan.rpcs:
        if not url.startswith(("http://", "https://")):
            problems.append(f"--rpc: an http:// or https:// URL (got {url!r})")
    return problems


@dataclass(frozen=True)
class SignedTransfer:
    tx_hash: str  # 0x..., lower case
    raw_hex: str  # 0x..., ready for eth_sendRawTransaction


def sender_keys(count: int, seed: str) -> list[bytes]:
    """Deterministic fresh keys: the same --seed gives the same senders."""
    from eth_hash.auto import keccak

    return [keccak(f"{seed}/{i}".encode()) for i in range(count)]


def _sign_share(args: tuple[bytes, int, int, int, int]) -> list[tuple[str, str]]:
    """One sender's transfers (run in a worker process)."""
    from eth_account import Account

    key, chain_id, first_nonce, count, fee_cap = args
    account = Account.from_key(key)
    out = []
    for nonce in range(first_nonce, first_nonce + count):
        recipient = os.urandom(20)
        signed = account.sign_transaction(
            {
                "chainId": chain_id,
                "nonce": nonce,
                "gas": TRANSFER_GAS,
                "value": 1,
                "maxFeePerGas": fee_cap,
                "maxPriorityFeePerGas": PRIORITY_FEE,
                "to": recipient,
                "data": b"",
            }
        )
        out.append(("0x" + signed.hash.hex().removeprefix("0x"), "0x" + bytes(signed.raw_transaction).hex()))
    return out


def shares(count: int, accounts: int) -> list[int]:
    """How many transfers each sender signs: as even as possible, senders with none dropped."""
    base, extra = divmod(count, accounts)
    return [n for n in (base + (1 if i < extra else 0) for i in range(accounts)) if n]


def sign_transfers(
    keys: list[bytes], counts: list[int], nonces: list[int], chain_id: int, fee_cap: int
) -> list[SignedTransfer]:
    """All transfers, ordered nonce-major (each sender's nonce k before anyone's k+1), so
    a batch holds many senders and each sender's transactions arrive in nonce order."""
    jobs = [(key, chain_id, nonce, n, fee_cap) for key, n, nonce in zip(keys, counts, nonces)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        per_sender = list(pool.map(_sign_share, jobs, chunksize=max(1, len(jobs) // 32)))
    ordered = []
    for round_ in itertools.zip_longest(*per_sender):
        ordered.extend(SignedTransfer(h, raw) for h, raw in (tx for tx in round_ if tx is not None))
    return ordered


@dataclass
class BlockSeen:
    number: int
    seen: float  # monotonic time of the poll that first saw it
    timestamp: int
    transactions: int
    gas_used: int
    gas_limit: int
    ours: int = 0


@dataclass
class Watch:
    """What the poller saw, shared with the sender threads."""

    head: int
    included: dict[str, tuple[int, float]] = field(default_factory=dict)  # hash -> (block, seen)
    blocks: dict[int, BlockSeen] = field(default_factory=dict)
    new_block: threading.Condition = field(default_factory=threading.Condition)
    wanted: set[str] = field(default_factory=set)
    error: Optional[str] = None


HeadCalls = list[tuple[float, Optional[float]]]


def _probe_heads(url: str, ready: Any, stop: Any, conn: Any) -> None:
    """The head prober's process: eth_blockNumber every POLL_INTERVAL_S after the last
    answer until `stop` is set, then (monotonic time sent, seconds to answer or None
    for a failure) of every call back through `conn`."""
    rpc = Rpc(url)
    calls: HeadCalls = []
    ready.set()
    while not stop.wait(POLL_INTERVAL_S):
        sent = time.monotonic()
        try:
            rpc.call("eth_blockNumber")
            calls.append((sent, time.monotonic() - sent))
        except Exception:  # noqa: BLE001 - a failed call is a data point, keep probing
            calls.append((sent, None))
    conn.send(calls)
    conn.close()


class HeadProbe:
    """How responsive the RPC stays while blocks commit: eth_blockNumber timed from a
    process of its own, so the load generator's sender threads (and their share of this
    process's GIL) never add to the latency it reports. Monotonic times are the
    machine's, comparable with the senders'."""

    def __init__(self, url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._ready, self._stop = context.Event(), context.Event()
        self._parent, child = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_probe_heads, args=(url, self._ready, self._stop, child), daemon=True,
        )
        self._process.start()
        child.close()
        self._ready.wait(PROBE_START_TIMEOUT_S)

    def stop(self) -> HeadCalls:
        self._stop.set()
        calls: HeadCalls = self._parent.recv() if self._parent.poll(PROBE_START_TIMEOUT_S) else []
        self._process.join(PROBE_START_TIMEOUT_S)
        return calls


class ChainWatcher(threading.Thread):
    """Polls the head every POLL_INTERVAL_S and records each wanted hash's block."""

    def __init__(self, url: str, watch: Watch) -> None:
        super().__init__(daemon=True)
        self.rpc = Rpc(url)
        self.watch = watch
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.poll_once()
                self.watch.error = None
            except Exception as exc:  # noqa: BLE001 - keep polling: the node may be busy
                self.watch.error = f"{type(exc).__name__}: {exc}"
            self.stopping.wait(POLL_INTERVAL_S)

    def poll_once(self) -> None:
        watch = self.watch
        head = int(self.rpc.call("eth_blockNumber"), 16)
        numbers = list(range(watch.head + 1, head + 1))
        if not numbers:
            return
        blocks = self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        seen = time.monotonic()
        with watch.new_block:
            for number, block in zip(numbers, blocks):
                if block is None:
                    break  # not served yet: from here next time
                record = BlockSeen(
                    number, seen, int(block["timestamp"], 16), len(block["transactions"]),
                    int(block["gasUsed"], 16), int(block["gasLimit"], 16),
                )
                for tx_hash in block["transactions"]:
                    key = tx_hash.lower()
                    if key in watch.wanted and key not in watch.included:
                        watch.included[key] = (number, seen)
                        record.ours += 1
                watch.blocks[number] = record
                watch.head = number
            watch.new_block.notify_all()

    def wait_for(self, hashes: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.watch.new_block:
            while not all(h in self.watch.included for h in hashes):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.watch.new_block.wait(min(left, 1.0))
        return True


@dataclass
class SendLog:
    """Per transaction: when its batch was posted and the head then; refusals."""

    sent_at: dict[str, float] = field(default_factory=dict)
    head_at_send: dict[str, int] = field(default_factory=dict)
    admitted_at: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    pool_full_retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class BatchSender:
    """Posts batches from a queue, SENDER_THREADS at a time, round robin over the RPCs."""

    def __init__(self, urls: tuple[str, ...], watch: Watch, log: SendLog) -> None:
        self.urls = urls
        self.watch = watch
        self.log = log
        self.batches: queue.Queue = queue.Queue()
        self.threads = [
            threading.Thread(target=self._run, args=(urls[i % len(urls)],), daemon=True)
            for i in range(max(SENDER_THREADS, len(urls)))
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        for _ in self.threads:
            self.batches.put(None)
        for thread in self.threads:
            thread.join()

    def _run(self, url: str) -> None:
        rpc = Rpc(url)
        while True:
            batch = self.batches.get()
            if batch is None:
                return
            while batch:
                batch = self._post(rpc, batch)
                if batch:  # the pool was full: try the rest after the next block
                    with self.watch.new_block:
                        self.watch.new_block.wait(1.0)

    def _post(self, rpc: Rpc, batch: list[SignedTransfer]) -> list[SignedTransfer]:
        """Sends one batch; returns what the pool refused for want of room."""
        head = self.watch.head
        started = time.monotonic()
        try:
            replies = rpc.session.post(
                rpc.url,
                json=[
                    {"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [tx.raw_hex]}
                    for i, tx in enumerate(batch)
                ],
                timeout=30,
            ).json()
        except Exception as exc:  # noqa: BLE001 - the whole batch counts as refused
            with self.log.lock:
                for tx in batch:
                    self.log.refused[tx.tx_hash] = f"{type(exc).__name__}: {exc}"
            return []
        answered = time.monotonic()
        by_id = {reply.get("id"): reply for reply in replies} if isinstance(replies, list) else {}
        retry = []
        with self.log.lock:
            for i, tx in enumerate(batch):
                reply = by_id.get(i, {"error": {"message": f"no reply: {replies!r:.200}"}})
                message = (reply.get("error") or {}).get("message", "")
                if "error" in reply and POOL_FULL in message:
                    retry.append(tx)
                    self.log.pool_full_retries += 1
                    continue
                self.log.sent_at.setdefault(tx.tx_hash, started)
                self.log.head_at_send.setdefault(tx.tx_hash, head)
                if "error" in reply and ALREADY_KNOWN not in message:
                    self.log.refused[tx.tx_hash] = message or str(reply["error"])
                else:
                    self.log.admitted_at[tx.tx_hash] = answered
        return retry


def fund_senders(rpc: Rpc, watcher: ChainWatcher, chain_id: int, keys: list[bytes], amounts: list[int], wait: float):
    """Dev accounts pay each fresh sender its amount; returns when all are in blocks."""
    from eth_account import Account

    from node.genesis import dev_accounts

    funders = [Account.from_key(a.private_key) for a in dev_accounts()]
    nonces = [int(rpc.call("eth_getTransactionCount", f.address, "pending"), 16) for f in funders]
    base_fee = int(rpc.call("eth_getBlockByNumber", "latest", False).get("baseFeePerGas", "0x0"), 16)
    raws, hashes = [], []
    for i, (key, amount) in enumerate(zip(keys, amounts)):
        f = i % len(funders)
        signed = funders[f].sign_transaction(
            {
                "chainId": chain_id, "nonce": nonces[f], "gas": TRANSFER_GAS, "value": amount,
                "maxFeePerGas": 2 * base_fee + PRIORITY_FEE, "maxPriorityFeePerGas": PRIORITY_FEE,
                "to": Account.from_key(key).address,
            }
        )
        nonces[f] += 1
        raws.append("0x" + bytes(signed.raw_transaction).hex())
        hashes.append("0x" + signed.hash.hex().removeprefix("0x"))
    watcher.watch.wanted.update(hashes)
    for start in range(0, len(raws), FUNDING_BATCH):
        chunk = raws[start : start + FUNDING_BATCH]
        replies = rpc.session.post(
            rpc.url,
            json=[{"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [raw]}
                  for i, raw in enumerate(chunk)],
            timeout=30,
        ).json()
        errors = [r["error"].get("message") for r in replies if isinstance(r, dict) and "error" in r]
        if errors or not isinstance(replies, list):
            raise LoadError(
                f"the node refused a funding transaction: {errors[0] if errors else replies!r:.300} "
                "(are the dev accounts funded on this chain?)"
            )
    if not watcher.wait_for(hashes, max(wait, 30.0)):
        raise LoadError(f"funding transactions not committed within {max(wait, 30.0):g}s")


def run_presigned(plan: PresignPlan, around_send: Optional[Callable[[str], None]] = None) -> dict:
    """Fund, sign, send, then report (see the module docstring). `around_send("start")` is
    called just before the first batch goes out and `around_send("end")` once every
    admitted transaction is in a block (or --wait ran out): what a profiler of the node
    measures between them is the node's own work for these transactions."""
    rpc = Rpc(plan.rpcs[0])
    try:
        chain_id = int(rpc.call("eth_chainId"), 16)
        head = int(rpc.call("eth_blockNumber"), 16)
        base_fee = int(rpc.call("eth_getBlockByNumber", "latest", False).get("baseFeePerGas", "0x0"), 16)
    except Exception as exc:  # noqa: BLE001 - connection refused, timeout, not JSON-RPC
        raise LoadError(f"cannot reach a JSON-RPC node at {plan.rpcs[0]}: {type(exc).__name__}: {exc}") from None
    fee_cap = max(MIN_FEE_CAP, FEE_CAP_OVER_BASE_FEE * base_fee)
    counts = shares(plan.count, plan.accounts)
    keys = sender_keys(len(counts), plan.seed)
    watch = Watch(head=head)
    watcher = ChainWatcher(plan.rpcs[0], watch)
    watcher.start()
    try:
        from eth_account import Account

        addresses = [Account.from_key(k).address for k in keys]
        nonces = [int(n, 16) for n in rpc.batch([("eth_getTransactionCount", [a, "pending"]) for a in addresses])]
        balances = [int(b, 16) for b in rpc.batch([("eth_getBalance", [a, "latest"]) for a in addresses])]
        needs = [n * (TRANSFER_GAS * fee_cap + 1) for n in counts]
        short = [(k, need - have) for k, need, have in zip(keys, needs, balances) if need > have]
        funding_started = time.monotonic()
        if short:
            fund_senders(rpc, watcher, chain_id, [k for k, _ in short], [amount for _, amount in short], plan.wait)
        funding_s = time.monotonic() - funding_started
        signing_started = time.monotonic()
        transfers = sign_transfers(keys, counts, nonces, chain_id, fee_cap)
        signing_s = time.monotonic() - signing_started
        return _send_and_report(plan, transfers, watcher, watch, len(short), funding_s, signing_s, around_send)
    finally:
        watcher.stopping.set()
        watcher.join()


def _send_and_report(plan, transfers, watcher, watch, funded, funding_s, signing_s, around_send) -> dict:
    log = SendLog()
    hashes = [tx.tx_hash for tx in transfers]
    with watch.new_block:
        watch.wanted.update(hashes)
    sender = BatchSender(plan.rpcs, watch, log)
    sender.start()
    probe = HeadProbe(plan.rpcs[0])
    if around_send is not None:
        around_send("start")
    began = time.monotonic()
    for k, start in enumerate(range(0, len(transfers), plan.batch)):
        if plan.tps is not None:
            delay = began + k * plan.batch / plan.tps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        sender.batches.put(transfers[start : start + plan.batch])
    sender.close()
    with log.lock:
        admitted = [h for h in hashes if h in log.admitted_at]
    send_window = (max(log.admitted_at.values()) - began) if admitted else None
    watcher.wait_for(admitted, plan.wait)
    if around_send is not None:
        around_send("end")
    head_calls = probe.stop()
    commit_rounds = _commit_rounds(watcher.rpc, watch, admitted)
    return presign_report(plan, watch, log, hashes, began, send_window, funded, funding_s, signing_s,
                          commit_rounds, head_calls)


def _commit_rounds(rpc: Rpc, watch: Watch, hashes: list[str]) -> Optional[list[int]]:
    """The round each inclusion block committed in (BFT chains), None where not served."""
    numbers = sorted({watch.included[h][0] for h in hashes if h in watch.included})
    if not numbers:
        return None
    try:
        commits = rpc.batch([("laminar_getCommit", [hex(n)]) for n in numbers])
    except (OSError, RpcError, ValueError):
        return None
    rounds = [int(c["round"], 16) if isinstance(c.get("round"), str) else c.get("round") for c in commits if c]
    return [r for r in rounds if isinstance(r, int)] or None


def presign_report(
    plan, watch, log, hashes, began, send_window, funded, funding_s, signing_s, rounds, probed: HeadCalls,
) -> dict:
    included = {h: watch.included[h] for h in hashes if h in watch.included}
    latencies = [seen - log.sent_at[h] for h, (_, seen) in included.items() if h in log.sent_at]
    latency_blocks = [n - log.head_at_send[h] for h, (n, _) in included.items() if h in log.head_at_send]
    inclusion = sorted({n for n, _ in included.values()})
    blocks = [watch.blocks[n] for n in inclusion]
    committed_tps = None
    window_s = None
    if len(blocks) > 1:
        window_s = blocks[-1].seen - blocks[0].seen
        if window_s > 0:
            committed_tps = sum(b.ours for b in blocks[1:]) / window_s

    def ms(value):
        return None if value is None else round(value * 1000, 1)

    # eth_blockNumber while the load ran: from the first POST to the last inclusion block.
    until = blocks[-1].seen if blocks else time.monotonic()
    head_calls = [took for sent, took in probed if began <= sent <= until]
    answered = [took for took in head_calls if took is not None]
    admitted = len(log.admitted_at)
    return {
        "mode": "presign",
        "rpc": list(plan.rpcs),
        "target_tps": plan.tps,
        "batch": plan.batch,
        "senders": len(shares(plan.count, plan.accounts)),
        "senders_funded": funded,
        "funding_s": round(funding_s, 2),
        "signing_s": round(signing_s, 2),
        "submitted": len(hashes),
        "admitted": admitted,
        "refused": len(log.refused),
        "refused_examples": list(log.refused.values())[:3],
        "pool_full_retries": log.pool_full_retries,
        "admitted_per_s": None if not send_window else round(admitted / send_window, 1),
        "send_window_s": None if send_window is None else round(send_window, 3),
        "committed": len(included),
        "not_committed": admitted - len(included),
        "committed_per_s": None if committed_tps is None else round(committed_tps, 1),
        "committed_window_s": None if window_s is None else round(window_s, 3),
        "latency_ms": {q: ms(percentile(latencies, p)) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))},
        "latency_blocks": {q: percentile(latency_blocks, p) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))},
        "block_number_ms": {
            "calls": len(head_calls),
            "failed": len(head_calls) - len(answered),
            **{q: ms(percentile(answered, p)) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))},
            "max": ms(max(answered, default=None)),
        },
        "blocks": {
            "count": len(blocks),
            "first": inclusion[0] if inclusion else None,
            "last": inclusion[-1] if inclusion else None,
            "max_txs": max((b.transactions for b in blocks), default=0),
            "mean_txs": round(sum(b.transactions for b in blocks) / len(blocks), 1) if blocks else 0,
            "mean_fill": round(sum(b.gas_used / b.gas_limit for b in blocks) / len(blocks), 3) if blocks else 0,
            "max_fill": round(max((b.gas_used / b.gas_limit for b in blocks), default=0), 3),
            "max_commit_round": None if rounds is None else max(rounds),
        },
        "definitions": "admitted/s: admitted transactions over the time from the first POST to the last "
        "admission. committed/s: our transactions in the inclusion blocks after the first, over the time "
        "from the first to the last of those blocks as the poller saw them. latency: from just before "
        "the batch's POST to the poll (every 0.1 s) that saw its block; in blocks: that block's number "
        "minus the head at the POST. eth_blockNumber: a probe process's calls (every 0.1 s after the "
        "last answer) from the first POST to the last inclusion block, from request to answer.",
    }


def print_presign_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    rate = "as fast as admitted" if report["target_tps"] is None else f"{report['target_tps']:g} tx/s"
    table = Table(
        title=f"laminar load --presign: {report['submitted']} transfers from {report['senders']} senders, "
        f"{rate}, batches of {report['batch']} via {', '.join(report['rpc'])}",
        show_header=False,
    )
    table.add_column(style="bold")
    table.add_column()
    lat, lat_b, blocks = report["latency_ms"], report["latency_blocks"], report["blocks"]

    def fmt(value, unit=""):
        return "-" if value is None else f"{value:g}{unit}"

    rows = [
        ("signed before the clock", f"{report['submitted']} in {report['signing_s']:g} s "
         f"({report['senders_funded']} senders funded in {report['funding_s']:g} s)"),
        ("admitted / refused", f"{report['admitted']} / {report['refused']} "
         f"({report['pool_full_retries']} resent after 'txpool is full')"),
        ("admitted/s", f"{fmt(report['admitted_per_s'])} over {fmt(report['send_window_s'], ' s')}"),
        ("committed (not committed)", f"{report['committed']} ({report['not_committed']})"),
        ("committed/s", f"{fmt(report['committed_per_s'])} over {fmt(report['committed_window_s'], ' s')}"),
        ("latency p50 / p90 / p99", " / ".join(fmt(lat[k], " ms") for k in ("p50", "p90", "p99"))),
        ("latency in blocks p50 / p90 / p99", " / ".join(fmt(lat_b[k]) for k in ("p50", "p90", "p99"))),
        ("inclusion blocks", f"{blocks['count']} (#{blocks['first']}..#{blocks['last']}), "
         f"{blocks['mean_txs']:g} txs on average, at most {blocks['max_txs']}"),
        ("block fill (gas used / limit)", f"mean {blocks['mean_fill']:.1%}, max {blocks['max_fill']:.1%}"),
        ("highest commit round", fmt(blocks["max_commit_round"])),
        ("eth_blockNumber p50 / p99 / max", " / ".join(
            fmt(report["block_number_ms"][k], " ms") for k in ("p50", "p99", "max"))
         + f" ({report['block_number_ms']['calls']} calls, {report['block_number_ms']['failed']} failed)"),
    ]
    cpu = report.get("node_cpu")
    if cpu:
        rows.append(("node CPU (all processes)", f"{cpu['cpu_seconds']:g} s, {fmt(cpu['cpu_us_per_committed_tx'])} us "
                     "per committed transaction"))
    for name, value in rows:
        table.add_row(name, str(value))
    console = Console()
    console.print(table)
    console.print(report["definitions"], style="dim")
    for example in report["refused_examples"]:
        console.print(f"refused: {example}", style="yellow", markup=False)


class NodeCpuMeter:
    """CPU seconds (user + system, from the kernel) of node processes and their children
    (Block-STM workers) between `around_send("start")` and `("end")`; optionally a py-spy
    profile of the same window (`py-spy record --subprocesses -f raw`)."""

    def __init__(self, pids: list[int], py_spy_out: Optional[str] = None) -> None:
        import psutil

        self.roots = []
        for pid in pids:
            try:
                self.roots.append(psutil.Process(pid))
            except psutil.Error as exc:
                raise LoadError(f"--node-pid {pid}: no such process ({exc})") from None
        self.py_spy_out = py_spy_out
        self.started: dict[int, float] = {}
        self.seconds: dict[str, float] = {}
        self.main_seconds = 0.0  # the node processes themselves, without their workers
        self._spies: list = []

    def _tree(self):
        import psutil

        for root in self.roots:
            try:
                yield root, [root, *root.children(recursive=True)]
            except psutil.Error:
                continue

    @staticmethod
    def _cpu(process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    def __call__(self, moment: str) -> None:
        import psutil

        if moment == "start":
            self._start_spies()
            for _, processes in self._tree():
                for process in processes:
                    try:
                        self.started[process.pid] = self._cpu(process)
                    except psutil.Error:
                        continue
            return
        for root, processes in self._tree():
            total = 0.0
            for process in processes:
                try:
                    used = self._cpu(process) - self.started.get(process.pid, 0.0)
                except psutil.Error:
                    continue
                total += used
                if process.pid == root.pid:
                    self.main_seconds += used
            self.seconds[str(root.pid)] = total
        self._stop_spies()

    def _start_spies(self) -> None:
        import shutil
        import subprocess
        import sys

        if self.py_spy_out is None:
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            raise LoadError("--py-spy: py-spy is not installed (pip install py-spy==0.4.3)")
        for index, root in enumerate(self.roots):
            out = self.py_spy_out if len(self.roots) == 1 else f"{self.py_spy_out}.{index}"
            self._spies.append(subprocess.Popen(
                [spy, "record", "--pid", str(root.pid), "--subprocesses", "--rate", "100", "--format", "raw",
                 "--output", out, "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))

    def _stop_spies(self) -> None:
        import signal

        for spy in self._spies:
            spy.send_signal(signal.SIGINT)
        for spy in self._spies:
            spy.wait(timeout=60)

    def report(self, committed: int) -> dict:
        total = sum(self.seconds.values())
        return {
            "cpu_seconds": round(total, 3),
            "cpu_seconds_by_node": {pid: round(s, 3) for pid, s in self.seconds.items()},
            "cpu_seconds_node_processes": round(self.main_seconds, 3),
            "cpu_seconds_workers": round(total - self.main_seconds, 3),
            "cpu_us_per_committed_tx": round(total / committed * 1e6, 1) if committed else None,
            "py_spy": self.py_spy_out,
        }
