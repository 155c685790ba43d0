"""Dev-chain methods (evm_*, anvil_*, hardhat_*) and eth_sendTransaction against real
`laminar node` processes through web3.py (HTTP and WebSocket), with restarts (SIGTERM
and SIGKILL) after each kind of edit, and their refusal on a two-validator BFT chain."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import DEV_KEYS, NodeProcess, start_node_with_config
from eth_account import Account
from test_bft_network import devnet_init
from test_metrics import scrape, value
from web3 import AsyncWeb3, Web3
from web3.providers.persistent import WebSocketProvider

DEADLINE_S = 30.0
POLL_S = 0.05
# How long an automine-off node is watched for a block it must not make: many times
# the test block time (0.2 s), so a producer that ignored the setting would show.
QUIET_WINDOW_S = 1.5
ETHER = 10**18
DEV = Account.from_key(DEV_KEYS[0])
WHALE = Web3.to_checksum_address("0x" + "77" * 20)  # no key anywhere: only impersonated
SINK = Web3.to_checksum_address("0x" + "5e" * 20)
STRANGER = Web3.to_checksum_address("0x" + "42" * 20)
# A contract whose code returns the word at storage slot 0:
# PUSH1 0 SLOAD PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN
RETURN_SLOT0 = bytes.fromhex("600054600052602060" "00f3")
EMPTY_CODE_HASH = bytes.fromhex("c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


def web3_of(node: NodeProcess) -> Web3:
    return Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": DEADLINE_S}))


def call(w3: Web3, method: str, *params):
    """A raw JSON-RPC call; the result, failing the test on an error."""
    reply = w3.provider.make_request(method, list(params))
    assert "error" not in reply, (method, params, reply)
    return reply["result"]


def error_of(w3: Web3, method: str, *params) -> dict:
    reply = w3.provider.make_request(method, list(params))
    assert "error" in reply, (method, params, reply)
    return reply["error"]


def raw(w3: Web3, method: str, tx_hash: bytes):
    """A lookup by transaction hash, raw (web3.py raises where the node answers null)."""
    return call(w3, method, "0x" + bytes(tx_hash).hex())


def wait_until(predicate, what: str, timeout: float = DEADLINE_S):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_S)


def transfer(w3: Web3, value: int = 1, to: str = SINK, gas: int = 21_000) -> bytes:
    nonce = w3.eth.get_transaction_count(DEV.address, "pending")
    base_fee = w3.eth.get_block("latest")["baseFeePerGas"]
    signed = DEV.sign_transaction({
        "chainId": w3.eth.chain_id, "nonce": nonce, "to": to, "value": value, "gas": gas,
        "maxFeePerGas": 2 * base_fee + 10**9, "maxPriorityFeePerGas": 10**9,
    })
    return w3.eth.send_raw_transaction(signed.raw_transaction)


def restart(node_factory, node: NodeProcess, kill: bool = False) -> NodeProcess:
    if kill:
        node.kill()
    else:
        assert node.stop() == 0, node.text()
    return node_factory(datadir=node.datadir)


def head_is_consistent(w3: Web3) -> dict:
    """The head block, after checking that it links to its parent and that its state
    root is the state the node reads at it (getBalance at the head's number and by its
    hash through EIP-1898 agree, and block sync would serve it)."""
    head = w3.eth.get_block("latest")
    parent = w3.eth.get_block(head["number"] - 1)
    assert head["parentHash"] == parent["hash"]
    by_hash = w3.eth.get_balance(DEV.address, {"blockHash": head["hash"]})
    assert by_hash == w3.eth.get_balance(DEV.address, head["number"])
    return head


def assert_state_complete(node: NodeProcess) -> None:
    """With the node stopped: every account of the head's state root, and every storage
    slot of each, can be read from its LevelDB through the tries (py-trie's own walk,
    not the node's code), so no node of the head's state is missing."""
    import rlp
    from eth.rlp.accounts import Account as StateAccount
    from trie import HexaryTrie
    from trie.iter import NodeIterator

    from storage.leveldb import LevelDB

    db = LevelDB(node.datadir / "chaindata")
    try:
        head_hash = db.get(b"mhead")
        header_rlp = db.get(b"h" + head_hash)
        state_root = rlp.decode(header_rlp)[3]
        accounts = 0

        def keys_of(root: bytes):
            walker, key = NodeIterator(HexaryTrie(db, root)), None
            while (key := walker.next(key)) is not None:
                yield key

        for key in keys_of(state_root):
            account = rlp.decode(HexaryTrie(db, state_root)[key], sedes=StateAccount)
            accounts += 1
            for slot_key in keys_of(account.storage_root):
                assert HexaryTrie(db, account.storage_root)[slot_key]
            assert account.code_hash == EMPTY_CODE_HASH or db.get(account.code_hash) is not None
        assert accounts > 0
    finally:
        db.close()


# ---- mining and time ---------------------------------------------------------------------


def test_mine_time_controls_and_automine(dev_node, node_factory):
    w3 = web3_of(dev_node)
    start = w3.eth.block_number
    assert call(w3, "evm_mine") == "0x0"
    assert w3.eth.block_number == start + 1  # mined before the answer, and empty
    assert w3.eth.get_block("latest")["transactions"] == []

    # evm_setNextBlockTimestamp: exactly that time, then the clock goes on from there.
    target = w3.eth.get_block("latest")["timestamp"] + 10_000
    assert call(w3, "evm_setNextBlockTimestamp", target) is None
    call(w3, "anvil_setBalance", STRANGER, "0x1")  # an edit block does not take that time
    assert w3.eth.get_block("latest")["timestamp"] < target
    call(w3, "evm_mine")
    assert w3.eth.get_block("latest")["timestamp"] == target
    call(w3, "evm_mine")
    assert target < w3.eth.get_block("latest")["timestamp"] < target + 60
    # evm_increaseTime: an hour later, as a hex quantity too.
    before = w3.eth.get_block("latest")["timestamp"]
    call(w3, "evm_increaseTime", hex(3600))
    call(w3, "evm_mine")
    # (The clock may trail the last block by a second: each block is at least one
    # second after its parent, and three came within the second above.)
    assert before + 3600 - 2 <= w3.eth.get_block("latest")["timestamp"] < before + 3660
    # evm_mine with a timestamp; an earlier one is refused.
    stamped = w3.eth.get_block("latest")["timestamp"] + 500
    call(w3, "evm_mine", stamped)
    assert w3.eth.get_block("latest")["timestamp"] == stamped
    err = error_of(w3, "evm_setNextBlockTimestamp", stamped)
    assert err["code"] == INVALID_PARAMS and "lower than or equal" in err["message"]

    # anvil_mine / hardhat_mine: n blocks, interval seconds apart.
    first = w3.eth.block_number
    assert call(w3, "anvil_mine", "0x3", "0x10") is None
    assert w3.eth.block_number == first + 3
    stamps = [w3.eth.get_block(first + i)["timestamp"] for i in range(1, 4)]
    assert stamps[1] - stamps[0] == stamps[2] - stamps[1] == 16
    call(w3, "hardhat_mine", "0x2")
    assert w3.eth.block_number == first + 5
    assert error_of(w3, "anvil_mine", "0x100000")["code"] == INVALID_PARAMS

    # Automine off: a transaction waits until evm_mine takes it.
    assert call(w3, "evm_setAutomine", False) is True
    quiet_from = w3.eth.block_number
    tx_hash = transfer(w3)
    deadline = time.monotonic() + QUIET_WINDOW_S
    while time.monotonic() < deadline:
        assert w3.eth.block_number == quiet_from, "a block came with automine off"
        time.sleep(POLL_S)
    assert call(w3, "laminar_mempoolStatus")["pending"] == "0x1"
    call(w3, "evm_mine")
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    assert receipt["blockNumber"] == quiet_from + 1 and receipt["status"] == 1

    # Interval mining: empty blocks keep coming; 0 stops them.
    assert call(w3, "evm_setIntervalMining", 300) is True
    interval_from = w3.eth.block_number
    wait_until(lambda: w3.eth.block_number >= interval_from + 2, "two interval blocks")
    call(w3, "evm_setIntervalMining", 0)
    call(w3, "evm_setAutomine", True)
    tx_hash = transfer(w3)
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=DEADLINE_S)["status"] == 1

    # A restart keeps every block and its time; the controls are back to automine.
    height = w3.eth.block_number
    last = w3.eth.get_block("latest")
    node = restart(node_factory, dev_node)
    w3 = web3_of(node)
    assert w3.eth.get_block("latest") == last and w3.eth.block_number == height
    head_is_consistent(w3)
    tx_hash = transfer(w3)
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=DEADLINE_S)["status"] == 1


# ---- state edits -------------------------------------------------------------------------


def test_state_edits_are_new_blocks_and_survive_a_kill(dev_node, node_factory):
    w3 = web3_of(dev_node)
    contract = Web3.to_checksum_address("0x" + "c0" * 20)
    before = w3.eth.block_number
    assert call(w3, "anvil_setBalance", STRANGER, hex(5 * ETHER)) is True
    assert call(w3, "hardhat_setNonce", STRANGER, "0x2a") is True
    assert call(w3, "anvil_setCode", contract, "0x" + RETURN_SLOT0.hex()) is True
    assert call(w3, "hardhat_setStorageAt", contract, "0x0", "0x" + "00" * 31 + "99") is True
    # Each edit is one new block, with no transactions; the block before an edit
    # still shows the state before it (its header's root was not touched).
    assert w3.eth.block_number == before + 4
    for number in range(before + 1, before + 5):
        assert w3.eth.get_block(number)["transactions"] == []
    assert w3.eth.get_balance(STRANGER, before) == 0
    assert w3.eth.get_balance(STRANGER, before + 1) == 5 * ETHER
    assert w3.eth.get_transaction_count(STRANGER, before + 1) == 0
    assert w3.eth.get_code(contract, before + 2) == b""

    def assert_edited(w3: Web3) -> None:
        assert w3.eth.get_balance(STRANGER) == 5 * ETHER
        assert w3.eth.get_transaction_count(STRANGER) == 42
        assert w3.eth.get_code(contract) == RETURN_SLOT0
        assert int.from_bytes(w3.eth.get_storage_at(contract, 0), "big") == 0x99
        # The EVM sees the edits too: the contract returns its slot 0.
        assert int.from_bytes(w3.eth.call({"to": contract}), "big") == 0x99

    assert_edited(w3)
    roots = [w3.eth.get_block(n)["stateRoot"] for n in range(before, before + 5)]
    assert len(set(roots)) == 5
    # Transactions still run on top of the edited state.
    tx_hash = transfer(w3, value=7, to=contract, gas=100_000)
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=DEADLINE_S)["status"] == 1

    node = restart(node_factory, dev_node, kill=True)
    w3 = web3_of(node)
    assert_edited(w3)
    assert [w3.eth.get_block(n)["stateRoot"] for n in range(before, before + 5)] == roots
    head_is_consistent(w3)
    assert w3.eth.get_balance(contract) == 7
    # Bad input is refused and changes nothing.
    height = w3.eth.block_number
    assert error_of(w3, "anvil_setBalance", "0x1234", "0x1")["code"] == INVALID_PARAMS
    assert error_of(w3, "anvil_setBalance", STRANGER, "12")["code"] == INVALID_PARAMS
    assert error_of(w3, "anvil_setStorageAt", contract, "0x0", "0x" + "11" * 33)["code"] \
        == INVALID_PARAMS
    assert error_of(w3, "anvil_setCode", contract)["code"] == INVALID_PARAMS
    assert w3.eth.block_number == height
    assert_edited(w3)
    node.kill()
    assert_state_complete(node)


# ---- impersonation -----------------------------------------------------------------------


async def impersonated_sends(ws_url: str) -> tuple:
    """Over WebSocket (web3.py's asyncio provider): impersonate WHALE, send two
    transactions with nothing but from/to/value, stop impersonating."""
    async with AsyncWeb3(WebSocketProvider(ws_url)) as ws:
        reply = await ws.provider.make_request("hardhat_impersonateAccount", [WHALE])
        assert reply["result"] is True
        tx_hash = await ws.eth.send_transaction({"from": WHALE, "to": SINK, "value": 3 * ETHER})
        receipt = await ws.eth.wait_for_transaction_receipt(tx_hash, timeout=DEADLINE_S)
        assert receipt["status"] == 1 and receipt["from"] == WHALE
        tx = await ws.eth.get_transaction(tx_hash)
        assert tx["from"] == WHALE and tx["nonce"] == 0
        # A second one: the nonce comes from the pool, the gas from an estimate.
        second = await ws.eth.send_transaction({"from": WHALE, "to": SINK, "value": 1})
        receipt2 = await ws.eth.wait_for_transaction_receipt(second, timeout=DEADLINE_S)
        assert receipt2["status"] == 1
        assert (await ws.eth.get_transaction(second))["nonce"] == 1
        reply = await ws.provider.make_request("anvil_stopImpersonatingAccount", [WHALE])
        assert reply["result"] is True
    return tx_hash, second, receipt, receipt2


def test_impersonated_transactions_over_websocket(dev_node, node_factory):
    w3 = web3_of(dev_node)
    call(w3, "anvil_setBalance", WHALE, hex(100 * ETHER))
    # Not impersonated (and the node holds no keys): geth's answer.
    err = error_of(w3, "eth_sendTransaction", {"from": WHALE, "to": SINK, "value": "0x1"})
    assert err == {"code": -32000, "message": "unknown account"}
    err = error_of(w3, "eth_sendTransaction", {"from": DEV.address, "to": SINK, "value": "0x1"})
    assert err["message"] == "unknown account"

    sink_before = w3.eth.get_balance(SINK)
    tx_hash, second, receipt, receipt2 = asyncio.run(
        asyncio.wait_for(impersonated_sends(dev_node.ws_url), timeout=2 * DEADLINE_S)
    )
    assert w3.eth.get_balance(SINK) == sink_before + 3 * ETHER + 1
    spent = 3 * ETHER + 1 + receipt["gasUsed"] * receipt["effectiveGasPrice"] \
        + receipt2["gasUsed"] * receipt2["effectiveGasPrice"]
    assert w3.eth.get_balance(WHALE) == 100 * ETHER - spent
    assert error_of(w3, "eth_sendTransaction", {"from": WHALE, "to": SINK})["message"] \
        == "unknown account"
    assert error_of(w3, "eth_sendTransaction", {"to": SINK})["code"] == INVALID_PARAMS

    # After a restart the chain still says who sent them (the signature cannot).
    node = restart(node_factory, dev_node)
    w3 = web3_of(node)
    assert w3.eth.get_transaction(tx_hash)["from"] == WHALE
    assert w3.eth.get_transaction_receipt(second)["from"] == WHALE
    assert w3.eth.get_balance(WHALE) == 100 * ETHER - spent
    assert w3.eth.get_transaction_count(WHALE) == 2
    head_is_consistent(w3)
    # Impersonation does not outlive the process.
    assert error_of(w3, "eth_sendTransaction", {"from": WHALE, "to": SINK})["message"] \
        == "unknown account"


# ---- snapshots ---------------------------------------------------------------------------


def test_revert_rewinds_atomically_and_survives_sigkill(dev_node, node_factory):
    w3 = web3_of(dev_node)
    call(w3, "evm_mine")
    snapshot = call(w3, "evm_snapshot")
    base = w3.eth.get_block("latest")
    dev_balance = w3.eth.get_balance(DEV.address)
    tx_hash = transfer(w3, value=11)
    w3.eth.wait_for_transaction_receipt(tx_hash, timeout=DEADLINE_S)
    call(w3, "anvil_setBalance", STRANGER, hex(ETHER))
    inner = call(w3, "evm_snapshot")
    call(w3, "evm_mine")
    reverted_top = w3.eth.block_number
    assert reverted_top >= base["number"] + 3

    assert call(w3, "evm_revert", snapshot) is True
    assert w3.eth.block_number == base["number"]
    assert w3.eth.get_block("latest") == base
    assert raw(w3, "eth_getTransactionReceipt", tx_hash) is None
    node = restart(node_factory, dev_node, kill=True)  # SIGKILL right after the revert
    w3 = web3_of(node)
    assert w3.eth.get_block("latest") == base
    for number in range(base["number"] + 1, reverted_top + 1):
        assert call(w3, "eth_getBlockByNumber", hex(number), False) is None
    assert raw(w3, "eth_getTransactionReceipt", tx_hash) is None
    assert raw(w3, "eth_getTransactionByHash", tx_hash) is None
    assert w3.eth.get_balance(DEV.address) == dev_balance
    assert w3.eth.get_balance(STRANGER) == 0
    head_is_consistent(w3)
    # Snapshots live in the node's memory: after a restart none is known.
    assert call(w3, "evm_revert", inner) is False
    # The chain goes on from the snapshot's block: the same transfer again, a new block.
    again = transfer(w3, value=11)
    assert again == tx_hash  # same key, nonce and fields: the same transaction
    receipt = w3.eth.wait_for_transaction_receipt(again, timeout=DEADLINE_S)
    assert receipt["blockNumber"] == base["number"] + 1
    assert w3.eth.get_block(base["number"] + 1)["parentHash"] == base["hash"]
    node.kill()
    assert_state_complete(node)


def test_revert_twice_and_stale_ids_are_refused(dev_node):
    w3 = web3_of(dev_node)
    first = call(w3, "evm_snapshot")
    call(w3, "evm_mine")
    second = call(w3, "evm_snapshot")
    call(w3, "evm_mine")
    height = w3.eth.block_number
    assert call(w3, "evm_revert", second) is True
    assert w3.eth.block_number == height - 1
    assert call(w3, "evm_revert", second) is False  # already reverted to
    assert w3.eth.block_number == height - 1
    assert call(w3, "evm_revert", first) is True
    assert w3.eth.block_number == height - 2
    assert call(w3, "evm_revert", "0x99") is False
    assert error_of(w3, "evm_revert", "one")["code"] == INVALID_PARAMS


# ---- BFT chains refuse ---------------------------------------------------------------------


def test_bft_chain_refuses_dev_methods(tmp_path):
    out = tmp_path / "devnet"
    devnet_init(out, 2)
    nodes = [start_node_with_config(out / f"node{i}" / "config.toml") for i in range(2)]
    try:
        w3 = web3_of(nodes[0])
        for method, params in [
            ("evm_mine", []), ("anvil_mine", ["0x1"]), ("evm_setAutomine", [False]),
            ("evm_increaseTime", [60]), ("evm_snapshot", []), ("evm_revert", ["0x1"]),
            ("anvil_setBalance", [STRANGER, "0x1"]), ("hardhat_setCode", [STRANGER, "0x00"]),
            ("anvil_impersonateAccount", [WHALE]), ("hardhat_impersonateAccount", [WHALE]),
        ]:
            err = error_of(w3, method, *params)
            assert err["code"] == METHOD_NOT_FOUND, (method, err)
            assert "only available on the dev chain" in err["message"], (method, err)
        err = error_of(w3, "eth_sendTransaction", {"from": WHALE, "to": SINK})
        assert err == {"code": -32000, "message": "unknown account"}
        assert w3.eth.get_balance(STRANGER) == 0

        # The same node's /metrics on a BFT chain: its peer, and heights that BFT commits.
        peers = wait_until(lambda: int(call(w3, "net_peerCount"), 16), "a peer", 60)
        wait_until(lambda: w3.eth.block_number >= 2, "two BFT blocks", 60)
        low = w3.eth.block_number
        families = scrape(nodes[0].url)
        high = w3.eth.block_number
        assert value(families, "laminar_peers", "laminar_peers") == peers
        assert low <= value(families, "laminar_head_height", "laminar_head_height") <= high
        name = "laminar_consensus_rounds_per_height"
        committed = value(families, name, name + "_count")
        assert low <= committed <= high  # every height above genesis, one round or more
        assert value(families, name, name + "_sum") >= committed
    finally:
        for node in nodes:
            node.kill()


@pytest.mark.parametrize("method", ["anvil_setBalance", "anvil_setNonce"])
def test_bad_quantities_are_invalid_params(dev_node, method):
    w3 = web3_of(dev_node)
    for bad in ["0x", "0x01", 5, None, "0x" + "f" * 65]:
        assert error_of(w3, method, STRANGER, bad)["code"] == INVALID_PARAMS


DEV_METHODS = [
    "evm_mine", "anvil_mine", "hardhat_mine", "evm_setAutomine", "anvil_setAutomine",
    "evm_setIntervalMining", "evm_increaseTime", "anvil_increaseTime",
    "evm_setNextBlockTimestamp", "anvil_setNextBlockTimestamp", "evm_snapshot", "evm_revert",
    "anvil_setBalance", "hardhat_setBalance", "anvil_setNonce", "anvil_setCode",
    "anvil_setStorageAt", "hardhat_setStorageAt", "anvil_impersonateAccount",
    "hardhat_stopImpersonatingAccount", "eth_sendTransaction",
]


def test_garbage_params_are_refused_and_change_nothing(dev_node):
    w3 = web3_of(dev_node)
    height, head = w3.eth.block_number, w3.eth.get_block("latest")
    for method in DEV_METHODS:
        for params in ([{"bad": 1}], ["0xzz"], [-1], [[1, 2]], [1, 2, 3, 4, 5, 6]):
            err = error_of(w3, method, *params)
            assert err["code"] == INVALID_PARAMS, (method, params, err)
    assert w3.eth.block_number == height and w3.eth.get_block("latest") == head
    assert call(w3, "evm_mine") == "0x0"  # and the node still serves them
