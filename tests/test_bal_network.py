"""Block-level access lists in a 4-validator network of real `laminar node` processes.

Validator 0 runs the test harness's lying proposer (tests/harness_node.py --lie-bal):
every block it proposes goes out with a wrong access list, one kind after another
(a wrong post-value, a missing account, an extra account, a wrong index, an extra
read, a header hash that does not match the list, bytes that are not a list). The
three honest validators must refuse each one (prevote nil, the reason in their log and
in the evidence of laminar_consensusState), the next proposer's block must commit, no
node may fork, no transaction may be lost, and every committed block's list must be
the one its header commits to, served by eth_getBlockAccessList.
"""

from __future__ import annotations

import re
import threading

import pytest
from eth_utils import keccak
from test_bft_network import (
    ACCOUNTS,
    assert_agree,
    height,
    network,  # noqa: F401 - the fixture
    rpc,
    rpc_batch,
    transfer,
    wait_height,
    wait_until,
    wal_records,
)

from consensus.messages import Step, Vote

pytestmark = pytest.mark.slow

LIAR = 0
KINDS = ("value", "missing", "extra", "index", "read", "hash", "garbage")
# What an honest validator's log says for each kind.
REFUSAL = {
    "hash": "does not hash to the header's blockAccessListHash",
    "garbage": "undecodable access list",
}
SENDERS = ACCOUNTS[1:6]
MISSING, PRUNED = "not yet in the WAL", "pruned from the WAL"
NOT_REACHED = "round never reached"


class Trickle:
    """Sends a transfer every `interval` seconds (round robin over SENDERS) so that
    every proposal has transactions; remembers every hash it sent."""

    def __init__(self, url: str, interval: float = 0.3) -> None:
        self.url = url
        self.interval = interval
        self.sent: list[str] = []
        self.stop = threading.Event()
        self.nonces = [int(rpc(url, "eth_getTransactionCount", a.address, "latest"), 16)
                       for a in SENDERS]
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        turn = 0
        while not self.stop.wait(self.interval):  # paces the load; also the stop signal
            i = turn % len(SENDERS)
            turn += 1
            raw = transfer(SENDERS[i], self.nonces[i])
            self.sent.append(rpc(self.url, "eth_sendRawTransaction", raw))
            self.nonces[i] += 1

    def __enter__(self) -> Trickle:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def _lies_told(text: str) -> list[tuple[str, int, int, bytes]]:
    """(kind, height, round, lying block hash) of every lie the liar logged."""
    return [(kind, int(h), int(r), bytes.fromhex(block)) for kind, h, r, block in re.findall(
        r"FAULT INJECTION: lying access list \((\w+)\) at height (\d+) round (\d+): "
        r"block 0x([0-9a-f]{64})", text)]


