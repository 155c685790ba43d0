"""The node's collector policy: what is alive at a commit leaves the collections' walks,
and garbage cycles frozen with it are still freed by the periodic whole-heap collection."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from execution.gc_policy import FreezeOnCommit


class _Cell:
    """A plain object that can hold itself (a reference cycle) and be weakly referenced."""

    def __init__(self) -> None:
        self.other: object = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Give this test process its collector back as it was (nothing left frozen)."""
    yield
    gc.unfreeze()


def test_what_is_alive_at_a_commit_leaves_the_collections(unfrozen: None) -> None:
    collector = FreezeOnCommit()
    long_lived = _Cell()
    assert any(obj is long_lived for obj in gc.get_objects())
    collector.block_committed()
    assert not any(obj is long_lived for obj in gc.get_objects())  # frozen: never walked
    young = _Cell()
    assert any(obj is young for obj in gc.get_objects())  # what comes after is collected


def test_cycles_frozen_at_a_commit_are_freed_by_the_whole_heap_collection(unfrozen: None) -> None:
    collector = FreezeOnCommit(full_collection_blocks=3)
    cycle = _Cell()
    cycle.other = cycle
    alive = weakref.ref(cycle)
    del cycle
    collector.block_committed()  # the dead cycle is frozen with everything else
    gc.collect()
    assert alive() is not None
    collector.block_committed()
    gc.collect()
    assert alive() is not None
    collector.block_committed()  # the third block: unfreeze, collect the whole heap
    assert alive() is None


def test_the_full_collection_period_must_be_a_positive_number_of_blocks() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FreezeOnCommit(full_collection_blocks=0)
