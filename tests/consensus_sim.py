"""A deterministic discrete-event network for consensus state machines (test helper).

Virtual time, one event queue, a seeded RNG. Each honest node is a `StateMachine` plus the
callbacks a reactor would give it (builder, validator, commit); the network floods every
message a node sees for the first time to its peers (gossip) and each node re-sends
`machine.rebroadcast()` every `rebroadcast_every` seconds, to every peer, under a fresh
gossip id (as the reactor's relay tag gives it), so a re-send reaches the machine again.
Tests control delays, drops, partitions, crashes (with a restart that restores from the
node's in-memory WAL) and Byzantine behaviour (outbound filters that rewrite or add
messages).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Callable, Optional

from eth_hash.auto import keccak
from eth_keys import keys

from consensus.certificate import CommitCertificate
from consensus.events import (
    BlockBuilt,
    BlockValidated,
    BroadcastProposal,
    BroadcastVote,
    BuildBlock,
    Commit,
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
from consensus.messages import Proposal, Step, Vote
from consensus.state_machine import StateMachine
from consensus.timers import TimeoutConfig
from consensus.validators import ValidatorSet

CHAIN_ID = 4242
KEYS = [keccak(b"laminar test validator %d" % i) for i in range(10)]
FAST_TIMEOUTS = TimeoutConfig(
    propose=1.0, propose_delta=0.5, prevote=0.5, prevote_delta=0.25,
    precommit=0.5, precommit_delta=0.25,
)


def validator_set(n: int) -> ValidatorSet:
    return ValidatorSet(tuple(keys.PrivateKey(k).public_key.to_canonical_address() for k in KEYS[:n]))


def block_hash_of(block_bytes: bytes) -> bytes:
    return keccak(block_bytes)


def make_block(height: int, round_: int, proposer: int, tag: bytes = b"") -> bytes:
    return b"block h=%d r=%d by=%d %s" % (height, round_, proposer, tag)


class SafetyViolation(AssertionError):
    pass


@dataclass
class Node:
    index: int
    key: bytes
    machine: StateMachine
    honest: bool = True
    down: bool = False
    commits: dict = field(default_factory=dict)        # height -> Commit
    evidence: list = field(default_factory=list)
    refused: list = field(default_factory=list)
    rejected: list = field(default_factory=list)
    wal: list = field(default_factory=list)            # every message signed with new=True
    seen: set = field(default_factory=set)
    invalid_blocks: set = field(default_factory=set)   # hashes its validator calls invalid
    # outbound filter: (sim, node, message) -> list of (destination, message); None = flood
    outbound: Optional[Callable] = None


class Sim:
    def __init__(
        self, n: int = 4, seed: int = 0, *, max_height: int = 3,
        timeouts: TimeoutConfig = FAST_TIMEOUTS,
        delay: Callable[[random.Random], float] = lambda rng: rng.uniform(0.01, 0.1),
        drop: float = 0.0, rebroadcast_every: float = 0.5,
    ) -> None:
        self.n = n
        self.rng = random.Random(seed)
        self.validators = validator_set(n)
        self.timeouts = timeouts
        self.delay = delay
        self.drop = drop
        self.rebroadcast_every = rebroadcast_every
        self.max_height = max_height  # the last height to finish; the next one starts
        self.now = 0.0
        self._queue: list = []
        self._seq = 0
        self.partition: Optional[list[set[int]]] = None
        self.decided: dict[int, bytes] = {}               # height -> hash (honest commits)
        self.nodes = [self._make_node(i) for i in range(n)]
        self.delivered = 0

    def _make_node(self, i: int) -> Node:
        machine = StateMachine(
            chain_id=CHAIN_ID, validators=self.validators, block_hash_of=block_hash_of,
            private_key=KEYS[i], timeouts=self.timeouts,
        )
        return Node(i, KEYS[i], machine)

    # ---- queue ------------------------------------------------------------------------

    def at(self, when: float, target: int, item) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, target, item))

    def start(self, height: int = 1) -> None:
        for node in self.nodes:
            self.at(0.0, node.index, StartHeight(height))
            self.at(self.rng.uniform(0, self.rebroadcast_every), node.index, "tick")

    def run(self, until: float, stop: Optional[Callable[[], bool]] = None) -> None:
        while self._queue and self._queue[0][0] <= until:
            when, _, target, item = heapq.heappop(self._queue)
            self.now = when
            node = self.nodes[target]
            if item == "tick":
                self.at(when + self.rebroadcast_every, target, "tick")
                if not node.down:
                    self.perform(node, node.machine.rebroadcast())
                    self.block_sync(node)
            elif callable(item):
                item()
            elif isinstance(item, tuple):
                if not node.down:
                    self.perform(node, item)
            elif not node.down:
                self.perform(node, node.machine.handle(item))
            if stop is not None and stop():
                return
        self.now = max(self.now, until)

    # ---- network ----------------------------------------------------------------------

    def connected(self, a: int, b: int) -> bool:
        if self.nodes[a].down or self.nodes[b].down:
            return False
        if self.partition is None:
            return True
        return any(a in side and b in side for side in self.partition)

    def send(self, src: int, dst: int, message, resend: bool = False) -> None:
        if src == dst or not self.connected(src, dst):
            return
        if self.drop and self.rng.random() < self.drop:
            return
        event = ProposalReceived(message) if isinstance(message, Proposal) else VoteReceived(message)
        self.at(self.now + self.delay(self.rng), dst, ("msg", src, event, resend))

    def flood(self, node: Node, message, resend: bool = False) -> None:
        if node.outbound is not None:
            for dst, m in node.outbound(self, node, message):
                self.send(node.index, dst, m, resend)
            return
        for dst in range(self.n):
            self.send(node.index, dst, message, resend)

    # ---- a node's reactor -------------------------------------------------------------

    def perform(self, node: Node, actions) -> None:
        if isinstance(actions, tuple) and actions and actions[0] == "msg":
            _, _, event, resend = actions
            message = event.proposal if isinstance(event, ProposalReceived) else event.vote
            if resend:
                # A periodic re-send goes out under a fresh gossip id (the reactor's tag),
                # so the receiver's machine gets it again even if it saw the message, and
                # may now count what it dropped before (e.g. a vote past the per-validator
                # cap that has since gained support). Sent to every peer, not relayed.
                self.delivered += 1
                actions = node.machine.handle(event)
            else:
                # dedup per receiver height: a message too far ahead is dropped by the
                # machine and must be accepted when it is relayed after the node caught up
                key = (getattr(node.machine, "height", None), message)
                if key in node.seen:
                    return
                node.seen.add(key)
                self.delivered += 1
                actions = node.machine.handle(event)
                for dst in range(self.n):  # gossip: relay what is new to us
                    self.send(node.index, dst, message)
        for action in actions:
            if isinstance(action, (BroadcastProposal, BroadcastVote)):
                message = action.proposal if isinstance(action, BroadcastProposal) else action.vote
                if action.new:
                    node.wal.append(message)
                node.seen.add((node.machine.height, message))
                self.flood(node, message, resend=not action.new)
            elif isinstance(action, ScheduleTimeout):
                self.at(self.now + action.duration, node.index,
                        TimeoutFired(action.height, action.round, action.step))
            elif isinstance(action, BuildBlock):
                data = make_block(action.height, action.round, node.index)
                self.at(self.now + 0.001, node.index,
                        BlockBuilt(action.height, action.round, block_hash_of(data), data))
            elif isinstance(action, ValidateBlock):
                valid = action.block_hash not in node.invalid_blocks and action.block_bytes.startswith(b"block")
                self.at(self.now + 0.005, node.index,
                        BlockValidated(action.height, action.block_hash, valid))
            elif isinstance(action, Commit):
                self.on_commit(node, action)
            elif isinstance(action, EvidenceFound):
                node.evidence.append(action.evidence)
            elif isinstance(action, SigningRefused):
                node.refused.append(action)
            elif isinstance(action, MessageRejected):
                node.rejected.append(action)

    def on_commit(self, node: Node, commit: Commit, start_next_now: bool = False) -> None:
        """Record a commit, then start the next height: after a short write for the
        machine's own decisions, at once for a synced block (the reactor imports a sync
        batch and starts the next height in one step: its machine sees no event between)."""
        assert commit.height not in node.commits, "committed a height twice"
        commit.certificate.verify(CHAIN_ID, self.validators.addresses, commit.block_hash)
        decoded = CommitCertificate.decode(commit.certificate.encode())
        assert decoded == commit.certificate
        node.commits[commit.height] = commit
        if node.honest:
            agreed = self.decided.setdefault(commit.height, commit.block_hash)
            if agreed != commit.block_hash:
                raise SafetyViolation(
                    f"fork at height {commit.height}: {agreed.hex()[:8]} vs {commit.block_hash.hex()[:8]}"
                )
        # Up to one height past `max_height`: a machine re-sends a decision (the proposal
        # and precommits a peer still at that height needs) once it has started the next
        # height, as a node always does; stopping at `max_height` itself left the last
        # height's laggards with no one to hear it from.
        if commit.height <= self.max_height:
            if start_next_now:
                self.perform(node, node.machine.handle(StartHeight(commit.height + 1)))
            else:
                self.at(self.now + 0.01, node.index, StartHeight(commit.height + 1))

    def block_sync(self, node: Node) -> None:
        """What the reactor's block sync does for a node more than one height behind a
        peer: fetch the committed block and certificate, verify, apply, start the next
        height (consensus messages of old heights are not gossiped)."""
        height = getattr(node.machine, "height", None)
        if height is None or height in node.commits or not node.honest:
            return
        for peer in self.nodes:
            if (peer.honest and self.connected(node.index, peer.index)
                    and height in peer.commits and max(peer.commits) > height):
                commit = peer.commits[height]
                commit.certificate.verify(CHAIN_ID, self.validators.addresses, commit.block_hash)
                node.synced = getattr(node, "synced", 0) + 1
                self.on_commit(node, commit, start_next_now=True)
                return

    # ---- faults ------------------------------------------------------------------------

    def crash(self, i: int) -> None:
        self.nodes[i].down = True

    def restart(self, i: int) -> None:
        """Bring a crashed node back: a fresh machine restored from its WAL."""
        old = self.nodes[i]
        node = self._make_node(i)
        node.wal = list(old.wal)
        node.commits = dict(old.commits)
        node.honest = old.honest
        node.machine.restore(node.wal)
        self.nodes[i] = node
        height = max(node.commits, default=0) + 1
        self.at(self.now, i, StartHeight(height))

    # ---- observations ------------------------------------------------------------------

    def honest(self) -> list[Node]:
        return [n for n in self.nodes if n.honest]

    def all_committed(self, height: int, nodes=None) -> bool:
        return all(height in n.commits for n in (nodes if nodes is not None else self.honest()))

    def check_agreement(self) -> None:
        for height in {h for n in self.honest() for h in n.commits}:
            hashes = {n.commits[height].block_hash for n in self.honest() if height in n.commits}
            if len(hashes) > 1:
                raise SafetyViolation(f"fork at height {height}")


def equivocating_proposer(group_a: set[int]):
    """Outbound filter: proposals go as signed to `group_a`, and a second, different signed
    proposal for the same (height, round) goes to everyone else."""

    def outbound(sim: Sim, node: Node, message):
        if not isinstance(message, Proposal):
            return [(dst, message) for dst in range(sim.n)]
        other = make_block(message.height, message.round, node.index, b"evil twin")
        twin = Proposal.sign(
            node.key, CHAIN_ID, message.height, message.round, block_hash_of(other),
            -1, other,
        )
        return [(dst, message if dst in group_a else twin) for dst in range(sim.n)]

    return outbound


def double_voter():
    """Outbound filter: every vote goes out as signed to half the peers and, for the other
    half, a conflicting vote (nil <-> the value) signed for the same (height, round, kind)."""

    def outbound(sim: Sim, node: Node, message):
        if not isinstance(message, Vote):
            return [(dst, message) for dst in range(sim.n)]
        other_value = None if message.block_hash is not None else keccak(b"junk %d" % message.round)
        twin = Vote.sign(node.key, message.kind, CHAIN_ID, message.height, message.round,
                         other_value, node.index)
        return [(dst, message if dst % 2 == 0 else twin) for dst in range(sim.n)]

    return outbound


class RandomByzantine:
    """A validator with no state machine: on every tick and every message it hears it
    signs random, conflicting proposals and votes for heights and rounds near what it saw,
    and sends different ones to different peers."""

    def __init__(self, sim: Sim, index: int, rng: random.Random) -> None:
        self.sim, self.index, self.rng = sim, index, rng
        self.key = KEYS[index]
        self.values: list[bytes] = []
        self.height, self.round = 1, 0

    def install(self) -> None:
        node = self.sim.nodes[self.index]
        node.honest = False
        me = self

        class Machine:
            def handle(self, event):
                if isinstance(event, (ProposalReceived, VoteReceived)):
                    m = event.proposal if isinstance(event, ProposalReceived) else event.vote
                    if m.height > me.height:
                        me.height, me.round = m.height, 0
                    if m.height == me.height:
                        me.round = max(me.round, m.round)
                    if m.block_hash is not None and m.block_hash not in me.values:
                        me.values.append(m.block_hash)
                        del me.values[:-8]
                    # react to some of what it hears (not to its own messages relayed back:
                    # that would be a feedback loop, not an attack)
                    if getattr(m, "validator", None) != me.index and me.rng.random() < 0.3:
                        me.act()
                return []

            def rebroadcast(self):
                me.act()
                return []

        node.machine = Machine()

    def act(self) -> None:
        rng, sim = self.rng, self.sim
        if rng.random() < 0.5:
            return
        height = self.height + rng.choice((-1, 0, 0, 0, 1))
        round_ = max(0, self.round + rng.choice((-1, 0, 0, 1, 2)))
        for dst in range(sim.n):
            if dst == self.index:
                continue
            choice = rng.random()
            if choice < 0.2 and sim.validators.proposer(height, round_) == self.index:
                data = make_block(height, round_, self.index, b"byz %d" % rng.randrange(3))
                message = Proposal.sign(self.key, CHAIN_ID, height, round_, keccak(data), -1, data)
            else:
                value = rng.choice(self.values + [None, keccak(b"random %d" % rng.randrange(4))])
                kind = rng.choice((Step.PREVOTE, Step.PRECOMMIT))
                message = Vote.sign(self.key, kind, CHAIN_ID, height, round_, value, self.index)
            sim.send(self.index, dst, message)
