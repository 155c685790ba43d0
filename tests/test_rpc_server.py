"""Transport-layer tests for the JSON-RPC server (HTTP + WebSocket on one port).

Real hypercorn server on 127.0.0.1:0 inside the test's nursery; real clients
(requests, web3.py HTTPProvider, websockets' sync client) run in worker threads.
"""

from __future__ import annotations

import json
from functools import partial
from types import SimpleNamespace

import pytest
import requests
import trio
from hypothesis import given
from hypothesis import strategies as st
from web3 import Web3
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from node.rpc.errors import (
    EXECUTION_REVERTED,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LIMIT_EXCEEDED,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    RpcError,
    execution_reverted,
    invalid_params,
)
from node.rpc.server import Methods, RpcServerConfig, json_depth, serve_rpc
from node.rpc.subscriptions import SubscriptionHub

TIMEOUT = 10


# --------------------------------------------------------------------------
# fixtures / helpers
# --------------------------------------------------------------------------


def make_methods() -> Methods:
    m = Methods()

    async def echo(x):
        return x

    async def add(a, b):
        return a + b

    async def opt(a, b="dflt"):
        return [a, b]

    async def reverts():
        raise execution_reverted(b"\x08\xc3\x79\xa0" + b"\x00" * 4, reason="nope")

    async def boom():
        raise ValueError("kaboom")

    async def unserialisable():
        return object()

    async def chain_id():
        return "0x539"

    async def bad_data():
        raise RpcError(-32000, "bad data", data=object())

    async def sleepy():
        await trio.sleep(0)
        return "zzz"

    m.register("echo", echo)
    m.register("add", add)
    m.register("opt", opt)
    m.register("reverts", reverts)
    m.register("boom", boom)
    m.register("unserialisable", unserialisable)
    m.register("eth_chainId", chain_id)
    m.register("sleepy", sleepy)
    m.register("bad_data", bad_data)

    @m.register("sync_len")
    def sync_len(s):
        return len(s)

    return m


class LogFilter:
    def __init__(self, address=None):
        self.address = address

    def matches(self, log):
        return self.address is None or log["address"] == self.address


def parse_log_filter(*params):
    if not params:
        return LogFilter()
    if len(params) > 1 or not isinstance(params[0], dict):
        raise invalid_params("invalid log filter")
    return LogFilter(params[0].get("address"))


def make_hub() -> SubscriptionHub:
    hub = SubscriptionHub()
    hub.register_kind("newHeads")
    hub.register_kind(
        "logs",
        parse_params=parse_log_filter,
        select=lambda flt, logs: [lg for lg in logs if flt.matches(lg)],
    )
    return hub


async def start_server(nursery, **overrides):
    cfg = RpcServerConfig(host="127.0.0.1", port=0, max_body_bytes=4096, max_batch=5)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    hub = make_hub()
    port = await nursery.start(serve_rpc, cfg, make_methods(), hub)
    return SimpleNamespace(
        port=port,
        url=f"http://127.0.0.1:{port}/",
        ws_url=f"ws://127.0.0.1:{port}/",
        hub=hub,
        cfg=cfg,
    )


@pytest.fixture
async def srv(nursery):
    return await start_server(nursery)


async def post(url, body, *, headers=None, raw=False):
    hdrs = {"Content-Type": "application/json"}
    if headers:
        hdrs.update(headers)
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return await trio.to_thread.run_sync(
        partial(requests.post, url, data=data, headers=hdrs, timeout=TIMEOUT)
    )


async def rpc(url, method, params=None, id_=1):
    req = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        req["params"] = params
    r = await post(url, req)
    assert r.status_code == 200
    return r.json()


class WS:
    """Sync websockets client driven from trio via worker threads."""

    def __init__(self, conn):
        self.conn = conn

    @classmethod
    async def open(cls, url, **kw):
        conn = await trio.to_thread.run_sync(partial(ws_connect, url, open_timeout=TIMEOUT, legacy=True, **kw))
        return cls(conn)

    async def send(self, obj):
        text = obj if isinstance(obj, str) else json.dumps(obj)
        await trio.to_thread.run_sync(self.conn.send, text)

    async def recv(self):
        return json.loads(await trio.to_thread.run_sync(self.conn.recv, TIMEOUT))

    async def call(self, method, params=None, id_=1):
        req = {"jsonrpc": "2.0", "id": id_, "method": method, "params": params or []}
        await self.send(req)
        return await self.recv()

    async def close(self):
        await trio.to_thread.run_sync(self.conn.close)


