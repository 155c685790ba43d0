"""A real wallet stack over WebSocket: web3.py's `WebSocketProvider` (asyncio) and raw frames.

The node serves HTTP and WebSocket on one port. These tests are plain (sync) functions
that run their asyncio code with `asyncio.run`, so pytest-trio (trio_mode) leaves them
alone. Nothing sleeps: every wait is on a receipt or on a subscription message, with a
timeout so a missing notification fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import DEV_KEYS, start_node
from eth_account import Account
from eth_utils import keccak
from web3 import AsyncWeb3, WebSocketProvider
from websockets.sync.client import connect as ws_connect

CHAIN_ID = 31337
ETHER = 10**18
DEV_BALANCE = 10_000 * ETHER
TRANSFER_GAS = 21_000
TIMEOUT_S = 20
TOKEN_SUPPLY = 10**24
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()

DEPLOYER = Account.from_key(DEV_KEYS[0])
SENDER = Account.from_key(DEV_KEYS[1])
HEADS_SENDER = Account.from_key(DEV_KEYS[2])


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = start_node(tmp_path_factory.mktemp("wallet-ws"))
    yield process
    process.kill()


def run(coroutine_function, *args):
    """Run an async test body under asyncio (not trio), with an overall timeout."""

    async def bounded():
        return await asyncio.wait_for(coroutine_function(*args), timeout=60)

    return asyncio.run(bounded())


async def fees(w3: AsyncWeb3) -> dict:
    base = (await w3.eth.get_block("latest"))["baseFeePerGas"]
    tip = await w3.eth.max_priority_fee
    return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}


async def send(w3: AsyncWeb3, account, tx: dict) -> bytes:
    tx = {"chainId": CHAIN_ID, **tx}
    tx.setdefault("nonce", await w3.eth.get_transaction_count(account.address, "pending"))
    signed = Account.sign_transaction(tx, account.key)
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    assert tx_hash == signed.hash
    return tx_hash


async def wait(w3: AsyncWeb3, tx_hash):
    return await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=TIMEOUT_S, poll_latency=0.05)


async def next_notification(w3: AsyncWeb3, subscription_id: str):
    """The next message of the given subscription (others, if any, are skipped)."""
    stream = w3.socket.process_subscriptions()
    while True:
        message = await asyncio.wait_for(stream.__anext__(), timeout=TIMEOUT_S)
        if message["subscription"] == subscription_id:
            return message["result"]


@pytest.fixture(scope="module")
def token_address(node, erc20) -> str:
    """The ERC20, deployed over WebSocket with web3's (async) contract API."""

    async def deploy():
        async with AsyncWeb3(WebSocketProvider(node.ws_url)) as w3:
            factory = w3.eth.contract(abi=erc20.abi, bytecode=erc20.bytecode)
            tx = await factory.constructor("WS Token", "WST", 18, TOKEN_SUPPLY).build_transaction(
                {
                    "from": DEPLOYER.address,
                    "nonce": await w3.eth.get_transaction_count(DEPLOYER.address, "pending"),
                    "chainId": CHAIN_ID,
                }
            )
            receipt = await wait(w3, await send(w3, DEPLOYER, tx))
            assert receipt.status == 1
            token = w3.eth.contract(address=receipt.contractAddress, abi=erc20.abi)
            assert await token.functions.totalSupply().call() == TOKEN_SUPPLY
            return receipt.contractAddress

    return run(deploy)


# ---- web3's WebSocketProvider -----------------------------------------------------------


def test_ws_reads_and_ether_transfer(node):
    async def body():
        async with AsyncWeb3(WebSocketProvider(node.ws_url)) as w3:
            assert await w3.is_connected()
            assert await w3.eth.chain_id == CHAIN_ID
            assert await w3.net.version == str(CHAIN_ID)
            assert await w3.eth.get_balance(SENDER.address, "earliest") == DEV_BALANCE
            recipient = Account.create().address
            value = 5 * ETHER + 17
            tx_hash = await send(
                w3, SENDER,
                {"to": recipient, "value": value, "gas": TRANSFER_GAS, **(await fees(w3))},
            )
            receipt = await wait(w3, tx_hash)
            assert receipt.status == 1 and receipt.gasUsed == TRANSFER_GAS
            assert receipt["from"] == SENDER.address and receipt.to == recipient
            block = await w3.eth.get_block(receipt.blockNumber)
            assert block.hash == receipt.blockHash and tx_hash in block.transactions
            assert await w3.eth.get_balance(recipient) == value
            before = await w3.eth.get_balance(SENDER.address, receipt.blockNumber - 1)
            after = await w3.eth.get_balance(SENDER.address, receipt.blockNumber)
            assert before - after == value + receipt.gasUsed * receipt.effectiveGasPrice
            assert await w3.eth.block_number >= receipt.blockNumber

    run(body)


