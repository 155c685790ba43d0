"""Tests for node.mempool with real signed transactions and an in-memory state fake."""

from __future__ import annotations

import random

import pytest
import rlp
import trio
import trio.testing
from eth.vm.forks import PragueVM
from eth_account import Account
from eth_utils import keccak

from node.mempool import Mempool, MempoolConfig, MempoolError, PooledTx

CHAIN_ID = 31337
GWEI = 10**9
BASE_FEE = 1 * GWEI
ETHER = 10**18
TO = "0x" + "44" * 20

KEYS = ["0x" + f"{i:02x}" * 32 for i in range(1, 10)]
A, B, C, D, E = (Account.from_key(k) for k in KEYS[:5])


def addr(acct) -> bytes:
    return bytes.fromhex(acct.address[2:])


class FakeState:
    """In-memory AccountReader: a legitimate fake of the head state."""

    def __init__(self) -> None:
        self.nonces: dict[bytes, int] = {}
        self.balances: dict[bytes, int] = {}
        self.code: set[bytes] = set()

    def get_nonce(self, address: bytes) -> int:
        return self.nonces.get(address, 0)

    def get_balance(self, address: bytes) -> int:
        return self.balances.get(address, 0)

    def has_code(self, address: bytes) -> bool:
        return address in self.code


def sign(acct, nonce, tip=1 * GWEI, fee=10 * GWEI, gas=21000, to=TO, value=0, data=b"", **extra) -> bytes:
    tx = dict(
        type=2,
        chainId=CHAIN_ID,
        nonce=nonce,
        maxPriorityFeePerGas=tip,
        maxFeePerGas=fee,
        gas=gas,
        to=to,
        value=value,
        data=data,
    )
    tx.update(extra)
    return bytes(Account.sign_transaction(tx, acct.key).raw_transaction)


def sign_legacy(acct, nonce, gas_price=10 * GWEI, gas=21000, to=TO, value=0, data=b"", chain_id=CHAIN_ID) -> bytes:
    tx = dict(nonce=nonce, gasPrice=gas_price, gas=gas, to=to, value=value, data=data)
    if chain_id is not None:
        tx["chainId"] = chain_id
    return bytes(Account.sign_transaction(tx, acct.key).raw_transaction)


def make_pool(state: FakeState, **cfg) -> Mempool:
    config = MempoolConfig(chain_id=CHAIN_ID, block_gas_limit=30_000_000, **cfg)
    return Mempool(config, state, PragueVM)


@pytest.fixture
def state() -> FakeState:
    s = FakeState()
    for acct in (A, B, C, D, E):
        s.balances[addr(acct)] = 100 * ETHER
    return s


@pytest.fixture
def pool(state) -> Mempool:
    return make_pool(state)


def snapshot(pool: Mempool):
    return (len(pool), sorted((p.hash, p.sender, p.nonce) for p in pool))


def assert_rejected(pool: Mempool, raw: bytes, match: str, base_fee: int = BASE_FEE) -> MempoolError:
    before = snapshot(pool)
    with pytest.raises(MempoolError, match=match) as info:
        pool.add_raw(raw, base_fee)
    assert snapshot(pool) == before
    assert isinstance(info.value, ValueError)
    return info.value


# ----------------------------------------------------------------- acceptance


def test_accepts_dynamic_fee_tx(pool):
    raw = sign(A, 0)
    pooled = pool.add_raw(raw, BASE_FEE)
    assert isinstance(pooled, PooledTx)
    assert pooled.hash == keccak(raw)
    assert pooled.sender == addr(A)
    assert pooled.raw == raw
    assert pooled.received_at > 0
    assert pooled.tx.nonce == 0
    assert len(pool) == 1
    assert pool.get(keccak(raw)) is pooled
    assert pool.get(b"\x00" * 32) is None


def test_accepts_legacy_eip155_and_access_list_and_set_code(pool):
    pool.add_raw(sign_legacy(A, 0), BASE_FEE)
    pool.add_raw(_access_list_tx(B, 0), BASE_FEE)
    auth = Account.sign_authorization({"chainId": CHAIN_ID, "address": "0x" + "33" * 20, "nonce": 1}, C.key)
    pool.add_raw(sign(C, 0, gas=46000, authorizationList=[auth], type=4), BASE_FEE)
    assert len(pool) == 3
    assert {p.tx.type_id for p in pool} == {None, 1, 4}


