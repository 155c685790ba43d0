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

A node also freezes what is alive after each committed block (`FreezeOnCommit`): its pool,
caches and recent blocks are then out of every collection's walk, and the collections
between two blocks walk only what the next block allocates. Without it, a node under a
load of 1,400-transaction blocks (2 vCPUs, 2026-12-06) ran a middle-generation collection
of 120-300 ms every 20 blocks and whole-heap ones of 350-450 ms, each holding the GIL, so
its event loop (and every JSON-RPC answer) waited as long. Garbage cycles among frozen
objects are found only by the whole-heap collection run every `FULL_COLLECTION_BLOCKS`
blocks; a cycle that dies before the next commit is found by the collections as before. A
loaded dev node leaves about 7 such objects a second (an HTTP connection's objects in
hypercorn: about 30 a closed connection).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # net allocations between collections of the youngest generation
MIDDLE_THRESHOLD = 20  # young collections per collection of the middle generation
OLD_THRESHOLD = 20  # middle collections per whole-heap collection (CPython also waits
#                    until a quarter of the old generation is new)
FULL_COLLECTION_BLOCKS = 1_000  # FreezeOnCommit: committed blocks between whole-heap walks


def tune_collector() -> None:
    """Collect in larger batches (see the module doc)."""
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)


def freeze_startup_objects() -> None:
    """Exclude everything alive now from future collections (call once start-up is done,
    before serving): a long-lived object is never garbage, so walking it is wasted."""
    gc.collect()
    gc.freeze()


class FreezeOnCommit:
    """Freeze what is alive after each committed block; every `full_collection_blocks`
    blocks, unfreeze and collect the whole heap once (see the module doc)."""

    def __init__(self, full_collection_blocks: int = FULL_COLLECTION_BLOCKS) -> None:
        if full_collection_blocks < 1:
            raise ValueError("full_collection_blocks must be at least 1")
        self.full_collection_blocks = full_collection_blocks
        self.committed = 0

    def block_committed(self) -> None:
        self.committed += 1
        if self.committed % self.full_collection_blocks == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
