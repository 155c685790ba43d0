"""The fixed validator set (from genesis): order, quorums, round-robin proposer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class ValidatorSet:
    """Validators in genesis order; each has one vote. With n = 3f + 1 the set tolerates
    f Byzantine validators; `quorum` (floor(2n/3) + 1, "+2/3") and `skip_threshold`
    (floor(n/3) + 1, "+1/3", i.e. f + 1 when n = 3f + 1) are the two thresholds of the
    protocol."""

    addresses: tuple[bytes, ...]
    _index: dict = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        addresses = tuple(bytes(a) for a in self.addresses)
        if not addresses:
            raise ValueError("a validator set needs at least one validator")
        if any(len(a) != 20 for a in addresses):
            raise ValueError("validator addresses are 20 bytes")
        if len(set(addresses)) != len(addresses):
            raise ValueError("duplicate validator address")
        object.__setattr__(self, "addresses", addresses)
        object.__setattr__(self, "_index", {a: i for i, a in enumerate(addresses)})

    @classmethod
    def from_genesis(cls, genesis) -> "ValidatorSet":
        return cls(tuple(genesis.validators))

    def __len__(self) -> int:
        return len(self.addresses)

    def __contains__(self, address: bytes) -> bool:
        return address in self._index

    @property
    def n(self) -> int:
        return len(self.addresses)

    @property
    def f(self) -> int:
        """Byzantine validators tolerated."""
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """More than two thirds: the smallest count c with 3c > 2n."""
        return 2 * self.n // 3 + 1

    @property
    def skip_threshold(self) -> int:
        """More than one third: the smallest count c with 3c > n (at least one honest)."""
        return self.n // 3 + 1

    def proposer(self, height: int, round_: int) -> int:
        """Index of the proposer of (height, round): round-robin over height + round."""
        return (height + round_) % self.n

    def proposer_address(self, height: int, round_: int) -> bytes:
        return self.addresses[self.proposer(height, round_)]

    def index_of(self, address: bytes) -> Optional[int]:
        return self._index.get(bytes(address))

    def address(self, index: int) -> bytes:
        return self.addresses[index]