def test_gives_its_recovered_senders_for_the_same_transactions_decoded_again(pool):
    """A proposal's transactions, decoded from its bytes: the pool names the sender it
    already recovered for each (legacy and typed alike), None for one it never saw."""
    known = [sign_legacy(A, 0), sign(B, 0), _access_list_tx(C, 0)]
    for raw in known:
        pool.add_raw(raw, BASE_FEE)
    unknown = sign(D, 0)
    decoded = [PragueVM.get_transaction_builder().decode(raw) for raw in [*known, unknown]]
    senders = pool.senders_of(decoded)
    assert senders == [addr(A), addr(B), addr(C), None]
    assert all("sender" not in tx.__dict__ for tx in decoded)  # data, not a hidden slot
    assert decoded[3].sender == addr(D)  # recovered as usual


def _access_list_tx(acct, nonce, gas=21000, access_list=()) -> bytes:
    tx = dict(
        type=1,
        chainId=CHAIN_ID,
        nonce=nonce,
        gasPrice=5 * GWEI,
        gas=gas,
        to=TO,
        value=0,
        data=b"",
        accessList=list(access_list),
    )
    return bytes(Account.sign_transaction(tx, acct.key).raw_transaction)


# ----------------------------------------------------------------- rejections


def test_rejects_malformed_rlp(pool):
    assert_rejected(pool, b"\xf8\x01\x02", "invalid transaction")
    assert_rejected(pool, b"", "invalid transaction")
    assert_rejected(pool, b"\x02\xc0", "invalid transaction")


def test_rejects_oversized(state):
    pool = make_pool(state, max_tx_bytes=1000)
    raw = sign(A, 0, gas=200_000, data=b"\x01" * 2000)
    assert_rejected(pool, raw, r"oversized data: transaction size \d+, limit 1000")


def test_rejects_bad_signature(pool):
    tx = PragueVM.get_transaction_builder().decode(sign_legacy(A, 0))
    zero_r = rlp.encode(tx.copy(r=0))
    assert_rejected(pool, zero_r, "invalid transaction")
    # malleated high-s signature (same signer, s -> n - s) is not allowed since Homestead
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    flipped_v = tx.v + 1 if tx.v % 2 == 1 else tx.v - 1
    high_s = rlp.encode(tx.copy(s=n - tx.s, v=flipped_v))
    assert_rejected(pool, high_s, "invalid transaction")


def test_rejects_wrong_chain_id(pool):
    raw = sign_legacy(A, 0, chain_id=1)
    assert_rejected(pool, raw, "invalid chain id: transaction has 1, this chain is 31337")
    tx = dict(type=2, chainId=5, nonce=0, maxPriorityFeePerGas=1, maxFeePerGas=10 * GWEI, gas=21000, to=TO, value=0)
    raw2 = bytes(Account.sign_transaction(tx, A.key).raw_transaction)
    assert_rejected(pool, raw2, "invalid chain id")


def test_rejects_pre_eip155_legacy(pool):
    raw = sign_legacy(A, 0, chain_id=None)
    assert_rejected(pool, raw, r"only replay-protected \(EIP-155\) transactions allowed")


def test_rejects_blob_tx(pool):
    raw = sign(A, 0, type=3, maxFeePerBlobGas=1, blobVersionedHashes=[b"\x01" + b"\x00" * 31])
    assert raw[0] == 3
    assert_rejected(pool, raw, "blob transactions are not supported: this chain has no data availability layer")


def test_rejects_unknown_tx_type(pool):
    assert_rejected(pool, b"\x05" + sign(A, 0)[1:], "transaction type not supported: 0x05")


def test_rejects_nonce_too_low(pool, state):
    state.nonces[addr(A)] = 5
    assert_rejected(pool, sign(A, 4), "nonce too low: next nonce is 5")
    pool.add_raw(sign(A, 5), BASE_FEE)


