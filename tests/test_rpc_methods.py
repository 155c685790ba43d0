"""The execution-apis methods added beside the core eth_ table, against a real dev node:
block receipts, transactions by block hash, fees, batched storage reads, eth_config and
eth_capabilities, the signing refusals, eth_fillTransaction, debug_getRaw* and txpool_.

One node (block time 0.2 s) serves most tests; the txpool tests get a node with a long
block time so that what they put in the pool stays there while they look at it. Every
transaction is signed locally with eth-account, as wallets do.
"""

from __future__ import annotations

import hashlib
import zlib

import pytest
import rlp
from conftest import DEV_KEYS, start_node
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from rpc_client import CHAIN_ID, GWEI, TRANSFER_GAS, Rpc
from trie import HexaryTrie

INVALID_PARAMS = -32602
SERVER_ERROR = -32000
EXECUTION_REVERTED = 3
ETHER = 10**18
TOKEN_SUPPLY = 1_000_000 * 10**18
ZERO_ADDRESS = "0x" + "00" * 20
UNKNOWN_HASH = "0x" + "ab" * 32
IDLE_BLOCK_TIME_S = "600"  # the txpool node: one block, then the pool keeps what it gets
# Prague's precompiles (EIP-2537 BLS at 0x0b..0x11, EIP-4844's point evaluation at 0x0a).
PRAGUE_PRECOMPILE_COUNT = 0x11
MIN_BLOB_BASE_FEE = 1  # EIP-4844
BASE_FEE_CHANGE_DENOMINATOR = 8  # EIP-1559
ELASTICITY = 2

DEPLOYER = Account.from_key(DEV_KEYS[0])
SENDER = Account.from_key(DEV_KEYS[1])
FILLER = Account.from_key(DEV_KEYS[2])
POOL_SENDER = Account.from_key(DEV_KEYS[3])


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = start_node(tmp_path_factory.mktemp("rpc-methods"))
    yield process
    process.kill()


@pytest.fixture(scope="module")
def rpc(node) -> Rpc:
    return Rpc.connect(node.url)


@pytest.fixture(scope="module")
def token(rpc, erc20):
    """The ERC20 deployed by DEPLOYER: (address, deployment receipt)."""
    constructor_args = abi_encode(
        ["string", "string", "uint8", "uint256"], ["Laminar Token", "LAM", 18, TOKEN_SUPPLY]
    )
    tx_hash = rpc.send(DEPLOYER, {
        "data": erc20.bytecode + constructor_args.hex(), "gas": 3_000_000, **rpc.fees(),
    })
    receipt = rpc.wait(tx_hash)
    assert receipt["status"] == "0x1"
    return receipt["contractAddress"], receipt


@pytest.fixture(scope="module")
def transfers(rpc) -> list[dict]:
    """Receipts of two transfers of SENDER sent together (they may share a block)."""
    recipient = Account.create().address
    nonce = int(rpc.call("eth_getTransactionCount", SENDER.address, "pending"), 16)
    hashes = [
        rpc.send(SENDER, {"to": recipient, "value": 1 + i, "gas": TRANSFER_GAS, "nonce": nonce + i,
                          **rpc.fees()})
        for i in range(2)
    ]
    return [rpc.wait(h) for h in hashes]


def transfer_call(to: str, amount: int) -> str:
    selector = keccak(text="transfer(address,uint256)")[:4]
    return "0x" + (selector + abi_encode(["address", "uint256"], [to, amount])).hex()


# ---- blocks, receipts, transactions ---------------------------------------------------


def test_block_receipts_are_the_receipts_of_the_blocks_transactions(rpc, transfers):
    number = transfers[-1]["blockNumber"]
    block = rpc.call("eth_getBlockByNumber", number, False)
    receipts = rpc.call("eth_getBlockReceipts", number)
    assert [r["transactionHash"] for r in receipts] == block["transactions"]
    assert receipts == [rpc.call("eth_getTransactionReceipt", h) for h in block["transactions"]]
    assert rpc.call("eth_getBlockReceipts", {"blockHash": block["hash"]}) == receipts
    assert rpc.call("eth_getBlockReceipts", block["hash"]) == receipts
    assert rpc.call("eth_getBlockReceipts", "earliest") == []  # genesis has no transactions


