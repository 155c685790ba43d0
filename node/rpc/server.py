"""JSON-RPC 2.0 transport: HTTP + WebSocket on one port, served by hypercorn on trio.

This module knows nothing about Ethereum except ``eth_subscribe`` /
``eth_unsubscribe``, which are handled by the WebSocket layer through a
:class:`~node.rpc.subscriptions.SubscriptionHub`.

Usage::

    methods = Methods()
    methods.register("eth_chainId", eth_chain_id)       # async def eth_chain_id() -> str
    hub = SubscriptionHub(); hub.register_kind("newHeads")
    cfg = RpcServerConfig(host="127.0.0.1", port=8545)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_rpc, cfg, methods, hub)
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from node.rpc.errors import (
    INTERNAL_ERROR,
    RpcError,
    internal_error,
    invalid_params,
    invalid_request,
    limit_exceeded,
    method_not_found,
    notifications_not_supported,
    parse_error,
    server_error,
)
from node.rpc.subscriptions import Subscription, SubscriptionHub

if TYPE_CHECKING:
    # trio.TaskStatus is hidden from mypy by trio-typing's stubs: see consensus/engine.py.
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]

METRICS_PATH = "/metrics"
METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"  # Prometheus text format
ACCEPTED_CONTENT_TYPES = ("application/json", "application/json-rpc", "application/jsonrequest")
SUBSCRIBE = "eth_subscribe"
UNSUBSCRIBE = "eth_unsubscribe"


@dataclass
class RpcServerConfig:
    host: str = "127.0.0.1"
    port: int = 8545  # 0 = pick a free port (serve_rpc reports the real one)
    path: str = "/"
    max_body_bytes: int = 5 * 1024 * 1024
    max_batch: int = 100
    # "*" or a list of allowed origins; applies to CORS headers and to the
    # WebSocket Origin check (browsers only; requests without Origin pass).
    cors_origins: str | Sequence[str] = "*"
    ws_max_message_bytes: int = 5 * 1024 * 1024
    max_ws_connections: int = 256
    max_subscriptions_per_connection: int = 128
    ws_send_queue_size: int = 1024  # messages; a full queue on notify drops the connection
    ws_max_inflight_per_connection: int = 16  # concurrent requests per WS connection
    access_log: bool = False
    graceful_timeout: float = 2.0
    # Arrays/objects nested deeper than this are refused before parsing. Real requests
    # nest under 10 levels (eth_simulateV1 in a batch is the deepest); a body of 100,000
    # `[` would otherwise overrun the C parser's stack and kill the process.
    max_json_depth: int = 128


# --------------------------------------------------------------------------
# Method registry
# --------------------------------------------------------------------------


@dataclass
class _Entry:
    handler: Callable[..., Any]
    signature: inspect.Signature | None
    min_args: int
    max_args: int | None  # None = *args
    # The method's batch form (see `Methods.register`), or None.
    many: Callable[[list[list[Any]]], Awaitable[list[Any]]] | None = None


def _arity(sig: inspect.Signature | None) -> tuple[int, int | None]:
    if sig is None:
        return 0, None
    min_args = 0
    max_args: int | None = 0
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            assert max_args is not None
            max_args += 1
            if p.default is p.empty:
                min_args = max_args
        elif p.kind is p.VAR_POSITIONAL:
            max_args = None
    return min_args, max_args


class Methods:
    """Registry of JSON-RPC methods: name -> ``async def handler(*params)``."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        # Told of every call: (method, failed) (the node's metrics).
        self.observers: list[Callable[[str, bool], None]] = []

    def register(
        self, name: str, handler: Callable[..., Any] | None = None,
        many: Callable[[list[list[Any]]], Awaitable[list[Any]]] | None = None,
    ):
        """Register ``handler`` for ``name``; usable as ``@methods.register("x")`` too.

        Params of the JSON-RPC ``params`` array are passed positionally; missing
        trailing params fall back to the handler's defaults. Sync handlers are
        allowed (run inline on the event loop: keep them quick).

        ``many``, the batch form: ``await many([args, ...])`` answers consecutive calls of
        the method in a JSON-RPC batch at once, one result or RpcError per call, exactly
        as the calls one after the other would (eth_sendRawTransaction checks them all
        in worker processes first). The arity is checked per call before it.
        """
        if handler is None:
            return lambda h: self.register(name, h, many)
        try:
            sig: inspect.Signature | None = inspect.signature(handler)
        except (TypeError, ValueError):
            sig = None
        lo, hi = _arity(sig)
        self._entries[name] = _Entry(handler, sig, lo, hi, many)
        return handler

    def has_batch_form(self, name: str) -> bool:
        entry = self._entries.get(name)
        return entry is not None and entry.many is not None

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    async def call(self, name: str, params: Any) -> Any:
        """Invoke ``name``; raises RpcError for every failure (never anything else
        except trio cancellation)."""
        try:
            result = await self._call(name, params)
        except RpcError:
            self._observe(name, failed=True)
            raise
        self._observe(name, failed=False)
        return result

    def _observe(self, name: str, failed: bool) -> None:
        for observer in self.observers:
            try:
                observer(name, failed)
            except Exception:  # an observer's bug must not fail the call
                log.exception("RPC call observer failed")

    async def call_many(self, name: str, params_list: list[Any]) -> list[Any]:
        """Calls of ``name`` (which has a batch form) with each of ``params_list``: one
        result or RpcError per call, in order."""
        entry = self._entries[name]
        assert entry.many is not None, f"{name} has no batch form"
        outcomes: list[Any] = [None] * len(params_list)
        positions: list[int] = []
        args_list: list[list[Any]] = []
        for position, params in enumerate(params_list):
            try:
                args_list.append(self._checked_args(entry, params))
                positions.append(position)
            except RpcError as err:
                outcomes[position] = err
        try:
            results = await entry.many(args_list) if args_list else []
        except RpcError as err:
            results = [err] * len(args_list)
        except Exception as exc:
            log.exception("RPC batch handler %s failed", name)
            results = [_internal(exc)] * len(args_list)
        for position, result in zip(positions, results):
            outcomes[position] = result
        for outcome in outcomes:
            self._observe(name, failed=isinstance(outcome, RpcError))
        return outcomes

    def _checked_args(self, entry: _Entry, params: Any) -> list[Any]:
        if params is None:
            args: list[Any] = []
        elif isinstance(params, list):
            args = params
        else:
            raise invalid_params("non-array args")
        n = len(args)
        if n < entry.min_args:
            raise invalid_params(f"missing value for required argument {n}")
        if entry.max_args is not None and n > entry.max_args:
            raise invalid_params(f"too many arguments, want at most {entry.max_args}")
        if entry.signature is not None:
            try:
                entry.signature.bind(*args)
            except TypeError as exc:
                raise invalid_params(f"invalid arguments: {exc}") from None
        return args

    async def _call(self, name: str, params: Any) -> Any:
        entry = self._entries.get(name)
        if entry is None:
            raise method_not_found(name)
        args = self._checked_args(entry, params)
        try:
            result = entry.handler(*args)
            if inspect.isawaitable(result):
                result = await result
        except RpcError:
            raise
        except Exception as exc:
            log.exception("RPC handler %s failed", name)
            raise _internal(exc) from None
        return result