def test_rejects_nonce_gap_too_large(pool, state):
    state.nonces[addr(A)] = 5
    pool.add_raw(sign(A, 5 + 64), BASE_FEE)  # exactly at the limit is fine
    assert_rejected(pool, sign(A, 5 + 65), "nonce too high: next nonce is 5, tx nonce 70")


def test_rejects_insufficient_funds(pool, state):
    state.balances[addr(A)] = 21000 * 10 * GWEI + 99
    cost = 21000 * 10 * GWEI + 100
    err = assert_rejected(pool, sign(A, 0, value=100), "insufficient funds for gas \\* price \\+ value")
    assert f"balance {21000 * 10 * GWEI + 99}, tx cost {cost}" in str(err)
    pool.add_raw(sign(A, 0, value=99), BASE_FEE)  # exactly affordable


def test_rejects_overdraft_across_pooled_txs(pool, state):
    one = 21000 * 10 * GWEI
    state.balances[addr(A)] = 2 * one
    pool.add_raw(sign(A, 0), BASE_FEE)
    pool.add_raw(sign(A, 1), BASE_FEE)
    assert_rejected(pool, sign(A, 2), "insufficient funds for gas \\* price \\+ value")
    # a replacement does not count the replaced tx twice
    state.balances[addr(A)] = 2 * one + 21000 * GWEI
    pool.add_raw(sign(A, 1, tip=2 * GWEI, fee=11 * GWEI), BASE_FEE)


def test_overdraft_follows_replacements_commits_and_evictions(state):
    """The sender's pooled cost is kept as a running total: it must follow every way a
    transaction leaves the pool, or a later admission is judged on a wrong sum."""
    one = 21000 * 10 * GWEI  # a transfer's cost at the default fee cap
    pool = make_pool(state, max_pool_size=4)
    state.balances[addr(A)] = 3 * one + 21000 * GWEI
    pool.add_raw(sign(A, 0), BASE_FEE)
    pool.add_raw(sign(A, 1), BASE_FEE)
    pool.add_raw(sign(A, 1, tip=2 * GWEI, fee=11 * GWEI), BASE_FEE)  # replaces: 2 one + 21000 gwei
    pool.add_raw(sign(A, 2), BASE_FEE)  # exactly affordable: the replaced tx left the sum
    assert_rejected(pool, sign(A, 3), "insufficient funds")
    # nonce 0 is committed: its cost leaves the sum with it
    state.nonces[addr(A)] = 1
    pool.on_new_head()
    pool.add_raw(sign(A, 3), BASE_FEE)  # affordable only without nonce 0's cost
    pool.add_raw(sign(B, 0, tip=2 * GWEI), BASE_FEE)  # the pool is full
    # a better-paying transaction of C evicts the cheapest tail, A's nonce 3 ...
    pool.add_raw(sign(C, 0, tip=5 * GWEI, fee=20 * GWEI), BASE_FEE)
    assert pool.get_by_sender_nonce(addr(A), 3) is None
    # ... and A can afford a nonce 3 again only because its cost left the sum
    pool.remove(pool.get_by_sender_nonce(addr(B), 0).hash)
    pool.add_raw(sign(A, 3, tip=3 * GWEI), BASE_FEE)
    assert_rejected(pool, sign(A, 4), "insufficient funds")


def test_rejects_intrinsic_gas_too_low_calldata(pool):
    data = b"\x00" * 10 + b"\x01" * 10  # 21000 + 10*4 + 10*16 = 21200
    assert_rejected(pool, sign(A, 0, gas=21199, data=data), "intrinsic gas too low: have 21199, want 21200")
    # Prague: the EIP-7623 floor (21000 + 10 * (10 + 4 * 10) = 21500) is also required
    assert_rejected(pool, sign(A, 0, gas=21499, data=data), "insufficient gas for floor data gas cost")
    pool.add_raw(sign(A, 0, gas=21500, data=data), BASE_FEE)


def test_rejects_intrinsic_gas_too_low_creation_with_initcode_words(pool):
    # 21000 + 32000 (create) + 64*16 (calldata) + 2 words * 2 (EIP-3860) = 54028
    data = b"\x01" * 64
    assert_rejected(pool, sign(A, 0, gas=54027, to="", data=data), "intrinsic gas too low: have 54027, want 54028")
    pooled = pool.add_raw(sign(A, 0, gas=54028, to="", data=data), BASE_FEE)
    assert pooled.tx.to == b""