def test_block_receipts_of_a_missing_block_are_null_and_bad_refs_invalid(rpc):
    head = int(rpc.call("eth_blockNumber"), 16)
    assert rpc.call("eth_getBlockReceipts", hex(head + 1000)) is None
    assert rpc.call("eth_getBlockReceipts", UNKNOWN_HASH) is None
    for bad in ("12", "0x", "newest", 5, [], {"blockHash": "0x12"}):
        assert rpc.error("eth_getBlockReceipts", bad)["code"] == INVALID_PARAMS, bad


def test_transaction_by_block_hash_and_index(rpc, transfers):
    receipt = transfers[0]
    by_hash = rpc.call(
        "eth_getTransactionByBlockHashAndIndex", receipt["blockHash"], receipt["transactionIndex"]
    )
    assert by_hash == rpc.call("eth_getTransactionByHash", receipt["transactionHash"])
    assert by_hash["from"] == SENDER.address.lower()
    assert rpc.call("eth_getTransactionByBlockHashAndIndex", receipt["blockHash"], "0x400") is None
    assert rpc.call("eth_getTransactionByBlockHashAndIndex", UNKNOWN_HASH, "0x0") is None
    assert rpc.error("eth_getTransactionByBlockHashAndIndex", "0x12", "0x0")["code"] == INVALID_PARAMS
    assert rpc.error(
        "eth_getTransactionByBlockHashAndIndex", receipt["blockHash"], 0
    )["code"] == INVALID_PARAMS
    assert rpc.error("eth_getTransactionByBlockHashAndIndex", receipt["blockHash"])["code"] == INVALID_PARAMS


# ---- fees and the node ----------------------------------------------------------------


