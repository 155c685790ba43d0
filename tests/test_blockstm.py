"""Block-STM: mainnet replay identical to sequential, worker crashes, MV memory units."""

from __future__ import annotations

import dataclasses
import gc
import gzip
import json
import os
import signal
from pathlib import Path

import pytest

from execution.blockstm import BlockSTMConfig, BlockSTMExecutor
from execution.blockstm.contention import ContentionJudge
from execution.blockstm.mvmemory import ESTIMATE, EstimateHit, MVMemory
from execution.executor import InvalidBlockError
from execution.forks import BYZANTIUM_BLOCK
from execution.replay import replay_block_dir
from execution.sequential import SequentialExecutor

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "mainnet"
BLOCKS = sorted((p.name for p in DATA.iterdir() if p.is_dir()), key=int)


@pytest.fixture(scope="module")
def blockstm():
    with BlockSTMExecutor(2) as executor:
        yield executor


@pytest.mark.parametrize("number", BLOCKS)
def test_mainnet_replay_identical(blockstm: BlockSTMExecutor, number: str) -> None:
    block_dir = DATA / number
    report = replay_block_dir(block_dir, blockstm)
    reference = replay_block_dir(block_dir, SequentialExecutor())
    with gzip.open(block_dir / "block.json.gz", "rb") as f:
        header = json.load(f)
    assert report["executor"] == "blockstm"
    assert "invalid" not in report, report.get("invalid")
    assert report["ok"] is True, report
    for key in ("gasUsed", "logsBloom", "receiptsRoot", "postStateRoot"):
        assert report[key] == reference[key], key
    assert int(report["gasUsed"], 16) == int(header["gasUsed"], 16)
    if int(number) >= BYZANTIUM_BLOCK:
        assert report["receiptsRoot"] == header["receiptsRoot"]


# ------------------------------------------------------------------ MV memory


def test_mvmemory_reads_highest_lower_write_and_sums_deltas() -> None:
    mv = MVMemory()
    key = b"\x01" * 20 + b"b"
    mv.record(1, {key: 100}, {})
    mv.record(3, {}, {key: 5})
    mv.record(4, {}, {key: 7})
    assert mv.resolve(key, 0) == (True, None)
    assert mv.resolve(key, 2) == (False, 100)
    assert mv.resolve(key, 4) == (False, 105)
    assert mv.resolve(key, 9) == (False, 112)
    other = b"\x02" * 20 + b"b"
    mv.record(2, {}, {other: 3})
    assert mv.resolve(other, 5) == (True, 3)  # base + 3
    mv.mark_estimate(3)
    with pytest.raises(EstimateHit) as hit:
        mv.resolve(key, 9)
    assert hit.value.tx == 3
    assert mv.resolve(key, 3) == (False, 100)
    assert not mv.validate(9, {key: (False, 112)})
    # A new incarnation that writes fewer locations removes the old entries.
    assert mv.record(3, {}, {}) is False
    assert mv.resolve(key, 9) == (False, 107)
    assert mv.data[key][1].get(3, None) is not ESTIMATE


def test_mvmemory_storage_wipe_hides_older_values() -> None:
    mv = MVMemory()
    address = b"\x05" * 20
    slot = address + (7).to_bytes(32, "big")
    mv.record(1, {slot: 9}, {})
    mv.record(2, {address + b"w": True}, {})
    assert mv.resolve(slot, 2) == (False, 9)
    assert mv.resolve(slot, 3) == (False, 0)
    mv.record(4, {slot: 1}, {})
    assert mv.resolve(slot, 5) == (False, 1)
    mv.record(2, {}, {})  # the wipe is gone in the new incarnation
    assert mv.resolve(slot, 3) == (False, 9)


# ------------------------------------------------------------------ lifecycle


def _erc20_block(n: int):
    from blockstm_workloads import erc20_block

    return erc20_block(n)


def test_small_block_falls_back(blockstm: BlockSTMExecutor) -> None:
    block, pre = _erc20_block(3)
    result = blockstm.execute(block, pre)
    assert result.stats.fallback is True
    assert result.stats.executor == "blockstm"
    reference = SequentialExecutor().execute(_erc20_block(3)[0], pre)
    assert result.post_state_root == reference.post_state_root


