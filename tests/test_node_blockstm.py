"""The node executes its blocks with Block-STM by default, and its worker processes go
away with it, even when it is killed with SIGKILL."""

from __future__ import annotations

import psutil
import pytest
import requests
from eth_account import Account
from web3 import Web3

from node.genesis import dev_accounts

SINK = "0x000000000000000000000000000000000000dEaD"
# One transaction from each of the ten dev accounts: independent transactions (distinct
# senders, value credits to a code-less account commute), so the block runs on the
# workers rather than hitting the contended-block fallback.
DEV_KEYS = [account.private_key for account in dev_accounts()]
TXS_PER_SENDER = 1
WORKER_EXIT_TIMEOUT_S = 30


def _send_burst(w3: Web3) -> list:
    hashes = []
    for key in DEV_KEYS:
        sender = Account.from_key(key)
        nonce = w3.eth.get_transaction_count(sender.address, "pending")
        for i in range(TXS_PER_SENDER):
            tx = {
                "to": SINK, "value": 1 + i, "nonce": nonce + i, "chainId": 31337, "gas": 21000,
                "maxFeePerGas": 5 * 10**9, "maxPriorityFeePerGas": 10**9,
            }
            hashes.append(w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction))
    return hashes


def _rpc(url: str, method: str, *params):
    reply = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=30)
    return reply.json()["result"]


@pytest.mark.slow
def test_node_builds_its_blocks_on_blockstm_by_default(node_factory):
    node = node_factory(block_time="1.0")  # one block gathers the whole burst
    # The default executor imports other validators' blocks from their access lists and
    # builds its own blocks (and their lists) with Block-STM.
    assert "execution: bal (" in node.text()
    w3 = Web3(Web3.HTTPProvider(node.url))
    before = w3.eth.get_balance(SINK)
    receipts = [w3.eth.wait_for_transaction_receipt(h, timeout=60) for h in _send_burst(w3)]
    assert all(r.status == 1 for r in receipts)
    expected = sum(1 + i for i in range(TXS_PER_SENDER)) * len(DEV_KEYS)
    assert w3.eth.get_balance(SINK) - before == expected

    stats = _rpc(node.url, "laminar_executionStats")
    mined = {r.blockNumber for r in receipts}
    parallel = [
        s for s in stats
        if int(s["number"], 16) in mined and s["executor"] == "blockstm" and not s["fallback"]
    ]
    assert parallel, f"no block of the burst ran on Block-STM workers: {stats}"
    assert all(s["workers"] >= 2 and s["incarnations"] >= s["transactions"] for s in parallel)

    # The worker processes die with the node, even on SIGKILL (no orphans left behind).
    children = psutil.Process(node.process.pid).children(recursive=True)
    assert children, "Block-STM workers should be child processes of the node"
    node.kill()
    _gone, alive = psutil.wait_procs(children, timeout=WORKER_EXIT_TIMEOUT_S)
    assert not alive, f"worker processes outlived the killed node: {alive}"
