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
from eth.vm.forks import ByzantiumVM
from eth_hash.auto import keccak

from execution.blockstm import messages as m
from execution.blockstm.mvmemory import MVMemory
from execution.blockstm.scheduler import COMMITTED, EXECUTED, EXECUTING, Scheduler
from execution.blockstm.state import OutcomeComputation, fold_write_set, merge_write_sets
from execution.blockstm.triereader import NodeMissing, decode_node, lookup
from execution.blockstm.worker import worker_main
from execution.executor import (
    BlockInput,
    ExecutionResult,
    ExecutionStats,
    InvalidBlockError,
    StateView,
    adopt_known_senders,
)
from execution.overlay import OverlayDB
from execution.rules import (
    GasHeader,
    block_level_reason,
    block_preprocessing,
    finish_block,
    make_execution_context,
)
from execution.sequential import SequentialExecutor, apply_transactions
from execution.state_db import batched_state_class

log = logging.getLogger(__name__)

TASKS_IN_FLIGHT = 6  # per worker: it never waits for the coordinator between tasks
# A worker may hold this many tasks more than TASKS_IN_FLIGHT when they follow a task of
# the same sender it is running (sender-affinity dispatch).
AFFINITY_SLACK = 6
# Ready transactions passed over (their sender's worker is full) before a dispatch stops.
AFFINITY_LOOKAHEAD = 32
LIVENESS_TIMEOUT_S = 5.0  # wait() timeout: then check every worker is still alive
_DECODED_CACHE_LIMIT = 500_000
# In-memory pre-states with at most this many nodes go to every worker with the block.
SHIP_PRESTATE_LIMIT = 50_000
# Adaptive fallback: over the last CONTENTION_WINDOW finished incarnations, if at least
# CONTENTION_RATIO of them were wasted (aborted by validation, or stopped on an
# ESTIMATE), parallel execution cannot pay: the coordinator stops dispatching, folds the
# committed prefix and runs the rest of the block itself, sequentially.
CONTENTION_WINDOW = 16
CONTENTION_RATIO = 0.5


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
        self.shared_nodes: list[dict] = [{} for _ in range(workers)]
        # New state nodes of the last block executed here, for the next BLOCK message.
        self.new_nodes: Optional[dict] = None
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


class _PreludeRecorder:
    """Stands in for the state in `rules.block_preprocessing`: code is read from the
    coordinator's state, storage writes are recorded (they are the base layer every
    worker reads below the block's transactions)."""

    def __init__(self, state: Any) -> None:
        self._state = state
        self.writes: dict[bytes, int] = {}

    def get_code(self, address: bytes) -> bytes:
        return self._state.get_code(address)

    def set_storage(self, address: bytes, slot: int, value: int) -> None:
        self.writes[m.slot_key(address, slot)] = value


def _prelude(state: Any, env: Any) -> dict[bytes, int]:
    """The block's pre-transaction writes (EIP-4788, EIP-2935) as {slot key: value}."""
    recorder = _PreludeRecorder(state)
    block_preprocessing(recorder, env)
    return recorder.writes