def test_invalid_nonce_same_index_as_sequential(blockstm: BlockSTMExecutor) -> None:
    from blockstm_workloads import transfers_with_nonce_gap

    block, pre = transfers_with_nonce_gap(12, gap_at=7)
    with pytest.raises(InvalidBlockError) as seq:
        SequentialExecutor().execute(block, pre)
    block, pre = transfers_with_nonce_gap(12, gap_at=7)
    with pytest.raises(InvalidBlockError) as par:
        blockstm.execute(block, pre)
    assert par.value.index == seq.value.index == 7
    assert par.value.reason == seq.value.reason
    # and the executor still works afterwards
    block, pre = _erc20_block(20)
    assert blockstm.execute(block, pre).stats.fallback is False


def test_high_s_typed_transaction_rejected_by_both_executors(blockstm: BlockSTMExecutor) -> None:
    """A malleated copy (s -> n - s, parity flipped) recovers the same sender, but EIP-2
    forbids high s: a proposer that includes one makes an invalid block, for both."""
    import rlp
    from blockstm_workloads import decode, transfers_with_nonce_gap
    from eth.constants import SECPK1_N

    block, pre = transfers_with_nonce_gap(12, gap_at=-1)
    txs = list(block.transactions)
    original = txs[5]
    fields = rlp.decode(original.encode()[1:])  # type 2 payload; the last three: v, r, s
    fields[-3] = b"" if fields[-3] == b"\x01" else b"\x01"
    fields[-1] = (SECPK1_N - original.s).to_bytes(32, "big").lstrip(b"\x00")
    malleated = decode(b"\x02" + rlp.encode(fields))
    assert malleated.sender == original.sender and malleated.s > SECPK1_N // 2
    txs[5] = malleated
    for executor in (SequentialExecutor(), blockstm):
        with pytest.raises(InvalidBlockError) as rejected:
            executor.execute(type(block)(env=block.env, transactions=tuple(txs)), pre)
        assert rejected.value.index == 5
        assert "s must be low" in rejected.value.reason
    # The untouched block is valid.
    assert blockstm.execute(block, pre).stats.transactions == 12


def test_worker_killed_mid_block_is_recovered() -> None:
    block, pre = _erc20_block(120)
    reference = SequentialExecutor().execute(_erc20_block(120)[0], pre)
    pids: list[int] = []
    killed = []

    def kill_one(received: int) -> None:
        if received == 10 and not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    with BlockSTMExecutor(config=BlockSTMConfig(workers=2, on_result=kill_one)) as executor:
        pids.extend(executor.worker_pids())
        result = executor.execute(block, pre)
        assert killed
        assert result.post_state_root == reference.post_state_root
        assert [r.encode() for r in result.receipts] == [r.encode() for r in reference.receipts]
        assert result.stats.fallback is True
        # The next block respawns workers and runs in parallel again.
        block2, pre2 = _erc20_block(40)
        again = executor.execute(block2, pre2)
        assert again.stats.fallback is False
        assert set(executor.worker_pids()).isdisjoint(pids)
        assert again.post_state_root == SequentialExecutor().execute(
            _erc20_block(40)[0], pre2).post_state_root


# ------------------------------------------------------------------ adaptive fallback

COUNTER = b"\xc1" * 20
# runtime: slot0 += 1 (every transaction reads and writes the same slot: a chain)
_COUNTER_CODE = bytes.fromhex("5f546001015f5500")


def _counter_block(n: int):
    from blockstm_workloads import CHAIN_ID, GWEI, decode, env, keys
    from eth_utils import to_checksum_address

    from execution.executor import BlockInput, StateView
    from execution.prestate import load_prestate

    prestate = {a.address: {"balance": hex(10**20)} for a in keys(n)}
    prestate["0x" + COUNTER.hex()] = {
        "balance": "0x0", "nonce": 1, "code": "0x" + _COUNTER_CODE.hex(),
        "storage": {"0x0": "0x7"},
    }
    nodes, root = load_prestate(prestate)
    txs = tuple(
        decode(acct.sign_transaction({
            "type": 2, "chainId": CHAIN_ID, "nonce": 0, "to": to_checksum_address(COUNTER),
            "value": i, "gas": 60_000, "maxFeePerGas": 20 * GWEI,
            "maxPriorityFeePerGas": GWEI, "data": b"",
        }).raw_transaction)
        for i, acct in enumerate(keys(n))
    )
    return BlockInput(env=env(), transactions=txs), StateView(nodes, root)


