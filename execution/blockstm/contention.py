"""Judging contention: when most recent incarnations are wasted, parallel execution cannot
pay for the rest of the block (first step: one worker; second: sequential in-process)."""

from __future__ import annotations

from typing import Optional

from execution.blockstm.config import BlockSTMConfig


class ContentionJudge:
    def __init__(self, config: BlockSTMConfig) -> None:
        self.config = config
        self.finished = 0  # incarnations finished (done or blocked)
        self.wasted = 0  # of which aborted by validation or stopped on an ESTIMATE
        self.window: list[tuple[int, int]] = []  # (finished, wasted) samples
        self.judge_after = 0  # finished incarnations before contention is judged again
        self.last_waste_at = 0  # `finished` when an incarnation was last wasted

    def incarnation_done(self) -> None:
        self.finished += 1

    def incarnation_blocked(self) -> None:
        self.finished += 1
        self.wasted += 1
        self.last_waste_at = self.finished

    def incarnation_aborted(self) -> None:
        self.wasted += 1
        self.last_waste_at = self.finished

    def tasks_in_flight(self) -> int:
        """How many tasks each worker may hold: deep queues after `deepen_after`
        incarnations in a row that were not wasted, shallow again from the first that is."""
        config = self.config
        if self.finished - self.last_waste_at >= config.deepen_after:
            return config.deep_tasks_in_flight
        return config.tasks_in_flight

    def verdict(self, received: int, commit_idx: int, n: int) -> Optional[str]:
        """Why the rest of the block should not go on as it does, or None."""
        config = self.config
        if config.fallback_after is not None:
            if received >= config.fallback_after and commit_idx < n:
                return f"forced after {received} results (test hook)"
            return None
        if not config.adaptive or self.finished < self.judge_after:
            return None
        window = self.window
        size = config.contention_window
        if not window or self.finished - window[-1][0] >= size // 2:
            window.append((self.finished, self.wasted))
            if len(window) > 3:
                del window[0]
        first = window[0]
        done = self.finished - first[0]
        if done < size:
            return None
        wasted = self.wasted - first[1]
        if wasted < config.contention_ratio * done:
            return None
        return (
            f"contention: {wasted} of the last {done} incarnations wasted "
            f"(aborted or blocked); the rest of the block runs sequentially"
        )

    def start_over(self, in_flight: int) -> None:
        """Judge the one-worker phase on its own, not on the incarnations still in flight
        from the parallel phase (they ran on stale reads and will mostly be wasted)."""
        self.window = []
        self.judge_after = self.finished + in_flight
