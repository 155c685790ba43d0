"""A real wallet stack (web3.py + eth-account, keys signed locally) against a real node, over HTTP.

One `laminar node` process (block time 0.2 s) serves the whole module; each test uses its
own sender or fresh accounts so balances and nonces can be checked exactly. Transactions
are signed with eth-account and sent with `eth_sendRawTransaction`, as MetaMask-style
wallets do; nothing is signed by the node (`eth_accounts` is empty).
"""

from __future__ import annotations

import pytest
import requests
from conftest import DEV_KEYS, start_node
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import BlockNotFound, ContractLogicError, TransactionNotFound

from node.genesis import dev_accounts

CHAIN_ID = 31337
ETHER = 10**18
GWEI = 10**9
DEV_BALANCE = 10_000 * ETHER
TRANSFER_GAS = 21_000
RECEIPT_TIMEOUT_S = 20
POLL_S = 0.05
TOKEN_SUPPLY = 1_000_000 * 10**18
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
APPROVAL_TOPIC = "0x" + keccak(text="Approval(address,address,uint256)").hex()
ZERO_ADDRESS = "0x" + "00" * 20

DEPLOYER = Account.from_key(DEV_KEYS[0])  # owns the token
ETH_SENDER = Account.from_key(DEV_KEYS[1])  # plain ether transfers
LEGACY_SENDER = Account.from_key(DEV_KEYS[2])
FUNDER = Account.from_key(DEV_KEYS[3])  # funds fresh accounts


# ---- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = start_node(tmp_path_factory.mktemp("wallet-http"))
    yield process
    process.kill()


@pytest.fixture(scope="module")
def w3(node) -> Web3:
    web3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30}))
    assert web3.is_connected()
    return web3


@pytest.fixture(scope="module")
def token(w3, erc20):
    """The ERC20, deployed by DEPLOYER through web3's contract API; (contract, receipt)."""
    factory = w3.eth.contract(abi=erc20.abi, bytecode=erc20.bytecode)
    tx = factory.constructor("Laminar Token", "LAM", 18, TOKEN_SUPPLY).build_transaction(
        {
            "from": DEPLOYER.address,
            "nonce": w3.eth.get_transaction_count(DEPLOYER.address, "pending"),
            "chainId": CHAIN_ID,
        }
    )
    receipt = sign_and_wait(w3, DEPLOYER, tx)
    assert receipt.status == 1, receipt
    assert receipt.contractAddress is not None
    return w3.eth.contract(address=receipt.contractAddress, abi=erc20.abi), receipt


# ---- helpers --------------------------------------------------------------------------


def fees_1559(w3: Web3, tip: int | None = None) -> dict:
    base = w3.eth.get_block("latest")["baseFeePerGas"]
    tip = w3.eth.max_priority_fee if tip is None else tip
    return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}


def send_signed(w3: Web3, account, tx: dict) -> bytes:
    tx = dict(tx)
    tx.setdefault("chainId", CHAIN_ID)
    tx.setdefault("nonce", w3.eth.get_transaction_count(account.address, "pending"))
    signed = Account.sign_transaction(tx, account.key)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    assert tx_hash == signed.hash
    return tx_hash


def wait(w3: Web3, tx_hash):
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S, poll_latency=POLL_S)


def sign_and_wait(w3: Web3, account, tx: dict):
    return wait(w3, send_signed(w3, account, tx))


def fund_fresh(w3: Web3, amount: int = 10 * ETHER):
    """A brand-new account holding exactly `amount` wei."""
    fresh = Account.create()
    receipt = sign_and_wait(w3, FUNDER, {"to": fresh.address, "value": amount, "gas": TRANSFER_GAS, **fees_1559(w3)})
    assert receipt.status == 1
    return fresh


def token_transfer(w3: Web3, contract, sender, to: str, amount: int, **extra):
    tx = contract.functions.transfer(to, amount).build_transaction(
        {
            "from": sender.address,
            "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
            "chainId": CHAIN_ID,
            **extra,
        }
    )
    return sign_and_wait(w3, sender, tx)


def rpc(w3: Web3, method: str, params: list):
    """A raw JSON-RPC call through web3's provider (no result formatting)."""
    return w3.provider.make_request(method, params)


def topic_of(address: str) -> str:
    return "0x" + "00" * 12 + address[2:].lower()


def vyper_hashmap_slot(slot: int, key: bytes) -> int:
    """Vyper 0.4: the value of HashMap at `slot` for `key` lives at keccak(slot . key)."""
    return int.from_bytes(keccak(slot.to_bytes(32, "big") + key.rjust(32, b"\0")), "big")


