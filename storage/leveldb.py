"""LevelDB (plyvel) as the node's one key-value store.

World-state nodes (trie nodes and contract code, keyed by their 32-byte hash) and chain
data (keys with a one-byte prefix, never 32 bytes long) share one database, so a block
and the state it produced are committed in a single atomic, synced write batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Optional

import plyvel


class DataDirInUseError(RuntimeError):
    """Another process holds the database lock."""


class LevelDB:
    """A thin wrapper over plyvel: reads, and atomic synced batches for writes."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        try:
            self._db = plyvel.DB(str(path), create_if_missing=True)
        except plyvel.IOError as exc:
            if "lock" in str(exc).lower():
                raise DataDirInUseError(
                    f"the database at {path} is in use by another process "
                    "(is another laminar node running on this data directory?)"
                ) from exc
            raise
        self.path = path

    def get(self, key: bytes) -> Optional[bytes]:
        return self._db.get(key)

    def __getitem__(self, key: bytes) -> bytes:
        value = self._db.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self._db.get(key) is not None

    def write_atomically(
        self, puts: Mapping[bytes, bytes], deletes: Iterable[bytes] = ()
    ) -> None:
        """Apply all puts and deletes as one batch, fsynced before returning."""
        with self._db.write_batch(transaction=True, sync=True) as batch:
            for key in deletes:
                batch.delete(key)
            for key, value in puts.items():
                batch.put(key, value)

    def iterate_prefix(self, prefix: bytes):
        return self._db.iterator(prefix=prefix)

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()
