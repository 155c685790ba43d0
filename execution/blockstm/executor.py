"""`BlockSTMExecutor`: Block-STM over long-lived worker processes (see docs/blockstm.md).

This file holds the executor (its worker pool, its fallbacks) and the coordinator loop of
one block (`_BlockRun`), which wires the parts that have files of their own: the
scheduler (scheduler.py: every status transition), dispatch with sender affinity
(dispatch.py), the contention judge (contention.py), validation, the rolling commit and
the fold (commit.py); knobs and test hooks come in a frozen `BlockSTMConfig`.
"""

from __future__ import annotations

import logging
import time
from multiprocessing.connection import wait
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Optional

from execution.bal.builder import AccessListBuilder, AccessRecord
from execution.bal.recorder import pre_state_storage, recording_state_class
from execution.blockstm import messages as m
from execution.blockstm.access_list import PreBlockValues, code_reader, record_of
from execution.blockstm.commit import (
    Fold,
    RollingCommit,
    prime_account_cache,
    prime_written_accounts,
)
from execution.blockstm.config import BlockSTMConfig
from execution.blockstm.contention import ContentionJudge
from execution.blockstm.dispatch import Dispatcher
from execution.blockstm.messages import TxIndex, TxResult
from execution.blockstm.mvmemory import MVMemory
from execution.blockstm.scheduler import Scheduler
from execution.blockstm.triereader import decode_node
from execution.blockstm.worker import worker_main
from execution.executor import (
    BlockInput,
    ExecutionResult,
    ExecutionStats,
    StateView,
    adopt_known_senders,
)
from execution.overlay import OverlayDB
from execution.processes import main_module_hidden, worker_context
from execution.rules import block_preprocessing, finish_block, make_execution_context
from execution.sequential import SequentialExecutor, apply_transactions
from execution.state_db import batched_state_class

log = logging.getLogger(__name__)

_DECODED_CACHE_LIMIT = 500_000


class WorkerFailure(Exception):
    """A worker died, closed its pipe or raised: the block falls back to sequential."""


class _Pool:
    def __init__(self, workers: int) -> None:
        ctx = worker_context(["execution.blockstm.worker"])
        self.conns: list[Any] = []
        self.procs: list[Any] = []
        self.shared_nodes: list[dict] = [{} for _ in range(workers)]
        # New state nodes of the last block executed here, for the next BLOCK message.
        self.new_nodes: Optional[dict] = None
        with main_module_hidden():
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

    def send(self, w: int, raw: tuple) -> None:
        """A message to worker `w` (what `Connection.send` does: pickle, then write)."""
        self._send_bytes(w, ForkingPickler.dumps(raw))

    def broadcast(self, raw: tuple) -> None:
        """The same message to every worker, pickled once: a block's announcement (with
        the previous block's new trie nodes) and an access list's write sets are large,
        and `send` would pickle them again for each worker. The workers' `recv`
        unpickles what `send_bytes` carries as it would a `send`."""
        data = ForkingPickler.dumps(raw)
        for w in range(len(self.conns)):
            self._send_bytes(w, data)

    def _send_bytes(self, w: int, data: memoryview) -> None:
        try:
            self.conns[w].send_bytes(data)
        except (OSError, ValueError) as exc:  # BrokenPipeError is an OSError
            raise WorkerFailure(f"worker {w} pipe closed ({exc})") from None

    def close(self, timeout: float = 2.0) -> None:
        for conn in self.conns:
            try:
                conn.send(m.wire(m.Stop()))
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


def prelude_writes(state: Any, env: Any) -> dict[bytes, int]:
    """The block's pre-transaction writes (EIP-4788, EIP-2935) as {slot key: value}."""
    recorder = _PreludeRecorder(state)
    block_preprocessing(recorder, env)
    return recorder.writes


