"""web3.py against the methods added for the JSON-RPC issue, over HTTP and over WebSocket:
block receipts, proofs, traces and dev-chain snapshots answer the same through both
transports, and what they say agrees with the chain."""

from __future__ import annotations

import asyncio

import pytest
import rlp
from conftest import DEV_KEYS, start_node
from eth_account import Account
from trie import HexaryTrie
from web3 import AsyncHTTPProvider, AsyncWeb3, WebSocketProvider

CHAIN_ID = 31337
TRANSFER_GAS = 21_000
TIMEOUT_S = 20
SENDER = Account.from_key(DEV_KEYS[2])


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = start_node(tmp_path_factory.mktemp("web3-new-methods"))
    yield process
    process.kill()


async def transfer(w3: AsyncWeb3, value: int) -> dict:
    base = (await w3.eth.get_block("latest"))["baseFeePerGas"]
    tx = {
        "chainId": CHAIN_ID, "to": b"\xab" * 20, "value": value, "gas": TRANSFER_GAS,
        "nonce": await w3.eth.get_transaction_count(SENDER.address, "pending"),
        "maxFeePerGas": 2 * base + 10**9, "maxPriorityFeePerGas": 10**9,
    }
    tx_hash = await w3.eth.send_raw_transaction(SENDER.sign_transaction(tx).raw_transaction)
    return await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=TIMEOUT_S, poll_latency=0.05)


async def exercise(w3: AsyncWeb3) -> dict:
    receipt = await transfer(w3, 12345)
    number = receipt["blockNumber"]
    # eth_getBlockReceipts: the block's receipts are the per-transaction receipts
    block_receipts = await w3.eth.get_block_receipts(number)
    assert receipt in block_receipts
    # eth_getProof: verified against the block's state root with py-trie, not our code
    block = await w3.eth.get_block(number)
    # (AsyncEth has no get_proof in web3 8: the request goes through the same provider)
    proof = (await w3.provider.make_request("eth_getProof", [SENDER.address, [], hex(number)]))["result"]
    key = bytes(w3.keccak(hexstr=SENDER.address))
    nodes = [rlp.decode(bytes.fromhex(n[2:])) for n in proof["accountProof"]]
    account = HexaryTrie.get_from_proof(bytes(block["stateRoot"]), key, nodes)
    nonce, balance, _storage_root, _code_hash = rlp.decode(account)
    chain_balance = await w3.eth.get_balance(SENDER.address, number)
    assert int.from_bytes(balance, "big") == int(proof["balance"], 16) == chain_balance
    assert int.from_bytes(nonce, "big") == int(proof["nonce"], 16)
    # debug_traceTransaction (callTracer): the receipt's gas and the transfer's value
    trace = (await w3.provider.make_request(
        "debug_traceTransaction", [receipt["transactionHash"].to_0x_hex(), {"tracer": "callTracer"}]
    ))["result"]
    assert int(trace["gasUsed"], 16) == receipt["gasUsed"] and int(trace["value"], 16) == 12345
    # evm_snapshot / evm_revert: the chain goes back to the snapshot's block
    snapshot = (await w3.provider.make_request("evm_snapshot", []))["result"]
    later = await transfer(w3, 1)
    assert later["blockNumber"] > number
    assert (await w3.provider.make_request("evm_revert", [snapshot]))["result"] is True
    assert await w3.eth.block_number == number
    assert (await w3.provider.make_request("evm_revert", [snapshot]))["result"] is False  # used up
    return {"receipts": len(block_receipts), "proof_nodes": len(proof["accountProof"])}


def run(make_w3):
    async def body():
        w3 = make_w3()
        if isinstance(w3.provider, WebSocketProvider):
            async with w3 as connected:
                return await exercise(connected)
        try:
            return await exercise(w3)
        finally:
            await w3.provider.disconnect()

    return asyncio.run(asyncio.wait_for(body(), timeout=120))


def test_new_methods_over_http_and_websocket(node):
    over_http = run(lambda: AsyncWeb3(AsyncHTTPProvider(node.url)))
    over_ws = run(lambda: AsyncWeb3(WebSocketProvider(node.ws_url)))
    assert over_http["receipts"] == over_ws["receipts"] == 1
    assert over_http["proof_nodes"] >= 1 and over_ws["proof_nodes"] >= 1
