"""Where a node's CPU goes per transaction: py-spy samples sorted into the stages of the
path a transaction takes (HTTP body to committed receipt), as a table.

    python -m bench.profile_table PROFILE.raw --transactions N --node-cpu-seconds S --workers-cpu-seconds W

PROFILE.raw is `py-spy record --subprocesses -f raw` output (one line per distinct stack:
frames root to leaf separated by ';', then the sample count), as `laminar load --presign
--node-pid PID --py-spy FILE` writes it, with the CPU seconds it reports for the node
process and for its Block-STM workers (kernel accounting). Each sample goes to the
innermost frame that names a stage (`STAGES`, first match from the leaf up). A stage's
microseconds per transaction are its share of its process group's samples (node process,
or workers) times that group's CPU seconds over N. Samples whose innermost frame is a
wait (`IDLE_LEAVES`: a worker blocked on its pipe, the event loop in epoll) are dropped:
py-spy counts some of them as active. py-spy samples wall-clock time of running or
runnable threads, so on a busy machine the shares are estimates.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

WORKER_MARKER = "execution/blockstm/worker.py"
MICROSECONDS = 1e6

# (stage, frame markers): a frame matches when its text contains one of the markers. The
# innermost matching frame decides, so specific stages (sender recovery) sit under
# general ones (admission) without being counted twice.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("admission: sender recovery", ("recover_sender", "extract_transaction_sender", "get_sender")),
    ("admission: RLP decoding", ("StatelessChecks.decode",)),
    ("admission: pool rules and state reads", ("Mempool.add_raw", "Mempool.add_checked", "Mempool._admit",
                                               "accept_gossiped_transaction")),
    ("gossip: publishing", ("P2PService._publish_batch", "P2PService.publish_transaction", "P2PService._publish")),
    ("gossip: receiving (libp2p, validation)", ("TopicValidator.__call__", "libp2p/pubsub", "libp2p/stream_muxer",
                                                 "libp2p/security", "libp2p/network")),
    ("consensus: state machine, WAL, messages", ("consensus/state_machine.py", "consensus/wal.py",
                                                 "consensus/messages.py", "consensus/vote_set.py")),
    ("commit: block, receipts and index writes (LevelDB)", ("Chain.write_block", "ChainStore.commit_block")),
    ("commit: listeners, pool update, subscriptions", ("_publish_commit", "Chain.advance_head", "on_new_head",
                                                       "SubscriptionHub")),
    ("block execution: coordinator (fold, tries, state root)", ("Chain.propose", "Chain.import_block",
                                                                "apply_synced_block")),
    ("JSON-RPC: other methods (pollers)", ("EthApi.get_block", "EthApi.get_transaction", "EthApi.block_number",
                                           "EthApi.get_balance", "EthApi.get_transaction_count")),
    ("JSON-RPC: HTTP, JSON, dispatch", ("node/rpc/server.py", "hypercorn")),
    ("workers: EVM execution", ("BlockContext.execute", "Worker.run_task")),
    ("workers: messages to and from the coordinator", ("Worker.next_message", "Worker.flush", "Worker.handle")),
)
OTHER = "other (event loop, timers, start-up)"
IDLE_LEAVES = ("Worker.run (execution/blockstm/worker.py)", "get_events (trio/", "select (selectors.py)",
               "wait (threading.py)", "_recv_bytes (multiprocessing/connection.py)",
               # trio's cached thread waiting for its next job (a job's frames are below it)
               "WorkerThread._work (trio/_core/_thread_cache.py)",
               "main (multiprocessing/resource_tracker.py)")
# A leaf that is a wait only under these callers: an admission worker blocked on its queue.
IDLE_UNDER = (("Connection._recv (multiprocessing/connection.py)", "Queue.get (multiprocessing/queues.py)"),)
WORKERS = "workers"
NODE = "node"
PROCESS_FRAME = "process "


@dataclass(frozen=True)
class StageRow:
    stage: str
    samples: int
    share: float
    microseconds_per_tx: Optional[float]


def is_wait(frames: list[str]) -> bool:
    """Whether a sample is a thread or process waiting, not working (py-spy shows some
    blocked threads as active: the blocking call has no Python frame of its own)."""
    leaf = frames[-1]
    if any(idle in leaf for idle in IDLE_LEAVES):
        return True
    return any(idle in leaf and any(caller in frame for frame in frames)
               for idle, caller in IDLE_UNDER)


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for stage, markers in STAGES:
            if any(marker in frame for marker in markers):
                return stage
    if any(WORKER_MARKER in frame for frame in frames):
        return "workers: other"
    return OTHER


def read_raw(path: Path) -> dict[str, Counter]:
    """Samples per stage, by process group (NODE, WORKERS), from a py-spy raw file."""
    counts: dict[str, Counter] = {NODE: Counter(), WORKERS: Counter()}
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = [re.sub(r":\d+\)", ")", frame) for frame in stack.split(";")]
        if is_wait(frames):
            continue
        # py-spy nests a child's stack under its parents' process frames: the node's
        # Block-STM and admission workers (forkserver children) are the WORKERS group,
        # whose CPU the meter reports together.
        processes = sum(1 for frame in frames if frame.startswith(PROCESS_FRAME))
        group = WORKERS if processes > 1 else NODE
        counts[group][stage_of(frames)] += int(number)
    return counts


def table(counts: dict[str, Counter], transactions: Optional[int],
          cpu_seconds: Optional[dict[str, float]]) -> list[StageRow]:
    """One row per stage; `cpu_seconds` by process group (NODE, WORKERS)."""
    everything = sum(sum(c.values()) for c in counts.values()) or 1
    samples_of: Counter = Counter()
    per_tx_of: dict[str, Optional[float]] = {}
    for group, group_counts in counts.items():
        group_total = sum(group_counts.values()) or 1
        for stage, samples in group_counts.items():
            samples_of[stage] += samples  # a stage may run in both groups (admission)
            per_tx = None
            if transactions and cpu_seconds is not None:
                per_tx = samples / group_total * cpu_seconds[group] / transactions * MICROSECONDS
                per_tx += per_tx_of.get(stage) or 0.0
            per_tx_of[stage] = per_tx
    rows = [StageRow(stage, samples, samples / everything, per_tx_of[stage])
            for stage, samples in samples_of.items()]
    rows.sort(key=lambda row: -(row.microseconds_per_tx if row.microseconds_per_tx is not None else row.samples))
    return rows


def markdown(rows: list[StageRow]) -> str:
    lines = ["| stage | share of samples | us per transaction |", "| --- | ---: | ---: |"]
    for row in rows:
        per_tx = "-" if row.microseconds_per_tx is None else f"{row.microseconds_per_tx:.0f}"
        lines.append(f"| {row.stage} | {row.share:.1%} | {per_tx} |")
    if rows and rows[0].microseconds_per_tx is not None:
        total = sum(r.microseconds_per_tx or 0 for r in rows)
        lines.append(f"| **whole node** | 100% | **{total:.0f}** |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", type=Path, help="py-spy raw profile")
    parser.add_argument("--transactions", type=int, help="transactions the profiled window committed")
    parser.add_argument("--node-cpu-seconds", type=float, help="the node process's CPU seconds in that window")
    parser.add_argument("--workers-cpu-seconds", type=float, help="its workers' CPU seconds in that window")
    args = parser.parse_args(argv)
    seconds = None
    if args.node_cpu_seconds is not None and args.workers_cpu_seconds is not None:
        seconds = {NODE: args.node_cpu_seconds, WORKERS: args.workers_cpu_seconds}
    print(markdown(table(read_raw(args.raw), args.transactions, seconds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
