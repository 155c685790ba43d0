"""Run executors side by side on the same block and pre-state; time and compare them.

For each executor and run:

* `execute` time: `executor.execute(block, pre_state)` alone (what ExecutionStats says);
* whole-block time: that plus the block's tail as a node commits it: the transactions
  and receipts tries (header roots), encoding the transactions and receipts, and one
  atomic, fsynced LevelDB batch with the new state nodes (`result.state_nodes`) and the
  encoded block data, into a fresh database that already holds the pre-state.

Transactions are decoded anew before every run (py-evm caches a recovered sender on the
transaction object, which would flatter whichever executor runs second), and the
garbage collector runs before every timed section. Execution reads the pre-state from
memory (the nodes dict), the same for every executor.

"identical" compares the parallel executor's result with the sequential one's: the
receipts (encoded bytes, in order), gas used, logs bloom and post-state root.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import platform
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import rlp

from execution.bal.codec import BlockAccessList
from execution.executor import BlockInput, ExecutionResult, Executor, StateView
from execution.roots import make_header_roots
from storage.leveldb import LevelDB

_STATE_BLOCK_KEY = b"\x01bench-block:"
_STATE_RECEIPTS_KEY = b"\x01bench-receipts:"


def machine_info() -> dict[str, Any]:
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    try:
        load = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        load = None
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "cpu_model": model or platform.processor() or None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_avg_1m": load,  # at the start: other work on the machine skews timings
    }


# -------------------------------------------------------------------------- one run


def _encode(obj: Any) -> bytes:
    encode = getattr(obj, "encode", None)
    return encode() if callable(encode) else rlp.encode(obj)


def receipt_status_ok(receipt: Any) -> bool:
    """Post-Byzantium receipts carry status 1 (b'\\x01') where the state root was."""
    return bytes(receipt.state_root) == b"\x01"


@dataclass(frozen=True)
class Summary:
    """What the bench keeps of an ExecutionResult: enough to compare and check it.

    Bytes and ints only, so a kept result adds nothing for the garbage collector to
    walk while the other executor runs.
    """

    receipts: tuple[bytes, ...]  # encoded, in order
    statuses_ok: tuple[bool, ...]
    cumulative_gas: tuple[int, ...]
    gas_used: int
    logs_bloom: int
    post_state_root: bytes
    state_nodes: int


def summarize(result: ExecutionResult) -> Summary:
    return Summary(
        receipts=tuple(_encode(r) for r in result.receipts),
        statuses_ok=tuple(receipt_status_ok(r) for r in result.receipts),
        cumulative_gas=tuple(int(r.gas_used) for r in result.receipts),
        gas_used=int(result.gas_used),
        logs_bloom=int(result.logs_bloom),
        post_state_root=bytes(result.post_state_root),
        state_nodes=len(result.state_nodes),
    )


@dataclass
class Run:
    """One executor's outcome on one block (the fastest of the repeats)."""

    executor: str
    # execute_s: transactions run to their final effects (ExecutionStats.execution_seconds);
    # state_root_s: the rest of execute() (fold into the trie, state root, new nodes);
    # block_s: the whole execute() call plus header roots and the atomic LevelDB persist.
    execute_s: Optional[float] = None
    state_root_s: Optional[float] = None
    block_s: Optional[float] = None
    roots_s: Optional[float] = None
    persist_s: Optional[float] = None
    result: Optional[Summary] = None
    error: Optional[str] = None
    incarnations: Optional[int] = None
    traceback: Optional[str] = None

    def keep_fastest(self, other: "Run") -> None:
        if other.error is not None:
            self.error = self.error or other.error
            self.traceback = self.traceback or other.traceback
            return
        if self.result is None:
            self.result = other.result
            self.incarnations = other.incarnations
        for name in ("execute_s", "state_root_s", "block_s", "roots_s", "persist_s"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is not None and (mine is None or theirs < mine):
                setattr(self, name, theirs)


def split_execute_time(stats: Any, wall: float) -> tuple[float, float]:
    """(execution, state-root) parts of one execute() call of `wall` seconds."""
    execution = getattr(stats, "execution_seconds", 0.0) or wall
    return execution, max(0.0, wall - execution)


def commit_tail(block: BlockInput, result: ExecutionResult, db: LevelDB) -> tuple[float, float]:
    """The block's tail after execution: header roots, then the atomic persist.

    Returns `(roots_s, persist_s)`.
    """
    started = time.perf_counter()
    transactions = tuple(block.transactions)
    tx_root, receipts_root = make_header_roots(transactions, result.receipts)
    encoded_block = rlp.encode([_encode(tx) for tx in transactions])
    encoded_receipts = rlp.encode([_encode(r) for r in result.receipts])
    roots_done = time.perf_counter()
    puts = dict(result.state_nodes)
    puts[_STATE_BLOCK_KEY + tx_root] = encoded_block
    puts[_STATE_RECEIPTS_KEY + receipts_root] = encoded_receipts
    db.write_atomically(puts)
    finished = time.perf_counter()
    return roots_done - started, finished - roots_done


class _Scratch:
    """A fresh LevelDB in a temp dir holding the pre-state, for one run's persist."""

    def __init__(self, root: Path, nodes: Any) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="run-", dir=root))
        self.db = LevelDB(self.path / "db")
        items = nodes.items() if hasattr(nodes, "items") else ()
        batch = dict(items)
        if batch:
            self.db.write_atomically(batch)

    def close(self) -> None:
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_executor(
    executor: Executor,
    block: BlockInput,
    pre_state: StateView,
    scratch_root: Path,
) -> Run:
    """Execute once and commit the tail; any exception is reported in `Run.error`."""
    run = Run(executor=getattr(executor, "name", type(executor).__name__))
    scratch = _Scratch(scratch_root, pre_state.nodes)
    try:
        gc.collect()
        started = time.perf_counter()
        try:
            result = executor.execute(block, pre_state)
        except Exception as exc:
            run.error = _describe(exc)
            run.traceback = traceback.format_exc()
            return run
        wall = time.perf_counter() - started
        stats = getattr(result, "stats", None)
        run.execute_s, run.state_root_s = split_execute_time(stats, wall)
        run.incarnations = getattr(stats, "incarnations", None)
        try:
            run.result = summarize(result)
        except Exception as exc:
            run.error = f"result: {_describe(exc)}"
            return run
        try:
            run.roots_s, run.persist_s = commit_tail(block, result, scratch.db)
        except Exception as exc:
            run.error = f"commit: {_describe(exc)}"
            return run
        run.block_s = wall + run.roots_s + run.persist_s
        return run
    finally:
        scratch.close()