def _same(result, reference) -> None:
    assert result.post_state_root == reference.post_state_root
    assert [r.encode() for r in result.receipts] == [r.encode() for r in reference.receipts]
    assert result.gas_used == reference.gas_used
    assert result.logs_bloom == reference.logs_bloom
    assert result.state_nodes == reference.state_nodes


def test_contended_chain_goes_on_with_one_worker_with_identical_results(
    blockstm: BlockSTMExecutor,
) -> None:
    """Every transaction depends on the previous one: after a few wasted incarnations the
    block goes on with one worker, in order, and barely re-executes anything after that.
    (About one module run in ten, the one-worker phase still judges itself contended and
    takes the second step, the in-process sequential loop: same results, so allowed.)"""
    block, pre = _counter_block(120)
    reference = SequentialExecutor().execute(_counter_block(120)[0], pre)
    result = blockstm.execute(block, pre)
    _same(result, reference)
    assert result.stats.narrowed_at is not None and result.stats.narrowed_at < 60
    assert blockstm.last_narrow_reason.startswith("contention")
    assert blockstm.last_block_info["narrowed_at"] == result.stats.narrowed_at
    assert result.stats.incarnations < 1.5 * 120
    # and the next block runs on both workers again
    block2, pre2 = _erc20_block(60)
    again = blockstm.execute(block2, pre2)
    assert again.stats.fallback is False and again.stats.narrowed_at is None
    _same(again, SequentialExecutor().execute(_erc20_block(60)[0], pre2))


def _round_robin_transfers_block(senders: int, per_sender: int):
    """What a node's mempool gives a block when a few accounts send many transactions:
    senders in turn, each with its next nonce (each tx depends on the one `senders` below)."""
    from blockstm_workloads import CHAIN_ID, GWEI, decode, env, keys
    from eth_utils import to_checksum_address

    from execution.executor import BlockInput, StateView
    from execution.prestate import load_prestate

    accounts = keys(senders)
    nodes, root = load_prestate({a.address: {"balance": hex(10**20)} for a in accounts})
    txs = tuple(
        decode(accounts[i % senders].sign_transaction({
            "type": 2, "chainId": CHAIN_ID, "nonce": i // senders,
            "to": to_checksum_address(bytes([0xAB]) + i.to_bytes(19, "big")),
            "value": i + 1, "gas": 21_000, "maxFeePerGas": 20 * GWEI,
            "maxPriorityFeePerGas": GWEI,
        }).raw_transaction)
        for i in range(senders * per_sender)
    )
    return BlockInput(env=env(), transactions=txs), StateView(nodes, root)


