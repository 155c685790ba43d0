"""Multi-version memory: for each state location, the value written by each transaction.

A read by transaction j resolves to the write of the highest transaction below j; balance
locations may also hold commutative *deltas* (fee and value credits whose writer never read
the balance), which a read sums on top of the nearest absolute write below (or the base
value). An aborted incarnation leaves ESTIMATE markers on everything it wrote: a reader
that meets one stops and waits for that transaction.

Resolution returns `(is_base, value)`: when no absolute write is found below j, `is_base` is
True and `value` is only the sum of deltas (the caller adds the base value if it needs it).
Validation compares these pairs, so the coordinator never needs base values.

The coordinator holds the authoritative instance; every worker holds a replica fed with
the write sets the coordinator broadcasts (stale replicas only cost a failed validation).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Any, Optional

from execution.blockstm.messages import SLOT_KEY_LEN, WIP


class _Estimate:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ESTIMATE"


ESTIMATE = _Estimate()


class Delta:
    """A commutative balance increment (never negative)."""

    __slots__ = ("d",)

    def __init__(self, d: int) -> None:
        self.d = d

    def __repr__(self) -> str:
        return f"Delta({self.d})"


class EstimateHit(BaseException):
    """A read met an ESTIMATE of transaction `tx` (BaseException: py-evm must not swallow it)."""

    def __init__(self, tx: int) -> None:
        super().__init__(tx)
        self.tx = tx


class MVMemory:
    __slots__ = ("data", "txkeys", "wipes")

    def __init__(self) -> None:
        # key -> [sorted writer indices, {index: value | Delta | ESTIMATE}]
        self.data: dict[bytes, list] = {}
        # tx -> keys written by its latest incarnation
        self.txkeys: dict[int, frozenset] = {}
        # address -> how many transactions' write sets wipe its storage
        self.wipes: dict[bytes, int] = {}

    def record(self, tx: int, writes: dict, deltas: dict) -> bool:
        """Install the write set of a new incarnation of `tx`; True if it wrote a location
        the previous incarnation did not (higher transactions must then be revalidated)."""
        data = self.data
        old = self.txkeys.get(tx, frozenset())
        new = frozenset(writes).union(deltas) if deltas else frozenset(writes)
        wrote_new = not new <= old
        for key in old - new:
            entry = data[key]
            del entry[1][tx]
            entry[0].remove(tx)
            if len(key) != SLOT_KEY_LEN and key[20:] == WIP:
                self._unwipe(key[:20])
        for key, value in writes.items():
            self._put(key, tx, value, key not in old)
        for key, d in deltas.items():
            self._put(key, tx, Delta(d), key not in old)
        self.txkeys[tx] = new
        return wrote_new

    def _put(self, key: bytes, tx: int, value: Any, is_new: bool) -> None:
        entry = self.data.get(key)
        if entry is None:
            self.data[key] = [[tx], {tx: value}]
        else:
            if tx not in entry[1]:
                insort(entry[0], tx)
            entry[1][tx] = value
        if is_new and len(key) != SLOT_KEY_LEN and key[20:] == WIP:
            self.wipes[key[:20]] = self.wipes.get(key[:20], 0) + 1

    def _unwipe(self, address: bytes) -> None:
        left = self.wipes[address] - 1
        if left:
            self.wipes[address] = left
        else:
            del self.wipes[address]

    def mark_estimate(self, tx: int) -> None:
        data = self.data
        for key in self.txkeys.get(tx, ()):
            data[key][1][tx] = ESTIMATE

    def _highest(self, key: bytes, j: int) -> Optional[tuple[int, Any]]:
        entry = self.data.get(key)
        if entry is None:
            return None
        idxs = entry[0]
        pos = bisect_left(idxs, j)
        if pos == 0:
            return None
        k = idxs[pos - 1]
        return k, entry[1][k]

    def resolve(self, key: bytes, j: int) -> tuple[bool, Any]:
        """What transaction j reads at `key`: (is_base, value); raises EstimateHit."""
        if len(key) == SLOT_KEY_LEN and key[:20] in self.wipes:
            return self._resolve_slot(key, j)
        entry = self.data.get(key)
        if entry is None:
            return True, None
        idxs, vals = entry
        pos = bisect_left(idxs, j)
        acc = 0
        while pos:
            pos -= 1
            k = idxs[pos]
            v = vals[k]
            if v is ESTIMATE:
                raise EstimateHit(k)
            if type(v) is Delta:
                acc += v.d
                continue
            return False, (v + acc if acc else v)
        return True, (acc if acc else None)

    def _resolve_slot(self, key: bytes, j: int) -> tuple[bool, Any]:
        wipe = self._highest(key[:20] + WIP, j)
        slot = self._highest(key, j)
        if wipe is not None and (slot is None or wipe[0] > slot[0]):
            if wipe[1] is ESTIMATE:
                raise EstimateHit(wipe[0])
            return False, 0
        if slot is None:
            return True, None
        if slot[1] is ESTIMATE:
            raise EstimateHit(slot[0])
        return False, slot[1]

    def validate(self, tx: int, reads: dict) -> bool:
        """Value-based validation of a read set {key: (is_base, value)} at position tx."""
        resolve = self.resolve
        try:
            for key, seen in reads.items():
                if resolve(key, tx) != seen:
                    return False
        except EstimateHit:
            return False
        return True

