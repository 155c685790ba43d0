"""`laminar blocktest`: the Ethereum consensus tests (BlockchainTests fixtures) through
Laminar's executors.

The shared set (`../shared/conformance/blockchain-tests`: 1,358 tests, Shanghai to Prague,
from ethereum/tests and execution-spec-tests) must pass whole on the sequential executor,
and Block-STM (forced through its workers) must give the same verdict and post-state root
on every test with more than one transaction or more than one block, at 1, 2 and 4
workers. The CLI's contract (output, exit codes, --json, --filter) is tested on copies of
real fixtures, some of them tampered with.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import rlp

from execution.blockstm import BlockSTMExecutor
from execution.blocktest import FAILED, PASSED, SKIPPED, BlockTest, iter_tests, run_test
from execution.sequential import SequentialExecutor

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "conformance" / "blockchain-tests"
SHARED_TESTS = 1358
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(),
    reason=f"the shared consensus tests are not at {SHARED} (CI has them)",
)
LAMINAR = [sys.executable, "-m", "tools.cli"]
COLLISION = "ethereum-tests/BlockchainTests/GeneralStateTests/stSStoreTest/InitCollisionParis.json"
INVALID_BLOCKS = "ethereum-tests/BlockchainTests/InvalidBlocks"
CLI_TIMEOUT_S = 900


def blocktest(*args: str, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*LAMINAR, "blocktest", *args], cwd=REPO, capture_output=True, text=True,
        timeout=timeout,
    )


def _max_transactions(test: BlockTest) -> int:
    most = 0
    for block in test.fixture["blocks"]:
        try:
            most = max(most, len(rlp.decode(bytes.fromhex(block["rlp"][2:]))[1]))
        except Exception:  # an undecodable (invalid) block: counts as none
            pass
    return most


def _spread() -> list[BlockTest]:
    return [t for t in iter_tests([SHARED])
            if _max_transactions(t) > 1 or len(t.fixture["blocks"]) > 1]


# ---- the shared suite ----------------------------------------------------------------


@needs_shared
@pytest.mark.slow
def test_the_whole_shared_suite_passes_on_the_sequential_executor(tmp_path):
    report = tmp_path / "sequential.json"
    done = blocktest(str(SHARED), "--executor", "sequential", "-j", "2", "--json", str(report))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(f"{SHARED_TESTS} passed, 0 failed, 0 skipped"), last
    records = json.loads(report.read_text())["tests"]
    assert len(records) == SHARED_TESTS
    assert {r["status"] for r in records} == {PASSED}
    # Every block a fixture marks invalid was rejected, with a reason.
    rejected = [r for r in records if r["rejections"]]
    assert rejected and all(": " in line for r in rejected for line in r["rejections"])


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_blockstm_gives_the_sequential_verdict_and_state_on_the_spread(workers):
    """Every test with several transactions or several blocks (47 of them), each block
    forced through the worker processes, against the sequential executor."""
    tests = _spread()
    assert len(tests) >= 40
    sequential = SequentialExecutor()
    with BlockSTMExecutor(workers, force_parallel=True) as blockstm:
        for test in tests:
            want = run_test(test, sequential)
            got = run_test(test, blockstm)
            assert want.status == PASSED, (test.name, want.difference)
            assert (got.status, got.state_root, got.rejections) == (
                want.status, want.state_root, want.rejections), (test.name, got.difference)


@needs_shared
@pytest.mark.parametrize("executor", ["sequential", "blockstm"])
def test_eip7610_collision_fixtures_pass_on_both_executors(executor):
    """The four InitCollisionParis tests plain py-evm fails (a creation into an address
    that has storage must collide)."""
    done = blocktest(str(SHARED / COLLISION), "--executor", executor, "--workers", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("4 passed, 0 failed, 0 skipped")


@needs_shared
def test_invalid_blocks_are_rejected_with_a_reason():
    tests = list(iter_tests([SHARED / INVALID_BLOCKS]))
    assert tests
    sequential = SequentialExecutor()
    for test in tests:
        result = run_test(test, sequential)
        assert result.status == PASSED, (test.name, result.difference)
        expected = sum("expectException" in b for b in test.fixture["blocks"])
        assert len(result.rejections) == expected, (test.name, result.rejections)


# ---- the CLI's contract, on copies of real fixtures ----------------------------------


def _copy_fixture(tmp_path: Path, relative: str, edit=None) -> Path:
    fixture = json.loads((SHARED / relative).read_text())
    if edit is not None:
        for test in fixture.values():
            edit(test)
    target = tmp_path / Path(relative).name
    target.write_text(json.dumps(fixture))
    return target


@needs_shared
def test_a_wrong_lastblockhash_fails_with_the_field_want_and_got(tmp_path):
    def tamper(test):
        test["lastblockhash"] = "0x" + "ab" * 32

    path = _copy_fixture(tmp_path, COLLISION, tamper)
    report = tmp_path / "out.json"
    done = blocktest(str(path), "--json", str(report))
    assert done.returncode == 1, done.stdout + done.stderr
    fails = [line for line in done.stdout.splitlines() if line.startswith("FAIL ")]
    assert len(fails) == 4
    assert all("lastblockhash: want 0x" + "ab" * 32 + ", got 0x" in line for line in fails)
    assert done.stdout.strip().splitlines()[-1].startswith("0 passed, 4 failed, 0 skipped")
    records = json.loads(report.read_text())["tests"]
    assert [r["status"] for r in records] == [FAILED] * 4
    assert records[0]["difference"]["field"] == "lastblockhash"


@needs_shared
def test_a_block_expected_invalid_that_is_accepted_fails(tmp_path):
    def tamper(test):
        test["blocks"][0]["expectException"] = "TransactionException.MADE_UP"

    done = blocktest(str(_copy_fixture(tmp_path, COLLISION, tamper)))
    assert done.returncode == 1
    assert "block 1: want rejected (TransactionException.MADE_UP), got accepted" in done.stdout


@needs_shared
def test_a_wrong_post_state_names_the_account_and_field(tmp_path):
    def tamper(test):
        address = sorted(test["postState"])[0]
        test["postState"][address]["balance"] = "0x123456789"

    done = blocktest(str(_copy_fixture(tmp_path, COLLISION, tamper)))
    assert done.returncode == 1
    assert ".balance: want 0x123456789, got 0x" in done.stdout


@needs_shared
def test_an_unknown_network_is_skipped_and_filter_selects(tmp_path):
    def tamper(test):
        test["network"] = "Osaka"

    path = _copy_fixture(tmp_path, COLLISION, tamper)
    done = blocktest(str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("0 passed, 0 failed, 4 skipped")
    only_one = blocktest(str(SHARED / COLLISION), "--filter", "d2g0v0")
    assert only_one.stdout.strip().splitlines()[-1].startswith("1 passed, 0 failed, 0 skipped")


def test_unusable_input_exits_2_with_a_message(tmp_path):
    missing = blocktest(str(tmp_path / "nope"))
    assert missing.returncode == 2 and "error: " in missing.stderr and "nope" in missing.stderr
    (tmp_path / "broken.json").write_text("{not json")
    broken = blocktest(str(tmp_path / "broken.json"))
    assert broken.returncode == 2 and "not valid JSON" in broken.stderr
    (tmp_path / "empty").mkdir()
    empty = blocktest(str(tmp_path / "empty"))
    assert empty.returncode == 2 and "no .json fixture files" in empty.stderr
    (tmp_path / "none.json").write_text("{}")
    none = blocktest(str(tmp_path / "none.json"))
    assert none.returncode == 2 and "no BlockchainTests" in none.stderr
    jobs = blocktest(str(tmp_path / "none.json"), "-j", "0")
    assert jobs.returncode == 2 and "--jobs" in jobs.stderr


@needs_shared
def test_a_malformed_test_fails_without_stopping_the_run(tmp_path):
    fixture = json.loads((SHARED / COLLISION).read_text())
    names = sorted(fixture)
    broken = copy.deepcopy(fixture[names[0]])
    broken["genesisRLP"] = "0xzz"
    fixture = {"broken": broken, names[1]: fixture[names[1]]}
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(fixture))
    results = {t.name: run_test(t, SequentialExecutor()) for t in iter_tests([path])}
    assert results["broken"].status == FAILED and "bad fixture" in results["broken"].reason
    assert results[names[1]].status == PASSED
    assert SKIPPED not in {r.status for r in results.values()}