@pytest.mark.parametrize("senders", [2, 5, 10])
@pytest.mark.parametrize("known_senders", [False, True], ids=["decoded", "senders-known"])
def test_few_senders_with_many_nonces_give_identical_results(
    blockstm: BlockSTMExecutor, senders: int, known_senders: bool
) -> None:
    """Nonce chains spread over both workers give the sequential result (however far
    contention takes a block of decoded transactions). With the senders known up front
    (BlockInput.senders, as the mempool gives them), each sender's next transaction goes
    to the worker running its previous one: no stale nonce reads, no narrowing."""
    block, pre = _round_robin_transfers_block(senders, 300 // senders)
    if known_senders:  # as the mempool gives them (BlockInput.senders)
        block = dataclasses.replace(block, senders=tuple(tx.sender for tx in block.transactions))
    reference_block = _round_robin_transfers_block(senders, 300 // senders)[0]
    reference = SequentialExecutor().execute(reference_block, pre)
    result = blockstm.execute(block, pre)
    _same(result, reference)
    assert [r.state_root for r in result.receipts] == [b"\x01"] * len(block.transactions)
    if known_senders:
        assert result.stats.fallback is False and result.stats.narrowed_at is None
        assert result.stats.incarnations < 1.1 * len(block.transactions)


def test_contended_chain_falls_back_mid_block_with_identical_results(
    blockstm: BlockSTMExecutor,
) -> None:
    """Without the one-worker step, the contended block finishes sequentially in-process."""
    with BlockSTMExecutor(config=BlockSTMConfig(workers=2, narrow_on_contention=False)) as unnarrowed:
        block, pre = _counter_block(120)
        reference = SequentialExecutor().execute(_counter_block(120)[0], pre)
        result = unnarrowed.execute(block, pre)
        _same(result, reference)
        assert result.stats.fallback is True
        assert unnarrowed.last_fallback_at is not None and unnarrowed.last_fallback_at < 120
        assert unnarrowed.last_fallback_reason.startswith("contention")
        assert unnarrowed.last_block_info["fallback_at"] == unnarrowed.last_fallback_at
        # and the next block runs in parallel again
        block2, pre2 = _erc20_block(60)
        again = unnarrowed.execute(block2, pre2)
        assert again.stats.fallback is False
        _same(again, SequentialExecutor().execute(_erc20_block(60)[0], pre2))


def test_independent_block_does_not_fall_back(blockstm: BlockSTMExecutor) -> None:
    block, pre = _erc20_block(80)
    result = blockstm.execute(block, pre)
    assert result.stats.fallback is False
    assert blockstm.last_fallback_at is None
    _same(result, SequentialExecutor().execute(_erc20_block(80)[0], pre))


def test_workers_get_deep_queues_only_after_a_run_of_unwasted_incarnations() -> None:
    """Deep task queues keep workers busy while the coordinator is off the CPU, but on a
    contended block they run more incarnations on stale reads: only after a clean run."""
    judge = ContentionJudge(BlockSTMConfig(workers=2, tasks_in_flight=6,
                                           deep_tasks_in_flight=24, deepen_after=4))
    depths = []
    for event in ["done"] * 4 + ["aborted"] + ["done"] * 4 + ["blocked"]:
        getattr(judge, f"incarnation_{event}")()
        depths.append(judge.tasks_in_flight())
    assert depths == [6, 6, 6, 24, 6, 6, 6, 6, 24, 6]


def test_queue_depths_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="tasks in flight"):
        BlockSTMConfig(workers=2, tasks_in_flight=8, deep_tasks_in_flight=4)


def test_a_block_run_is_freed_without_the_cycle_collector(blockstm: BlockSTMExecutor) -> None:
    """A block's run (its multi-version memory, transactions, results) must be freed by
    reference counting when execute returns. Left in a reference cycle, every block
    becomes garbage that only the collector's middle- and old-generation walks free, and
    those hold the GIL: a node's event loop (its JSON-RPC) stalled 120-450 ms each."""
    block, pre = _erc20_block(80)
    assert blockstm.execute(block, pre).stats.fallback is False  # the workers are up
    gc.collect()
    gc.disable()
    try:
        result = blockstm.execute(block, pre)
        assert result.stats.fallback is False
        del result
        cyclic = gc.collect()  # with the collector off, what is left here is in cycles
    finally:
        gc.enable()
    assert cyclic == 0


@pytest.mark.parametrize("after", [1, 3, 10, 30])
@pytest.mark.parametrize("make", [_erc20_block, _counter_block], ids=["erc20", "counter"])
def test_forced_fallback_at_any_point_is_identical(make, after: int) -> None:
    block, pre = make(48)
    reference = SequentialExecutor().execute(make(48)[0], pre)
    with BlockSTMExecutor(config=BlockSTMConfig(workers=2, fallback_after=after)) as executor:
        result = executor.execute(block, pre)
        _same(result, reference)
        assert result.stats.fallback is True or executor.last_fallback_at is None


def test_adaptive_off_keeps_block_stm(blockstm: BlockSTMExecutor) -> None:
    block, pre = _counter_block(40)
    reference = SequentialExecutor().execute(_counter_block(40)[0], pre)
    with BlockSTMExecutor(2, adaptive=False) as executor:
        result = executor.execute(block, pre)
    _same(result, reference)
    assert result.stats.fallback is False
    assert result.stats.incarnations > 40


# ------------------------------------------------------------------ caches across blocks


def test_consecutive_blocks_reuse_worker_caches(blockstm: BlockSTMExecutor) -> None:
    """Block 2 runs on block 1's post-state with warm worker caches (nodes by hash, base
    values by root); re-running a block on the same root reuses its base values."""
    from dataclasses import replace

    from blockstm_workloads import CHAIN_ID, GWEI, decode, env, keys
    from eth_utils import to_checksum_address

    from execution.executor import BlockInput, StateView

    block1, pre1 = _erc20_block(60)
    ref1 = SequentialExecutor().execute(_erc20_block(60)[0], pre1)
    res1 = blockstm.execute(block1, pre1)
    _same(res1, ref1)
    nodes2 = dict(pre1.nodes)
    nodes2.update(ref1.state_nodes)
    pre2 = StateView(nodes2, ref1.post_state_root)
    # block 2: the same senders (nonce 1) send ETH to fresh addresses
    accounts = keys(60)

    def block2_txs():
        return tuple(
            decode(acct.sign_transaction({
                "type": 2, "chainId": CHAIN_ID, "nonce": 1,
                "to": to_checksum_address(bytes([0x72, i]).rjust(20, b"\x05")),
                "value": 10**15 + i, "gas": 21_000,
                "maxFeePerGas": 20 * GWEI, "maxPriorityFeePerGas": GWEI, "data": b"",
            }).raw_transaction)
            for i, acct in enumerate(accounts)
        )

    env2 = replace(env(), number=11, parent_hash=b"\x98" * 32)
    ref2 = SequentialExecutor().execute(BlockInput(env=env2, transactions=block2_txs()), pre2)
    for _ in range(2):  # cold base cache for this root, then warm
        res2 = blockstm.execute(BlockInput(env=env2, transactions=block2_txs()), pre2)
        _same(res2, ref2)
        assert res2.stats.fallback is False
    assert blockstm.last_block_info["needs"] == 0  # every node already cached
    # and block 1 again, on its own (older) root
    _same(blockstm.execute(_erc20_block(60)[0], pre1), ref1)


def test_trie_reader_matches_py_evm() -> None:
    import rlp
    from eth.db.account import AccountDB
    from eth.rlp.accounts import Account
    from eth_hash.auto import keccak

    from execution.blockstm.triereader import decode_node, lookup
    from execution.overlay import OverlayDB

    block, pre = _erc20_block(64)
    from blockstm_workloads import TOKEN, keys

    adb = AccountDB(OverlayDB(pre.nodes), pre.state_root)

    def node_of(h):
        return decode_node(pre.nodes[h])

    addresses = [bytes.fromhex(a.address[2:]) for a in keys(64)]
    addresses += [TOKEN, b"\x00" * 20, b"\x07" * 20]
    for address in addresses:
        got = lookup(node_of, pre.state_root, keccak(address))
        assert got == adb._get_encoded_account(address, from_journal=False)
    token_root = rlp.decode(lookup(node_of, pre.state_root, keccak(TOKEN)), sedes=Account).storage_root
    for address in addresses:
        slot = int.from_bytes(address, "big")
        encoded = lookup(node_of, token_root, keccak(slot.to_bytes(32, "big")))
        value = rlp.decode(encoded, sedes=rlp.sedes.big_endian_int) if encoded else 0
        assert value == adb.get_storage(TOKEN, slot, from_journal=False)


@pytest.mark.parametrize("number", BLOCKS[-3:])
def test_mainnet_replay_identical_with_node_round_trips(number: str) -> None:
    """Without shipping the pre-state, workers prefetch and fetch nodes (NEED)."""
    block_dir = DATA / number
    reference = replay_block_dir(block_dir, SequentialExecutor())
    with BlockSTMExecutor(config=BlockSTMConfig(workers=2, ship_prestate_limit=0)) as executor:
        for _ in range(2):  # cold node caches, then warm
            report = replay_block_dir(block_dir, executor)
            for key in ("gasUsed", "logsBloom", "receiptsRoot", "postStateRoot"):
                assert report[key] == reference[key], key


def test_consecutive_blocks_with_node_round_trips(blockstm) -> None:
    with BlockSTMExecutor(config=BlockSTMConfig(workers=2, ship_prestate_limit=0)) as executor:
        block, pre = _erc20_block(60)
        executor.execute(block, pre)
        assert executor.last_block_info["needs"] > 0  # cold: nodes come by round trips
        # block 2 on block 1's post-state, then block 2 again with every node cached
        test_consecutive_blocks_reuse_worker_caches(executor)