# ---- plain reads ------------------------------------------------------------------------


def test_chain_identity_and_dev_balances(w3):
    assert w3.eth.chain_id == CHAIN_ID
    assert w3.net.version == str(CHAIN_ID)
    assert rpc(w3, "eth_chainId", [])["result"] == hex(CHAIN_ID)
    assert w3.eth.accounts == []
    assert w3.eth.syncing is False
    assert w3.client_version.startswith("Laminar/")
    assert isinstance(w3.eth.block_number, int) and w3.eth.block_number >= 0
    # An account none of these tests touches still holds exactly its genesis balance.
    untouched = dev_accounts()[9].address
    assert w3.eth.get_balance(untouched) == DEV_BALANCE
    assert w3.eth.get_balance(untouched, "earliest") == DEV_BALANCE
    assert w3.eth.get_transaction_count(untouched) == 0
    for key in DEV_KEYS:
        assert w3.eth.get_balance(Account.from_key(key).address, "earliest") == DEV_BALANCE
    assert w3.eth.get_balance(Account.create().address) == 0


def test_batch_request_over_raw_http(node, w3):
    untouched = dev_accounts()[9].address
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": "two", "method": "net_version", "params": []},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_getBalance", "params": [untouched, "latest"]},
        {"jsonrpc": "2.0", "id": 4, "method": "eth_no_such_method", "params": []},
        {"jsonrpc": "2.0", "id": 5, "method": "eth_getBlockByNumber", "params": ["0x0", False]},
        {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": []},  # notification: no reply
        {"jsonrpc": "2.0", "id": 6, "method": "eth_syncing", "params": []},
    ]
    response = requests.post(node.url, json=batch, timeout=10)
    assert response.status_code == 200
    replies = response.json()
    assert [r["id"] for r in replies] == [1, "two", 3, 4, 5, 6]
    assert replies[0]["result"] == hex(CHAIN_ID)
    assert replies[1]["result"] == str(CHAIN_ID)
    assert int(replies[2]["result"], 16) == DEV_BALANCE
    assert replies[3]["error"]["code"] == -32601 and "result" not in replies[3]
    assert replies[4]["result"]["number"] == "0x0"
    assert replies[4]["result"]["hash"] == w3.eth.get_block(0)["hash"].to_0x_hex()
    assert replies[5]["result"] is False
    assert all(r["jsonrpc"] == "2.0" for r in replies)


# ---- ether transfers --------------------------------------------------------------------


def test_send_ether_eip1559(w3):
    recipient = Account.create().address
    value = 1_234_567_890_123_456_789
    nonce = w3.eth.get_transaction_count(ETH_SENDER.address)
    fees = fees_1559(w3)
    tx_hash = send_signed(
        w3,
        ETH_SENDER,
        {"type": 2, "to": recipient, "value": value, "gas": TRANSFER_GAS, "nonce": nonce, **fees},
    )
    receipt = wait(w3, tx_hash)

    assert receipt.status == 1
    assert receipt.type == 2
    assert receipt.transactionHash == tx_hash
    assert receipt.gasUsed == TRANSFER_GAS
    assert receipt.cumulativeGasUsed >= TRANSFER_GAS
    assert receipt["from"] == ETH_SENDER.address
    assert receipt.to == recipient
    assert receipt.contractAddress is None
    assert receipt.logs == []

    block = w3.eth.get_block(receipt.blockNumber)
    assert block.hash == receipt.blockHash
    assert block.transactions[receipt.transactionIndex] == tx_hash
    base_fee = block.baseFeePerGas
    expected_price = min(fees["maxFeePerGas"], base_fee + fees["maxPriorityFeePerGas"])
    assert receipt.effectiveGasPrice == expected_price

    # Exact balances, read at the block before and at the block of the transaction.
    before = w3.eth.get_balance(ETH_SENDER.address, receipt.blockNumber - 1)
    after = w3.eth.get_balance(ETH_SENDER.address, receipt.blockNumber)
    assert before - after == value + receipt.gasUsed * receipt.effectiveGasPrice
    assert w3.eth.get_balance(recipient) == value
    assert w3.eth.get_balance(recipient, receipt.blockNumber - 1) == 0
    assert w3.eth.get_transaction_count(ETH_SENDER.address) == nonce + 1
    assert w3.eth.get_transaction_count(ETH_SENDER.address, "pending") == nonce + 1

    mined = w3.eth.get_transaction(tx_hash)
    assert mined.blockHash == receipt.blockHash
    assert mined.blockNumber == receipt.blockNumber
    assert mined.transactionIndex == receipt.transactionIndex
    assert mined["from"] == ETH_SENDER.address and mined.to == recipient
    assert mined.value == value and mined.nonce == nonce and mined.gas == TRANSFER_GAS
    assert mined.type == 2 and mined.chainId == CHAIN_ID
    assert mined.maxFeePerGas == fees["maxFeePerGas"]
    assert mined.maxPriorityFeePerGas == fees["maxPriorityFeePerGas"]
    assert mined.gasPrice == receipt.effectiveGasPrice
    # The signature the node reports recovers to the sender.
    assert mined.yParity in (0, 1)


