"""Bad input against a real `laminar node` process: every malformed request and every
rejected transaction gets the right JSON-RPC error, the node stays up, and nothing that
was committed changes.

One node serves the whole module (tests run in file order). The module fixture mines
one transaction first (needed for "nonce too low"), then records a snapshot of the
committed chain (head hash, state root, balances and nonces). From then on only
*rejected* transactions and transactions parked behind a nonce gap (never executable,
so never mined) are sent; the last test checks the node answers and the snapshot is
unchanged.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import pytest
import requests
import rlp
from conftest import DEV_KEYS, start_node
from eth_account import Account
from eth_keys import keys
from eth_keys.exceptions import BadSignature
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import Web3RPCError
from websockets.sync.client import connect as ws_connect

CHAIN_ID = 31337
GWEI = 10**9
BLOCK_GAS_LIMIT = 30_000_000
MAX_TX_BYTES = 128 * 1024
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_BATCH = 100
MAX_NONCE_GAP = 64
HTTP_TIMEOUT = 10
MINE_TIMEOUT_S = 30

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
SERVER_ERROR = -32000
LIMIT_EXCEEDED = -32005

DEV = [Account.from_key(k) for k in DEV_KEYS]
# Everything the barrage could conceivably touch.
WATCHED = [a.address for a in DEV] + ["0x000000000000000000000000000000000000dEaD"]


# ---- helpers ------------------------------------------------------------------------


def post(url: str, body, **kwargs) -> requests.Response:
    if isinstance(body, (bytes, str)):
        return requests.post(
            url, data=body, headers={"Content-Type": "application/json"},
            timeout=HTTP_TIMEOUT, **kwargs,
        )
    return requests.post(url, json=body, timeout=HTTP_TIMEOUT, **kwargs)


def call(url: str, method: str, *params):
    reply = post(url, {"jsonrpc": "2.0", "id": 7, "method": method, "params": list(params)})
    assert reply.status_code == 200, reply.text
    return reply.json()


def result(url: str, method: str, *params):
    reply = call(url, method, *params)
    assert "error" not in reply, reply
    return reply["result"]


def error(url: str, method: str, *params) -> dict:
    reply = call(url, method, *params)
    assert "result" not in reply, f"{method}{params} should fail, got {reply}"
    assert reply["id"] == 7
    return reply["error"]


def sign(key, **fields) -> bytes:
    tx = {
        "type": 2, "chainId": CHAIN_ID, "to": WATCHED[-1], "value": 1, "gas": 21_000,
        "maxFeePerGas": 10 * GWEI, "maxPriorityFeePerGas": 1 * GWEI, "data": b"",
    }
    tx.update(fields)
    tx = {name: value for name, value in tx.items() if value is not None}  # None: leave out
    return bytes(Account.from_key(key).sign_transaction(tx).raw_transaction)


def send(url: str, raw: bytes) -> dict:
    return call(url, "eth_sendRawTransaction", "0x" + raw.hex())


def rejected(url: str, raw: bytes, message_start: str) -> dict:
    """Send `raw`, expect a -32000 rejection whose message starts with `message_start`."""
    reply = send(url, raw)
    assert "result" not in reply, f"accepted, expected {message_start!r}: {reply}"
    err = reply["error"]
    assert err["code"] == SERVER_ERROR, err
    assert err["message"].startswith(message_start), err
    tx_hash = "0x" + keccak(raw).hex()
    assert result(url, "eth_getTransactionByHash", tx_hash) is None, "rejected tx is known"
    return err


@dataclass
class Snapshot:
    head_number: int
    head_hash: str
    state_root: str
    balances: dict[str, str] = field(default_factory=dict)
    nonces: dict[str, str] = field(default_factory=dict)


def snapshot(url: str) -> Snapshot:
    head = result(url, "eth_getBlockByNumber", "latest", False)
    number = head["number"]
    snap = Snapshot(int(number, 16), head["hash"], head["stateRoot"])
    for address in WATCHED:
        snap.balances[address] = result(url, "eth_getBalance", address, number)
        snap.nonces[address] = result(url, "eth_getTransactionCount", address, number)
    return snap


@dataclass
class Env:
    node: object
    url: str
    w3: Web3
    snapshot: Snapshot
    mined_nonce: int  # DEV[0]'s next nonce after the setup tx


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    node = start_node(tmp_path_factory.mktemp("bad-input"))
    try:
        url = node.url
        raw = sign(DEV_KEYS[0], nonce=0)
        tx_hash = result(url, "eth_sendRawTransaction", "0x" + raw.hex())
        deadline = time.monotonic() + MINE_TIMEOUT_S
        while result(url, "eth_getTransactionReceipt", tx_hash) is None:  # poll the live RPC
            assert time.monotonic() < deadline, "setup tx not mined"
        # Nothing valid is in flight from here on: record what is committed.
        yield Env(node, url, Web3(Web3.HTTPProvider(url)), snapshot(url), mined_nonce=1)
    finally:
        node.kill()


# ---- JSON-RPC envelope ------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"jsonrpc": "2.0", "method": "eth_chainId", "id": 1', b"\xff\xfe", b"nul", b""],
)
def test_malformed_json_is_parse_error(env, body):
    reply = post(env.url, body)
    assert reply.status_code == 200
    data = reply.json()
    assert data["error"]["code"] == PARSE_ERROR
    assert data["id"] is None


@pytest.mark.parametrize(
    "body",
    [
        "42", '"eth_chainId"', "null", "true",
        '{"id": 1, "method": "eth_chainId"}',  # no "jsonrpc": "2.0"
        '{"jsonrpc": "2.0", "id": 1}',  # no method
        '{"jsonrpc": "2.0", "id": 1, "method": 5}',
        '{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": "0x1"}',
        '{"jsonrpc": "2.0", "id": {"x": 1}, "method": "eth_chainId"}',
        "[]",
    ],
)
def test_not_a_request_object_is_invalid_request(env, body):
    data = post(env.url, body).json()
    assert data["error"]["code"] == INVALID_REQUEST, data


def test_batch_with_bad_members_answers_each(env):
    data = post(env.url, '[1, {"jsonrpc": "2.0", "id": 2, "method": "eth_chainId"}, "x"]').json()
    assert [item.get("error", {}).get("code") for item in data] == [INVALID_REQUEST, None, INVALID_REQUEST]
    assert data[1] == {"jsonrpc": "2.0", "id": 2, "result": hex(CHAIN_ID)}


def test_unknown_method(env):
    err = error(env.url, "eth_noSuchMethod")
    assert err["code"] == METHOD_NOT_FOUND
    assert "eth_noSuchMethod" in err["message"]
    assert error(env.url, "eth_subscribe", "newHeads")["code"] == METHOD_NOT_FOUND  # HTTP


ADDRESS = DEV[0].address


@pytest.mark.parametrize(
    "method, params, fragment",
    [
        ("eth_getBalance", [], "missing value for required argument 0"),
        ("eth_getTransactionReceipt", [], "missing value"),
        ("eth_blockNumber", [1], "too many arguments"),
        ("eth_getBalance", [ADDRESS, "latest", "extra"], "too many arguments"),
        ("eth_getBalance", [ADDRESS, "0xzz"], "is not hex"),
        ("eth_getBalance", [ADDRESS, "12"], "hex quantity"),
        ("eth_getBalance", [ADDRESS, "lastest"], "hex quantity"),
        ("eth_getBalance", [ADDRESS, 5], "expected a block number"),
        ("eth_getBalance", ["0x1234", "latest"], "20-byte hex address"),
        ("eth_getBalance", [ADDRESS[:-1] + "Z", "latest"], "20-byte hex address"),
        ("eth_getBalance", [12, "latest"], "20-byte hex address"),
        ("eth_getBlockByNumber", ["0x1", "yes"], "true or false"),
        ("eth_getBlockByNumber", ["pendingg", False], "hex quantity"),
        ("eth_getBlockByHash", ["0x1234", False], "32-byte hash"),
        ("eth_getTransactionByHash", ["0x" + "ab" * 31 + "a"], "even number of digits"),
        ("eth_getStorageAt", [ADDRESS, "0x" + "1" * 65, "latest"], "storage slot"),
        ("eth_sendRawTransaction", ["0xzz"], "is not hex"),
        ("eth_sendRawTransaction", ["f86c"], "0x-prefixed hex"),
        ("eth_sendRawTransaction", [{"raw": "0x00"}], "0x-prefixed hex"),
        ("eth_call", ["not an object", "latest"], "expected an object"),
        ("eth_call", [{"to": "0x12", "data": "0x"}, "latest"], "20-byte hex address"),
    ],
)
def test_wrong_params_are_invalid_params(env, method, params, fragment):
    err = error(env.url, method, *params)
    assert err["code"] == INVALID_PARAMS, err
    assert fragment in err["message"], err


def test_params_as_object_is_invalid_params(env):
    reply = post(env.url, {"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance",
                           "params": {"address": ADDRESS}}).json()
    assert reply["error"]["code"] == INVALID_PARAMS


# ---- transactions the mempool must refuse -------------------------------------------


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "invalid transaction: empty input"),
        (bytes.fromhex("f8ff00"), "invalid transaction: rlp decoding failed"),
        (bytes.fromhex("c0"), "invalid transaction: rlp decoding failed"),
        (b"\x02" + bytes.fromhex("c3010203"), "invalid transaction: rlp decoding failed"),
        (b"\x05" + rlp.encode([1, 2]), "transaction type not supported: 0x05"),
    ],
)
def test_malformed_rlp(env, raw, message):
    rejected(env.url, raw, message)


def _signature_parts(raw: bytes) -> tuple[list, bytes]:
    """A type-2 tx's RLP fields and the hash its signature signs."""
    assert raw[0] == 2
    fields = rlp.decode(raw[1:])
    return fields, keccak(b"\x02" + rlp.encode(fields[:-3]))


