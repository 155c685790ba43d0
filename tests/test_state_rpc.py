"""eth_getProof, eth_createAccessList and eth_simulateV1 against a real node, over HTTP.

One `laminar node` (dev chain, block time 0.2 s) serves the module. Proofs are checked
with py-trie's `HexaryTrie.get_from_proof` against the state root in the block header
(no code shared with execution/proof.py); every result is validated against the
method's result schema in the execution-apis specification.
"""

from __future__ import annotations

import pytest
import requests
import rlp
from conftest import DEV_KEYS, start_node
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from spec_schema import assert_matches_result_schema
from trie import HexaryTrie
from web3 import Web3

from node.rpc.state_api import MAX_PROOF_SLOTS

CHAIN_ID = 31337
ETHER = 10**18
TRANSFER_GAS = 21_000
RECEIPT_TIMEOUT_S = 20
POLL_S = 0.05
TOKEN_SUPPLY = 1_000_000 * 10**18
INVALID_PARAMS = -32602
EMPTY_CODE_HASH = keccak(b"")
EMPTY_ROOT_HASH = keccak(rlp.encode(b""))

DEPLOYER = Account.from_key(DEV_KEYS[0])
FUNDER = Account.from_key(DEV_KEYS[1])
CALLER = Account.from_key(DEV_KEYS[2])


# ---- fixtures and helpers -------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = start_node(tmp_path_factory.mktemp("state-rpc"))
    yield process
    process.kill()


@pytest.fixture(scope="module")
def w3(node) -> Web3:
    web3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30}))
    assert web3.is_connected()
    return web3


def rpc(node, method: str, *params) -> dict:
    """The whole JSON-RPC response (result or error)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    response = requests.post(node.url, json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def result_of(node, method: str, *params):
    reply = rpc(node, method, *params)
    assert "error" not in reply, reply
    assert_matches_result_schema(method, reply["result"])
    return reply["result"]


def fees(w3: Web3) -> dict:
    base = w3.eth.get_block("latest")["baseFeePerGas"]
    return {"maxFeePerGas": 2 * base + 10**9, "maxPriorityFeePerGas": 10**9}


def sign_and_wait(w3: Web3, account, tx: dict):
    tx = {"chainId": CHAIN_ID, "nonce": w3.eth.get_transaction_count(account.address, "pending"),
          **tx}
    signed = Account.sign_transaction(tx, account.key)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S,
                                               poll_latency=POLL_S)


def deploy(w3: Web3, account, init_code: str, gas: int = 3_000_000) -> str:
    receipt = sign_and_wait(w3, account, {"data": init_code, "gas": gas, **fees(w3)})
    assert receipt.status == 1, receipt
    return receipt.contractAddress


@pytest.fixture(scope="module")
def token(w3, erc20):
    factory = w3.eth.contract(abi=erc20.abi, bytecode=erc20.bytecode)
    tx = factory.constructor("Proof Token", "PRF", 18, TOKEN_SUPPLY).build_transaction(
        {"from": DEPLOYER.address, "chainId": CHAIN_ID,
         "nonce": w3.eth.get_transaction_count(DEPLOYER.address, "pending")}
    )
    receipt = sign_and_wait(w3, DEPLOYER, tx)
    assert receipt.status == 1
    return w3.eth.contract(address=receipt.contractAddress, abi=erc20.abi), erc20


def vyper_hashmap_slot(base_slot: int, address: str) -> int:
    """Vyper 0.4's HashMap[address, _] entry: keccak256(slot ++ key), both 32 bytes."""
    key = bytes.fromhex(address[2:].lower()).rjust(32, b"\x00")
    return int.from_bytes(keccak(base_slot.to_bytes(32, "big") + key), "big")


# ---- the independent proof checker --------------------------------------------------


def proven_value(root: bytes, key: bytes, proof_hex: list[str]) -> bytes:
    """The value `proof` proves for `key` under `root` (b"" proves absence); raises
    trie.exceptions.BadTrieProof if the nodes do not link up from the root."""
    nodes = [rlp.decode(bytes.fromhex(node[2:])) for node in proof_hex]
    return HexaryTrie.get_from_proof(root, key, nodes)


