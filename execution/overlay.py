"""`OverlayDB`: a py-evm atomic database that buffers every write over a read-only base;
`LayeredNodes`: new nodes not written yet, read before a base's.

Execution must be pure with respect to the pre-state: py-evm's state objects write trie
nodes and code straight into the database they are given. `OverlayDB` gives them one that
reads through a write buffer to a read-only `NodeReader` and keeps every write (including
those made in `atomic_batch()`) in memory; `pending()` hands back the new nodes for storage
to persist with the block.

State nodes are content-addressed, so a delete is only a removal from the buffer: it is
never propagated to the base (py-evm itself persists with `apply_deletes=False`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

from eth.abc import AtomicWriteBatchAPI
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB

from execution.executor import NodeReader


class OverlayDB(BaseAtomicDB):
    """Reads fall through the in-memory write buffer to `base`; writes never reach `base`."""

    def __init__(self, base: NodeReader) -> None:
        self._base = base
        self._pending: dict[bytes, bytes] = {}

    def __getitem__(self, key: bytes) -> bytes:
        try:
            return self._pending[key]
        except KeyError:
            return self._base[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._pending[key] = value

    def __delitem__(self, key: bytes) -> None:
        # Buffered removal only; the base is read-only and content-addressed.
        if key in self._pending:
            del self._pending[key]
        elif key not in self._base:
            raise KeyError(key)

    def _exists(self, key: bytes) -> bool:
        return key in self._pending or key in self._base

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        # The batch applies its diff to this object on success (deletes included), so
        # everything lands in the write buffer; on error nothing is applied.
        with AtomicDBWriteBatch._commit_unless_raises(self) as batch:
            yield batch

    def pending(self) -> dict[bytes, bytes]:
        """The buffered writes: new nodes and code keyed by hash. The live dict, not a copy."""
        return self._pending


class LayeredNodes:
    """A read-only node reader: `nodes` (made but not written yet: a patched pre-state, a
    sync batch) over `base`."""

    def __init__(self, nodes: Mapping[bytes, bytes], base: NodeReader) -> None:
        self._nodes, self._base = nodes, base

    def __getitem__(self, key: bytes) -> bytes:
        found = self._nodes.get(key)
        return found if found is not None else self._base[key]

    def __contains__(self, key: object) -> bool:
        return key in self._nodes or key in self._base
