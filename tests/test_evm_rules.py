"""EVM rules Laminar's execution stage enforces beyond plain py-evm 0.12.1b1, each named for
its EIP and run through both executors (Block-STM forced through its worker processes).

The consensus tests (test_blocktest.py) cover the same rules in the field's own fixtures;
these pin each rule to a block built here, so a regression names the rule it breaks.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest
import rlp
from eth.db.account import AccountDB
from eth.vm.forks import CancunVM, PragueVM
from eth.vm.forks.prague.constants import (
    CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS,
    DEPOSIT_CONTRACT_ADDRESS,
    DEPOSIT_EVENT_SIGNATURE_HASH,
    WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS,
)
from eth_account import Account
from eth_utils import keccak, to_canonical_address, to_checksum_address

from execution.blockstm import BlockSTMExecutor
from execution.call import CallRequest, call
from execution.executor import (
    ETHEREUM_RULES,
    LAMINAR_RULES,
    BlockEnv,
    BlockInput,
    BlockRuleError,
    StateView,
)
from execution.overlay import OverlayDB
from execution.prestate import load_prestate
from execution.rules import requests_hash
from execution.sequential import SequentialExecutor

CHAIN_ID = 1
GWEI = 10**9
ETHER = 10**18
ALICE = Account.from_key(b"\x11" * 32)
BOB = Account.from_key(b"\x12" * 32)
MODEXP = b"\x00" * 19 + b"\x05"
REVERT = "0x60006000fd"  # PUSH1 0 PUSH1 0 REVERT
STOP = "0x00"


@pytest.fixture(scope="module")
def executors():
    blockstm = BlockSTMExecutor(2, force_parallel=True)
    yield {"sequential": SequentialExecutor(), "blockstm": blockstm}
    blockstm.close()


EXECUTORS = ["sequential", "blockstm"]


def _env(vm_class=PragueVM, rules=ETHEREUM_RULES) -> BlockEnv:
    return BlockEnv(
        vm_class=vm_class, chain_id=CHAIN_ID, number=20_000_000, timestamp=1_800_000_000,
        coinbase=b"\xc0" * 20, gas_limit=30_000_000, parent_hash=b"\x99" * 32,
        base_fee_per_gas=7, excess_blob_gas=0, parent_beacon_block_root=b"\x00" * 32,
        rules=rules,
    )


def _system_contracts(withdrawal_code: str = STOP, consolidation_code: str = STOP) -> dict:
    accounts = {}
    if withdrawal_code is not None:
        accounts["0x" + WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS.hex()] = {
            "balance": "0x0", "nonce": 1, "code": withdrawal_code}
    if consolidation_code is not None:
        accounts["0x" + CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS.hex()] = {
            "balance": "0x0", "nonce": 1, "code": consolidation_code}
    return accounts


def _state(accounts: dict) -> StateView:
    funded = {ALICE.address: {"balance": hex(100 * ETHER), "nonce": 0},
              BOB.address: {"balance": hex(100 * ETHER), "nonce": 0}}
    funded.update(accounts)
    nodes, root = load_prestate(funded)
    return StateView(nodes=nodes, state_root=root)


def _tx(vm_class, account, nonce: int, to: bytes | None, data: bytes = b"", gas: int = 200_000,
        **extra):
    fields = {"type": 2, "chainId": CHAIN_ID, "nonce": nonce, "value": 0, "gas": gas,
              "maxFeePerGas": 100 * GWEI, "maxPriorityFeePerGas": GWEI, "data": data}
    if to is not None:
        fields["to"] = to_checksum_address(to)
    fields.update(extra)
    raw = account.sign_transaction(fields).raw_transaction
    return vm_class.get_transaction_builder().decode(bytes(raw))


def _post(pre: StateView, result) -> AccountDB:
    nodes = dict(pre.nodes)
    nodes.update(result.state_nodes)
    return AccountDB(OverlayDB(nodes), result.post_state_root)


def _run(executors, name, env, txs, pre):
    return executors[name].execute(BlockInput(env=env, transactions=txs), pre)


# ---- EIP-7610: creating where storage already is collides -------------------------------


def _created_address(sender: str, nonce: int) -> bytes:
    return keccak(rlp.encode([to_canonical_address(sender), nonce]))[12:]


INITCODE_STORES = bytes.fromhex("600160005500")  # SSTORE(0, 1); STOP: deploys empty code


@pytest.mark.parametrize("executor", EXECUTORS)
def test_eip7610_creation_into_an_address_with_storage_collides(executors, executor):
    """An address with storage but no code and nonce 0 (28 of them exist on mainnet):
    py-evm lets a creation overwrite it; EIP-7610 makes it a collision (all gas spent,
    nothing deployed). The same block without the storage deploys."""
    target = _created_address(ALICE.address, 0)
    occupied = _state({"0x" + target.hex(): {"balance": "0x0", "nonce": 0,
                                              "storage": {"0x07": "0x2a"}}})
    txs = [_tx(PragueVM, ALICE, 0, None, INITCODE_STORES, gas=100_000),
           _tx(PragueVM, BOB, 0, b"\x42" * 20)]  # a second one: a real parallel block
    result = _run(executors, executor, _env(rules=LAMINAR_RULES), txs, occupied)
    collided = result.receipts[0]
    assert collided.state_root == b""  # status 0
    assert collided.gas_used == 100_000  # a collision spends all the gas
    after = _post(occupied, result)
    assert after.get_nonce(target) == 0
    assert after.get_storage(target, 7) == 0x2A and after.get_storage(target, 0) == 0

    free = _state({})
    result = _run(executors, executor, _env(rules=LAMINAR_RULES), txs, free)
    assert result.receipts[0].state_root == b"\x01"
    assert _post(free, result).get_storage(target, 0) == 1


def test_eip7610_applies_to_eth_call_too():
    """eth_call runs on the executors' state class: the same collision."""
    target = _created_address(ALICE.address, 0)
    pre = _state({"0x" + target.hex(): {"balance": "0x0", "nonce": 0,
                                         "storage": {"0x07": "0x2a"}}})
    request = CallRequest(sender=to_canonical_address(ALICE.address), to=None,
                          data=INITCODE_STORES, value=0, gas=100_000)
    assert call(_env(), pre, request, 30_000_000).success is False
    assert call(_env(), _state({}), request, 30_000_000).success is True


