"""Crash safety against real `laminar node` processes: clean restarts resume the chain,
SIGKILL at random moments under load loses nothing a client saw committed, and a data
dir cannot be opened by two nodes at once.

Set LAMINAR_CRASH_SEED to replay one randomized kill schedule.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

import pytest
import requests
from conftest import DEV_KEYS, LAMINAR, REPO_ROOT
from eth_account import Account
from eth_utils import to_checksum_address

pytestmark = pytest.mark.slow

CHAIN_ID = 31337
GWEI = 10**9
DEV_BALANCE = 10_000 * 10**18
HTTP_TIMEOUT = 10
WAIT_TIMEOUT_S = 30
KILL_CYCLES = 5
WINDOW = 8  # unmined txs each sender keeps in flight

SENDERS = [Account.from_key(k) for k in DEV_KEYS]
# Fresh recipients (not precompiles, not funded): their balance is exactly what they got.
RECIPIENTS = [to_checksum_address(f"0x{0xC0FFEE << 136 | index:040x}") for index in range(len(SENDERS))]


def rpc(url: str, method: str, *params, session=requests):
    reply = session.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
        timeout=HTTP_TIMEOUT,
    ).json()
    assert "error" not in reply, (method, params, reply)
    return reply["result"]


def rpc_batch(url: str, calls: list[tuple[str, list]], chunk: int = 100) -> list:
    """Results of `calls`, sent as JSON-RPC batches of at most `chunk` (the node's cap)."""
    results = []
    for start in range(0, len(calls), chunk):
        part = calls[start:start + chunk]
        body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(part)]
        replies = requests.post(url, json=body, timeout=HTTP_TIMEOUT).json()
        replies.sort(key=lambda reply: reply["id"])
        for reply in replies:
            assert "error" not in reply, reply
        results.extend(reply["result"] for reply in replies)
    return results


def transfer(account, nonce: int, to: str, value: int) -> bytes:
    return bytes(account.sign_transaction({
        "type": 2, "chainId": CHAIN_ID, "nonce": nonce, "to": to, "value": value,
        "gas": 21_000, "maxFeePerGas": 10 * GWEI, "maxPriorityFeePerGas": 1 * GWEI,
    }).raw_transaction)


def wait_for_receipt(url: str, tx_hash: str) -> dict:
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while (receipt := rpc(url, "eth_getTransactionReceipt", tx_hash)) is None:  # live RPC poll
        assert time.monotonic() < deadline, f"{tx_hash} not mined"
    return receipt


def head_summary(url: str) -> dict:
    head = rpc(url, "eth_getBlockByNumber", "latest", False)
    return {key: head[key] for key in ("number", "hash", "stateRoot", "transactionsRoot", "receiptsRoot")}


# ---- (a) clean restart ----------------------------------------------------------------


def test_sigterm_restart_resumes_chain(node_factory, tmp_path):
    datadir = tmp_path / "resume"
    node = node_factory(datadir=datadir)
    sender = SENDERS[0]
    hashes = [
        rpc(node.url, "eth_sendRawTransaction", "0x" + transfer(sender, n, RECIPIENTS[0], 1000 + n).hex())
        for n in range(3)
    ]
    receipts = [wait_for_receipt(node.url, h) for h in hashes]
    before = head_summary(node.url)
    assert int(before["number"], 16) >= max(int(r["blockNumber"], 16) for r in receipts)
    watched = [a.address for a in SENDERS] + RECIPIENTS
    balances = {a: rpc(node.url, "eth_getBalance", a, "latest") for a in watched}
    commit = rpc(node.url, "laminar_getCommit", "latest")
    assert rpc(node.url, "eth_getTransactionCount", sender.address, "latest") == "0x3"

    assert node.stop() == 0, node.text()
    restarted = node_factory(datadir=datadir)
    assert "wrote genesis block" not in restarted.text()
    assert head_summary(restarted.url) == before
    assert {a: rpc(restarted.url, "eth_getBalance", a, "latest") for a in watched} == balances
    assert balances[RECIPIENTS[0]] == hex(1000 + 1001 + 1002)
    assert rpc(restarted.url, "laminar_getCommit", "latest") == commit
    for tx_hash, receipt in zip(hashes, receipts):
        assert rpc(restarted.url, "eth_getTransactionReceipt", tx_hash) == receipt

    # The chain continues: the nonce goes on from 3 and the next block extends the old head.
    assert rpc(restarted.url, "eth_getTransactionCount", sender.address, "pending") == "0x3"
    next_hash = rpc(restarted.url, "eth_sendRawTransaction",
                    "0x" + transfer(sender, 3, RECIPIENTS[0], 7).hex())
    receipt = wait_for_receipt(restarted.url, next_hash)
    assert int(receipt["blockNumber"], 16) == int(before["number"], 16) + 1
    block = rpc(restarted.url, "eth_getBlockByNumber", receipt["blockNumber"], False)
    assert block["parentHash"] == before["hash"]
    assert rpc(restarted.url, "eth_getTransactionCount", sender.address, "latest") == "0x4"