def _internal(exc: BaseException) -> RpcError:
    text = str(exc)
    msg = f"internal error: {type(exc).__name__}" + (f": {text}" if text else "")
    if len(msg) > 200:
        msg = msg[:197] + "..."
    return RpcError(INTERNAL_ERROR, msg)


# --------------------------------------------------------------------------
# JSON-RPC 2.0 dispatch
# --------------------------------------------------------------------------


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _error_obj(id_: Any, err: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "error": err.to_json()}


def _encode_error(id_: Any, err: RpcError) -> str:
    try:
        return _dumps(_error_obj(id_, err))
    except (TypeError, ValueError):  # unserialisable error data: drop it
        log.error("RpcError data is not JSON-serialisable: %r", err)
        return _dumps(_error_obj(id_, RpcError(err.code, err.message)))


def _request_error(req: Any) -> str | None:
    """The encoded error answer of a malformed request object, None for a good one."""
    if not isinstance(req, dict):
        return _dumps(_error_obj(None, invalid_request()))
    id_ = req.get("id")
    if "id" in req and not _valid_id(id_):
        return _dumps(_error_obj(None, invalid_request("invalid request id")))
    if req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
        return _dumps(_error_obj(id_, invalid_request()))
    params = req.get("params")
    if params is not None and not isinstance(params, (list, dict)):
        return _dumps(_error_obj(id_, invalid_request("params must be an array")))
    return None


