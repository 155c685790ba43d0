"""eth_simulateV1 against a real node: the execution-apis vectors, and the node's own chain.

The spec's vectors (tests/eth_simulateV1/*.io) were recorded against the spec's own chain
(its head number, timestamps, hashes and base fee); most set up their own state with
overrides, so their calls' results (status, return data, gas, logs, error codes) and the
request-level error codes do not depend on that chain, and are compared here. The rest
are listed in CHAIN_SPECIFIC or DEVIATIONS with the reason. Every result is validated
against the spec's result schema.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import requests
from conftest import DEV_KEYS, start_node
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import keccak
from spec_schema import SPEC_DIR, assert_matches_result_schema, require_spec

from execution.simulate import BLOCK_TIME_STEP_S, MAX_SIMULATED_BLOCKS

CHAIN_ID = 31337
ETHER = 10**18
TOKEN_SUPPLY = 1_000_000 * 10**18
RECEIPT_TIMEOUT_S = 20
POLL_S = 0.05
INVALID_PARAMS = -32602
TRANSFER_TOPIC = "0x" + keccak(b"Transfer(address,address,uint256)").hex()
ETH_LOG_ADDRESS = "0x" + "ee" * 20

DEPLOYER = Account.from_key(DEV_KEYS[0])
SENDER = Account.from_key(DEV_KEYS[1])

VECTOR_DIR = SPEC_DIR / "tests" / "eth_simulateV1"
CHAIN_SPECIFIC = {
    # Absolute block numbers: how many blocks fill the gap depends on the head's number.
    "add-more-non-defined-BlockStateCalls-than-fit-but-now-with-fit": "absolute block numbers",
    "blocknumber-increment": "absolute block numbers",
    "override-block-num": "absolute block numbers",
    "blockhash-complex": "absolute block numbers and the spec chain's block hashes",
    "blockhash-start-before-head": "absolute block numbers",
    "use-as-many-features-as-possible": "absolute block numbers",
    "fee-recipient-receiving-funds": "absolute block numbers, the spec chain's base fee",
    "blockhash-simple": "returns the spec chain's block hash",
    "contract-calls-itself": "returns NUMBER, TIMESTAMP, BASEFEE of the spec chain",
    "get-block-properties": "returns NUMBER, TIMESTAMP, BASEFEE of the spec chain",
    "overwrite-existing-contract": "returns block properties of the spec chain",
    "empty-validation": "the base fee after the spec chain's head",
    # The beneficiary, the zero address, exists there (here a new account: 25,000 gas
    # more); test_selfdestruct_vector_with_the_beneficiary_present replays it with it.
    "self-destructive-contract-produces-logs": "the zero address exists on the spec chain",
}
DEVIATIONS = {
    "blobs": "no blob transactions on Laminar: -32602",
    "move-two-accounts-to-same-38023": "geth returns a block; the spec's error table has "
                                       "-38023 for it, which is what Laminar returns",
    "overflow-nonce": "a nonce of 2^64-1 without validation: py-evm refuses the transaction",
}


def vector_files() -> list:
    if not VECTOR_DIR.is_dir():
        return []
    return sorted(VECTOR_DIR.glob("*.io"))


def read_vector(path) -> tuple[dict, dict]:
    lines = path.read_text().splitlines()
    request = json.loads(next(line for line in lines if line.startswith(">>"))[3:])
    response = json.loads(next(line for line in lines if line.startswith("<<"))[3:])
    return request, response


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = start_node(tmp_path_factory.mktemp("simulate"))
    yield process
    process.kill()


def rpc(node, method: str, *params) -> dict:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    response = requests.post(node.url, json=body, timeout=60)
    response.raise_for_status()
    return response.json()


def simulate(node, payload: dict, block="latest") -> list:
    reply = rpc(node, "eth_simulateV1", payload, block)
    assert "error" not in reply, reply
    assert_matches_result_schema("eth_simulateV1", reply["result"])
    return reply["result"]


def simulate_error(node, payload: dict, block="latest") -> dict:
    reply = rpc(node, "eth_simulateV1", payload, block)
    assert "error" in reply, reply
    return reply["error"]


def comparable_call(call: dict) -> dict:
    """What of a call's result does not depend on the chain it ran on."""
    result = {key: call.get(key) for key in ("status", "returnData", "gasUsed")}
    result["error"] = call["error"]["code"] if "error" in call else None
    result["logs"] = [(log["address"], log["topics"], log["data"], log["logIndex"],
                       log["transactionIndex"]) for log in call.get("logs", [])]
    return result


