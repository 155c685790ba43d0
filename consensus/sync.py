"""Block sync: serve committed blocks with their commit certificates, and catch up from
peers when this node is behind (new, restarted after being down, or partitioned away).

Served over the p2p sync protocol (`/laminar/sync/1`, see p2p/sync.py for the transport):

    status              -> RLP[STATUS_VERSION, head height, head hash]
    blocks(from, count) -> [RLP[block RLP, certificate bytes, receipts RLP], ...] for
                           heights from.. (canonical)

Catch-up (`BlockSync.run`): at start, every `poll_interval`, and at once when the reactor
hints that consensus messages show a higher height, ask the connected peers for their
status. If one is ahead (by 2 or more, or by 1 for longer than a grace period: one
behind is normally finished by consensus itself from the re-sent precommits), fetch
blocks from it in batches. Each block is checked before anything executes it: strict
decoding, its number is the next one, its certificate decodes, is for this height and
this block hash, and more than two thirds of the validator set signed it. Verified
blocks go to the reactor, which re-executes them (`Chain.import_block`: state root,
receipts, gas... must match) or, with `sync_mode = "bal"`, applies their access lists
and takes the served receipts (`Chain.apply_synced_block`: the list's root and the
receipts must match the certified header), one on top of the other, writes the batch
with the certificates in one synced write and restarts consensus at the new height.
A peer that serves a bad status, block or certificate is penalised and the next peer is
tried.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any, Optional, Protocol

import rlp
import trio

from consensus.certificate import CommitCertificate, InvalidCertificateError
from consensus.engine import BlockChain, ConsensusNetwork, PeerRequestFailed
from consensus.messages import MAX_HEIGHT, DecodeError, _exact, _flat_list, _uint
from consensus.validators import ValidatorSet

if TYPE_CHECKING:
    # trio.TaskStatus is hidden from mypy by trio-typing's stubs: see consensus/engine.py.
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

STATUS_VERSION = 2  # 2: block items carry receipts (peers of version 1 are not served)
SYNC_BATCH = 32
STATUS_TIMEOUT = 5.0
BLOCKS_TIMEOUT = 30.0


def encode_status(height: int, block_hash: bytes) -> bytes:
    return rlp.encode([STATUS_VERSION, height, block_hash])


def decode_status(data: bytes) -> tuple[int, bytes]:
    items = _flat_list(bytes(data))
    if len(items) != 3:
        raise DecodeError(f"status: expected 3 fields, got {len(items)}")
    if _uint(items[0], "status version", 2**32) != STATUS_VERSION:
        raise DecodeError("status: unsupported version")
    return _uint(items[1], "height", MAX_HEIGHT), _exact(items[2], "head hash", 32)


def encode_block_item(block_rlp: bytes, certificate: bytes, receipts: bytes) -> bytes:
    return rlp.encode([block_rlp, certificate, receipts])


def decode_block_item(data: bytes) -> tuple[bytes, bytes, bytes]:
    items = _flat_list(bytes(data))
    if len(items) != 3 or not items[0] or not items[1] or not items[2]:
        raise DecodeError("block item: expected [block, certificate, receipts]")
    return items[0], items[1], items[2]


class BadPeerData(Exception):
    pass


class SyncResult(Protocol):
    imported: int
    error: Optional[str]


class SyncedBlockImporter(Protocol):
    """Who executes and commits verified blocks: the reactor, on its own task."""

    async def import_synced(self, blocks: list) -> SyncResult: ...


class BlockSync:
    def __init__(
        self, *, chain: BlockChain[Any], network: ConsensusNetwork,
        validators: Optional[ValidatorSet], importer: Optional[SyncedBlockImporter] = None,
        poll_interval: float = 2.0, behind_grace: float = 3.0,
    ) -> None:
        self.chain = chain
        self.network = network
        self.validators = validators
        self.importer = importer
        self.poll_interval = poll_interval
        self.behind_grace = behind_grace
        self._wake = trio.Event()
        self._hint = 0
        self._one_behind_since: Optional[float] = None
        self.synced_blocks = 0
        self.bad_peers = 0

    # ---- serving ----------------------------------------------------------------------

    async def serve_status(self) -> bytes:
        head = self.chain.head
        return encode_status(head.block_number, head.hash)

    async def serve_blocks(self, from_height: int, count: int) -> list[bytes]:
        head = self.chain.head.block_number
        last = min(head, from_height + count - 1)
        if from_height < 1 or from_height > last:
            return []
        return await trio.to_thread.run_sync(self._read_blocks, from_height, last)

    def _read_blocks(self, first: int, last: int) -> list[bytes]:
        out = []
        for number in range(first, last + 1):
            committed = self.chain.committed_block(number)
            if committed is None:
                break
            out.append(encode_block_item(*committed))
        return out

    # ---- catching up ------------------------------------------------------------------

    def hint(self, peer_height: int) -> None:
        """Someone is at `peer_height` (committed): wake the catch-up loop if we are behind."""
        if peer_height > self.chain.head.block_number + 1 and peer_height > self._hint:
            self._hint = peer_height
            self._wake.set()

    def _usable_peers(self) -> list[Any]:
        peers = self.network.peers()
        random.shuffle(peers)
        return peers

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                await self.catch_up()
            except Exception:  # noqa: BLE001 - the loop must survive anything a peer does
                log.exception("block sync round failed")
            with trio.move_on_after(self.poll_interval):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _status(self, peer) -> Optional[tuple[int, bytes]]:
        try:
            with trio.fail_after(STATUS_TIMEOUT):
                return decode_status(await self.network.request_status(peer))
        except DecodeError as exc:
            log.info("bad status from %s: %s", peer, exc)
            self.network.penalize(peer, "bad_sync_status")
        except (PeerRequestFailed, trio.TooSlowError) as exc:
            log.debug("status request to %s failed: %s", peer, exc)
        return None

    async def catch_up(self) -> int:
        """One round: returns the number of blocks imported."""
        peers = self._usable_peers()
        statuses = []
        for peer in peers:
            status = await self._status(peer)
            if status is not None:
                statuses.append((status[0], peer))
        ours = self.chain.head.block_number
        ahead = sorted((s for s in statuses if s[0] > ours), key=lambda s: -s[0])
        if not ahead:
            self._one_behind_since = None
            return 0
        best = ahead[0][0]
        if best == ours + 1 and self._hint <= ours + 1:
            now = trio.current_time()
            if self._one_behind_since is None:
                self._one_behind_since = now
            if now - self._one_behind_since < self.behind_grace:
                return 0
        self._one_behind_since = None
        imported = 0
        for height, peer in ahead:
            try:
                imported += await self._fetch_from(peer, height)
            except BadPeerData as exc:
                self.bad_peers += 1
                log.warning("peer %s served bad sync data: %s", peer, exc)
                self.network.penalize(peer, "bad_sync_block")
                continue
            if self.chain.head.block_number >= height:
                break
        if self.chain.head.block_number >= self._hint:
            self._hint = 0
        return imported

    async def _fetch_from(self, peer, target: int) -> int:
        assert self.importer is not None, "a serving-only BlockSync does not catch up"
        imported = 0
        while self.chain.head.block_number < target:
            start = self.chain.head.block_number + 1
            count = min(SYNC_BATCH, target - start + 1)
            try:
                with trio.fail_after(BLOCKS_TIMEOUT):
                    raw = await self.network.request_blocks(peer, start, count)
            except (PeerRequestFailed, trio.TooSlowError) as exc:
                log.info("blocks request to %s failed: %s", peer, exc)
                return imported
            if not raw:
                return imported
            blocks = await trio.to_thread.run_sync(self._verify, raw, start)
            batch = await self.importer.import_synced(blocks)
            imported += batch.imported
            self.synced_blocks += batch.imported
            if batch.error is not None:
                raise BadPeerData(batch.error)
            if not batch.imported:
                return imported
        return imported

    def _verify(self, raw: list[bytes], start: int) -> list:
        """Decode and check blocks and certificates (worker thread); BadPeerData if any is bad."""
        out = []
        for offset, item in enumerate(raw):
            number = start + offset
            try:
                block_bytes, certificate_bytes, receipts = decode_block_item(item)
                block = self.chain.decode_block(block_bytes)
                certificate = CommitCertificate.decode(certificate_bytes)
            except Exception as exc:  # noqa: BLE001 - peer bytes: any decoder error is theirs
                raise BadPeerData(f"block {number}: {type(exc).__name__}: {exc}") from None
            if block.header.block_number != number:
                raise BadPeerData(f"asked for block {number}, got {block.header.block_number}")
            if certificate.height != number:
                raise BadPeerData(f"certificate for height {certificate.height} with block {number}")
            assert self.validators is not None
            try:
                certificate.verify(
                    self.chain.chain_id, self.validators.addresses, block.header.hash
                )
            except InvalidCertificateError as exc:
                raise BadPeerData(f"block {number}: {exc}") from None
            out.append((block, certificate_bytes, receipts))
        return out
