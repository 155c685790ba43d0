"""Block-STM's knobs and test hooks, in one frozen object (as Aptos's
`BlockExecutorConfig`): an executor's behaviour is fixed when it is made."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass(frozen=True)
class BlockSTMConfig:
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Run the parallel machinery even with one worker or a small block (`laminar bench`
    # measures how Block-STM scales from one worker to N with it, `laminar blocktest`
    # checks the parallel path on one-transaction blocks); a node never does.
    force_parallel: bool = False
    # Adaptive fallback on high contention: first go on with one worker (it runs the rest
    # in index order on its own replica and sees its own writes at once), and only if
    # that still wastes most of its work, run the rest sequentially in-process.
    adaptive: bool = True
    narrow_on_contention: bool = True
    # Over the last `contention_window` finished incarnations, if at least
    # `contention_ratio` of them were wasted (aborted by validation, or stopped on an
    # ESTIMATE), parallel execution cannot pay.
    contention_window: int = 16
    contention_ratio: float = 0.5
    # Tasks per worker: it never waits for the coordinator between tasks.
    tasks_in_flight: int = 6
    # ... and this many once `deepen_after` incarnations in a row were not wasted, until
    # one is (`ContentionJudge.tasks_in_flight`). Six cover a worker while the coordinator
    # has the CPU; on 2 cores, where the coordinator shares them with both workers, it is
    # often off the CPU for longer, and the workers waited for tasks 20-30% of a block of
    # independent transfers. Deep queues on a contended block waste incarnations (amm:
    # +5-15% of them, +18% time), hence only after a clean run.
    deep_tasks_in_flight: int = 24
    deepen_after: int = 32
    # A worker may hold this many tasks more when they follow a task of the same sender
    # it is running (sender-affinity dispatch).
    affinity_slack: int = 6
    # Ready transactions passed over (their sender's worker is full) before a dispatch stops.
    affinity_lookahead: int = 32
    # wait() timeout of the coordinator: then it checks every worker is still alive.
    liveness_timeout_s: float = 5.0
    # In-memory pre-states with at most this many nodes go to every worker with the block.
    ship_prestate_limit: int = 50_000
    # The access-list importer: the workers share the state root after their transactions
    # (`execution.post_state.root_part`) instead of the coordinator folding it while they
    # run. Off: on the 4-validator devnet (2026-12-07, two pairs) it cost 20-30% more CPU
    # per committed transaction and a fifth of the throughput, as the root then waits
    # for the last transactions instead of overlapping them; a lone import of the bench
    # blocks was faster with it.
    share_root_with_workers: bool = False
    # Test hook: called with the number of results received so far in the block.
    on_result: Optional[Callable[[int], None]] = None
    # Test hook: switch to sequential once this many results have been received.
    fallback_after: Optional[int] = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"Block-STM needs at least one worker, got {self.workers}")
        if not 1 <= self.tasks_in_flight <= self.deep_tasks_in_flight:
            raise ValueError(
                f"tasks in flight must satisfy 1 <= tasks_in_flight ({self.tasks_in_flight})"
                f" <= deep_tasks_in_flight ({self.deep_tasks_in_flight})"
            )
