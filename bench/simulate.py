"""`laminar bench --simulate-workers 4,8,16,32`: a model of Block-STM and of the
access-list import at N workers, calibrated on this machine and checked against the
1- and K-worker runs the bench just timed.

What is measured (untimed, after the bench's rounds):

* **per transaction, in this process, on the workers' own code path**
  (`execution.blockstm.worker.BlockContext.execute` over a `Worker`'s caches, the
  transactions in block order with every lower write set installed, as one worker with
  warm caches runs them): sender recovery, execution, installing its own write set,
  pickling its result, unpickling it (the coordinator's side), pickling its write set
  for another worker and what that worker pays to unpickle and install it. Thread CPU
  time, the fastest of two passes after a warm-up pass. Why not a sequential pass: the
  sequential executor runs py-evm's AccountDB, not the workers' lean read path (the
  bench's `speedup / scaling`), so its per-transaction cost is not a worker's. Why not
  the workers' own clocks: they cannot be read without changing worker.py, and on a busy
  2-core machine a worker's wall time counts the time the coordinator took its core.
* **read and write sets**: from the same pass, the locations each transaction read and
  wrote (the final incarnation's, which are Block-STM's committed ones), kept where they
  matter: a location one transaction reads and a lower one writes.
* **the coordinator**, from one instrumented run of each executor (Block-STM and the
  importer, with 1 worker, and with K): its CPU time before the first task is out
  (setup), and between then and the end of execution (the loop: receiving and handling
  every result, validation, commits, dispatch; for the importer, its share of the state
  root work, timed per step). The instrumentation wraps a few of the coordinator's
  functions from here for that one run (module attributes, put back after), so nothing
  in execution/ changes.

The per-result cost of the coordinator is calibrated on the one-worker run: `c0` =
(loop CPU - unpickling the results) / results; at N workers a result also costs
pickling its write set for the N-1 others. Setup pickles the block announcement (and,
for the importer, every write set of the list) once, whatever N: the executors send the
same bytes to every worker (`_Pool.broadcast`).

The model is a discrete-event simulation of the coordinator and N workers, with
processor sharing over `cores` CPUs (N+1 for the predictions: a core per worker and one
for the coordinator; this machine's usable CPUs for the validation). Block-STM's run
uses the executor's own `Scheduler`, `Dispatcher` (tasks in flight per worker, lowest
index first) and `ContentionJudge` (narrowing to one worker), and the multi-version
memory with version tokens in place of values: a read is what the reading worker's
replica held when the task started (its own results at once, the others' only with its
next WORK message), a read of an ESTIMATE stops the task (half its cost), and
validation, aborts and re-executions follow from the versions. The importer's run:
every worker gets its transactions (index w, w+N, ...) and every write set of the list
at once, runs them without conflicts, and the coordinator interleaves the root work
with handling the results. Not modelled: pipe latency and wake-ups, trie-node caches
warming per worker, by-value validation passing a re-execution that wrote the same
values, storage wipes, NEED round trips (the synthetic pre-states are shipped whole).
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import heapq
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Iterator, Optional, Sequence

from execution.executor import BlockInput, Executor, StateView

BLOCKED_COST_SHARE = 0.5  # a task that meets an ESTIMATE stops on the way: half its cost
ESTIMATE_UPDATE_S = 2e-6  # a worker marking an aborted write set ESTIMATE
# Coordinator utilisation taken as saturated ("~100%": with results arriving in bursts
# a coordinator that is the bottleneck still idles a little between them).
SATURATED = 0.9
_thread_time = time.thread_time


def _dumps(obj: Any) -> bytes:
    return bytes(ForkingPickler.dumps(obj))


# ------------------------------------------------------------- per-transaction costs


@dataclass
class TxCosts:
    """What each transaction costs on the workers' code path, and what it reads/writes."""

    n: int
    recover: list[float]  # sender recovery (a worker's first task of the transaction)
    execute: list[float]  # BlockContext.execute, sender known
    own_update: list[float]  # the worker installing its own result in its replica
    send: list[float]  # pickling the DONE message
    recv: list[float]  # the coordinator unpickling it
    share: list[float]  # the coordinator pickling the write set for one other worker
    update: list[float]  # another worker unpickling and installing that write set
    validate: list[float]  # the coordinator validating its whole read set once
    reads: list[tuple[bytes, ...]]  # locations read that a lower transaction writes
    writes: list[tuple[bytes, ...]]  # written locations some higher transaction reads
    deltas: list[tuple[bytes, ...]]  # the same, for commutative balance deltas
    announce_dumps: float = 0.0  # the BLOCK message (the shipped pre-state), pickled once
    announce_loads: float = 0.0
    seeds_dumps: float = 0.0  # the importer: every write set of the list, pickled once
    seeds_loads: float = 0.0
    seeds_apply: float = 0.0
    tasks_dumps: float = 0.0  # the importer: every transaction object, once

    def task(self, i: int) -> float:
        return self.execute[i] + self.own_update[i] + self.send[i]

    def first_touch(self, i: int) -> float:
        return self.recover[i]

    def summary(self) -> dict[str, Any]:
        def mean_us(values: Sequence[float]) -> float:
            return round(1e6 * sum(values) / len(values), 1) if values else 0.0

        return {
            "txs": self.n,
            "execute_us": mean_us(self.execute),
            "recover_us": mean_us(self.recover),
            "own_update_us": mean_us(self.own_update),
            "send_us": mean_us(self.send),
            "recv_us": mean_us(self.recv),
            "share_us": mean_us(self.share),
            "update_us": mean_us(self.update),
            "validate_us": mean_us(self.validate),
            "worker_total_s": round(sum(self.recover) + sum(map(self.task, range(self.n))), 4),
            "conflicting_reads_per_tx": round(sum(map(len, self.reads)) / max(1, self.n), 2),
            "announce_dumps_s": round(self.announce_dumps, 5),
            "seeds_dumps_s": round(self.seeds_dumps, 5),
            "seeds_apply_s": round(self.seeds_apply + self.seeds_loads, 5),
            "tasks_dumps_s": round(self.tasks_dumps, 5),
        }