def test_send_ether_legacy_eip155(w3):
    recipient = Account.create().address
    value = 3 * ETHER
    gas_price = w3.eth.gas_price
    nonce = w3.eth.get_transaction_count(LEGACY_SENDER.address)
    tx = {"to": recipient, "value": value, "gas": TRANSFER_GAS, "gasPrice": gas_price, "nonce": nonce}
    signed = Account.sign_transaction({**tx, "chainId": CHAIN_ID}, LEGACY_SENDER.key)
    assert signed.v in (CHAIN_ID * 2 + 35, CHAIN_ID * 2 + 36)  # EIP-155 replay protection
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = wait(w3, tx_hash)

    assert receipt.status == 1
    assert receipt.type == 0
    assert receipt.gasUsed == TRANSFER_GAS
    assert receipt.effectiveGasPrice == gas_price
    assert receipt["from"] == LEGACY_SENDER.address and receipt.to == recipient
    assert w3.eth.get_block(receipt.blockNumber).hash == receipt.blockHash
    before = w3.eth.get_balance(LEGACY_SENDER.address, receipt.blockNumber - 1)
    after = w3.eth.get_balance(LEGACY_SENDER.address, receipt.blockNumber)
    assert before - after == value + TRANSFER_GAS * gas_price
    assert w3.eth.get_balance(recipient) == value

    mined = w3.eth.get_transaction(tx_hash)
    assert mined.type == 0
    assert mined.gasPrice == gas_price
    assert mined.v == signed.v
    assert int.from_bytes(mined.r, "big") == signed.r
    assert int.from_bytes(mined.s, "big") == signed.s
    raw = rpc(w3, "eth_getTransactionByHash", [tx_hash.to_0x_hex()])["result"]
    assert raw["chainId"] == hex(CHAIN_ID)


def test_replayed_and_underfunded_transactions_are_rejected(w3):
    fresh = fund_fresh(w3, 10**15)
    tx = {"to": FUNDER.address, "value": 10**16, "gas": TRANSFER_GAS, "nonce": 0, **fees_1559(w3)}
    signed = Account.sign_transaction({**tx, "chainId": CHAIN_ID}, fresh.key)
    with pytest.raises(Exception, match="insufficient funds"):
        w3.eth.send_raw_transaction(signed.raw_transaction)
    # A transaction for another chain id is refused.
    other = Account.sign_transaction({**tx, "value": 1, "chainId": 1}, fresh.key)
    with pytest.raises(Exception, match="chain id"):
        w3.eth.send_raw_transaction(other.raw_transaction)
    # A mined transaction cannot be replayed.
    ok = Account.sign_transaction({**tx, "value": 1, "chainId": CHAIN_ID}, fresh.key)
    wait(w3, w3.eth.send_raw_transaction(ok.raw_transaction))
    with pytest.raises(Exception, match="nonce too low|already known"):
        w3.eth.send_raw_transaction(ok.raw_transaction)


