"""`laminar blocktest PATH...`: run Ethereum BlockchainTests fixtures through an executor.

One line per failing test (its name, file and first difference), a progress bar on a
terminal, then `N passed, N failed, N skipped`. Exit status: 0 when nothing failed, 1
when a test failed, 2 when the input is unusable (message on stderr, "error: ...").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, TextIO

from execution.blocktest import (
    FAILED,
    PASSED,
    SKIPPED,
    BlockTest,
    BlockTestInputError,
    BlockTestResult,
    Difference,
    iter_tests,
    run_test,
)
from execution.executor import Executor
from execution.registry import EXECUTOR_NAMES, close_executor, make_executor

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_TIMEOUT_S = 300.0
PROGRESS_WIDTH = 30
# Tests handed to each process ahead of the one it runs: keeps every process busy
# without pickling the whole suite up front.
QUEUE_AHEAD = 4


def add_blocktest_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("paths", metavar="PATH", nargs="+",
                        help="fixture files or folders (searched for *.json)")
    parser.add_argument("--executor", default="sequential",
                        help=f"executor (one of: {', '.join(EXECUTOR_NAMES)}; default sequential)")
    parser.add_argument("--workers", type=int, default=None,
                        help="Block-STM worker processes per test process (default: CPUs)")
    parser.add_argument("-j", "--jobs", type=int, default=1,
                        help="tests run in this many processes at once (default 1)")
    parser.add_argument("--filter", default="", metavar="SUBSTRING",
                        help="only tests whose name or file contains SUBSTRING")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="write a record per test (status, first difference, rejections)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help=f"a test running longer fails (default {DEFAULT_TIMEOUT_S:g})")
    return parser


# --------------------------------------------------------------- one test process

class _TestTimeout(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _TestTimeout()


class _Runner:
    """Runs tests one at a time on one executor, each under a SIGALRM deadline (the
    executor is rebuilt after a timeout: Block-STM may have been stopped mid-block)."""

    def __init__(self, executor_name: str, workers: Optional[int], timeout_s: float) -> None:
        self.executor_name = executor_name
        self.workers = workers
        self.timeout_s = timeout_s
        self.executor: Executor = self._new_executor()
        signal.signal(signal.SIGALRM, _on_alarm)

    def _new_executor(self) -> Executor:
        # Conformance means every block goes through the parallel path, even a block of
        # one transaction (a node runs those sequentially).
        return make_executor(self.executor_name, self.workers, force_parallel=True)

    def run(self, test: BlockTest) -> BlockTestResult:
        started = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
        try:
            return run_test(test, self.executor)
        except _TestTimeout:
            close_executor(self.executor)
            self.executor = self._new_executor()
            reason = f"timed out after {self.timeout_s:g} s"
            return BlockTestResult(
                test.name, test.path, test.network, FAILED,
                difference=Difference("time", f"under {self.timeout_s:g} s", "more"),
                reason=reason, seconds=time.perf_counter() - started,
            )
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def close(self) -> None:
        close_executor(self.executor)


_process_runner: Optional[_Runner] = None


def _init_process(executor_name: str, workers: Optional[int], timeout_s: float) -> None:
    global _process_runner
    _process_runner = _Runner(executor_name, workers, timeout_s)


def _run_in_process(test: BlockTest) -> BlockTestResult:
    assert _process_runner is not None
    return _process_runner.run(test)


def _results_in_processes(
    tests: Iterable[BlockTest], jobs: int, executor_name: str, workers: Optional[int],
    timeout_s: float,
) -> Iterator[BlockTestResult]:
    context = multiprocessing.get_context("forkserver")
    pending: set[Future] = set()
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_init_process,
        initargs=(executor_name, workers, timeout_s),
    ) as pool:
        for test in tests:
            pending.add(pool.submit(_run_in_process, test))
            if len(pending) >= jobs * QUEUE_AHEAD:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        for future in pending:
            yield future.result()


# ------------------------------------------------------------------------- output

def _failure_line(result: BlockTestResult) -> str:
    what = str(result.difference) if result.difference is not None else result.reason
    return f"FAIL {result.name} ({result.path}): {what}"


class _Progress:
    """A one-line bar on a terminal (stderr); silent otherwise."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = total
        self.enabled = stream.isatty()

    def show(self, counts: dict[str, int]) -> None:
        if not self.enabled:
            return
        done = sum(counts.values())
        filled = PROGRESS_WIDTH * done // max(1, self.total)
        bar = "#" * filled + "." * (PROGRESS_WIDTH - filled)
        self.stream.write(
            f"\r[{bar}] {done}/{self.total}  {counts[PASSED]} passed, "
            f"{counts[FAILED]} failed, {counts[SKIPPED]} skipped"
        )
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * (PROGRESS_WIDTH + 60) + "\r")
            self.stream.flush()


def run_blocktest(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        print("error: -j/--jobs must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.workers is not None and args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if not args.timeout > 0:
        print("error: --timeout must be a positive number of seconds", file=sys.stderr)
        return EXIT_USAGE
    if args.executor not in EXECUTOR_NAMES:
        print(f"error: unknown executor {args.executor!r} (one of: "
              f"{', '.join(EXECUTOR_NAMES)})", file=sys.stderr)
        return EXIT_USAGE
    try:
        tests = list(iter_tests(args.paths, args.filter))
    except BlockTestInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not tests:
        where = f" matching {args.filter!r}" if args.filter else ""
        print(f"error: no BlockchainTests{where} in {', '.join(args.paths)}", file=sys.stderr)
        return EXIT_USAGE

    counts = {PASSED: 0, FAILED: 0, SKIPPED: 0}
    records: list[dict[str, Any]] = []
    progress = _Progress(sys.stderr, len(tests))
    started = time.perf_counter()
    if args.jobs == 1:
        runner = _Runner(args.executor, args.workers, args.timeout)
        results: Iterable[BlockTestResult] = (runner.run(test) for test in tests)
    else:
        runner = None
        results = _results_in_processes(tests, args.jobs, args.executor, args.workers,
                                        args.timeout)
    try:
        for result in results:
            counts[result.status] += 1
            records.append(result.to_json())
            if result.status == FAILED:
                progress.clear()
                print(_failure_line(result), flush=True)
            progress.show(counts)
    finally:
        if runner is not None:
            runner.close()
    progress.clear()
    elapsed = time.perf_counter() - started
    if args.json is not None:
        records.sort(key=lambda r: (r["path"], r["name"]))
        args.json.write_text(json.dumps(
            {"executor": args.executor, "workers": args.workers, "seconds": round(elapsed, 2),
             "tests": records}, indent=1))
    print(f"{counts[PASSED]} passed, {counts[FAILED]} failed, {counts[SKIPPED]} skipped "
          f"({args.executor}, {elapsed:.1f} s)")
    return EXIT_OK if counts[FAILED] == 0 else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_blocktest_arguments(argparse.ArgumentParser(
        prog="laminar blocktest", description=__doc__.splitlines()[0]))
    return run_blocktest(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
