"""Admission workers: a batch of raw transactions checked in other processes.

A transaction's stateless checks (`node.mempool.StatelessChecks`: decode, re-encode for
the canonical form, signature values, sender recovery) cost about 100 us of CPU a
transfer. Run on the trio thread, a JSON-RPC batch of 100 `eth_sendRawTransaction`
holds the event loop for 10 ms or more, so every other request (an `eth_blockNumber`
poll) waits behind it, and the work competes for the GIL with the executor's
coordinator thread. `AdmissionWorkers` ships such a batch to a small process pool and
awaits the answer without blocking the loop; only the pool's own rules and the state
checks (`Mempool.add_checked`) stay on the trio thread, in the batch's order.

Small batches (a wallet's single transaction) are checked inline: shipping them costs
more than the checks. A worker that dies or fails is replaced and its batch checked
inline, so a broken pool never fails a request.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Optional, Sequence, Union

import trio

from execution.processes import main_module_hidden, worker_context
from node.mempool import CheckedTransaction, InvalidTransactionError, StatelessChecks

log = logging.getLogger(__name__)

# Fewer raw transactions than this in one call are checked inline (a round trip to a
# worker costs about as much as checking a few transactions).
MIN_BATCH_FOR_WORKERS = 8

CheckOutcome = Union[CheckedTransaction, InvalidTransactionError]

_worker_checks: Optional[StatelessChecks] = None


def _init_worker(checks: StatelessChecks) -> None:
    global _worker_checks
    _worker_checks = checks


def check_all(checks: StatelessChecks, raws: Sequence[bytes]) -> list[CheckOutcome]:
    """Each raw transaction checked, or the reason it is invalid, in order."""
    outcomes: list[CheckOutcome] = []
    for raw in raws:
        try:
            outcomes.append(checks.check(raw))
        except InvalidTransactionError as exc:
            outcomes.append(exc)
    return outcomes


def _check_in_worker(raws: list[bytes]) -> list[CheckOutcome]:
    assert _worker_checks is not None, "admission worker started without its checks"
    return check_all(_worker_checks, raws)


async def _result_of(future: Future) -> list[CheckOutcome]:
    """Await a concurrent future from trio without a thread: its completion callback
    wakes this task through the trio token."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: Future) -> None:
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:
            pass  # the node stopped while a worker was still checking: nobody waits

    future.add_done_callback(wake)
    await done.wait()
    return future.result()


class AdmissionWorkers:
    """`workers` processes for the stateless checks, started on the first batch big
    enough to use them. 0 workers: every check inline."""

    def __init__(self, checks: StatelessChecks, workers: int) -> None:
        if workers < 0:
            raise ValueError("admission workers: must be 0 or more")
        self.checks = checks
        self.workers = workers
        self._pool: Optional[ProcessPoolExecutor] = None
        self.checked_in_workers = 0  # transactions, for tests and metrics
        self.checked_inline = 0

    def _started_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=worker_context(["node.admission"]),
                initializer=_init_worker,
                initargs=(self.checks,),
            )
        return self._pool

    def worker_pids(self) -> list[int]:
        """The running worker processes (none before the first big batch)."""
        pool = self._pool
        processes = getattr(pool, "_processes", None) or {}
        return [process.pid for process in processes.values() if process.is_alive()]

    def _inline(self, raws: Sequence[bytes]) -> list[CheckOutcome]:
        self.checked_inline += len(raws)
        return check_all(self.checks, raws)

    async def check_many(self, raws: Sequence[bytes]) -> list[CheckOutcome]:
        """Every raw transaction's stateless checks, in order."""
        if self.workers == 0 or len(raws) < MIN_BATCH_FOR_WORKERS:
            return self._inline(raws)
        chunks = min(self.workers, len(raws) // MIN_BATCH_FOR_WORKERS)
        size = -(-len(raws) // chunks)
        parts = [list(raws[start:start + size]) for start in range(0, len(raws), size)]
        try:
            with main_module_hidden():  # the pool starts its processes on submit
                futures = [self._started_pool().submit(_check_in_worker, part) for part in parts]
        except (BrokenProcessPool, RuntimeError) as exc:
            self._replace_pool(exc)
            return self._inline(raws)
        outcomes: list[CheckOutcome] = []
        for part, future in zip(parts, futures):
            try:
                outcomes.extend(await _result_of(future))
                self.checked_in_workers += len(part)
            except Exception as exc:  # noqa: BLE001 - a worker's failure must not fail the calls
                self._replace_pool(exc)
                outcomes.extend(self._inline(part))
        return outcomes

    def _replace_pool(self, exc: BaseException) -> None:
        log.error("admission worker failed (%s: %s); checking inline until a new one starts",
                  type(exc).__name__, exc)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the worker processes (a check still running is abandoned)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
