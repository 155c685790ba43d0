"""`BlockSTMExecutor`: Block-STM over long-lived worker processes (see docs/blockstm.md)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from contextlib import contextmanager
from multiprocessing.connection import wait
from typing import Any, Callable, Iterator, Optional

import rlp
from eth.abc import ReceiptAPI
from eth.rlp.accounts import Account
from eth.vm.forks import CancunVM, PragueVM, ShanghaiVM
from eth.vm.forks.cancun.constants import (
    BEACON_ROOTS_ADDRESS,
    BEACON_ROOTS_CONTRACT_CODE,
    BLOB_TX_TYPE,
    HISTORY_BUFFER_LENGTH,
)
from eth.vm.forks.prague.constants import (
    HISTORY_SERVE_WINDOW,
    HISTORY_STORAGE_ADDRESS,
    HISTORY_STORAGE_CONTRACT_CODE,
)
from eth.vm.interrupt import EVMMissingData

from execution.blockstm import messages as m
from execution.blockstm.mvmemory import MVMemory
from execution.blockstm.scheduler import COMMITTED, EXECUTED, EXECUTING, Scheduler
from execution.blockstm.state import OutcomeComputation, fold_write_set
from execution.blockstm.worker import worker_main
from execution.executor import (
    BlockInput,
    ExecutionResult,
    ExecutionStats,
    InvalidBlockError,
    StateView,
)
from execution.overlay import OverlayDB
from execution.sequential import (
    SequentialExecutor,
    _GasHeader,
    apply_withdrawals,
    assign_pow_rewards,
    block_postprocessing,
    make_execution_context,
)

log = logging.getLogger(__name__)

TASKS_IN_FLIGHT = 6  # per worker: it never waits for the coordinator between tasks
LIVENESS_TIMEOUT_S = 5.0  # wait() timeout: then check every worker is still alive


class WorkerFailure(Exception):
    """A worker died, closed its pipe or raised: the block falls back to sequential."""


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Keep forkserver/spawn children from re-running the parent's __main__ script.

    Workers need nothing of __main__ (their target lives in this package); a script
    without an `if __name__ == "__main__"` guard would otherwise run again in every
    worker. A `python -m pkg` main (with a __spec__) is imported as a module, harmlessly.
    """
    main = sys.modules.get("__main__")
    hidden = None
    if main is not None and getattr(main, "__spec__", None) is None:
        hidden = main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if hidden is not None:
            main.__file__ = hidden  # type: ignore[union-attr]


class _Pool:
    def __init__(self, workers: int) -> None:
        if os.name == "posix":
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["execution.blockstm.worker"])
        else:
            ctx = multiprocessing.get_context("spawn")
        self.conns = []
        self.procs = []
        with _main_module_hidden():
            for i in range(workers):
                parent, child = ctx.Pipe(duplex=True)
                proc = ctx.Process(target=worker_main, args=(child, i), daemon=True,
                                   name=f"laminar-blockstm-{i}")
                proc.start()
                child.close()
                self.conns.append(parent)
                self.procs.append(proc)

    def alive(self) -> bool:
        return all(p.is_alive() for p in self.procs)

    def close(self, timeout: float = 2.0) -> None:
        for conn in self.conns:
            try:
                conn.send((m.STOP,))
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        for conn in self.conns:
            conn.close()


def _static_reason(env: Any, tx: Any, gas_used: int) -> Optional[str]:
    """The checks of `check_transaction` that come before any state read and depend on
    the block's cumulative gas (which workers do not know): same words as sequential."""
    if getattr(tx, "type_id", None) == BLOB_TX_TYPE:
        return (
            "blob transactions (type 3) are not accepted: this chain has no data "
            "availability layer for blobs"
        )
    if gas_used + tx.gas > env.gas_limit:
        return (
            f"gas limit {tx.gas} exceeds the block's remaining gas "
            f"{env.gas_limit - gas_used} (block gas limit {env.gas_limit}, "
            f"{gas_used} already used)"
        )
    return None


def _prelude(state: Any, env: Any) -> dict[bytes, int]:
    """py-evm's block_preprocessing as storage writes {slot key: value}."""
    writes: dict[bytes, int] = {}
    vm_class = env.vm_class
    if issubclass(vm_class, CancunVM):
        if state.get_code(BEACON_ROOTS_ADDRESS) == BEACON_ROOTS_CONTRACT_CODE:
            root = env.parent_beacon_block_root or b"\x00" * 32
            slot = env.timestamp % HISTORY_BUFFER_LENGTH
            writes[m.slot_key(BEACON_ROOTS_ADDRESS, slot)] = env.timestamp
            writes[m.slot_key(BEACON_ROOTS_ADDRESS, slot + HISTORY_BUFFER_LENGTH)] = (
                int.from_bytes(root, "big")
            )
    if issubclass(vm_class, PragueVM):
        if state.get_code(HISTORY_STORAGE_ADDRESS) == HISTORY_STORAGE_CONTRACT_CODE:
            writes[m.slot_key(
                HISTORY_STORAGE_ADDRESS, (env.number - 1) % HISTORY_SERVE_WINDOW
            )] = int.from_bytes(env.parent_hash, "big")
    return writes


