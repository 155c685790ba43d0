"""Where a node's CPU goes per transaction: py-spy samples sorted into the stages of the
path a transaction takes (HTTP body to committed receipt), as a table.

    python -m bench.profile_table PROFILE.raw --transactions N --cpu-seconds S

PROFILE.raw is `py-spy record --subprocesses -f raw` output (one line per distinct stack:
frames root to leaf separated by ';', then the sample count), as `laminar load --presign
--node-pid PID --py-spy FILE` writes it. Each sample goes to the innermost frame that
names a stage (`STAGES`, first match from the leaf up); a stage's share of the samples
times the node's measured CPU seconds over N transactions is its microseconds per
transaction. Samples are wall-clock-on-CPU by py-spy's judgement, so the shares are
estimates; the CPU seconds come from the kernel's process accounting.
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
    ("admission: RLP decoding", ("Mempool._decode",)),
    ("admission: pool rules and state reads", ("Mempool.add_raw", "Mempool._admit", "accept_gossiped_transaction")),
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


@dataclass(frozen=True)
class StageRow:
    stage: str
    samples: int
    share: float
    microseconds_per_tx: Optional[float]


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for stage, markers in STAGES:
            if any(marker in frame for marker in markers):
                return stage
    if any(WORKER_MARKER in frame for frame in frames):
        return "workers: other"
    return OTHER


def read_raw(path: Path) -> Counter:
    """Samples per stage from a py-spy raw (collapsed stacks) file."""
    counts: Counter = Counter()
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = [re.sub(r":\d+\)", ")", frame) for frame in stack.split(";")]
        counts[stage_of(frames)] += int(number)
    return counts


def table(counts: Counter, transactions: Optional[int], cpu_seconds: Optional[float]) -> list[StageRow]:
    total = sum(counts.values()) or 1
    rows = []
    for stage, samples in counts.most_common():
        share = samples / total
        per_tx = None
        if transactions and cpu_seconds is not None:
            per_tx = share * cpu_seconds / transactions * MICROSECONDS
        rows.append(StageRow(stage, samples, share, per_tx))
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
    parser.add_argument("--cpu-seconds", type=float, help="the node's CPU seconds in that window (all processes)")
    args = parser.parse_args(argv)
    print(markdown(table(read_raw(args.raw), args.transactions, args.cpu_seconds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