async def wait_until(pred, timeout=TIMEOUT):
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.01)


# --------------------------------------------------------------------------
# HTTP: JSON-RPC semantics
# --------------------------------------------------------------------------


async def test_single_request_and_field_order(srv):
    r = await post(srv.url, {"jsonrpc": "2.0", "id": 7, "method": "add", "params": [2, 3]})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.text == '{"jsonrpc":"2.0","id":7,"result":5}'
    assert (await rpc(srv.url, "echo", [{"a": [1, "x"]}], id_="abc")) == {
        "jsonrpc": "2.0", "id": "abc", "result": {"a": [1, "x"]},
    }
    # id null is a request (not a notification) and is echoed back
    assert (await rpc(srv.url, "echo", [1], id_=None))["id"] is None
    # params omitted / optional trailing params / sync handler
    assert (await rpc(srv.url, "opt", [1]))["result"] == [1, "dflt"]
    assert (await rpc(srv.url, "sync_len", ["abcd"]))["result"] == 4
    assert (await rpc(srv.url, "eth_chainId"))["result"] == "0x539"


async def test_batch(srv):
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1, 1]},
        {"jsonrpc": "2.0", "method": "echo", "params": ["notification"]},
        {"jsonrpc": "2.0", "id": 2, "method": "nope"},
        {"jsonrpc": "2.0", "id": 3, "method": "sleepy"},
        42,
    ]
    r = await post(srv.url, batch)
    assert r.status_code == 200
    out = r.json()
    assert isinstance(out, list) and len(out) == 4
    assert out[0] == {"jsonrpc": "2.0", "id": 1, "result": 2}
    assert out[1]["id"] == 2 and out[1]["error"]["code"] == METHOD_NOT_FOUND
    assert out[2] == {"jsonrpc": "2.0", "id": 3, "result": "zzz"}
    assert out[3] == {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": "invalid request"}}


async def test_notifications_get_empty_200(srv):
    r = await post(srv.url, {"jsonrpc": "2.0", "method": "echo", "params": [1]})
    assert (r.status_code, r.content) == (200, b"")
    r = await post(srv.url, [{"jsonrpc": "2.0", "method": "echo", "params": [1]},
                             {"jsonrpc": "2.0", "method": "nope"}])
    assert (r.status_code, r.content) == (200, b"")


async def test_parse_error(srv):
    for body in (b'{"jsonrpc": "2.0", "id": 1, "method": ', b"\xff\xfe", b""):
        r = await post(srv.url, body)
        assert r.status_code == 200
        assert r.json() == {"jsonrpc": "2.0", "id": None, "error": {"code": PARSE_ERROR, "message": "parse error"}}


@pytest.mark.parametrize(
    "req, expected_id",
    [
        (42, None),
        ("\"a string\"", None),
        ({"jsonrpc": "1.0", "id": 5, "method": "echo", "params": [1]}, 5),
        ({"id": 5, "method": "echo", "params": [1]}, 5),
        ({"jsonrpc": "2.0", "id": 6}, 6),
        ({"jsonrpc": "2.0", "id": 6, "method": 12}, 6),
        ({"jsonrpc": "2.0", "id": True, "method": "echo", "params": [1]}, None),
        ({"jsonrpc": "2.0", "id": {"x": 1}, "method": "echo", "params": [1]}, None),
        ({"jsonrpc": "2.0", "id": 8, "method": "echo", "params": 3}, 8),
    ],
)
async def test_invalid_request(srv, req, expected_id):
    body = await rpc_raw(srv.url, req)
    assert body["id"] == expected_id
    assert body["error"]["code"] == INVALID_REQUEST


async def rpc_raw(url, req):
    r = await post(url, req)
    assert r.status_code == 200
    return r.json()


async def test_empty_batch(srv):
    body = await rpc_raw(srv.url, [])
    assert body == {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": "empty batch"}}


async def test_batch_cap(srv):
    batch = [{"jsonrpc": "2.0", "method": "echo", "params": [0]}] + [
        {"jsonrpc": "2.0", "id": i, "method": "echo", "params": [i]} for i in range(10, 15)
    ]
    assert len(batch) > srv.cfg.max_batch
    out = await rpc_raw(srv.url, batch)
    assert isinstance(out, list) and len(out) == 1
    assert out[0]["id"] == 10  # like geth: first call's id
    assert out[0]["error"]["code"] == INVALID_REQUEST
    assert "batch too large" in out[0]["error"]["message"]
    # exactly at the cap is fine
    ok = await rpc_raw(srv.url, batch[1:])
    assert [o["result"] for o in ok] == [10, 11, 12, 13, 14]


async def test_unknown_method(srv):
    body = await rpc(srv.url, "eth_nope", [])
    assert body["error"] == {"code": METHOD_NOT_FOUND, "message": "the method eth_nope does not exist/is not available"}


async def test_wrong_arity_and_named_params(srv):
    body = await rpc(srv.url, "add", [1])
    assert body["error"]["code"] == INVALID_PARAMS
    assert "missing value for required argument 1" in body["error"]["message"]
    body = await rpc(srv.url, "add", [1, 2, 3])
    assert body["error"]["code"] == INVALID_PARAMS
    assert "too many arguments, want at most 2" in body["error"]["message"]
    body = await rpc(srv.url, "add")  # params omitted
    assert body["error"]["code"] == INVALID_PARAMS
    body = await rpc(srv.url, "add", {"a": 1, "b": 2})
    assert body["error"] == {"code": INVALID_PARAMS, "message": "non-array args"}


async def test_rpc_error_passthrough_with_data(srv):
    body = await rpc(srv.url, "reverts", [], id_=9)
    assert body == {
        "jsonrpc": "2.0",
        "id": 9,
        "error": {"code": EXECUTION_REVERTED, "message": "execution reverted: nope", "data": "0x08c379a000000000"},
    }


async def test_internal_error_does_not_kill_server(srv):
    body = await rpc(srv.url, "boom")
    assert body["error"]["code"] == INTERNAL_ERROR
    assert "kaboom" in body["error"]["message"]
    body = await rpc(srv.url, "bad_data")
    assert body["error"] == {"code": -32000, "message": "bad data"}
    body = await rpc(srv.url, "unserialisable")
    assert body["error"]["code"] == INTERNAL_ERROR
    assert (await rpc(srv.url, "add", [20, 22]))["result"] == 42


async def test_eth_subscribe_over_http_is_rejected(srv):
    body = await rpc(srv.url, "eth_subscribe", ["newHeads"])
    assert body["error"] == {"code": METHOD_NOT_FOUND, "message": "notifications not supported"}
    body = await rpc(srv.url, "eth_unsubscribe", ["0x00"])
    assert body["error"]["code"] == METHOD_NOT_FOUND


# --------------------------------------------------------------------------
# HTTP: transport
# --------------------------------------------------------------------------


async def test_body_cap_413(srv):
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": ["x" * 5000]})
    r = await post(srv.url, big)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == LIMIT_EXCEEDED
    assert r.headers["access-control-allow-origin"] == "*"
    # chunked body (no content-length) over the cap is refused as well
    def gen():
        for _ in range(10):
            yield b"x" * 1000

    r = await trio.to_thread.run_sync(
        partial(requests.post, srv.url, data=gen(), headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    )
    assert r.status_code == 413
    assert (await rpc(srv.url, "add", [1, 2]))["result"] == 3


async def test_cors_preflight_get_and_methods(srv):
    r = await post(srv.url, {"jsonrpc": "2.0", "id": 1, "method": "echo", "params": [1]},
                   headers={"Origin": "http://example.com"})
    assert r.headers["access-control-allow-origin"] == "*"

    r = await trio.to_thread.run_sync(partial(
        requests.options, srv.url, timeout=TIMEOUT,
        headers={"Origin": "http://example.com", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
    ))
    assert r.status_code in (200, 204)
    assert r.headers["access-control-allow-origin"] == "*"
    assert set(m.strip() for m in r.headers["access-control-allow-methods"].split(",")) >= {"POST", "GET", "OPTIONS"}
    assert "content-type" in r.headers["access-control-allow-headers"].lower()

    r = await trio.to_thread.run_sync(partial(requests.get, srv.url, timeout=TIMEOUT))
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"

    r = await trio.to_thread.run_sync(partial(requests.put, srv.url, data=b"{}", timeout=TIMEOUT))
    assert r.status_code == 405

    r = await post(srv.url, b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415

    r = await trio.to_thread.run_sync(partial(requests.get, srv.url + "elsewhere", timeout=TIMEOUT))
    assert r.status_code == 404


async def test_cors_allow_list(nursery):
    s = await start_server(nursery, cors_origins=["http://good.example"])
    req = {"jsonrpc": "2.0", "id": 1, "method": "echo", "params": [1]}
    r = await post(s.url, req, headers={"Origin": "http://good.example"})
    assert r.headers["access-control-allow-origin"] == "http://good.example"
    r = await post(s.url, req, headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    with pytest.raises(InvalidStatus):
        await WS.open(s.ws_url, origin="http://evil.example")
    ws = await WS.open(s.ws_url, origin="http://good.example")
    assert (await ws.call("echo", [5]))["result"] == 5
    await ws.close()


async def test_web3_http_provider(srv):
    def use_web3():
        w3 = Web3(Web3.HTTPProvider(srv.url))
        resp = w3.provider.make_request("add", [40, 2])
        err = w3.provider.make_request("eth_nope", [])
        return resp, err, w3.eth.chain_id

    resp, err, chain_id = await trio.to_thread.run_sync(use_web3)
    assert resp["result"] == 42
    assert err["error"]["code"] == METHOD_NOT_FOUND
    assert chain_id == 1337


# --------------------------------------------------------------------------
# WebSocket
# --------------------------------------------------------------------------


async def test_ws_request_response(srv):
    ws = await WS.open(srv.ws_url)
    try:
        assert await ws.call("add", [3, 4], id_=1) == {"jsonrpc": "2.0", "id": 1, "result": 7}
        assert (await ws.call("boom", id_=2))["error"]["code"] == INTERNAL_ERROR
        assert (await ws.call("add", [1], id_=3))["error"]["code"] == INVALID_PARAMS
        await ws.send("{not json")
        assert (await ws.recv())["error"]["code"] == PARSE_ERROR
        await ws.send([{"jsonrpc": "2.0", "id": 10, "method": "echo", "params": ["a"]},
                       {"jsonrpc": "2.0", "id": 11, "method": "echo", "params": ["b"]}])
        assert [r["result"] for r in await ws.recv()] == ["a", "b"]
        # a notification produces nothing; the next reply is for the next request
        await ws.send({"jsonrpc": "2.0", "method": "echo", "params": [1]})
        assert (await ws.call("echo", ["after"], id_=12))["result"] == "after"
    finally:
        await ws.close()


async def test_ws_subscribe_new_heads_and_unsubscribe(srv):
    hub = srv.hub
    ws = await WS.open(srv.ws_url)
    try:
        resp = await ws.call("eth_subscribe", ["newHeads"], id_=1)
        sub_id = resp["result"]
        assert isinstance(sub_id, str) and sub_id.startswith("0x") and len(sub_id) == 34
        assert hub.subscription_count("newHeads") == 1

        for n in (1, 2):
            assert hub.publish("newHeads", {"number": hex(n)}) == 1
        for n in (1, 2):
            note = await ws.recv()
            assert note == {
                "jsonrpc": "2.0",
                "method": "eth_subscription",
                "params": {"subscription": sub_id, "result": {"number": hex(n)}},
            }

        assert (await ws.call("eth_unsubscribe", [sub_id], id_=2)) == {"jsonrpc": "2.0", "id": 2, "result": True}
        assert hub.subscription_count() == 0
        assert hub.publish("newHeads", {"number": "0x3"}) == 0
        again = await ws.call("eth_unsubscribe", [sub_id], id_=3)
        assert again["error"] == {"code": SERVER_ERROR, "message": "subscription not found"}
        # nothing was queued after unsubscribe: the next message is a plain reply
        assert (await ws.call("echo", ["x"], id_=4))["result"] == "x"
    finally:
        await ws.close()


async def test_ws_logs_filter_and_errors(srv):
    hub = srv.hub
    ws = await WS.open(srv.ws_url)
    try:
        all_id = (await ws.call("eth_subscribe", ["logs"], id_=1))["result"]
        only_a = (await ws.call("eth_subscribe", ["logs", {"address": "0xaa"}], id_=2))["result"]
        logs = [{"address": "0xaa", "logIndex": "0x0"}, {"address": "0xbb", "logIndex": "0x1"}]
        assert hub.publish("logs", logs) == 3
        got = [await ws.recv() for _ in range(3)]
        assert all(g["method"] == "eth_subscription" for g in got)
        by_sub: dict[str, list] = {}
        for g in got:
            by_sub.setdefault(g["params"]["subscription"], []).append(g["params"]["result"])
        assert by_sub == {all_id: logs, only_a: [logs[0]]}

        bad_kind = await ws.call("eth_subscribe", ["fooBar"], id_=3)
        assert bad_kind["error"]["code"] == INVALID_PARAMS and "fooBar" in bad_kind["error"]["message"]
        bad_filter = await ws.call("eth_subscribe", ["logs", 5], id_=4)
        assert bad_filter["error"]["code"] == INVALID_PARAMS
        no_params = await ws.call("eth_subscribe", [], id_=5)
        assert no_params["error"]["code"] == INVALID_PARAMS
        extra = await ws.call("eth_subscribe", ["newHeads", {"x": 1}], id_=6)
        assert extra["error"]["code"] == INVALID_PARAMS
    finally:
        await ws.close()


async def test_ws_subscription_cannot_be_cancelled_by_other_connection(srv):
    a = await WS.open(srv.ws_url)
    b = await WS.open(srv.ws_url)
    try:
        sub_id = (await a.call("eth_subscribe", ["newHeads"]))["result"]
        resp = await b.call("eth_unsubscribe", [sub_id])
        assert resp["error"]["message"] == "subscription not found"
        assert srv.hub.subscription_count() == 1
    finally:
        await a.close()
        await b.close()


async def test_ws_close_cancels_subscriptions(srv):
    ws = await WS.open(srv.ws_url)
    await ws.call("eth_subscribe", ["newHeads"], id_=1)
    await ws.call("eth_subscribe", ["logs"], id_=2)
    assert srv.hub.subscription_count() == 2
    await ws.close()
    await wait_until(lambda: srv.hub.subscription_count() == 0)
    assert srv.hub.publish("newHeads", {}) == 0


async def test_ws_subscribe_in_batch_reply_precedes_notifications(srv):
    ws = await WS.open(srv.ws_url)
    try:
        await ws.send([{"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]},
                       {"jsonrpc": "2.0", "id": 2, "method": "echo", "params": ["x"]}])
        # published before the reply is necessarily out: buffered, delivered after it
        await wait_until(lambda: srv.hub.subscription_count() == 1)
        srv.hub.publish("newHeads", {"number": "0x1"})
        reply = await ws.recv()
        assert isinstance(reply, list) and reply[1]["result"] == "x"
        note = await ws.recv()
        assert note["params"] == {"subscription": reply[0]["result"], "result": {"number": "0x1"}}
    finally:
        await ws.close()


async def test_ws_slow_client_is_dropped(nursery):
    s = await start_server(nursery, ws_send_queue_size=4)
    ws = await WS.open(s.ws_url)
    await ws.call("eth_subscribe", ["newHeads"])
    # publish is synchronous: the writer cannot drain in between, so the queue overflows
    for i in range(20):
        s.hub.publish("newHeads", {"number": hex(i), "pad": "x" * 100})
    assert s.hub.subscription_count() == 0  # dropped synchronously on overflow

    def drain():
        n = 0
        try:
            while True:
                ws.conn.recv(TIMEOUT)
                n += 1
        except ConnectionClosed:
            return n

    received = await trio.to_thread.run_sync(drain)
    assert received <= 4
    # server still fine
    assert (await rpc(s.url, "add", [1, 1]))["result"] == 2


async def test_ws_message_size_cap(nursery):
    s = await start_server(nursery, ws_max_message_bytes=1024)
    ws = await WS.open(s.ws_url)
    await ws.send({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": ["y" * 2000]})
    with pytest.raises(ConnectionClosed) as info:
        await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    ws2 = await WS.open(s.ws_url)
    assert (await ws2.call("echo", ["small"]))["result"] == "small"
    await ws2.close()


async def test_ws_connection_limit(nursery):
    s = await start_server(nursery, max_ws_connections=1)
    ws = await WS.open(s.ws_url)
    try:
        with pytest.raises(InvalidStatus):
            await WS.open(s.ws_url)
    finally:
        await ws.close()
    # the slot frees up once the first connection is gone
    with trio.fail_after(TIMEOUT):
        while True:
            try:
                ws2 = await WS.open(s.ws_url)
                break
            except InvalidStatus:
                await trio.sleep(0.01)
    assert (await ws2.call("echo", [1]))["result"] == 1
    await ws2.close()


async def test_ws_subscription_limit(nursery):
    s = await start_server(nursery, max_subscriptions_per_connection=2)
    ws = await WS.open(s.ws_url)
    try:
        assert "result" in await ws.call("eth_subscribe", ["newHeads"], id_=1)
        assert "result" in await ws.call("eth_subscribe", ["newHeads"], id_=2)
        third = await ws.call("eth_subscribe", ["newHeads"], id_=3)
        assert third["error"]["code"] == LIMIT_EXCEEDED
    finally:
        await ws.close()


async def test_graceful_shutdown_trigger():
    stop = trio.Event()
    cfg = RpcServerConfig(host="127.0.0.1", port=0)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as n:
            port = await n.start(partial(serve_rpc, cfg, make_methods(), None, shutdown_trigger=stop.wait))
            url = f"http://127.0.0.1:{port}/"
            assert (await rpc(url, "echo", [1]))["result"] == 1
            # without a hub, eth_subscribe on WS is simply not available
            ws = await WS.open(f"ws://127.0.0.1:{port}/")
            assert (await ws.call("eth_subscribe", ["newHeads"]))["error"]["code"] == METHOD_NOT_FOUND
            await ws.close()
            stop.set()
        # serve_rpc returned by itself: the nursery exited without cancellation


# --------------------------------------------------------------------------
# Hub unit behaviour
# --------------------------------------------------------------------------


def test_hub_publish_without_subscribers_is_lazy():
    hub = make_hub()
    calls = []

    def build():
        calls.append(1)
        return {"number": "0x1"}

    assert hub.publish("newHeads", build) == 0
    assert hub.publish("unknownKind", {}) == 0
    assert calls == []


def test_rpc_error_repr_and_json():
    e = RpcError(-32000, "nonce too low")
    assert e.to_json() == {"code": -32000, "message": "nonce too low"}
    assert execution_reverted(b"").to_json() == {"code": 3, "message": "execution reverted"}


# --------------------------------------------------------------------------
# Nesting depth, measured before parsing
# --------------------------------------------------------------------------

_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(alphabet='[]{}"\\ab,:'),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='[]{}"\\a'), inner, max_size=4),
    max_leaves=60,
)


def _reference_depth(value) -> int:
    if isinstance(value, list):
        return 1 + max((_reference_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_reference_depth(v) for v in value.values()), default=0)
    return 0


@given(_json_values)
def test_json_depth_matches_the_parsed_structure(value):
    """Brackets inside strings (escaped quotes included) do not count; both kinds do."""
    assert json_depth(json.dumps(value).encode()) == _reference_depth(value)


def test_json_depth_of_bombs_and_deep_balanced_input():
    assert json_depth(b"[" * 100_000) == 100_000
    assert json_depth(b"[" * 500 + b"]" * 500) == 500
    assert json_depth(b"[{" * 300 + b"}]" * 300) == 600
    assert json_depth(b"[" + b"[]" * 10_000 + b"]") == 2
    assert json_depth(b'["' + b"[" * 1_000 + b'"]') == 1


def test_importing_the_execution_stage_restores_a_recursion_limit_the_c_stack_holds():
    """py_ecc (imported by py-evm) sets 100,000, deep enough for C recursion to overrun
    the stack; py-evm itself needs 12 frames a call level for 1,024 levels."""
    import sys

    import eth

    import execution  # noqa: F401

    assert sys.getrecursionlimit() == eth.EVM_RECURSION_LIMIT