def test_honest_validators_refuse_every_lying_access_list(network) -> None:  # noqa: F811
    net = network(start=())
    # The liar first: no height is decided before it takes part.
    net.start(LIAR, harness=("--partitions", "--lie-bal", ",".join(KINDS)))
    net.start(1, 2, 3)
    honest = [net.nodes[i] for i in (1, 2, 3)]
    wait_height(net.running(), 1)

    # Each lie, as it is told: the honest WALs hold prevotes for its round, never for the
    # lying block: nil, or (in a later round) the block the validator locked on. Read
    # live (a WAL keeps only the last heights, pruned every 16). A lie told for a round
    # the honest validators never reached (the liar was behind) proves nothing and is
    # left out, as is one whose records were pruned before they were read; the liar
    # cycles through the kinds, so every kind is told live sooner or later.
    judged: dict = {}  # lie -> the honest validators that prevoted in its round
    skipped: set = set()

    def prevote_in_wal(i: int, h: int, r: int) -> object:
        address = net.validators[i]
        records = wal_records(net.out / f"node{i}" / "consensus" / f"wal-{address[2:]}.log")
        for m in records:
            if isinstance(m, Vote) and m.kind == Step.PREVOTE and (m.height, m.round) == (h, r):
                return m.block_hash
        if records and min(m.height for m in records) > h:
            return PRUNED
        if height(net.nodes[i]) >= h:
            return NOT_REACHED  # decided h in an earlier round, or pruned it
        return MISSING

    def every_kind_judged() -> bool:
        for lie in _lies_told(net.text(LIAR)):
            if lie in judged or lie in skipped:
                continue
            _, h, r, lying_block = lie
            votes = {i: prevote_in_wal(i, h, r) for i in (1, 2, 3)}
            if MISSING in votes.values():
                return False
            voted = {i: v for i, v in votes.items() if v not in (PRUNED, NOT_REACHED)}
            if len(voted) < 2:
                skipped.add(lie)
                continue
            assert lying_block not in voted.values(), (lie, votes)
            if r == 0:  # nothing to be locked on yet
                assert set(voted.values()) == {None}, (lie, votes)
            judged[lie] = set(voted)
        return {lie[0] for lie in judged} >= set(KINDS)

    with Trickle(honest[0].url) as trickle:
        wait_until(every_kind_judged, "the liar to tell every kind of wrong list live",
                   timeout=900)
        top = max(height(n) for n in honest)
        wait_height(honest, top + 2)

    # Every honest validator that took part in a lying round refused it saying why.
    for lie, voters in judged.items():
        expected = REFUSAL.get(lie[0], "access list is wrong")
        for i in voters:
            assert expected in net.text(i), (lie, net.text(i)[-4000:])
    for node in honest:
        text = node.text()
        assert "Traceback" not in text, text[-4000:]
    assert any(re.search(r"EVIDENCE: validator \d \(0x[0-9a-f]+\) proposed an invalid block at "
                         r"height \d+ round \d+: block 0x[0-9a-f]+.*access list is wrong",
                         node.text()) for node in honest)
    evidence = [e for node in honest
                for e in rpc(node.url, "laminar_consensusState")["evidence"]]
    assert any("proposed an invalid block" in e for e in evidence), evidence

    # No fork; certified blocks kept coming (from the honest proposers' rounds).
    assert_agree(net.running(), validators=net.validators)
    top = assert_agree(honest, validators=net.validators)
    assert top > max(lie[1] for lie in judged)

    # No transaction was lost: all the trickle sent is in a block.
    def all_mined() -> bool:
        receipts = rpc_batch(honest[1].url, [("eth_getTransactionReceipt", [h])
                                             for h in trickle.sent])
        return all(r is not None and r["status"] == "0x1" for r in receipts)

    wait_until(all_mined, "every sent transaction to be mined", timeout=120)

    # Every committed list is the one its header commits to, and the RPC serves it.
    for number in range(1, top + 1):
        block = rpc(honest[2].url, "eth_getBlockByNumber", hex(number), False)
        raw = rpc(honest[2].url, "debug_getRawBlockAccessList", hex(number))
        assert "0x" + keccak(bytes.fromhex(raw[2:])).hex() == block["blockAccessListHash"]
        listed = rpc(honest[2].url, "eth_getBlockAccessList", hex(number))
        assert isinstance(listed, list)
        if block["transactions"]:
            assert listed, number  # the senders at least

    for n in net.running():
        n.stop()


# Init code: SSTORE(0, 42), LOG0 of nothing, deploy no code.
INIT_STORE_AND_LOG = "0x602a60005560006000a000"