def test_rejects_intrinsic_gas_too_low_access_list(pool):
    al = [{"address": TO, "storageKeys": ["0x" + "00" * 32, "0x" + "00" * 31 + "01"]}]
    # 21000 + 2400 (address) + 2 * 1900 (keys) = 27200
    assert_rejected(
        pool, _access_list_tx(A, 0, gas=27199, access_list=al), "intrinsic gas too low: have 27199, want 27200"
    )
    pool.add_raw(_access_list_tx(A, 0, gas=27200, access_list=al), BASE_FEE)


def test_rejects_below_eip7623_calldata_floor(pool):
    data = b"\x01" * 1000  # intrinsic 37000, floor 21000 + 10 * 4000 = 61000
    assert_rejected(
        pool, sign(A, 0, gas=60999, data=data), "insufficient gas for floor data gas cost: have 60999, want 61000"
    )
    pool.add_raw(sign(A, 0, gas=61000, data=data), BASE_FEE)


def test_rejects_max_initcode_size(pool):
    data = b"\x01" * (49152 + 1)
    assert_rejected(pool, sign(A, 0, gas=5_000_000, to="", data=data), "max initcode size exceeded")


def test_rejects_gas_above_block_gas_limit(pool):
    assert_rejected(pool, sign(A, 0, gas=30_000_001), "exceeds block gas limit")
    pool.add_raw(sign(A, 0, gas=30_000_000), BASE_FEE)


def test_rejects_fee_cap_below_base_fee(pool):
    assert_rejected(pool, sign(A, 0, tip=1, fee=BASE_FEE - 1), "max fee per gas less than block base fee")
    assert_rejected(pool, sign_legacy(B, 0, gas_price=BASE_FEE - 1), "max fee per gas less than block base fee")
    pool.add_raw(sign(A, 0, tip=0, fee=BASE_FEE), BASE_FEE)


def test_rejects_tip_above_fee_cap(pool):
    assert_rejected(
        pool, sign(A, 0, tip=11 * GWEI, fee=10 * GWEI), "max priority fee per gas higher than max fee per gas"
    )


def test_rejects_tip_below_configured_minimum(state):
    pool = make_pool(state, min_priority_fee=GWEI)
    assert_rejected(pool, sign(A, 0, tip=GWEI - 1), "transaction underpriced")
    pool.add_raw(sign(A, 0, tip=GWEI), BASE_FEE)


def test_rejects_sender_with_code(pool, state):
    state.code.add(addr(A))
    assert_rejected(pool, sign(A, 0), "sender not an eoa")


def test_rejects_duplicate(pool):
    raw = sign(A, 0)
    pool.add_raw(raw, BASE_FEE)
    assert_rejected(pool, raw, "already known")


def test_rejects_too_many_per_sender(state):
    pool = make_pool(state, max_per_sender=3)
    for n in range(3):
        pool.add_raw(sign(A, n), BASE_FEE)
    assert_rejected(pool, sign(A, 3), "too many pooled transactions from sender")
    pool.add_raw(sign(A, 2, tip=2 * GWEI, fee=11 * GWEI), BASE_FEE)  # replacement still allowed


# ---------------------------------------------------------------- replacement


def test_replacement_requires_10_percent_bump_on_both_fees(pool):
    old = pool.add_raw(sign(A, 0, tip=10 * GWEI, fee=100 * GWEI), BASE_FEE)
    msg = "replacement transaction underpriced"
    assert_rejected(pool, sign(A, 0, tip=10 * GWEI, fee=100 * GWEI, value=1), msg)  # same price
    assert_rejected(pool, sign(A, 0, tip=int(10.9 * GWEI), fee=109 * GWEI), msg)  # +9%
    assert_rejected(pool, sign(A, 0, tip=11 * GWEI, fee=105 * GWEI), msg)  # only tip bumped
    assert_rejected(pool, sign(A, 0, tip=10 * GWEI, fee=200 * GWEI), msg)  # only fee cap bumped
    assert pool.get(old.hash) is old

    new_raw = sign(A, 0, tip=11 * GWEI, fee=110 * GWEI)  # exactly +10%
    new = pool.add_raw(new_raw, BASE_FEE)
    assert len(pool) == 1
    assert pool.get(old.hash) is None
    assert pool.get(new.hash) is new
    assert pool.get_by_sender_nonce(addr(A), 0) is new


