"""Unit tests of the sequential executor on a tiny pre-state under Laminar's rules (Prague)."""

from __future__ import annotations

import copy

import pytest
from eth.db.account import AccountDB
from eth_account import Account
from eth_utils import to_canonical_address

from execution.executor import BlockEnv, BlockInput, InvalidBlockError, StateView
from execution.forks import LAMINAR_VM
from execution.overlay import OverlayDB
from execution.prestate import load_prestate
from execution.roots import make_header_roots
from execution.sequential import SequentialExecutor

CHAIN_ID = 31337
GWEI = 10**9
ETHER = 10**18
BASE_FEE = 7 * GWEI
COINBASE = b"\xc0" * 20
ALICE = Account.from_key(b"\x01" * 32)
BOB = Account.from_key(b"\x02" * 32)
POOR = Account.from_key(b"\x03" * 32)
CONTRACT_OWNER = Account.from_key(b"\x04" * 32)  # an address we give code to
RECIPIENT = b"\x77" * 20


def _addr(account) -> bytes:
    return to_canonical_address(account.address)


@pytest.fixture
def pre_state() -> StateView:
    nodes, root = load_prestate({
        ALICE.address: {"balance": hex(100 * ETHER), "nonce": 0},
        BOB.address: {"balance": hex(50 * ETHER), "nonce": "0x5"},
        POOR.address: {"balance": "0x0", "nonce": 0},
        CONTRACT_OWNER.address: {"balance": hex(ETHER), "nonce": 1, "code": "0x6000"},
    })
    return StateView(nodes=nodes, state_root=root)


def _env(**overrides) -> BlockEnv:
    fields = dict(
        vm_class=LAMINAR_VM,
        chain_id=CHAIN_ID,
        number=10,
        timestamp=1_700_000_000,
        coinbase=COINBASE,
        gas_limit=30_000_000,
        parent_hash=b"\x99" * 32,
        base_fee_per_gas=BASE_FEE,
        excess_blob_gas=0,
        parent_beacon_block_root=b"\x00" * 32,
    )
    fields.update(overrides)
    return BlockEnv(**fields)


def _decode(raw: bytes):
    return LAMINAR_VM.get_transaction_builder().decode(bytes(raw))


def eip1559(account, nonce: int, value: int = ETHER, *, to: bytes = RECIPIENT,
            gas: int = 21_000, tip: int = 2 * GWEI, max_fee: int = 20 * GWEI,
            chain_id: int = CHAIN_ID):
    signed = account.sign_transaction({
        "type": 2, "chainId": chain_id, "nonce": nonce, "to": "0x" + to.hex(),
        "value": value, "gas": gas, "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": tip, "data": b"",
    })
    return _decode(signed.raw_transaction)


def legacy(account, nonce: int, value: int = ETHER, *, gas_price: int = 10 * GWEI,
           gas: int = 21_000):
    signed = account.sign_transaction({
        "chainId": CHAIN_ID, "nonce": nonce, "to": "0x" + RECIPIENT.hex(),
        "value": value, "gas": gas, "gasPrice": gas_price, "data": b"",
    })
    return _decode(signed.raw_transaction)


def blob_tx(account, nonce: int):
    signed = account.sign_transaction({
        "type": 3, "chainId": CHAIN_ID, "nonce": nonce, "to": "0x" + RECIPIENT.hex(),
        "value": 0, "gas": 21_000, "maxFeePerGas": 20 * GWEI,
        "maxPriorityFeePerGas": GWEI, "maxFeePerBlobGas": GWEI,
        "blobVersionedHashes": [b"\x01" + b"\x00" * 31], "data": b"",
    })
    return _decode(signed.raw_transaction)


def _post_accounts(pre: StateView, result) -> AccountDB:
    nodes = dict(pre.nodes)
    nodes.update(result.state_nodes)
    return AccountDB(OverlayDB(nodes), result.post_state_root)


