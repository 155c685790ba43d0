"""Block-sync request/response protocol (``/<network>/sync/1``, default ``/laminar/sync/1``).

One request per stream, each direction one varint-length-prefixed frame holding one
envelope (p2p/codec.py), on top of py-libp2p's ``RequestResponse`` helper (which
enforces frame sizes, a per-request timeout and a cap on concurrent inbound requests):

    STATUS_REQUEST  ()                       -> STATUS_RESPONSE (opaque bytes) | ERROR
    BLOCKS_REQUEST  RLP[from_height, count]  -> BLOCKS_RESPONSE RLP[block bytes...] | ERROR

This layer is transport only: blocks and status are opaque bytes produced by handlers
the node registers. The server clamps ``count`` to ``Caps.max_blocks_per_request`` and
stops adding blocks before ``Caps.max_blocks_response_size``; the client may therefore
get fewer blocks than it asked for (and asks again from where it stopped). A handler
that raises produces an ERROR response; the server keeps serving.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.request_response import (
    BytesCodec,
    RequestContext,
    RequestResponse,
    RequestResponseConfig,
    RequestResponseError,
)

from p2p import codec
from p2p.codec import ErrorCode, Kind
from p2p.config import Caps
from p2p.gossip import PeerPenalties

log = logging.getLogger(__name__)

StatusHandler = Callable[[], Awaitable[bytes]]
BlocksHandler = Callable[[int, int], Awaitable[list[bytes]]]


class SyncError(Exception):
    """A sync request failed (transport, timeout, remote error or bad response)."""


class RemoteError(SyncError):
    """The peer answered with an ERROR envelope."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"peer error {code}: {message}")
        self.code = code
        self.message = message


class SyncProtocol:
    def __init__(
        self, host: IHost, protocol_id: str, caps: Caps, penalties: PeerPenalties
    ) -> None:
        self.host = host
        self.protocol_id = TProtocol(protocol_id)
        self.caps = caps
        self.penalties = penalties
        self._rr = RequestResponse(host)
        self._codec = BytesCodec()
        request_limit = codec.max_envelope_size((Kind.STATUS_REQUEST, Kind.BLOCKS_REQUEST), caps)
        response_limit = codec.max_envelope_size(
            (Kind.STATUS_RESPONSE, Kind.BLOCKS_RESPONSE, Kind.ERROR), caps
        )
        self._server_config = RequestResponseConfig(
            timeout=caps.sync_request_timeout,
            max_request_size=request_limit,
            max_response_size=response_limit,
            max_concurrent_inbound=caps.max_concurrent_sync_inbound,
        )
        self._client_config = self._server_config
        self.status_handler: StatusHandler | None = None
        self.blocks_handler: BlocksHandler | None = None
        self.served = 0
        self.handler_errors = 0
        self.bad_requests = 0

    # -- server -------------------------------------------------------------------

    def install(self) -> None:
        self._rr.set_handler(self.protocol_id, self._serve, self._codec, self._server_config)

    async def _serve(self, request: bytes, ctx: RequestContext) -> bytes:
        peer = ctx.peer_id
        if self.penalties.is_banned(peer):
            return codec.encode_error(ErrorCode.UNAVAILABLE, "banned", self.caps)
        try:
            envelope = codec.decode(
                request, self.caps, expected=(Kind.STATUS_REQUEST, Kind.BLOCKS_REQUEST)
            )
            if envelope.kind == Kind.BLOCKS_REQUEST:
                from_height, count = codec.decode_blocks_request(envelope.payload)
        except codec.DecodeError as exc:
            self.bad_requests += 1
            log.info("bad sync request from %s: %s", peer, exc)
            self.penalties.record(peer, exc.reason)
            return codec.encode_error(ErrorCode.BAD_REQUEST, exc.reason, self.caps)
        try:
            if envelope.kind == Kind.STATUS_REQUEST:
                return await self._serve_status()
            return await self._serve_blocks(from_height, count)
        except Exception as exc:  # noqa: BLE001 - the server must survive handler bugs
            self.handler_errors += 1
            log.exception("sync handler failed for request from %s", peer)
            return codec.encode_error(ErrorCode.INTERNAL, type(exc).__name__, self.caps)
        finally:
            self.served += 1

    async def _serve_status(self) -> bytes:
        if self.status_handler is None:
            return codec.encode_error(ErrorCode.UNAVAILABLE, "no status handler", self.caps)
        status = await self.status_handler()
        if not isinstance(status, (bytes, bytearray)) or len(status) > self.caps.max_status_size:
            log.error("status handler returned a non-bytes or oversized value")
            return codec.encode_error(ErrorCode.TOO_LARGE, "status", self.caps)
        return codec.encode(Kind.STATUS_RESPONSE, bytes(status), self.caps)

    async def _serve_blocks(self, from_height: int, count: int) -> bytes:
        if self.blocks_handler is None:
            return codec.encode_error(ErrorCode.UNAVAILABLE, "no blocks handler", self.caps)
        count = min(count, self.caps.max_blocks_per_request)
        if count == 0:
            return codec.encode_blocks_response([], self.caps)
        blocks = await self.blocks_handler(from_height, count)
        out: list[bytes] = []
        total = 16  # rough RLP list-header allowance
        for block in list(blocks)[:count]:
            if not isinstance(block, (bytes, bytearray)):
                raise TypeError("blocks handler must return a list of bytes")
            if len(block) > self.caps.max_block_size:
                log.error("block of %d bytes exceeds max_block_size; truncating", len(block))
                break
            total += len(block) + 9
            if total > self.caps.max_blocks_response_size:
                break
            out.append(bytes(block))
        if not out and blocks:
            return codec.encode_error(ErrorCode.TOO_LARGE, "block exceeds caps", self.caps)
        return codec.encode_blocks_response(out, self.caps)

    # -- client -------------------------------------------------------------------

    async def _request(self, peer: ID, request: bytes, expected: Kind) -> bytes:
        try:
            raw = await self._rr.send_request(
                peer, [self.protocol_id], request, self._codec, self._client_config
            )
        except RequestResponseError as exc:
            raise SyncError(f"sync request to {peer} failed: {type(exc).__name__}: {exc}") from exc
        try:
            envelope = codec.decode(raw, self.caps, expected=(expected, Kind.ERROR))
            if envelope.kind == Kind.ERROR:
                code, message = codec.decode_error(envelope.payload)
        except codec.DecodeError as exc:
            self.penalties.record(peer, exc.reason)
            raise SyncError(f"bad sync response from {peer}: {exc}") from exc
        if envelope.kind == Kind.ERROR:
            raise RemoteError(code, message)
        return envelope.payload

    async def request_status(self, peer: ID) -> bytes:
        request = codec.encode(Kind.STATUS_REQUEST, b"", self.caps)
        return await self._request(peer, request, Kind.STATUS_RESPONSE)

    async def request_blocks(self, peer: ID, from_height: int, count: int) -> list[bytes]:
        count = min(count, self.caps.max_blocks_per_request)
        if count <= 0:
            return []
        request = codec.encode_blocks_request(from_height, count, self.caps)
        payload = await self._request(peer, request, Kind.BLOCKS_RESPONSE)
        try:
            return codec.decode_blocks_response(payload, self.caps, count)
        except codec.DecodeError as exc:
            self.penalties.record(peer, exc.reason)
            raise SyncError(f"bad blocks response from {peer}: {exc}") from exc