def test_receipt_is_never_ahead_of_the_head(node, w3):
    """A wallet that sees a receipt must find its block: by number, as "latest", in state.

    Regression: the engine stores a block (in a worker thread) before it advances the head,
    and receipts were served from storage in between, so eth_blockNumber and
    eth_getBlockByNumber(receipt.blockNumber) could still answer from the block before.
    The window is short; polling tightly over a dozen blocks hit it about a third of the time.
    """
    sender = fund_fresh(w3)
    session = requests.Session()
    for nonce in range(12):
        tx_hash = send_signed(
            w3,
            sender,
            {"to": FUNDER.address, "value": 1, "gas": TRANSFER_GAS, "nonce": nonce, **fees_1559(w3)},
        ).to_0x_hex()
        while True:  # in a batch, calls run in order: count, receipt, head, count again
            count_before, receipt, head, count_after = session.post(
                node.url,
                timeout=10,
                json=[
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "eth_getTransactionCount",
                        "params": [sender.address, "latest"],
                    },
                    {"jsonrpc": "2.0", "id": 2, "method": "eth_getTransactionReceipt", "params": [tx_hash]},
                    {"jsonrpc": "2.0", "id": 3, "method": "eth_blockNumber", "params": []},
                    {
                        "jsonrpc": "2.0",
                        "id": 4,
                        "method": "eth_getTransactionCount",
                        "params": [sender.address, "latest"],
                    },
                ],
            ).json()
            if receipt["result"] is None:
                assert int(count_before["result"], 16) == nonce  # not mined: nonce still unused
            else:
                break
        assert int(head["result"], 16) >= int(receipt["result"]["blockNumber"], 16)
        assert int(count_after["result"], 16) == nonce + 1
        block = w3.eth.get_block(int(receipt["result"]["blockNumber"], 16))
        assert block.hash.to_0x_hex() == receipt["result"]["blockHash"]


@pytest.fixture(scope="module")
def slow_node(tmp_path_factory):
    """A node with a 2 s block time, so a transaction visibly waits in the pool."""
    process = start_node(tmp_path_factory.mktemp("wallet-http-slow"), block_time="2")
    yield process
    process.kill()


def test_pending_nonce_and_pending_transaction(slow_node):
    w3 = Web3(Web3.HTTPProvider(slow_node.url))
    sender = ETH_SENDER
    recipient = Account.create().address
    # The first transaction on an idle chain is mined at once; the next one waits a block time.
    first = wait(w3, send_signed(w3, sender, {"to": recipient, "value": 1, "gas": TRANSFER_GAS, **fees_1559(w3)}))
    assert first.status == 1
    nonce = w3.eth.get_transaction_count(sender.address)
    pending_filter = w3.eth.filter("pending")
    tx_hash = send_signed(
        w3, sender, {"to": recipient, "value": 2, "gas": TRANSFER_GAS, "nonce": nonce, **fees_1559(w3)}
    )
    assert pending_filter.get_new_entries() == [tx_hash]
    assert pending_filter.get_new_entries() == []

    assert w3.eth.get_transaction_count(sender.address, "pending") == nonce + 1
    assert w3.eth.get_transaction_count(sender.address, "latest") == nonce
    pending = w3.eth.get_transaction(tx_hash)
    assert pending.blockHash is None and pending.blockNumber is None
    assert pending.transactionIndex is None
    assert pending.nonce == nonce and pending.value == 2 and pending["from"] == sender.address
    with pytest.raises(TransactionNotFound):
        w3.eth.get_transaction_receipt(tx_hash)

    receipt = wait(w3, tx_hash)
    assert receipt.blockNumber == first.blockNumber + 1
    mined = w3.eth.get_transaction(tx_hash)
    assert mined.blockHash == receipt.blockHash and mined.blockNumber == receipt.blockNumber
    assert w3.eth.get_transaction_count(sender.address, "pending") == nonce + 1
    assert w3.eth.get_transaction_count(sender.address, "latest") == nonce + 1
    assert w3.eth.get_balance(recipient) == 3


# ---- fees -----------------------------------------------------------------------------


def test_gas_price_and_priority_fee_are_sane(w3):
    gas_price = w3.eth.gas_price
    tip = w3.eth.max_priority_fee
    next_base = w3.eth.fee_history(1, "latest")["baseFeePerGas"][-1]
    assert 0 <= tip <= 100 * GWEI
    assert next_base <= gas_price <= next_base + tip + 1  # base fee of the next block + a tip
    assert gas_price < 1_000 * GWEI