def _with_signature(fields: list, y: int, r: int, s: int) -> bytes:
    return b"\x02" + rlp.encode(fields[:-3] + [y, r, s])


def _recover(y: int, r: int, s: int, msg_hash: bytes):
    try:
        return keys.Signature(vrs=(y, r, s)).recover_public_key_from_msg_hash(msg_hash)
    except (BadSignature, ValueError):
        return None


def _flipped_r(raw: bytes, want_recoverable: bool) -> bytes:
    """`raw` with one byte of r flipped, chosen so that recovery fails or succeeds."""
    fields, msg_hash = _signature_parts(raw)
    y, r = rlp.sedes.big_endian_int.deserialize(fields[-3]), fields[-2]
    s = int.from_bytes(fields[-1], "big")
    for index in range(len(r)):
        flipped = bytearray(r)
        flipped[index] ^= 0xFF
        r_int = int.from_bytes(flipped, "big")
        if (_recover(y, r_int, s, msg_hash) is not None) == want_recoverable:
            return _with_signature(fields, y, r_int, s)
    raise AssertionError("no suitable byte flip")  # pragma: no cover


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_bad_signatures(env):
    nonce = env.mined_nonce
    good = sign(DEV_KEYS[0], nonce=nonce)
    fields, msg_hash = _signature_parts(good)
    y = rlp.sedes.big_endian_int.deserialize(fields[-3]) if fields[-3] else 0
    r, s = (int.from_bytes(f, "big") for f in fields[-2:])

    # r flipped to a value with no curve point: nobody signed this.
    err = rejected(env.url, _flipped_r(good, want_recoverable=False), "invalid")
    assert "sender" in err["message"] or "signature" in err["message"].lower(), err
    # r flipped to another valid point: recovers some unfunded stranger, never DEV[0].
    rejected(env.url, _flipped_r(good, want_recoverable=True), "insufficient funds")
    # s = 0 and r = 0 are never valid.
    rejected(env.url, _with_signature(fields, y, r, 0), "invalid")
    rejected(env.url, _with_signature(fields, y, 0, s), "invalid")
    # High s (the EIP-2 malleable twin, same signer): refused.
    high_s = _with_signature(fields, y ^ 1, r, SECP256K1_N - s)
    assert _recover(y ^ 1, r, SECP256K1_N - s, msg_hash) == _recover(y, r, s, msg_hash)
    rejected(env.url, high_s, "invalid transaction")
    # y parity out of range.
    rejected(env.url, _with_signature(fields, 2, r, s), "invalid")