# ---------------------------------------------------------------------- comparisons


def compare(reference: Summary, other: Summary) -> dict[str, bool]:
    return {
        "receipts": reference.receipts == other.receipts,
        "gas_used": reference.gas_used == other.gas_used,
        "logs_bloom": reference.logs_bloom == other.logs_bloom,
        "state_root": reference.post_state_root == other.post_state_root,
    }


def _ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def make_record(
    *,
    workload: str,
    description: str,
    txs: int,
    workers: int,
    sequential: Run,
    parallel: Run,
    machine: dict[str, Any],
    repeat: int,
    extra: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    errors = []
    if sequential.error:
        errors.append(f"sequential ({sequential.executor}): {sequential.error}")
    if parallel.error:
        errors.append(f"parallel ({parallel.executor}): {parallel.error}")
    if sequential.result is not None and parallel.result is not None:
        detail: Optional[dict[str, bool]] = compare(sequential.result, parallel.result)
        identical = all(detail.values()) and not errors
    else:
        detail = None
        identical = False
    incarnations = parallel.incarnations
    record: dict[str, Any] = {
        "workload": workload,
        "description": description,
        "txs": txs,
        "workers": workers,
        "sequential_executor": sequential.executor,
        "parallel_executor": parallel.executor,
        "sequential_s": sequential.execute_s,
        "parallel_s": parallel.execute_s,
        "speedup": _ratio(sequential.execute_s, parallel.execute_s),
        "incarnations_per_tx": (
            incarnations / txs if incarnations is not None and txs else None
        ),
        "identical": identical,
        "identical_detail": detail,
        "sequential_block_s": sequential.block_s,
        "parallel_block_s": parallel.block_s,
        "block_speedup": _ratio(sequential.block_s, parallel.block_s),
        "tail": {
            "sequential_state_root_s": sequential.state_root_s,
            "parallel_state_root_s": parallel.state_root_s,
            "sequential_roots_s": sequential.roots_s,
            "sequential_persist_s": sequential.persist_s,
            "parallel_roots_s": parallel.roots_s,
            "parallel_persist_s": parallel.persist_s,
        },
        "gas_used": sequential.result.gas_used if sequential.result is not None else None,
        "repeat": repeat,
        "error": "; ".join(errors) if errors else None,
        "machine": machine,
    }
    if extra:
        record.update(extra)
    return record


# ------------------------------------------------------------------------ workloads


StepHook = Callable[[str, int], None]  # (description, transactions) before a step
DoneHook = Callable[[int], None]  # transactions done after a step


def _noop_step(_: str, __: int) -> None:
    pass


def _noop_done(_: int) -> None:
    pass


def _interleaved_runs(
    txs: int,
    make_block: Callable[[], BlockInput],
    pre_state: StateView,
    executors: Sequence[tuple[Executor, str]],  # (executor, progress label)
    repeat: int,
    scratch_root: Path,
    on_step: StepHook,
    on_done: DoneHook,
    block_makers: Optional[Sequence[Optional[Callable[[], BlockInput]]]] = None,
) -> list[Run]:
    """The best run of each executor; every round runs each once, in turn, so drift in
    the machine's speed during the bench spreads over all of them. `block_makers` (one
    per executor, None: `make_block`) gives an executor its own block, e.g. the block
    with its access list for the importer."""
    best = [Run(executor=getattr(executor, "name", label)) for executor, label in executors]
    makers = list(block_makers or ())
    makers += [None] * (len(executors) - len(makers))
    for _ in range(repeat):
        for (executor, label), kept, maker in zip(executors, best, makers):
            on_step(label, txs)
            block = (maker or make_block)()
            kept.keep_fastest(run_executor(executor, block, pre_state, scratch_root))
            on_done(txs)
    return best


def bench_synthetic(
    workload: Any,  # bench.workloads.Workload
    sequential: Executor,
    parallel: Executor,
    *,
    workers: int,
    repeat: int,
    scratch_root: Path,
    machine: dict[str, Any],
    on_step: StepHook = _noop_step,
    on_done: DoneHook = _noop_done,
    parallel_label: str = "parallel",
    one_worker: Optional[Executor] = None,
    warmup: int = 32,
    bal: Optional[Executor] = None,
    bal_one_worker: Optional[Executor] = None,
    simulate: Optional[Sequence[int]] = None,
    simulate_one_worker: Optional[Executor] = None,
) -> dict[str, Any]:
    """Time both executors on `workload` (after an untimed warm-up on its first txs).

    With `one_worker` (the parallel executor with a single worker), it runs in the same
    rounds too and must give the same results. `scaling` = its execution time over the
    parallel one's: the part of the speedup that comes from running on several cores,
    apart from what the parallel executor's own read path gains over py-evm's even on
    one core.

    With `bal` (and `bal_one_worker`: the access-list importer with one worker), the
    block's EIP-7928 access list is made first, untimed (the sequential executor with
    `build_access_list`), and the importer runs the block with it in the same rounds
    (see `bal_record`).

    With `simulate` (worker counts), after the rounds the model of bench.simulate is
    calibrated on this block and its predictions go to the record's `simulated`
    (`simulate_one_worker`: Block-STM with one worker, for the calibration, when the
    rounds had none).
    """
    name = workload.name
    labelled = [(sequential, f"{name}: sequential"), (parallel, f"{name}: {parallel_label}")]
    if one_worker is not None:
        labelled.append((one_worker, f"{name}: {getattr(one_worker, 'name', 'parallel')} (1 worker)"))
    makers: list[Optional[Callable[[], BlockInput]]] = [None] * len(labelled)
    bal_at = len(labelled)
    made: Optional[MadeAccessList] = None
    prefix_list: Optional[MadeAccessList] = None
    prefix = None
    if warmup:
        prefix = workload.block()
        prefix = BlockInput(env=prefix.env, transactions=prefix.transactions[:warmup])
    if bal is not None:
        on_step(f"{name}: making the block's access list (untimed)", 0)
        made = make_access_list(workload.block(), workload.pre_state())
        if prefix is not None:
            prefix_list = make_access_list(prefix, workload.pre_state())
        if made.access_list is not None:
            with_list = _with_access_list(workload.block, made.access_list)
            for executor, label in ((bal, f"{name}: bal import ({_workers_of(bal)} workers)"),
                                    (bal_one_worker, f"{name}: bal import (1 worker)")):
                if executor is not None:
                    labelled.append((executor, label))
                    makers.append(with_list)
    if prefix is not None:
        # Untimed: first-use costs (imports, trie and EVM code paths, a worker pool)
        # would otherwise land on whichever executor runs first.
        on_step(f"{name}: warming up", 0)
        for i, (executor, _label) in enumerate(labelled):
            block = prefix
            if i >= bal_at:
                if prefix_list is None or prefix_list.access_list is None:
                    continue
                block = dataclasses.replace(prefix, access_list=prefix_list.access_list)
            run_executor(executor, block, workload.pre_state(), scratch_root)
    runs = _interleaved_runs(
        workload.txs, workload.block, workload.pre_state(), labelled, repeat, scratch_root,
        on_step, on_done, block_makers=makers,
    )
    seq, par = runs[0], runs[1]
    extra: dict[str, Any] = {"params": workload.params}
    if one_worker is not None:
        extra.update(one_worker_record(seq, par, runs[2]))
    if made is not None:
        bal_runs = runs[bal_at:]
        extra.update(bal_record(
            seq, par, made, workload.txs,
            bal_runs[0] if bal_runs else None,
            bal_runs[1] if len(bal_runs) > 1 else None,
        ))
    check = _check(workload, seq.result)
    record = make_record(
        workload=workload.name,
        description=workload.description,
        txs=workload.txs,
        workers=workers,
        sequential=seq,
        parallel=par,
        machine=machine,
        repeat=repeat,
        extra={**check, **extra},
    )
    if simulate:
        on_step(f"{name}: calibrating the model (untimed)", 0)
        record["simulated"] = simulate_record(
            workload, record, simulate, access_list=made.access_list if made else None,
            blockstm=parallel if getattr(parallel, "name", None) == "blockstm" else None,
            blockstm_one=one_worker or simulate_one_worker,
            bal=bal, bal_one=bal_one_worker, usable_cpus=machine.get("usable_cpus"),
        )
        on_done(SIMULATION_WEIGHT * workload.txs)
    return record


SIMULATION_WEIGHT = 4  # the model's calibration, in runs of the block (for progress bars)


def simulate_record(workload: Any, record: dict[str, Any], workers: Sequence[int],
                    **executors: Any) -> dict[str, Any]:
    """The model's predictions for `workload`, or why there are none."""
    from bench.simulate import simulate_workload

    if record.get("error") or not record.get("identical"):
        return {"workers": list(workers), "error": "the timed runs failed: nothing to calibrate on"}
    try:
        return simulate_workload(workload, record, workers, **executors)
    except Exception as exc:
        return {"workers": list(workers), "error": _describe(exc),
                "traceback": traceback.format_exc()}


def one_worker_record(sequential: Run, parallel: Run, single: Run) -> dict[str, Any]:
    """The one-worker run's fields of a record; its result must be identical too."""
    identical = (
        single.error is None and single.result is not None and sequential.result is not None
        and all(compare(sequential.result, single.result).values())
    )
    return {
        "one_worker_s": single.execute_s,
        "one_worker_block_s": single.block_s,
        "one_worker_identical": identical,
        "one_worker_error": single.error,
        "one_worker_incarnations_per_tx": (
            single.incarnations / len(single.result.receipts)
            if single.incarnations is not None and single.result is not None
            and single.result.receipts else None
        ),
        "scaling": _ratio(single.execute_s, parallel.execute_s),
        "block_scaling": _ratio(single.block_s, parallel.block_s),
    }


# ------------------------------------------------------------ block access lists


@dataclass
class MadeAccessList:
    """A block's EIP-7928 access list made by the untimed first pass (or why not)."""

    access_list: Optional[BlockAccessList] = None
    encoded_bytes: Optional[int] = None
    seconds: Optional[float] = None  # the first pass (sequential + building the list)
    error: Optional[str] = None  # the pass failed: a bench failure
    skipped: Optional[str] = None  # the block cannot have a list (mainnet, pre-Cancun): not a failure


def make_access_list(block: BlockInput, pre_state: StateView) -> MadeAccessList:
    """The block's access list, from the sequential executor with `build_access_list`."""
    from execution.sequential import SequentialExecutor

    started = time.perf_counter()
    try:
        result = SequentialExecutor().execute(
            dataclasses.replace(block, build_access_list=True), pre_state
        )
    except Exception as exc:
        return MadeAccessList(error=f"making the access list: {_describe(exc)}")
    if result.access_list is None:
        return MadeAccessList(error="the sequential executor returned no access list")
    return MadeAccessList(
        access_list=result.access_list,
        encoded_bytes=len(result.access_list.encode()),
        seconds=time.perf_counter() - started,
    )


def _with_access_list(make_block: Callable[[], BlockInput],
                      access_list: BlockAccessList) -> Callable[[], BlockInput]:
    def block() -> BlockInput:
        return dataclasses.replace(make_block(), access_list=access_list)

    return block


def _workers_of(executor: Executor) -> Any:
    return getattr(executor, "workers", "?")


def _identical_to(reference: Run, other: Optional[Run]) -> bool:
    return (
        other is not None and other.error is None and other.result is not None
        and reference.result is not None and all(compare(reference.result, other.result).values())
    )


def bal_record(sequential: Run, parallel: Run, made: MadeAccessList, txs: int,
               bal: Optional[Run], bal_one_worker: Optional[Run]) -> dict[str, Any]:
    """The access-list import's fields of a record (beside sequential and Block-STM's).

    `bal_identical`: both import runs (the importer's worker count and one worker) gave
    the sequential results (receipts, gas, bloom, state root). The speedups divide the
    sequential times by the import's; `bal_scaling` is the one-worker import's time over
    the other's (the gain from more cores alone)."""
    errors = []
    if made.error:
        errors.append(made.error)
    for label, run in (("bal", bal), ("bal (1 worker)", bal_one_worker)):
        if made.access_list is not None and run is None:
            errors.append(f"{label}: did not run")
        elif run is not None and run.error:
            errors.append(f"{label}: {run.error}")
    detail = None
    if bal is not None and bal.result is not None and sequential.result is not None:
        detail = compare(sequential.result, bal.result)
    identical = (
        not errors and _identical_to(sequential, bal) and _identical_to(sequential, bal_one_worker)
    )
    bal_s = bal.execute_s if bal else None
    bal1_s = bal_one_worker.execute_s if bal_one_worker else None
    bal_block_s = bal.block_s if bal else None
    bal1_block_s = bal_one_worker.block_s if bal_one_worker else None
    return {
        "bal_execution_s": bal_s,
        "bal_1worker_execution_s": bal1_s,
        "bal_block_s": bal_block_s,
        "bal_1worker_block_s": bal1_block_s,
        "bal_identical": identical,
        "bal_identical_detail": detail,
        "bal_speedup": _ratio(sequential.execute_s, bal_s),
        "bal_block_speedup": _ratio(sequential.block_s, bal_block_s),
        "bal_scaling": _ratio(bal1_s, bal_s),
        "bal_block_scaling": _ratio(bal1_block_s, bal_block_s),
        "bal_bytes": made.encoded_bytes,
        "bal_bytes_per_tx": (
            made.encoded_bytes / txs if made.encoded_bytes is not None and txs else None
        ),
        "bal_first_pass_s": made.seconds,
        "bal_tail": {
            "state_root_s": bal.state_root_s if bal else None,
            "roots_s": bal.roots_s if bal else None,
            "persist_s": bal.persist_s if bal else None,
            "1worker_state_root_s": bal_one_worker.state_root_s if bal_one_worker else None,
        },
        "bal_error": "; ".join(errors) if errors else None,
    }


def _check(workload: Any, result: Optional[Summary]) -> dict[str, Any]:
    """Did the block do what it should: every receipt status 1, enough gas each."""
    if result is None:
        return {"all_succeeded": False, "min_tx_gas": None, "failed_txs": None}
    previous = 0
    min_gas = None
    failed = 0
    for cumulative, ok in zip(result.cumulative_gas, result.statuses_ok):
        used = cumulative - previous
        previous = cumulative
        min_gas = used if min_gas is None else min(min_gas, used)
        if not ok:
            failed += 1
    ok = (
        failed == 0
        and len(result.receipts) == workload.txs
        and (min_gas or 0) >= workload.min_gas_per_tx
    )
    return {"all_succeeded": ok, "min_tx_gas": min_gas, "failed_txs": failed}


# -------------------------------------------------------------------------- mainnet


class _Capture:
    """Wraps an executor for `replay_block_dir`: times `execute` and keeps its inputs."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)
        self.block: Optional[BlockInput] = None
        self.pre_state: Optional[StateView] = None

    def execute(self, block: BlockInput, pre_state: StateView) -> ExecutionResult:
        self.block, self.pre_state = block, pre_state
        return self.inner.execute(block, pre_state)


def mainnet_block_dirs(root: Path, limit: Optional[int] = None) -> list[Path]:
    """Block folders under `root` (or `root` itself if it is one), by block number."""
    root = Path(root)
    if (root / "block.json").exists() or (root / "block.json.gz").exists():
        dirs = [root]
    else:
        dirs = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
        dirs.sort(key=lambda p: (0, int(p.name)) if p.name.isdigit() else (1, p.name))
    return dirs[:limit] if limit else dirs


def count_block_transactions(block_dir: Path) -> int:
    from execution.replay import read_json

    try:
        block = read_json(Path(block_dir), "block.json")
        return len(block.get("transactions") or [])
    except Exception:
        return 0


def _replay_run(block_dir: Path, executor: Executor, scratch_root: Path,
                access_list: Optional[BlockAccessList] = None) -> tuple[Run, Optional[dict]]:
    """Replay one mainnet block with `executor` (with `access_list`: the block carries
    it), then commit its tail like a synthetic run."""
    from execution.replay import replay_block_dir

    capture = _Capture(executor)
    run = Run(executor=capture.name)
    # replay_block_dir catches InvalidBlockError itself; time execute inside it.
    timed = _Timed(capture)
    gc.collect()
    try:
        report = replay_block_dir(block_dir, timed, access_list=access_list)
    except Exception as exc:
        run.error = _describe(exc)
        return run, None
    if timed.error is not None:
        run.error = timed.error
        return run, report
    if "invalid" in report:
        run.error = f"invalid block: {report['invalid']}"
        return run, report
    result = timed.result
    run.execute_s, run.state_root_s = split_execute_time(getattr(result, "stats", None), timed.seconds)
    run.incarnations = getattr(getattr(result, "stats", None), "incarnations", None)
    try:
        run.result = summarize(result)
    except Exception as exc:
        run.error = f"result: {_describe(exc)}"
        return run, report
    scratch = _Scratch(scratch_root, capture.pre_state.nodes if capture.pre_state else {})
    try:
        gc.collect()
        run.roots_s, run.persist_s = commit_tail(capture.block, result, scratch.db)
        run.block_s = timed.seconds + run.roots_s + run.persist_s
    except Exception as exc:
        run.error = f"commit: {_describe(exc)}"
    finally:
        scratch.close()
    return run, report


class _Timed:
    """Executor wrapper that times `execute` and keeps the result (or the error)."""

    def __init__(self, inner: _Capture) -> None:
        self.inner = inner
        self.name = inner.name
        self.seconds: Optional[float] = None
        self.result: Optional[ExecutionResult] = None
        self.error: Optional[str] = None

    def execute(self, block: BlockInput, pre_state: StateView) -> ExecutionResult:
        from execution.executor import InvalidBlockError

        started = time.perf_counter()
        try:
            result = self.inner.execute(block, pre_state)
        except InvalidBlockError:
            raise  # replay reports it as an invalid block
        except Exception as exc:
            self.error = _describe(exc)
            raise
        self.seconds = time.perf_counter() - started
        self.result = result
        return result


def mainnet_access_list(block_dir: Path) -> MadeAccessList:
    """A mainnet block's access list, from a sequential replay with `build_access_list`
    (untimed). Blocks that cannot have one (storage wiped by a SELFDESTRUCT before Cancun)
    come back `skipped`, not as an error."""
    from execution.replay import ReplayInputError, replay_block_dir
    from execution.sequential import SequentialExecutor

    started = time.perf_counter()
    try:
        report = replay_block_dir(block_dir, SequentialExecutor(), build_access_list=True)
    except ReplayInputError as exc:
        text = str(exc)
        if text.startswith("the block has no access list"):
            return MadeAccessList(skipped=text)
        return MadeAccessList(error=f"making the access list: {_describe(exc)}")
    except Exception as exc:
        return MadeAccessList(error=f"making the access list: {_describe(exc)}")
    encoded_hex = report.get("accessList")
    if not encoded_hex:
        reason = (report.get("invalid") or {}).get("reason")
        return MadeAccessList(error=f"making the access list: no list in the replay ({reason})")
    encoded = bytes.fromhex(encoded_hex[2:])
    return MadeAccessList(
        access_list=BlockAccessList.decode(encoded),
        encoded_bytes=len(encoded),
        seconds=time.perf_counter() - started,
    )


_BAL_SUM_KEYS = (
    # (sum, per-block record key)
    ("bal_sequential_s", "sequential_s"),
    ("bal_sequential_block_s", "sequential_block_s"),
    ("bal_parallel_s", "parallel_s"),
    ("bal_parallel_block_s", "parallel_block_s"),
    ("bal_execution_s", "bal_execution_s"),
    ("bal_1worker_execution_s", "bal_1worker_execution_s"),
    ("bal_block_s", "bal_block_s"),
    ("bal_1worker_block_s", "bal_1worker_block_s"),
    ("bal_bytes", "bal_bytes"),
)


def mainnet_bal_totals(blocks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The access-list fields of the mainnet record: sums over the blocks that have a
    list, with sequential's and Block-STM's sums over those same blocks, so each ratio
    compares like with like; the blocks without one are counted and named."""
    with_list = [b for b in blocks if not b.get("bal_skipped")]
    skipped = [b for b in blocks if b.get("bal_skipped")]
    sums: dict[str, Any] = {}
    for total_key, key in _BAL_SUM_KEYS:
        values = [b.get(key) for b in with_list]
        sums[total_key] = (
            sum(values) if with_list and all(v is not None for v in values) else None
        )
    txs = sum(b["txs"] for b in with_list)
    errors = [f"block {b['workload'].split('/')[-1]}: {b['bal_error']}"
              for b in with_list if b.get("bal_error")]
    return {
        **sums,
        "bal_blocks": len(with_list),
        # Of which imported in parallel from the list (Byzantium on; before, the importer
        # checks the list with the sequential executor).
        "bal_parallel_import_blocks": sum(1 for b in with_list if b.get("bal_parallel_import")),
        "bal_txs": txs,
        "bal_skipped": [int(b["workload"].split("/")[-1]) if b["workload"].split("/")[-1].isdigit()
                        else b["workload"] for b in skipped],
        "bal_identical": bool(with_list) and all(b.get("bal_identical") for b in with_list),
        "bal_speedup": _ratio(sums["bal_sequential_s"], sums["bal_execution_s"]),
        "bal_block_speedup": _ratio(sums["bal_sequential_block_s"], sums["bal_block_s"]),
        "bal_scaling": _ratio(sums["bal_1worker_execution_s"], sums["bal_execution_s"]),
        "bal_block_scaling": _ratio(sums["bal_1worker_block_s"], sums["bal_block_s"]),
        # Block-STM over the same blocks, for comparison.
        "bal_parallel_speedup": _ratio(sums["bal_sequential_s"], sums["bal_parallel_s"]),
        "bal_parallel_block_speedup": _ratio(
            sums["bal_sequential_block_s"], sums["bal_parallel_block_s"]
        ),
        "bal_bytes_per_tx": (
            sums["bal_bytes"] / txs if sums["bal_bytes"] is not None and txs else None
        ),
        "bal_error": "; ".join(errors) if errors else None,
    }


def bench_mainnet(
    block_dirs: Sequence[Path],
    sequential: Executor,
    parallel: Executor,
    *,
    workers: int,
    repeat: int,
    scratch_root: Path,
    machine: dict[str, Any],
    on_step: StepHook = _noop_step,
    on_done: DoneHook = _noop_done,
    parallel_label: str = "parallel",
    tx_counts: Optional[dict[Path, int]] = None,
    bal: Optional[Executor] = None,
    bal_one_worker: Optional[Executor] = None,
) -> dict[str, Any]:
    """Replay every block with both executors; one aggregated record, per-block inside.

    With `bal` (and `bal_one_worker`), every block that can have an access list is also
    imported with it (made by an untimed sequential replay first), in the same rounds."""
    blocks: list[dict[str, Any]] = []
    totals = {"seq": 0.0, "par": 0.0, "seq_block": 0.0, "par_block": 0.0}
    complete = {"seq": True, "par": True}
    txs_total = 0
    incarnations_total = 0
    incarnations_known = True
    identical_all = True
    header_ok_all = True
    errors: list[str] = []
    for block_dir in block_dirs:
        count = (tx_counts or {}).get(block_dir)
        if count is None:
            count = count_block_transactions(block_dir)
        seq_best = Run(executor=getattr(sequential, "name", "sequential"))
        par_best = Run(executor=getattr(parallel, "name", "parallel"))
        made: Optional[MadeAccessList] = None
        importers: list[tuple[Executor, str, Run]] = []
        if bal is not None:
            on_step(f"mainnet {block_dir.name}: making the access list (untimed)", 0)
            made = mainnet_access_list(block_dir)
            if made.access_list is not None:
                for executor, label in ((bal, f"bal import ({_workers_of(bal)} workers)"),
                                        (bal_one_worker, "bal import (1 worker)")):
                    if executor is not None:
                        importers.append((executor, label, Run(executor=label)))
        seq_report = None
        for _ in range(repeat):
            on_step(f"mainnet {block_dir.name}: sequential", count)
            seq_run, report = _replay_run(block_dir, sequential, scratch_root)
            seq_report = seq_report or report
            seq_best.keep_fastest(seq_run)
            on_done(count)
            on_step(f"mainnet {block_dir.name}: {parallel_label}", count)
            par_run, _ = _replay_run(block_dir, parallel, scratch_root)
            par_best.keep_fastest(par_run)
            on_done(count)
            for executor, label, kept in importers:
                on_step(f"mainnet {block_dir.name}: {label}", count)
                assert made is not None
                bal_run, _ = _replay_run(block_dir, executor, scratch_root, made.access_list)
                kept.keep_fastest(bal_run)
                on_done(count)
        record = make_record(
            workload=f"mainnet/{block_dir.name}",
            description=f"mainnet block {block_dir.name}",
            txs=count if seq_report is None else seq_report.get("transactions", count),
            workers=workers,
            sequential=seq_best,
            parallel=par_best,
            machine=machine,
            repeat=repeat,
        )
        header_ok = bool(seq_report and seq_report.get("ok"))
        record["header_ok"] = header_ok
        record["fork"] = seq_report.get("fork") if seq_report else None
        if made is not None:
            if made.skipped is not None:
                record["bal_skipped"] = made.skipped
            else:
                record.update(bal_record(
                    seq_best, par_best, made, record["txs"],
                    importers[0][2] if importers else None,
                    importers[1][2] if len(importers) > 1 else None,
                ))
                # Before Byzantium the importer checks the list with the sequential
                # executor (no parallel import): say so beside the numbers.
                record["bal_parallel_import"] = _parallel_import_fork(
                    seq_report.get("block") if seq_report else None
                )
        del record["machine"]
        blocks.append(record)
        txs_total += record["txs"]
        identical_all &= record["identical"]
        header_ok_all &= header_ok
        if record["error"]:
            errors.append(f"block {block_dir.name}: {record['error']}")
        for key, run, block_key in (
            ("seq", seq_best, "seq_block"), ("par", par_best, "par_block"),
        ):
            if run.execute_s is None or run.block_s is None:
                complete[key] = False
            else:
                totals[key] += run.execute_s
                totals[block_key] += run.block_s
        if par_best.incarnations is None:
            incarnations_known = False
        else:
            incarnations_total += par_best.incarnations

    bal_fields = mainnet_bal_totals(blocks) if bal is not None else {}
    if bal_fields.get("bal_error"):
        errors.append(f"bal: {bal_fields['bal_error']}")
    seq_s = totals["seq"] if complete["seq"] and blocks else None
    par_s = totals["par"] if complete["par"] and blocks else None
    seq_block_s = totals["seq_block"] if complete["seq"] and blocks else None
    par_block_s = totals["par_block"] if complete["par"] and blocks else None
    return {
        "workload": "mainnet",
        "description": f"{len(blocks)} real Ethereum mainnet blocks, replayed (sums)",
        "txs": txs_total,
        "workers": workers,
        "sequential_executor": getattr(sequential, "name", "sequential"),
        "parallel_executor": getattr(parallel, "name", "parallel"),
        "sequential_s": seq_s,
        "parallel_s": par_s,
        "speedup": _ratio(seq_s, par_s),
        "incarnations_per_tx": (
            incarnations_total / txs_total if incarnations_known and txs_total else None
        ),
        "identical": identical_all and bool(blocks),
        "sequential_block_s": seq_block_s,
        "parallel_block_s": par_block_s,
        "block_speedup": _ratio(seq_block_s, par_block_s),
        "all_succeeded": None,  # real blocks have failing transactions
        "header_ok": header_ok_all and bool(blocks),
        "repeat": repeat,
        "error": "; ".join(errors) if errors else None,
        **bal_fields,
        "blocks": blocks,
        "machine": machine,
    }


def _parallel_import_fork(number: Optional[int]) -> Optional[bool]:
    """Whether a mainnet block's fork (Byzantium on) is imported in parallel from its list
    (before, the importer checks the list with the sequential executor)."""
    from eth.vm.forks import ByzantiumVM

    from execution.forks import mainnet_vm_for_block

    if number is None:
        return None
    return issubclass(mainnet_vm_for_block(int(number)), ByzantiumVM)
