"""The consensus WAL: durability under SIGKILL, torn tails, conflicts, pruning, and a state
machine restored from it never signing a conflicting vote."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from consensus_sim import CHAIN_ID, FAST_TIMEOUTS, KEYS, block_hash_of, make_block, validator_set
from eth_hash.auto import keccak

from consensus.events import (
    BlockValidated,
    BroadcastProposal,
    BroadcastVote,
    ProposalReceived,
    SigningRefused,
    StartHeight,
    TimeoutFired,
    ValidateBlock,
    VoteReceived,
)
from consensus.messages import Proposal, Step, Vote
from consensus.state_machine import StateMachine
from consensus.wal import WAL, WAL_MAGIC, ConflictingSignatureError, WALCorruptError

REPO_ROOT = Path(__file__).resolve().parent.parent


def vote(height, round_=0, kind=Step.PREVOTE, value=b"a", validator=0):
    return Vote.sign(KEYS[validator], kind, CHAIN_ID, height, round_,
                     keccak(value) if value is not None else None, validator)


def test_records_replay_and_lookup(tmp_path):
    address = validator_set(4).address(0)
    with WAL.for_validator(tmp_path, address) as wal:
        assert wal.path == tmp_path / "consensus" / f"wal-{address.hex()}.log"
        v1, v2 = vote(1), vote(1, kind=Step.PRECOMMIT)
        data = make_block(1, 0, 0)
        p = Proposal.sign(KEYS[0], CHAIN_ID, 1, 0, keccak(data), -1, data)
        assert wal.record_vote(v1) and wal.record_vote(v2) and wal.record_proposal(p)
        assert not wal.record_vote(v1)  # idempotent: the same vote is not written twice
        with pytest.raises(ConflictingSignatureError):
            wal.record_vote(vote(1, value=b"b"))
        with pytest.raises(ConflictingSignatureError):
            wal.record_vote(vote(1, value=None))
    with WAL.for_validator(tmp_path, address) as wal:
        assert wal.signed_votes(1) == [v1, v2]
        assert wal.signed_proposals(1) == [p]
        assert wal.last_signed(1, 0, Step.PREVOTE) == v1
        assert wal.last_signed(1, 0, Step.PROPOSE) == p
        assert wal.last_signed(1, 1, Step.PREVOTE) is None
        assert wal.truncated_bytes == 0


def test_torn_tail_is_truncated_and_mid_log_damage_is_refused(tmp_path):
    path = tmp_path / "wal.log"
    with WAL(path) as wal:
        for h in range(1, 6):
            wal.record_vote(vote(h))
    full = path.read_bytes()
    # every possible torn final record: cut anywhere inside the last record
    record_size = (len(full) - len(WAL_MAGIC)) // 5
    for cut in range(1, record_size):
        path.write_bytes(full[:-cut])
        with WAL(path) as wal:
            assert [m.height for m in wal.messages()] == [1, 2, 3, 4]
            assert wal.truncated_bytes == record_size - cut
        assert path.stat().st_size == len(full) - record_size
    # zero-filled tail (a crash after the size grew, before the data landed)
    path.write_bytes(full + b"\x00" * 100)
    with WAL(path) as wal:
        assert len(wal) == 5
    # a flipped bit in the last record: its checksum fails, it is the tail, it goes
    damaged = bytearray(full)
    damaged[-3] ^= 1
    path.write_bytes(bytes(damaged))
    with WAL(path) as wal:
        assert len(wal) == 4
    # a flipped bit in the middle with records after it: refuse to guess
    damaged = bytearray(full)
    damaged[len(WAL_MAGIC) + record_size + 20] ^= 1
    path.write_bytes(bytes(damaged))
    with pytest.raises(WALCorruptError):
        WAL(path)
    path.write_bytes(b"not a wal at all")
    with pytest.raises(WALCorruptError):
        WAL(path)
    path.write_bytes(WAL_MAGIC[:3])  # torn while being created
    with WAL(path) as wal:
        assert len(wal) == 0


def test_prune_below_a_committed_height(tmp_path):
    path = tmp_path / "wal.log"
    with WAL(path) as wal:
        for h in range(1, 11):
            wal.record_vote(vote(h))
            wal.record_vote(vote(h, kind=Step.PRECOMMIT))
        assert wal.prune_below(8) == 14
        assert wal.signed_votes(7) == [] and len(wal.signed_votes(8)) == 2
        wal.record_vote(vote(11))
    with WAL(path) as wal:
        assert sorted({m.height for m in wal.messages()}) == [8, 9, 10, 11]
        assert not (tmp_path / "wal.log.tmp").exists()


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    from consensus.wal import WAL
    from consensus.messages import Step, Vote, Proposal
    from eth_hash.auto import keccak
    KEY = keccak(b"laminar test validator 0")
    wal = WAL(sys.argv[1])
    height = 1
    while True:
        wal.record_vote(Vote.sign(KEY, Step.PREVOTE, 4242, height, 0, keccak(b"%d" % height), 0))
        if height % 3 == 0:  # a bigger record now and then: more chances to be torn
            data = b"x" * 200_000
            wal.record_proposal(Proposal.sign(KEY, 4242, height, 0, keccak(data), -1, data))
        print(height, flush=True)
        height += 1
""")


