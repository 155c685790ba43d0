"""The collaborative scheduler, as the coordinator runs it (single-threaded, no atomics).

Block-STM's two indices become: a min-heap of READY transactions (execution, lowest index
first) and `validation_idx` (validation, lowest index first). After an incarnation
finishes, it is validated; if it wrote a location its previous incarnation did not, every
executed transaction above it is revalidated too. A failed validation aborts the
incarnation (its writes become ESTIMATEs), schedules the next incarnation and revalidates
everything above. A reader that met an ESTIMATE of transaction k waits until k's next
incarnation finishes. The commit index advances over transactions validated with every
lower transaction already committed (so committed write sets are final).

Every status transition is a method here; the coordinator asks, the scheduler decides.
"""

from __future__ import annotations

import enum
import heapq

from execution.blockstm.messages import Incarnation, TxIndex


class TaskStatus(enum.IntEnum):
    READY = 0  # waiting for a worker
    EXECUTING = 1  # an incarnation is on a worker
    EXECUTED = 2  # its result is in; not yet committed
    WAITING = 3  # read an ESTIMATE: waits for that transaction's next incarnation
    COMMITTED = 4  # validated against final lower write sets: final itself


READY, EXECUTING, EXECUTED, WAITING, COMMITTED = (
    TaskStatus.READY, TaskStatus.EXECUTING, TaskStatus.EXECUTED, TaskStatus.WAITING,
    TaskStatus.COMMITTED,
)


class Scheduler:
    def __init__(self, n: int) -> None:
        self.n = n
        self.status: list[TaskStatus] = [READY] * n
        self.incarnation: list[Incarnation] = [0] * n
        self.ready = list(range(n))  # a heap (already sorted)
        self.dependents: dict[TxIndex, list[TxIndex]] = {}
        self.validation_idx = n  # nothing executed yet
        self.commit_idx = 0
        self.executions = 0
        self.aborts = 0
        self.max_executed = -1

    # ---- queries ----------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.commit_idx >= self.n

    def is_current(self, tx: TxIndex, incarnation: Incarnation) -> bool:
        """A result of `incarnation` counts: it is the one running (not superseded)."""
        return incarnation == self.incarnation[tx] and self.status[tx] == EXECUTING

    def next_to_commit(self) -> TxIndex:
        """The lowest uncommitted transaction if it has executed, else -1."""
        c = self.commit_idx
        if c < self.n and self.status[c] == EXECUTED:
            return c
        return -1

    def validation_range(self) -> range:
        """The executed transactions to validate now, lowest first."""
        return range(max(self.validation_idx, self.commit_idx), self.max_executed + 1)

    # ---- transitions ------------------------------------------------------------------

    def next_task(self) -> TxIndex:
        """Lowest READY transaction (marked EXECUTING), or -1."""
        ready = self.ready
        status = self.status
        while ready:
            tx = heapq.heappop(ready)
            if status[tx] == READY:
                status[tx] = EXECUTING
                self.executions += 1
                return tx
        return -1

    def put_back(self, tx: TxIndex) -> None:
        """Undo `next_task` for `tx`: it was not dispatched (same incarnation, READY)."""
        self.status[tx] = READY
        self.executions -= 1
        heapq.heappush(self.ready, tx)

    def _make_ready(self, tx: TxIndex) -> None:
        self.incarnation[tx] += 1
        self.status[tx] = READY
        heapq.heappush(self.ready, tx)

    def finished(self, tx: TxIndex, wrote_new: bool) -> None:
        self.status[tx] = EXECUTED
        if tx > self.max_executed:
            self.max_executed = tx
        for dep in self.dependents.pop(tx, ()):
            if self.status[dep] == WAITING:
                self._make_ready(dep)
        # Block-STM revalidates everything above `tx` only when it wrote a new location;
        # otherwise `tx` alone. The pointer form revalidates the executed transactions
        # above in both cases: by-value checks are cheap and the window above the commit
        # index is small.
        if tx < self.validation_idx:
            self.validation_idx = tx

    def validated_below(self, end: TxIndex) -> None:
        """Every executed transaction below `end` passed validation as of now."""
        if end > self.validation_idx:
            self.validation_idx = end

    def commit(self, tx: TxIndex) -> None:
        """`tx`, the lowest uncommitted one, validated against final write sets."""
        assert tx == self.commit_idx and self.status[tx] == EXECUTED
        self.status[tx] = COMMITTED
        self.commit_idx = tx + 1

    def blocked(self, tx: TxIndex, dep: TxIndex) -> None:
        """`tx` read an ESTIMATE of `dep`: wait for dep's next incarnation to finish."""
        if self.status[dep] in (EXECUTED, COMMITTED):
            self._make_ready(tx)
        else:
            self.status[tx] = WAITING
            self.dependents.setdefault(dep, []).append(tx)

    def retry(self, tx: TxIndex) -> None:
        """Run `tx` again without waiting (one-worker mode, see `release_waiting`)."""
        self._make_ready(tx)

    def release_waiting(self) -> None:
        """Make every parked transaction ready again (one-worker mode: the worker runs
        tasks in index order and sees its own writes, so the transaction a reader waits
        for will have run again, on the same worker, before the reader runs)."""
        waiting = self.dependents
        self.dependents = {}
        for waiters in waiting.values():
            for tx in waiters:
                if self.status[tx] == WAITING:
                    self._make_ready(tx)

    def abort(self, tx: TxIndex) -> None:
        self.aborts += 1
        self._make_ready(tx)
        if tx + 1 < self.validation_idx:
            self.validation_idx = tx + 1