def _valid_id(id_: Any) -> bool:
    """JSON-RPC ids are strings, numbers or null; 1e400 and NaN parse as floats that no
    JSON encoder can send back, so they are invalid ids too."""
    if isinstance(id_, float):
        return math.isfinite(id_)
    return id_ is None or (isinstance(id_, (str, int)) and not isinstance(id_, bool))


# A JSON string: quote, then runs of plain characters and backslash escapes, then quote.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
# Depth does not care which kind of bracket: objects count as arrays (the parser itself
# refuses mismatched pairs), so one replace peels exactly one level.
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
_BRACKET_RUNS = re.compile(rb"(\[+)|\]+")
# Peel innermost pairs while a pass removes at least this share of what is left; then
# walk the runs of openers and closers (few by then) to find the deepest point.
_PEEL_WORTHWHILE = 0.1


class RequestTooDeep(Exception):
    """The message nests arrays/objects deeper than the server accepts."""


def json_depth(raw: bytes) -> int:
    """Deepest nesting of arrays/objects in ``raw`` (exact for valid JSON), in C-speed
    passes: strings cut out, brackets kept, innermost pairs peeled a level a pass while
    that pays, then one walk over the remaining runs of openers and closers."""
    brackets = _JSON_STRING.sub(b"", raw).translate(_AS_SQUARE, _NOT_BRACKETS)
    peeled_levels = 0
    while brackets:
        peeled = brackets.replace(b"[]", b"")
        removed = len(brackets) - len(peeled)
        if removed == 0:
            break
        peeled_levels += 1
        brackets = peeled
        if removed < _PEEL_WORTHWHILE * (len(peeled) + removed):
            break
    depth = deepest = 0
    for run in _BRACKET_RUNS.finditer(brackets):
        length = run.end() - run.start()
        if run.group(1) is not None:
            depth += length
            deepest = max(deepest, depth)
        else:
            depth -= length
    return peeled_levels + deepest