def test_fee_history(w3):
    sender = fund_fresh(w3)
    tip = 3 * GWEI
    fees = fees_1559(w3, tip=tip)
    receipt = sign_and_wait(w3, sender, {"to": FUNDER.address, "value": 1, "gas": TRANSFER_GAS, **fees})
    block = w3.eth.get_block(receipt.blockNumber)
    assert len(block.transactions) == 1

    history = w3.eth.fee_history(1, receipt.blockNumber, [10, 50, 90])
    assert history.oldestBlock == receipt.blockNumber
    assert history.baseFeePerGas[0] == block.baseFeePerGas
    assert len(history.baseFeePerGas) == 2
    assert history.gasUsedRatio == [block.gasUsed / block.gasLimit]
    assert history.reward == [[tip, tip, tip]]  # the one transaction paid exactly this tip

    count = 4
    head = w3.eth.block_number
    assert head >= count
    history = w3.eth.fee_history(count, "latest", [25, 75])
    assert history.oldestBlock == head - count + 1
    assert len(history.baseFeePerGas) == count + 1
    assert len(history.gasUsedRatio) == count
    assert len(history.reward) == count and all(len(r) == 2 for r in history.reward)
    assert all(r[0] <= r[1] for r in history.reward)
    for offset, base_fee in enumerate(history.baseFeePerGas[:-1]):
        assert base_fee == w3.eth.get_block(history.oldestBlock + offset).baseFeePerGas
    # Without percentiles geth leaves "reward" out.
    raw = rpc(w3, "eth_feeHistory", [hex(2), "latest", []])["result"]
    assert raw["oldestBlock"] == hex(head - 1)
    assert len(raw["baseFeePerGas"]) == 3
    # A count larger than the chain starts at genesis.
    history = w3.eth.fee_history(head + 50, "latest")
    assert history.oldestBlock == 0 and len(history.baseFeePerGas) == head + 2


# ---- blocks -----------------------------------------------------------------------------


def test_blocks_by_tag_number_and_hash(w3):
    receipt = sign_and_wait(w3, ETH_SENDER, {"to": FUNDER.address, "value": 7, "gas": TRANSFER_GAS, **fees_1559(w3)})
    latest = w3.eth.get_block("latest")
    assert latest.number == w3.eth.block_number >= receipt.blockNumber
    # Instant finality: safe and finalized are the head; the pending tag is the head too.
    for tag in ("safe", "finalized", "pending"):
        assert w3.eth.get_block(tag).hash == latest.hash, tag
    earliest = w3.eth.get_block("earliest")
    assert earliest.number == 0
    assert earliest.parentHash == b"\0" * 32
    assert w3.eth.get_block(0).hash == earliest.hash

    by_number = w3.eth.get_block(receipt.blockNumber, full_transactions=True)
    by_hash = w3.eth.get_block(receipt.blockHash, full_transactions=True)
    assert by_number == by_hash
    assert by_number.hash == receipt.blockHash
    assert by_number.number == receipt.blockNumber
    assert by_number.parentHash == w3.eth.get_block(receipt.blockNumber - 1).hash
    assert by_number.gasUsed == receipt.cumulativeGasUsed
    assert by_number.miner == to_checksum_address(by_number.miner)
    tx = by_number.transactions[receipt.transactionIndex]
    assert tx.hash == receipt.transactionHash
    assert tx.blockHash == receipt.blockHash and tx.blockNumber == receipt.blockNumber
    assert tx["from"] == ETH_SENDER.address and tx.value == 7
    assert tx == w3.eth.get_transaction(receipt.transactionHash)
    assert w3.eth.get_transaction_by_block(receipt.blockNumber, receipt.transactionIndex) == tx
    assert w3.eth.get_block_transaction_count(receipt.blockNumber) == len(by_number.transactions)

    thin = w3.eth.get_block(receipt.blockHash)
    assert thin.transactions[receipt.transactionIndex] == receipt.transactionHash
    assert thin.size > 0 and thin.stateRoot == by_number.stateRoot

    with pytest.raises(BlockNotFound):
        w3.eth.get_block(latest.number + 1000)
    with pytest.raises(BlockNotFound):
        w3.eth.get_block("0x" + "ab" * 32)
    with pytest.raises(TransactionNotFound):
        w3.eth.get_transaction("0x" + "cd" * 32)


# ---- the ERC20 --------------------------------------------------------------------------