def test_a_lagging_validator_catches_up_by_applying_access_lists(network) -> None:  # noqa: F811
    net = network()
    wait_height(net.running(), 2)
    net.stop(3)
    live = [net.nodes[i] for i in (0, 1, 2)]
    url = live[0].url

    sent = []
    deployer = SENDERS[0]
    for _ in range(3):
        for i, sender in enumerate(SENDERS[1:]):
            nonce = int(rpc(url, "eth_getTransactionCount", sender.address, "pending"), 16)
            sent.append(rpc(url, "eth_sendRawTransaction", transfer(sender, nonce, 1 + i)))
        nonce = int(rpc(url, "eth_getTransactionCount", deployer.address, "pending"), 16)
        deploy = "0x" + bytes(deployer.sign_transaction({
            "type": 2, "chainId": 31337, "nonce": nonce, "value": 0, "gas": 200_000,
            "maxFeePerGas": 20 * 10**9, "maxPriorityFeePerGas": 10**9,
            "data": INIT_STORE_AND_LOG,
        }).raw_transaction).hex()
        sent.append(rpc(url, "eth_sendRawTransaction", deploy))
        wait_height(live, height(live[0]) + 2)

    def mined() -> list:
        receipts = rpc_batch(url, [("eth_getTransactionReceipt", [h]) for h in sent])
        return receipts if all(r is not None for r in receipts) else []

    receipts = wait_until(mined, "the transactions to be mined")
    top = height(live[0]) + 2
    wait_height(live, top)

    # Back, syncing the blocks it missed from their access lists.
    config = net.config(3)
    config.write_text(config.read_text().replace(
        "[consensus]\n", '[consensus]\nsync_mode = "bal"\n', 1))
    net.start(3)
    lagger = net.nodes[3]
    assert lagger is not None
    wait_height(net.running(), top)
    text = lagger.text()
    assert "access list applied" in text, text[-3000:]
    assert "executed) 0x" not in text  # no synced block was executed
    assert "Traceback" not in text, text[-3000:]
    assert_agree(net.running(), validators=net.validators)

    # It answers as the nodes that executed the blocks do.
    calls = [("eth_getTransactionReceipt", [h]) for h in sent]
    assert rpc_batch(lagger.url, calls) == receipts
    first = min(int(r["blockNumber"], 16) for r in receipts)
    last = max(int(r["blockNumber"], 16) for r in receipts)
    logs_filter = {"fromBlock": hex(first), "toBlock": hex(last)}
    logs = rpc(url, "eth_getLogs", logs_filter)
    assert len(logs) == 3
    assert rpc(lagger.url, "eth_getLogs", logs_filter) == logs
    for receipt in receipts:
        if receipt["contractAddress"]:
            assert rpc(lagger.url, "eth_getStorageAt", receipt["contractAddress"], "0x0",
                       "latest") == "0x" + "00" * 31 + "2a"
    for sender in SENDERS:
        assert rpc(lagger.url, "eth_getBalance", sender.address, "latest") == rpc(
            url, "eth_getBalance", sender.address, "latest")
    # And it takes part in consensus again.
    wait_height(net.running(), top + 3)
    assert_agree(net.running(), validators=net.validators)

    # A burst makes a block big enough to import in parallel: the validators that did
    # not build it ran every transaction from its access list on their workers.
    burst = []
    for sender in SENDERS[1:]:
        nonce = int(rpc(url, "eth_getTransactionCount", sender.address, "pending"), 16)
        burst += [rpc(url, "eth_sendRawTransaction", transfer(sender, nonce + k))
                  for k in range(6)]
    burst_receipts = wait_until(
        lambda: (lambda rs: rs if all(r is not None for r in rs) else [])(
            rpc_batch(url, [("eth_getTransactionReceipt", [h]) for h in burst])),
        "the burst to be mined")
    counts: dict = {}
    for r in burst_receipts:
        counts[r["blockNumber"]] = counts.get(r["blockNumber"], 0) + 1
    biggest = max(counts, key=counts.__getitem__)
    imported = []
    for node in net.running():
        for stats in rpc(node.url, "laminar_executionStats"):
            if stats["number"] == biggest:
                imported.append((stats["executor"], stats["workers"], stats["fallback"]))
    parallel = [s for s in imported if s[0] == "bal" and s[1] >= 2 and not s[2]]
    assert len(parallel) >= 2, (counts, imported)