# ---- EIP-7002 / EIP-7251: request system calls must exist and succeed -----------------


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize(
    "withdrawal_code, consolidation_code, fragment",
    [
        (None, STOP, "has no code"),
        (STOP, None, "has no code"),
        (REVERT, STOP, "failed"),
        (STOP, REVERT, "failed"),
    ],
)
def test_eip7002_eip7251_failed_or_missing_system_call_invalidates_the_block(
    executors, executor, withdrawal_code, consolidation_code, fragment
):
    pre = _state(_system_contracts(withdrawal_code, consolidation_code))
    txs = [_tx(PragueVM, ALICE, 0, b"\x42" * 20), _tx(PragueVM, BOB, 0, b"\x43" * 20)]
    with pytest.raises(BlockRuleError, match=fragment):
        _run(executors, executor, _env(rules=ETHEREUM_RULES), txs, pre)
    # Laminar's own chain may run without the contracts: no requests, the block is fine.
    result = _run(executors, executor, _env(rules=LAMINAR_RULES), txs, pre)
    assert result.requests == () and len(result.receipts) == 2


@pytest.mark.parametrize("executor", EXECUTORS)
def test_eip7685_requests_come_from_the_system_calls_output(executors, executor):
    # MSTORE(0, 0xabcdef); RETURN(29, 3): the withdrawal contract returns 3 bytes.
    returns = "0x62abcdef600052" + "6003601df3"
    pre = _state(_system_contracts(withdrawal_code=returns))
    txs = [_tx(PragueVM, ALICE, 0, b"\x42" * 20), _tx(PragueVM, BOB, 0, b"\x43" * 20)]
    result = _run(executors, executor, _env(), txs, pre)
    assert result.requests == (b"\x01" + bytes.fromhex("abcdef"),)
    assert requests_hash(()) == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")  # sha256(b"")
    assert requests_hash(result.requests) != requests_hash(())


# ---- EIP-6110: deposit logs must have the DepositEvent layout ----------------------------


