"""The consensus reactor: drives the pure `StateMachine` with the network, the chain, the
mempool, the WAL and the clock.

One trio task (`run`) owns the machine. Everything that reaches it goes through one
inbox channel and is handled in order:

    p2p consensus topic ──on_consensus()──▶ Inbound(message, peer) ─┐
    TimeoutScheduler ─────────────────────▶ TimeoutFired ───────────┤
    builder task (worker thread) ─────────▶ BlockBuilt ─────────────┤──▶ machine.handle()
    validator task (worker thread) ───────▶ BlockValidated ─────────┤        │ actions
    rebroadcast ticker ───────────────────▶ Rebroadcast ────────────┤        ▼
    block sync (consensus/sync.py) ───────▶ SyncBatch ──────────────┘   _execute(actions)

Actions: a message signed just now (`new=True`) is written to the WAL (fsync, in a worker
thread) *before* it is published; `BuildBlock` and `ValidateBlock` start a task that
executes the block in a worker thread (one execution at a time) and answers through the
inbox; `Commit` writes the block with its certificate (worker thread), advances the
head and starts the next height. Nothing a peer sends can crash the reactor: frames
and messages are decoded strictly in the p2p callback, signatures are checked there
(a bad one is a REJECT verdict, which penalises the forwarding peer), and the
machine's own rejections penalise the peer that sent the message.

Wire frame on the consensus topic (the gossip payload), strict and versioned:

    RLP[FRAME_VERSION, relay_tag, message]     message = messages.Proposal/Vote.encode()

GossipSub message ids are content hashes, so re-publishing identical bytes within the
seen-cache window (2 minutes) is a no-op everywhere. A message is first published with
tag 0; the periodic re-send (`StateMachine.rebroadcast`, only while the machine makes
no progress) uses a fresh random tag, which makes it a new gossip message.

The reactor depends only on consensus/engine.py's protocols: the chain (`BlockChain`),
the mempool (`TransactionSource`) and the network port (`ConsensusNetwork`). Test
harnesses may give it an outbound hook (`engine.OutboundHook`): every message it
publishes, newly signed or re-sent, goes through it first (tests/harness_node.py makes a
Byzantine validator out of it); the shipped node installs none.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import rlp
import trio
from eth_hash.auto import keccak
from eth_keys import keys

from consensus.engine import (
    BlockChain,
    BlockRejected,
    ConsensusNetwork,
    ExecutedBlock,
    OutboundContext,
    OutboundHook,
    TransactionSource,
    Verdict,
)
from consensus.events import (
    BlockBuilt,
    BlockValidated,
    BroadcastProposal,
    BroadcastVote,
    BuildBlock,
    Commit,
    ConflictingProposals,
    EvidenceFound,
    MessageRejected,
    ProposalReceived,
    ScheduleTimeout,
    SigningRefused,
    StartHeight,
    ValidateBlock,
    VoteReceived,
)
from consensus.messages import (
    DecodeError,
    InvalidSignatureError,
    Proposal,
    Vote,
    _flat_list,
    _uint,
    decode_message,
)
from consensus.state_machine import StateMachine
from consensus.timers import TimeoutConfig, TimeoutScheduler
from consensus.validators import ValidatorSet
from consensus.wal import WAL, ConflictingSignatureError

if TYPE_CHECKING:
    # trio.TaskStatus is hidden from mypy by trio-typing's stubs: see consensus/engine.py.
    from trio_typing import TaskStatus

    from consensus.sync import BlockSync

log = logging.getLogger(__name__)

FRAME_VERSION = 1
MAX_TAG = 2**63 - 1
INBOX_SIZE = 16_384
DECODED_CACHE = 64
# Building or validating a block slower than this is logged at INFO (it eats into the
# round's timeouts); faster ones at DEBUG.
SLOW_BLOCK_S = 1.0
BAD_BLOCKS_KEPT = 16  # debug_getBadBlocks: the most recent invalid proposals


# ---- the gossip frame ---------------------------------------------------------------------


def encode_frame(message, tag: int = 0) -> bytes:
    return rlp.encode([FRAME_VERSION, tag, message.encode()])


def decode_frame(data: bytes):
    """(tag, message) from a consensus gossip payload; `DecodeError` on anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("frame is not bytes")
    items = _flat_list(bytes(data))
    if len(items) != 3:
        raise DecodeError(f"frame: expected 3 fields, got {len(items)}")
    version = _uint(items[0], "frame version", 2**32)
    if version != FRAME_VERSION:
        raise DecodeError(f"unsupported frame version {version}")
    tag = _uint(items[1], "relay tag", MAX_TAG)
    return tag, decode_message(items[2])