def test_replacement_of_legacy_tx(pool):
    pool.add_raw(sign_legacy(A, 0, gas_price=10 * GWEI), BASE_FEE)
    assert_rejected(pool, sign_legacy(A, 0, gas_price=10 * GWEI + 1), "replacement transaction underpriced")
    pool.add_raw(sign_legacy(A, 0, gas_price=11 * GWEI), BASE_FEE)
    assert len(pool) == 1


# -------------------------------------------------------------- pool full


def test_pool_full_rejects_cheaper_tx(state):
    pool = make_pool(state, max_pool_size=2)
    pool.add_raw(sign(A, 0, tip=5 * GWEI), BASE_FEE)
    pool.add_raw(sign(B, 0, tip=5 * GWEI), BASE_FEE)
    assert_rejected(pool, sign(C, 0, tip=5 * GWEI), "txpool is full")  # not strictly better
    assert_rejected(pool, sign(C, 0, tip=1 * GWEI), "txpool is full")


def test_pool_full_evicts_lowest_fee_tx_of_other_sender(state):
    pool = make_pool(state, max_pool_size=3)
    a0 = pool.add_raw(sign(A, 0, tip=5 * GWEI), BASE_FEE)
    b0 = pool.add_raw(sign(B, 0, tip=2 * GWEI), BASE_FEE)
    c0 = pool.add_raw(sign(C, 0, tip=4 * GWEI), BASE_FEE)
    d0 = pool.add_raw(sign(D, 0, tip=3 * GWEI), BASE_FEE)
    assert len(pool) == 3
    assert pool.get(b0.hash) is None
    assert {p.hash for p in pool} == {a0.hash, c0.hash, d0.hash}


def test_pool_full_evicts_tail_not_middle(state):
    """Evicting only a sender's highest nonce keeps its remaining txs executable."""
    pool = make_pool(state, max_pool_size=3)
    a0 = pool.add_raw(sign(A, 0, tip=1 * GWEI), BASE_FEE)
    a1 = pool.add_raw(sign(A, 1, tip=3 * GWEI), BASE_FEE)
    b0 = pool.add_raw(sign(B, 0, tip=4 * GWEI), BASE_FEE)
    c0 = pool.add_raw(sign(C, 0, tip=5 * GWEI), BASE_FEE)
    assert {p.hash for p in pool} == {a0.hash, b0.hash, c0.hash}
    assert pool.get(a1.hash) is None
    assert pool.pending_nonce(addr(A)) == 1


def test_pool_full_does_not_evict_own_txs(state):
    pool = make_pool(state, max_pool_size=2)
    pool.add_raw(sign(A, 0, tip=1 * GWEI), BASE_FEE)
    pool.add_raw(sign(A, 1, tip=1 * GWEI), BASE_FEE)
    assert_rejected(pool, sign(A, 2, tip=5 * GWEI), "txpool is full")


# -------------------------------------------------------------- selection


def test_select_orders_by_tip_across_senders_and_nonce_within_sender(pool):
    a0 = pool.add_raw(sign(A, 0, tip=3 * GWEI), BASE_FEE)
    a1 = pool.add_raw(sign(A, 1, tip=10 * GWEI, fee=20 * GWEI), BASE_FEE)
    b0 = pool.add_raw(sign(B, 0, tip=5 * GWEI), BASE_FEE)
    c0 = pool.add_raw(sign(C, 0, tip=1 * GWEI), BASE_FEE)
    # nonce 1 arrives before nonce 0 for D: order must still be by nonce
    d1 = pool.add_raw(sign(D, 1, tip=9 * GWEI), BASE_FEE)
    d0 = pool.add_raw(sign(D, 0, tip=2 * GWEI), BASE_FEE)
    picked = [tx.hash for tx in pool.select_for_block(BASE_FEE, 30_000_000)]
    assert picked == [b0.hash, a0.hash, a1.hash, d0.hash, d1.hash, c0.hash]
    assert len(pool) == 6  # selection does not remove