def check_account(result: dict, state_root: bytes) -> list:
    """Verify the account proof; returns the proven account [nonce, balance, root, code]
    ([] for an absent account, whose fields must then be the empty account's)."""
    address = bytes.fromhex(result["address"][2:])
    encoded = proven_value(state_root, keccak(address), result["accountProof"])
    if encoded == b"":
        assert (result["nonce"], result["balance"]) == ("0x0", "0x0")
        assert result["codeHash"] == "0x" + EMPTY_CODE_HASH.hex()
        assert result["storageHash"] == "0x" + EMPTY_ROOT_HASH.hex()
        return []
    nonce, balance, storage_root, code_hash = rlp.decode(encoded)
    assert int(result["nonce"], 16) == int.from_bytes(nonce, "big")
    assert int(result["balance"], 16) == int.from_bytes(balance, "big")
    assert result["storageHash"] == "0x" + storage_root.hex()
    assert result["codeHash"] == "0x" + code_hash.hex()
    return [nonce, balance, storage_root, code_hash]


def check_storage(result: dict) -> dict[int, int]:
    """Verify every storage proof against the (proven) storage root; slot -> value."""
    root = bytes.fromhex(result["storageHash"][2:])
    values = {}
    for item in result["storageProof"]:
        slot = int(item["key"], 16)
        encoded = proven_value(root, keccak(slot.to_bytes(32, "big")), item["proof"])
        value = 0 if encoded == b"" else int.from_bytes(rlp.decode(encoded), "big")
        assert int(item["value"], 16) == value
        values[slot] = value
    return values


def state_root_of(w3: Web3, number: int) -> bytes:
    return bytes(w3.eth.get_block(number)["stateRoot"])


# ---- eth_getProof ---------------------------------------------------------------------


def test_proof_of_a_funded_account_verifies_against_the_block_state_root(node, w3):
    fresh = Account.create()
    amount = 3 * ETHER + 7
    receipt = sign_and_wait(w3, FUNDER, {"to": fresh.address, "value": amount,
                                         "gas": TRANSFER_GAS, **fees(w3)})
    block = hex(receipt.blockNumber)
    result = result_of(node, "eth_getProof", fresh.address, [], block)
    account = check_account(result, state_root_of(w3, receipt.blockNumber))
    assert int.from_bytes(account[1], "big") == amount
    assert result["storageProof"] == []
    # The block before the transfer: a proof that the account did not exist yet.
    before = result_of(node, "eth_getProof", fresh.address, [], hex(receipt.blockNumber - 1))
    assert check_account(before, state_root_of(w3, receipt.blockNumber - 1)) == []


def test_proof_of_a_missing_account_is_an_exclusion_proof(node, w3):
    absent = Account.create().address
    number = w3.eth.block_number
    result = result_of(node, "eth_getProof", absent, ["0x0", "0x1"], hex(number))
    assert result["accountProof"], "an exclusion proof still walks from the root"
    assert check_account(result, state_root_of(w3, number)) == []
    assert [item["value"] for item in result["storageProof"]] == ["0x0", "0x0"]
    assert [item["proof"] for item in result["storageProof"]] == [[], []]


def test_storage_proofs_of_present_and_absent_slots(node, w3, token):
    contract, compiled = token
    layout = compiled.storage_layout
    supply_slot = layout["totalSupply"]["slot"]
    balance_slot = vyper_hashmap_slot(layout["balanceOf"]["slot"], DEPLOYER.address)
    absent_slot = 2**255 + 12345
    number = w3.eth.block_number
    keys = [hex(supply_slot), "0x" + balance_slot.to_bytes(32, "big").hex(), hex(absent_slot)]
    result = result_of(node, "eth_getProof", contract.address, keys, hex(number))
    account = check_account(result, state_root_of(w3, number))
    runtime = bytes(w3.eth.get_code(contract.address, number))
    assert account[3] == keccak(runtime)
    values = check_storage(result)
    assert values[supply_slot] == TOKEN_SUPPLY
    assert values[balance_slot] == contract.functions.balanceOf(DEPLOYER.address).call(
        block_identifier=number)
    assert values[absent_slot] == 0
    assert [item["key"] for item in result["storageProof"]] == keys  # echoed as geth does
    absent_proof = result["storageProof"][2]["proof"]
    assert absent_proof, "an absent slot of a non-empty storage trie has a path to show"