def _deposit_log_data(pubkey_size: int = 48) -> bytes:
    def word(n: int) -> bytes:
        return n.to_bytes(32, "big")

    fields = [(b"\xaa" * 48, pubkey_size), (b"\xbb" * 32, 32), (b"\xcc" * 8, 8),
              (b"\xdd" * 96, 96), (b"\xee" * 8, 8)]
    heads = word(160) + word(256) + word(320) + word(384) + word(512)
    tails = b""
    for value, declared in fields:
        tails += word(declared) + value.ljust(-(-len(value) // 32) * 32, b"\x00")
    return heads + tails


def _emitter_code(data: bytes) -> str:
    """Code that copies `data` into memory and emits it as LOG1(DepositEvent)."""
    code = b""
    for offset in range(0, len(data), 32):
        chunk = data[offset:offset + 32].ljust(32, b"\x00")
        code += b"\x7f" + chunk + b"\x61" + offset.to_bytes(2, "big") + b"\x52"  # MSTORE
    code += b"\x7f" + DEPOSIT_EVENT_SIGNATURE_HASH  # topic
    code += b"\x61" + len(data).to_bytes(2, "big") + b"\x60\x00" + b"\xa1\x00"  # LOG1; STOP
    return "0x" + code.hex()


@pytest.mark.parametrize("executor", EXECUTORS)
def test_eip6110_deposit_requests_and_malformed_deposit_logs(executors, executor):
    good = _deposit_log_data()
    assert len(good) == 576
    contracts = _system_contracts()
    contracts["0x" + DEPOSIT_CONTRACT_ADDRESS.hex()] = {
        "balance": "0x0", "nonce": 1, "code": _emitter_code(good)}
    pre = _state(contracts)
    txs = [_tx(PragueVM, ALICE, 0, DEPOSIT_CONTRACT_ADDRESS), _tx(PragueVM, BOB, 0, b"\x43" * 20)]
    result = _run(executors, executor, _env(), txs, pre)
    expected = b"\xaa" * 48 + b"\xbb" * 32 + b"\xcc" * 8 + b"\xdd" * 96 + b"\xee" * 8
    assert result.requests == (b"\x00" + expected,)

    contracts["0x" + DEPOSIT_CONTRACT_ADDRESS.hex()]["code"] = _emitter_code(
        _deposit_log_data(pubkey_size=47))
    with pytest.raises(BlockRuleError, match="deposit log"):
        _run(executors, executor, _env(), txs, _state(contracts))


# ---- EIP-198: MODEXP --------------------------------------------------------


def _modexp_input(base: bytes, exponent: bytes, modulus: bytes,
                  lengths: tuple[int, int, int] | None = None) -> bytes:
    lengths = lengths or (len(base), len(exponent), len(modulus))
    return b"".join(n.to_bytes(32, "big") for n in lengths) + base + exponent + modulus


@pytest.mark.parametrize(
    "data, expected",
    [
        (_modexp_input(b"", b"", b"\x02"), b"\x01"),  # 0 ** 0 % 2 == 1 (py-evm: 0)
        (_modexp_input(b"", b"\x00", b"\x05"), b"\x01"),
        (_modexp_input(b"", b"", b"\x01"), b"\x00"),  # anything % 1 == 0
        (_modexp_input(b"", b"\x03", b"\x07"), b"\x00"),  # 0 ** 3 % 7
        (_modexp_input(b"\x03", b"\x05", b"\x07"), b"\x05"),  # 243 % 7
    ],
    ids=["0^0%2", "0^0%5 (exponent 0x00)", "0^0%1", "0^3%7", "3^5%7"],
)
def test_eip198_modexp_of_an_empty_base_follows_the_arithmetic(data, expected):
    request = CallRequest(sender=to_canonical_address(ALICE.address), to=MODEXP, data=data,
                          value=0, gas=100_000)
    result = call(_env(), _state({}), request, 30_000_000)
    assert result.success and result.output == expected


# ---- blobs: Laminar's chain refuses them, Ethereum's rules run them -----------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_blob_transactions_run_under_ethereum_rules_and_pay_blob_gas(executors, executor):
    blob = _tx(CancunVM, ALICE, 0, b"\x42" * 20, gas=21_000, type=3, maxFeePerBlobGas=GWEI,
               blobVersionedHashes=[b"\x01" + b"\x00" * 31, b"\x01" + b"\x11" * 31])
    txs = [blob, _tx(CancunVM, BOB, 0, b"\x43" * 20, gas=21_000)]
    pre = _state({})
    env = replace(_env(CancunVM), excess_blob_gas=0)
    result = _run(executors, executor, env, txs, pre)
    after = _post(pre, result)
    blob_gas = 2 * 131_072  # GAS_PER_BLOB each, at the minimum blob base fee of 1 wei
    gas_price = 7 + GWEI
    assert after.get_balance(to_canonical_address(ALICE.address)) == (
        100 * ETHER - 21_000 * gas_price - blob_gas * 1)
    with pytest.raises(Exception, match="blob transactions"):
        _run(executors, executor, replace(env, rules=LAMINAR_RULES), txs, pre)


def test_modexp_fix_is_applied_in_this_process():
    """The fixes patch py-evm's module globals when the execution stage is imported."""
    import execution.evm_fixes as fixes

    assert sys.modules["eth.precompiles.modexp"]._modexp is fixes.modexp_result
