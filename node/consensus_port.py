"""The network port consensus declares (`consensus.engine.ConsensusNetwork`), over the
node's libp2p service: the consensus gossip topic, peers, penalties and block sync.

The translation lives here, in the wiring, so neither stage imports the other: consensus
answers with its own `Verdict` and raises its own `PeerRequestFailed`; p2p keeps its own.
"""

from __future__ import annotations

from typing import Any

from consensus.engine import (
    BlocksServer,
    MessageHandler,
    PeerRequestFailed,
    StatusServer,
    Verdict,
)
from p2p import gossip
from p2p.service import P2PService
from p2p.sync import SyncError

_VERDICTS = {
    Verdict.ACCEPT: gossip.Verdict.ACCEPT,
    Verdict.IGNORE: gossip.Verdict.IGNORE,
    Verdict.REJECT: gossip.Verdict.REJECT,
}


class P2PConsensusPort:
    """`consensus.engine.ConsensusNetwork` over a `P2PService`."""

    def __init__(self, p2p: P2PService) -> None:
        self.p2p = p2p

    def on_message(self, handler: MessageHandler) -> None:
        self.p2p.on_consensus(lambda payload, peer: _VERDICTS[handler(payload, peer)])

    async def publish(self, payload: bytes) -> None:
        await self.p2p.publish_consensus(payload)

    def peers(self) -> list[Any]:
        return self.p2p.usable_peers()

    def penalize(self, peer: Any, reason: str) -> None:
        self.p2p.penalties.record(peer, reason)

    def serve_sync(self, status: StatusServer, blocks: BlocksServer) -> None:
        self.p2p.serve_sync(status, blocks)

    async def request_status(self, peer: Any) -> bytes:
        try:
            return await self.p2p.request_status(peer)
        except SyncError as exc:
            raise PeerRequestFailed(str(exc)) from exc

    async def request_blocks(self, peer: Any, first: int, count: int) -> list[bytes]:
        try:
            return await self.p2p.request_blocks(peer, first, count)
        except SyncError as exc:
            raise PeerRequestFailed(str(exc)) from exc
