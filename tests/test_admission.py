"""Admission workers (node/admission.py): a JSON-RPC batch of eth_sendRawTransaction is
checked in worker processes and answered exactly as the calls one by one on the event
loop; a worker killed with SIGKILL fails no request.

The node tests run two real nodes, one with an admission worker and one with
`admission_workers = 0`, send both the same batch of good and bad transactions, and
compare every answer and the pools they end with."""

from __future__ import annotations

import os
import signal

import pytest
import requests
import rlp
import trio
from conftest import DEV_KEYS, start_node
from eth.vm.forks.prague import PragueVM
from eth_account import Account
from prometheus_client.parser import text_string_to_metric_families
from rpc_client import CHAIN_ID, GWEI, HTTP_TIMEOUT_S, TRANSFER_GAS

from node.admission import AdmissionWorkers, check_all
from node.mempool import CheckedTransaction, MempoolConfig, StatelessChecks

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
IDLE_BLOCK_TIME_S = "600"  # one block at start, then the pool keeps what it is sent
SENDER = Account.from_key(DEV_KEYS[2])
LEGACY_SENDER = Account.from_key(DEV_KEYS[3])
RECIPIENT = "0x" + "42" * 20
FEES = {"maxFeePerGas": 100 * GWEI, "maxPriorityFeePerGas": GWEI}
CHAINED_TRANSFERS = 12


def transfer(nonce: int, value: int = 1, chain_id: int = CHAIN_ID, **fields) -> str:
    tx = {"chainId": chain_id, "nonce": nonce, "to": RECIPIENT, "value": value,
          "gas": TRANSFER_GAS, **FEES, **fields}
    return "0x" + Account.sign_transaction(tx, SENDER.key).raw_transaction.hex()


def high_s(raw_hex: str) -> str:
    """The same dynamic-fee transaction with the other valid-curve signature (s -> n - s):
    it recovers, but EIP-2 forbids it."""
    raw = bytes.fromhex(raw_hex[2:])
    fields = rlp.decode(raw[1:])
    y_parity, s = int.from_bytes(fields[9], "big"), int.from_bytes(fields[11], "big")
    fields[9] = rlp.sedes.big_endian_int.serialize(1 - y_parity)
    fields[11] = (SECP256K1_ORDER - s).to_bytes(32, "big")
    return "0x" + (raw[:1] + rlp.encode(fields)).hex()


def mixed_batch() -> list[dict]:
    sends = [transfer(nonce) for nonce in range(CHAINED_TRANSFERS)]
    params = [[raw] for raw in sends] + [
        [sends[3]],                        # already known
        [transfer(5, value=2)],            # same nonce, same fees: underpriced replacement
        [transfer(0, chain_id=1)],         # another chain
        ["0xc3010203"],                    # an RLP list, not a transaction
        ["0xzz"],                          # not hex
        [],                                # no transaction at all
    ]
    calls = [{"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": p}
             for i, p in enumerate(params)]
    legacy = Account.sign_transaction(
        {"chainId": CHAIN_ID, "nonce": 0, "to": RECIPIENT, "value": 1, "gas": TRANSFER_GAS,
         "gasPrice": 100 * GWEI}, LEGACY_SENDER.key)
    calls += [
        {"jsonrpc": "2.0", "id": "chain", "method": "eth_chainId"},  # ends the run of sends
        {"jsonrpc": "2.0", "id": "legacy", "method": "eth_sendRawTransaction",
         "params": ["0x" + legacy.raw_transaction.hex()]},
        {"jsonrpc": "2.0", "id": "high-s", "method": "eth_sendRawTransaction",
         "params": [high_s(transfer(CHAINED_TRANSFERS + 1))]},
        # a notification: admitted, not answered
        {"jsonrpc": "2.0", "method": "eth_sendRawTransaction",
         "params": [transfer(CHAINED_TRANSFERS)]},
    ]
    return calls


