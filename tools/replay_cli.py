"""`laminar replay BLOCK_DIR [--executor sequential]`: replay a mainnet block, print JSON.

`--make-bal OUT` writes the block's EIP-7928 access list (RLP) to OUT; `--bal FILE`
imports the block with the list in FILE (the `bal` executor: every transaction in
parallel, the list checked against what they do).

Exit status: 0 when everything checkable matches the header, 1 when something does not,
2 when the input is unusable (message on stderr, starting with "error: ").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from execution.bal.codec import AccessListDecodeError, BlockAccessList
from execution.registry import EXECUTOR_NAMES, close_executor, make_executor
from execution.replay import ReplayInputError, replay_block_dir


def add_replay_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "block_dir",
        metavar="BLOCK_DIR",
        help="folder with block.json, prestate.json, block_hashes.json (or .json.gz)",
    )
    parser.add_argument(
        "--executor",
        default="sequential",
        help=f"executor to run the block with (one of: {', '.join(EXECUTOR_NAMES)})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Block-STM worker processes (default: the number of CPUs)",
    )
    parser.add_argument(
        "--make-bal",
        metavar="OUT",
        default=None,
        help="write the block's access list (EIP-7928 RLP) to OUT",
    )
    parser.add_argument(
        "--bal",
        metavar="FILE",
        default=None,
        help="import the block with the access list in FILE (implies --executor bal)",
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    return add_replay_arguments(
        argparse.ArgumentParser(
            prog="laminar replay",
            description="Re-execute an Ethereum mainnet block over its pre-state and "
            "compare gasUsed, logsBloom and receiptsRoot with its header.",
        )
    )


def run_replay(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Run `laminar replay`; `args` is a parsed namespace or an argv list. Exit status."""
    if args is None or not isinstance(args, argparse.Namespace):
        args = build_parser().parse_args(None if args is None else list(args))
    block_dir: Any = getattr(args, "block_dir", None)
    executor_name = getattr(args, "executor", None) or "sequential"
    if block_dir is None:
        print("error: no BLOCK_DIR given", file=sys.stderr)
        return 2
    workers = getattr(args, "workers", None)
    if workers is not None and workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    make_bal = getattr(args, "make_bal", None)
    bal_file = getattr(args, "bal", None)
    access_list = None
    if bal_file is not None:
        if make_bal is not None:
            print("error: --bal imports a list, --make-bal writes one: give one of them",
                  file=sys.stderr)
            return 2
        if executor_name not in ("sequential", "bal"):
            print(f"error: --bal runs the block with the bal executor, not {executor_name}",
                  file=sys.stderr)
            return 2
        executor_name = "bal"
        try:
            access_list = BlockAccessList.decode(Path(bal_file).read_bytes())
        except OSError as exc:
            print(f"error: cannot read {bal_file}: {exc.strerror}", file=sys.stderr)
            return 2
        except AccessListDecodeError as exc:
            print(f"error: {bal_file}: {exc}", file=sys.stderr)
            return 2
    try:
        executor = make_executor(executor_name, workers)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        report = replay_block_dir(block_dir, executor, one_shot=True,
                                  build_access_list=make_bal is not None,
                                  access_list=access_list)
    except ReplayInputError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        close_executor(executor)
    if make_bal is not None:
        encoded = bytes.fromhex(report.pop("accessList")[2:])
        try:
            Path(make_bal).write_bytes(encoded)
        except OSError as exc:
            print(f"error: cannot write {make_bal}: {exc.strerror}", file=sys.stderr)
            return 2
        report["accessListBytes"] = len(encoded)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_replay(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