def test_select_equal_tips_are_first_come_first_served(pool):
    c0 = pool.add_raw(sign(C, 0), BASE_FEE)
    a0 = pool.add_raw(sign(A, 0), BASE_FEE)
    b0 = pool.add_raw(sign(B, 0), BASE_FEE)
    picked = [tx.hash for tx in pool.select_for_block(BASE_FEE, 30_000_000)]
    assert picked == [c0.hash, a0.hash, b0.hash]


def test_select_uses_effective_tip_at_base_fee(pool):
    # at base fee 6 gwei, X (tip 5, cap 8) has effective tip 2; Y (tip 3, cap 50) has 3
    x = pool.add_raw(sign(A, 0, tip=5 * GWEI, fee=8 * GWEI), BASE_FEE)
    y = pool.add_raw(sign(B, 0, tip=3 * GWEI, fee=50 * GWEI), BASE_FEE)
    assert [tx.hash for tx in pool.select_for_block(BASE_FEE, 30_000_000)] == [x.hash, y.hash]
    picked = [tx.hash for tx in pool.select_for_block(6 * GWEI, 30_000_000)]
    assert picked == [y.hash, x.hash]


def test_select_excludes_nonce_gaps_and_respects_account_nonce(pool, state):
    state.nonces[addr(B)] = 3
    a0 = pool.add_raw(sign(A, 0), BASE_FEE)
    pool.add_raw(sign(A, 2), BASE_FEE)  # gap at 1
    b3 = pool.add_raw(sign(B, 3), BASE_FEE)
    b4 = pool.add_raw(sign(B, 4), BASE_FEE)
    pool.add_raw(sign(C, 1), BASE_FEE)  # C's account nonce is 0
    picked = {tx.hash for tx in pool.select_for_block(BASE_FEE, 30_000_000)}
    assert picked == {a0.hash, b3.hash, b4.hash}
    assert [p.hash for p in pool.pending_transactions()] == [a0.hash, b3.hash, b4.hash]
    assert len(pool.queued_transactions()) == 2


def test_select_skips_fee_cap_below_base_fee_and_later_nonces(pool):
    pool.add_raw(sign(A, 0, tip=1 * GWEI, fee=2 * GWEI), BASE_FEE)
    pool.add_raw(sign(A, 1, tip=5 * GWEI, fee=50 * GWEI), BASE_FEE)
    b0 = pool.add_raw(sign(B, 0, tip=1 * GWEI, fee=50 * GWEI), BASE_FEE)
    picked = [tx.hash for tx in pool.select_for_block(3 * GWEI, 30_000_000)]
    assert picked == [b0.hash]


def test_select_stops_at_gas_limit(pool):
    a0 = pool.add_raw(sign(A, 0, tip=5 * GWEI), BASE_FEE)
    b0 = pool.add_raw(sign(B, 0, tip=4 * GWEI, gas=100_000), BASE_FEE)  # does not fit
    c0 = pool.add_raw(sign(C, 0, tip=3 * GWEI), BASE_FEE)
    pool.add_raw(sign(D, 0, tip=2 * GWEI), BASE_FEE)
    picked = [tx.hash for tx in pool.select_for_block(BASE_FEE, 50_000)]
    assert picked == [a0.hash, c0.hash]
    assert sum(tx.gas for tx in pool.select_for_block(BASE_FEE, 50_000)) <= 50_000
    assert b0.hash not in picked


def test_select_max_txs(pool):
    for acct in (A, B, C):
        pool.add_raw(sign(acct, 0), BASE_FEE)
    assert len(pool.select_for_block(BASE_FEE, 30_000_000, max_txs=2)) == 2
    assert len(pool.select_for_block(BASE_FEE, 30_000_000)) == 3


def test_select_rechecks_cumulative_balance(pool, state):
    a0 = pool.add_raw(sign(A, 0), BASE_FEE)
    pool.add_raw(sign(A, 1), BASE_FEE)
    state.balances[addr(A)] = 21000 * 10 * GWEI * 3 // 2  # now affords only one
    assert [tx.hash for tx in pool.select_for_block(BASE_FEE, 30_000_000)] == [a0.hash]


