"""Small blocks for the Block-STM tests (ERC20 transfers, plain transfers)."""

from __future__ import annotations

from functools import lru_cache

from eth_account import Account
from eth_utils import to_checksum_address

from execution.executor import BlockEnv, BlockInput, StateView
from execution.forks import LAMINAR_VM
from execution.prestate import load_prestate

CHAIN_ID = 31337
GWEI = 10**9
COINBASE = b"\xc0" * 20


def env() -> BlockEnv:
    return BlockEnv(
        vm_class=LAMINAR_VM, chain_id=CHAIN_ID, number=10, timestamp=1_700_000_000,
        coinbase=COINBASE, gas_limit=60_000_000, parent_hash=b"\x99" * 32,
        base_fee_per_gas=7 * GWEI, excess_blob_gas=0, parent_beacon_block_root=b"\x00" * 32,
    )


@lru_cache(maxsize=None)
def keys(n: int) -> tuple:
    return tuple(Account.from_key((i + 1).to_bytes(32, "big")) for i in range(n))


def decode(raw: bytes):
    return LAMINAR_VM.get_transaction_builder().decode(bytes(raw))


@lru_cache(maxsize=None)
def _signed_transfers(n: int, gap_at: int) -> tuple:
    out = []
    for i, acct in enumerate(keys(n)):
        nonce = 1 if i == gap_at else 0
        out.append(acct.sign_transaction({
            "type": 2, "chainId": CHAIN_ID, "nonce": nonce,
            "to": to_checksum_address(bytes([0x70, i % 256]).rjust(20, b"\x07")),
            "value": 10**15 + i, "gas": 21_000, "maxFeePerGas": 20 * GWEI,
            "maxPriorityFeePerGas": GWEI, "data": b"",
        }).raw_transaction)
    return tuple(out)


def transfers_with_nonce_gap(n: int, gap_at: int):
    nodes, root = load_prestate({a.address: {"balance": hex(10**20)} for a in keys(n)})
    txs = tuple(decode(r) for r in _signed_transfers(n, gap_at))
    return BlockInput(env=env(), transactions=txs), StateView(nodes, root)


TOKEN = b"\x7e" * 20
# runtime: transfer(to, amount) on balances at slot = address: no checks beyond underflow
# (calldata: 32-byte `to`, 32-byte amount)
_TOKEN_CODE = bytes.fromhex(
    "6020353354818110601e570333556000358054602035018155600080a100"
    "5b600080fd"
)


@lru_cache(maxsize=None)
def _signed_token_moves(n: int) -> tuple:
    out = []
    for i, acct in enumerate(keys(n)):
        to = bytes([0x71, i % 256]).rjust(32, b"\x00")
        out.append(acct.sign_transaction({
            "type": 2, "chainId": CHAIN_ID, "nonce": 0, "to": to_checksum_address(TOKEN),
            "value": 0, "gas": 100_000, "maxFeePerGas": 20 * GWEI,
            "maxPriorityFeePerGas": GWEI, "data": to + (5 + i).to_bytes(32, "big"),
        }).raw_transaction)
    return tuple(out)


def erc20_block(n: int):
    prestate = {a.address: {"balance": hex(10**20)} for a in keys(n)}
    prestate["0x" + TOKEN.hex()] = {
        "balance": "0x0", "nonce": 1, "code": "0x" + _TOKEN_CODE.hex(),
        "storage": {a.address: hex(10**6) for a in keys(n)},
    }
    nodes, root = load_prestate(prestate)
    txs = tuple(decode(r) for r in _signed_token_moves(n))
    return BlockInput(env=env(), transactions=txs), StateView(nodes, root)