def _prelude(block: BlockInput, pre_state: StateView) -> dict:
    from execution.blockstm.executor import prelude_writes
    from execution.overlay import OverlayDB
    from execution.rules import make_execution_context
    from execution.state_db import batched_state_class

    env = block.env
    state = batched_state_class(env.vm_class.get_state_class())(
        OverlayDB(pre_state.nodes), make_execution_context(env), pre_state.state_root
    )
    return prelude_writes(state, env)


class _Pass:
    """One pass over the block on a worker's code path, in this process."""

    def __init__(self, worker: Any, block: BlockInput, pre_state: StateView, prelude: dict,
                 block_id: int) -> None:
        from execution.blockstm.worker import BlockContext

        self.block = block
        self.ctx = BlockContext(worker, block_id, block.env, pre_state.state_root, prelude)
        worker.ctx = self.ctx
        # A second replica: what another worker pays to install a shared write set.
        self.other = BlockContext(worker, block_id, block.env, pre_state.state_root, prelude)

    def run(self) -> list[list[Any]]:
        from execution.blockstm import messages as m

        ctx, other = self.ctx, self.other
        rows: list[list[Any]] = []
        for i, tx in enumerate(self.block.transactions):
            t0 = _thread_time()
            tx.sender  # noqa: B018 (recovered once, cached on the object)
            t1 = _thread_time()
            reads, writes, deltas, codes, outcome = ctx.execute(i, tx)
            t2 = _thread_time()
            ctx.apply_update(i, writes, deltas, codes)
            t3 = _thread_time()
            done = m.wire(m.Done(1, i, 0, reads, writes, deltas, codes, outcome, {}))
            blob = _dumps(done)
            t4 = _thread_time()
            ForkingPickler.loads(blob)
            t5 = _thread_time()
            update = _dumps((i, writes, deltas, codes))
            t6 = _thread_time()
            other.apply_update(*ForkingPickler.loads(update))
            t7 = _thread_time()
            rows.append([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6,
                         reads, writes, deltas])
        # Validation against the final write sets (what a coordinator does, per read).
        mv = ctx.mv
        for i, row in enumerate(rows):
            t0 = _thread_time()
            mv.validate(i, row[7])
            row.insert(7, _thread_time() - t0)
        return rows


def measure_tx_costs(make_block: Callable[[], BlockInput], pre_state: StateView,
                     access_list: Any = None, passes: int = 2) -> TxCosts:
    """Per-transaction costs on the workers' code path (see the module doc), with the
    garbage collector off: this process's heap (the workloads, the results kept) is not
    a worker's, and a full collection would land on whichever transaction is running."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _measure_tx_costs(make_block, pre_state, access_list, passes)
    finally:
        if enabled:
            gc.enable()


def _measure_tx_costs(make_block: Callable[[], BlockInput], pre_state: StateView,
                      access_list: Any, passes: int) -> TxCosts:
    from execution.blockstm import messages as m
    from execution.blockstm.worker import Worker

    worker = Worker(None, 0)
    nodes = pre_state.nodes
    if isinstance(nodes, dict):
        worker.nodes.update(nodes)
    first = make_block()
    prelude = _prelude(first, pre_state)
    best: Optional[list[list[float]]] = None
    rows: list[list[Any]] = []
    for k in range(passes + 1):  # the first pass warms the caches, as earlier rounds do
        rows = _Pass(worker, first if k == 0 else make_block(), pre_state, prelude, k + 1).run()
        if k == 0:
            continue
        columns = [list(column) for column in zip(*(row[:8] for row in rows))]
        best = columns if best is None else [
            [min(a, b) for a, b in zip(old, new)] for old, new in zip(best, columns)
        ]
    assert best is not None
    n = len(rows)
    # Where reads meet lower writes: only those locations can make a conflict.
    written_by: dict[bytes, int] = {}  # location -> lowest writer
    for i, row in enumerate(rows):
        for key in list(row[9]) + list(row[10]):
            written_by.setdefault(key, i)
    read_keys: list[tuple[bytes, ...]] = []
    wanted: set[bytes] = set()
    for i, row in enumerate(rows):
        keys = tuple(key for key in row[8] if written_by.get(key, n) < i)
        read_keys.append(keys)
        wanted.update(keys)
    costs = TxCosts(
        n=n, recover=best[0], execute=best[1], own_update=best[2], send=best[3],
        recv=best[4], share=best[5], update=best[6], validate=best[7], reads=read_keys,
        writes=[tuple(k for k in row[9] if k in wanted) for row in rows],
        deltas=[tuple(k for k in row[10] if k in wanted) for row in rows],
    )
    block = make_block()
    shipped = nodes if isinstance(nodes, dict) else None
    announce = m.wire(m.Block(1, block.env, pre_state.state_root, prelude, shipped, False))
    t0 = _thread_time()
    blob = _dumps(announce)
    t1 = _thread_time()
    ForkingPickler.loads(blob)
    costs.announce_dumps, costs.announce_loads = t1 - t0, _thread_time() - t1
    t0 = _thread_time()
    _dumps(list(block.transactions))
    costs.tasks_dumps = _thread_time() - t0
    if access_list is not None:
        _measure_seeds(costs, access_list, block, pre_state, prelude, worker)
    return costs


def _measure_seeds(costs: TxCosts, access_list: Any, block: BlockInput, pre_state: StateView,
                   prelude: dict, worker: Any) -> None:
    """The importer's extra: the list's write sets go to every worker, which installs them."""
    from execution.account_rlp import AccountFields
    from execution.bal.apply import read_pre_account
    from execution.bal.write_sets import seed_write_sets
    from execution.blockstm.triereader import decode_node
    from execution.blockstm.worker import BlockContext

    decoded: dict[bytes, Any] = {}

    def node_of(key: bytes) -> Any:
        node = decoded.get(key)
        if node is None:
            node = decoded[key] = decode_node(pre_state.nodes[key])
        return node

    def pre_account(address: bytes) -> AccountFields:
        return read_pre_account(node_of, pre_state.state_root, address)

    seeds, codes = seed_write_sets(access_list, len(block.transactions), pre_account)
    updates: list[tuple] = [(i, seed, {}, {}) for i, seed in enumerate(seeds) if seed is not None]
    t0 = _thread_time()
    blob = _dumps(updates)
    t1 = _thread_time()
    loaded = ForkingPickler.loads(blob)
    t2 = _thread_time()
    ctx = BlockContext(worker, 99, block.env, pre_state.state_root, prelude)
    for update in loaded:
        ctx.apply_update(*update)
    t3 = _thread_time()
    costs.seeds_dumps, costs.seeds_loads, costs.seeds_apply = t1 - t0, t2 - t1, t3 - t2


# ------------------------------------------------------------- the coordinator's cost


@dataclass
class CoordinatorProfile:
    """One instrumented run: the coordinator's CPU seconds, by part."""

    executor: str
    workers: int
    setup_s: float  # execute() called -> first task out
    loop_s: float  # -> execution over (results, validation, commits, dispatch, root work)
    root_steps_s: list[float] = field(default_factory=list)  # importer: the root work
    results: int = 0  # incarnations run (Block-STM) / transactions (importer)
    execution_s: Optional[float] = None  # wall, ExecutionStats.execution_seconds
    info: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "executor": self.executor, "workers": self.workers,
            "setup_cpu_s": round(self.setup_s, 5), "loop_cpu_s": round(self.loop_s, 5),
            "root_cpu_s": round(sum(self.root_steps_s), 5), "results": self.results,
            "execution_s": self.execution_s,
        }