def test_wrong_chain_id(env):
    raw = sign(DEV_KEYS[0], nonce=env.mined_nonce, chainId=1)
    err = rejected(env.url, raw, "invalid chain id")
    assert err["message"] == f"invalid chain id: transaction has 1, this chain is {CHAIN_ID}"


def test_pre_eip155_legacy_tx(env):
    raw = sign(DEV_KEYS[0], type=None, chainId=None, nonce=env.mined_nonce, gasPrice=10 * GWEI,
               maxFeePerGas=None, maxPriorityFeePerGas=None)
    assert raw[0] >= 0xC0  # legacy RLP list, v = 27/28
    rejected(env.url, raw, "only replay-protected (EIP-155) transactions allowed")
    # The same tx with EIP-155 protection is fine (parked behind a gap: never mined).
    protected = sign(DEV_KEYS[3], type=None, nonce=7, gasPrice=10 * GWEI,
                     maxFeePerGas=None, maxPriorityFeePerGas=None)
    assert result(env.url, "eth_sendRawTransaction", "0x" + protected.hex())


def test_blob_tx(env):
    raw = sign(DEV_KEYS[0], type=3, nonce=env.mined_nonce, maxFeePerBlobGas=GWEI,
               blobVersionedHashes=[b"\x01" + b"\x00" * 31])
    assert raw[0] == 3
    rejected(env.url, raw, "blob transactions are not supported")