def expected_next_base_fee(block: dict) -> int:
    """EIP-1559's update rule, from the parent block's fields."""
    base, used, limit = (int(block[k], 16) for k in ("baseFeePerGas", "gasUsed", "gasLimit"))
    target = limit // ELASTICITY
    if used == target:
        return base
    if used > target:
        return base + max(1, base * (used - target) // target // BASE_FEE_CHANGE_DENOMINATOR)
    return max(0, base - base * (target - used) // target // BASE_FEE_CHANGE_DENOMINATOR)


def test_base_fee_is_the_next_blocks_and_blob_fee_the_minimum(rpc, token):
    # The idle dev chain grows only when transactions wait: read until the head held still.
    for _ in range(100):
        before = rpc.call("eth_getBlockByNumber", "latest", False)
        base_fee = int(rpc.call("eth_baseFee"), 16)
        if rpc.call("eth_blockNumber") == before["number"]:
            break
    assert base_fee == expected_next_base_fee(before)
    # No blob transaction is ever accepted: the excess stays 0, the fee at EIP-4844's floor.
    assert before["excessBlobGas"] == "0x0"
    assert int(rpc.call("eth_blobBaseFee"), 16) == MIN_BLOB_BASE_FEE
    assert rpc.error("eth_baseFee", "latest")["code"] == INVALID_PARAMS


def test_coinbase_is_what_blocks_carry_as_miner(rpc, transfers):
    block = rpc.call("eth_getBlockByNumber", transfers[0]["blockNumber"], False)
    assert rpc.call("eth_coinbase") == block["miner"]


def test_storage_values_read_many_slots_at_once(rpc, token, erc20):
    address, receipt = token
    supply_slot = erc20.storage_layout["totalSupply"]["slot"]
    decimals_slot = erc20.storage_layout["decimals"]["slot"]
    slots = [hex(supply_slot), "0x" + decimals_slot.to_bytes(32, "big").hex()]
    stranger = "0xc1cadaffffffffffffffffffffffffffffffffff"
    values = rpc.call("eth_getStorageValues", {address: slots, stranger: ["0x01"]}, "latest")
    assert set(values) == {address, stranger}  # keys as the client spelled them
    assert int(values[address][0], 16) == TOKEN_SUPPLY
    assert int(values[address][1], 16) == 18
    assert values[address] == [rpc.call("eth_getStorageAt", address, s, "latest") for s in slots]
    assert values[stranger] == ["0x" + "00" * 32]
    # At the block before the deployment, the contract had no storage; the default is latest.
    before = hex(int(receipt["blockNumber"], 16) - 1)
    assert rpc.call("eth_getStorageValues", {address: slots}, before) == {address: ["0x" + "00" * 32] * 2}
    assert rpc.call("eth_getStorageValues", {address: slots[:1]}) == {address: values[address][:1]}


def test_storage_values_refuse_bad_requests(rpc):
    some = "0x" + "11" * 20
    assert rpc.error("eth_getStorageValues", {}, "latest") == {"code": INVALID_PARAMS, "message": "empty request"}
    for bad in ([], "0x", {"0x12": ["0x0"]}, {some: "0x0"}, {some: ["0x" + "0" * 65]},
                {some: ["0xzz"]}, {some: ["0x0"] * 1025}):
        assert rpc.error("eth_getStorageValues", bad, "latest")["code"] == INVALID_PARAMS
    assert rpc.error("eth_getStorageValues", {some: ["0x0"]}, "0x" + "ff" * 40)["code"] == INVALID_PARAMS
    assert rpc.error("eth_getStorageValues", {some: ["0x0"]}, "0xffffff")["code"] == SERVER_ERROR


def test_config_describes_the_chains_fork(rpc):
    config = rpc.call("eth_config")
    assert config["next"] is None and config["last"] is None
    current = config["current"]
    genesis = rpc.call("eth_getBlockByNumber", "0x0", False)
    assert current["chainId"] == hex(CHAIN_ID)
    assert current["activationTime"] == int(genesis["timestamp"], 16)
    # EIP-2124: with every fork at genesis the fork hash is CRC32 of the genesis hash.
    assert current["forkId"] == "0x%08x" % zlib.crc32(bytes.fromhex(genesis["hash"][2:]))
    assert current["blobSchedule"] == {"target": 6, "max": 9, "baseFeeUpdateFraction": 5007716}
    addresses = sorted(int(a, 16) for a in current["precompiles"].values())
    assert addresses == list(range(1, PRAGUE_PRECOMPILE_COUNT + 1))
    # The named precompile answers as that precompile does.
    sha = rpc.call("eth_call", {"to": current["precompiles"]["SHA256"], "input": "0x616263"}, "latest")
    assert sha == "0x" + hashlib.sha256(b"abc").hexdigest()
    identity = rpc.call("eth_call", {"to": current["precompiles"]["ID"], "input": "0x0102"}, "latest")
    assert identity == "0x0102"
    # A system contract is listed exactly when it has code on this chain.
    for name, address in current["systemContracts"].items():
        assert rpc.call("eth_getCode", address, "latest") != "0x", name
    assert rpc.error("eth_config", "latest")["code"] == INVALID_PARAMS


def test_capabilities_report_an_archive_node(rpc, token):
    for _ in range(100):
        capabilities = rpc.call("eth_capabilities")
        head = rpc.call("eth_getBlockByNumber", "latest", False)
        if capabilities["head"]["number"] == head["number"]:
            break
    assert capabilities["head"] == {"number": head["number"], "hash": head["hash"]}
    for resource in ("state", "tx", "logs", "receipts", "blocks"):
        assert capabilities[resource] == {"disabled": False, "oldestBlock": "0x0"}
    # What "oldest block 0" promises: the genesis state is still there.
    assert int(rpc.call("eth_getBalance", DEPLOYER.address, "0x0"), 16) > 0
    proofs_served = "error" not in rpc.request("eth_getProof", [DEPLOYER.address, [], "latest"])
    assert capabilities["stateproofs"]["disabled"] is not proofs_served


# ---- signing and filling --------------------------------------------------------------


def test_signing_methods_refuse_the_node_holds_no_keys(rpc):
    assert rpc.call("eth_accounts") == []
    refusal = {"code": SERVER_ERROR, "message": "unknown account"}
    assert rpc.error("eth_sign", DEPLOYER.address, "0xdeadbeef") == refusal
    tx = {"from": DEPLOYER.address, "to": SENDER.address, "gas": "0x5208", "gasPrice": "0x3b9aca00",
          "nonce": "0x0", "value": "0x1"}
    assert rpc.error("eth_signTransaction", tx) == refusal
    assert rpc.error("eth_sign", "0x12", "0xdeadbeef")["code"] == INVALID_PARAMS
    assert rpc.error("eth_sign", DEPLOYER.address, "hello")["code"] == INVALID_PARAMS
    assert rpc.error("eth_sign", DEPLOYER.address)["code"] == INVALID_PARAMS
    assert rpc.error("eth_signTransaction", "0x00")["code"] == INVALID_PARAMS
    assert rpc.error("eth_signTransaction", {**tx, "maxFeePerGas": "0x1"})["code"] == INVALID_PARAMS


def test_filled_transaction_signs_and_lands(rpc):
    """What eth_fillTransaction returns is a complete transaction: signed as it stands, it
    is accepted and mined, with the nonce, gas and fees the node chose."""
    recipient = Account.create().address
    filled = rpc.call("eth_fillTransaction", {"from": FILLER.address, "to": recipient, "value": hex(ETHER)})
    tx = filled["tx"]
    assert tx["type"] == "0x2" and tx["chainId"] == hex(CHAIN_ID)
    assert tx["nonce"] == rpc.call("eth_getTransactionCount", FILLER.address, "pending")
    assert int(tx["gas"], 16) == TRANSFER_GAS
    assert int(tx["maxFeePerGas"], 16) >= int(rpc.call("eth_baseFee"), 16) + int(tx["maxPriorityFeePerGas"], 16)
    signed = Account.sign_transaction({
        "type": 2, "chainId": CHAIN_ID, "nonce": int(tx["nonce"], 16), "to": to_checksum_address(tx["to"]),
        "value": int(tx["value"], 16), "gas": int(tx["gas"], 16), "data": tx["input"],
        "maxFeePerGas": int(tx["maxFeePerGas"], 16),
        "maxPriorityFeePerGas": int(tx["maxPriorityFeePerGas"], 16), "accessList": tx["accessList"],
    }, FILLER.key)
    receipt = rpc.wait(rpc.call("eth_sendRawTransaction", "0x" + signed.raw_transaction.hex()))
    assert receipt["status"] == "0x1"
    assert int(rpc.call("eth_getBalance", recipient, "latest"), 16) == ETHER


def test_fill_keeps_what_the_client_gave_and_infers_the_type(rpc, token):
    address, _ = token
    legacy = rpc.call("eth_fillTransaction", {"from": FILLER.address, "to": SENDER.address,
                                              "gasPrice": hex(7 * GWEI), "nonce": "0x63"})["tx"]
    assert (legacy["type"], legacy["gasPrice"], legacy["nonce"]) == ("0x0", hex(7 * GWEI), "0x63")
    assert "maxFeePerGas" not in legacy
    access_list = [{"address": address, "storageKeys": ["0x" + "00" * 32]}]
    typed = rpc.call("eth_fillTransaction", {"from": FILLER.address, "to": address, "gasPrice": hex(GWEI),
                                             "accessList": access_list, "gas": "0x9c40"})["tx"]
    assert (typed["type"], typed["gas"], typed["accessList"]) == ("0x1", "0x9c40", access_list)
    # A contract call's gas is its estimate: the same as eth_estimateGas gives.
    call = {"from": DEPLOYER.address, "to": address, "input": transfer_call(SENDER.address, 5)}
    assert rpc.call("eth_fillTransaction", call)["tx"]["gas"] == rpc.call("eth_estimateGas", call)


def test_fill_refuses_what_cannot_be_filled(rpc, token):
    address, _ = token
    base = {"from": FILLER.address, "to": SENDER.address}
    cases = [
        {**base, "gasPrice": "0x1", "maxFeePerGas": "0x2"},
        {**base, "chainId": "0x1"},
        {**base, "maxFeePerGas": "0x1", "maxPriorityFeePerGas": "0x2"},
        {**base, "type": "0x7"},
        {**base, "input": "0x01", "data": "0x02"},
        {**base, "type": "0x4"},  # a set-code transaction without authorizations
        {**base, "type": "0x2", "authorizationList": []},
        {**base, "type": "0x0", "accessList": []},
        {**base, "value": "-1"},
        {**base, "to": "0x1234"},
        "0x00",
    ]
    for case in cases:
        assert rpc.error("eth_fillTransaction", case)["code"] == INVALID_PARAMS, case
    # Blobs are well-formed but refused by the chain's policy, as eth_sendRawTransaction does.
    for case in ({**base, "blobVersionedHashes": ["0x01" + "00" * 31]}, {**base, "type": "0x3"}):
        error = rpc.error("eth_fillTransaction", case)
        assert error["code"] == SERVER_ERROR and "blob transactions are not supported" in error["message"]
    # A call that reverts cannot be estimated: the revert comes back as eth_estimateGas's.
    overdraw = {"from": FILLER.address, "to": address, "input": transfer_call(SENDER.address, 1)}
    assert rpc.error("eth_fillTransaction", overdraw) == rpc.error("eth_estimateGas", overdraw)
    assert rpc.error("eth_estimateGas", overdraw)["code"] == EXECUTION_REVERTED


# ---- debug_getRaw* --------------------------------------------------------------------


def trie_root(items: list[bytes]) -> bytes:
    """The root a header commits a list under (keys rlp(index)), built with py-trie."""
    trie = HexaryTrie({})
    for index, item in enumerate(items):
        trie[rlp.encode(index)] = item
    return trie.root_hash


def test_raw_getters_give_the_bytes_the_header_commits_to(rpc, transfers, token):
    number = transfers[-1]["blockNumber"]
    block = rpc.call("eth_getBlockByNumber", number, False)
    header = bytes.fromhex(rpc.call("debug_getRawHeader", number)[2:])
    assert "0x" + keccak(header).hex() == block["hash"]
    raw_block = bytes.fromhex(rpc.call("debug_getRawBlock", number)[2:])
    assert int(rpc.call("eth_getBlockByNumber", number, False)["size"], 16) == len(raw_block)
    fields = rlp.decode(raw_block)
    assert rlp.encode(fields[0]) == header
    transactions = [rlp.encode(t) if isinstance(t, list) else t for t in fields[1]]
    assert "0x" + trie_root(transactions).hex() == block["transactionsRoot"]
    assert ["0x" + keccak(t).hex() for t in transactions] == block["transactions"]
    raw_receipts = [bytes.fromhex(r[2:]) for r in rpc.call("debug_getRawReceipts", number)]
    assert "0x" + trie_root(raw_receipts).hex() == block["receiptsRoot"]
    for tx_hash, tx_bytes in zip(block["transactions"], transactions):
        assert rpc.call("debug_getRawTransaction", tx_hash) == "0x" + tx_bytes.hex()
    by_hash = rpc.call("debug_getRawHeader", {"blockHash": block["hash"]})
    assert by_hash == "0x" + header.hex()
    assert rpc.call("debug_getRawReceipts", "0x0") == []


def test_raw_getters_refuse_bad_and_missing_blocks(rpc):
    for method in ("debug_getRawHeader", "debug_getRawBlock", "debug_getRawReceipts"):
        assert rpc.error(method, "2")["code"] == INVALID_PARAMS
        assert rpc.error(method)["code"] == INVALID_PARAMS
        missing = rpc.error(method, "0xffffff")
        assert missing["code"] == SERVER_ERROR and "not found" in missing["message"]
    assert rpc.error("debug_getRawTransaction", UNKNOWN_HASH[2:])["code"] == INVALID_PARAMS
    assert rpc.call("debug_getRawTransaction", UNKNOWN_HASH) == "0x"  # geth's empty bytes
    assert rpc.call("debug_getBadBlocks") == []


# ---- txpool_ --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def idle_rpc(tmp_path_factory) -> Rpc:
    """A node whose next block comes only after IDLE_BLOCK_TIME_S: after its first block
    the pool keeps what the test puts in it."""
    process = start_node(tmp_path_factory.mktemp("rpc-txpool"), block_time=IDLE_BLOCK_TIME_S)
    client = Rpc.connect(process.url)
    client.wait(client.send(POOL_SENDER, {"to": SENDER.address, "value": 1, "gas": TRANSFER_GAS,
                                          **client.fees()}))
    yield client
    process.kill()


def test_txpool_splits_pending_and_queued_by_sender_and_nonce(idle_rpc):
    rpc = idle_rpc
    nonce = int(rpc.call("eth_getTransactionCount", POOL_SENDER.address, "latest"), 16)
    fees = rpc.fees()
    pending_hash = rpc.send(POOL_SENDER, {"to": SENDER.address, "value": 5, "gas": TRANSFER_GAS,
                                          "nonce": nonce, **fees})
    gap_hash = rpc.send(POOL_SENDER, {"to": SENDER.address, "value": 7, "gas": TRANSFER_GAS,
                                      "nonce": nonce + 2, **fees})
    create_hash = rpc.send(FILLER, {"data": "0x00", "gas": 60_000, "gasPrice": 3 * GWEI})
    assert rpc.call("txpool_status") == {"pending": "0x2", "queued": "0x1"}

    content = rpc.call("txpool_content")
    sender_key = to_checksum_address(POOL_SENDER.address)
    assert set(content["pending"]) == {sender_key, to_checksum_address(FILLER.address)}
    assert list(content["pending"][sender_key]) == [str(nonce)]
    assert content["pending"][sender_key][str(nonce)] == rpc.call("eth_getTransactionByHash", pending_hash)
    assert content["pending"][sender_key][str(nonce)]["blockHash"] is None
    assert content["queued"] == {sender_key: {str(nonce + 2): rpc.call("eth_getTransactionByHash", gap_hash)}}

    mine = rpc.call("txpool_contentFrom", POOL_SENDER.address.lower())
    assert mine == {"pending": content["pending"][sender_key], "queued": content["queued"][sender_key]}
    assert rpc.call("txpool_contentFrom", ZERO_ADDRESS) == {"pending": {}, "queued": {}}
    assert rpc.error("txpool_contentFrom", "0x12")["code"] == INVALID_PARAMS
    assert rpc.error("txpool_contentFrom")["code"] == INVALID_PARAMS

    inspect = rpc.call("txpool_inspect")
    fee_cap = fees["maxFeePerGas"]
    recipient = to_checksum_address(SENDER.address)
    assert inspect["pending"][sender_key] == {str(nonce): f"{recipient}: 5 wei + 21000 gas × {fee_cap} wei"}
    assert inspect["queued"][sender_key] == {str(nonce + 2): f"{recipient}: 7 wei + 21000 gas × {fee_cap} wei"}
    filler_nonce = rpc.call("eth_getTransactionByHash", create_hash)["nonce"]
    assert inspect["pending"][to_checksum_address(FILLER.address)] == {
        str(int(filler_nonce, 16)): f"contract creation: 0 wei + 60000 gas × {3 * GWEI} wei"
    }


def test_txpool_status_counts_the_pool(idle_rpc):
    """Closing the nonce gap moves the queued transaction to pending: counts follow."""
    rpc = idle_rpc
    before = rpc.call("txpool_status")
    nonce = int(rpc.call("eth_getTransactionCount", POOL_SENDER.address, "pending"), 16)
    rpc.send(POOL_SENDER, {"to": SENDER.address, "value": 6, "gas": TRANSFER_GAS, "nonce": nonce,
                           **rpc.fees()})
    after = rpc.call("txpool_status")
    assert int(after["pending"], 16) == int(before["pending"], 16) + 1 + int(before["queued"], 16)
    assert after["queued"] == "0x0"
    assert rpc.error("txpool_status", 1)["code"] == INVALID_PARAMS


# ---- hostile params -------------------------------------------------------------------

ADDED_METHODS = {  # method -> how many params it takes
    "eth_getBlockReceipts": 1, "eth_getTransactionByBlockHashAndIndex": 2, "eth_baseFee": 0,
    "eth_blobBaseFee": 0, "eth_coinbase": 0, "eth_getStorageValues": 2, "eth_config": 0,
    "eth_capabilities": 0, "eth_fillTransaction": 1, "eth_sign": 2, "eth_signTransaction": 1,
    "debug_getRawHeader": 1, "debug_getRawBlock": 1, "debug_getRawReceipts": 1,
    "debug_getRawTransaction": 1, "debug_getBadBlocks": 0, "txpool_status": 0,
    "txpool_content": 0, "txpool_contentFrom": 1, "txpool_inspect": 0,
}
HOSTILE_VALUES = [
    None, True, 0, -1, 1.5, 10**80, "", "0x", "0x" + "f" * 200, "zz", "latest", [], {}, [[[[]]]],
    {"a": {"b": []}}, "0x" + "00" * 20, "0x" + "00" * 32, {"from": 5}, {"to": []},
    {"0x" + "11" * 20: [None]}, {"0x" + "11" * 20: [[]]}, {"blockHash": 7}, "\u0000" * 50,
]


def test_hostile_params_get_errors_never_crashes(rpc, token):
    """Every added method, every param position, values of every wrong kind: the answer is
    a result or a client error (never -32603, never a non-200), and the chain does not
    move (nothing was sent)."""
    head = rpc.call("eth_getBlockByNumber", "latest", False)["hash"]
    crashes = []
    for method, arity in ADDED_METHODS.items():
        for position in range(max(arity, 1)):
            for value in HOSTILE_VALUES:
                params = ["latest"] * max(arity, 1)
                params[position] = value
                reply = rpc.request(method, params)
                if reply.get("error", {}).get("code") == -32603:
                    crashes.append((method, params, reply["error"]))
        assert rpc.error(method, *([None] * (arity + 1)))["code"] == INVALID_PARAMS  # too many
    assert not crashes, crashes
    assert rpc.call("eth_getBlockByNumber", "latest", False)["hash"] == head
