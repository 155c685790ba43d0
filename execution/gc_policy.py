"""The garbage collector's settings for Laminar's long-running processes: the node and
its Block-STM workers (and the bench, which measures the executors as a node runs them).

CPython collects its youngest generation every 700 net allocations and, every hundred or
so of those, walks the whole heap. Executing a block allocates millions of short-lived
objects (RLP lists, accounts, write sets, messages) that reference counting frees on its
own; the collector still runs over them and, every few hundred transactions, over the
node's whole heap (caches of decoded trie nodes, recent blocks, the pool). Measured on a
2,000-transfer block (2 vCPUs, 2026-12-02): the Block-STM coordinator spent 0.18-0.33 s
of its 1.0-1.3 s in collections with the default thresholds, 0.02-0.04 s with these
(0.16 s in the one block of four that ran a middle-generation collection).

Cyclic garbage is still collected, only in larger batches: the youngest generation every
`YOUNG_THRESHOLD` allocations. What a process holds when it starts serving (imported
modules, its configuration) is frozen out of every collection: it lives as long as the
process.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # net allocations between collections of the youngest generation
MIDDLE_THRESHOLD = 20  # young collections per collection of the middle generation
OLD_THRESHOLD = 20  # middle collections per whole-heap collection (CPython also waits
#                    until a quarter of the old generation is new)


def tune_collector() -> None:
    """Collect in larger batches (see the module doc)."""
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)


def freeze_startup_objects() -> None:
    """Exclude everything alive now from future collections (call once start-up is done,
    before serving): a long-lived object is never garbage, so walking it is wasted."""
    gc.collect()
    gc.freeze()
