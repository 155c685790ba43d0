"""GET /metrics on the RPC port of a real node: Prometheus text, the listed series with
their types, and values that agree with what JSON-RPC says about the same node."""

from __future__ import annotations

import requests
from conftest import DEV_KEYS
from eth_account import Account
from eth_utils import to_checksum_address
from prometheus_client.parser import text_string_to_metric_families

HTTP_TIMEOUT_S = 30
DEV = Account.from_key(DEV_KEYS[0])
SINK = to_checksum_address("0x" + "5e" * 20)
TRANSFERS = 3
CHAIN_ID_CALLS = 5
GWEI = 10**9

EXPECTED_TYPES = {
    "laminar_head_height": "gauge",
    "laminar_mempool_transactions": "gauge",
    "laminar_peers": "gauge",
    "laminar_block_interval_seconds": "histogram",
    "laminar_block_transactions": "histogram",
    "laminar_block_execution_seconds": "histogram",
    "laminar_blockstm_incarnations_per_transaction": "histogram",
    "laminar_blockstm_fallbacks": "counter",
    "laminar_consensus_rounds_per_height": "histogram",
    "laminar_rpc_requests": "counter",
    "laminar_rpc_errors": "counter",
}


def rpc_reply(url: str, method: str, *params) -> dict:
    return requests.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
        timeout=HTTP_TIMEOUT_S,
    ).json()


def rpc(url: str, method: str, *params):
    reply = rpc_reply(url, method, *params)
    assert "error" not in reply, (method, reply)
    return reply["result"]


def scrape(url: str) -> dict:
    """name -> (type, {(sample name, labels): value})"""
    response = requests.get(url + "/metrics", timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {}
    for family in text_string_to_metric_families(response.text):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        families[family.name] = (family.type, samples)
    return families


def value(families: dict, family: str, sample: str, **labels) -> float:
    return families[family][1][(sample, tuple(sorted(labels.items())))]


def send(url: str, nonce: int, base_fee: int) -> str:
    signed = DEV.sign_transaction({
        "chainId": int(rpc(url, "eth_chainId"), 16), "nonce": nonce, "to": SINK, "value": 1,
        "gas": 21_000, "maxFeePerGas": 2 * base_fee + GWEI, "maxPriorityFeePerGas": GWEI,
    })
    return rpc(url, "eth_sendRawTransaction", "0x" + signed.raw_transaction.hex())


def wait_receipt(url: str, tx_hash: str) -> dict:
    from test_dev_api import wait_until

    return wait_until(lambda: rpc(url, "eth_getTransactionReceipt", tx_hash), "receipt")


def test_metrics_agree_with_rpc(dev_node):
    url = dev_node.url
    base_fee = int(rpc(url, "eth_getBlockByNumber", "latest", False)["baseFeePerGas"], 16)
    for nonce in range(TRANSFERS):
        wait_receipt(url, send(url, nonce, base_fee))
    rpc(url, "evm_mine")  # an empty block too
    # One transaction pending, one queued behind a nonce gap (automine off).
    rpc(url, "evm_setAutomine", False)
    send(url, TRANSFERS, base_fee)
    send(url, TRANSFERS + 2, base_fee)
    for _ in range(CHAIN_ID_CALLS):
        rpc(url, "eth_chainId")
    assert "error" in rpc_reply(url, "eth_getBalance", "0x1234")
    assert "error" in rpc_reply(url, "made_upMethod")
    assert "error" in rpc_reply(url, "made_upMethod")

    families = scrape(url)
    for name, kind in EXPECTED_TYPES.items():
        assert name in families, f"{name} missing from /metrics"
        assert families[name][0] == kind, (name, families[name][0])

    head = int(rpc(url, "eth_blockNumber"), 16)
    assert value(families, "laminar_head_height", "laminar_head_height") == head
    status = rpc(url, "laminar_mempoolStatus")
    assert status == {"pending": "0x1", "queued": "0x1"}
    assert value(families, "laminar_mempool_transactions", "laminar_mempool_transactions",
                 state="pending") == 1
    assert value(families, "laminar_mempool_transactions", "laminar_mempool_transactions",
                 state="queued") == 1
    assert value(families, "laminar_peers", "laminar_peers") == int(rpc(url, "net_peerCount"), 16)

    # Every block above genesis was committed by this process.
    blocks = [rpc(url, "eth_getBlockByNumber", hex(n), False) for n in range(head + 1)]
    txs = sum(len(b["transactions"]) for b in blocks)
    assert txs == TRANSFERS
    name = "laminar_block_transactions"
    assert value(families, name, name + "_count") == head
    assert value(families, name, name + "_sum") == txs
    name = "laminar_block_interval_seconds"
    assert value(families, name, name + "_count") == head
    assert value(families, name, name + "_sum") == \
        int(blocks[-1]["timestamp"], 16) - int(blocks[0]["timestamp"], 16)
    name = "laminar_consensus_rounds_per_height"  # single validator: every height round 0
    assert value(families, name, name + "_count") == head
    assert value(families, name, name + "_sum") == head

    stats = rpc(url, "laminar_executionStats")
    assert len(stats) == head
    name = "laminar_block_execution_seconds"
    for executor in {s["executor"] for s in stats}:
        assert value(families, name, name + "_count", executor=executor) == \
            sum(1 for s in stats if s["executor"] == executor)
    blockstm = [s for s in stats if s["executor"] == "blockstm" and s["transactions"]]
    assert value(families, "laminar_blockstm_fallbacks", "laminar_blockstm_fallbacks_total") \
        == sum(1 for s in blockstm if s["fallback"])
    name = "laminar_blockstm_incarnations_per_transaction"
    assert value(families, name, name + "_count") == sum(1 for s in blockstm if not s["fallback"])

    name = "laminar_rpc_requests"
    # This scrape's calls came after it; eth_chainId: the five above and one per send.
    assert value(families, name, name + "_total", method="eth_chainId") \
        == CHAIN_ID_CALLS + TRANSFERS + 2
    assert value(families, name, name + "_total", method="evm_setAutomine") == 1
    assert value(families, name, name + "_total", method="other") == 2
    assert value(families, "laminar_rpc_errors", "laminar_rpc_errors_total",
                 method="eth_getBalance") == 1
    assert value(families, "laminar_rpc_errors", "laminar_rpc_errors_total", method="other") == 2
    labels = {dict(key[1]).get("method") for key in families[name][1]}
    assert "made_upMethod" not in labels
    assert ("laminar_rpc_errors_total", (("method", "eth_chainId"),)) \
        not in families["laminar_rpc_errors"][1]

    # The JSON-RPC endpoint itself is unchanged, and only GET reads /metrics.
    assert requests.post(url + "/metrics", timeout=HTTP_TIMEOUT_S).status_code == 405
    assert rpc(url, "eth_blockNumber") == hex(head)
