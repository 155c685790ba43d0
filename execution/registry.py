"""The executors, by name: the one place the node, `laminar replay` and `laminar bench`
turn a configured name into an `Executor`."""

from __future__ import annotations

import os
from typing import Optional

from execution.executor import Executor

EXECUTOR_NAMES = ("sequential", "blockstm", "bal")
DEFAULT_EXECUTOR = "blockstm"


def default_workers() -> int:
    return os.cpu_count() or 1


def make_executor(name: str, workers: Optional[int] = None, force_parallel: bool = False) -> Executor:
    """A new executor; Block-STM starts its worker processes on first use (and with
    `force_parallel` runs even one-transaction blocks through them). `bal` imports a
    block that carries its access list from the list, and builds one (with Block-STM)
    for a block that has none."""
    if name == "sequential":
        from execution.sequential import SequentialExecutor

        return SequentialExecutor()
    if name == "blockstm":
        from execution.blockstm import BlockSTMExecutor

        return BlockSTMExecutor(workers or default_workers(), force_parallel=force_parallel)
    if name == "bal":
        from execution.bal.importer import BALImportExecutor

        return BALImportExecutor(workers or default_workers(), force_parallel=force_parallel)
    raise ValueError(f"unknown executor {name!r} (one of: {', '.join(EXECUTOR_NAMES)})")


def close_executor(executor: Executor) -> None:
    """Stop an executor's worker processes, if it has any."""
    close = getattr(executor, "close", None)
    if close is not None:
        close()