class BlockSTMExecutor:
    """Block-STM (Gelbach et al., PPoPP 2023) with worker processes; matches sequential."""

    name = "blockstm"

    def __init__(self, workers: Optional[int] = None) -> None:
        self.workers = max(1, int(workers if workers is not None else (os.cpu_count() or 1)))
        self._pool: Optional[_Pool] = None
        self._block_id = 0
        self._sequential = SequentialExecutor()
        # Test hook: called with the number of results received so far in the block.
        self.on_result: Optional[Callable[[int], None]] = None
        self.last_fallback_reason: Optional[str] = None

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> "BlockSTMExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def worker_pids(self) -> list[int]:
        """Test hook: the worker processes' pids (starts them if needed)."""
        return [p.pid for p in self._ensure_pool().procs]

    def _ensure_pool(self) -> _Pool:
        if self._pool is not None and not self._pool.alive():
            self._kill_pool()
        if self._pool is None:
            self._pool = _Pool(self.workers)
        return self._pool

    def _kill_pool(self) -> None:
        pool = self._pool
        self._pool = None
        if pool is None:
            return
        for proc in pool.procs:
            if proc.is_alive():
                proc.kill()
        for proc in pool.procs:
            proc.join(2.0)
        for conn in pool.conns:
            conn.close()

    # ----------------------------------------------------------------- execute
    def execute(self, block: BlockInput, pre_state: StateView) -> ExecutionResult:
        started = time.perf_counter()
        n = len(block.transactions)
        if self.workers < 2 or n < 2 * self.workers:
            return self._fallback(block, pre_state, started, "small block or one worker")
        pool = self._ensure_pool()
        self._block_id += 1
        run = _BlockRun(self, pool, self._block_id, block, pre_state)
        try:
            result = run.run()
        except WorkerFailure as exc:
            log.warning("Block-STM: %s; executing the block sequentially", exc)
            self._kill_pool()
            return self._fallback(block, pre_state, started, str(exc))
        except BaseException:
            run.end_block()
            raise
        finished = time.perf_counter()
        result.stats.seconds = finished - started
        result.stats.execution_seconds = run.executed_at - started
        result.stats.commit_seconds = finished - run.executed_at
        self.last_fallback_reason = None
        return result

    def _fallback(self, block: BlockInput, pre_state: StateView, started: float,
                  reason: str) -> ExecutionResult:
        self.last_fallback_reason = reason
        result = self._sequential.execute(block, pre_state)
        finished = time.perf_counter()
        result.stats = ExecutionStats(
            executor=self.name,
            transactions=len(block.transactions),
            seconds=finished - started,
            workers=1,
            incarnations=len(block.transactions),
            fallback=True,
            execution_seconds=finished - started - result.stats.commit_seconds,
            commit_seconds=result.stats.commit_seconds,
        )
        return result