# ---------------------------------------------- pending nonce, commit, new head


def test_pending_nonce(pool, state):
    assert pool.pending_nonce(addr(A)) == 0
    state.nonces[addr(A)] = 5
    assert pool.pending_nonce(addr(A)) == 5
    pool.add_raw(sign(A, 5), BASE_FEE)
    pool.add_raw(sign(A, 6), BASE_FEE)
    pool.add_raw(sign(A, 8), BASE_FEE)
    assert pool.pending_nonce(addr(A)) == 7
    pool.add_raw(sign(A, 7), BASE_FEE)
    assert pool.pending_nonce(addr(A)) == 9


def test_remove_committed(pool, state):
    a0 = pool.add_raw(sign(A, 0), BASE_FEE)
    a1 = pool.add_raw(sign(A, 1), BASE_FEE)
    a2 = pool.add_raw(sign(A, 2), BASE_FEE)
    b0 = pool.add_raw(sign(B, 0, tip=2 * GWEI), BASE_FEE)
    block = pool.select_for_block(BASE_FEE, 21000 * 2)
    assert [tx.hash for tx in block] == [b0.hash, a0.hash]
    # the block commits; A also had nonce 1 included via another node's tx
    state.nonces[addr(A)] = 2
    state.nonces[addr(B)] = 1
    pool.remove_committed(block)
    assert pool.get(a0.hash) is None and pool.get(b0.hash) is None
    assert pool.get(a1.hash) is None  # stale nonce dropped
    assert pool.get(a2.hash) is a2
    assert len(pool) == 1
    assert pool.pending_nonce(addr(A)) == 3
    # nonces freed by the commit can't be re-added
    assert_rejected(pool, sign(A, 1, tip=5 * GWEI), "nonce too low: next nonce is 2")


def test_on_new_head_drops_stale_unaffordable_and_contract_senders(pool, state):
    a0 = pool.add_raw(sign(A, 0), BASE_FEE)
    a1 = pool.add_raw(sign(A, 1), BASE_FEE)
    b0 = pool.add_raw(sign(B, 0, value=ETHER), BASE_FEE)
    b1 = pool.add_raw(sign(B, 1), BASE_FEE)
    c0 = pool.add_raw(sign(C, 0), BASE_FEE)
    new_state = FakeState()
    new_state.balances = dict(state.balances)
    new_state.nonces[addr(A)] = 1
    new_state.balances[addr(B)] = ETHER // 2  # b0 unaffordable, b1 fine
    new_state.code.add(addr(C))
    pool.on_new_head(new_state)
    assert pool.reader is new_state
    assert {p.hash for p in pool} == {a1.hash, b1.hash}
    assert pool.get(a0.hash) is None and pool.get(b0.hash) is None and pool.get(c0.hash) is None


# ------------------------------------------------------------- notification


async def test_wait_for_transactions_wakes_on_add(pool):
    woke = trio.Event()

    async def waiter():
        await pool.wait_for_transactions()
        woke.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert not woke.is_set()
        pool.add_raw(sign(A, 1), BASE_FEE)  # not executable (gap): keeps waiting
        await trio.testing.wait_all_tasks_blocked()
        assert not woke.is_set()
        pool.add_raw(sign(A, 0), BASE_FEE)
        with trio.fail_after(1):
            await woke.wait()


async def test_wait_for_transactions_wakes_on_new_head(pool, state):
    pool.add_raw(sign(A, 1), BASE_FEE)  # queued behind nonce 0
    woke = trio.Event()

    async def waiter():
        await pool.wait_for_transactions()
        woke.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert not woke.is_set()
        state.nonces[addr(A)] = 1  # nonce 0 was mined elsewhere
        pool.on_new_head()
        with trio.fail_after(1):
            await woke.wait()


async def test_wait_for_transactions_returns_immediately_when_executable(pool):
    pool.add_raw(sign(A, 0), BASE_FEE)
    with trio.fail_after(1):
        await pool.wait_for_transactions()


