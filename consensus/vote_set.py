"""The votes of one kind for one (height, round), as the state machine counts them."""

from __future__ import annotations

from typing import Optional

from consensus.messages import Vote

# Distinct values counted per validator per (round, kind); the state machine counts more
# only for a value f+1 validators voted for.
MAX_VALUES_PER_VALIDATOR = 4


class VoteSet:
    """The votes of one kind for one (height, round). As in the paper's message log, a
    validator that equivocates has each of its (distinct-value) votes counted for its
    value: that cannot hurt safety (honest validators never equivocate, so any two
    quorums still share an honest one) and keeps proofs of lock checkable by everyone.
    At most `MAX_VALUES_PER_VALIDATOR` values are kept per validator, and beyond that only
    values with f+1 votes (the state machine's rule)."""

    def __init__(self) -> None:
        self.votes: dict[int, dict[Optional[bytes], Vote]] = {}
        self.counts: dict[Optional[bytes], int] = {}

    @property
    def total(self) -> int:
        """Distinct validators with any vote here ("2f+1 of any value")."""
        return len(self.votes)

    def count(self, value: Optional[bytes]) -> int:
        return self.counts.get(value, 0)

    def has(self, vote: Vote) -> bool:
        return vote.block_hash in self.votes.get(vote.validator, {})

    def values_of(self, validator: int) -> dict[Optional[bytes], Vote]:
        return self.votes.get(validator, {})

    def add(self, vote: Vote) -> None:
        self.votes.setdefault(vote.validator, {})[vote.block_hash] = vote
        self.counts[vote.block_hash] = self.counts.get(vote.block_hash, 0) + 1

    def remove(self, validator: int) -> None:
        for value in self.votes.pop(validator, {}):
            self.counts[value] -= 1
            if not self.counts[value]:
                del self.counts[value]

    def all_votes(self) -> list[Vote]:
        return [v for i in sorted(self.votes) for v in self.votes[i].values()]

    def for_value(self, value: Optional[bytes]) -> list[Vote]:
        return [self.votes[i][value] for i in sorted(self.votes) if value in self.votes[i]]