def test_proof_at_an_old_block_and_at_the_head(node, w3, token):
    contract, compiled = token
    receiver = Account.create().address
    slot = vyper_hashmap_slot(compiled.storage_layout["balanceOf"]["slot"], receiver)
    first = sign_and_wait(w3, DEPLOYER, contract.functions.transfer(receiver, 5).build_transaction(
        {"from": DEPLOYER.address, "chainId": CHAIN_ID, "gas": 200_000, **fees(w3),
         "nonce": w3.eth.get_transaction_count(DEPLOYER.address, "pending")}))
    second = sign_and_wait(w3, DEPLOYER, contract.functions.transfer(receiver, 6).build_transaction(
        {"from": DEPLOYER.address, "chainId": CHAIN_ID, "gas": 200_000, **fees(w3),
         "nonce": w3.eth.get_transaction_count(DEPLOYER.address, "pending")}))
    assert first.status == second.status == 1
    old = result_of(node, "eth_getProof", contract.address, [hex(slot)], hex(first.blockNumber))
    check_account(old, state_root_of(w3, first.blockNumber))
    assert check_storage(old) == {slot: 5}
    head = w3.eth.get_block("latest")
    # By block hash (EIP-1898 object) at the head: the later balance.
    new = result_of(node, "eth_getProof", contract.address, [hex(slot)],
                    {"blockHash": "0x" + bytes(head["hash"]).hex()})
    check_account(new, bytes(head["stateRoot"]))
    assert check_storage(new) == {slot: 11}
    assert old["storageHash"] != new["storageHash"]


def test_web3_get_proof(w3, token):
    contract, compiled = token
    supply_slot = compiled.storage_layout["totalSupply"]["slot"]
    number = w3.eth.block_number
    proof = w3.eth.get_proof(contract.address, [supply_slot], number)
    assert proof["address"] == to_checksum_address(contract.address)
    # web3.py 8 hands the storage value back as HexBytes.
    assert int.from_bytes(proof["storageProof"][0]["value"], "big") == TOKEN_SUPPLY
    assert proof["nonce"] == 1  # EIP-161: a contract starts at nonce 1
    encoded = HexaryTrie.get_from_proof(
        state_root_of(w3, number), keccak(bytes.fromhex(contract.address[2:])),
        [rlp.decode(bytes(node)) for node in proof["accountProof"]],
    )
    assert rlp.decode(encoded)[2] == bytes(proof["storageHash"])


@pytest.mark.parametrize("keys, complaint", [
    (["0x" + "00" * 33], "storageKeys[0]"),
    (["0xzz"], "storageKeys[0]"),
    (["12"], "storageKeys[0]"),
    ([7], "storageKeys[0]"),
    ("0x0", "storageKeys"),
    (["0x0"] * (MAX_PROOF_SLOTS + 1), f"at most {MAX_PROOF_SLOTS}"),
])
def test_bad_proof_params_are_invalid_params(node, keys, complaint):
    reply = rpc(node, "eth_getProof", DEPLOYER.address, keys, "latest")
    assert reply["error"]["code"] == INVALID_PARAMS, reply
    assert complaint in reply["error"]["message"]
    # The node is still there and still answers.
    assert "result" in rpc(node, "eth_getProof", DEPLOYER.address, [], "latest")


def test_proof_of_an_unknown_block_is_an_error(node):
    reply = rpc(node, "eth_getProof", DEPLOYER.address, [], hex(10**9))
    assert reply["error"]["message"] == "header not found"


# ---- eth_createAccessList -------------------------------------------------------------

# Reads two slots of another contract (the token), writes one of its own, calls the
# SHA-256 precompile; `fail` reads a token slot, then reverts.
READER_SOURCE = """
# pragma version ~=0.4.3
interface Token:
    def balanceOf(owner: address) -> uint256: view
    def totalSupply() -> uint256: view

token: public(address)
last: public(uint256)

@deploy
def __init__(token: address):
    self.token = token

@external
def sync(owner: address) -> uint256:
    digest: bytes32 = sha256(b"laminar")
    self.last = staticcall Token(self.token).balanceOf(owner) + staticcall Token(self.token).totalSupply()
    return self.last

@external
def fail(owner: address):
    assert staticcall Token(self.token).balanceOf(owner) == 12345, "not that balance"
"""