class _Probe:
    def __init__(self) -> None:
        self.started: Optional[float] = None
        self.setup_done: Optional[float] = None
        self.ended: Optional[float] = None
        self.root_steps: list[float] = []

    def mark_setup(self) -> None:
        if self.setup_done is None:
            self.setup_done = _thread_time()

    def mark_end(self) -> None:
        if self.ended is None:
            self.ended = _thread_time()


@contextmanager
def _instrumented(probe: _Probe) -> Iterator[None]:
    """Wrap the coordinators' functions that mark the phases (put back on exit)."""
    import execution.bal.importer as bi
    import execution.blockstm.executor as bx

    saved: list[tuple[Any, str, Any]] = [
        (bx, "wait", bx.wait),
        (bx._BlockRun, "end_block", bx._BlockRun.end_block),
        (bi._ImportRun, "end_block", bi._ImportRun.end_block),
        (bi._ImportRun, "_send_work", bi._ImportRun._send_work),
        (bi._ImportRun, "_root_steps", bi._ImportRun._root_steps),
    ]
    blockstm_wait = bx.wait
    blockstm_end, import_end = bx._BlockRun.end_block, bi._ImportRun.end_block
    send_work, root_steps = bi._ImportRun._send_work, bi._ImportRun._root_steps

    def wait_blockstm(*args: Any, **kwargs: Any) -> Any:
        probe.mark_setup()  # the first wait: every first task is out
        return blockstm_wait(*args, **kwargs)

    def end_blockstm(self: Any) -> None:
        probe.mark_end()
        blockstm_end(self)

    def end_import(self: Any) -> None:
        probe.mark_end()
        import_end(self)

    def start_import(self: Any, *args: Any) -> None:
        # Setup ends when every task is out (the workers prepared their transactions
        # meanwhile, `messages.Prepare`; the model counts that time as serial).
        send_work(self, *args)
        probe.mark_setup()

    def root_import(self: Any, *args: Any) -> Iterator[None]:
        steps = root_steps(self, *args)
        while True:
            t0 = _thread_time()
            try:
                next(steps)
            except StopIteration:
                probe.root_steps.append(_thread_time() - t0)
                return
            probe.root_steps.append(_thread_time() - t0)
            yield

    patches: list[tuple[Any, str, Any]] = [
        (bx, "wait", wait_blockstm), (bx._BlockRun, "end_block", end_blockstm),
        (bi._ImportRun, "end_block", end_import), (bi._ImportRun, "_send_work", start_import),
        (bi._ImportRun, "_root_steps", root_import),
    ]
    for owner, attribute, value in patches:
        setattr(owner, attribute, value)
    try:
        yield
    finally:
        for owner, attribute, value in saved:
            setattr(owner, attribute, value)