class BlockSTMExecutor:
    """Block-STM (Gelbach et al., PPoPP 2023) with worker processes; matches sequential."""

    name = "blockstm"

    def __init__(self, workers: Optional[int] = None, adaptive: bool = True,
                 force_parallel: bool = False) -> None:
        self.workers = max(1, int(workers if workers is not None else (os.cpu_count() or 1)))
        # Run the parallel machinery even with one worker or a small block (`laminar bench`
        # measures how Block-STM scales from one worker to N with it); a node never does.
        self.force_parallel = force_parallel
        self._pool: Optional[_Pool] = None
        self._block_id = 0
        self._sequential = SequentialExecutor()
        # Adaptive fallback on high contention: first go on with one worker (it runs the
        # rest in index order on its own replica and sees its own writes at once), and only
        # if that still wastes most of its work, run the rest sequentially in-process.
        self.adaptive = adaptive
        self.narrow_on_contention = True
        self.contention_window = CONTENTION_WINDOW
        self.contention_ratio = CONTENTION_RATIO
        # Test hook: called with the number of results received so far in the block.
        self.on_result: Optional[Callable[[int], None]] = None
        # Test hook: switch to sequential once this many results have been received.
        self.fallback_after: Optional[int] = None
        self.last_fallback_reason: Optional[str] = None
        self.last_narrow_reason: Optional[str] = None  # why the last block went on with one worker
        # Index of the first transaction the last block ran sequentially after an
        # adaptive fallback (None: no mid-block fallback).
        self.last_fallback_at: Optional[int] = None
        self.last_block_info: dict = {}
        self._decoded_nodes: dict[bytes, list] = {}

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

    def _node_reader(self, nodes: Any) -> Callable[[bytes], list]:
        """Decoded trie nodes of `nodes` by hash, cached across blocks (content-addressed)."""
        decoded = self._decoded_nodes
        if len(decoded) > _DECODED_CACHE_LIMIT:
            decoded.clear()

        def node_of(key: bytes) -> list:
            node = decoded.get(key)
            if node is None:
                node = decoded[key] = decode_node(nodes[key])
            return node

        return node_of

    def worker_pids(self) -> list[int]:
        """Test hook: the worker processes' pids (starts them if needed)."""
        return [p.pid for p in self._ensure_pool().procs]

    def start(self) -> None:
        """Start the worker processes now rather than with the first block, so a caller
        with other work first (loading a pre-state) overlaps their start-up."""
        self._ensure_pool()

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
        adopt_known_senders(block)
        self.last_fallback_at = None
        if not self.force_parallel and (self.workers < 2 or n < 2 * self.workers):
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
        if len(result.state_nodes) <= SHIP_PRESTATE_LIMIT and self._pool is pool:
            pool.new_nodes = result.state_nodes
        finished = time.perf_counter()
        result.stats.seconds = finished - started
        result.stats.execution_seconds = run.executed_at - started
        result.stats.commit_seconds = finished - run.executed_at
        result.stats.narrowed_at = run.narrowed_at
        self.last_fallback_reason = run.fallback_reason
        self.last_fallback_at = run.fallback_at
        self.last_narrow_reason = run.narrow_reason
        self.last_block_info = run.info()
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
        self.sent: list[set] = [set() for _ in pool.conns]  # txs each worker holds
        self.mv = MVMemory()
        self.sched = Scheduler(self.n)
        self.results: list[Optional[tuple]] = [None] * self.n
        # Senders known up front (`BlockInput.senders`: the mempool recovered them), for
        # sender-affinity dispatch.
        self.senders: list[Optional[bytes]] = block.known_senders()
        # sender -> [worker, incarnations in flight there]
        self.sender_owner: dict[bytes, list[int]] = {}
        self.in_flight = [0] * len(pool.conns)
        self.pending_updates: list[list] = [[] for _ in pool.conns]
        self.received = 0
        self.gas_used = 0
        self.tx_gas: list[int] = [0] * self.n
        self.started_block = False
        self.end_sent = False
        # Adaptive fallback: finished incarnations, how many were wasted, and a window.
        self.finished = 0
        self.wasted = 0
        self.window: list[tuple[int, int]] = []
        self.fallback_at: Optional[int] = None
        self.fallback_reason: Optional[str] = None
        self.fallback_after_s = 0.0  # seconds of parallel execution before the switch
        self.active_workers = len(pool.conns)  # the workers that get tasks
        self.narrowed_at: Optional[int] = None
        self.narrow_reason: Optional[str] = None
        self.judge_after = 0  # finished incarnations before contention is judged again
        self.merged_fold = False
        self.needs = 0  # NEED round trips answered
        self.commit_cpu: list = []
        self.needed_nodes = 0  # nodes sent in answers
        # Nodes fetched by one worker, to send to the others with their next WORK
        # message (kept by the pool across blocks: content-addressed, always valid).
        self.pending_nodes: list[dict] = pool.shared_nodes
        # per worker: seconds running tasks (wall, CPU), waiting for messages, sending
        self.worker_timing: list = [None] * len(pool.conns)

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
        if not self.end_sent:
            self._send_end()
        self._collect_end_acks()

    def _send_end(self) -> None:
        self.end_sent = True
        try:
            for conn in self.pool.conns:
                conn.send((m.END, self.block_id))
        except (OSError, ValueError):
            pass  # a dead worker: _collect_end_acks times out and kills the pool

    # ---------------------------------------------------------------- main loop
    def run(self) -> ExecutionResult:
        self.run_started = time.perf_counter()
        env = self.env
        vm_class = env.vm_class
        self.db = OverlayDB(self.pre_state.nodes)
        self.state = state = batched_state_class(vm_class.get_state_class())(
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
        self.header = GasHeader(0)

        # An in-memory pre-state small enough is shipped whole with the block (a few ms
        # of pickling): no NEED round trips at all. Otherwise workers fetch what they
        # miss (prefetch batches, then single round trips).
        nodes = self.pre_state.nodes
        shipped = None
        if isinstance(nodes, dict) and len(nodes) <= SHIP_PRESTATE_LIMIT:
            shipped = nodes
        else:
            # The previous block's new nodes (the top of this block's pre-state trie,
            # when blocks chain): without them every worker would fetch them again.
            shipped = self.pool.new_nodes
        self.pool.new_nodes = None
        for w in range(len(self.pool.conns)):
            self._send(w, (m.BLOCK, self.block_id, env, self.pre_state.state_root, prelude,
                           shipped))
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
            if self._contended():
                if self.active_workers == 1 or not self.owner.narrow_on_contention:
                    return self._run_rest_sequentially()
                self._narrow()
            self._dispatch()
        self.executed_at = time.perf_counter()
        self.end_block()
        # The commit tail: the same serial trie work the sequential executor does after
        # its last transaction (fold the final write sets in order, then one persist).
        cpu = [time.process_time()]
        self._prime_account_cache()
        cpu.append(time.process_time())
        self._fold_all()
        cpu.append(time.process_time())
        result = self._finish()
        cpu.append(time.process_time())
        self.commit_cpu = [round(b - a, 3) for a, b in zip(cpu, cpu[1:])]
        return result

    def info(self) -> dict:
        """Counters of this block, for tests, logs and benchmarks."""
        sched = self.sched
        return {
            "executions": sched.executions,
            "aborts": sched.aborts,
            "wasted": self.wasted,
            "needs": self.needs,
            "needed_nodes": self.needed_nodes,
            "fallback_at": self.fallback_at,
            "narrowed_at": self.narrowed_at,
            "fallback_after_s": round(self.fallback_after_s, 4),
            "merged_fold": self.merged_fold,
            "commit_cpu": self.commit_cpu,  # prime, fold, persist (CPU seconds)
            "worker_timing": [
                [round(x, 3) for x in t] if t else None for t in self.worker_timing
            ],
        }

    # ---------------------------------------------------------------- adaptive fallback
    def _contended(self) -> bool:
        """Whether parallel execution cannot pay for the rest of this block."""
        owner = self.owner
        if owner.fallback_after is not None:
            if self.received >= owner.fallback_after and self.sched.commit_idx < self.n:
                self.fallback_reason = f"forced after {self.received} results (test hook)"
                return True
            return False
        if not owner.adaptive or self.finished < self.judge_after:
            return False
        window = self.window
        size = owner.contention_window
        if not window or self.finished - window[-1][0] >= size // 2:
            window.append((self.finished, self.wasted))
            if len(window) > 3:
                del window[0]
        first = window[0]
        done = self.finished - first[0]
        if done < size:
            return False
        wasted = self.wasted - first[1]
        if wasted < owner.contention_ratio * done:
            return False
        self.fallback_reason = (
            f"contention: {wasted} of the last {done} incarnations wasted "
            f"(aborted or blocked); the rest of the block runs sequentially"
        )
        return True

    def _narrow(self) -> None:
        """Contention: from now on only worker 0 gets tasks, lowest index first. It runs
        them in order and learns its own write sets at once, so a transaction no longer
        waits for a lower one: that one will have run again, on the same worker, first."""
        self.active_workers = 1
        self.narrowed_at = self.sched.commit_idx
        self.narrow_reason, self.fallback_reason = self.fallback_reason, None
        self.sched.release_waiting()
        # Judge the one-worker phase on its own, not on the incarnations still in flight
        # from the parallel phase (they ran on stale reads and will mostly be wasted).
        self.window = []
        self.judge_after = self.finished + sum(self.in_flight)
        log.debug("block %d: %s; going on with one worker from transaction %d",
                  self.block_id, self.narrow_reason, self.narrowed_at)

    def _run_rest_sequentially(self) -> ExecutionResult:
        """Stop dispatching, fold the committed prefix into the coordinator's py-evm state
        and run the remaining transactions on it with the sequential executor's loop."""
        start = self.sched.commit_idx
        self.fallback_at = start
        self.fallback_after_s = time.perf_counter() - self.run_started
        # Workers finish the incarnation they are running and drop the rest; their
        # acknowledgements are collected after the sequential tail.
        self._send_end()
        self._prime_account_cache(start)
        self._fold_prefix(start)
        self.results = [None] * self.n
        gas_used, self.bloom = apply_transactions(
            self.state, self.env, self.txs, self.receipts, start, self.header.gas_used,
            self.bloom,
        )
        self.header.gas_used = gas_used
        self.executed_at = time.perf_counter()
        self.end_block()
        result = self._finish()
        result.stats.fallback = True
        result.stats.incarnations = self.sched.executions + (self.n - start)
        return result

    def _collect_end_acks(self) -> None:
        """END was sent to every worker: wait for their ENDED (answering NEEDs)."""
        pool = self.pool
        try:
            waiting = set(range(len(pool.conns)))
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
                        self.worker_timing[w] = msg[2]
                    elif msg[0] == m.NEED:
                        self._answer_need(w, msg)
        except (WorkerFailure, EOFError, OSError, ValueError):
            self.owner._kill_pool()
        finally:
            self.started_block = False

    def _handle(self, w: int, msg: tuple) -> None:
        tag = msg[0]
        if tag == m.RESULTS:
            for inner in msg[1]:
                self._handle(w, inner)
            return
        if tag == m.NEED:
            self._answer_need(w, msg)
            return
        if msg[1] != self.block_id:
            return
        sched = self.sched
        if tag == m.DONE:
            _, _, tx, inc, reads, writes, deltas, codes, outcome, accounts = msg
            self.in_flight[w] -= 1
            self._landed(tx)
            if accounts:
                self.base_accounts.update(accounts)
            if inc != sched.incarnation[tx] or sched.status[tx] != EXECUTING:
                return
            self.received += 1
            self.finished += 1
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
            self._landed(tx)
            if inc != sched.incarnation[tx] or sched.status[tx] != EXECUTING:
                return
            self.finished += 1
            self.wasted += 1
            if self.active_workers == 1 and self.narrowed_at is not None:
                sched.retry(tx)  # in order on one worker: `dep` runs again before it
            else:
                sched.blocked(tx, dep)
        elif tag == m.ERROR:
            raise WorkerFailure(f"worker {w} failed on transaction {msg[2]}:\n{msg[4]}")

    def _answer_need(self, w: int, msg: tuple) -> None:
        """(NEED, block_id, request_id, hashes) -> (NODE, block_id, request_id, values);
        the nodes also go to the other workers with their next WORK message."""
        _, block_id, rid, keys = msg
        values: list = []
        if block_id == self.block_id:
            self.needs += 1
            self.needed_nodes += len(keys)
            nodes = self.pre_state.nodes
            for key in keys:
                try:
                    values.append(nodes[key])
                except KeyError:
                    values.append(None)
            for other, share in enumerate(self.pending_nodes):
                if other != w:
                    for key, value in zip(keys, values):
                        if value is not None:
                            share[key] = value
        else:
            values = [None] * len(keys)
        self._send(w, (m.NODE, block_id, rid, values))

    def _prime_account_cache(self, end: Optional[int] = None) -> None:
        """Give the commit AccountDB the pre-state accounts the fold will touch, so it
        does not walk the trie for them (py-evm's HexaryTrie decodes every node of the
        path on every read). Accounts the workers read come with their RLP; the others
        (e.g. recipients of blind credits) are looked up with the lean reader over a
        decoded-node cache. Called before the fold, so every value inserted is a
        pre-state value (the cache is a plain dict, never evicted)."""
        cache = self.account_cache
        for address, encoded in self.base_accounts.items():
            if address not in cache:
                cache[address] = rlp.decode(encoded, sedes=Account) if encoded else Account()
        touched: set = set()
        results = self.results
        for i in range(self.n if end is None else end):
            result = results[i]
            if result is None:
                continue
            for key in result[1]:
                touched.add(key[:20])
            for key in result[2]:
                touched.add(key[:20])
        touched.difference_update(cache)
        if not touched:
            return
        node_of = self.owner._node_reader(self.pre_state.nodes)
        root = self.pre_state.state_root
        for address in touched:
            try:
                encoded = lookup(node_of, root, keccak(address))
            except (KeyError, NodeMissing, ValueError):
                continue  # let py-evm read it (and raise what it raises)
            cache[address] = rlp.decode(encoded, sedes=Account) if encoded else Account()

    def _abort(self, tx: int) -> None:
        self.wasted += 1
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
            reason = block_level_reason(self.env, tx, self.gas_used)
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
        sent = self.sent
        if self.active_workers < len(self.in_flight) and any(self.in_flight[self.active_workers:]):
            # Narrowed to one worker: first let the others' last tasks come back, so that
            # the one worker's run in index order starts from a settled state (what they
            # ran on stale reads is validated and aborted before it goes on).
            return
        active = self.active_workers
        load = self.in_flight[:active]
        batches: list[list] = [[] for _ in range(active)]
        skipped = []
        while min(load) < TASKS_IN_FLIGHT and len(skipped) < AFFINITY_LOOKAHEAD:
            tx = sched.next_task()
            if tx < 0:
                break
            w = self._worker_for(tx, load)
            if w < 0:
                skipped.append(tx)
                continue
            load[w] += 1
            sender = self.senders[tx]
            if sender is not None:
                owner = self.sender_owner.get(sender)
                if owner is None:
                    self.sender_owner[sender] = [w, 1]
                else:
                    owner[1] += 1
            # The decoded transaction object itself (pickling it costs ~6 us, an
            # encode + decode ~50 us), once per worker: later incarnations refer to
            # the worker's copy.
            if tx in sent[w]:
                batches[w].append((tx, sched.incarnation[tx], None))
            else:
                sent[w].add(tx)
                batches[w].append((tx, sched.incarnation[tx], txs[tx]))
        for tx in skipped:
            sched.put_back(tx)
        for w in range(active):
            tasks = batches[w]
            updates = self.pending_updates[w]
            if tasks or updates:
                nodes = self.pending_nodes[w]
                if nodes:
                    self.pending_nodes[w] = {}  # the same list object as the pool's
                self._send(w, (m.WORK, self.block_id, updates, tasks, nodes))
                self.pending_updates[w] = []
                self.in_flight[w] += len(tasks)

    def _worker_for(self, tx: int, load: list[int]) -> int:
        """The worker that runs its sender's transaction in flight, if any (it sees that
        one's writes at once; another worker would read a stale nonce), else the least
        loaded one with room; -1: none for now."""
        sender = self.senders[tx]
        if sender is not None and len(load) > 1:
            owner = self.sender_owner.get(sender)
            if owner is not None:
                w = owner[0]
                return w if load[w] < TASKS_IN_FLIGHT + AFFINITY_SLACK else -1
        w = min(range(len(load)), key=load.__getitem__)
        return w if load[w] < TASKS_IN_FLIGHT else -1

    def _landed(self, tx: int) -> None:
        sender = self.senders[tx]
        if sender is None:
            return
        owner = self.sender_owner.get(sender)
        if owner is not None:
            owner[1] -= 1
            if owner[1] <= 0:
                del self.sender_owner[sender]

    # ---------------------------------------------------------------- commit
    def _fold_all(self) -> None:
        """Fold the committed write sets into the trie state, in transaction order."""
        self._fold_prefix(self.n)

    def _fold_prefix(self, end: int) -> None:
        """Fold the committed write sets of transactions [0, end) (receipts included)."""
        state = self.state
        vm_class = self.env.vm_class
        if issubclass(vm_class, ByzantiumVM):
            # Receipts no longer carry a state root: when no write set wipes storage,
            # deletes an account or changes code, the write sets merge into one (last
            # write wins, credits add up) and the state takes each location once (the
            # coinbase once per block instead of once per transaction).
            merged = merge_write_sets(self.results, end)
            if merged is not None:
                self.merged_fold = True
                state.lock_changes()
                fold_write_set(state, merged[0], merged[1], {})
                header = self.header
                for i in range(end):
                    outcome = self.results[i][4]
                    receipt = vm_class.make_receipt(
                        header, self.txs[i], OutcomeComputation(outcome), state
                    )
                    header.gas_used = receipt.gas_used
                    self.bloom |= int(receipt.bloom)
                    self.receipts.append(receipt)
                    self.results[i] = None
                return
        for i in range(end):
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
        state = self.state
        requests = finish_block(state, self.block, self.receipts)
        state.persist()
        sched = self.sched
        return ExecutionResult(
            requests=requests,
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