class _BlockRun:
    """One block: the coordinator loop (scheduling, validation, rolling commit)."""

    def __init__(self, owner: BlockSTMExecutor, pool: _Pool, block_id: int,
                 block: BlockInput, pre_state: StateView) -> None:
        self.owner = owner
        self.pool = pool
        self.block_id = block_id
        self.block = block
        self.env = block.env
        self.pre_state = pre_state
        self.txs = tuple(block.transactions)
        self.n = len(self.txs)
        self.raw: list[Optional[bytes]] = [None] * self.n
        self.mv = MVMemory()
        self.sched = Scheduler(self.n)
        self.results: list[Optional[tuple]] = [None] * self.n
        self.assigned = [-1] * self.n
        self.in_flight = [0] * len(pool.conns)
        self.pending_updates: list[list] = [[] for _ in pool.conns]
        self.received = 0
        self.gas_used = 0
        self.tx_gas: list[int] = [0] * self.n
        self.started_block = False

    # ---------------------------------------------------------------- messaging
    def _send(self, w: int, msg: tuple) -> None:
        try:
            self.pool.conns[w].send(msg)
        except (OSError, ValueError, BrokenPipeError) as exc:
            raise WorkerFailure(f"worker {w} pipe closed ({exc})") from None

    def end_block(self) -> None:
        """Tell workers the block is over and wait for their acknowledgements."""
        if not self.started_block:
            return
        self.started_block = False
        pool = self.pool
        try:
            waiting = set(range(len(pool.conns)))
            for w in waiting:
                pool.conns[w].send((m.END, self.block_id))
            deadline = time.monotonic() + LIVENESS_TIMEOUT_S
            while waiting:
                conns = [pool.conns[w] for w in waiting]
                ready = wait(conns, timeout=max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise WorkerFailure("workers did not acknowledge the end of a block")
                for conn in ready:
                    w = pool.conns.index(conn)
                    msg = conn.recv()
                    if msg[0] == m.ENDED and msg[1] == self.block_id:
                        waiting.discard(w)
                    elif msg[0] == m.NEED:
                        conn.send((m.NODE, msg[1], msg[2], None))
        except (WorkerFailure, EOFError, OSError, ValueError):
            self.owner._kill_pool()

    # ---------------------------------------------------------------- main loop
    def run(self) -> ExecutionResult:
        env = self.env
        vm_class = env.vm_class
        self.db = OverlayDB(self.pre_state.nodes)
        self.state = state = vm_class.get_state_class()(
            self.db, make_execution_context(env), self.pre_state.state_root
        )
        # A plain dict (py-evm's is a 2048-entry LRU): primed with workers' base reads.
        self.account_cache: dict = {}
        self.base_accounts: dict[bytes, bytes] = {}  # address -> pre-state RLP, from workers
        state._account_db._account_cache = self.account_cache
        prelude = _prelude(state, env)
        for key, value in prelude.items():
            state.set_storage(key[:20], int.from_bytes(key[20:], "big"), value)
        self.receipts: list[ReceiptAPI] = []
        self.bloom = 0
        self.header = _GasHeader(0)

        for w in range(len(self.pool.conns)):
            self._send(w, (m.BLOCK, self.block_id, env, self.pre_state.state_root, prelude))
        self.started_block = True

        pool = self.pool
        conns = pool.conns
        sentinels = {p.sentinel: i for i, p in enumerate(pool.procs)}
        conn_index = {c: i for i, c in enumerate(conns)}
        waitables = list(conns) + list(sentinels)
        sched = self.sched
        n = self.n
        self._dispatch()
        while sched.commit_idx < n:
            ready = wait(waitables, timeout=LIVENESS_TIMEOUT_S)
            if not ready:
                if not pool.alive():
                    raise WorkerFailure("a worker process died")
                continue
            for obj in ready:
                if obj in sentinels:
                    raise WorkerFailure(f"worker {sentinels[obj]} died")
            for obj in ready:
                w = conn_index[obj]
                try:
                    while obj.poll():
                        self._handle(w, obj.recv())
                except (EOFError, OSError) as exc:
                    raise WorkerFailure(f"worker {w} pipe closed ({exc!r})") from None
            self._validate()
            self._commit()
            self._dispatch()
        self.executed_at = time.perf_counter()
        self.end_block()
        # The commit tail: the same serial trie work the sequential executor does after
        # its last transaction (fold the final write sets in order, then one persist).
        self._prime_account_cache()
        self._fold_all()
        return self._finish()

    def _handle(self, w: int, msg: tuple) -> None:
        tag = msg[0]
        if tag == m.NEED:
            value = None
            if msg[1] == self.block_id:
                try:
                    value = self.pre_state.nodes[msg[2]]
                except KeyError:
                    value = None
            self._send(w, (m.NODE, msg[1], msg[2], value))
            return
        if msg[1] != self.block_id:
            return
        sched = self.sched
        if tag == m.DONE:
            _, _, tx, inc, reads, writes, deltas, codes, outcome, accounts = msg
            self.in_flight[w] -= 1
            if accounts:
                self.base_accounts.update(accounts)
            if inc != sched.incarnation[tx] or sched.status[tx] != EXECUTING:
                return
            self.received += 1
            wrote_new = self.mv.record(tx, writes, deltas)
            self.results[tx] = (reads, writes, deltas, codes, outcome)
            update = (tx, writes, deltas, codes)
            for other, queue in enumerate(self.pending_updates):
                if other != w:
                    queue.append(update)
            sched.finished(tx, wrote_new)
            if self.owner.on_result is not None:
                self.owner.on_result(self.received)
        elif tag == m.BLOCKED:
            _, _, tx, inc, dep = msg
            self.in_flight[w] -= 1
            if inc != sched.incarnation[tx] or sched.status[tx] != EXECUTING:
                return
            sched.blocked(tx, dep)
        elif tag == m.ERROR:
            raise WorkerFailure(f"worker {w} failed on transaction {msg[2]}:\n{msg[4]}")

    def _prime_account_cache(self) -> None:
        """Give the commit AccountDB the pre-state accounts the workers read, so the fold
        does not walk the trie for them again. Called before the fold, so every value
        inserted is a pre-state value (the cache is a plain dict, never evicted)."""
        cache = self.account_cache
        for address, encoded in self.base_accounts.items():
            if address not in cache:
                cache[address] = rlp.decode(encoded, sedes=Account) if encoded else Account()

    def _abort(self, tx: int) -> None:
        self.mv.mark_estimate(tx)
        estimate = (tx, None, None, None)
        for queue in self.pending_updates:
            queue.append(estimate)
        self.sched.abort(tx)

    def _validate(self) -> None:
        sched = self.sched
        status = sched.status
        results = self.results
        validate = self.mv.validate
        v = max(sched.validation_idx, sched.commit_idx)
        top = sched.max_executed
        while v <= top:
            if status[v] == EXECUTED and not validate(v, results[v][0]):
                self._abort(v)
            v += 1
        sched.validation_idx = max(v, sched.validation_idx)

    def _commit(self) -> None:
        """Rolling commit: validate the lowest uncommitted transaction against committed
        (final) lower write sets; once it passes it is final too."""
        sched = self.sched
        status = sched.status
        n = self.n
        while sched.commit_idx < n:
            c = sched.commit_idx
            if status[c] != EXECUTED:
                return
            result = self.results[c]
            if not self.mv.validate(c, result[0]):
                self._abort(c)
                return
            status[c] = COMMITTED
            sched.commit_idx = c + 1
            tx = self.txs[c]
            reason = _static_reason(self.env, tx, self.gas_used)
            outcome = result[4]
            if reason is None and outcome[0] == "invalid":
                reason = outcome[1]
            if reason is not None:
                raise InvalidBlockError(c, reason)
            used = self.env.vm_class.finalize_gas_used(tx, OutcomeComputation(outcome))
            self.gas_used += used

    def _dispatch(self) -> None:
        sched = self.sched
        txs = self.txs
        raw = self.raw
        for w, conn in enumerate(self.pool.conns):
            tasks = []
            while self.in_flight[w] + len(tasks) < TASKS_IN_FLIGHT:
                tx = sched.next_task()
                if tx < 0:
                    break
                data = raw[tx]
                if data is None:
                    data = raw[tx] = txs[tx].encode()
                tasks.append((tx, sched.incarnation[tx], data))
            updates = self.pending_updates[w]
            if tasks or updates:
                self._send(w, (m.WORK, self.block_id, updates, tasks))
                self.pending_updates[w] = []
                self.in_flight[w] += len(tasks)

    # ---------------------------------------------------------------- commit
    def _fold_all(self) -> None:
        """Fold the committed write sets into the trie state, in transaction order."""
        state = self.state
        vm_class = self.env.vm_class
        for i in range(self.n):
            _reads, writes, deltas, codes, outcome = self.results[i]
            state.lock_changes()
            fold_write_set(state, writes, deltas, codes)
            receipt = vm_class.make_receipt(
                self.header, self.txs[i], OutcomeComputation(outcome), state
            )
            self.header.gas_used = receipt.gas_used
            self.bloom |= int(receipt.bloom)
            self.receipts.append(receipt)
            self.results[i] = None  # free memory

    def _finish(self) -> ExecutionResult:
        block = self.block
        env = self.env
        vm_class = env.vm_class
        state = self.state
        if block.withdrawals:
            if not issubclass(vm_class, ShanghaiVM):
                raise ValueError(
                    f"withdrawals given for a {vm_class.fork} block: they start at Shanghai"
                )
            apply_withdrawals(state, block.withdrawals)
        block_postprocessing(state, env)
        if block.apply_pow_rewards and env.number > 0:
            uncle_count = (
                len(block.uncles) if block.uncle_count is None else block.uncle_count
            )
            snapshot = state.snapshot()
            try:
                assign_pow_rewards(
                    state, vm_class, env.number, env.coinbase, block.uncles, uncle_count
                )
            except EVMMissingData:
                state.revert(snapshot)
                raise
            else:
                state.commit(snapshot)
        state.persist()
        sched = self.sched
        return ExecutionResult(
            receipts=tuple(self.receipts),
            gas_used=self.header.gas_used,
            logs_bloom=self.bloom,
            post_state_root=state.state_root,
            state_nodes=self.db.pending(),
            stats=ExecutionStats(
                executor=BlockSTMExecutor.name,
                transactions=self.n,
                seconds=0.0,
                workers=len(self.pool.conns),
                incarnations=sched.executions,
            ),
        )