def profile_coordinator(executor: Executor, make_block: Callable[[], BlockInput],
                        pre_state: StateView, runs: int = 3) -> CoordinatorProfile:
    """The coordinator's CPU by phase, in the fastest of `runs` runs."""
    name = getattr(executor, "name", type(executor).__name__)
    best: Optional[CoordinatorProfile] = None
    for _ in range(runs):
        probe = _Probe()
        block = make_block()
        gc.collect()
        with _instrumented(probe):
            probe.started = _thread_time()
            result = executor.execute(block, pre_state)
        stats = result.stats
        if probe.setup_done is None or probe.ended is None:
            raise RuntimeError(
                f"{name}: the run did not go through the parallel path "
                f"({'fallback' if stats.fallback else 'no phase marks'})"
            )
        info = dict(getattr(executor, "last_block_info", None) or {})
        profile = CoordinatorProfile(
            executor=name,
            workers=int(getattr(executor, "workers", 1)),
            setup_s=probe.setup_done - probe.started,
            loop_s=probe.ended - probe.setup_done,
            root_steps_s=probe.root_steps,
            results=int(stats.incarnations or len(block.transactions)),
            execution_s=stats.execution_seconds,
            info=info,
        )
        if best is None or (profile.execution_s or 0.0) < (best.execution_s or 0.0):
            best = profile  # the least disturbed run
    assert best is not None
    return best


# ------------------------------------------------------------------------ the model


@dataclass
class ModelParams:
    """The calibrated constants of the model (seconds of CPU unless said otherwise)."""

    c0: float  # Block-STM coordinator, per result, beyond unpickling it
    setup0: float  # Block-STM coordinator setup, beyond pickling the announcement
    bal_c0: float  # importer coordinator, per result, beyond unpickling it
    bal_setup0: float  # importer setup, beyond pickling the announcement and the list
    bal_root: list[float]  # importer: the root work, step by step
    # A worker's wall seconds per CPU second measured here: its own clock of running
    # tasks in the one-worker run over what the same tasks cost in the pass here.
    worker_scale: float = 1.0
    flush: float = 0.0  # a worker sending a batch of results, beyond pickling them
    sequential_factor: float = 1.0  # sequential executor per tx / a worker's (fallback)

    def as_dict(self) -> dict[str, Any]:
        return {
            "blockstm_coordinator_per_result_us": round(self.c0 * 1e6, 2),
            "blockstm_setup_s": round(self.setup0, 5),
            "bal_coordinator_per_result_us": round(self.bal_c0 * 1e6, 2),
            "bal_setup_s": round(self.bal_setup0, 5),
            "bal_root_s": round(sum(self.bal_root), 5),
            "bal_root_steps": len(self.bal_root),
            "worker_scale": round(self.worker_scale, 3),
            "worker_flush_us": round(self.flush * 1e6, 2),
            "sequential_factor": round(self.sequential_factor, 3),
        }


class _Engine:
    """Processor sharing over `cores`: every running job advances at min(1, cores/running)
    CPU-seconds per second, so jobs finish in the order of their virtual finishing times."""

    def __init__(self, cores: float) -> None:
        self.cores = float(cores)
        self.now = 0.0  # wall seconds
        self.virtual = 0.0  # CPU seconds each running job has had
        self.running = 0
        self.heap: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = 0
        self.stopped = False

    def start(self, work: float, then: Callable[[], None]) -> float:
        """Run a job of `work` CPU seconds, then `then`; the job's wall seconds at full rate."""
        work = max(0.0, work)
        self.seq += 1
        heapq.heappush(self.heap, (self.virtual + work, self.seq, then))
        self.running += 1
        return work

    def run(self) -> None:
        while self.heap and not self.stopped:
            finish, _, then = heapq.heappop(self.heap)
            rate = min(1.0, self.cores / self.running)
            self.now += (finish - self.virtual) / rate
            self.virtual = finish
            self.running -= 1
            then()


def _token(tx: int, incarnation: int, key: bytes) -> int:
    """A value standing for (writer, incarnation) at one location: equal values, same version."""
    return (hash((tx, incarnation, key)) & ((1 << 61) - 1)) + 1


class _WorkerSim:
    """A Block-STM worker: its task queue, its replica, its batched results (worker.py)."""

    def __init__(self, sim: Any, w: int) -> None:
        from execution.blockstm.mvmemory import MVMemory
        from execution.blockstm.worker import RESULTS_BATCH

        self.sim = sim
        self.w = w
        self.tasks: deque = deque()
        self.inbox: list = []
        self.outbox: list = []
        self.replica = MVMemory()
        self.seen: set[int] = set()
        self.busy = False
        self.batch = RESULTS_BATCH
        self.busy_s = 0.0
        self.flushes = 0

    def deliver(self, message: tuple) -> None:
        self.inbox.append(message)
        if not self.busy:
            self._loop()

    def _job(self, work: float, then: Callable[[], None]) -> None:
        self.busy = True
        self.busy_s += self.sim.engine.start(work * self.sim.params.worker_scale, then)

    def _loop(self) -> None:
        if self.outbox and (not self.tasks or len(self.outbox) >= self.batch):
            outbox, self.outbox = self.outbox, []
            self.flushes += 1
            params = self.sim.params
            self._job(params.flush / params.worker_scale, lambda: self._flushed(outbox))
            return
        if self.inbox:
            messages, self.inbox = self.inbox, []
            self._job(sum(self._cost(msg) for msg in messages), lambda: self._handled(messages))
            return
        self._run_next()

    def _flushed(self, outbox: list) -> None:
        self.sim.receive(self.w, outbox)
        self.busy = False
        self._loop()

    def _cost(self, message: tuple) -> float:
        costs = self.sim.costs
        kind = message[0]
        if kind == "block":
            return costs.announce_loads + message[1]
        total = 0.0
        for tx, writes, _deltas, _codes in message[1]:
            total += ESTIMATE_UPDATE_S if writes is None else costs.update[tx]
        for tx, _inc, _obj in message[2]:
            if tx not in self.seen:  # prefetch: the sender is recovered on arrival
                self.seen.add(tx)
                total += costs.first_touch(tx)
        return total

    def _handled(self, messages: list) -> None:
        for message in messages:
            if message[0] == "work":
                for tx, writes, deltas, _codes in message[1]:
                    if writes is None:
                        self.replica.mark_estimate(tx)
                    else:
                        self.replica.record(tx, writes, deltas)
                self.tasks.extend(message[2])
        self.busy = False
        self._loop()

    def _run_next(self) -> None:
        if not self.tasks:
            self.busy = False
            return
        from execution.blockstm.mvmemory import EstimateHit

        tx, incarnation, _obj = self.tasks.popleft()
        costs = self.sim.costs
        reads: dict[bytes, Any] = {}
        try:
            for key in costs.reads[tx]:
                reads[key] = self.replica.resolve(key, tx)
        except EstimateHit as hit:
            blocked = ("blocked", tx, incarnation, hit.tx)
            self._job(BLOCKED_COST_SHARE * costs.execute[tx], lambda: self._finished(blocked))
            return
        self._job(costs.task(tx), lambda: self._finished(("done", tx, incarnation, reads)))

    def _finished(self, result: tuple) -> None:
        if result[0] == "done":
            tx, incarnation = result[1], result[2]
            writes, deltas = self.sim.write_set(tx, incarnation)
            self.replica.record(tx, writes, deltas)
        self.outbox.append(result)
        self.busy = False
        self._loop()


