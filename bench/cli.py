"""`laminar bench`: sequential vs parallel executor on the same blocks, side by side.

    laminar bench [--workload W ...|all] [--txs N] [--workers K] [--parallel NAME]
                  [--hot-share F] [--json FILE] [--plot FILE.png]

Exit status: 0 when every workload ran on both executors with identical results (and,
for the synthetic workloads, every transaction succeeded; the block-access-list imports
too, unless --no-bal); 1 when a result differs, an executor failed or a check failed; 2
for unusable flags (message on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

WORKLOADS = ("transfers", "erc20", "amm", "mixed", "mainnet")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MAINNET_DIR = REPO_ROOT / "tests" / "data" / "mainnet"

# Relative cost of signing a transaction vs executing it, for the progress estimate.
_SIGN_WEIGHT = 0.15
_MAINNET_LOAD_WEIGHT = 0.6  # replay also loads the prestate JSON and builds its trie


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (at least 1), got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _gwei(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of gwei, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return int(round(value * 10**9))


def _worker_counts(text: str) -> list[int]:
    counts = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected worker counts separated by commas (4,8,16), got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"worker counts must be at least 1, got {value}")
        if value > 1024:
            raise argparse.ArgumentTypeError(f"at most 1024 workers, got {value}")
        if value not in counts:
            counts.append(value)
    if not counts:
        raise argparse.ArgumentTypeError("expected at least one worker count")
    return sorted(counts)


def _workload(text: str) -> str:
    if text not in WORKLOADS and text != "all":
        raise argparse.ArgumentTypeError(
            f"unknown workload {text!r} (choose from: {', '.join(WORKLOADS)}, all)"
        )
    return text


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from bench import DEFAULT_HOT_SHARE, DEFAULT_SIZES
    from execution.registry import EXECUTOR_NAMES

    parser.add_argument(
        "--workload", "-w", action="append", type=_workload, metavar="W",
        help=f"workload to run, may be repeated: {', '.join(WORKLOADS)} or all (default: all)",
    )
    parser.add_argument(
        "--txs", type=_positive_int, metavar="N",
        help="transactions per synthetic workload (overrides the per-workload sizes)",
    )
    for name, size in DEFAULT_SIZES.items():
        parser.add_argument(
            f"--{name}-txs", type=_positive_int, default=size, metavar="N",
            help=f"transactions in the {name} workload (default {size})",
        )
    parser.add_argument(
        "--hot-share", type=_share, default=DEFAULT_HOT_SHARE, metavar="F",
        help="mixed workload: share of transactions on hot state, 0..1 "
        f"(default {DEFAULT_HOT_SHARE})",
    )
    parser.add_argument(
        "--transfer-senders", type=_positive_int, default=None, metavar="S",
        help="transfers workload: S senders in round robin, each sending its next nonce (a "
        "node's block when a few accounts send many transactions; default: one sender per "
        "transaction)",
    )
    parser.add_argument(
        "--workers", type=_positive_int, default=None, metavar="K",
        help=f"parallel executor's worker count (default: CPU count, {os.cpu_count()})",
    )
    parser.add_argument(
        "--parallel", choices=sorted(EXECUTOR_NAMES), default=None,
        help="executor to compare with the sequential one (default: blockstm if "
        "execution.blockstm imports, else sequential as a stand-in)",
    )
    parser.add_argument(
        "--no-scaling", action="store_true",
        help="skip the one-worker Block-STM run (by default each synthetic workload also runs "
        "Block-STM with 1 worker, to show how much of the speedup comes from the extra cores)",
    )
    parser.add_argument(
        "--no-bal", action="store_true",
        help="skip the block-access-list import (by default every workload is also imported "
        "with its EIP-7928 access list, made by an untimed first pass, on the bal importer "
        "with K workers and with 1 worker)",
    )
    parser.add_argument(
        "--sync-blocks", type=_positive_int, default=None, metavar="N",
        help="executionless sync bench: a chain of N blocks of the mixed workload, each executed "
        "(the parallel executor) and, side by side, applied from its access list, each sync "
        "batch of blocks committed in one fsynced LevelDB write as a syncing node does "
        "(default off; alone unless --workload is given too)",
    )
    parser.add_argument(
        "--sync-txs", type=_positive_int, default=None, metavar="T",
        help="transactions per block of the sync bench (default 50)",
    )
    parser.add_argument(
        "--simulate-workers", type=_worker_counts, default=None, metavar="N,N,...",
        help="after each synthetic workload's rounds, calibrate a model of Block-STM and of the "
        "access-list import on this block and predict their execution time at N workers "
        "(checked against the 1- and K-worker runs; see docs/bench.md)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the block builders (default 1)")
    parser.add_argument(
        "--repeat", type=_positive_int, default=1, metavar="R",
        help="run each executor R times per workload and keep the fastest (default 1)",
    )
    parser.add_argument(
        "--tip-gwei", type=_gwei, default=None, metavar="G",
        help="priority fee of the synthetic transactions, paid to the coinbase (default 1; "
        "0 removes the coinbase as a point of contention)",
    )
    parser.add_argument(
        "--mainnet-dir", type=Path, default=DEFAULT_MAINNET_DIR, metavar="DIR",
        help="mainnet workload: a folder of block folders, or one block folder "
        "(default tests/data/mainnet)",
    )
    parser.add_argument(
        "--mainnet-limit", type=_non_negative_int, default=0, metavar="B",
        help="mainnet workload: only the first B blocks by number (default: all)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the records as JSON to FILE")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the speedups to a PNG (needs matplotlib)")
    parser.add_argument(
        "--cache-dir", type=Path, metavar="DIR",
        help="where compiled contracts are cached (default $LAMINAR_BENCH_CACHE or "
        "~/.cache/laminar/bench)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    return parser


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the sequential and the parallel executor side by side",
        description="Build blocks of signed transactions (and replay real mainnet "
        "blocks), run each through the sequential and the parallel executor on the same "
        "pre-state, and report times, speedup, re-executions and whether the results "
        "are identical.",
    )
    return add_bench_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    return add_bench_arguments(
        argparse.ArgumentParser(prog="laminar bench", description=__doc__.splitlines()[0])
    )


def _selected(args: argparse.Namespace) -> list[str]:
    chosen = args.workload or ["all"]
    names: list[str] = []
    for name in chosen:
        for item in (WORKLOADS if name == "all" else (name,)):
            if item not in names:
                names.append(item)
    return names


def _usage_error(message: str) -> int:
    print(f"laminar bench: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_bench(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Run `laminar bench`; `args` is a parsed namespace or an argv list. Exit status."""
    if args is None or not isinstance(args, argparse.Namespace):
        args = build_parser().parse_args(None if args is None else list(args))
    from execution.gc_policy import tune_collector

    tune_collector()  # the executors measured as a node runs them

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from bench import report, runner, workloads
    from bench.contracts import ContractBuildError
    from bench.sync import DEFAULT_SYNC_TXS
    from execution.registry import DEFAULT_EXECUTOR, default_workers, make_executor

    if args.sync_txs is not None and args.sync_blocks is None:
        return _usage_error("--sync-txs needs --sync-blocks")
    sync_txs = args.sync_txs or DEFAULT_SYNC_TXS
    # --sync-blocks alone runs the sync bench alone; with --workload, both.
    names = _selected(args) if args.workload or args.sync_blocks is None else []
    explicit_mainnet = "mainnet" in (args.workload or [])
    workers = args.workers or default_workers()
    notes: list[str] = []

    # ------------------------------------------------------------- check the inputs
    if args.plot is not None and not report.matplotlib_available():
        return _usage_error(
            f"--plot needs matplotlib, which is not installed (pip install {report.MATPLOTLIB_PIN})"
        )
    parallel_name = args.parallel or DEFAULT_EXECUTOR
    try:
        sequential = make_executor("sequential")
        parallel = make_executor(parallel_name, workers)
    except Exception as exc:
        return _usage_error(f"cannot create the {parallel_name!r} executor: {exc}")
    parallel_label = f"{parallel_name} ({workers} workers)"
    one_worker = None
    if parallel_name == "blockstm" and workers > 1 and not args.no_scaling:
        from execution.blockstm import BlockSTMExecutor

        one_worker = BlockSTMExecutor(1, force_parallel=True)

    bal = bal_one_worker = None
    if not args.no_bal:
        from execution.bal.importer import BALImportExecutor

        bal = BALImportExecutor(workers, force_parallel=True)
        bal_one_worker = BALImportExecutor(1, force_parallel=True)

    simulate_one_worker = None
    if args.simulate_workers:
        if parallel_name != "blockstm":
            return _usage_error("--simulate-workers models Block-STM: it needs --parallel blockstm")
        if one_worker is None:
            from execution.blockstm import BlockSTMExecutor

            simulate_one_worker = BlockSTMExecutor(1, force_parallel=True)  # calibration only

    block_dirs: list[Path] = []
    if "mainnet" in names:
        block_dirs = runner.mainnet_block_dirs(args.mainnet_dir, args.mainnet_limit or None)
        if not block_dirs:
            message = f"no mainnet block folders in {args.mainnet_dir}"
            if explicit_mainnet:
                return _usage_error(message + " (see --mainnet-dir)")
            notes.append(message + ": mainnet workload skipped")
            names.remove("mainnet")

    sizes = {
        name: args.txs or getattr(args, f"{name}_txs")
        for name in names if name in workloads.BUILDERS
    }
    options: dict[str, Any] = {
        "cache_dir": args.cache_dir, "hot_share": args.hot_share, "senders": args.transfer_senders
    }
    if args.tip_gwei is not None:
        options["tip"] = args.tip_gwei

    # ---------------------------------------------------------------------- run
    console = Console()  # the table: stdout
    if not console.is_terminal:  # piped or redirected: do not squeeze the table to 80
        console = Console(width=176)
    err_console = Console(stderr=True)
    machine = runner.machine_info()
    tx_counts = {d: runner.count_block_transactions(d) for d in block_dirs}
    runs_per_round = (3 if one_worker is not None else 2) + (2 if bal is not None else 0)
    simulation_units = runner.SIMULATION_WEIGHT if args.simulate_workers else 0
    total_units = sum(
        n * (_SIGN_WEIGHT + runs_per_round * args.repeat + simulation_units)
        for n in sizes.values()
    )
    mainnet_runs = 2 + (2 if bal is not None else 0)
    total_units += sum(
        max(n, 1) * mainnet_runs * args.repeat * (1 + _MAINNET_LOAD_WEIGHT)
        for n in tx_counts.values()
    )
    if args.sync_blocks:
        sync_txs_total = args.sync_blocks * sync_txs
        # signing, the untimed first pass (sequential), then both paths per block
        total_units += sync_txs_total * (_SIGN_WEIGHT + 1.0 + 1.3)
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=args.quiet,
    )
    scratch_root = Path(tempfile.mkdtemp(prefix="laminar-bench-"))
    try:
        with progress:
            task = progress.add_task("starting", total=total_units)

            def sign_tick(n: int) -> None:
                progress.advance(task, n * _SIGN_WEIGHT)

            def on_step(description: str, _txs: int) -> None:
                progress.update(task, description=description)

            def on_done(txs: int) -> None:
                progress.advance(task, txs)

            def on_done_mainnet(txs: int) -> None:
                progress.advance(task, max(txs, 1) * (1 + _MAINNET_LOAD_WEIGHT))

            for name in names:
                if name == "mainnet":
                    records.append(runner.bench_mainnet(
                        block_dirs, sequential, parallel, workers=workers,
                        repeat=args.repeat, scratch_root=scratch_root, machine=machine,
                        on_step=on_step, on_done=on_done_mainnet,
                        parallel_label=parallel_label, tx_counts=tx_counts,
                        bal=bal, bal_one_worker=bal_one_worker,
                    ))
                    continue
                progress.update(task, description=f"{name}: signing {sizes[name]} txs")
                try:
                    workload = workloads.build(
                        name, sizes[name], seed=args.seed, progress=sign_tick, **options
                    )
                except ContractBuildError as exc:
                    progress.stop()
                    return _usage_error(str(exc))
                records.append(runner.bench_synthetic(
                    workload, sequential, parallel, workers=workers, repeat=args.repeat,
                    scratch_root=scratch_root, machine=machine, on_step=on_step,
                    on_done=on_done, parallel_label=parallel_label, one_worker=one_worker,
                    bal=bal, bal_one_worker=bal_one_worker, simulate=args.simulate_workers,
                    simulate_one_worker=simulate_one_worker,
                ))
            if args.sync_blocks:
                from bench import sync

                progress.update(
                    task, description=f"sync: signing {args.sync_blocks} x {sync_txs} txs"
                )
                try:
                    chain = sync.build_chain(
                        args.sync_blocks, sync_txs, seed=args.seed, hot_share=args.hot_share,
                        cache_dir=args.cache_dir, progress=sign_tick,
                        **({"tip": args.tip_gwei} if args.tip_gwei is not None else {}),
                    )
                except ContractBuildError as exc:
                    progress.stop()
                    return _usage_error(str(exc))

                def on_done_sync(txs: int) -> None:
                    progress.advance(task, txs * 1.3)

                progress.update(task, description="sync: first pass, making the access lists (untimed)")
                first_started = time.perf_counter()
                planned = sync.first_pass(chain, on_done)
                first_pass_s = time.perf_counter() - first_started
                warmup = sync.build_chain(1, sync_txs, seed=args.seed + 1_000_003,
                                          hot_share=args.hot_share, cache_dir=args.cache_dir)
                records.append(sync.bench_sync(
                    chain, parallel, scratch_root=scratch_root, machine=machine,
                    workers=workers, planned=planned, warmup=warmup, first_pass_s=first_pass_s,
                    on_step=on_step,
                    on_done=on_done_sync,
                ))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    finally:
        import shutil

        from execution.registry import close_executor

        for executor in (sequential, parallel, one_worker, bal, bal_one_worker,
                         simulate_one_worker):
            if executor is not None:
                close_executor(executor)
        shutil.rmtree(scratch_root, ignore_errors=True)

    elapsed = time.perf_counter() - started
    report.print_report(records, console, notes)
    console.print(f"bench took {elapsed:.1f} s", style="dim", highlight=False)
    if args.json is not None:
        report.write_json(records, args.json)
        console.print(f"wrote {args.json}", style="dim", highlight=False)
    if args.plot is not None:
        report.write_plot(records, args.plot)
        console.print(f"wrote {args.plot}", style="dim", highlight=False)

    return EXIT_FAILED if records_failed(records) else EXIT_OK


def records_failed(records: Sequence[dict[str, Any]]) -> bool:
    """Whether the bench failed: a result differs (Block-STM, its one-worker run, the
    access-list imports), an executor raised, or a check did not pass."""
    return any(
        not r.get("identical") or r.get("error") or r.get("all_succeeded") is False
        or r.get("header_ok") is False or r.get("one_worker_identical") is False
        or r.get("bal_identical") is False
        or bool((r.get("simulated") or {}).get("error"))
        for r in records
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_bench(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