# ---- the spec's vectors -------------------------------------------------------------


@pytest.mark.parametrize("path", vector_files(), ids=lambda p: p.stem[len("ethSimulate-"):])
def test_spec_vector(node, path):
    require_spec()
    name = path.stem[len("ethSimulate-"):]
    if name in CHAIN_SPECIFIC:
        pytest.skip(f"depends on the spec's chain: {CHAIN_SPECIFIC[name]}")
    if name in DEVIATIONS:
        pytest.skip(f"known deviation: {DEVIATIONS[name]}")
    request, expected = read_vector(path)
    payload, *rest = request["params"]
    block = rest[0] if rest else "latest"
    if block not in ("latest", "pending", "safe", "finalized", "earliest"):
        pytest.skip("names a block of the spec's chain by number or hash")
    if "error" in expected:
        assert simulate_error(node, payload, block)["code"] == expected["error"]["code"]
        return
    got = simulate(node, payload, block)
    assert len(got) == len(expected["result"])
    for ours, theirs in zip(got, expected["result"]):
        assert ours["gasUsed"] == theirs["gasUsed"]
        assert ours["miner"] == theirs["miner"]
        assert len(ours["transactions"]) == len(theirs["transactions"])
        if not payload.get("validation"):  # with validation it follows the chain's base fee
            assert ours["baseFeePerGas"] == theirs["baseFeePerGas"]
        assert [comparable_call(c) for c in ours["calls"]] == \
            [comparable_call(c) for c in theirs["calls"]]
    numbers = [int(b["number"], 16) for b in got]
    assert numbers == [numbers[0] + i for i in range(len(numbers))]
    for parent, child in zip(got, got[1:]):
        assert child["parentHash"] == parent["hash"]


def test_selfdestruct_vector_with_the_beneficiary_present(node):
    """The spec's SELFDESTRUCT-with-traceTransfers vector, with the zero address (its
    beneficiary) given a balance first, as it has one on the spec's chain."""
    path = VECTOR_DIR / "ethSimulate-self-destructive-contract-produces-logs.io"
    if not path.is_file():
        require_spec()
        pytest.skip(f"{path.name} is not in this checkout of the spec")
    request, expected = read_vector(path)
    payload = request["params"][0]
    payload["blockStateCalls"][0]["stateOverrides"]["0x" + "00" * 20] = {"balance": "0x1"}
    [ours] = simulate(node, payload)
    [theirs] = expected["result"]
    assert ours["calls"][0]["logs"], "the selfdestruct's transfer is logged"
    assert [comparable_call(c) for c in ours["calls"]] == \
        [comparable_call(c) for c in theirs["calls"]]


def test_enough_vectors_are_replayed():
    """Guards against the skip lists (or a moved spec) silently emptying the replay."""
    files = vector_files()
    if not files:
        require_spec()
    names = {path.stem[len("ethSimulate-"):] for path in files}
    skipped = set(CHAIN_SPECIFIC) | set(DEVIATIONS)
    assert skipped <= names, skipped - names
    assert len(names - skipped) >= 60


# ---- on this node's own chain -------------------------------------------------------


def sign_and_wait(w3, account, tx: dict):
    tx = {"chainId": CHAIN_ID, "nonce": w3.eth.get_transaction_count(account.address, "pending"),
          **tx}
    signed = Account.sign_transaction(tx, account.key)
    return w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction),
                                               timeout=RECEIPT_TIMEOUT_S, poll_latency=POLL_S)