def test_deploy_token_and_read_it(w3, erc20, token):
    contract, receipt = token
    assert receipt["from"] == DEPLOYER.address and receipt.to is None
    assert w3.eth.get_block(receipt.blockNumber).hash == receipt.blockHash
    code = w3.eth.get_code(contract.address)
    assert code.to_0x_hex() == erc20.bytecode_runtime
    assert w3.eth.get_code(contract.address, receipt.blockNumber - 1) == b""
    assert w3.eth.get_code(DEPLOYER.address) == b""

    assert contract.functions.name().call() == "Laminar Token"
    assert contract.functions.symbol().call() == "LAM"
    assert contract.functions.decimals().call() == 18
    assert contract.functions.totalSupply().call() == TOKEN_SUPPLY
    assert contract.functions.balanceOf(DEPLOYER.address).call() == TOKEN_SUPPLY
    # eth_call at a block before the deployment sees no contract: empty return data.
    raw = rpc(
        w3,
        "eth_call",
        [{"to": contract.address, "data": contract.encode_abi("totalSupply")}, hex(receipt.blockNumber - 1)],
    )
    assert raw["result"] == "0x"

    (minted,) = contract.events.Transfer().process_receipt(receipt)
    assert minted.args.sender == ZERO_ADDRESS  # the zero address: a mint
    assert minted.args.receiver == DEPLOYER.address
    assert minted.args.value == TOKEN_SUPPLY
    assert minted.address == contract.address

    # Storage, as the vyper layout places it.
    supply_slot = erc20.storage_layout["totalSupply"]["slot"]
    assert int.from_bytes(w3.eth.get_storage_at(contract.address, supply_slot), "big") == TOKEN_SUPPLY
    balances_slot = erc20.storage_layout["balanceOf"]["slot"]
    deployer_slot = vyper_hashmap_slot(balances_slot, bytes.fromhex(DEPLOYER.address[2:]))
    stored = w3.eth.get_storage_at(contract.address, deployer_slot, receipt.blockNumber)
    assert int.from_bytes(stored, "big") == TOKEN_SUPPLY
    assert int.from_bytes(w3.eth.get_storage_at(contract.address, supply_slot, receipt.blockNumber - 1), "big") == 0


def test_token_transfer_event_and_exact_estimate(w3, token):
    contract, _ = token
    recipient = Account.create().address
    amount = 1234 * 10**18
    call = contract.functions.transfer(recipient, amount)
    estimate = call.estimate_gas({"from": DEPLOYER.address})
    assert call.call({"from": DEPLOYER.address}) is True

    # A wallet sends with gas = the estimate: geth's promise is that this is enough.
    receipt = token_transfer(w3, contract, DEPLOYER, recipient, amount, gas=estimate, **fees_1559(w3))
    assert receipt.status == 1
    assert receipt.gasUsed <= estimate <= receipt.gasUsed + receipt.gasUsed // 50

    (event,) = contract.events.Transfer().process_receipt(receipt)
    assert event.event == "Transfer"
    assert event.args.sender == DEPLOYER.address
    assert event.args.receiver == recipient
    assert event.args.value == amount
    assert event.address == contract.address
    assert event.transactionHash == receipt.transactionHash
    assert event.blockHash == receipt.blockHash and event.blockNumber == receipt.blockNumber
    assert event.logIndex == 0 and event.transactionIndex == receipt.transactionIndex
    (log,) = receipt.logs
    assert log.topics[0].to_0x_hex() == TRANSFER_TOPIC
    assert log.topics[2].to_0x_hex() == topic_of(recipient)

    at = receipt.blockNumber
    assert contract.functions.balanceOf(recipient).call(block_identifier=at) == amount
    assert contract.functions.balanceOf(recipient).call(block_identifier=at - 1) == 0
    assert (
        contract.functions.balanceOf(DEPLOYER.address).call(block_identifier=at - 1)
        - contract.functions.balanceOf(DEPLOYER.address).call(block_identifier=at)
        == amount
    )
    assert contract.functions.totalSupply().call() == TOKEN_SUPPLY


def test_approve_and_transfer_from(w3, token):
    contract, _ = token
    spender = fund_fresh(w3, ETHER)
    target = Account.create().address
    tx = contract.functions.approve(spender.address, 500).build_transaction(
        {"from": DEPLOYER.address, "nonce": w3.eth.get_transaction_count(DEPLOYER.address, "pending")}
    )
    receipt = sign_and_wait(w3, DEPLOYER, tx)
    (approval,) = contract.events.Approval().process_receipt(receipt)
    assert approval.args.owner == DEPLOYER.address and approval.args.spender == spender.address
    assert approval.args.value == 500
    assert contract.functions.allowance(DEPLOYER.address, spender.address).call() == 500

    with pytest.raises(ContractLogicError, match="insufficient allowance"):
        contract.functions.transferFrom(DEPLOYER.address, target, 501).call({"from": spender.address})
    tx = contract.functions.transferFrom(DEPLOYER.address, target, 200).build_transaction(
        {"from": spender.address, "nonce": 0}
    )
    receipt = sign_and_wait(w3, spender, tx)
    assert receipt.status == 1
    (event,) = contract.events.Transfer().process_receipt(receipt)
    assert (event.args.sender, event.args.receiver, event.args.value) == (DEPLOYER.address, target, 200)
    assert contract.functions.allowance(DEPLOYER.address, spender.address).call() == 300
    assert contract.functions.balanceOf(target).call() == 200


