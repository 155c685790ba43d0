"""A plain JSON-RPC client for the method and conformance tests: raw requests and
responses (no web3 result formatting), and transactions signed locally with eth-account."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

import requests
from eth_account import Account

CHAIN_ID = 31337
GWEI = 10**9
TRANSFER_GAS = 21_000
RECEIPT_TIMEOUT_S = 30
POLL_S = 0.05
HTTP_TIMEOUT_S = 30


class RpcFailure(AssertionError):
    """A call that was expected to succeed returned a JSON-RPC error."""


@dataclass
class Rpc:
    url: str
    session: requests.Session

    @classmethod
    def connect(cls, url: str) -> Rpc:
        return cls(url, requests.Session())

    def request(self, method: str, params: Optional[list] = None) -> dict:
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            body["params"] = params
        response = self.session.post(self.url, json=body, timeout=HTTP_TIMEOUT_S)
        assert response.status_code == 200, (method, params, response.status_code, response.text)
        return response.json()

    def call(self, method: str, *params: Any) -> Any:
        reply = self.request(method, list(params))
        if "error" in reply:
            raise RpcFailure(f"{method}{list(params)!r}: {reply['error']}")
        return reply["result"]

    def error(self, method: str, *params: Any) -> dict:
        """The error a call must give (fails the test when it succeeds)."""
        reply = self.request(method, list(params))
        assert "error" in reply, f"{method}{list(params)!r} succeeded: {reply.get('result')!r}"
        return reply["error"]

    def send(self, account, tx: dict) -> str:
        """Sign `tx` (chainId and nonce filled in when absent) and send it raw."""
        tx = {"chainId": CHAIN_ID, **tx}
        if "nonce" not in tx:
            tx["nonce"] = int(self.call("eth_getTransactionCount", account.address, "pending"), 16)
        signed = Account.sign_transaction(tx, account.key)
        return self.call("eth_sendRawTransaction", "0x" + signed.raw_transaction.hex())

    def wait(self, tx_hash: str) -> dict:
        deadline = time.monotonic() + RECEIPT_TIMEOUT_S
        while time.monotonic() < deadline:
            receipt = self.call("eth_getTransactionReceipt", tx_hash)
            if receipt is not None:
                return receipt
            time.sleep(POLL_S)
        raise AssertionError(f"no receipt for {tx_hash} within {RECEIPT_TIMEOUT_S} s")

    def fees(self) -> dict:
        base = int(self.call("eth_getBlockByNumber", "latest", False)["baseFeePerGas"], 16)
        return {"maxFeePerGas": 2 * base + GWEI, "maxPriorityFeePerGas": GWEI}

    def legacy_price(self) -> int:
        return int(self.call("eth_gasPrice"), 16)