def test_ws_new_heads_delivers_the_block_of_a_sent_transaction(node):
    async def body():
        async with AsyncWeb3(WebSocketProvider(node.ws_url)) as w3:
            subscription = await w3.eth.subscribe("newHeads")
            assert isinstance(subscription, str) and subscription.startswith("0x")
            tx_hash = await send(
                w3, HEADS_SENDER,
                {"to": DEPLOYER.address, "value": 1, "gas": TRANSFER_GAS, **(await fees(w3))},
            )
            # Heads arrive in order; the one whose block holds our transaction comes soon.
            while True:
                head = await next_notification(w3, subscription)
                block = await w3.eth.get_block(head["hash"])
                if tx_hash in block.transactions:
                    break
            receipt = await w3.eth.get_transaction_receipt(tx_hash)
            assert head["number"] == receipt.blockNumber
            assert head["hash"] == receipt.blockHash
            for key in ("parentHash", "stateRoot", "transactionsRoot", "receiptsRoot", "miner",
                        "gasUsed", "gasLimit", "timestamp", "baseFeePerGas", "logsBloom"):
                assert head[key] == block[key], key
            # A second transaction gives exactly the next head.
            tx2 = await send(
                w3, HEADS_SENDER,
                {"to": DEPLOYER.address, "value": 2, "gas": TRANSFER_GAS, **(await fees(w3))},
            )
            following = await next_notification(w3, subscription)
            assert following["number"] == head["number"] + 1
            assert following["parentHash"] == head["hash"]
            receipt2 = await wait(w3, tx2)
            assert receipt2.blockHash == following["hash"]

            assert await w3.eth.unsubscribe(subscription) is True

    run(body)


def test_ws_new_pending_transactions_hashes_and_full_objects(node):
    """ethers' provider.on("pending") and web3's subscribe("newPendingTransactions"): every
    transaction that enters the pool is announced, as a hash or (flag true) whole."""
    pending_sender = Account.from_key(DEV_KEYS[3])

    async def body():
        async with AsyncWeb3(WebSocketProvider(node.ws_url)) as w3:
            hashes = await w3.eth.subscribe("newPendingTransactions")
            full = await w3.eth.subscribe("newPendingTransactions", True)
            tx_hash = await send(
                w3, pending_sender,
                {"to": DEPLOYER.address, "value": 3, "gas": TRANSFER_GAS, **(await fees(w3))},
            )
            announced = await next_notification(w3, hashes)
            assert announced == tx_hash
            whole = await next_notification(w3, full)
            assert whole["hash"] == tx_hash
            assert whole["from"] == pending_sender.address
            assert whole["value"] == 3 and whole["blockHash"] is None
            assert (await wait(w3, tx_hash)).status == 1
            assert await w3.eth.unsubscribe(hashes) is True
            assert await w3.eth.unsubscribe(full) is True

    run(body)


def test_ws_logs_subscription_delivers_the_transfer_log(node, erc20, token_address):
    async def body():
        async with AsyncWeb3(WebSocketProvider(node.ws_url)) as w3:
            token = w3.eth.contract(address=token_address, abi=erc20.abi)
            subscription = await w3.eth.subscribe("logs", {"address": token_address})
            other = await w3.eth.subscribe("logs", {"address": Account.create().address})
            recipient = Account.create().address
            tx = await token.functions.transfer(recipient, 777).build_transaction(
                {
                    "from": DEPLOYER.address,
                    "nonce": await w3.eth.get_transaction_count(DEPLOYER.address, "pending"),
                    **(await fees(w3)),
                }
            )
            tx_hash = await send(w3, DEPLOYER, tx)
            log = await next_notification(w3, subscription)
            receipt = await wait(w3, tx_hash)

            assert log.transactionHash == tx_hash
            assert log.address == token_address
            assert log.topics[0].to_0x_hex() == TRANSFER_TOPIC
            assert log.blockHash == receipt.blockHash and log.blockNumber == receipt.blockNumber
            assert log.logIndex == receipt.logs[0].logIndex
            assert log.removed is False
            event = token.events.Transfer().process_log(log)
            assert event.args.sender == DEPLOYER.address
            assert event.args.receiver == recipient
            assert event.args.value == 777
            assert await token.functions.balanceOf(recipient).call() == 777

            assert await w3.eth.unsubscribe(subscription) is True
            assert await w3.eth.unsubscribe(other) is True

    run(body)