def test_revert_reason_from_call_and_estimate(w3, token):
    contract, _ = token
    poor = Account.create().address  # holds no tokens (and no ether: calls need none)
    too_much = contract.functions.transfer(DEPLOYER.address, 1)
    expected_data = "0x08c379a0" + abi_encode(["string"], ["insufficient balance"]).hex()

    with pytest.raises(ContractLogicError) as from_call:
        too_much.call({"from": poor})
    assert "insufficient balance" in str(from_call.value)
    assert from_call.value.data == expected_data
    with pytest.raises(ContractLogicError) as from_estimate:
        too_much.estimate_gas({"from": poor})
    assert "insufficient balance" in str(from_estimate.value)
    assert from_estimate.value.data == expected_data

    # The wire format is geth's: code 3, "execution reverted: <reason>", data = revert data.
    request = {"from": poor, "to": contract.address, "data": contract.encode_abi("transfer", [DEPLOYER.address, 1])}
    for method, params in (("eth_call", [request, "latest"]), ("eth_estimateGas", [request])):
        error = rpc(w3, method, params)["error"]
        assert error["code"] == 3, method
        assert error["message"] == "execution reverted: insufficient balance", method
        assert error["data"] == expected_data, method


def test_failed_transaction_is_mined_with_status_zero(w3, token):
    contract, _ = token
    sender = fund_fresh(w3, ETHER)
    tx = contract.functions.transfer(DEPLOYER.address, 1).build_transaction(
        {"from": sender.address, "nonce": 0, "gas": 100_000, **fees_1559(w3)}
    )
    receipt = sign_and_wait(w3, sender, tx)
    assert receipt.status == 0
    assert receipt.logs == []
    assert 21_000 < receipt.gasUsed < 100_000
    before = w3.eth.get_balance(sender.address, receipt.blockNumber - 1)
    assert before - w3.eth.get_balance(sender.address, receipt.blockNumber) == (
        receipt.gasUsed * receipt.effectiveGasPrice
    )
    assert w3.eth.get_transaction_count(sender.address) == 1


# ---- logs and filters ---------------------------------------------------------------


def test_get_logs_by_address_topic_and_range(w3, token):
    contract, deploy_receipt = token
    alice, bob = Account.create().address, Account.create().address
    first = token_transfer(w3, contract, DEPLOYER, alice, 11)
    second = token_transfer(w3, contract, DEPLOYER, bob, 22)
    assert second.blockNumber > first.blockNumber

    logs = w3.eth.get_logs(
        {
            "address": contract.address,
            "topics": [TRANSFER_TOPIC],
            "fromBlock": first.blockNumber,
            "toBlock": second.blockNumber,
        }
    )
    events = [contract.events.Transfer().process_log(log) for log in logs]
    ours = [(e.args.receiver, e.args.value) for e in events if e.args.receiver in (alice, bob)]
    assert ours == [(alice, 11), (bob, 22)]
    assert len(logs) == 2  # nobody else moved tokens in between
    assert logs[0].blockHash == first.blockHash and logs[0].transactionHash == first.transactionHash
    assert logs[1].blockHash == second.blockHash
    assert logs[0] == first.logs[0] and logs[1] == second.logs[0]

    # Topic filter on the (indexed) receiver, over the whole chain.
    to_bob = w3.eth.get_logs(
        {
            "address": contract.address,
            "topics": [TRANSFER_TOPIC, None, topic_of(bob)],
            "fromBlock": "earliest",
            "toBlock": "latest",
        }
    )
    assert [log.transactionHash for log in to_bob] == [second.transactionHash]
    # OR within a position.
    either = w3.eth.get_logs({"topics": [TRANSFER_TOPIC, None, [topic_of(alice), topic_of(bob)]], "fromBlock": 0})
    assert [log.transactionHash for log in either] == [first.transactionHash, second.transactionHash]
    # The mint is in the deployment block.
    mints = w3.eth.get_logs(
        {"address": contract.address, "topics": [TRANSFER_TOPIC, topic_of(ZERO_ADDRESS)], "fromBlock": 0}
    )
    assert [log.transactionHash for log in mints] == [deploy_receipt.transactionHash]
    # By block hash.
    assert w3.eth.get_logs({"blockHash": second.blockHash, "address": contract.address}) == second.logs
    # Other address, other topic, or a range that excludes them: nothing.
    assert w3.eth.get_logs({"address": Account.create().address, "fromBlock": 0}) == []
    assert (
        w3.eth.get_logs({"address": contract.address, "topics": [APPROVAL_TOPIC, topic_of(alice)], "fromBlock": 0})
        == []
    )
    assert (
        w3.eth.get_logs(
            {
                "topics": [TRANSFER_TOPIC, None, topic_of(alice)],
                "fromBlock": second.blockNumber,
                "toBlock": second.blockNumber,
            }
        )
        == []
    )