class _BlockSTMSim:
    """Block-STM's coordinator over simulated workers, with the executor's own scheduler,
    dispatcher and contention judge."""

    def __init__(self, costs: TxCosts, params: ModelParams, workers: int, cores: float) -> None:
        from execution.blockstm.config import BlockSTMConfig
        from execution.blockstm.contention import ContentionJudge
        from execution.blockstm.dispatch import Dispatcher
        from execution.blockstm.mvmemory import MVMemory
        from execution.blockstm.scheduler import Scheduler

        self.costs = costs
        self.params = params
        self.n = costs.n
        self.engine = _Engine(cores)
        self.config = BlockSTMConfig(workers=workers, force_parallel=True)
        self.sched = Scheduler(self.n)
        self.mv = MVMemory()
        self.judge = ContentionJudge(self.config)
        self.dispatcher = Dispatcher(self.config, workers, [None] * self.n,
                                     [{} for _ in range(workers)])
        self.workers = [_WorkerSim(self, w) for w in range(workers)]
        self.reads: list[Optional[dict]] = [None] * self.n
        self.inbox: list[tuple[int, tuple]] = []
        self.busy = False
        self.busy_s = 0.0
        self.validation_s = 0.0
        self.received = 0
        self.narrowed_at: Optional[int] = None
        self.fallback_at: Optional[int] = None
        self.finished_at: Optional[float] = None
        self.txs = list(range(self.n))

    def write_set(self, tx: int, incarnation: int) -> tuple[dict, dict]:
        costs = self.costs
        return ({key: _token(tx, incarnation, key) for key in costs.writes[tx]},
                {key: _token(tx, incarnation, key) for key in costs.deltas[tx]})

    # ---------------------------------------------------------------- the coordinator
    def _job(self, work: float, then: Callable[[], None]) -> None:
        self.busy = True
        self.busy_s += self.engine.start(work, then)

    def run(self) -> dict[str, Any]:
        self._job(self.params.setup0 + self.costs.announce_dumps, self._started)
        self.engine.run()
        return {
            "seconds": self.finished_at,
            "coordinator_busy_s": self.busy_s,
            "coordinator_utilisation": (
                self.busy_s / self.finished_at if self.finished_at else None
            ),
            "validation_s": self.validation_s,
            "incarnations": self.sched.executions,
            "aborts": self.sched.aborts,
            "narrowed_at": self.narrowed_at,
            "fallback_at": self.fallback_at,
            "worker_busy_s": [round(w.busy_s, 4) for w in self.workers],
            "worker_flushes": [w.flushes for w in self.workers],
        }

    def _started(self) -> None:
        startup = 0.0  # the worker's own part of a new block (besides unpickling it)
        for worker in self.workers:
            worker.inbox.append(("block", startup))
        self._dispatch()
        self.busy = False
        for worker in self.workers:
            if not worker.busy:
                worker._loop()

    def _send(self, w: int, raw: tuple) -> None:
        from execution.blockstm import messages as m

        work = m.named(raw)
        assert isinstance(work, m.Work)
        self.workers[w].deliver(("work", work.updates, work.tasks))

    def _dispatch(self) -> None:
        self.dispatcher.depth = self.judge.tasks_in_flight()  # as the executor's run
        self.dispatcher.dispatch(self.sched, 0, self.txs, self._send)

    def receive(self, w: int, results: list) -> None:
        self.inbox.extend((w, result) for result in results)
        if not self.busy and self.finished_at is None:
            self._loop()

    def _loop(self) -> None:
        if not self.inbox:
            self.busy = False
            return
        batch, self.inbox = self.inbox, []
        others = len(self.workers) - 1
        costs = self.costs
        work = 0.0
        for _w, result in batch:
            tx = result[1]
            work += self.params.c0 + costs.recv[tx]
            if result[0] == "done":
                work += others * costs.share[tx]
        self._job(work, lambda: self._process(batch))

    def _process(self, batch: list) -> None:
        sched = self.sched
        for w, result in batch:
            kind, tx, incarnation = result[0], result[1], result[2]
            self.dispatcher.landed(w, tx)
            if not sched.is_current(tx, incarnation):
                continue
            if kind == "done":
                self.received += 1
                self.judge.incarnation_done()
                writes, deltas = self.write_set(tx, incarnation)
                wrote_new = self.mv.record(tx, writes, deltas)
                self.reads[tx] = result[3]
                self.dispatcher.share_update(w, (tx, writes, deltas, {}))
                sched.finished(tx, wrote_new)
            else:
                self.judge.incarnation_blocked()
                if self.dispatcher.active_workers == 1 and self.narrowed_at is not None:
                    sched.retry(tx)
                else:
                    sched.blocked(tx, result[3])
        checked = self._validate() + self._advance()
        self.validation_s += checked
        if sched.done:
            self._job(checked, self._finish)
            return
        self._job(checked, self._after_validation)

    def _after_validation(self) -> None:
        sched = self.sched
        verdict = self.judge.verdict(self.received, sched.commit_idx, self.n)
        if verdict is not None:
            if self.dispatcher.active_workers == 1 or not self.config.narrow_on_contention:
                self._rest_sequentially()
                return
            self.dispatcher.narrow()
            self.narrowed_at = sched.commit_idx
            sched.release_waiting()
            self.judge.start_over(self.dispatcher.tasks_in_flight)
        self._dispatch()
        self.busy = False
        self._loop()

    def _abort(self, tx: int) -> None:
        self.judge.incarnation_aborted()
        self.mv.mark_estimate(tx)
        self.dispatcher.share_estimate(tx)
        self.sched.abort(tx)

    def _validate(self) -> float:
        """commit.RollingCommit.validate; the CPU seconds it takes."""
        from execution.blockstm.scheduler import EXECUTED

        sched = self.sched
        span = sched.validation_range()
        cost = 0.0
        for v in span:
            if sched.status[v] == EXECUTED:
                reads = self.reads[v]
                assert reads is not None
                cost += self.costs.validate[v]
                if not self.mv.validate(v, reads):
                    self._abort(v)
        sched.validated_below(max(span.start, span.stop))
        return cost

    def _advance(self) -> float:
        """commit.RollingCommit.advance; the CPU seconds it takes."""
        sched = self.sched
        cost = 0.0
        while True:
            c = sched.next_to_commit()
            if c < 0:
                return cost
            reads = self.reads[c]
            assert reads is not None
            cost += self.costs.validate[c]
            if not self.mv.validate(c, reads):
                self._abort(c)
                return cost
            sched.commit(c)

    def _rest_sequentially(self) -> None:
        start = self.sched.commit_idx
        self.fallback_at = start
        costs = self.costs
        rest = sum(costs.recover[i] + costs.execute[i] for i in range(start, self.n))
        self._job(rest * self.params.sequential_factor, self._finish)

    def _finish(self) -> None:
        self.finished_at = self.engine.now
        self.engine.stopped = True


