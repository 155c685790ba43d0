"""debug_traceTransaction / debug_traceCall / debug_traceBlockBy* against a real node.

The contracts (tests/contracts/TraceCaller.vy, TraceCallee.vy, compiled with vyper) make
every kind of frame: CALL, STATICCALL, DELEGATECALL, CREATE, CREATE2, SELFDESTRUCT, a
revert with a reason (caught and not), and logs. What a trace says is checked against
what the chain says independently: receipts (gas used, status, logs), eth_getCode,
eth_getStorageAt, eth_getBalance, eth_call, and the CREATE2 address formula.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rlp
import vyper
from conftest import DEV_KEYS, start_node
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from websockets.sync.client import connect as ws_connect

CHAIN_ID = 31337
CONTRACTS = Path(__file__).resolve().parent / "contracts"
GAS = 2_000_000
FEES = {"maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9}
RECEIPT_TIMEOUT_S = 20
POLL_S = 0.05
SALT = b"\x07" * 32
STORE_SELECTOR = "0x" + keccak(text="store(uint256)")[:4].hex()
GET_SELECTOR = "0x" + keccak(text="get()")[:4].hex()
FAIL_SELECTOR = "0x" + keccak(text="fail(uint256)")[:4].hex()
FRAME_OPS = ("CALL", "CALLCODE", "DELEGATECALL", "STATICCALL", "CREATE", "CREATE2")
CALLER_TRIES_SLOT = 2  # TraceCaller's `tries` (vyper's layout, checked in the fixture)
OUT_OF_GAS_LIMIT = 25_000  # intrinsic ~21.2k; run() needs a cold SLOAD and EXTCODESIZE first
SENDER = Account.from_key(DEV_KEYS[0])
BENEFICIARY = "0x" + "be" * 20
INVALID_PARAMS = -32602
SERVER_ERROR = -32000


def compile_contract(name: str) -> dict:
    return vyper.compile_code(
        (CONTRACTS / f"{name}.vy").read_text(), output_formats=["abi", "bytecode", "layout"]
    )


@dataclass
class Deployed:
    w3: Web3
    callee: str
    caller: str
    callee_runtime: str
    receipts: dict[str, Any]  # name -> receipt of the transaction that name stands for


def send(w3: Web3, tx: dict):
    tx = {"chainId": CHAIN_ID, "gas": GAS, **FEES, **tx}
    tx.setdefault("nonce", w3.eth.get_transaction_count(SENDER.address, "pending"))
    tx_hash = w3.eth.send_raw_transaction(Account.sign_transaction(tx, SENDER.key).raw_transaction)
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S, poll_latency=POLL_S)


def calldata(contract, name: str, *args) -> str:
    return contract.get_function_by_name(name)(*args)._encode_transaction_data()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = start_node(tmp_path_factory.mktemp("trace"))
    yield process
    process.kill()


@pytest.fixture(scope="module")
def chain(node) -> Deployed:
    w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
    callee_out, caller_out = compile_contract("TraceCallee"), compile_contract("TraceCaller")
    assert caller_out["layout"]["storage_layout"]["tries"]["slot"] == CALLER_TRIES_SLOT
    callee = send(w3, {"data": callee_out["bytecode"]}).contractAddress
    init = caller_out["bytecode"] + abi_encode(["address"], [callee]).hex()
    caller = send(w3, {"data": init}).contractAddress
    contract = w3.eth.contract(address=caller, abi=caller_out["abi"])
    receipts = {}
    for name, fn, args in [
        ("run", "run", (5,)),
        ("run_failing", "run_failing", (50,)),
        ("try_failing", "try_failing", (50,)),
        ("spawn", "spawn", (SALT,)),
    ]:
        receipts[name] = send(w3, {"to": caller, "data": calldata(contract, fn, *args)})
    copy = to_checksum_address(
        trace(w3, receipts["spawn"], {"tracer": "callTracer"})["calls"][0]["to"]
    )
    kill = calldata(contract, "kill", copy, to_checksum_address(BENEFICIARY))
    receipts["kill"] = send(w3, {"to": caller, "data": kill})
    # run(5) with too little gas for the nested store's SSTORE: out of gas.
    receipts["out_of_gas"] = send(
        w3, {"to": caller, "data": calldata(contract, "run", 5), "gas": OUT_OF_GAS_LIMIT}
    )
    assert [receipts[n].status for n in receipts] == [1, 0, 1, 1, 1, 0]
    return Deployed(w3, callee.lower(), caller.lower(), w3.eth.get_code(callee).to_0x_hex(), receipts)


def rpc(w3: Web3, method: str, params: list) -> dict:
    return w3.provider.make_request(method, params)


def trace(w3: Web3, receipt, config: dict | None = None) -> Any:
    params: list = [receipt.transactionHash.to_0x_hex()]
    if config is not None:
        params.append(config)
    response = rpc(w3, "debug_traceTransaction", params)
    assert "result" in response, response
    return response["result"]


def flatten(frame: dict) -> list[dict]:
    return [frame] + [f for child in frame.get("calls", []) for f in flatten(child)]


def logs_in_order(frame: dict) -> list[dict]:
    """A callTracer frame's logs and its children's in execution order (by position)."""
    out: list[dict] = []
    logs = frame.get("logs", [])
    calls = frame.get("calls", [])
    for index in range(len(calls) + 1):
        out += [log for log in logs if int(log["position"], 16) == index]
        if index < len(calls):
            out += logs_in_order(calls[index])
    return out


def receipt_logs(receipt) -> list[tuple]:
    return [
        (log["address"].lower(), [t.to_0x_hex() for t in log["topics"]], log["data"].to_0x_hex())
        for log in receipt.logs
    ]


def traced_logs(frame: dict) -> list[tuple]:
    return [(log["address"], log["topics"], log["data"]) for log in logs_in_order(frame)]


# ---- callTracer ---------------------------------------------------------------------------


def test_call_tracer_nests_call_staticcall_delegatecall_with_logs(chain):
    receipt = chain.receipts["run"]
    top = trace(chain.w3, receipt, {"tracer": "callTracer", "tracerConfig": {"withLog": True}})
    assert top["type"] == "CALL"
    assert top["from"] == SENDER.address.lower() and top["to"] == chain.caller
    assert int(top["gas"], 16) == GAS
    assert int(top["gasUsed"], 16) == receipt.gasUsed
    kinds = [(c["type"], c["from"], c["to"], c["input"][:10]) for c in top["calls"]]
    assert kinds == [
        ("CALL", chain.caller, chain.callee, STORE_SELECTOR),
        ("STATICCALL", chain.caller, chain.callee, GET_SELECTOR),
        ("DELEGATECALL", chain.caller, chain.callee, STORE_SELECTOR),
    ]
    assert "value" not in top["calls"][1]  # geth: a STATICCALL carries no value
    for child in top["calls"]:
        assert 0 < int(child["gasUsed"], 16) <= int(child["gas"], 16) < GAS
    # run() returns what get() returned: the value stored by the first call.
    assert int(top["calls"][1]["output"], 16) == 5 == int(top["output"], 16)
    # Every log of the receipt, in order, from the frame that emitted it (the
    # DELEGATECALL's log is the caller's own).
    assert traced_logs(top) == receipt_logs(receipt)
    assert top["calls"][2]["logs"][0]["address"] == chain.caller
    assert top["logs"][0]["position"] == "0x1"  # after the first call


def test_call_tracer_revert_reason_and_dropped_logs(chain):
    failed = chain.receipts["run_failing"]
    top = trace(chain.w3, failed, {"tracer": "callTracer", "tracerConfig": {"withLog": True}})
    assert failed.status == 0
    assert int(top["gasUsed"], 16) == failed.gasUsed
    for frame in (top, top["calls"][0]):
        assert frame["error"] == "execution reverted"
        assert frame["revertReason"] == "value too large"
    assert all("logs" not in f for f in flatten(top))  # reverted: its logs never happened

    caught = chain.receipts["try_failing"]
    top = trace(chain.w3, caught, {"tracer": "callTracer", "tracerConfig": {"withLog": True}})
    assert "error" not in top and caught.status == 1
    (inner,) = top["calls"]
    assert inner["input"][:10] == FAIL_SELECTOR and inner["revertReason"] == "value too large"
    assert "logs" not in inner
    assert traced_logs(top) == receipt_logs(caught) != []


def test_call_tracer_only_top_call_and_without_logs(chain):
    receipt = chain.receipts["run"]
    full = trace(chain.w3, receipt, {"tracer": "callTracer"})
    top = trace(chain.w3, receipt, {"tracer": "callTracer", "tracerConfig": {"onlyTopCall": True}})
    assert "calls" not in top and "calls" in full
    assert all("logs" not in f for f in flatten(full))
    assert {k: v for k, v in full.items() if k != "calls"} == top


def test_call_tracer_create_create2_and_selfdestruct(chain):
    w3 = chain.w3
    top = trace(w3, chain.receipts["spawn"], {"tracer": "callTracer"})
    create, create2 = top["calls"]
    assert (create["type"], create2["type"]) == ("CREATE", "CREATE2")
    for frame in (create, create2):
        assert frame["from"] == chain.caller
        assert w3.eth.get_code(to_checksum_address(frame["to"])).to_0x_hex() == chain.callee_runtime
        assert frame["output"] == chain.callee_runtime
    caller_nonce_before = 1  # a contract starts at nonce 1 (EIP-161) and this is its first CREATE
    expected_create = keccak(rlp.encode([bytes.fromhex(chain.caller[2:]), caller_nonce_before]))[12:]
    assert create["to"] == "0x" + expected_create.hex()
    init_code = bytes.fromhex(create2["input"][2:])
    expected = keccak(b"\xff" + bytes.fromhex(chain.caller[2:]) + SALT + keccak(init_code))[12:]
    assert create2["to"] == "0x" + expected.hex()
    # The tx returned (create address, create2 address).
    assert top["output"] == "0x" + create["to"][2:].rjust(64, "0") + create2["to"][2:].rjust(64, "0")

    kill = trace(w3, chain.receipts["kill"], {"tracer": "callTracer"})
    (destroy_call,) = kill["calls"]
    (destruct,) = destroy_call["calls"]
    assert destruct["type"] == "SELFDESTRUCT"
    assert destruct["from"] == create["to"] and destruct["to"] == BENEFICIARY
    assert destruct["value"] == "0x0"


def test_out_of_gas_in_both_tracers(chain):
    receipt = chain.receipts["out_of_gas"]
    assert receipt.gasUsed == OUT_OF_GAS_LIMIT  # all of it burnt
    top = trace(chain.w3, receipt, {"tracer": "callTracer"})
    assert top["error"] == "out of gas" and int(top["gasUsed"], 16) == receipt.gasUsed
    assert "output" not in top
    result = trace(chain.w3, receipt)
    assert result["failed"] is True and result["gas"] == receipt.gasUsed
    assert result["returnValue"] == "0x"
    faulted = [s for s in result["structLogs"] if "error" in s]
    assert faulted and all(s["error"] == "out of gas" for s in faulted)
    (fault,) = faulted  # the step that could not be paid for ends the transaction
    assert fault == result["structLogs"][-1]
    assert fault["gasCost"] > fault["gas"]


# ---- the struct logger --------------------------------------------------------------------


def test_struct_logs_gas_steps_and_result_agree_with_the_receipt(chain):
    for name in ("run", "run_failing", "try_failing", "spawn"):
        receipt = chain.receipts[name]
        result = trace(chain.w3, receipt)
        logs = result["structLogs"]
        assert result["gas"] == receipt.gasUsed
        assert result["failed"] is (receipt.status == 0)
        assert logs[0]["depth"] == 1 and logs[0]["pc"] == 0
        last = logs[-1]
        assert last["depth"] == 1
        assert last["op"] == ("REVERT" if receipt.status == 0 else "RETURN")
        for step, following in zip(logs, logs[1:]):
            assert step["gas"] >= step["gasCost"] >= 0
            if following["depth"] == step["depth"] and step["op"] not in FRAME_OPS:
                assert following["gas"] == step["gas"] - step["gasCost"], step
        # Frames open exactly at CALL-type opcodes.
        for step, following in zip(logs, logs[1:]):
            if following["depth"] == step["depth"] + 1:
                assert step["op"] in FRAME_OPS


def test_struct_log_storage_matches_get_storage_at(chain):
    w3 = chain.w3
    receipt = chain.receipts["try_failing"]
    logs = trace(w3, receipt)["structLogs"]
    top_level = [s for s in logs if s["depth"] == 1 and s["op"] == "SSTORE"]
    assert top_level, "try_failing writes `tries` in its own frame"
    for step in (s for s in logs if s["op"] == "SSTORE"):
        slot, value = step["stack"][-1], step["stack"][-2]
        assert int(step["storage"]["0x" + int(slot, 16).to_bytes(32, "big").hex()], 16) == int(value, 16)
    snapshot = top_level[-1]["storage"]
    for slot, value in snapshot.items():
        stored = w3.eth.get_storage_at(to_checksum_address(chain.caller), int(slot, 16), receipt.blockNumber)
        assert stored.to_0x_hex() == value
    assert int(snapshot["0x" + CALLER_TRIES_SLOT.to_bytes(32, "big").hex()], 16) == 1
    assert all("storage" not in s for s in logs if s["op"] not in ("SLOAD", "SSTORE"))


def test_struct_logger_flags_and_limit(chain):
    receipt = chain.receipts["run"]
    plain = trace(chain.w3, receipt)["structLogs"]
    assert all("stack" in s and "memory" not in s and "returnData" not in s for s in plain)
    rich = trace(chain.w3, receipt, {"disableStack": True, "disableStorage": True,
                                     "enableMemory": True, "enableReturnData": True})["structLogs"]
    assert len(rich) == len(plain)
    assert all("stack" not in s and "storage" not in s for s in rich)
    assert all(len(word) == 66 for s in rich for word in s["memory"])
    assert any(s["memory"] for s in rich) and all("returnData" in s for s in rich)
    # After the STATICCALL to get() returns, returnData holds its output (5).
    static_at = next(i for i, s in enumerate(rich) if s["op"] == "STATICCALL")
    after = next(s for s in rich[static_at + 1:] if s["depth"] == 1)
    assert int(after["returnData"], 16) == 5
    limited = trace(chain.w3, receipt, {"limit": 7})["structLogs"]
    assert limited == plain[:7]


# ---- debug_traceCall ---------------------------------------------------------------------


def test_trace_call_matches_eth_call_and_writes_nothing(chain):
    w3 = chain.w3
    caller = to_checksum_address(chain.caller)
    call = {"from": SENDER.address, "to": caller,
            "data": "0xa444f5e9" + (9).to_bytes(32, "big").hex()}  # run(9)
    before = w3.eth.get_storage_at(to_checksum_address(chain.callee), 0)
    response = rpc(w3, "debug_traceCall", [call, "latest", {"tracer": "callTracer"}])
    assert "result" in response, response
    top = response["result"]
    assert [c["type"] for c in top["calls"]] == ["CALL", "STATICCALL", "DELEGATECALL"]
    assert int(top["calls"][1]["output"], 16) == 9
    assert top["output"] == w3.eth.call(call).to_0x_hex()
    structs = rpc(w3, "debug_traceCall", [call, "latest"])["result"]
    assert structs["returnValue"] == top["output"] and structs["failed"] is False
    # Gas used after refunds: more than a transfer, no more than the least gas it needs.
    assert 21_000 < structs["gas"] <= w3.eth.estimate_gas(call)
    assert w3.eth.get_storage_at(to_checksum_address(chain.callee), 0) == before
    failing = {**call, "data": "0x1f46a176" + (99).to_bytes(32, "big").hex()}  # run_failing(99)
    top = rpc(w3, "debug_traceCall", [failing, "latest", {"tracer": "callTracer"}])["result"]
    assert top["revertReason"] == "value too large"


# ---- blocks --------------------------------------------------------------------------------


def test_trace_block_by_number_and_hash(chain):
    w3 = chain.w3
    receipt = chain.receipts["run"]
    block = w3.eth.get_block(receipt.blockNumber)
    by_number = rpc(w3, "debug_traceBlockByNumber", [hex(receipt.blockNumber), {"tracer": "callTracer"}])
    by_hash = rpc(w3, "debug_traceBlockByHash", [block.hash.to_0x_hex(), {"tracer": "callTracer"}])
    assert by_number["result"] == by_hash["result"]
    assert [e["txHash"] for e in by_number["result"]] == [t.to_0x_hex() for t in block.transactions]
    entry = by_number["result"][receipt.transactionIndex]
    assert entry["result"] == trace(w3, receipt, {"tracer": "callTracer"})


def test_trace_over_websocket_is_the_same_as_over_http(node, chain):
    receipt = chain.receipts["try_failing"]
    config = {"tracer": "callTracer", "tracerConfig": {"withLog": True}}
    request = {"jsonrpc": "2.0", "id": 1, "method": "debug_traceTransaction",
               "params": [receipt.transactionHash.to_0x_hex(), config]}
    with ws_connect(node.ws_url, max_size=None) as ws:
        ws.send(json.dumps(request))
        answer = json.loads(ws.recv(timeout=60))
    assert answer["result"] == trace(chain.w3, receipt, config)


def test_bad_trace_requests_are_clear_errors(chain):
    w3 = chain.w3
    tx_hash = chain.receipts["run"].transactionHash.to_0x_hex()
    cases = [
        ("debug_traceTransaction", [tx_hash, {"tracer": "noSuchTracer"}], INVALID_PARAMS, "tracer not found"),
        ("debug_traceTransaction", [tx_hash, {"tracer": "callTracer", "tracerConfig": {"onlyTopCall": "yes"}}],
         INVALID_PARAMS, "cannot unmarshal string"),
        ("debug_traceTransaction", [tx_hash, {"timeout": "soon"}], INVALID_PARAMS, 'time: invalid duration "soon"'),
        ("debug_traceTransaction", [tx_hash, {"limit": -1}], INVALID_PARAMS, "limit"),
        ("debug_traceTransaction", [tx_hash, "callTracer"], INVALID_PARAMS, "cannot unmarshal string"),
        ("debug_traceTransaction", ["0x" + "00" * 31 + "01"], SERVER_ERROR, "transaction not found"),
        ("debug_traceTransaction", ["0x1234"], INVALID_PARAMS, "32-byte hash"),
        ("debug_traceBlockByNumber", ["0x0"], SERVER_ERROR, "genesis is not traceable"),
        ("debug_traceBlockByNumber", ["3"], INVALID_PARAMS, "0x-prefixed"),
        ("debug_traceBlockByHash", ["0x" + "00" * 31 + "01"], SERVER_ERROR,
         "block 0x" + "00" * 31 + "01 not found"),
        ("debug_traceCall", [{"to": "0x12"}, "latest"], INVALID_PARAMS, "address"),
        ("debug_traceTransaction", [tx_hash, {"timeout": "1ns"}], SERVER_ERROR, "execution timeout"),
    ]
    for method, params, code, words in cases:
        response = rpc(w3, method, params)
        assert "error" in response, (method, params, response)
        assert response["error"]["code"] == code, (method, params, response)
        assert words in response["error"]["message"], (method, params, response)
    assert trace(w3, chain.receipts["run"], {"tracer": "callTracer"})["type"] == "CALL"


# ---- prestateTracer -----------------------------------------------------------------------


def test_prestate_agrees_with_the_parent_block_and_diff_with_the_block(chain):
    w3 = chain.w3
    receipt = chain.receipts["run"]
    parent, number = receipt.blockNumber - 1, receipt.blockNumber
    caller, callee = to_checksum_address(chain.caller), to_checksum_address(chain.callee)
    sender = SENDER.address
    assert w3.eth.get_block(number).transactions[0] == receipt.transactionHash  # first in block
    pre = trace(w3, receipt, {"tracer": "prestateTracer"})
    assert set(pre) >= {chain.caller, chain.callee, sender.lower()}
    for address, account in pre.items():
        checksum = to_checksum_address(address)
        assert int(account["balance"], 16) == w3.eth.get_balance(checksum, parent)
        assert account.get("nonce", 0) == w3.eth.get_transaction_count(checksum, parent)
        assert account.get("code", "0x") == w3.eth.get_code(checksum, parent).to_0x_hex()
        for slot, value in account.get("storage", {}).items():
            assert w3.eth.get_storage_at(checksum, int(slot, 16), parent).to_0x_hex() == value
    slot0 = "0x" + "00" * 32
    assert slot0 in pre[chain.callee]["storage"] and slot0 in pre[chain.caller]["storage"]

    diff = trace(w3, receipt, {"tracer": "prestateTracer", "tracerConfig": {"diffMode": True}})
    post = diff["post"]
    assert post[sender.lower()]["nonce"] == w3.eth.get_transaction_count(sender, number)
    assert int(post[sender.lower()]["balance"], 16) == w3.eth.get_balance(sender, number)
    for address in (callee, caller):  # run() stores 5 in the callee, 6 via DELEGATECALL
        stored = w3.eth.get_storage_at(address, 0, number).to_0x_hex()
        assert post[address.lower()]["storage"][slot0] == stored
        assert diff["pre"][address.lower()]["storage"][slot0] == pre[address.lower()]["storage"][slot0]
        assert "code" not in post[address.lower()]  # unchanged fields are left out of post
    # Accounts the transaction only read are not in a diff.
    assert set(diff["pre"]) <= set(pre) and set(post) <= set(pre) | set(post)

    spawned = trace(w3, chain.receipts["spawn"], {"tracer": "callTracer"})["calls"]
    created = trace(w3, chain.receipts["spawn"], {"tracer": "prestateTracer",
                                                  "tracerConfig": {"diffMode": True}})
    for frame in spawned:
        assert frame["to"] not in created["pre"]
        assert created["post"][frame["to"]]["code"] == chain.callee_runtime
        assert created["post"][frame["to"]]["nonce"] == 1