def test_nonce_too_low_via_web3(env):
    raw = sign(DEV_KEYS[0], nonce=0)  # nonce 0 was mined by the fixture
    with pytest.raises(Web3RPCError) as info:
        env.w3.eth.send_raw_transaction(raw)
    err = info.value.rpc_response["error"]
    assert err["code"] == SERVER_ERROR
    assert err["message"].startswith(f"nonce too low: next nonce is {env.mined_nonce}")


def test_nonce_too_far_ahead(env):
    raw = sign(DEV_KEYS[0], nonce=env.mined_nonce + MAX_NONCE_GAP + 1)
    rejected(env.url, raw, f"nonce too high: next nonce is {env.mined_nonce}")


def test_insufficient_funds(env):
    stranger = Account.create()
    assert result(env.url, "eth_getBalance", stranger.address, "latest") == "0x0"
    err = rejected(env.url, sign(stranger.key, nonce=0), "insufficient funds for gas * price + value")
    assert "balance 0," in err["message"]
    # A funded sender whose value exceeds its balance.
    big = sign(DEV_KEYS[0], nonce=env.mined_nonce, value=10**30)
    rejected(env.url, big, "insufficient funds for gas * price + value")


def test_intrinsic_gas_too_low(env):
    raw = sign(DEV_KEYS[0], nonce=env.mined_nonce, gas=20_000)
    err = rejected(env.url, raw, "intrinsic gas too low")
    assert err["message"] == "intrinsic gas too low: have 20000, want 21000"