def test_log_filter_and_block_filter_report_changes_once(w3, token):
    contract, _ = token
    recipient = Account.create().address
    log_filter = w3.eth.filter({"address": contract.address, "topics": [TRANSFER_TOPIC]})
    block_filter = w3.eth.filter("latest")
    assert log_filter.get_new_entries() == []
    assert block_filter.get_new_entries() == []

    receipt = token_transfer(w3, contract, DEPLOYER, recipient, 5)

    changes = log_filter.get_new_entries()
    assert len(changes) == 1
    assert changes[0] == receipt.logs[0]
    event = contract.events.Transfer().process_log(changes[0])
    assert event.args.receiver == recipient and event.args.value == 5
    assert log_filter.get_new_entries() == []  # reported once
    # No fromBlock/toBlock: eth_getFilterLogs covers the latest block, as in geth.
    assert w3.eth.get_filter_logs(log_filter.filter_id) == changes
    blocks = block_filter.get_new_entries()
    assert blocks == [receipt.blockHash]
    assert block_filter.get_new_entries() == []

    assert w3.eth.uninstall_filter(log_filter.filter_id) is True
    assert w3.eth.uninstall_filter(log_filter.filter_id) is False
    assert w3.eth.uninstall_filter(block_filter.filter_id) is True
    error = rpc(w3, "eth_getFilterChanges", [log_filter.filter_id])["error"]
    assert error["code"] == -32000 and "filter not found" in error["message"]


def test_estimate_gas_for_ether_transfer_and_deployment(w3, erc20):
    assert w3.eth.estimate_gas({"from": ETH_SENDER.address, "to": Account.create().address, "value": 1}) == TRANSFER_GAS
    factory = w3.eth.contract(abi=erc20.abi, bytecode=erc20.bytecode)
    fresh = fund_fresh(w3, ETHER)
    constructor = factory.constructor("T", "T", 0, 1)
    estimate = constructor.estimate_gas({"from": fresh.address})
    tx = constructor.build_transaction({"from": fresh.address, "nonce": 0, "gas": estimate})
    receipt = sign_and_wait(w3, fresh, tx)
    assert receipt.status == 1
    assert receipt.gasUsed <= estimate <= receipt.gasUsed + receipt.gasUsed // 50
    deployed = w3.eth.contract(address=receipt.contractAddress, abi=erc20.abi)
    assert deployed.functions.balanceOf(fresh.address).call() == 1


QUANTITY = r"^0x(0|[1-9a-f][0-9a-f]*)$"


def test_mined_transactions_carry_block_timestamp_and_eip7702_authorizations(w3):
    """execution-apis' TransactionInfo requires blockTimestamp for mined transactions and
    authorizationList for type-4 ones (both were missing)."""
    import re

    sender = fund_fresh(w3)
    authority = Account.create()
    auth = Account.sign_authorization(
        {"chainId": CHAIN_ID, "address": FUNDER.address, "nonce": 0}, authority.key
    )
    receipt = sign_and_wait(w3, sender, {
        "type": 4, "to": sender.address, "value": 0, "gas": 100_000,
        "authorizationList": [auth], **fees_1559(w3),
    })
    assert receipt.status == 1
    tx = rpc(w3, "eth_getTransactionByHash", [receipt.transactionHash.to_0x_hex()])["result"]
    block = rpc(w3, "eth_getBlockByNumber", [hex(receipt.blockNumber), True])["result"]
    assert tx["blockTimestamp"] == block["timestamp"]
    assert block["transactions"][receipt.transactionIndex] == tx
    (item,) = tx["authorizationList"]
    assert item["address"] == FUNDER.address.lower()
    assert int(item["chainId"], 16) == CHAIN_ID and item["nonce"] == "0x0"
    assert all(re.match(QUANTITY, item[k]) for k in ("chainId", "nonce", "yParity", "r", "s"))
    assert int(item["r"], 16) == auth.r and int(item["s"], 16) == auth.s
