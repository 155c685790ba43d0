"""The state machine's vocabulary: the events it takes, the actions it returns, and the
evidence it reports (see consensus/state_machine.py for what each means)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from consensus.certificate import CommitCertificate
from consensus.messages import Message, Proposal, Step, Vote

# ---- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StartHeight:
    height: int


@dataclass(frozen=True)
class ProposalReceived:
    proposal: Proposal


@dataclass(frozen=True)
class VoteReceived:
    vote: Vote


@dataclass(frozen=True)
class TimeoutFired:
    height: int
    round: int
    step: Step


@dataclass(frozen=True)
class BlockBuilt:
    """The builder's answer to `BuildBlock`."""

    height: int
    round: int
    block_hash: bytes
    block_bytes: bytes


@dataclass(frozen=True)
class BlockValidated:
    """The validator callback's answer to `ValidateBlock`."""

    height: int
    block_hash: bytes
    valid: bool


Event = Union[StartHeight, ProposalReceived, VoteReceived, TimeoutFired, BlockBuilt, BlockValidated]


# ---- evidence ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConflictingProposals:
    """Two proposals signed by the proposer for one (height, round)."""

    validator: int
    first: Proposal
    second: Proposal


@dataclass(frozen=True)
class ConflictingVotes:
    """Two votes of one kind signed by one validator for one (height, round)."""

    validator: int
    first: Vote
    second: Vote


Evidence = Union[ConflictingProposals, ConflictingVotes]


# ---- actions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BroadcastProposal:
    proposal: Proposal
    new: bool  # just signed: WAL it (synced) before sending


@dataclass(frozen=True)
class BroadcastVote:
    vote: Vote
    new: bool


@dataclass(frozen=True)
class ScheduleTimeout:
    height: int
    round: int
    step: Step
    duration: float


@dataclass(frozen=True)
class BuildBlock:
    """Ask the block builder for a block extending the head; answer with `BlockBuilt`."""

    height: int
    round: int


@dataclass(frozen=True)
class ValidateBlock:
    """Ask the validator callback whether the block is valid (it re-executes it); answer
    with `BlockValidated`. The machine has checked that `block_hash_of(block_bytes)`
    equals `block_hash`."""

    height: int
    round: int
    block_hash: bytes
    block_bytes: bytes


@dataclass(frozen=True)
class Commit:
    height: int
    round: int
    block_hash: bytes
    block_bytes: bytes
    certificate: CommitCertificate


@dataclass(frozen=True)
class EvidenceFound:
    evidence: Evidence


@dataclass(frozen=True)
class MessageRejected:
    message: Message
    reason: str


@dataclass(frozen=True)
class SigningRefused:
    """The machine wanted to sign `wanted` at (height, round, step) but had already signed
    `signed` there (before a restart); it re-sent the signed message instead."""

    height: int
    round: int
    step: Step
    signed: Optional[bytes]
    wanted: Optional[bytes]


Action = Union[
    BroadcastProposal, BroadcastVote, ScheduleTimeout, BuildBlock, ValidateBlock, Commit,
    EvidenceFound, MessageRejected, SigningRefused,
]