class _BalSim:
    """The access-list import: static interleaved tasks, no conflicts, the coordinator
    folding the list's root between looks at the results (execution/bal/importer.py)."""

    def __init__(self, costs: TxCosts, params: ModelParams, workers: int, cores: float) -> None:
        self.costs = costs
        self.params = params
        self.n = costs.n
        self.engine = _Engine(cores)
        self.workers = workers
        self.root_steps = deque(params.bal_root)
        self.inbox: list[int] = []
        self.received = 0
        self.busy = False
        self.busy_s = 0.0
        self.worker_busy = [0.0] * workers
        self.finished_at: Optional[float] = None

    def run(self) -> dict[str, Any]:
        costs = self.costs
        setup = (self.params.bal_setup0 + costs.tasks_dumps
                 + costs.announce_dumps + costs.seeds_dumps)
        self._job(setup, self._started)
        self.engine.run()
        return {
            "seconds": self.finished_at,
            "coordinator_busy_s": self.busy_s,
            "coordinator_utilisation": (
                self.busy_s / self.finished_at if self.finished_at else None
            ),
            "worker_busy_s": [round(b, 4) for b in self.worker_busy],
        }

    def _job(self, work: float, then: Callable[[], None]) -> None:
        self.busy = True
        self.busy_s += self.engine.start(work, then)

    def _started(self) -> None:
        costs = self.costs
        for w in range(self.workers):
            mine = list(range(w, self.n, self.workers))
            first = (costs.announce_loads + costs.seeds_loads + costs.seeds_apply
                     + sum(costs.first_touch(i) for i in mine))
            self._worker_job(w, first, functools.partial(self._worker_next, w, deque(mine), []))
        self.busy = False
        self._loop()

    def _worker_job(self, w: int, work: float, then: Callable[[], None]) -> None:
        self.worker_busy[w] += self.engine.start(work * self.params.worker_scale, then)

    def _worker_next(self, w: int, tasks: deque, outbox: list) -> None:
        from execution.blockstm.worker import RESULTS_BATCH

        if outbox and (not tasks or len(outbox) >= RESULTS_BATCH):
            self._worker_job(w, self.params.flush / self.params.worker_scale,
                             lambda: self._flushed(w, tasks, outbox))
            return
        if not tasks:
            return
        tx = tasks.popleft()
        self._worker_job(w, self.costs.task(tx),
                         lambda: self._worker_next(w, tasks, outbox + [tx]))

    def _flushed(self, w: int, tasks: deque, outbox: list) -> None:
        self.inbox.extend(outbox)
        if not self.busy:
            self._loop()
        self._worker_next(w, tasks, [])

    def _loop(self) -> None:
        if self.finished_at is not None:
            return
        batch, self.inbox = self.inbox, []
        work = sum(self.params.bal_c0 + self.costs.recv[tx] for tx in batch)
        root = self.root_steps.popleft() if self.root_steps else None
        if root is None and not batch:
            self.busy = False
            if self.received >= self.n:
                self._finish()
            return
        self._job(work + (root or 0.0), lambda: self._handled(len(batch)))

    def _handled(self, count: int) -> None:
        self.received += count
        self.busy = False
        if self.received >= self.n and not self.root_steps:
            self._finish()
            return
        self._loop()

    def _finish(self) -> None:
        self.finished_at = self.engine.now
        self.engine.stopped = True


