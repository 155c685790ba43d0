"""Property test: random blocks give exactly the sequential executor's results under
Block-STM with 1, 2 and 3 workers (receipts, logs, gas, bloom, state root, or the same
InvalidBlockError index and reason)."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execution.blockstm import BlockSTMExecutor
from execution.executor import BlockEnv, BlockInput, InvalidBlockError, StateView
from execution.forks import LAMINAR_VM
from execution.prestate import load_prestate
from execution.sequential import SequentialExecutor

CHAIN_ID = 31337
GWEI = 10**9
KEYS = [Account.from_key((0x1000 + i).to_bytes(32, "big")) for i in range(4)]
EOAS = [bytes.fromhex(k.address[2:]) for k in KEYS]
STRANGER = b"\x5a" * 20  # does not exist in the pre-state

READER = b"\xa1" * 20  # stores SELFBALANCE in slot 1 and BALANCE(calldata) in slot 0
TOKEN = b"\xa2" * 20  # transfer(to, amount) on balances keyed by address
REVERTER = b"\xa3" * 20
DESTRUCT = b"\xa4" * 20  # SELFDESTRUCT to the caller (Cancun: only moves the balance)
LOOP = b"\xa5" * 20  # runs out of gas
CONTRACTS = {
    READER: "5f35315f554760015500",
    TOKEN: "6020353354818110601e570333556000358054602035018155600080a1005b600080fd",
    REVERTER: "5f5ffd",
    DESTRUCT: "33ff",
    LOOP: "5b5f56",
}
# init codes: deploy "33ff"; self-destruct in the constructor (deleted at once: EIP-6780)
INIT_DEPLOY = bytes.fromhex("6233ff005f526003601df3")
INIT_DESTRUCT = bytes.fromhex("33ff")


def _prestate() -> StateView:
    dump = {k.address: {"balance": hex(10**19)} for k in KEYS}
    for address, code in CONTRACTS.items():
        entry = {"balance": hex(10**15), "nonce": 1, "code": "0x" + code}
        if address == TOKEN:
            entry["storage"] = {"0x" + a.hex(): hex(10**6) for a in EOAS}
        dump["0x" + address.hex()] = entry
    nodes, root = load_prestate(dump)
    return StateView(nodes=nodes, state_root=root)


PRE = _prestate()

op = st.tuples(
    st.integers(0, len(KEYS) - 1),  # sender
    st.sampled_from(["eth", "eth_new", "read", "token", "revert", "destruct", "oog",
                     "create", "create_destruct", "pay_contract"]),
    st.integers(0, 3),  # target choice
    st.integers(0, 3),  # value choice
    st.sampled_from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),  # nonce gap
    st.sampled_from([0, GWEI]),  # tip (0: zero fee credit to the coinbase)
)


def _tx(key, nonce, kind, target, value_choice, tip):
    value = [0, 1, 10**15, 3 * 10**17][value_choice]
    to = b""
    data = b""
    gas = 100_000
    if kind == "eth":
        to, gas = EOAS[target], 21_000
    elif kind == "eth_new":
        to, gas = keccak(bytes([target]))[:20], 21_000
    elif kind == "read":
        to, data = READER, EOAS[target].rjust(32, b"\x00")
    elif kind == "token":
        to, value = TOKEN, 0
        data = EOAS[target].rjust(32, b"\x00") + (7 * (target + 1)).to_bytes(32, "big")
    elif kind == "revert":
        to = REVERTER
    elif kind == "destruct":
        to = DESTRUCT
    elif kind == "oog":
        to, gas = LOOP, 40_000
    elif kind == "create":
        data = INIT_DEPLOY
    elif kind == "create_destruct":
        data = INIT_DESTRUCT
    elif kind == "pay_contract":
        to, gas = [READER, TOKEN, DESTRUCT, REVERTER][target], 60_000
    fields = {
        "type": 2, "chainId": CHAIN_ID, "nonce": nonce, "value": value, "gas": gas,
        "maxFeePerGas": 20 * GWEI, "maxPriorityFeePerGas": tip, "data": data,
    }
    if to:
        fields["to"] = to_checksum_address(to)
    raw = key.sign_transaction(fields).raw_transaction
    return LAMINAR_VM.get_transaction_builder().decode(bytes(raw))


def _block(ops, coinbase_choice):
    nonces = [0] * len(KEYS)
    raws = []
    for sender, kind, target, value_choice, gap, tip in ops:
        nonce = nonces[sender] + gap
        raws.append((sender, nonce, kind, target, value_choice, tip))
        nonces[sender] = nonce + 1
    coinbase = [b"\xc0" * 20, READER, EOAS[0], STRANGER][coinbase_choice]
    env = BlockEnv(
        vm_class=LAMINAR_VM, chain_id=CHAIN_ID, number=10, timestamp=1_700_000_000,
        coinbase=coinbase, gas_limit=30_000_000, parent_hash=b"\x99" * 32,
        base_fee_per_gas=7 * GWEI, excess_blob_gas=0, parent_beacon_block_root=b"\x00" * 32,
    )
    return env, raws


def _materialize(env, raws):
    txs = tuple(_tx(KEYS[s], n, k, t, v, tip) for s, n, k, t, v, tip in raws)
    return BlockInput(env=env, transactions=txs)


def _outcome(executor, block):
    try:
        result = executor.execute(block, PRE)
    except InvalidBlockError as exc:
        return ("invalid", exc.index, exc.reason)
    return (
        "ok",
        [r.encode() for r in result.receipts],
        result.gas_used,
        result.logs_bloom,
        result.post_state_root,
    )


@pytest.fixture(scope="module")
def executors():
    made = {w: BlockSTMExecutor(w) for w in (1, 2, 3)}
    yield made
    for executor in made.values():
        executor.close()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=6, max_size=18), coinbase_choice=st.integers(0, 3))
def test_random_blocks_match_sequential(executors, ops, coinbase_choice) -> None:
    env, raws = _block(ops, coinbase_choice)
    expected = _outcome(SequentialExecutor(), _materialize(env, raws))
    for workers, executor in executors.items():
        got = _outcome(executor, _materialize(env, raws))
        assert got == expected, f"workers={workers}"