@pytest.fixture(scope="module")
def reader(w3, token):
    import vyper
    from eth_abi import encode as abi_encode

    out = vyper.compile_code(READER_SOURCE, output_formats=["abi", "bytecode", "layout"])
    contract, _ = token
    init = out["bytecode"] + abi_encode(["address"], [contract.address]).hex()
    address = deploy(w3, DEPLOYER, init)
    layout = out["layout"].get("storage_layout", out["layout"])
    return w3.eth.contract(address=address, abi=out["abi"]), layout


def slot_keys(*slots: int) -> list[str]:
    return ["0x" + slot.to_bytes(32, "big").hex() for slot in slots]


def test_access_list_of_a_call_reading_another_contract_and_its_use(node, w3, token, reader):
    contract, compiled = token
    reader_contract, reader_layout = reader
    call = {"from": CALLER.address, "to": reader_contract.address,
            "data": reader_contract.encode_abi("sync", [DEPLOYER.address])}
    result = result_of(node, "eth_createAccessList", call, "latest")
    assert "error" not in result
    listed = {entry["address"]: set(entry["storageKeys"]) for entry in result["accessList"]}
    token_layout = compiled.storage_layout
    # The recipient is not listed as an address, but its slots are (as geth does); the
    # sender and the SHA-256 precompile (0x02) are not listed at all.
    assert listed == {
        contract.address.lower(): set(slot_keys(
            token_layout["totalSupply"]["slot"],
            vyper_hashmap_slot(token_layout["balanceOf"]["slot"], DEPLOYER.address),
        )),
        reader_contract.address.lower(): set(slot_keys(
            reader_layout["token"]["slot"], reader_layout["last"]["slot"],
        )),
    }
    # A type-2 transaction with that list succeeds and uses exactly the gas predicted;
    # then a type-1 one, predicted anew (the first one set `last`, so writing it again
    # costs less). The gas limit has headroom: gasUsed is what a call uses, not the least
    # limit it succeeds with (an SSTORE needs more than 2,300 gas left, EIP-2200).
    predictions = []
    for tx_type in (2, 1):
        result = result_of(node, "eth_createAccessList", call, "latest")
        predicted = int(result["gasUsed"], 16)
        fee_fields = fees(w3) if tx_type == 2 else {"gasPrice": fees(w3)["maxFeePerGas"]}
        receipt = sign_and_wait(w3, CALLER, {
            "to": reader_contract.address, "data": call["data"], "gas": 2 * predicted,
            "accessList": result["accessList"], "type": tx_type, **fee_fields,
        })
        assert receipt.status == 1, receipt
        assert receipt.gasUsed == predicted
        predictions.append(predicted)
    assert predictions[0] > predictions[1]  # a zero slot set vs the same value again


def test_access_list_of_a_reverting_call_reports_the_error(node, reader, token):
    reader_contract, _ = reader
    contract, compiled = token
    call = {"from": CALLER.address, "to": reader_contract.address, "gas": hex(200_000),
            "data": reader_contract.encode_abi("fail", [DEPLOYER.address])}
    result = result_of(node, "eth_createAccessList", call, "latest")
    assert result["error"] == "execution reverted"
    slot = vyper_hashmap_slot(compiled.storage_layout["balanceOf"]["slot"], DEPLOYER.address)
    token_entry = [e for e in result["accessList"] if e["address"] == contract.address.lower()]
    assert token_entry and slot_keys(slot)[0] in token_entry[0]["storageKeys"]


def test_a_given_access_list_is_kept_and_extended(node, reader):
    reader_contract, _ = reader
    extra = "0x" + "ab" * 20
    call = {"from": CALLER.address, "to": reader_contract.address,
            "data": reader_contract.encode_abi("sync", [DEPLOYER.address]),
            "accessList": [{"address": extra, "storageKeys": slot_keys(9)},
                           {"address": CALLER.address.lower(), "storageKeys": []}]}
    result = result_of(node, "eth_createAccessList", call)
    listed = {entry["address"]: entry["storageKeys"] for entry in result["accessList"]}
    assert listed[extra] == slot_keys(9)  # the caller's entry stays, first
    assert result["accessList"][0]["address"] == extra
    assert CALLER.address.lower() not in listed  # the sender is never listed
    assert reader_contract.address.lower() in listed  # and what the call touches is added