def simulate_blockstm(costs: TxCosts, params: ModelParams, workers: int,
                      cores: float) -> dict[str, Any]:
    return _BlockSTMSim(costs, params, workers, cores).run()


def simulate_bal(costs: TxCosts, params: ModelParams, workers: int, cores: float) -> dict[str, Any]:
    return _BalSim(costs, params, workers, cores).run()


# ----------------------------------------------------------------- calibrate, predict


def calibrate(costs: TxCosts, blockstm_1: Optional[CoordinatorProfile],
              bal_1: Optional[CoordinatorProfile], sequential_s: Optional[float]) -> ModelParams:
    """The model's constants from the one-worker runs (see the module doc)."""
    n = max(1, costs.n)
    recv_total = sum(costs.recv)
    c0 = setup0 = bal_c0 = bal_setup0 = flush = 0.0
    scale = 1.0
    if blockstm_1 is not None:
        results = max(1, blockstm_1.results)
        timing = (blockstm_1.info.get("worker_timing") or [None])[0]
        in_process = sum(costs.execute) + sum(costs.own_update)
        if timing and timing[0] > 0 and in_process > 0:
            # [running tasks wall, CPU, waiting, sending]: the level of the worker's
            # costs on this machine now; the pass here gives how they spread over txs.
            scale = timing[0] / (in_process * results / n)
        setup0 = max(0.0, blockstm_1.setup_s - costs.announce_dumps)
        # The validation work of that run, as the model counts it (it hardly depends
        # on c0), is not part of the per-result constant.
        trial = ModelParams(c0=0.0, setup0=setup0, bal_c0=0.0, bal_setup0=0.0, bal_root=[],
                            worker_scale=scale)
        validation = _BlockSTMSim(costs, trial, blockstm_1.workers, blockstm_1.workers + 1).run()
        c0 = max(0.0, (blockstm_1.loop_s - recv_total * results / n
                       - validation["validation_s"]) / results)
        flushes = sum(validation["worker_flushes"])
        if timing and flushes:  # the worker's own clock of sending, less the pickling
            flush = max(0.0, (timing[3] - scale * sum(costs.send) * results / n) / flushes)
    root: list[float] = []
    if bal_1 is not None:
        root = list(bal_1.root_steps_s)
        bal_c0 = max(0.0, (bal_1.loop_s - sum(root) - recv_total) / n)
        bal_setup0 = max(0.0, bal_1.setup_s - costs.announce_dumps - costs.seeds_dumps
                         - costs.tasks_dumps)
    worker_sequential = sum(costs.recover) + sum(costs.execute)
    factor = sequential_s / worker_sequential if sequential_s and worker_sequential else 1.0
    return ModelParams(c0=c0, setup0=setup0, bal_c0=bal_c0, bal_setup0=bal_setup0,
                       bal_root=root, worker_scale=scale, flush=flush, sequential_factor=factor)


def _error(predicted: Optional[float], measured: Optional[float]) -> Optional[float]:
    if predicted is None or not measured:
        return None
    return (predicted - measured) / measured


def _fastest(workers: Sequence[int], seconds: Sequence[Optional[float]]) -> Optional[int]:
    known = [(t, n) for n, t in zip(workers, seconds) if t is not None]
    return min(known)[1] if known else None


def _saturation(workers: Sequence[int], utilisation: Sequence[Optional[float]]) -> Optional[int]:
    for n, u in zip(workers, utilisation):
        if u is not None and u >= SATURATED:
            return n
    return None


