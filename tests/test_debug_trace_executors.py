"""The traces of a block do not depend on the executor that committed it.

Three dev nodes, run with --executor sequential, blockstm and bal, get the same signed
transactions (the TraceCaller/TraceCallee contracts and calls that nest, revert and
create), sent in one batch so blocks carry several. Every transaction's callTracer and
struct-logger trace, read block by block, must be the same on all three, and the same as
debug_traceTransaction gives for it alone (which replays the block up to it); on each
node, a block's prestateTracer diffs must be each transaction's own, not the block's.
"""

from __future__ import annotations

import requests
import rlp
from conftest import DEV_KEYS
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from test_debug_trace import CHAIN_ID, FEES, GAS, SALT, compile_contract
from web3 import Web3

EXECUTORS = ("sequential", "blockstm", "bal")
SENDER = Account.from_key(DEV_KEYS[2])
RECEIPT_TIMEOUT_S = 30
POLL_S = 0.05
TRACERS = ({"tracer": "callTracer", "tracerConfig": {"withLog": True}}, {})
# Fees (hence balances) depend on how transactions fell into blocks, which differs from
# node to node: the prestate is compared only between a block's trace and each
# transaction's own, on one node.
PRESTATE_DIFF = {"tracer": "prestateTracer", "tracerConfig": {"diffMode": True}}


def selector(signature: str) -> str:
    return keccak(text=signature)[:4].hex()


def signed_transactions() -> list[bytes]:
    callee_out, caller_out = compile_contract("TraceCallee"), compile_contract("TraceCaller")
    sender = bytes.fromhex(SENDER.address[2:])
    callee = keccak(rlp.encode([sender, 0]))[12:]
    caller = keccak(rlp.encode([sender, 1]))[12:]
    datas = [
        callee_out["bytecode"],
        caller_out["bytecode"] + abi_encode(["address"], [callee]).hex(),
    ]
    calls = [
        ("run(uint256)", ["uint256"], [5]),
        ("try_failing(uint256)", ["uint256"], [50]),
        ("run_failing(uint256)", ["uint256"], [50]),
        ("spawn(bytes32)", ["bytes32"], [SALT]),
        ("run(uint256)", ["uint256"], [8]),
    ]
    txs = [{"data": data} for data in datas] + [
        {"to": to_checksum_address("0x" + caller.hex()), "data": "0x" + selector(sig) + abi_encode(types, args).hex()}
        for sig, types, args in calls
    ]
    return [
        Account.sign_transaction(
            {"chainId": CHAIN_ID, "gas": GAS, **FEES, "nonce": nonce, **tx}, SENDER.key
        ).raw_transaction
        for nonce, tx in enumerate(txs)
    ]


def traces_by_tx(w3: Web3, hashes: list[str]) -> dict:
    receipts = [
        w3.eth.wait_for_transaction_receipt(h, timeout=RECEIPT_TIMEOUT_S, poll_latency=POLL_S)
        for h in hashes
    ]
    traces: dict = {}
    for number in sorted({r.blockNumber for r in receipts}):
        for config in (*TRACERS, PRESTATE_DIFF):
            response = w3.provider.make_request("debug_traceBlockByNumber", [hex(number), config])
            assert "result" in response, response
            for entry in response["result"]:
                traces[(entry["txHash"], str(config))] = entry["result"]
    for tx_hash in hashes:
        for config in (*TRACERS, PRESTATE_DIFF):
            alone = w3.provider.make_request("debug_traceTransaction", [tx_hash, config])
            assert alone["result"] == traces[(tx_hash, str(config))]
    return {
        key: value for key, value in traces.items()
        if key[0] in hashes and key[1] != str(PRESTATE_DIFF)
    }


def test_block_traces_are_the_same_whichever_executor_committed_them(node_factory):
    raw = signed_transactions()
    hashes = ["0x" + keccak(tx).hex() for tx in raw]
    results = {}
    for executor in EXECUTORS:
        node = node_factory("--executor", executor)
        batch = [
            {"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": ["0x" + tx.hex()]}
            for i, tx in enumerate(raw)
        ]
        answers = requests.post(node.url, json=batch, timeout=30).json()
        assert all("result" in a for a in answers), answers
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
        results[executor] = traces_by_tx(w3, hashes)
        assert f"execution: {executor}" in node.text()
    assert len(results["sequential"]) == len(hashes) * len(TRACERS)
    assert results["sequential"] == results["blockstm"] == results["bal"]
    statuses = {
        key[0]: value.get("error") for key, value in results["bal"].items() if "tracer" in key[1]
    }
    assert list(statuses.values()).count("execution reverted") == 1  # run_failing