def test_access_list_of_a_plain_transfer_is_empty(node):
    result = result_of(node, "eth_createAccessList",
                       {"from": CALLER.address, "to": "0x" + "01" * 20, "value": "0xa"})
    assert result == {"accessList": [], "gasUsed": hex(TRANSFER_GAS)}


@pytest.mark.parametrize("tx, complaint", [
    ({"to": "0x" + "01" * 20, "accessList": "nope"}, "accessList"),
    ({"to": "0x" + "01" * 20, "accessList": [{"address": "0x12", "storageKeys": []}]},
     "accessList[0].address"),
    ({"to": "0x" + "01" * 20, "accessList": [{"address": "0x" + "01" * 20,
                                               "storageKeys": ["0x01"]}]},
     "accessList[0].storageKeys[0]"),
    ({"to": "0x" + "01" * 20, "gasPrice": "12"}, "gasPrice"),
    ("not an object", "transaction"),
])
def test_bad_access_list_params_are_invalid_params(node, tx, complaint):
    reply = rpc(node, "eth_createAccessList", tx, "latest")
    assert reply["error"]["code"] == INVALID_PARAMS, reply
    assert complaint in reply["error"]["message"]


def test_access_list_of_a_contract_creation(node, w3):
    """The created address is excluded as an address, as geth excludes the recipient, but
    the slot its init code reads is listed under it."""
    init_code = "0x60015400"  # PUSH1 1, SLOAD, STOP
    nonce = w3.eth.get_transaction_count(CALLER.address, "latest")
    result = result_of(node, "eth_createAccessList", {"from": CALLER.address, "data": init_code})
    created = "0x" + keccak(rlp.encode([bytes.fromhex(CALLER.address[2:]), nonce]))[12:].hex()
    assert result["accessList"] == [{"address": created, "storageKeys": slot_keys(1)}]


def test_web3_create_access_list_and_simulate(w3, reader):
    reader_contract, _ = reader
    call = {"from": CALLER.address, "to": reader_contract.address,
            "data": reader_contract.encode_abi("sync", [DEPLOYER.address])}
    created = w3.eth.create_access_list(call, "latest")
    assert {entry["address"] for entry in created["accessList"]} >= {reader_contract.address}
    assert created["gasUsed"] > TRANSFER_GAS
    [block] = w3.eth.simulate_v1({"blockStateCalls": [{"calls": [call]}]}, "latest")
    assert block["calls"][0]["status"] == 1
    # The simulated sync returns what the token holds: the deployer's balance + supply.
    assert int.from_bytes(block["calls"][0]["returnData"], "big") > 0


def test_state_methods_over_websocket_match_http(node, w3, token):
    import json

    from websockets.sync.client import connect as ws_connect

    contract, compiled = token
    number = hex(w3.eth.block_number)
    requests_ = [
        ("eth_getProof", [contract.address, [hex(compiled.storage_layout["totalSupply"]["slot"])],
                          number]),
        ("eth_createAccessList", [{"from": CALLER.address, "to": contract.address,
                                   "data": contract.encode_abi("totalSupply", [])}, number]),
        ("eth_simulateV1", [{"blockStateCalls": [{"calls": [
            {"from": CALLER.address, "to": contract.address,
             "input": contract.encode_abi("totalSupply", [])}]}]}, number]),
    ]
    with ws_connect(node.ws_url) as ws:
        for index, (method, params) in enumerate(requests_):
            ws.send(json.dumps({"jsonrpc": "2.0", "id": index, "method": method,
                                "params": params}))
            over_ws = json.loads(ws.recv(timeout=30))
            assert over_ws["id"] == index and "result" in over_ws, over_ws
            assert_matches_result_schema(method, over_ws["result"])
            assert over_ws["result"] == rpc(node, method, *params)["result"]