def check_json_depth(raw: bytes, limit: int) -> None:
    """Raise RequestTooDeep when ``raw`` nests deeper than ``limit``; before the C
    parser runs, which would overrun its stack on a nesting bomb."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    if json_depth(raw) > limit:
        raise RequestTooDeep(f"request nesting too deep (max {limit} levels)")


@dataclass
class _CallContext:
    ws: _WsConnection | None = None
    # subscriptions created while handling this message; activated after the
    # response is queued so no notification precedes the eth_subscribe reply.
    new_subscriptions: list[Subscription] = field(default_factory=list)
    too_deep: bool = False  # refused unparsed as a nesting bomb (HTTP answers 400)


class Dispatcher:
    """Transport-independent JSON-RPC 2.0 processing of one message (single or batch)."""

    def __init__(self, config: RpcServerConfig, methods: Methods, hub: SubscriptionHub | None):
        self.config = config
        self.methods = methods
        self.hub = hub

    async def handle_raw(self, raw: bytes | str, ctx: _CallContext | None = None) -> str | None:
        """Return the encoded response, or None when there is nothing to send
        (notifications only)."""
        ctx = ctx or _CallContext()
        try:
            msg = self.decode(raw)
        except RequestTooDeep as exc:
            ctx.too_deep = True
            return _dumps(_error_obj(None, invalid_request(str(exc))))
        except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
            return _dumps(_error_obj(None, parse_error()))
        if isinstance(msg, list):
            if not msg:
                return _dumps(_error_obj(None, invalid_request("empty batch")))
            if len(msg) > self.config.max_batch:
                # geth: a one-element batch carrying the error, with the first call's id
                first_id = next(
                    (m["id"] for m in msg if isinstance(m, dict) and "id" in m and _valid_id(m["id"])),
                    None,
                )
                err = invalid_request(f"batch too large (max {self.config.max_batch})")
                return "[" + _dumps(_error_obj(first_id, err)) + "]"
            parts: list[str] = []
            index = 0
            while index < len(msg):  # sequential, like geth: later calls may depend on earlier ones
                run = self._batch_form_run(msg, index)
                if len(run) > 1:
                    answers = await self._handle_run(run)
                    index += len(run)
                else:
                    answers = [await self._handle_one(msg[index], ctx)]
                    index += 1
                parts.extend(part for part in answers if part is not None)
            if not parts:
                return None
            return "[" + ",".join(parts) + "]"
        return await self._handle_one(msg, ctx)

    def decode(self, raw: bytes | str) -> Any:
        """Parse one message; RequestTooDeep before the parser sees a nesting bomb."""
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
        check_json_depth(data, self.config.max_json_depth)
        return json.loads(data)

    def _batch_form_run(self, batch: list[Any], start: int) -> list[dict[str, Any]]:
        """The well-formed calls from `start` on that name one method with a batch form
        (`Methods.register(many=...)`), for one call of it."""
        run: list[dict[str, Any]] = []
        for req in batch[start:]:
            if _request_error(req) is not None:
                break
            method = req["method"]
            if not self.methods.has_batch_form(method) or (run and method != run[0]["method"]):
                break
            run.append(req)
        return run

    async def _handle_run(self, run: list[dict[str, Any]]) -> list[str | None]:
        method = run[0]["method"]
        outcomes = await self.methods.call_many(method, [req.get("params") for req in run])
        answers = []
        for req, outcome in zip(run, outcomes):
            has_id = "id" in req
            if isinstance(outcome, RpcError):
                answers.append(_encode_error(req.get("id"), outcome) if has_id else None)
            else:
                answers.append(self._encode_result(req.get("id"), method, outcome) if has_id else None)
        return answers

    async def _handle_one(self, req: Any, ctx: _CallContext) -> str | None:
        error = _request_error(req)
        if error is not None:
            return error
        has_id = "id" in req
        id_ = req.get("id")
        method = req["method"]
        try:
            result = await self._call(method, req.get("params"), ctx)
        except RpcError as err:
            return _encode_error(id_, err) if has_id else None
        except Exception as exc:  # a bug of ours must not become HTTP 500 / close 1011
            log.exception("RPC method %s failed outside its handler", method)
            return _encode_error(id_, _internal(exc)) if has_id else None
        if not has_id:
            return None
        return self._encode_result(id_, method, result)

    @staticmethod
    def _encode_result(id_: Any, method: str, result: Any) -> str:
        try:
            return _dumps({"jsonrpc": "2.0", "id": id_, "result": result})
        except (TypeError, ValueError) as exc:
            log.error("RPC method %s returned an unserialisable result: %r", method, exc)
            return _dumps(_error_obj(id_, internal_error("internal error: unserialisable result")))

    async def _call(self, method: str, params: Any, ctx: _CallContext) -> Any:
        if method == SUBSCRIBE or method == UNSUBSCRIBE:
            if ctx.ws is None:
                raise notifications_not_supported()
            if self.hub is None:
                raise method_not_found(method)
            if params is None:
                params = []
            if not isinstance(params, list):
                raise invalid_params("non-array args")
            if method == SUBSCRIBE:
                if not params:
                    raise invalid_params("missing value for required argument 0")
                sub = self.hub.subscribe(
                    params[0],
                    params[1:],
                    ctx.ws,
                    max_per_sink=self.config.max_subscriptions_per_connection,
                )
                ctx.new_subscriptions.append(sub)
                return sub.id
            if len(params) != 1:
                raise invalid_params(
                    "missing value for required argument 0"
                    if not params
                    else "too many arguments, want at most 1"
                )
            if not self.hub.unsubscribe(params[0], sink=ctx.ws):
                raise server_error("subscription not found")
            return True
        return await self.methods.call(method, params)


# --------------------------------------------------------------------------
# ASGI application
# --------------------------------------------------------------------------


def _header(scope: dict, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return v.decode("latin-1")
    return None


class _WsConnection:
    """One WebSocket connection: reader loop, per-request tasks, bounded writer."""

    def __init__(self, app: RpcApp) -> None:
        self.app = app
        cfg = app.config
        self._send_ch, self._recv_ch = trio.open_memory_channel[str](cfg.ws_send_queue_size)
        self._closed = False
        self.overflowed = False
        self._scope: trio.CancelScope | None = None

    # SubscriptionSink
    def deliver(self, notification_json: str) -> bool:
        if self._closed:
            return False
        try:
            self._send_ch.send_nowait(notification_json)
            return True
        except trio.WouldBlock:
            log.warning("WebSocket client too slow (send queue full); dropping connection")
            self.overflowed = True
            self._shutdown()
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._shutdown()
            return False

    def _shutdown(self) -> None:
        self._closed = True
        if self.app.hub is not None:
            self.app.hub.drop_sink(self)
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, receive, send) -> None:
        sem = trio.Semaphore(self.app.config.ws_max_inflight_per_connection)
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                nursery.start_soon(self._writer, send)
                while not self._closed:
                    event = await receive()
                    etype = event["type"]
                    if etype == "websocket.disconnect":
                        break
                    if etype != "websocket.receive":
                        continue
                    data = event.get("text")
                    if data is None:
                        data = event.get("bytes") or b""
                    await sem.acquire()
                    nursery.start_soon(self._handle, data, sem)
                nursery.cancel_scope.cancel()
        finally:
            self._shutdown()
            self._send_ch.close()

    async def _handle(self, data: str | bytes, sem: trio.Semaphore) -> None:
        try:
            ctx = _CallContext(ws=self)
            reply = await self.app.dispatcher.handle_raw(data, ctx)
            if reply is not None:
                await self._send_ch.send(reply)  # backpressure for request/response
            if self.app.hub is not None:
                for sub in ctx.new_subscriptions:
                    self.app.hub.activate(sub)
        finally:
            sem.release()

    async def _writer(self, send) -> None:
        async for text in self._recv_ch:
            await send({"type": "websocket.send", "text": text})


class RpcApp:
    """Hand-written ASGI app: POST/GET/OPTIONS on ``config.path`` plus WebSocket."""

    def __init__(
        self, config: RpcServerConfig, methods: Methods, hub: SubscriptionHub | None,
        metrics: Callable[[], bytes] | None = None,
    ):
        self.config = config
        self.hub = hub
        self.metrics = metrics  # GET METRICS_PATH: Prometheus text (None: 404)
        self.dispatcher = Dispatcher(config, methods, hub)
        self.ws_connections = 0
        origins = config.cors_origins
        if isinstance(origins, str):
            origins = [o.strip() for o in origins.split(",") if o.strip()]
        self._any_origin = "*" in origins
        self._origins = frozenset(origins)

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- CORS -------------------------------------------------------------

    def _origin_allowed(self, origin: str | None) -> bool:
        return origin is None or self._any_origin or origin in self._origins

    def _cors_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        if self._any_origin:
            return [(b"access-control-allow-origin", b"*")]
        if origin is not None and origin in self._origins:
            return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        return []

    # ---- HTTP -------------------------------------------------------------

    async def _respond(self, send, status: int, body: bytes, ctype: bytes, extra=()) -> None:
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _http(self, scope, receive, send) -> None:
        origin = _header(scope, b"origin")
        cors = self._cors_headers(origin)
        method = scope["method"]
        text = b"text/plain; charset=utf-8"
        jtype = b"application/json"
        if scope["path"] == METRICS_PATH and self.metrics is not None \
                and scope["path"] != self.config.path:
            if method not in ("GET", "HEAD"):
                await self._respond(send, 405, b"method not allowed\n", text,
                                    cors + [(b"allow", b"GET")])
                return
            body = self.metrics()
            await self._respond(send, 200, b"" if method == "HEAD" else body,
                                METRICS_CONTENT_TYPE, cors)
            return
        if scope["path"] != self.config.path:
            await self._respond(send, 404, b"not found\n", text, cors)
            return
        if method == "OPTIONS":
            headers = cors + [
                (b"access-control-allow-methods", b"POST, GET, OPTIONS"),
                (b"access-control-allow-headers", b"content-type"),
                (b"access-control-max-age", b"600"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if method in ("GET", "HEAD"):
            body = b"" if method == "HEAD" else (
                b"Laminar JSON-RPC endpoint: POST JSON-RPC 2.0 or connect via WebSocket\n"
            )
            await self._respond(send, 200, body, text, cors)
            return
        if method != "POST":
            await self._respond(
                send, 405, b"method not allowed\n", text, cors + [(b"allow", b"POST, GET, OPTIONS")]
            )
            return

        ctype = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
        if ctype not in ACCEPTED_CONTENT_TYPES:
            body = _dumps(_error_obj(None, invalid_request(
                "invalid content type, only application/json is supported"))).encode()
            await self._respond(send, 415, body, jtype, cors)
            return

        limit = self.config.max_body_bytes
        too_large = _dumps(_error_obj(None, limit_exceeded(
            f"request body too large (max {limit} bytes)"))).encode()
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await self._respond(send, 413, too_large, jtype, cors + [(b"connection", b"close")])
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._respond(send, 413, too_large, jtype, cors + [(b"connection", b"close")])
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break

        ctx = _CallContext()
        reply = await self.dispatcher.handle_raw(b"".join(chunks), ctx)
        # Only notifications: geth answers 200 with an empty body.
        body = reply.encode() if reply is not None else b""
        await self._respond(send, 400 if ctx.too_deep else 200, body, jtype, cors)

    # ---- WebSocket --------------------------------------------------------

    async def _websocket(self, scope, receive, send) -> None:
        msg = await receive()
        if msg["type"] != "websocket.connect":
            return
        origin = _header(scope, b"origin")
        if scope["path"] != self.config.path or not self._origin_allowed(origin):
            await send({"type": "websocket.close", "code": 1008})  # -> HTTP 403
            return
        if self.ws_connections >= self.config.max_ws_connections:
            log.warning("rejecting WebSocket connection: limit %d reached", self.config.max_ws_connections)
            await send({"type": "websocket.close", "code": 1013})  # -> HTTP 403
            return
        self.ws_connections += 1
        conn = _WsConnection(self)
        try:
            await send({"type": "websocket.accept"})
            await conn.run(receive, send)
            if conn.overflowed:
                with trio.move_on_after(1.0):
                    await send({"type": "websocket.close", "code": 1008, "reason": "send queue overflow"})
        finally:
            self.ws_connections -= 1


# --------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------


def _hypercorn_config(config: RpcServerConfig) -> HypercornConfig:
    hc = HypercornConfig()
    host = config.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    hc.bind = [f"{host}:{config.port}"]
    hc.accesslog = logging.getLogger("hypercorn.access") if config.access_log else None
    # A Logger instance is used as-is (no handler added, no level forced):
    # "Running on ..." stays at INFO, errors propagate to the app's logging.
    hc.errorlog = logging.getLogger(__name__ + ".hypercorn")
    hc.websocket_max_message_size = config.ws_max_message_bytes
    hc.graceful_timeout = config.graceful_timeout
    hc.include_server_header = False
    return hc


class RpcBindError(OSError):
    """The JSON-RPC address cannot be served (in use, not local, ...); names the address."""


def _first_reason(group: BaseExceptionGroup) -> object:
    """The first OSError's reason ("Address already in use") inside nested groups."""
    cause: BaseException = group
    while isinstance(cause, BaseExceptionGroup):
        cause = cause.exceptions[0]
    return cause.strerror if isinstance(cause, OSError) and cause.strerror else cause