class BlockSTMExecutor:
    """Block-STM (Gelbach et al., PPoPP 2023) with worker processes; matches sequential."""

    name = "blockstm"

    def __init__(self, workers: Optional[int] = None, adaptive: bool = True,
                 force_parallel: bool = False, *, config: Optional[BlockSTMConfig] = None) -> None:
        if config is None:
            config = BlockSTMConfig(adaptive=adaptive, force_parallel=force_parallel)
            if workers is not None:
                config = BlockSTMConfig(workers=max(1, int(workers)), adaptive=adaptive,
                                        force_parallel=force_parallel)
        self.config = config
        self._pool: Optional[_Pool] = None
        self._block_id = 0
        self._sequential = SequentialExecutor()
        self.last_fallback_reason: Optional[str] = None
        self.last_narrow_reason: Optional[str] = None  # why the last block went on with one worker
        # Index of the first transaction the last block ran sequentially after an
        # adaptive fallback (None: no mid-block fallback).
        self.last_fallback_at: Optional[int] = None
        self.last_block_info: dict = {}
        self._decoded_nodes: dict[bytes, list] = {}

    @property
    def workers(self) -> int:
        return self.config.workers

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> BlockSTMExecutor:
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

    @property
    def decoded_nodes(self) -> dict[bytes, Any]:
        """The decoded-node cache `node_reader` reads through (content-addressed, kept
        across blocks), for other readers and updaters of the same tries to share."""
        return self._decoded_nodes

    def node_reader(self, nodes: Any) -> Callable[[bytes], list]:
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
            self.kill_pool()
        if self._pool is None:
            self._pool = _Pool(self.config.workers)
        return self._pool

    def kill_pool(self) -> None:
        """Kill the workers (they are restarted with the next block)."""
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
        config = self.config
        if not config.force_parallel and (config.workers < 2 or n < 2 * config.workers):
            return self._fallback(block, pre_state, started, "small block or one worker")
        pool = self._ensure_pool()
        self._block_id += 1
        run = _BlockRun(self, pool, self._block_id, block, pre_state)
        try:
            result = run.run()
        except WorkerFailure as exc:
            log.warning("Block-STM: %s; executing the block sequentially", exc)
            self.kill_pool()
            return self._fallback(block, pre_state, started, str(exc))
        except BaseException:
            run.end_block()
            raise
        if len(result.state_nodes) <= config.ship_prestate_limit and self._pool is pool:
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


def aborter(judge: ContentionJudge, mv: MVMemory, dispatcher: Dispatcher,
            sched: Scheduler) -> Callable[[TxIndex], None]:
    """What aborting an incarnation of `tx` does: count it, mark its writes ESTIMATE here
    and in the workers' replicas, and schedule its re-execution."""

    def abort(tx: TxIndex) -> None:
        judge.incarnation_aborted()
        mv.mark_estimate(tx)
        dispatcher.share_estimate(tx)
        sched.abort(tx)

    return abort