def message_hash(message) -> bytes:
    return keccak(message.encode())


def _short(value: Optional[bytes]) -> str:
    return "nil" if value is None else "0x" + value.hex()[:16]


# ---- inbox items that are not machine events ---------------------------------------------


@dataclass
class Inbound:
    message: Any
    peer: Any


@dataclass
class Rebroadcast:
    """Re-send; `proposals`: blocks too (only after `PROPOSAL_RESEND_TICKS` ticks in a
    row without progress: a peer that has a block but is still executing it makes no
    progress for a while, and every re-sent block costs each peer its bytes again)."""

    proposals: bool = True


# Ticks of `rebroadcast_interval` without progress before proposals are re-sent too
# (votes go at every tick; `docs/consensus.md`, frames).
PROPOSAL_RESEND_TICKS = 2


@dataclass
class SyncBatch:
    """Blocks (with verified certificates) to import in order; answered via `done`."""

    blocks: list  # [(BlockAPI, certificate bytes, receipts RLP)]
    done: trio.Event = field(default_factory=trio.Event)
    imported: int = 0
    error: Optional[str] = None


@dataclass
class ReactorSettings:
    block_time: float = 1.0
    max_block_txs: Optional[int] = None
    # A proposal carries its whole block and must fit the p2p consensus cap (1 MiB).
    max_block_bytes: int = 900 * 1024
    rebroadcast_interval: float = 1.0
    wal_prune_every: int = 16
    # Synced blocks: "execute" them, or apply their access lists ("bal").
    sync_mode: str = "execute"