def _port_from_bind(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1].rstrip("/"))


async def serve_rpc(
    config: RpcServerConfig,
    methods: Methods,
    subscriptions: SubscriptionHub | None = None,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    metrics: Callable[[], bytes] | None = None,
    task_status: TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve JSON-RPC over HTTP and WebSocket until cancelled (or until
    ``shutdown_trigger()`` returns, for a graceful stop).

    Use ``port = await nursery.start(serve_rpc, cfg, methods, hub)``; the
    reported port is the real bound one (useful with ``cfg.port = 0``).
    """
    app = RpcApp(config, methods, subscriptions, metrics)
    hc = _hypercorn_config(config)
    async with trio.open_nursery() as nursery:
        try:
            binds = await nursery.start(
                partial(hypercorn_serve, app, hc, shutdown_trigger=shutdown_trigger, mode="asgi")
            )
        except* OSError as failed:  # hypercorn's own nurseries may wrap it
            raise RpcBindError(
                f"cannot serve JSON-RPC on {hc.bind[0]}: {_first_reason(failed)}"
                " (is another process using it? choose another --rpc address)"
            ) from None
        port = _port_from_bind(binds[0])
        log.info("JSON-RPC server listening on %s (HTTP + WebSocket)", binds[0])
        task_status.started(port)


__all__ = ["RpcServerConfig", "Methods", "Dispatcher", "RpcApp", "RpcBindError", "serve_rpc"]