# ---- raw JSON-RPC frames --------------------------------------------------------------


def test_ws_raw_frames_subscribe_notify_unsubscribe(node, token_address, erc20):
    """Wire format, as geth sends it, checked without any client library in between."""
    from web3 import Web3

    http = Web3(Web3.HTTPProvider(node.url))
    token = http.eth.contract(address=token_address, abi=erc20.abi)

    with ws_connect(node.ws_url, open_timeout=TIMEOUT_S) as ws:
        pending_replies: dict = {}
        notifications: list = []

        def request(request_id, method, params):
            ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
            while request_id not in pending_replies:
                message = json.loads(ws.recv(timeout=TIMEOUT_S))
                if "id" in message:
                    pending_replies[message["id"]] = message
                else:
                    notifications.append(message)
            return pending_replies.pop(request_id)

        def notification(subscription):
            while True:
                for i, message in enumerate(notifications):
                    if message["params"]["subscription"] == subscription:
                        return notifications.pop(i)
                message = json.loads(ws.recv(timeout=TIMEOUT_S))
                assert "id" not in message
                notifications.append(message)

        assert request(1, "eth_chainId", [])["result"] == hex(CHAIN_ID)
        heads = request(2, "eth_subscribe", ["newHeads"])["result"]
        logs = request(3, "eth_subscribe", ["logs", {"address": token_address, "topics": [TRANSFER_TOPIC]}])["result"]
        assert heads != logs
        bad = request(4, "eth_subscribe", ["noSuchKind"])
        assert "error" in bad and "result" not in bad
        for bad_params in (["logs", {}, "extra"], ["newPendingTransactions", "yes"],
                           ["newHeads", {}]):
            refused = request(40, "eth_subscribe", bad_params)
            assert refused["error"]["code"] == -32602, (bad_params, refused)

        recipient = Account.create().address
        tx = token.functions.transfer(recipient, 9).build_transaction(
            {
                "from": DEPLOYER.address,
                "nonce": http.eth.get_transaction_count(DEPLOYER.address, "pending"),
                "gas": 100_000,
                "maxFeePerGas": 10**11,
                "maxPriorityFeePerGas": 10**9,
                "chainId": CHAIN_ID,
            }
        )
        signed = Account.sign_transaction(tx, DEPLOYER.key)
        sent = request(5, "eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])
        assert sent["result"] == signed.hash.to_0x_hex()

        log_message = notification(logs)
        assert log_message["jsonrpc"] == "2.0" and log_message["method"] == "eth_subscription"
        log = log_message["params"]["result"]
        assert log["transactionHash"] == signed.hash.to_0x_hex()
        assert log["address"] == token_address.lower()
        assert log["topics"] == [TRANSFER_TOPIC, "0x" + "00" * 12 + DEPLOYER.address[2:].lower(),
                                 "0x" + "00" * 12 + recipient[2:].lower()]
        assert int(log["data"], 16) == 9
        block_number = log["blockNumber"]

        # The head of that block arrives on the other subscription.
        while True:
            head = notification(heads)["params"]["result"]
            if head["number"] == block_number:
                break
        assert head["hash"] == log["blockHash"]
        receipt = request(6, "eth_getTransactionReceipt", [signed.hash.to_0x_hex()])["result"]
        assert receipt["blockHash"] == head["hash"] and receipt["status"] == "0x1"

        assert request(7, "eth_unsubscribe", [heads])["result"] is True
        assert request(8, "eth_unsubscribe", [logs])["result"] is True
        # Unknown (already removed) subscription: geth answers with an error, not false.
        gone = request(9, "eth_unsubscribe", [logs])
        assert gone["error"] == {"code": -32000, "message": "subscription not found"}
        # After unsubscribing, a new block and a new Transfer notify nobody on this socket.
        notifications.clear()
        tx = token.functions.transfer(recipient, 1).build_transaction(
            {"from": DEPLOYER.address, "nonce": tx["nonce"] + 1, "gas": 100_000,
             "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9, "chainId": CHAIN_ID}
        )
        later = Account.sign_transaction(tx, DEPLOYER.key)
        assert request(10, "eth_sendRawTransaction", ["0x" + later.raw_transaction.hex()])["result"]
        assert http.eth.wait_for_transaction_receipt(later.hash, timeout=TIMEOUT_S, poll_latency=0.05).status == 1
        assert request(11, "eth_blockNumber", [])["result"].startswith("0x")
        assert notifications == []
