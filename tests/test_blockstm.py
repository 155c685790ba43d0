"""Block-STM: mainnet replay identical to sequential, worker crashes, MV memory units."""

from __future__ import annotations

import gzip
import json
import os
import signal
from pathlib import Path

import pytest

from execution.blockstm import BlockSTMExecutor
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


def test_worker_killed_mid_block_is_recovered() -> None:
    block, pre = _erc20_block(120)
    reference = SequentialExecutor().execute(_erc20_block(120)[0], pre)
    with BlockSTMExecutor(2) as executor:
        pids = executor.worker_pids()
        killed = []

        def kill_one(received: int) -> None:
            if received == 10 and not killed:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        executor.on_result = kill_one
        result = executor.execute(block, pre)
        assert killed
        assert result.post_state_root == reference.post_state_root
        assert [r.encode() for r in result.receipts] == [r.encode() for r in reference.receipts]
        assert result.stats.fallback is True
        executor.on_result = None
        # The next block respawns workers and runs in parallel again.
        block2, pre2 = _erc20_block(40)
        again = executor.execute(block2, pre2)
        assert again.stats.fallback is False
        assert set(executor.worker_pids()).isdisjoint(pids)
        assert again.post_state_root == SequentialExecutor().execute(
            _erc20_block(40)[0], pre2).post_state_root