def test_gas_above_block_gas_limit(env):
    raw = sign(DEV_KEYS[0], nonce=env.mined_nonce, gas=BLOCK_GAS_LIMIT + 1)
    rejected(env.url, raw, f"exceeds block gas limit: tx gas {BLOCK_GAS_LIMIT + 1}")


def test_fee_cap_below_base_fee(env):
    base_fee = int(result(env.url, "eth_getBlockByNumber", "latest", False)["baseFeePerGas"], 16)
    assert base_fee > 2
    raw = sign(DEV_KEYS[0], nonce=env.mined_nonce, maxFeePerGas=1, maxPriorityFeePerGas=1)
    rejected(env.url, raw, "max fee per gas less than block base fee: maxFeePerGas 1")
    tip_above_cap = sign(DEV_KEYS[0], nonce=env.mined_nonce, maxFeePerGas=10 * GWEI,
                         maxPriorityFeePerGas=11 * GWEI)
    rejected(env.url, tip_above_cap, "max priority fee per gas higher than max fee per gas")


def test_oversized_tx(env):
    raw = sign(DEV_KEYS[0], nonce=env.mined_nonce, gas=BLOCK_GAS_LIMIT,
               data=b"\x01" * (MAX_TX_BYTES + 1))
    assert len(raw) > MAX_TX_BYTES
    err = rejected(env.url, raw, "oversized data")
    assert err["message"] == f"oversized data: transaction size {len(raw)}, limit {MAX_TX_BYTES}"


def test_replacement_and_duplicate(env):
    """Parked behind a nonce gap (DEV[1] has nonce 0; these use 5), so never mined."""
    key, nonce = DEV_KEYS[1], 5
    first = sign(key, nonce=nonce, maxFeePerGas=100 * GWEI, maxPriorityFeePerGas=10 * GWEI)
    first_hash = result(env.url, "eth_sendRawTransaction", "0x" + first.hex())
    assert first_hash == "0x" + keccak(first).hex()

    err = send(env.url, first)["error"]
    assert err == {"code": SERVER_ERROR, "message": f"already known: {first_hash}"}

    for cap, tip in [(105 * GWEI, 11 * GWEI), (110 * GWEI, 10 * GWEI), (100 * GWEI, 10 * GWEI + 1),
                     (109 * GWEI, 11 * GWEI)]:
        under = sign(key, nonce=nonce, maxFeePerGas=cap, maxPriorityFeePerGas=tip)
        rejected(env.url, under, "replacement transaction underpriced")
    assert result(env.url, "eth_getTransactionByHash", first_hash)["hash"] == first_hash

    better = sign(key, nonce=nonce, maxFeePerGas=110 * GWEI, maxPriorityFeePerGas=11 * GWEI)
    better_hash = result(env.url, "eth_sendRawTransaction", "0x" + better.hex())
    assert result(env.url, "eth_getTransactionByHash", first_hash) is None  # replaced
    pooled = result(env.url, "eth_getTransactionByHash", better_hash)
    assert pooled["blockHash"] is None and pooled["nonce"] == hex(nonce)
    assert pooled["maxFeePerGas"] == hex(110 * GWEI)
    # The replaced one may not come back in.
    rejected(env.url, first, "replacement transaction underpriced")


# ---- HTTP limits ----------------------------------------------------------------------


def test_oversized_http_body_is_413(env):
    filler = "0x" + "00" * (MAX_BODY_BYTES // 2)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                       "params": [filler]})
    assert len(body) > MAX_BODY_BYTES
    reply = post(env.url, body)
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == LIMIT_EXCEEDED


def test_batch_over_cap_is_an_error(env):
    def batch(n):
        return [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(n)]

    at_cap = post(env.url, batch(MAX_BATCH)).json()
    assert [item["result"] for item in at_cap] == [hex(CHAIN_ID)] * MAX_BATCH
    over = post(env.url, batch(MAX_BATCH + 1)).json()
    assert len(over) == 1 and "result" not in over[0]
    assert over[0]["error"]["code"] == INVALID_REQUEST
    assert "batch too large" in over[0]["error"]["message"]


# ---- hostile JSON: nesting bombs, ids no encoder can echo, huge numbers ----------------

NESTING_BOMBS = {
    "arrays": "[" * 100_000,
    "objects": '{"a":' * 100_000,
    "arrays in a request": '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":'
    + "[" * 100_000 + "]" * 100_000 + "}",
}
CHAIN_ID_REQUEST = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}