@pytest.mark.parametrize("kill_after", [20, 57, 101])
def test_wal_survives_sigkill_mid_write(tmp_path, kill_after):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path = tmp_path / "wal.log"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), str(REPO_ROOT)],
        stdout=subprocess.PIPE, text=True,
    )
    acknowledged = 0
    try:
        for line in proc.stdout:
            acknowledged = int(line)
            if acknowledged >= kill_after:
                break
        proc.send_signal(signal.SIGKILL)  # mid-loop: likely inside a write or an fsync
    finally:
        proc.kill()
        proc.wait()
    # The writer may have acknowledged more before the signal landed (lines still in the
    # pipe): the bound below is on what it acknowledged, not on what was read in time.
    printed = acknowledged
    for line in proc.stdout:
        printed = int(line)
    proc.stdout.close()
    with WAL(path) as wal:
        heights = [v.height for v in wal.messages() if isinstance(v, Vote)]
        # everything the writer acknowledged is there, in order, with nothing invented
        assert heights[:printed] == list(range(1, printed + 1))
        assert heights == list(range(1, len(heights) + 1))
        assert len(heights) <= printed + 1
        for p in wal.messages():
            if isinstance(p, Proposal):
                assert p.block_hash == keccak(p.block_bytes)
        size = path.stat().st_size
        wal.record_vote(vote(10_000))  # appends cleanly after whatever was truncated
    with WAL(path) as wal:
        assert wal.last_signed(10_000, 0, Step.PREVOTE) is not None
        assert path.stat().st_size > size


# ---- the state machine restored from the WAL ------------------------------------------


def machine(index=0):
    return StateMachine(chain_id=CHAIN_ID, validators=validator_set(4), block_hash_of=block_hash_of,
                        private_key=KEYS[index], timeouts=FAST_TIMEOUTS)


def proposal(round_, tag):
    vs = validator_set(4)
    data = make_block(1, round_, vs.proposer(1, round_), tag)
    return Proposal.sign(KEYS[vs.proposer(1, round_)], CHAIN_ID, 1, round_, keccak(data), -1, data)


def feed(m, event):
    actions = m.handle(event)
    for a in list(actions):
        if isinstance(a, ValidateBlock):
            actions += m.handle(BlockValidated(a.height, a.block_hash, True))
    return actions


def apply_with_wal(wal, actions):
    """The reactor's WAL discipline: record (synced) every newly signed message first."""
    for a in actions:
        if isinstance(a, BroadcastVote) and a.new:
            wal.record_vote(a.vote)
        elif isinstance(a, BroadcastProposal) and a.new:
            wal.record_proposal(a.proposal)
    return actions