@pytest.fixture(scope="module")
def token(node, erc20):
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30}))
    factory = w3.eth.contract(abi=erc20.abi, bytecode=erc20.bytecode)
    tx = factory.constructor("Sim Token", "SIM", 18, TOKEN_SUPPLY).build_transaction(
        {"from": DEPLOYER.address, "chainId": CHAIN_ID,
         "nonce": w3.eth.get_transaction_count(DEPLOYER.address, "pending")})
    receipt = sign_and_wait(w3, DEPLOYER, tx)
    assert receipt.status == 1
    return w3.eth.contract(address=receipt.contractAddress, abi=erc20.abi), erc20, w3


def balance_slot(compiled, owner: str) -> str:
    base = compiled.storage_layout["balanceOf"]["slot"]
    key = bytes.fromhex(owner[2:].lower()).rjust(32, b"\x00")
    return "0x" + keccak(base.to_bytes(32, "big") + key).hex()


def word(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def test_token_transfer_on_real_state_and_nothing_is_written(node, token):
    contract, _, w3 = token
    receiver = Account.create().address
    head = w3.eth.get_block("latest")
    data = contract.encode_abi("transfer", [receiver, 1234])
    result = simulate(node, {"blockStateCalls": [{"calls": [
        {"from": DEPLOYER.address, "to": contract.address, "input": data},
        {"from": DEPLOYER.address, "to": contract.address,
         "input": contract.encode_abi("balanceOf", [receiver])},
    ]}]}, hex(head["number"]))
    [block] = result
    transfer, balance = block["calls"]
    assert transfer["status"] == "0x1"
    assert abi_decode(["bool"], bytes.fromhex(transfer["returnData"][2:])) == (True,)
    [log] = transfer["logs"]
    assert log["address"] == contract.address.lower() and log["topics"][0] == TRANSFER_TOPIC
    assert int(log["data"], 16) == 1234 and log["blockHash"] == block["hash"]
    assert log["transactionHash"] == block["transactions"][0]
    # The second call sees the first one's write.
    assert int(balance["returnData"], 16) == 1234
    assert int(block["number"], 16) == head["number"] + 1
    assert block["parentHash"] == "0x" + bytes(head["hash"]).hex()
    assert int(block["timestamp"], 16) == head["timestamp"] + BLOCK_TIME_STEP_S
    assert int(block["gasUsed"], 16) == int(transfer["gasUsed"], 16) + int(balance["gasUsed"], 16)
    # Nothing reached the chain: the receiver still has nothing, at the head.
    assert contract.functions.balanceOf(receiver).call() == 0


def test_state_and_state_diff_overrides(node, token):
    contract, compiled, _ = token
    holder = Account.create().address
    receiver = Account.create().address
    supply_slot = word(compiled.storage_layout["totalSupply"]["slot"])
    transfer = contract.encode_abi("transfer", [receiver, 40])
    balance_of = contract.encode_abi("balanceOf", [receiver])
    supply = contract.encode_abi("totalSupply", [])
    # stateDiff: one slot changes, the others stay (the supply is still there).
    [diff_block] = simulate(node, {"blockStateCalls": [{
        "stateOverrides": {contract.address: {"stateDiff": {balance_slot(compiled, holder): word(100)}}},
        "calls": [{"from": holder, "to": contract.address, "input": transfer},
                  {"from": holder, "to": contract.address, "input": balance_of},
                  {"from": holder, "to": contract.address, "input": supply}],
    }]})
    assert [c["status"] for c in diff_block["calls"]] == ["0x1"] * 3
    assert int(diff_block["calls"][1]["returnData"], 16) == 40
    assert int(diff_block["calls"][2]["returnData"], 16) == TOKEN_SUPPLY
    # state: the whole storage is replaced, so the supply is gone.
    [state_block] = simulate(node, {"blockStateCalls": [{
        "stateOverrides": {contract.address: {"state": {supply_slot: word(7)}}},
        "calls": [{"from": holder, "to": contract.address, "input": supply},
                  {"from": DEPLOYER.address, "to": contract.address,
                   "input": contract.encode_abi("balanceOf", [DEPLOYER.address])}],
    }]})
    assert int(state_block["calls"][0]["returnData"], 16) == 7
    assert int(state_block["calls"][1]["returnData"], 16) == 0
    # Without the override the holder has nothing to send: the transfer reverts.
    [plain] = simulate(node, {"blockStateCalls": [{"calls": [
        {"from": holder, "to": contract.address, "input": transfer}]}]})
    assert plain["calls"][0]["status"] == "0x0"
    assert plain["calls"][0]["error"]["code"] == 3


def test_blocks_chain_and_carry_state(node):
    fresh = Account.create().address
    onward = Account.create().address
    blocks = simulate(node, {"blockStateCalls": [
        {"blockOverrides": {"feeRecipient": "0x" + "cc" * 20, "gasLimit": hex(1_000_000)},
         "calls": [{"from": SENDER.address, "to": fresh, "value": hex(ETHER)}]},
        {},  # an empty block between
        {"stateOverrides": {fresh: {"nonce": "0x5"}},
         "calls": [{"from": fresh, "to": onward, "value": hex(ETHER // 2)}]},
    ], "returnFullTransactions": True})
    assert len(blocks) == 3
    assert blocks[0]["miner"] == "0x" + "cc" * 20 and blocks[0]["gasLimit"] == hex(1_000_000)
    assert blocks[1]["calls"] == [] and blocks[1]["transactions"] == []
    for parent, child in zip(blocks, blocks[1:]):
        assert child["parentHash"] == parent["hash"]
        assert int(child["number"], 16) == int(parent["number"], 16) + 1
        assert int(child["timestamp"], 16) == int(parent["timestamp"], 16) + BLOCK_TIME_STEP_S
    [tx] = blocks[2]["transactions"]
    assert tx["from"] == fresh.lower() and tx["to"] == onward.lower()
    assert tx["nonce"] == "0x5"  # the overridden nonce
    assert blocks[2]["calls"][0]["status"] == "0x1"
    assert rpc(node, "eth_getBalance", fresh, "latest")["result"] == "0x0"


def test_gaps_in_block_numbers_are_filled(node):
    head = int(rpc(node, "eth_blockNumber")["result"], 16)
    blocks = simulate(node, {"blockStateCalls": [
        {"blockOverrides": {"number": hex(head + 4)},
         "calls": [{"from": SENDER.address, "to": "0x" + "01" * 20}]}]}, hex(head))
    assert [int(b["number"], 16) for b in blocks] == [head + 1, head + 2, head + 3, head + 4]
    assert [len(b["calls"]) for b in blocks] == [0, 0, 0, 1]


def test_validation_uses_the_spec_error_codes(node):
    nonce = int(rpc(node, "eth_getTransactionCount", SENDER.address, "latest")["result"], 16)
    base = {"from": SENDER.address, "to": "0x" + "02" * 20, "maxFeePerGas": hex(10**12),
            "maxPriorityFeePerGas": "0x1"}

    def error_of(call: dict) -> int:
        return simulate_error(node, {"blockStateCalls": [{"calls": [call]}],
                                     "validation": True})["code"]

    if nonce > 0:
        assert error_of({**base, "nonce": hex(nonce - 1)}) == -38010
    assert error_of({**base, "nonce": hex(nonce + 1)}) == -38011
    assert error_of({**base, "maxFeePerGas": "0x0", "maxPriorityFeePerGas": "0x0"}) == -38012
    assert error_of({**base, "gas": hex(20_000)}) == -38013
    assert error_of({**base, "value": hex(10**30)}) == -38014
    ok = simulate(node, {"blockStateCalls": [{"calls": [{**base, "nonce": hex(nonce)}]}],
                         "validation": True})
    assert ok[0]["calls"][0]["status"] == "0x1"
    assert int(ok[0]["baseFeePerGas"], 16) > 0  # with validation: the chain's next base fee


def test_trace_transfers_logs_value_moves(node):
    receiver = Account.create().address
    payload = {"blockStateCalls": [{"calls": [
        {"from": SENDER.address, "to": receiver, "value": hex(5)}]}]}
    assert simulate(node, payload)[0]["calls"][0]["logs"] == []
    [log] = simulate(node, {**payload, "traceTransfers": True})[0]["calls"][0]["logs"]
    assert log["address"] == ETH_LOG_ADDRESS and log["topics"][0] == TRANSFER_TOPIC
    assert log["topics"][1] == "0x" + SENDER.address[2:].lower().rjust(64, "0")
    assert log["topics"][2] == "0x" + receiver[2:].lower().rjust(64, "0")
    assert int(log["data"], 16) == 5


def test_moved_precompile(node):
    # SHA-256 moved to 0x...5a: the new address hashes, the old one is an empty account.
    target = "0x" + "00" * 19 + "5a"
    calls = [{"from": SENDER.address, "to": target, "input": "0x1234"},
             {"from": SENDER.address, "to": "0x" + "00" * 19 + "02", "input": "0x1234"}]
    [block] = simulate(node, {"blockStateCalls": [{
        "stateOverrides": {"0x" + "00" * 19 + "02": {"movePrecompileToAddress": target}},
        "calls": calls}]})
    assert block["calls"][0]["returnData"] == "0x" + hashlib.sha256(b"\x12\x34").hexdigest()
    assert block["calls"][1]["returnData"] == "0x"


SMALL_GAS_CAP = 3_000_000  # burning it in py-evm takes seconds, not the 50M default's minute


def test_the_gas_cap_is_a_budget_for_the_whole_request(node_factory, tmp_path):
    """rpc.gas_cap bounds the EVM work of one request, across all its blocks."""
    config = tmp_path / "laminar.toml"
    config.write_text(f"[rpc]\ngas_cap = {SMALL_GAS_CAP}\n")
    capped = node_factory("--config", str(config))
    looper = "0x" + "cd" * 20
    loop_code = "0x5b600056"  # JUMPDEST PUSH1 0 JUMP: burns whatever gas it gets
    block_gas = 2_000_000
    block = {"blockOverrides": {"gasLimit": hex(block_gas)},
             "calls": [{"from": SENDER.address, "to": looper}]}
    first = {**block, "stateOverrides": {looper: {"code": loop_code}}}
    two = simulate(capped, {"blockStateCalls": [first, block]})
    assert [c["error"]["code"] for b in two for c in b["calls"]] == [-32015, -32015]
    assert [int(b["calls"][0]["gasUsed"], 16) for b in two] == [block_gas,
                                                                 SMALL_GAS_CAP - block_gas]
    assert simulate_error(capped, {"blockStateCalls": [first, block, block]})["code"] == -38026


@pytest.mark.parametrize("payload, code", [
    ({}, INVALID_PARAMS),
    ({"blockStateCalls": "x"}, INVALID_PARAMS),
    ({"blockStateCalls": [{"calls": [{"from": "0x12"}]}]}, INVALID_PARAMS),
    ({"blockStateCalls": [{"stateOverrides": {"0x" + "01" * 20: {
        "state": {}, "stateDiff": {}}}}]}, INVALID_PARAMS),
    ({"blockStateCalls": [{"stateOverrides": {"0x" + "01" * 20: {
        "stateDiff": {"0x01": word(1)}}}}]}, INVALID_PARAMS),
    ({"blockStateCalls": [{"calls": [{"gasPrice": "0x1", "maxFeePerGas": "0x1"}]}]},
     INVALID_PARAMS),
    ({"blockStateCalls": [{}], "validation": "yes"}, INVALID_PARAMS),
    ({"blockStateCalls": [{}] * (MAX_SIMULATED_BLOCKS + 1)}, -38026),
    ({"blockStateCalls": [{"blockOverrides": {"number": "0x1"}}]}, -38020),
])
def test_bad_simulate_params(node, payload, code):
    assert simulate_error(node, payload)["code"] == code
    assert "result" in rpc(node, "eth_blockNumber")  # still serving