@pytest.mark.parametrize("kind", sorted(NESTING_BOMBS))
def test_nesting_bomb_over_http_is_refused_and_the_node_answers_on(env, kind):
    """Before the fix the C JSON parser overran its stack: the node died of SIGSEGV."""
    reply = post(env.url, NESTING_BOMBS[kind])
    assert reply.status_code == 400, reply.text
    data = reply.json()
    assert data["error"]["code"] == INVALID_REQUEST and data["id"] is None, data
    assert "nesting too deep" in data["error"]["message"]
    assert post(env.url, CHAIN_ID_REQUEST).json()["result"] == hex(CHAIN_ID)


def test_nesting_bomb_over_websocket_is_refused_and_the_connection_serves_on(env):
    with ws_connect(env.node.ws_url, open_timeout=HTTP_TIMEOUT, max_size=None) as ws:
        for kind in sorted(NESTING_BOMBS):
            ws.send(NESTING_BOMBS[kind])
            data = json.loads(ws.recv(timeout=HTTP_TIMEOUT))
            assert data["error"]["code"] == INVALID_REQUEST and data["id"] is None, data
            ws.send(json.dumps(CHAIN_ID_REQUEST))
            assert json.loads(ws.recv(timeout=HTTP_TIMEOUT))["result"] == hex(CHAIN_ID)


def test_legitimate_nesting_is_accepted(env):
    """A batch of calls with nested params is far below the depth limit."""
    nested = {"jsonrpc": "2.0", "id": 3, "method": "eth_call",
              "params": [{"to": ADDRESS, "data": "0x"}, {"blockNumber": "latest"}]}
    replies = post(env.url, [nested, CHAIN_ID_REQUEST]).json()
    assert replies[0]["result"] == "0x" and replies[1]["result"] == hex(CHAIN_ID), replies