def test_restored_machine_resends_and_never_signs_a_conflicting_vote(tmp_path):
    # Before the crash: validator 0 prevotes block A in height 1 round 0.
    a, b = proposal(0, b"A"), proposal(0, b"B")  # an equivocating proposer's two blocks
    with WAL(tmp_path / "wal.log") as wal:
        m = machine()
        apply_with_wal(wal, m.handle(StartHeight(1)))
        actions = apply_with_wal(wal, feed(m, ProposalReceived(a)))
        signed = [x.vote for x in actions if isinstance(x, BroadcastVote)]
        assert [v.block_hash for v in signed] == [a.block_hash]
    # Crash, restart: restore from the WAL.
    with WAL(tmp_path / "wal.log") as wal:
        m = machine()
        m.restore(wal.messages())
        actions = apply_with_wal(wal, m.handle(StartHeight(1)))
        resent = [x for x in actions if isinstance(x, BroadcastVote)]
        assert [(x.vote, x.new) for x in resent] == [(signed[0], False)]  # the same vote, re-sent
        assert (m.round, m.step) == (0, Step.PREVOTE)
        # This time block B arrives first: no prevote for B is ever signed.
        actions = apply_with_wal(wal, feed(m, ProposalReceived(b)))
        assert not any(isinstance(x, BroadcastVote) and x.new for x in actions)
        assert wal.signed_votes(1) == signed


def test_restored_lock_survives_a_restart(tmp_path):
    """Precommitting A locks on A; after a restart the lock is back, so a fresh proposal of
    another value in a later round gets a nil prevote."""
    vs = validator_set(4)
    a = proposal(0, b"A")
    with WAL(tmp_path / "wal.log") as wal:
        m = machine()
        apply_with_wal(wal, m.handle(StartHeight(1)))
        apply_with_wal(wal, feed(m, ProposalReceived(a)))
        for i in (1, 2):
            apply_with_wal(wal, m.handle(VoteReceived(
                Vote.sign(KEYS[i], Step.PREVOTE, CHAIN_ID, 1, 0, a.block_hash, i))))
        assert wal.last_signed(1, 0, Step.PRECOMMIT).block_hash == a.block_hash
    with WAL(tmp_path / "wal.log") as wal:
        m = machine()
        m.restore(wal.messages())
        m.handle(StartHeight(1))
        assert (m.locked_value, m.locked_round, m.step) == (a.block_hash, 0, Step.PRECOMMIT)
        apply_with_wal(wal, m.handle(TimeoutFired(1, 0, Step.PRECOMMIT)))
        actions = apply_with_wal(wal, feed(m, ProposalReceived(proposal(1, b"B"))))
        assert [x.vote.block_hash for x in actions if isinstance(x, BroadcastVote)] == [None]
        assert vs.proposer(1, 1) == 2


def test_signing_guard_refuses_a_different_value_and_resends_the_signed_one():
    """Defence in depth: even if the machine's state were wrong after a restart, a vote for
    another value at an already-signed (height, round, step) is never produced."""
    a, b = proposal(0, b"A"), proposal(0, b"B")
    earlier = Vote.sign(KEYS[0], Step.PREVOTE, CHAIN_ID, 1, 0, a.block_hash, 0)
    m = machine()
    m.handle(StartHeight(1))
    m.restore([earlier])  # (late restore: the machine still thinks it has not prevoted)
    actions = feed(m, ProposalReceived(b))
    refused = [x for x in actions if isinstance(x, SigningRefused)]
    votes = [x for x in actions if isinstance(x, BroadcastVote)]
    assert refused and refused[0].signed == a.block_hash and refused[0].wanted == b.block_hash
    assert [(x.vote, x.new) for x in votes] == [(earlier, False)]