# ---- (b) SIGKILL under load -------------------------------------------------------------


@dataclass
class Stream:
    """Sender threads streaming transfers into one node until stopped or the node dies."""

    url: str
    rng: random.Random
    killed: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen_receipts: dict = field(default_factory=dict)  # across all cycles: hash -> receipt
    errors: list = field(default_factory=list)
    sent: int = 0
    threads: list = field(default_factory=list)

    def start(self) -> None:
        for index, account in enumerate(SENDERS):
            values = [self.rng.randint(1, 10**15) for _ in range(10_000)]
            thread = threading.Thread(
                target=self._send, args=(account, RECIPIENTS[index], values), daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def halt(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=WAIT_TIMEOUT_S)
            assert not thread.is_alive()
        self.threads.clear()

    def max_seen_block(self) -> int:
        with self.lock:
            return max((int(r["blockNumber"], 16) for r in self.seen_receipts.values()), default=0)

    def _send(self, account, recipient: str, values: list[int]) -> None:
        session = requests.Session()
        try:
            nonce = int(rpc(self.url, "eth_getTransactionCount", account.address, "latest",
                            session=session), 16)
            in_flight: deque[str] = deque()
            while not self.stop.is_set():
                if len(in_flight) < WINDOW:
                    raw = transfer(account, nonce, recipient, values[nonce % len(values)])
                    in_flight.append(rpc(self.url, "eth_sendRawTransaction", "0x" + raw.hex(),
                                         session=session))
                    nonce += 1
                    with self.lock:
                        self.sent += 1
                    continue
                receipt = rpc(self.url, "eth_getTransactionReceipt", in_flight[0], session=session)
                if receipt is not None:
                    with self.lock:
                        self.seen_receipts[in_flight.popleft()] = receipt
        except (requests.RequestException, ValueError) as exc:
            if not self.killed.is_set():  # only the kill may break the connection
                self.errors.append(exc)
        except BaseException as exc:
            self.errors.append(exc)


def verify_chain(url: str, min_head: int, seen_receipts: dict, context: str) -> int:
    """Check the restarted chain against everything the client saw; returns the head."""
    head = int(rpc(url, "eth_blockNumber"), 16)
    assert head >= min_head, f"{context}: head {head} < {min_head} observed before the kill"
    spent, received, tips, mined = defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(int)
    parent = rpc(url, "eth_getBlockByNumber", "0x0", False)
    blocks = rpc_batch(url, [("eth_getBlockByNumber", [hex(n), True]) for n in range(1, head + 1)])
    assert all(blocks), f"{context}: blocks missing below the head"
    all_receipts = iter(rpc_batch(url, [
        ("eth_getTransactionReceipt", [tx["hash"]]) for block in blocks for tx in block["transactions"]
    ]))
    for number, block in enumerate(blocks, start=1):
        assert block["number"] == hex(number)
        assert block["parentHash"] == parent["hash"], f"{context}: block {number} not linked"
        receipts = [next(all_receipts) for _ in block["transactions"]]
        base_fee = int(block["baseFeePerGas"], 16)
        for index, (tx, receipt) in enumerate(zip(block["transactions"], receipts)):
            assert receipt is not None, f"{context}: receipt of {tx['hash']} missing"
            assert (receipt["blockHash"], receipt["transactionIndex"]) == (block["hash"], hex(index))
            assert receipt["status"] == "0x1"
            price, gas_used = int(receipt["effectiveGasPrice"], 16), int(receipt["gasUsed"], 16)
            spent[tx["from"].lower()] += int(tx["value"], 16) + gas_used * price
            received[tx["to"].lower()] += int(tx["value"], 16)
            tips[block["miner"].lower()] += gas_used * (price - base_fee)
            mined[tx["from"].lower()] += 1
        parent = block

    # The head's state root is readable and agrees with every receipt.
    for account in SENDERS:
        address = account.address.lower()
        assert int(rpc(url, "eth_getBalance", account.address, "latest"), 16) == (
            DEV_BALANCE - spent[address] + received[address]
        ), f"{context}: balance of {account.address}"
        assert rpc(url, "eth_getTransactionCount", account.address, hex(head)) == hex(mined[address])
    for recipient in RECIPIENTS:
        assert int(rpc(url, "eth_getBalance", recipient, hex(head)), 16) == received[recipient.lower()]
    for miner, tip_total in tips.items():
        assert int(rpc(url, "eth_getBalance", miner, "latest"), 16) == tip_total

    hashes = list(seen_receipts)
    now = rpc_batch(url, [("eth_getTransactionReceipt", [h]) for h in hashes])
    stale = {h: seen_receipts[h] for h, receipt in zip(hashes, now) if receipt != seen_receipts[h]}
    assert not stale, f"{context}: receipts seen before the kill changed or vanished: {stale}"
    return head


def test_sigkill_under_load_loses_nothing_committed(node_factory, tmp_path):
    seed = int(os.environ.get("LAMINAR_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    datadir = tmp_path / "crashy"
    observed_head = 0
    seen_receipts: dict = {}
    for cycle in range(KILL_CYCLES):
        context = f"seed={seed} cycle={cycle}"
        node = node_factory(datadir=datadir)
        if cycle:
            assert "wrote genesis block" not in node.text(), context
        head = verify_chain(node.url, observed_head, seen_receipts, context)

        stream = Stream(node.url, rng, seen_receipts=seen_receipts)
        stream.start()
        # Kill at a random point: once the head reaches a random height, after a random
        # number of further head polls (which spreads the kill over the block interval).
        target = head + rng.randint(2, 5)
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while (observed := int(rpc(node.url, "eth_blockNumber"), 16)) < target:
            assert time.monotonic() < deadline and not stream.errors, (context, stream.errors)
        for _ in range(rng.randint(0, 40)):
            observed = int(rpc(node.url, "eth_blockNumber"), 16)
        stream.killed.set()
        node.kill()
        stream.halt()
        assert not stream.errors, (context, stream.errors)
        observed_head = max(observed, stream.max_seen_block())
        assert observed_head > head, context

    node = node_factory(datadir=datadir)
    final_head = verify_chain(node.url, observed_head, seen_receipts, f"seed={seed} final")
    assert final_head >= KILL_CYCLES * 2
    assert len(seen_receipts) >= KILL_CYCLES
    # Still a working chain after all that: a new transfer is mined on top.
    sender = SENDERS[0]
    nonce = int(rpc(node.url, "eth_getTransactionCount", sender.address, "latest"), 16)
    tx_hash = rpc(node.url, "eth_sendRawTransaction", "0x" + transfer(sender, nonce, RECIPIENTS[0], 1).hex())
    assert int(wait_for_receipt(node.url, tx_hash)["blockNumber"], 16) == final_head + 1


# ---- (c) one node per data dir ---------------------------------------------------------


def test_second_node_on_same_datadir_exits_2(node_factory, tmp_path):
    node = node_factory(datadir=tmp_path / "shared")
    second = subprocess.run(
        [*LAMINAR, "node", "--datadir", str(node.datadir), "--rpc", "127.0.0.1:0"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert second.returncode == 2, second
    assert second.stderr.startswith("error: ")
    assert "in use" in second.stderr and str(node.datadir) in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    assert "JSON-RPC" not in second.stdout  # it never served
    # The first node is unaffected.
    assert node.process.poll() is None
    assert rpc(node.url, "eth_chainId") == hex(CHAIN_ID)