async def test_new_tx_event_is_replaced_after_each_add(pool):
    ev = pool.new_tx_event
    assert not ev.is_set()
    pool.add_raw(sign(A, 0), BASE_FEE)
    assert ev.is_set()
    assert pool.new_tx_event is not ev and not pool.new_tx_event.is_set()
    ev2 = pool.new_tx_event
    with pytest.raises(MempoolError):
        pool.add_raw(sign(A, 0), BASE_FEE)
    assert not ev2.is_set()  # rejections don't notify


# ------------------------------------------------- eviction order (the tails' heap)

_HEAP_SENDERS = [A, B, C, D, E]
FULL = 4  # pool size: full after a few adds
_HEAP_TXS = {
    (s, nonce, tip): sign(acct, nonce, tip=tip * GWEI, fee=(10 + tip) * GWEI)
    for s, acct in enumerate(_HEAP_SENDERS) for nonce in range(4) for tip in (1, 2, 3)
}


def _cheapest_tail_by_scan(pool: Mempool, exclude: bytes, base_fee: int) -> PooledTx | None:
    """The rule, read off every sender's tail (how the pool found its victim before)."""
    tails = [txs[max(txs)] for sender, txs in pool._by_sender.items() if txs and sender != exclude]
    return min(tails, key=lambda p: (p.effective_tip(base_fee), p.max_fee, -p.seq), default=None)


def test_eviction_picks_the_cheapest_tail_like_a_full_scan() -> None:
    """Whatever was added, replaced, evicted or committed, and whatever the base fee, a
    full pool evicts the tail the rule names (checked against a scan of every sender),
    over 300 seeded random runs of 60 operations, which evict a few hundred times."""
    rng = random.Random(7)
    evictions = 0
    for _ in range(300):
        state = FakeState()
        for acct in _HEAP_SENDERS:
            state.balances[addr(acct)] = 100 * ETHER
        pool = make_pool(state, max_pool_size=FULL, max_nonce_gap=8)
        base_fee = BASE_FEE
        for _ in range(60):
            op = rng.choice(["add", "add", "add", "commit", "fee"])
            s, nonce, tip = rng.randrange(5), rng.randrange(4), rng.choice([1, 2, 3])
            sender = addr(_HEAP_SENDERS[s])
            if op == "add":
                expected_victim = None
                if len(pool) >= FULL and pool.get_by_sender_nonce(sender, nonce) is None:
                    expected_victim = _cheapest_tail_by_scan(pool, sender, base_fee)
                    assert pool._pick_victim(sender, base_fee) is expected_victim
                try:
                    pool.add_raw(_HEAP_TXS[(s, nonce, tip)], base_fee)
                except MempoolError:
                    continue
                if expected_victim is not None and pool.get(expected_victim.hash) is None:
                    evictions += 1
            elif op == "commit":
                state.nonces[sender] = state.nonces.get(sender, 0) + 1
                pool.on_new_head(state)
            else:
                base_fee = (1 + tip) * GWEI
        for acct in _HEAP_SENDERS:
            assert pool._pick_victim(addr(acct), base_fee) is _cheapest_tail_by_scan(
                pool, addr(acct), base_fee)
    assert evictions > 100


def test_the_tails_heap_stays_bounded_while_the_pool_churns(state) -> None:
    """Once a full pool has evicted, every tail change pushes onto the heap; a pool that
    then churns for long without being full must not grow it without bound."""
    from node.mempool import STALE_TAILS

    pool = make_pool(state, max_pool_size=3, max_nonce_gap=8)
    for acct in (B, C, D):
        pool.add_raw(sign(acct, 0, tip=1 * GWEI), BASE_FEE)
    pool.add_raw(sign(E, 0, tip=2 * GWEI), BASE_FEE)  # evicts a tip of 1: the heap is made
    for nonce in range(STALE_TAILS + 40):
        pool.add_raw(sign(A, nonce, tip=3 * GWEI), BASE_FEE)  # the first evicts a tip of 1
        state.nonces[addr(A)] = nonce + 1
        pool.remove_committed([pool.checks.decode(sign(A, nonce, tip=3 * GWEI)).tx])
        assert len(pool._tails.heap) <= 2 * 3 + STALE_TAILS + 1  # three senders at most
    assert pool._pick_victim(addr(A), BASE_FEE) is _cheapest_tail_by_scan(pool, addr(A), BASE_FEE)