def post(url: str, body) -> list | dict:
    response = requests.post(url, json=body, timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 200, response.text
    return response.json()


def admission_counts(url: str) -> dict[str, float]:
    text = requests.get(url + "/metrics", timeout=HTTP_TIMEOUT_S).text
    for family in text_string_to_metric_families(text):
        if family.name == "laminar_admission_checked_transactions":
            return {s.labels["where"]: s.value for s in family.samples if s.name.endswith("_total")}
    raise AssertionError("laminar_admission_checked_transactions missing from /metrics")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    inline_config = tmp_path_factory.mktemp("inline-config") / "config.toml"
    inline_config.write_text("[mempool]\nadmission_workers = 0\n")
    with_workers = start_node(tmp_path_factory.mktemp("workers"), block_time=IDLE_BLOCK_TIME_S)
    inline = start_node(
        tmp_path_factory.mktemp("inline"), "--config", str(inline_config),
        block_time=IDLE_BLOCK_TIME_S,
    )
    yield with_workers, inline
    with_workers.kill()
    inline.kill()


def test_a_batch_checked_in_workers_answers_as_calls_one_by_one(nodes):
    with_workers, inline = nodes
    batch = mixed_batch()
    answers = post(with_workers.url, batch)
    assert answers == post(inline.url, batch)

    by_id = {answer["id"]: answer for answer in answers}
    assert len(answers) == len(batch) - 1  # the notification is not answered
    for nonce in range(CHAINED_TRANSFERS):
        assert by_id[nonce]["result"].startswith("0x") and len(by_id[nonce]["result"]) == 66
    messages = {key: by_id[key]["error"]["message"] for key in by_id if "error" in by_id[key]}
    assert messages[CHAINED_TRANSFERS].startswith("already known")
    assert messages[CHAINED_TRANSFERS + 1].startswith("replacement transaction underpriced")
    assert messages[CHAINED_TRANSFERS + 2].startswith("invalid chain id")
    assert "invalid transaction" in messages[CHAINED_TRANSFERS + 3]
    assert by_id[CHAINED_TRANSFERS + 4]["error"]["code"] == -32602  # bad hex: invalid params
    assert "missing value" in messages[CHAINED_TRANSFERS + 5]
    assert by_id["chain"]["result"] == hex(CHAIN_ID)
    assert "result" in by_id["legacy"]
    assert "invalid signature values" in messages["high-s"]

    pool = {"jsonrpc": "2.0", "id": 1, "method": "txpool_content"}
    content = post(with_workers.url, pool)["result"]
    assert content == post(inline.url, pool)["result"]
    pending = content["pending"][SENDER.address]
    assert sorted(int(nonce) for nonce in pending) == list(range(CHAINED_TRANSFERS + 1))

    # The first run of sends went to the worker (16 calls with hex params), the three
    # after eth_chainId are too few to ship; the other node checked all 19 inline.
    assert admission_counts(with_workers.url) == {"workers": 16.0, "inline": 3.0}
    assert admission_counts(inline.url) == {"workers": 0.0, "inline": 19.0}


def _raws(count: int) -> list[bytes]:
    good = [bytes.fromhex(transfer(nonce)[2:]) for nonce in range(count)]
    bad = [b"", b"\x01\x02", bytes.fromhex(transfer(0, chain_id=1)[2:]),
           bytes.fromhex(high_s(transfer(1))[2:])]
    return good[:count // 2] + bad + good[count // 2:]


def _comparable(outcomes) -> list:
    return [
        (outcome.raw, outcome.hash, outcome.sender, outcome.tx.nonce)
        if isinstance(outcome, CheckedTransaction) else str(outcome)
        for outcome in outcomes
    ]


async def test_a_killed_worker_fails_no_check():
    checks = StatelessChecks(MempoolConfig(chain_id=CHAIN_ID), PragueVM)
    raws = _raws(40)
    expected = _comparable(check_all(checks, raws))
    admission = AdmissionWorkers(checks, workers=1)
    try:
        assert _comparable(await admission.check_many(raws)) == expected
        assert admission.checked_in_workers == len(raws)
        (pid,) = admission.worker_pids()
        os.kill(pid, signal.SIGKILL)
        # The dead worker's batch is checked inline, with the same answers...
        assert _comparable(await admission.check_many(raws)) == expected
        assert admission.checked_inline == len(raws)
        # ...and the next batch goes to a new worker.
        assert _comparable(await admission.check_many(raws)) == expected
        assert admission.checked_in_workers == 2 * len(raws)
        assert admission.worker_pids() and admission.worker_pids() != [pid]
    finally:
        await trio.to_thread.run_sync(admission.close)