class ConsensusReactor:
    def __init__(
        self, *, chain: BlockChain[Any], mempool: TransactionSource, network: ConsensusNetwork,
        validators: ValidatorSet, private_key: Optional[bytes], datadir: Path,
        timeouts: TimeoutConfig, settings: ReactorSettings,
        outbound: Optional[Callable[[OutboundContext], OutboundHook]] = None,
    ) -> None:
        self.chain = chain
        self.mempool = mempool
        self.network = network
        self.validators = validators
        self.settings = settings
        self._key = keys.PrivateKey(private_key) if private_key is not None else None
        self.machine = StateMachine(
            chain_id=chain.chain_id, validators=validators, block_hash_of=self._block_hash_of,
            private_key=private_key, timeouts=timeouts,
        )
        self.address = self.machine.address
        self.index = self.machine.index
        self.wal = WAL.for_validator(datadir, self.address) if self.address is not None else None
        self.scheduler = TimeoutScheduler()
        self._send, self._recv = trio.open_memory_channel(INBOX_SIZE)
        self.execution_lock = trio.Lock()  # one block execution at a time
        self._executed: dict[bytes, ExecutedBlock] = {}  # block hash -> executed (this height)
        self._decoded: OrderedDict[bytes, Any] = OrderedDict()  # keccak(bytes) -> BlockAPI
        self._current_peer = None
        self._height_started = 0.0
        self._nursery: Optional[trio.Nursery] = None
        self.outbound: Optional[OutboundHook] = None
        if outbound is not None:
            self.outbound = outbound(OutboundContext(
                chain=chain, chain_id=chain.chain_id, private_key=private_key,
                address=self.address, execution_lock=self.execution_lock,
                remember_executed=self._executed.__setitem__,
            ))
        self.sync: Optional[BlockSync] = None  # for "we are behind" hints
        self.evidence: list[str] = []
        # The last proposals this node decoded and proved invalid by executing them, for
        # debug_getBadBlocks (bytes that do not even decode are only logged).
        self.bad_blocks: deque[Any] = deque(maxlen=BAD_BLOCKS_KEPT)
        self.commits = 0
        self.dropped_inbound = 0
        self.height_event = trio.Event()  # set (and replaced) whenever a height commits

    # ---- block decoding (the machine's block_hash_of) ---------------------------------

    def _decode_block(self, data: bytes):
        digest = keccak(data)
        block = self._decoded.get(digest)
        if block is None:
            block = self.chain.decode_block(data)  # BlockRejected on bad bytes
            self._decoded[digest] = block
            while len(self._decoded) > DECODED_CACHE:
                self._decoded.popitem(last=False)
        return block

    def _block_hash_of(self, data: bytes) -> bytes:
        return self._decode_block(data).header.hash

    # ---- inbound (the p2p topic validator: synchronous, exactly once per message) ------

    def on_consensus(self, payload: bytes, peer) -> Verdict:
        try:
            _, message = decode_frame(payload)
        except DecodeError as exc:
            log.info("dropping undecodable consensus message from %s: %s", peer, exc)
            return Verdict.REJECT
        height = self.machine.height if self.machine.height is not None else 0
        if message.height < height:
            return Verdict.IGNORE  # stale: nothing to do with it, no one's fault
        reason = self._check_signature(message)
        if reason is not None:
            log.info("dropping consensus message from %s: %s", peer, reason)
            return Verdict.REJECT
        if message.height > height + 1:
            if self.sync is not None:
                self.sync.hint(message.height - 1)
            return Verdict.IGNORE
        try:
            self._send.send_nowait(Inbound(message, peer))
        except trio.WouldBlock:
            self.dropped_inbound += 1
            return Verdict.IGNORE
        return Verdict.ACCEPT

    def _check_signature(self, message) -> Optional[str]:
        chain_id = self.chain.chain_id
        try:
            if isinstance(message, Vote):
                if not 0 <= message.validator < self.validators.n:
                    return f"vote by unknown validator index {message.validator}"
                if message.signer(chain_id) != self.validators.address(message.validator):
                    return "vote not signed by the validator it names"
            else:
                expected = self.validators.proposer_address(message.height, message.round)
                if message.signer(chain_id) != expected:
                    return "proposal not signed by the proposer of its round"
        except InvalidSignatureError as exc:
            return str(exc)
        return None

    # ---- the loop --------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.scheduler.run, self._send.send)
            head = self.chain.head.block_number
            if self.wal is not None:
                signed = await trio.to_thread.run_sync(self.wal.messages, head + 1)
                if signed:
                    log.info("restored %d signed messages from the WAL", len(signed))
                self.machine.restore(signed)
            self._height_started = trio.current_time()
            await self._execute(self.machine.handle(StartHeight(head + 1)))
            nursery.start_soon(self._rebroadcast_ticker)
            task_status.started()
            try:
                async for item in self._recv:
                    await self._dispatch(item)
            finally:
                if self.wal is not None:
                    self.wal.close()

    async def _dispatch(self, item) -> None:
        if isinstance(item, Inbound):
            self._current_peer = item.peer
            try:
                event = (
                    ProposalReceived(item.message) if isinstance(item.message, Proposal)
                    else VoteReceived(item.message)
                )
                await self._execute(self.machine.handle(event))
            finally:
                self._current_peer = None
        elif isinstance(item, Rebroadcast):
            tag = random.randint(1, MAX_TAG)
            for action in self.machine.rebroadcast(proposals=item.proposals):
                message = action.proposal if isinstance(action, BroadcastProposal) else action.vote
                outgoing = [message]
                if self.outbound is not None:
                    outgoing = list(await self.outbound(message))
                for each in outgoing:
                    await self._publish(each, tag)
        elif isinstance(item, SyncBatch):
            await self._import_synced(item)
        else:
            await self._execute(self.machine.handle(item))

    async def _execute(self, actions) -> None:
        for action in actions:
            if isinstance(action, (BroadcastProposal, BroadcastVote)):
                await self._broadcast(action)
            elif isinstance(action, ScheduleTimeout):
                self.scheduler.schedule(action)
            elif isinstance(action, BuildBlock):
                assert self._nursery is not None  # run() sets it before executing any action
                self._nursery.start_soon(self._build, action.height, action.round)
            elif isinstance(action, ValidateBlock):
                assert self._nursery is not None
                self._nursery.start_soon(
                    self._validate, action.height, action.block_hash, action.block_bytes,
                    action.round,
                )
            elif isinstance(action, Commit):
                await self._commit(action)
            elif isinstance(action, EvidenceFound):
                self._log_evidence(action.evidence)
            elif isinstance(action, MessageRejected):
                peer = self._current_peer
                log.info("rejected consensus message from %s: %s", peer, action.reason)
                if peer is not None:
                    self.network.penalize(peer, "consensus_invalid")
            elif isinstance(action, SigningRefused):
                log.warning(
                    "refused to sign %s at height %d round %d for %s: already signed %s",
                    action.step.name.lower(), action.height, action.round,
                    _short(action.wanted), _short(action.signed),
                )

    async def _broadcast(self, action) -> None:
        message = action.proposal if isinstance(action, BroadcastProposal) else action.vote
        if action.new:
            # Only a validator signs (new=True), and a validator has a WAL.
            assert self.wal is not None
            try:
                await trio.to_thread.run_sync(
                    self.wal.record_proposal if isinstance(message, Proposal)
                    else self.wal.record_vote,
                    message,
                )
            except ConflictingSignatureError as exc:
                log.critical("NOT sending a conflicting signature: %s", exc)
                return
        outgoing = [message]
        if self.outbound is not None:
            outgoing = list(await self.outbound(message))
        for each in outgoing:
            await self._publish(each)

    async def _publish(self, message, tag: int = 0) -> None:
        try:
            await self.network.publish(encode_frame(message, tag))
        except Exception as exc:  # noqa: BLE001 - no peers yet, over the cap, shutting down
            log.debug("could not publish consensus message: %s", exc)

    # ---- blocks ----------------------------------------------------------------------

    async def _build(self, height: int, round_: int) -> None:
        parent = self.chain.head
        if parent.block_number != height - 1:
            return
        # Idle chains still need heights to complete: wait up to block_time for
        # transactions, then propose whatever there is (possibly an empty block).
        with trio.move_on_at(self._height_started + self.settings.block_time):
            await self.mempool.wait_for_transactions()
        if (
            (self.machine.height, self.machine.round) != (height, round_)
            or self.chain.head.hash != parent.hash
        ):
            return
        limit = self.settings.max_block_txs
        building_started = trio.current_time()
        while True:
            txs = await trio.to_thread.run_sync(
                self.mempool.selection(self.chain.next_base_fee(), parent.gas_limit, limit)
            )
            senders = self.mempool.senders_of(txs)
            async with self.execution_lock:
                proposal = await trio.to_thread.run_sync(
                    self.chain.propose, txs, int(time.time()), self.address, parent, senders
                )
            data = rlp.encode(proposal.block)
            if len(data) <= self.settings.max_block_bytes or len(txs) <= 1:
                break
            limit = max(1, len(txs) // 2)
        for tx, reason in proposal.dropped:
            log.warning("dropped transaction 0x%s: %s", tx.hash.hex(), reason)
        block_hash = proposal.header.hash
        took = trio.current_time() - building_started
        log.log(
            logging.INFO if took >= SLOW_BLOCK_S else logging.DEBUG,
            "built proposal for height %d round %d in %.2f s (%d txs, %d bytes)",
            height, round_, took, len(proposal.block.transactions), len(data),
        )
        self._executed[block_hash] = proposal
        await self._send.send(BlockBuilt(height, round_, block_hash, data))

    async def _validate(self, height: int, block_hash: bytes, data: bytes, round_: int) -> None:
        parent = self.chain.head
        if parent.block_number != height - 1:
            return  # stale: the machine has moved on
        received = trio.current_time()
        block = None
        try:
            block = self._decode_block(data)
            senders = self.mempool.senders_of(block.transactions)
            async with self.execution_lock:
                if self.chain.head.hash != parent.hash:
                    return
                started = trio.current_time()
                executed = await trio.to_thread.run_sync(
                    self.chain.import_block, block, parent, senders
                )
            self._executed[block_hash] = executed
            valid = True
            took = trio.current_time() - received
            log.log(
                logging.INFO if took >= SLOW_BLOCK_S else logging.DEBUG,
                "validated proposal for height %d round %d in %.2f s (waited %.2f s for the execution lock; "
                "%d txs, %d senders known)",
                height, round_, took, started - received, len(block.transactions),
                sum(1 for s in senders if s is not None) if senders else 0,
            )
        except BlockRejected as exc:
            log.warning("invalid proposal at height %d: %s", height, exc)
            self._log_invalid_proposal(height, round_, block_hash, exc)
            if block is not None and all(b.header.hash != block.header.hash for b in self.bad_blocks):
                self.bad_blocks.append(block)
            valid = False
        except Exception:  # noqa: BLE001 - a bad block must not kill the node
            log.exception("validating the proposal at height %d failed", height)
            valid = False
        await self._send.send(BlockValidated(height, block_hash, valid))

    async def _commit(self, action: Commit) -> None:
        proposal = self._executed.get(action.block_hash)
        async with self.execution_lock:
            if proposal is None:  # e.g. our own proposal restored from the WAL
                block = self._decode_block(action.block_bytes)
                # A name of its own: inferred in `proposal`'s Optional context, run_sync's
                # result would stay Optional for mypy.
                imported: ExecutedBlock = await trio.to_thread.run_sync(
                    self.chain.import_block, block
                )
                proposal = imported
            await trio.to_thread.run_sync(
                self.chain.write_block, proposal, action.certificate.encode()
            )
        self.chain.advance_head(proposal)
        self.commits += 1
        log.info(
            "committed block %d round %d (%d txs, gas %d, %d signatures) 0x%s",
            action.height, action.round, len(proposal.block.transactions),
            proposal.header.gas_used, len(action.certificate.signatures),
            action.block_hash.hex()[:16],
        )
        await self._start_next_height()

    async def _start_next_height(self) -> None:
        head = self.chain.head.block_number
        self._executed.clear()
        self.scheduler.discard_below(head + 1)
        if self.wal is not None and head % self.settings.wal_prune_every == 0:
            await trio.to_thread.run_sync(self.wal.prune_below, head + 1)
        self._height_started = trio.current_time()
        event, self.height_event = self.height_event, trio.Event()
        event.set()
        await self._execute(self.machine.handle(StartHeight(head + 1)))

    async def import_synced(self, blocks: list) -> SyncBatch:
        """Hand blocks with verified certificates to the reactor task; returns when done."""
        batch = SyncBatch(blocks)
        await self._send.send(batch)
        await batch.done.wait()
        return batch

    async def _import_synced(self, batch: SyncBatch) -> None:
        """Import the batch's blocks one on top of the other, then write them in one
        synced batch (one fsync per batch, not per block) and make each the head. A
        block that fails stops the batch; the ones before it are still written."""
        try:
            synced = self.chain.begin_sync_batch()
            for block, certificate, receipts in batch.blocks:
                number = block.header.block_number
                if number <= synced.parent.block_number:
                    continue
                if number != synced.parent.block_number + 1:
                    batch.error = f"block {number} does not follow #{synced.parent.block_number}"
                    break
                try:
                    async with self.execution_lock:
                        if self.settings.sync_mode == "bal":
                            proposal = await trio.to_thread.run_sync(
                                functools.partial(self.chain.apply_synced_block, block, receipts,
                                                  synced=synced)
                            )
                        else:
                            proposal = await trio.to_thread.run_sync(
                                functools.partial(self.chain.import_block, block, synced=synced)
                            )
                except BlockRejected as exc:
                    batch.error = str(exc)
                    break
                synced.add(proposal, certificate)
            if synced.proposals:
                await trio.to_thread.run_sync(self.chain.write_blocks, synced)
                for proposal in synced.proposals:
                    self.chain.advance_head(proposal)
                    batch.imported += 1
                    log.info(
                        "synced block %d (%d txs, %s) 0x%s", proposal.header.block_number,
                        len(proposal.block.transactions),
                        "access list applied" if self.settings.sync_mode == "bal" else "executed",
                        proposal.header.hash.hex()[:16],
                    )
                await self._start_next_height()
        finally:
            batch.done.set()

    # ---- periodic re-send -------------------------------------------------------------

    async def _rebroadcast_ticker(self) -> None:
        """Re-send (fresh gossip ids) whenever the machine made no progress for an interval."""
        last = None
        stalled = 0  # ticks in a row without progress
        while True:
            await trio.sleep(self.settings.rebroadcast_interval)
            status = (self.machine.height, self.machine.round, self.machine.step)
            stalled = stalled + 1 if status == last else 0
            if stalled:
                try:
                    self._send.send_nowait(Rebroadcast(proposals=stalled >= PROPOSAL_RESEND_TICKS))
                except trio.WouldBlock:
                    pass
            last = status

    # ---- evidence and status ------------------------------------------------------------

    def _log_evidence(self, evidence) -> None:
        first, second = evidence.first, evidence.second
        address = "0x" + self.validators.address(evidence.validator).hex()
        if isinstance(evidence, ConflictingProposals):
            what = "proposals"
        else:
            what = f"{first.kind.name.lower()}s"
        text = (
            f"EVIDENCE: validator {evidence.validator} ({address}) signed conflicting {what} "
            f"at height {first.height} round {first.round}: blocks {_short(first.block_hash)} "
            f"and {_short(second.block_hash)}; signed messages 0x{message_hash(first).hex()} "
            f"and 0x{message_hash(second).hex()}"
        )
        self.evidence.append(text)
        log.warning("%s", text)

    def _log_invalid_proposal(self, height: int, round_: int, block_hash: bytes,
                              reason: BlockRejected) -> None:
        """The round's proposer signed a block this node proves invalid by executing it
        (a wrong access list, state root, ...): kept with the equivocation evidence."""
        proposer = self.validators.proposer(height, round_)
        address = "0x" + self.validators.address(proposer).hex()
        text = (
            f"EVIDENCE: validator {proposer} ({address}) proposed an invalid block at "
            f"height {height} round {round_}: block {_short(block_hash)}: {reason}"
        )
        self.evidence.append(text)
        log.warning("%s", text)

    def status(self) -> dict:
        state = self.machine.status()
        for key in ("locked_value", "valid_value"):
            state[key] = "0x" + state[key].hex() if state[key] is not None else None
        proposer = None
        if self.machine.height is not None:
            proposer = self.validators.proposer(self.machine.height, self.machine.round)
        state.update({
            "mode": "validator" if self.index is not None else "observer",
            "validator_index": self.index,
            "address": "0x" + self.address.hex() if self.address is not None else None,
            "validators": self.validators.n,
            "proposer": proposer,
            "head": self.chain.head.block_number,
            "commits": self.commits,
            "evidence": list(self.evidence[-16:]),
            "peers": len(self.network.peers()),
        })
        return state