def test_transfers(pre_state: StateView) -> None:
    txs = [
        eip1559(ALICE, 0, ETHER),
        legacy(ALICE, 1, 2 * ETHER),
        eip1559(BOB, 5, 3 * ETHER, tip=GWEI),
        legacy(BOB, 6, 0, gas_price=BASE_FEE),
    ]
    result = SequentialExecutor().execute(BlockInput(env=_env(), transactions=txs), pre_state)

    assert result.gas_used == 21_000 * len(txs)
    assert [r.gas_used for r in result.receipts] == [21_000 * (i + 1) for i in range(4)]
    assert result.logs_bloom == 0
    assert result.post_state_root != pre_state.state_root
    assert result.post_state_root in result.state_nodes
    assert result.stats.executor == "sequential"
    assert result.stats.transactions == result.stats.incarnations == 4
    assert result.stats.seconds > 0

    accounts = _post_accounts(pre_state, result)
    # ALICE: 1559 tip 2 gwei (max fee 20 >= 7+2) -> pays 9 gwei/gas; legacy pays 10 gwei/gas.
    alice_paid = ETHER + 2 * ETHER + 21_000 * (9 * GWEI) + 21_000 * (10 * GWEI)
    assert accounts.get_balance(_addr(ALICE)) == 100 * ETHER - alice_paid
    assert accounts.get_nonce(_addr(ALICE)) == 2
    bob_paid = 3 * ETHER + 21_000 * (8 * GWEI) + 21_000 * BASE_FEE
    assert accounts.get_balance(_addr(BOB)) == 50 * ETHER - bob_paid
    assert accounts.get_nonce(_addr(BOB)) == 7
    assert accounts.get_balance(RECIPIENT) == 6 * ETHER
    tips = 21_000 * (2 * GWEI + 3 * GWEI + GWEI + 0)
    assert accounts.get_balance(COINBASE) == tips
    # Receipts and transactions make header roots.
    tx_root, receipts_root = make_header_roots(txs, result.receipts)
    assert len(tx_root) == len(receipts_root) == 32


def test_execute_is_pure(pre_state: StateView) -> None:
    before = copy.deepcopy(pre_state.nodes)
    block = BlockInput(env=_env(), transactions=[eip1559(ALICE, 0), legacy(BOB, 5)])
    first = SequentialExecutor().execute(block, pre_state)
    assert pre_state.nodes == before
    second = SequentialExecutor().execute(block, pre_state)
    assert pre_state.nodes == before
    assert first.post_state_root == second.post_state_root
    assert first.state_nodes == second.state_nodes
    assert [r.encode() for r in first.receipts] == [r.encode() for r in second.receipts]


def test_empty_block(pre_state: StateView) -> None:
    result = SequentialExecutor().execute(BlockInput(env=_env(), transactions=()), pre_state)
    assert result.gas_used == 0 and result.receipts == ()
    assert result.post_state_root == pre_state.state_root


def _invalid(pre_state: StateView, txs, **env) -> InvalidBlockError:
    with pytest.raises(InvalidBlockError) as info:
        SequentialExecutor().execute(BlockInput(env=_env(**env), transactions=txs), pre_state)
    err = info.value
    assert "Traceback" not in err.reason and err.reason
    assert str(err).startswith(f"transaction {err.index} is invalid: ")
    return err


def test_nonce_gap(pre_state: StateView) -> None:
    err = _invalid(pre_state, [eip1559(ALICE, 0), eip1559(ALICE, 2)])
    assert err.index == 1
    assert "nonce" in err.reason and "has nonce 1" in err.reason and "nonce 2" in err.reason


def test_nonce_too_low(pre_state: StateView) -> None:
    err = _invalid(pre_state, [legacy(BOB, 4)])
    assert err.index == 0 and "nonce too low" in err.reason


def test_no_funds(pre_state: StateView) -> None:
    err = _invalid(pre_state, [eip1559(ALICE, 0), eip1559(POOR, 0, 1)])
    assert err.index == 1
    assert "insufficient funds" in err.reason
    assert POOR.address[2:].lower() in err.reason


def test_blob_transaction_rejected(pre_state: StateView) -> None:
    err = _invalid(pre_state, [eip1559(ALICE, 0), legacy(ALICE, 1), blob_tx(ALICE, 2)])
    assert err.index == 2
    assert "blob" in err.reason and "data availability" in err.reason


def test_gas_above_remaining_block_gas(pre_state: StateView) -> None:
    err = _invalid(pre_state, [eip1559(ALICE, 0), eip1559(ALICE, 1, gas=30_000)],
                   gas_limit=50_000)
    assert err.index == 1 and "remaining gas" in err.reason


def test_intrinsic_gas_too_low(pre_state: StateView) -> None:
    err = _invalid(pre_state, [eip1559(ALICE, 0, gas=20_999)])
    assert err.index == 0 and "intrinsic gas too low" in err.reason


def test_sender_with_code(pre_state: StateView) -> None:
    err = _invalid(pre_state, [eip1559(CONTRACT_OWNER, 1, 0)])
    assert err.index == 0 and "EIP-3607" in err.reason


def test_wrong_chain_id(pre_state: StateView) -> None:
    err = _invalid(pre_state, [eip1559(ALICE, 0, chain_id=1)])
    assert err.index == 0 and "chain id" in err.reason


def test_fee_cap_below_base_fee(pre_state: StateView) -> None:
    err = _invalid(pre_state, [eip1559(ALICE, 0, max_fee=BASE_FEE - 1, tip=1)])
    assert err.index == 0 and "base fee" in err.reason
