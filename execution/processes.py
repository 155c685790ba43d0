"""Starting the node's helper processes (Block-STM and BAL workers, admission workers).

They start from a fork server where there is one (POSIX): a fresh interpreter forked from
a process that imported only what the workers need, never from the trio process with its
threads. Elsewhere they are spawned.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator, Sequence


def worker_context(preload: Sequence[str]) -> Any:
    """The multiprocessing context for worker processes. `preload`: modules the fork
    server imports once, so each forked worker starts with them (it takes effect only
    for the first caller in a process, which starts the server)."""
    if os.name == "posix":
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(preload))
        return ctx
    return multiprocessing.get_context("spawn")


@contextmanager
def main_module_hidden() -> Iterator[None]:
    """Keep forkserver/spawn children from re-running the parent's __main__ script.

    Workers need nothing of __main__ (their targets live in packages); a script
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