class _BlockRun:
    """One block: the coordinator loop, wiring scheduler, dispatcher, contention judge,
    rolling commit and fold."""

    def __init__(self, owner: BlockSTMExecutor, pool: _Pool, block_id: int,
                 block: BlockInput, pre_state: StateView) -> None:
        self.owner = owner
        self.config = owner.config
        self.pool = pool
        self.block_id = block_id
        self.block = block
        self.env = block.env
        self.pre_state = pre_state
        self.txs = tuple(block.transactions)
        self.n = len(self.txs)
        self.mv = MVMemory()
        self.sched = Scheduler(self.n)
        self.results: list[Optional[TxResult]] = [None] * self.n
        self.dispatcher = Dispatcher(self.config, len(pool.conns), block.known_senders(),
                                     pool.shared_nodes)
        self.judge = ContentionJudge(self.config)
        # The abort callback closes over the parts it touches, not over this run: a bound
        # method would make run -> commit -> run a cycle, and every block's whole run (its
        # multi-version memory, transactions, receipts) cyclic garbage that only a long
        # middle- or old-generation collection frees, holding the GIL (and the node's event
        # loop) for hundreds of milliseconds.
        self.commit = RollingCommit(self.env, self.txs, self.mv, self.sched, self.results,
                                    aborter(self.judge, self.mv, self.dispatcher, self.sched))
        self.received = 0
        self.started_block = False
        self.end_sent = False
        self.fallback_at: Optional[int] = None
        self.fallback_reason: Optional[str] = None
        self.fallback_after_s = 0.0  # seconds of parallel execution before the switch
        self.narrowed_at: Optional[int] = None
        self.narrow_reason: Optional[str] = None
        self.needs = 0  # NEED round trips answered
        self.needed_nodes = 0  # nodes sent in answers
        self.commit_cpu: list = []
        self.executed_at = 0.0
        # per worker: seconds running tasks (wall, CPU), waiting for messages, sending
        self.worker_timing: list = [None] * len(pool.conns)

    # ---------------------------------------------------------------- messaging
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
                conn.send(m.wire(m.End(self.block_id)))
        except (OSError, ValueError):
            pass  # a dead worker: _collect_end_acks times out and kills the pool

    def _dispatch(self) -> None:
        self.dispatcher.depth = self.judge.tasks_in_flight()
        self.dispatcher.dispatch(self.sched, self.block_id, self.txs, self.pool.send)

    # ---------------------------------------------------------------- main loop
    def run(self) -> ExecutionResult:
        self.run_started = time.perf_counter()
        env = self.env
        vm_class = env.vm_class
        self.db = OverlayDB(self.pre_state.nodes)
        building = self.block.build_access_list
        state_class = (recording_state_class if building else batched_state_class)(
            vm_class.get_state_class()
        )
        self.state = state = state_class(
            self.db, make_execution_context(env), self.pre_state.state_root
        )
        self.recorder = state._account_db if building else None
        self.recorded = 0  # committed transactions whose access records the builder has
        # This block's readers of the pre-state: decoded trie nodes and code, by hash.
        self.node_of = self.owner.node_reader(self.pre_state.nodes)
        self.code_of = code_reader(self.pre_state.nodes)
        # A plain dict (py-evm's is a 2048-entry LRU): primed with workers' base reads.
        self.account_cache: dict = {}
        self.base_accounts: dict[bytes, bytes] = {}  # address -> pre-state RLP, from workers
        state._account_db._account_cache = self.account_cache
        recorder = self.recorder
        if recorder is not None:
            recorder.open_record()
        prelude = prelude_writes(state, env)
        for key, value in prelude.items():
            state.set_storage(key[:20], int.from_bytes(key[20:], "big"), value)
        if recorder is not None:
            self.builder = self._access_list_builder()
            self.builder.add(0, recorder.close_record())
        self.fold = Fold(state, env, self.txs)

        # An in-memory pre-state small enough is shipped whole with the block (a few ms
        # of pickling): no NEED round trips at all. Otherwise workers fetch what they
        # miss (prefetch batches, then single round trips).
        nodes = self.pre_state.nodes
        shipped = None
        if isinstance(nodes, dict) and len(nodes) <= self.config.ship_prestate_limit:
            shipped = nodes
        else:
            # The previous block's new nodes (the top of this block's pre-state trie,
            # when blocks chain): without them every worker would fetch them again.
            shipped = self.pool.new_nodes
        self.pool.new_nodes = None
        self.pool.broadcast(m.wire(m.Block(self.block_id, env, self.pre_state.state_root, prelude,
                                           shipped, False)))
        self.started_block = True

        pool = self.pool
        conns = pool.conns
        sentinels = {p.sentinel: i for i, p in enumerate(pool.procs)}
        conn_index = {c: i for i, c in enumerate(conns)}
        waitables = list(conns) + list(sentinels)
        sched = self.sched
        self._dispatch()
        while not sched.done:
            ready = wait(waitables, timeout=self.config.liveness_timeout_s)
            if not ready:
                if not pool.alive():
                    raise WorkerFailure("a worker process died")
                continue
            for obj in ready:
                if obj in sentinels:
                    raise WorkerFailure(f"worker {sentinels[obj]} died")
            for obj in ready:
                w = conn_index[obj]
                conn = conns[w]
                try:
                    while conn.poll() and not self._switch_forced():
                        self._handle(w, m.named(conn.recv()))
                except (EOFError, OSError) as exc:
                    raise WorkerFailure(f"worker {w} pipe closed ({exc!r})") from None
            self.commit.validate()
            self.commit.advance()
            self._record_committed(sched.commit_idx)
            if self.fold.receipts_before_fold:
                self.fold.receipts_up_to(self.results, sched.commit_idx)
            verdict = self.judge.verdict(self.received, sched.commit_idx, self.n)
            if verdict is not None:
                self.fallback_reason = verdict
                if self.dispatcher.active_workers == 1 or not self.config.narrow_on_contention:
                    return self._run_rest_sequentially()
                self._narrow()
            self._dispatch()
        self.executed_at = time.perf_counter()
        self.end_block()
        # The commit tail: the same serial trie work the sequential executor does after
        # its last transaction (fold the final write sets in order, then one persist).
        cpu = [time.process_time()]
        self._prime_account_cache(self.n)
        self._record_committed(self.n)
        cpu.append(time.process_time())
        self.fold.fold(self.results, self.n)
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
            "wasted": self.judge.wasted,
            "needs": self.needs,
            "needed_nodes": self.needed_nodes,
            "fallback_at": self.fallback_at,
            "narrowed_at": self.narrowed_at,
            "fallback_after_s": round(self.fallback_after_s, 4),
            "merged_fold": self.fold.merged,
            "commit_cpu": self.commit_cpu,  # prime, fold, persist (CPU seconds)
            "worker_timing": [
                [round(x, 3) for x in t] if t else None for t in self.worker_timing
            ],
        }

    # ---------------------------------------------------------------- contention
    def _narrow(self) -> None:
        """Contention: from now on only worker 0 gets tasks, lowest index first. It runs
        them in order and learns its own write sets at once, so a transaction no longer
        waits for a lower one: that one will have run again, on the same worker, first."""
        self.dispatcher.narrow()
        self.narrowed_at = self.sched.commit_idx
        self.narrow_reason, self.fallback_reason = self.fallback_reason, None
        self.sched.release_waiting()
        self.judge.start_over(self.dispatcher.tasks_in_flight)
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
        self._record_committed(start)
        fold = self.fold
        fold.fold(self.results, start)
        self.results[:] = [None] * self.n
        tail: list[AccessRecord] = []
        gas_used, fold.bloom = apply_transactions(
            self.state, self.env, self.txs, fold.receipts, start, fold.header.gas_used,
            fold.bloom, recorder=self.recorder, records=tail,
        )
        for offset, record in enumerate(tail):
            self.builder.add(start + 1 + offset, record)
        fold.header.gas_used = gas_used
        self.executed_at = time.perf_counter()
        self.end_block()
        result = self._finish()
        result.stats.fallback = True
        result.stats.incarnations = self.sched.executions + (self.n - start)
        return result

    def _switch_forced(self) -> bool:
        """Test hook (`BlockSTMConfig.fallback_after`): once that many results are in,
        take no more, so that the switch to sequential always comes before the block's
        last transaction commits (results drained all at once would commit it first)."""
        after = self.config.fallback_after
        return after is not None and self.received >= after

    # ---------------------------------------------------------------- worker messages
    def _collect_end_acks(self) -> None:
        """END was sent to every worker: wait for their ENDED (answering NEEDs)."""
        pool = self.pool
        try:
            waiting = set(range(len(pool.conns)))
            deadline = time.monotonic() + self.config.liveness_timeout_s
            while waiting:
                conns = [pool.conns[w] for w in waiting]
                ready = wait(conns, timeout=max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise WorkerFailure("workers did not acknowledge the end of a block")
                for ready_conn in ready:
                    w = pool.conns.index(ready_conn)
                    msg = m.named(pool.conns[w].recv())
                    if isinstance(msg, m.Ended) and msg.block_id == self.block_id:
                        waiting.discard(w)
                        self.worker_timing[w] = msg.timing
                    elif isinstance(msg, m.Need):
                        self._answer_need(w, msg)
        except (WorkerFailure, EOFError, OSError, ValueError):
            self.owner.kill_pool()
        finally:
            self.started_block = False

    def _handle(self, w: int, msg: m.Message) -> None:
        if isinstance(msg, m.Results):
            for inner in msg.messages:
                self._handle(w, m.named(inner))
            return
        if isinstance(msg, m.Need):
            self._answer_need(w, msg)
            return
        if isinstance(msg, m.Done):
            if msg.block_id == self.block_id:
                self._done(w, msg)
        elif isinstance(msg, m.Blocked):
            if msg.block_id == self.block_id:
                self._blocked(w, msg)
        elif isinstance(msg, m.Error):
            if msg.block_id == self.block_id:
                raise WorkerFailure(f"worker {w} failed on transaction {msg.tx}:\n{msg.text}")

    def _done(self, w: int, msg: m.Done) -> None:
        sched = self.sched
        tx = msg.tx
        self.dispatcher.landed(w, tx)
        if msg.accounts:
            self.base_accounts.update(msg.accounts)
        if not sched.is_current(tx, msg.incarnation):
            return
        self.received += 1
        self.judge.incarnation_done()
        wrote_new = self.mv.record(tx, msg.writes, msg.deltas)
        self.results[tx] = TxResult(msg.reads, msg.writes, msg.deltas, msg.codes, msg.outcome)
        self.dispatcher.share_update(w, (tx, msg.writes, msg.deltas, msg.codes))
        sched.finished(tx, wrote_new)
        if self.config.on_result is not None:
            self.config.on_result(self.received)

    def _blocked(self, w: int, msg: m.Blocked) -> None:
        sched = self.sched
        tx = msg.tx
        self.dispatcher.landed(w, tx)
        if not sched.is_current(tx, msg.incarnation):
            return
        self.judge.incarnation_blocked()
        if self.dispatcher.active_workers == 1 and self.narrowed_at is not None:
            sched.retry(tx)  # in order on one worker: the dependency runs again before it
        else:
            sched.blocked(tx, msg.dependency)

    def _answer_need(self, w: int, msg: m.Need) -> None:
        """Need -> Node; the nodes also go to the other workers with their next WORK."""
        values: list = []
        if msg.block_id == self.block_id:
            self.needs += 1
            self.needed_nodes += len(msg.hashes)
            nodes = self.pre_state.nodes
            for key in msg.hashes:
                try:
                    values.append(nodes[key])
                except KeyError:
                    values.append(None)
            self.dispatcher.share_nodes(w, msg.hashes, values)
        else:
            values = [None] * len(msg.hashes)
        self.pool.send(w, m.wire(m.Node(msg.block_id, msg.request_id, values)))

    # ---------------------------------------------------------------- the tail
    def _prime_account_cache(self, end: int) -> None:
        prime_account_cache(
            self.account_cache, self.base_accounts, self.results, end, self.node_of,
            self.pre_state.state_root,
        )

    # ---------------------------------------------------------------- access list
    def _access_list_builder(self) -> AccessListBuilder:
        adb = self.state._account_db
        pre = PreBlockValues(self.account_cache, adb._get_account, self.node_of, self.code_of)
        captured = adb.pre_values  # values the coordinator's own indexes overwrote

        def pre_value(location: bytes) -> Any:
            if location in captured:
                return captured[location]
            return pre.value(location)

        # Asked on wipes, which a sequential tail after a fallback may do once the fold
        # has changed the account cache: read the pre-state itself.
        return AccessListBuilder(pre_value, pre_state_storage(self.pre_state))

    def _record_committed(self, end: int) -> None:
        """Add the access records of the committed transactions not yet recorded, up to
        `end` (before the fold frees their results). Called as the commit index
        advances, so the records are made while the workers execute, not in the tail:
        a committed incarnation is final, and until the fold the account cache holds
        only pre-state accounts (primed here for the accounts the records write)."""
        if self.recorder is None or end <= self.recorded:
            return
        start, self.recorded = self.recorded, end
        prime_written_accounts(
            self.account_cache, self.base_accounts, self.results, start, end, self.node_of,
            self.pre_state.state_root,
        )
        code_of = self.code_of
        for i in range(start, end):
            result = self.results[i]
            assert result is not None
            self.builder.add(i + 1, record_of(result, code_of))

    def _finish(self) -> ExecutionResult:
        state = self.state
        fold = self.fold
        recorder = self.recorder
        if recorder is not None:
            recorder.open_record()
        requests = finish_block(state, self.block, fold.receipts)
        access_list = None
        if recorder is not None:
            self.builder.add(self.n + 1, recorder.close_record())
            access_list = self.builder.build()
        state.persist()
        return ExecutionResult(
            access_list=access_list,
            requests=requests,
            receipts=tuple(fold.receipts),
            gas_used=fold.header.gas_used,
            logs_bloom=fold.bloom,
            post_state_root=state.state_root,
            state_nodes=self.db.pending(),
            stats=ExecutionStats(
                executor=BlockSTMExecutor.name,
                transactions=self.n,
                seconds=0.0,
                workers=len(self.pool.conns),
                incarnations=self.sched.executions,
            ),
        )
