"""The Tendermint consensus state machine (Algorithm 1 of "The latest gossip on BFT
consensus", Buchman, Kwon, Milosevic 2018), pure and deterministic.

No I/O, no clock, no threads, no randomness: `handle(event)` takes one input event and
returns the actions it causes, in order. The caller (the node's reactor, or a test's
simulated network) performs the actions and feeds back their results as events:

    events                              actions
    StartHeight(height)                 BroadcastProposal(proposal, new)
    ProposalReceived(proposal)          BroadcastVote(vote, new)
    VoteReceived(vote)                  ScheduleTimeout(height, round, step, duration)
    TimeoutFired(height, round, step)   BuildBlock(height, round)        -> BlockBuilt
    BlockBuilt(height, round, hash, b)  ValidateBlock(height, round, hash, b) -> BlockValidated
    BlockValidated(height, hash, ok)    Commit(height, round, hash, b, certificate)
                                        EvidenceFound(evidence)
                                        MessageRejected(message, reason)
                                        SigningRefused(height, round, step, signed, wanted)

`BroadcastX(new=True)` carries a message this validator has just signed: the reactor must
write it to the WAL (synced) *before* sending it. `new=False` is a re-send (after a
restart, or by `rebroadcast()`), which needs no WAL write.

Line numbers in comments refer to Algorithm 1 of the paper. Deviations, all liveness- or
resource-motivated, none affecting safety: the proposer also schedules timeoutPropose
(a stalled block builder cannot wedge it); a decision (line 49) accepts the block from any
proposal of the height with the decided hash; stored messages per validator for rounds
above the current one are capped (`MAX_FUTURE_ROUNDS`), the lowest evicted first;
timeoutPropose does not prevote nil while a proposal of the round that arrived in time is
still being validated (the paper's valid(v) is instantaneous; executing a full block is
not, and a validator that gave up on every block slower than the timeout would never
commit one), so the verdict decides the prevote. The block gas limit bounds the wait; a
proposer with no valid value proposes the latest block of the height it found valid, if
any, before building a new one (`_latest_valid_block`).
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Union

from eth_keys import keys

from consensus.certificate import CommitCertificate
from consensus.events import (
    Action,
    BlockBuilt,
    BlockValidated,
    BroadcastProposal,
    BroadcastVote,
    BuildBlock,
    Commit,
    ConflictingProposals,
    ConflictingVotes,
    Event,
    Evidence,
    EvidenceFound,
    MessageRejected,
    ProposalReceived,
    ScheduleTimeout,
    SigningRefused,
    StartHeight,
    TimeoutFired,
    ValidateBlock,
    VoteReceived,
)
from consensus.messages import (
    MAX_HEIGHT,
    MAX_ROUND,
    InvalidSignatureError,
    Message,
    Proposal,
    Step,
    Vote,
)
from consensus.timers import TimeoutConfig, timeout_duration
from consensus.validators import ValidatorSet
from consensus.vote_set import MAX_VALUES_PER_VALIDATOR, VoteSet

MAX_FUTURE_ROUNDS = 16        # per validator: rounds above ours we keep messages for
MAX_PROPOSALS_PER_ROUND = 4   # distinct blocks kept per round (more only if f+1 voted it)
MAX_BUFFERED_PER_VALIDATOR = 64  # messages kept per validator for the next height


def _step_of(message: Message) -> Step:
    return Step.PROPOSE if isinstance(message, Proposal) else message.kind


# ---- the machine ------------------------------------------------------------------------


class StateMachine:
    """One validator's (or an observer's, without a key) consensus state.

    `block_hash_of(block_bytes)` must return the hash a block is known by (for Laminar:
    the header hash of the decoded block); it may raise on undecodable bytes.
    """

    def __init__(
        self,
        *,
        chain_id: int,
        validators: ValidatorSet,
        block_hash_of: Callable[[bytes], bytes],
        private_key: Optional[bytes] = None,
        timeouts: TimeoutConfig = TimeoutConfig(),
    ) -> None:
        self.chain_id = chain_id
        self.validators = validators
        self.timeouts = timeouts
        self._block_hash_of = block_hash_of
        self._key = keys.PrivateKey(private_key) if private_key is not None else None
        self.address: Optional[bytes] = None
        self.index: Optional[int] = None
        if self._key is not None:
            self.address = self._key.public_key.to_canonical_address()
            self.index = validators.index_of(self.address)
            if self.index is None:
                raise ValueError(f"0x{self.address.hex()} is not in the validator set")
        self.height: Optional[int] = None
        self.round = 0
        self.step = Step.PROPOSE
        self.locked_value: Optional[bytes] = None
        self.locked_round = -1
        self.valid_value: Optional[bytes] = None
        self.valid_round = -1
        self.decision: Optional[Commit] = None
        # own signed messages by (height, round, step), from the WAL and from signing
        self._signed: dict[tuple[int, int, Step], Message] = {}
        self._next_buffer: dict[int, list[Message]] = {}
        self._last_commit: Optional[tuple[Optional[Proposal], list[Vote]]] = None
        self._out: list[Action] = []
        self._reset_height_state()

    # ---- public API ---------------------------------------------------------------

    def restore(self, signed: Iterable[Message]) -> None:
        """Load the messages this validator signed before a restart (from the WAL). Call
        before `StartHeight`; the machine resumes where those messages leave it and never
        signs a different value for any (height, round, step) in them."""
        for message in signed:
            self._signed.setdefault((message.height, message.round, _step_of(message)), message)

    def handle(self, event: Event) -> list[Action]:
        self._out = []
        if isinstance(event, StartHeight):
            self._on_start_height(event.height)
        elif isinstance(event, ProposalReceived):
            self._on_proposal(event.proposal)
        elif isinstance(event, VoteReceived):
            self._on_vote(event.vote)
        elif isinstance(event, TimeoutFired):
            self._on_timeout(event)
        elif isinstance(event, BlockBuilt):
            self._on_block_built(event)
        elif isinstance(event, BlockValidated):
            self._on_block_validated(event)
        else:
            raise TypeError(f"not a consensus event: {event!r}")
        self._run_rules()
        out, self._out = self._out, []
        return out

    def rebroadcast(self, proposals: bool = True) -> list[Union[BroadcastProposal, BroadcastVote]]:
        """Re-sends for the gossip layer to call periodically (lost messages, late joiners):
        the last decision's proposal and precommits (a peer still at that height can
        decide from them), this height's own signed messages, the current round's
        proposal and votes, and the prevotes of the proof-of-lock rounds that matter;
        with `proposals` False, no proposal (the reactor sends blocks less often than
        votes). All `new=False`: relays, never to be written to the WAL."""
        out: list[Union[BroadcastProposal, BroadcastVote]] = []
        if self._last_commit is not None:
            proposal, precommits = self._last_commit
            if proposal is not None:
                out.append(BroadcastProposal(proposal, False))
            out.extend(BroadcastVote(v, False) for v in precommits)
        if self.height is not None and self.decision is None:
            own = sorted(
                ((k, m) for k, m in self._signed.items() if k[0] == self.height),
                key=lambda item: (item[0][1], item[0][2]),
            )
            for _, message in own:
                if isinstance(message, Proposal):
                    out.append(BroadcastProposal(message, False))
                else:
                    out.append(BroadcastVote(message, False))
            for proposal in self._proposals.get(self.round, {}).values():
                if self._signed.get((self.height, self.round, Step.PROPOSE)) != proposal:
                    out.append(BroadcastProposal(proposal, False))
                break
            # Relay others' votes that peers need to make progress (the paper assumes a
            # gossip layer that eventually delivers to every correct process what one
            # received): this round's votes, and the prevotes proving our valid value
            # and the current proposals' proof-of-lock rounds.
            relay: dict[tuple, Vote] = {}
            pols = {(self.valid_round, self.valid_value)} | {
                (p.pol_round, p.block_hash) for p in self._proposals.get(self.round, {}).values()
            }
            for vr, value in pols:
                prevotes = self._prevotes(vr) if vr >= 0 else None
                for v in prevotes.for_value(value) if prevotes is not None else ():
                    relay[(v.round, v.kind, v.validator, v.block_hash or b"")] = v
            for kind in (Step.PREVOTE, Step.PRECOMMIT):
                votes = self._votes.get((self.round, kind))
                for v in votes.all_votes() if votes is not None else ():
                    relay[(v.round, v.kind, v.validator, v.block_hash or b"")] = v
            out.extend(
                BroadcastVote(v, False) for k, v in sorted(relay.items(), key=lambda kv: kv[0])
                if v.validator != self.index
            )
        if not proposals:
            return [action for action in out if not isinstance(action, BroadcastProposal)]
        return out

    def status(self) -> dict:
        return {
            "height": self.height, "round": self.round, "step": self.step.name.lower(),
            "locked_round": self.locked_round, "valid_round": self.valid_round,
            "locked_value": self.locked_value, "valid_value": self.valid_value,
            "decided": self.decision is not None,
        }

    # ---- per-height state ---------------------------------------------------------

    def _reset_height_state(self) -> None:
        self._proposals: dict[int, dict[bytes, Proposal]] = {}
        self._votes: dict[tuple[int, Step], VoteSet] = {}
        self._blocks: dict[bytes, bytes] = {}
        self._validity: dict[bytes, Optional[bool]] = {}  # None: validation pending
        self._fired: set[tuple[str, int]] = set()
        self._future_rounds: dict[int, set[int]] = {}
        self._round_senders: dict[int, set[int]] = {}
        self._evidence_seen: set[tuple] = set()

    def _on_start_height(self, height: int) -> None:
        if not 0 <= height <= MAX_HEIGHT:
            raise ValueError(f"height {height} out of range")
        if self.height is not None and height <= self.height:
            return
        buffered = self._next_buffer if self.height is not None and height == self.height + 1 else {}
        self.height = height
        self._reset_height_state()
        self._next_buffer = {}
        self.decision = None
        self.locked_value, self.locked_round = None, -1
        self.valid_value, self.valid_round = None, -1
        self._signed = {k: m for k, m in self._signed.items() if k[0] >= height}
        restored = {k: m for k, m in self._signed.items() if k[0] == height}
        if restored:
            self._resume(restored)
        else:
            self._start_round(0)
        for messages in buffered.values():
            for message in messages:
                if isinstance(message, Proposal):
                    self._accept_proposal(message)
                else:
                    self._accept_vote(message)

    def _resume(self, restored: dict[tuple[int, int, Step], Message]) -> None:
        """Continue a height after a restart from the messages signed in it."""
        top = max(r for (_, r, _) in restored)
        locks = [
            m for (_, _, s), m in restored.items()
            if s == Step.PRECOMMIT and m.block_hash is not None
        ]
        if locks:
            # Line 36-42: precommitting v at round r is exactly locking on v at r.
            latest = max(locks, key=lambda m: m.round)
            self.locked_value = self.valid_value = latest.block_hash
            self.locked_round = self.valid_round = latest.round
        self.round = top
        self.step = max(s for (_, r, s) in restored if r == top)
        for key in sorted(restored, key=lambda k: (k[1], k[2])):
            message = restored[key]
            if isinstance(message, Proposal):
                self._out.append(BroadcastProposal(message, False))
                self._accept_proposal(message, own=True)
            else:
                self._out.append(BroadcastVote(message, False))
                self._accept_vote(message)
        if self.step == Step.PROPOSE:
            self._schedule(Step.PROPOSE)

    # ---- StartRound (lines 11-21) -------------------------------------------------

    def _start_round(self, round_: int) -> None:
        self.round = round_
        self.step = Step.PROPOSE
        for rounds in self._future_rounds.values():
            rounds.difference_update([r for r in rounds if r <= round_])
        height = self.height
        assert height is not None  # rounds start within a height
        if self.index is not None and self.validators.proposer(height, round_) == self.index:
            signed = self._signed.get((height, round_, Step.PROPOSE))
            if signed is not None:
                assert isinstance(signed, Proposal)  # the PROPOSE step's message
                self._out.append(BroadcastProposal(signed, False))
                self._accept_proposal(signed, own=True)
            elif self.valid_value is not None and self.valid_value in self._blocks:
                self._sign_proposal(self.valid_value, self._blocks[self.valid_value], self.valid_round)
            elif (known := self._latest_valid_block()) is not None:
                self._sign_proposal(known, self._blocks[known], -1)
            else:
                self._out.append(BuildBlock(height, round_))
        # The paper schedules this for non-proposers only; scheduling it for the proposer
        # too means a stalled builder costs one timeout, not a wedged round.
        self._schedule(Step.PROPOSE)

    def _latest_valid_block(self) -> Optional[bytes]:
        """The block of the latest round's proposal this validator found valid: getValue()
        may return any value, and this one everybody has executed and judged already, so
        its round costs no build and no validation. Under load a fresh block can take
        longer to build and check than a round lasts; proposing anew every round would
        never catch up."""
        for round_ in sorted(self._proposals, reverse=True):
            for block_hash in self._proposals[round_]:
                if self._validity.get(block_hash) is True and block_hash in self._blocks:
                    return block_hash
        return None

    def _schedule(self, step: Step) -> None:
        assert self.height is not None
        self._out.append(ScheduleTimeout(
            self.height, self.round, step, timeout_duration(self.timeouts, step, self.round)
        ))

    # ---- signing (with the restart guard) -----------------------------------------

    def _sign_proposal(self, block_hash: bytes, block_bytes: bytes, pol_round: int) -> None:
        assert self.height is not None
        key = (self.height, self.round, Step.PROPOSE)
        signed = self._signed.get(key)
        if signed is not None:
            assert isinstance(signed, Proposal)  # the PROPOSE step's message
            if signed.block_hash != block_hash or signed.pol_round != pol_round:
                self._out.append(SigningRefused(*key, signed.block_hash, block_hash))
            self._out.append(BroadcastProposal(signed, False))
            self._accept_proposal(signed, own=True)
            return
        proposal = Proposal.sign(
            self._key, self.chain_id, self.height, self.round, block_hash, pol_round, block_bytes
        )
        self._signed[key] = proposal
        self._out.append(BroadcastProposal(proposal, True))
        self._accept_proposal(proposal, own=True)

    def _vote(self, kind: Step, value: Optional[bytes]) -> None:
        if self.index is None:
            return  # an observer follows consensus but never votes
        assert self.height is not None
        key = (self.height, self.round, kind)
        signed = self._signed.get(key)
        if signed is not None:
            assert isinstance(signed, Vote)  # a PREVOTE or PRECOMMIT step's message
            if signed.block_hash != value:
                self._out.append(SigningRefused(*key, signed.block_hash, value))
            self._out.append(BroadcastVote(signed, False))
            self._accept_vote(signed)
            return
        vote = Vote.sign(self._key, kind, self.chain_id, self.height, self.round, value, self.index)
        self._signed[key] = vote
        self._out.append(BroadcastVote(vote, True))
        self._accept_vote(vote)

    # ---- receiving ----------------------------------------------------------------

    def _on_proposal(self, proposal: Proposal) -> None:
        if self.height is None or proposal.height not in (self.height, self.height + 1):
            return
        if proposal.height == self.height and self.decision is not None:
            return
        if not 0 <= proposal.round <= MAX_ROUND or not -1 <= proposal.pol_round < proposal.round:
            self._reject(proposal, "round out of range")
            return
        try:
            if self._block_hash_of(proposal.block_bytes) != proposal.block_hash:
                self._reject(proposal, "block bytes do not match the block hash")
                return
        except Exception as exc:  # the hash function decodes attacker-controlled bytes
            self._reject(proposal, f"undecodable block: {exc}")
            return
        proposer = self.validators.proposer(proposal.height, proposal.round)
        try:
            signer = proposal.signer(self.chain_id)
        except InvalidSignatureError as exc:
            self._reject(proposal, str(exc))
            return
        if signer != self.validators.address(proposer):
            self._reject(proposal, "not signed by the proposer of its round")
            return
        if proposal.height == self.height:
            self._accept_proposal(proposal)
        else:
            self._buffer(proposer, proposal)

    def _on_vote(self, vote: Vote) -> None:
        if self.height is None or vote.height not in (self.height, self.height + 1):
            return
        if vote.height == self.height and self.decision is not None:
            return
        if not 0 <= vote.round <= MAX_ROUND or vote.kind not in (Step.PREVOTE, Step.PRECOMMIT):
            self._reject(vote, "round or kind out of range")
            return
        if not 0 <= vote.validator < self.validators.n:
            self._reject(vote, "unknown validator index")
            return
        try:
            signer = vote.signer(self.chain_id)
        except InvalidSignatureError as exc:
            self._reject(vote, str(exc))
            return
        if signer != self.validators.address(vote.validator):
            self._reject(vote, "not signed by the validator it names")
            return
        if vote.height == self.height:
            self._accept_vote(vote)
        else:
            self._buffer(vote.validator, vote)

    def _reject(self, message: Message, reason: str) -> None:
        self._out.append(MessageRejected(message, reason))

    def _buffer(self, validator: int, message: Message) -> None:
        messages = self._next_buffer.setdefault(validator, [])
        if message not in messages and len(messages) < MAX_BUFFERED_PER_VALIDATOR:
            messages.append(message)

    def _evidence(self, key: tuple, evidence: Evidence) -> None:
        if key not in self._evidence_seen:
            self._evidence_seen.add(key)
            self._out.append(EvidenceFound(evidence))

    def _track_round(self, validator: int, round_: int) -> bool:
        """Note that `validator` sent a message for `round_`; False if it must be dropped
        (the validator already fills its quota of rounds above ours with higher ones)."""
        if round_ > self.round:
            rounds = self._future_rounds.setdefault(validator, set())
            if round_ not in rounds:
                rounds.add(round_)
                if len(rounds) > MAX_FUTURE_ROUNDS:
                    lowest = min(rounds)
                    rounds.discard(lowest)
                    self._evict(validator, lowest)
                    if lowest == round_:
                        return False
        self._round_senders.setdefault(round_, set()).add(validator)
        return True

    def _evict(self, validator: int, round_: int) -> None:
        assert self.height is not None  # messages are tracked within a height
        for kind in (Step.PREVOTE, Step.PRECOMMIT):
            votes = self._votes.get((round_, kind))
            if votes is not None:
                votes.remove(validator)
        if self.validators.proposer(self.height, round_) == validator:
            self._proposals.pop(round_, None)
        senders = self._round_senders.get(round_)
        if senders is not None:
            senders.discard(validator)

    def _accept_proposal(self, proposal: Proposal, own: bool = False) -> None:
        round_ = proposal.round
        proposer = self.validators.proposer(proposal.height, round_)
        proposals = self._proposals.setdefault(round_, {})
        existing = proposals.get(proposal.block_hash)
        if existing is not None and existing.pol_round == proposal.pol_round:
            return  # a duplicate
        if proposals:
            first = next(iter(proposals.values()))
            self._evidence(
                ("proposal", round_, proposer), ConflictingProposals(proposer, first, proposal)
            )
            if existing is not None:
                return
            if len(proposals) >= MAX_PROPOSALS_PER_ROUND and not self._has_weak_support(
                round_, proposal.block_hash
            ):
                return
        if not self._track_round(proposer, round_):
            return
        proposals[proposal.block_hash] = proposal
        self._blocks.setdefault(proposal.block_hash, proposal.block_bytes)
        if own:
            self._validity[proposal.block_hash] = True
        elif proposal.block_hash not in self._validity:
            self._validity[proposal.block_hash] = None
            self._out.append(ValidateBlock(
                proposal.height, round_, proposal.block_hash, proposal.block_bytes
            ))

    def _has_weak_support(self, round_: int, value: bytes) -> bool:
        support = sum(
            self._votes[(round_, kind)].count(value)
            for kind in (Step.PREVOTE, Step.PRECOMMIT) if (round_, kind) in self._votes
        )
        return support >= self.validators.skip_threshold

    def _accept_vote(self, vote: Vote) -> None:
        votes = self._votes.setdefault((vote.round, vote.kind), VoteSet())
        if votes.has(vote):
            return  # a duplicate
        existing = votes.values_of(vote.validator)
        if existing:
            self._evidence(
                ("vote", vote.round, vote.kind, vote.validator),
                ConflictingVotes(vote.validator, next(iter(existing.values())), vote),
            )
            # Past the cap, a value that f+1 validators voted for (so an honest one did)
            # is still counted: it may be what a quorum decided, and a peer still at
            # this height needs this validator's vote for it to decide from the re-sent
            # precommits of the last commit.
            if len(existing) >= MAX_VALUES_PER_VALIDATOR and not (
                vote.block_hash is not None and self._has_weak_support(vote.round, vote.block_hash)
            ):
                return
        if not self._track_round(vote.validator, vote.round):
            return
        votes.add(vote)

    # ---- results of callbacks ----------------------------------------------------

    def _on_block_built(self, event: BlockBuilt) -> None:
        if (
            self.index is None or event.height != self.height or event.round != self.round
            or self.decision is not None
            or self.validators.proposer(event.height, event.round) != self.index
            or (self.height, self.round, Step.PROPOSE) in self._signed
        ):
            return
        # Line 15-17: a fresh value is proposed with validRound -1. (If a lock on a value
        # we have no bytes for is restored, we propose fresh; others' locks keep safety.)
        self._blocks.setdefault(event.block_hash, event.block_bytes)
        self._sign_proposal(event.block_hash, event.block_bytes, -1)

    def _on_block_validated(self, event: BlockValidated) -> None:
        if event.height == self.height and self._validity.get(event.block_hash, False) is None:
            self._validity[event.block_hash] = bool(event.valid)

    # ---- timeouts (lines 57-67) ---------------------------------------------------

    def _on_timeout(self, event: TimeoutFired) -> None:
        if event.height != self.height or event.round != self.round or self.decision is not None:
            return
        if event.step == Step.PROPOSE and self.step == Step.PROPOSE:
            if self._validating_proposal():
                return  # it came in time: its verdict decides the prevote (_rule_proposal)
            self._vote(Step.PREVOTE, None)
            self.step = Step.PREVOTE
        elif event.step == Step.PREVOTE and self.step == Step.PREVOTE:
            self._vote(Step.PRECOMMIT, None)
            self.step = Step.PRECOMMIT
        elif event.step == Step.PRECOMMIT:
            self._start_round(self.round + 1)

    def _validating_proposal(self) -> bool:
        """A proposal of this round arrived and its validation is still running."""
        return any(
            self._validity.get(proposal.block_hash, False) is None
            for proposal in self._proposals.get(self.round, {}).values()
        )

    # ---- upon rules ---------------------------------------------------------------

    def _run_rules(self) -> None:
        if self.height is None:
            return
        rules = (
            self._rule_decide, self._rule_skip_round, self._rule_proposal,
            self._rule_proposal_with_pol, self._rule_prevote_any, self._rule_polka_value,
            self._rule_polka_nil, self._rule_precommit_any,
        )
        while self.decision is None and any(rule() for rule in rules):
            pass

    def _first_time(self, rule: str) -> bool:
        key = (rule, self.round)
        if key in self._fired:
            return False
        self._fired.add(key)
        return True

    def _prevotes(self, round_: int) -> Optional[VoteSet]:
        return self._votes.get((round_, Step.PREVOTE))

    def _precommits(self, round_: int) -> Optional[VoteSet]:
        return self._votes.get((round_, Step.PRECOMMIT))

    def _rule_decide(self) -> bool:
        """Line 49: a proposal and 2f+1 precommits for it in any round decide."""
        assert self.height is not None  # _run_rules runs the rules within a height
        quorum = self.validators.quorum
        for (round_, kind), votes in sorted(self._votes.items(), key=lambda kv: kv[0]):
            if kind != Step.PRECOMMIT or votes.total < quorum:
                continue
            for value, count in votes.counts.items():
                if value is None or count < quorum:
                    continue
                if value not in self._blocks or self._validity.get(value) is not True:
                    continue  # wait for the block / its validation
                proposal = self._proposals.get(round_, {}).get(value) or next(
                    (p[value] for p in self._proposals.values() if value in p), None
                )
                certificate = CommitCertificate(
                    height=self.height, round=round_, block_hash=value,
                    signatures=tuple(v.signature for v in votes.for_value(value)),
                )
                self.decision = Commit(self.height, round_, value, self._blocks[value], certificate)
                self._last_commit = (proposal, votes.for_value(value))
                self._out.append(self.decision)
                return True
        return False

    def _rule_skip_round(self) -> bool:
        """Line 55: f+1 messages from a higher round: move to that round."""
        threshold = self.validators.skip_threshold
        higher = [
            r for r, senders in self._round_senders.items()
            if r > self.round and len(senders) >= threshold
        ]
        if not higher:
            return False
        self._start_round(max(higher))
        return True

    def _rule_proposal(self) -> bool:
        """Line 22: a fresh proposal (validRound -1) in step propose."""
        if self.step != Step.PROPOSE:
            return False
        for proposal in self._proposals.get(self.round, {}).values():
            if proposal.pol_round != -1:
                continue
            validity = self._validity.get(proposal.block_hash)
            if validity is None:
                return False  # the first fresh proposal decides; wait for its validation
            if validity and (self.locked_round == -1 or self.locked_value == proposal.block_hash):
                self._vote(Step.PREVOTE, proposal.block_hash)
            else:
                self._vote(Step.PREVOTE, None)
            self.step = Step.PREVOTE
            return True
        return False

    def _rule_proposal_with_pol(self) -> bool:
        """Line 28: a re-proposal with a proof of lock (2f+1 prevotes in round vr)."""
        if self.step != Step.PROPOSE:
            return False
        for proposal in self._proposals.get(self.round, {}).values():
            vr = proposal.pol_round
            if not 0 <= vr < self.round:
                continue
            prevotes = self._prevotes(vr)
            if prevotes is None or prevotes.count(proposal.block_hash) < self.validators.quorum:
                continue
            validity = self._validity.get(proposal.block_hash)
            if validity is None:
                return False
            if validity and (self.locked_round <= vr or self.locked_value == proposal.block_hash):
                self._vote(Step.PREVOTE, proposal.block_hash)
            else:
                self._vote(Step.PREVOTE, None)
            self.step = Step.PREVOTE
            return True
        return False

    def _rule_prevote_any(self) -> bool:
        """Line 34: 2f+1 prevotes of any kind, first time in step prevote: timeoutPrevote."""
        prevotes = self._prevotes(self.round)
        if (
            self.step == Step.PREVOTE and prevotes is not None
            and prevotes.total >= self.validators.quorum and self._first_time("prevote_any")
        ):
            self._schedule(Step.PREVOTE)
            return True
        return False

    def _rule_polka_value(self) -> bool:
        """Line 36: the proposal and 2f+1 prevotes for it (a polka): lock and precommit if
        still in prevote; in any case remember it as the valid value."""
        if self.step < Step.PREVOTE:
            return False
        prevotes = self._prevotes(self.round)
        if prevotes is None or prevotes.total < self.validators.quorum:
            return False
        for value in self._proposals.get(self.round, {}):
            if prevotes.count(value) < self.validators.quorum:
                continue
            if self._validity.get(value) is not True:
                continue
            if not self._first_time("polka_value"):
                return False
            if self.step == Step.PREVOTE:
                self.locked_value, self.locked_round = value, self.round
                self._vote(Step.PRECOMMIT, value)
                self.step = Step.PRECOMMIT
            self.valid_value, self.valid_round = value, self.round
            return True
        return False

    def _rule_polka_nil(self) -> bool:
        """Line 44: 2f+1 nil prevotes in step prevote: precommit nil."""
        prevotes = self._prevotes(self.round)
        if (
            self.step == Step.PREVOTE and prevotes is not None
            and prevotes.count(None) >= self.validators.quorum
        ):
            self._vote(Step.PRECOMMIT, None)
            self.step = Step.PRECOMMIT
            return True
        return False

    def _rule_precommit_any(self) -> bool:
        """Line 47: 2f+1 precommits of any kind, first time: timeoutPrecommit."""
        precommits = self._precommits(self.round)
        if (
            precommits is not None and precommits.total >= self.validators.quorum
            and self._first_time("precommit_any")
        ):
            self._schedule(Step.PRECOMMIT)
            return True
        return False