def simulate_workload(
    workload: Any,
    record: dict[str, Any],
    workers: Sequence[int],
    *,
    access_list: Any = None,
    blockstm: Optional[Executor] = None,
    blockstm_one: Optional[Executor] = None,
    bal: Optional[Executor] = None,
    bal_one: Optional[Executor] = None,
    usable_cpus: Optional[int] = None,
) -> dict[str, Any]:
    """Measure, calibrate, validate against `record`'s timed runs, predict at `workers`."""
    started = time.perf_counter()
    pre = workload.pre_state()
    costs = measure_tx_costs(workload.block, pre, access_list)

    def with_list() -> BlockInput:
        return dataclasses.replace(workload.block(), access_list=access_list)

    k = int(record.get("workers") or 1)
    profiles: dict[str, CoordinatorProfile] = {}
    for key, executor, make in (("blockstm_1", blockstm_one, workload.block),
                                ("blockstm_k", blockstm, workload.block),
                                ("bal_1", bal_one, with_list), ("bal_k", bal, with_list)):
        if executor is None or (make is with_list and access_list is None):
            continue
        if key.endswith("_k") and k == 1:
            continue  # the one-worker run is the K-worker run
        profiles[key] = profile_coordinator(executor, make, pre)
    # Calibrate on one worker (no sharing, a core each for worker and coordinator);
    # without that run, on the K-worker one.
    calibrated_on = {"blockstm": profiles.get("blockstm_1") or profiles.get("blockstm_k"),
                     "bal": profiles.get("bal_1") or profiles.get("bal_k")}
    params = calibrate(costs, calibrated_on["blockstm"], calibrated_on["bal"],
                       record.get("sequential_s"))
    cores = usable_cpus or 1
    have_blockstm = "blockstm_1" in profiles or "blockstm_k" in profiles
    have_bal = "bal_1" in profiles or "bal_k" in profiles

    validation: dict[str, Any] = {"cores": cores, "blockstm": {}, "bal": {}}
    for side, simulate, timed_keys in (
        ("blockstm", simulate_blockstm, ("one_worker_s", "parallel_s")),
        ("bal", simulate_bal, ("bal_1worker_execution_s", "bal_execution_s")),
    ):
        if not (f"{side}_1" in profiles or f"{side}_k" in profiles):
            continue
        runs_of: list[tuple[int, Optional[str], str]] = [
            (1, timed_keys[0], f"{side}_1"), (k, timed_keys[1], f"{side}_k")]
        if k == 1:  # Block-STM's rounds ran its one-worker fallback: only the calibration
            runs_of = [(1, None if side == "blockstm" else timed_keys[0], f"{side}_1")]
        for n_workers, timed_key, profile_key in runs_of:
            profile = profiles.get(profile_key)
            timed = record.get(timed_key) if timed_key else None
            if profile is None and timed is None:
                continue
            predicted = simulate(costs, params, n_workers, cores)
            # The least disturbed of the runs: the bench's rounds and the calibration's.
            runs = [t for t in (timed, profile.execution_s if profile else None) if t]
            measured = min(runs) if runs else None
            entry = {
                "workers": n_workers,
                "predicted_s": predicted["seconds"],
                "measured_s": measured,
                "measured_rounds_s": timed,
                "measured_calibration_s": profile.execution_s if profile else None,
                "relative_error": _error(predicted["seconds"], measured),
                "predicted_coordinator_utilisation": predicted["coordinator_utilisation"],
                # The model's constants come from this run: not an independent check.
                "in_sample": profile is not None and profile is calibrated_on.get(side),
            }
            if side == "blockstm":
                entry["predicted_incarnations_per_tx"] = predicted["incarnations"] / max(1, costs.n)
                entry["measured_incarnations_per_tx"] = (
                    profile.results / max(1, costs.n) if profile else None)
            validation[side][str(n_workers)] = entry
    errors = [abs(v["relative_error"]) for side in ("blockstm", "bal")
              for v in validation[side].values() if v["relative_error"] is not None]
    validation["max_abs_relative_error"] = max(errors) if errors else None
    independent = [abs(v["relative_error"]) for side in ("blockstm", "bal")
                   for v in validation[side].values()
                   if v["relative_error"] is not None and not v["in_sample"]]
    validation["max_abs_relative_error_out_of_sample"] = max(independent) if independent else None

    # Predictions: a core per worker and one for the coordinator.
    top = max(list(workers) + [2])
    curve = sorted(set(workers) | {1, 2} | {1 << e for e in range(top.bit_length()) if 1 << e <= top})
    blockstm_runs = [simulate_blockstm(costs, params, n, n + 1) if have_blockstm else None
                     for n in curve]
    bal_runs = [simulate_bal(costs, params, n, n + 1) if have_bal else None for n in curve]

    def pick(runs: list, key: str) -> list:
        return [run[key] if run is not None else None for run in runs]

    at = [curve.index(n) for n in workers]
    blockstm_s, bal_s = pick(blockstm_runs, "seconds"), pick(bal_runs, "seconds")
    utilisation = pick(blockstm_runs, "coordinator_utilisation")
    bal_utilisation = pick(bal_runs, "coordinator_utilisation")
    sequential_s = record.get("sequential_s")
    return {
        "workers": list(workers),
        "blockstm_s": [blockstm_s[i] for i in at],
        "bal_s": [bal_s[i] for i in at],
        "coordinator_utilisation": [utilisation[i] for i in at],
        "bal_coordinator_utilisation": [bal_utilisation[i] for i in at],
        "blockstm_incarnations_per_tx": [
            run["incarnations"] / max(1, costs.n) if run else None
            for run in (blockstm_runs[i] for i in at)],
        # Where the contention judge narrowed the block to one worker (None: it did not).
        "blockstm_narrowed_at": [
            run["narrowed_at"] if run else None for run in (blockstm_runs[i] for i in at)],
        "blockstm_speedup": [_ratio(sequential_s, blockstm_s[i]) for i in at],
        "bal_speedup": [_ratio(sequential_s, bal_s[i]) for i in at],
        # The smallest N (of 1, 2 and those asked for) whose coordinator is ~100% busy:
        # from there on more workers cannot make the block faster.
        "coordinator_saturated_at": _saturation(curve, utilisation),
        "bal_coordinator_saturated_at": _saturation(curve, bal_utilisation),
        # Where the predicted time is least (more workers only add coordinator work).
        "blockstm_fastest_at": _fastest(curve, blockstm_s),
        "bal_fastest_at": _fastest(curve, bal_s),
        "curve": {"workers": curve, "blockstm_s": blockstm_s, "bal_s": bal_s,
                  "coordinator_utilisation": utilisation,
                  "bal_coordinator_utilisation": bal_utilisation},
        "validation": validation,
        "parameters": params.as_dict(),
        "costs": costs.summary(),
        "profiles": {key: p.as_dict() for key, p in profiles.items()},
        "model_seconds": time.perf_counter() - started,
    }


def _ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or not denominator:
        return None
    return numerator / denominator