@pytest.mark.parametrize("raw_id", ["1e400", "-1e400", "NaN", "Infinity", "-Infinity"])
def test_non_finite_id_is_invalid_request_with_null_id(env, raw_id):
    """Python's parser reads these as inf/nan, which no JSON encoder can send back:
    before the fix, HTTP 500 with an empty body (WebSocket: close 1011)."""
    body = '{"jsonrpc":"2.0","id":%s,"method":"eth_chainId"}' % raw_id
    reply = post(env.url, body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["error"]["code"] == INVALID_REQUEST and data["id"] is None, data
    batch = post(env.url, "[%s, %s]" % (body, json.dumps(CHAIN_ID_REQUEST))).json()
    assert batch[0]["error"]["code"] == INVALID_REQUEST and batch[0]["id"] is None
    assert batch[1]["result"] == hex(CHAIN_ID)
    with ws_connect(env.node.ws_url, open_timeout=HTTP_TIMEOUT) as ws:
        ws.send(body)
        data = json.loads(ws.recv(timeout=HTTP_TIMEOUT))
        assert data["error"]["code"] == INVALID_REQUEST and data["id"] is None, data
        ws.send(json.dumps(CHAIN_ID_REQUEST))
        assert json.loads(ws.recv(timeout=HTTP_TIMEOUT))["result"] == hex(CHAIN_ID)


HUGE_QUANTITY = "0x" + "f" * 5_000
ABOVE_UINT256 = hex(2**256)


@pytest.mark.parametrize(
    "method, params",
    [
        ("eth_call", [{"to": ADDRESS, "value": HUGE_QUANTITY}, "latest"]),
        ("eth_estimateGas", [{"to": ADDRESS, "value": ABOVE_UINT256}]),
        ("eth_call", [{"to": ADDRESS, "gas": ABOVE_UINT256}, "latest"]),
        ("eth_getBalance", [ADDRESS, HUGE_QUANTITY]),
        ("eth_getBlockByNumber", [ABOVE_UINT256, False]),
        ("eth_feeHistory", [HUGE_QUANTITY, "latest", []]),
    ],
)
def test_quantity_above_uint256_is_invalid_params(env, method, params):
    """Before the fix eth_call answered -32603: py-evm's message formatted the number
    past Python's int-to-str digit limit."""
    err = error(env.url, method, *params)
    assert err["code"] == INVALID_PARAMS, err
    assert "256 bits" in err["message"], err
    assert len(err["message"]) < 200, err


def test_largest_uint256_quantity_is_accepted(env):
    """2**256 - 1 is still a quantity: the call fails for lack of funds, not params."""
    err = error(env.url, "eth_call", {"from": ADDRESS, "to": ADDRESS, "value": hex(2**256 - 1)}, "latest")
    assert err["code"] != INVALID_PARAMS, err


# ---- strict params, as the execution-apis vectors expect --------------------------------


@pytest.mark.parametrize(
    "method, params, fragment",
    [
        ("eth_getBalance", [ADDRESS, "0x01"], "leading zero digits"),
        ("eth_getBlockByNumber", ["0x00", False], "leading zero digits"),
        ("eth_getBlockByNumber", ["0x0"], "missing value for required argument 1"),
        ("eth_getBlockByHash", ["0x" + "00" * 32], "missing value for required argument 1"),
        ("eth_feeHistory", [5, "latest", []], "hex quantity"),
        ("eth_getLogs", [{"fromBlock": "0x32", "toBlock": "0x38"}],
         "block range extends beyond current head block"),
        ("eth_getLogs", [{"fromBlock": "0x1", "toBlock": "0x0"}], "invalid block range params"),
    ],
)
def test_lenient_params_are_invalid_params(env, method, params, fragment):
    err = error(env.url, method, *params)
    assert err["code"] == INVALID_PARAMS, err
    assert fragment in err["message"], err


def test_a_plain_block_hash_names_a_block(env):
    """The spec's BlockNumberOrTagOrHash: a 32-byte hash alone is a block (it answered
    "header not found" before)."""
    genesis = result(env.url, "eth_getBlockByNumber", "0x0", False)
    by_hash = result(env.url, "eth_getBalance", ADDRESS, genesis["hash"])
    assert by_hash == result(env.url, "eth_getBalance", ADDRESS, "0x0")
    assert int(by_hash, 16) > 0


def test_filter_ids_are_quantities(env):
    """execution-apis types filter ids as uint: no leading zero digit (random bytes had
    one in 1 of 16 ids)."""
    import re

    ids = [result(env.url, "eth_newBlockFilter") for _ in range(100)]
    assert all(re.match(r"^0x[1-9a-f][0-9a-f]*$", i) for i in ids), ids
    for i in ids:
        assert result(env.url, "eth_uninstallFilter", i) is True


# ---- afterwards ------------------------------------------------------------------------


def test_node_up_and_nothing_committed_changed(env):
    """Runs last (file order): after the barrage the node serves and the chain is as before."""
    assert env.node.process.poll() is None, env.node.text()
    assert env.w3.eth.block_number == env.snapshot.head_number
    assert snapshot(env.url) == env.snapshot
    # The pool still holds only what was parked behind gaps; nothing became executable.
    for account, committed in [(DEV[0], env.mined_nonce), (DEV[1], 0), (DEV[3], 0)]:
        assert result(env.url, "eth_getTransactionCount", account.address, "pending") == hex(committed)
    assert "Traceback" not in env.node.text(), env.node.text()
