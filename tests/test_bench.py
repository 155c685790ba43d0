"""`laminar bench`: the executor benchmark harness (small sizes, fast).

The Block-STM executor is used as the parallel side when `execution.blockstm` imports;
until then the sequential executor stands in for it (`--parallel sequential`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.sync import SYNC_BATCH

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMINAR = [sys.executable, "-m", "tools.cli"]
SYNTHETIC = ["transfers", "erc20", "amm", "mixed"]
REQUIRED_KEYS = {
    "workload", "txs", "workers", "sequential_s", "parallel_s", "speedup",
    "incarnations_per_tx", "identical", "sequential_block_s", "parallel_block_s",
    "block_speedup", "machine", "all_succeeded",
}

BAL_KEYS = {
    "bal_execution_s", "bal_1worker_execution_s", "bal_block_s", "bal_1worker_block_s",
    "bal_identical", "bal_speedup", "bal_block_speedup", "bal_scaling", "bal_block_scaling",
    "bal_bytes_per_tx",
}


PARALLEL = "blockstm"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """One contract cache for the module: vyper compiles each contract once."""
    return tmp_path_factory.mktemp("bench-cache")


def bench(cache_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*LAMINAR, "bench", "--quiet", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "LAMINAR_BENCH_CACHE": str(cache_dir)},
    )


def bench_record(
    cache_dir: Path, tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a bench that succeeds and writes exactly one JSON record; return both."""
    out = tmp_path / "bench.json"
    proc = bench(cache_dir, *args, "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (record,) = json.loads(out.read_text())
    return proc, record


@pytest.mark.parametrize("workload", SYNTHETIC)
def test_synthetic_workload(cache_dir: Path, tmp_path: Path, workload: str) -> None:
    out = tmp_path / "bench.json"
    proc = bench(
        cache_dir, "--workload", workload, "--txs", "40", "--workers", "2",
        "--parallel", PARALLEL, "--json", str(out),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert workload in proc.stdout  # the table
    records = json.loads(out.read_text())
    assert isinstance(records, list) and len(records) == 1
    record = records[0]
    assert REQUIRED_KEYS <= set(record), REQUIRED_KEYS - set(record)
    assert record["workload"] == workload
    assert record["txs"] == 40
    assert record["workers"] == 2
    assert record["parallel_executor"] == PARALLEL
    assert record["identical"] is True
    assert record["identical_detail"] == {
        "receipts": True, "gas_used": True, "logs_bloom": True, "state_root": True,
    }
    assert record["error"] is None
    assert record["all_succeeded"] is True
    assert record["failed_txs"] == 0
    assert record["sequential_s"] > 0 and record["parallel_s"] > 0
    assert record["sequential_block_s"] >= record["sequential_s"]
    assert record["parallel_block_s"] >= record["parallel_s"]
    assert record["speedup"] == pytest.approx(record["sequential_s"] / record["parallel_s"])
    assert record["incarnations_per_tx"] >= 1.0
    # The same executor with one worker ran too (forced parallel, so the Block-STM path
    # itself, not its small-block fallback), with identical results.
    assert record["one_worker_identical"] is True and record["one_worker_error"] is None
    assert record["one_worker_incarnations_per_tx"] >= 1.0
    assert record["scaling"] == pytest.approx(record["one_worker_s"] / record["parallel_s"])
    assert "scaling" in proc.stdout
    # The block imported with its access list (2 workers and 1), beside the others.
    assert BAL_KEYS <= set(record), BAL_KEYS - set(record)
    assert record["bal_identical"] is True and record["bal_error"] is None
    assert record["bal_identical_detail"] == record["identical_detail"]
    assert record["bal_speedup"] == pytest.approx(record["sequential_s"] / record["bal_execution_s"])
    assert record["bal_block_speedup"] == pytest.approx(
        record["sequential_block_s"] / record["bal_block_s"])
    assert record["bal_scaling"] == pytest.approx(
        record["bal_1worker_execution_s"] / record["bal_execution_s"])
    assert record["bal_bytes_per_tx"] == pytest.approx(record["bal_bytes"] / 40)
    assert record["bal_bytes_per_tx"] > 20  # every transaction is in it (its nonce at least)
    assert "bal x" in proc.stdout
    assert record["machine"]["cpu_count"] == os.cpu_count()
    assert record["machine"]["python"]
    if workload == "transfers":
        assert record["min_tx_gas"] == 21000
        assert record["gas_used"] == 40 * 21000
    if workload in ("erc20", "amm"):
        assert record["min_tx_gas"] > 21000  # the contract really ran


def test_mixed_hot_share(cache_dir: Path, tmp_path: Path) -> None:
    proc, record = bench_record(
        cache_dir, tmp_path, "-w", "mixed", "--txs", "40", "--hot-share", "0.5",
        "--parallel", PARALLEL, "--no-scaling", "--no-bal",
    )
    assert "scaling" not in record and "scaling" not in proc.stdout
    # --no-bal: no access-list import, no bal columns.
    assert not [key for key in record if key.startswith("bal_")]
    assert "bal x" not in proc.stdout
    assert record["params"]["hot_txs"] == 20
    assert sum(record["params"]["kinds"].values()) == 40
    assert record["identical"] is True and record["all_succeeded"] is True


def test_transfers_from_few_senders(cache_dir: Path, tmp_path: Path) -> None:
    """--transfer-senders: a few accounts with many nonces each, in round robin."""
    _, record = bench_record(
        cache_dir, tmp_path, "-w", "transfers", "--txs", "40", "--transfer-senders", "3",
        "--parallel", PARALLEL, "--no-scaling",
    )
    assert record["params"]["senders"] == 3
    assert "from 3 senders" in record["description"]
    # Every one of the 40 (nonces 0..13 of three accounts) executed, identically.
    assert record["identical"] is True and record["all_succeeded"] is True
    assert record["gas_used"] == 40 * 21000


def test_mainnet_one_block(cache_dir: Path, tmp_path: Path) -> None:
    _, record = bench_record(
        cache_dir, tmp_path, "-w", "mainnet", "--mainnet-limit", "2", "--parallel", PARALLEL
    )
    assert record["workload"] == "mainnet"
    assert len(record["blocks"]) == 2
    assert record["identical"] is True
    assert record["header_ok"] is True
    assert record["txs"] == sum(b["txs"] for b in record["blocks"]) > 0
    # Block 116525 (Frontier) wipes a storage: it cannot have an access list, so it is
    # skipped and named; the other one is imported with its list, identically.
    assert record["bal_skipped"] == [116525] and record["bal_blocks"] == 1
    assert record["bal_identical"] is True
    first, skipped = record["blocks"]
    assert "no access list" in skipped["bal_skipped"] and "bal_speedup" not in skipped
    assert first["bal_identical"] is True and first["bal_parallel_import"] is False
    # The sums compare like with like: the same blocks on every side.
    assert record["bal_sequential_s"] == pytest.approx(first["sequential_s"])
    assert record["bal_execution_s"] == pytest.approx(first["bal_execution_s"])
    assert record["bal_speedup"] == pytest.approx(
        first["sequential_s"] / first["bal_execution_s"])
    assert record["bal_bytes_per_tx"] == pytest.approx(first["bal_bytes"] / first["txs"])


def test_plot(cache_dir: Path, tmp_path: Path) -> None:
    png = tmp_path / "bench.png"
    proc = bench(
        cache_dir, "-w", "transfers", "-w", "erc20", "--txs", "10",
        "--parallel", PARALLEL, "--plot", str(png),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--txs", "0"], "--txs: must be a positive integer"),
        (["--txs", "many"], "--txs: expected a positive integer"),
        (["--workload", "nope"], "unknown workload 'nope'"),
        (["--hot-share", "1.5"], "--hot-share: must be between 0 and 1"),
        (["--workers", "0"], "--workers: must be a positive integer"),
        (["--transfer-senders", "0"], "--transfer-senders: must be a positive integer"),
        (["--parallel", "quantum"], "invalid choice: 'quantum'"),
        (["--sync-blocks", "0"], "--sync-blocks: must be a positive integer"),
        (["--sync-txs", "5"], "--sync-txs needs --sync-blocks"),
        (["--simulate-workers", "4,0"], "worker counts must be at least 1"),
        (["--simulate-workers", "four"], "expected worker counts separated by commas"),
        (["--simulate-workers", "4", "--parallel", "sequential"], "needs --parallel blockstm"),
    ],
)
def test_bad_flags_exit_2(cache_dir: Path, args: list[str], message: str) -> None:
    proc = bench(cache_dir, *args, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", SYNTHETIC)
def test_builders_deterministic(cache_dir: Path, name: str) -> None:
    from bench.workloads import build

    first = build(name, 12, seed=7, cache_dir=cache_dir, hot_share=0.5)
    again = build(name, 12, seed=7, cache_dir=cache_dir, hot_share=0.5)
    other = build(name, 12, seed=8, cache_dir=cache_dir, hot_share=0.5)
    assert first.encoded_transactions == again.encoded_transactions
    assert first.state_root == again.state_root
    assert first.nodes == again.nodes
    assert first.env == again.env
    assert len(first.encoded_transactions) == 12
    assert len(set(first.encoded_transactions)) == 12
    assert other.encoded_transactions != first.encoded_transactions
    senders = {tx.sender for tx in first.decode_transactions()}
    assert len(senders) == 12  # distinct senders: no nonce chains


def test_failing_parallel_executor_is_reported(cache_dir: Path, tmp_path: Path) -> None:
    from bench.runner import bench_synthetic, machine_info
    from bench.workloads import build
    from execution.sequential import SequentialExecutor

    class Broken:
        name = "broken"

        def execute(self, block, pre_state):
            raise RuntimeError("worker pool exploded")

    workload = build("transfers", 5, seed=1, cache_dir=cache_dir)
    record = bench_synthetic(
        workload, SequentialExecutor(), Broken(), workers=2, repeat=1,
        scratch_root=tmp_path, machine=machine_info(),
    )
    assert record["identical"] is False
    assert "worker pool exploded" in record["error"]
    assert record["parallel_s"] is None and record["speedup"] is None
    assert record["sequential_s"] > 0
    assert record["all_succeeded"] is True


def test_different_results_are_not_identical(cache_dir: Path, tmp_path: Path) -> None:
    from bench.runner import bench_synthetic, machine_info
    from bench.workloads import build
    from execution.sequential import SequentialExecutor

    class DropsLastReceipt(SequentialExecutor):
        name = "wrong"

        def execute(self, block, pre_state):
            result = super().execute(block, pre_state)
            result.receipts = result.receipts[:-1]
            return result

    workload = build("transfers", 4, seed=1, cache_dir=cache_dir)
    record = bench_synthetic(
        workload, SequentialExecutor(), DropsLastReceipt(), workers=2, repeat=1,
        scratch_root=tmp_path, machine=machine_info(),
    )
    assert record["identical"] is False
    assert record["identical_detail"]["receipts"] is False
    assert record["identical_detail"]["state_root"] is True


def test_wrong_access_list_import_fails_the_bench(cache_dir: Path, tmp_path: Path) -> None:
    """An import whose results differ from sequential's is reported, and fails the bench."""
    from bench.cli import records_failed
    from bench.runner import bench_synthetic, machine_info
    from bench.workloads import build
    from execution.bal.importer import BALImportExecutor
    from execution.sequential import SequentialExecutor

    class WrongRoot(BALImportExecutor):
        def execute(self, block, pre_state):
            result = super().execute(block, pre_state)
            result.post_state_root = b"\x00" * 32
            return result

    workload = build("transfers", 6, seed=1, cache_dir=cache_dir)
    honest = BALImportExecutor(1, force_parallel=True)
    wrong = WrongRoot(1, force_parallel=True)
    try:
        record = bench_synthetic(
            workload, SequentialExecutor(), SequentialExecutor(), workers=1, repeat=1,
            scratch_root=tmp_path, machine=machine_info(), bal=wrong, bal_one_worker=honest,
            warmup=0,
        )
    finally:
        honest.close()
        wrong.close()
    assert record["identical"] is True
    assert record["bal_identical"] is False
    assert record["bal_identical_detail"]["state_root"] is False
    assert record["bal_identical_detail"]["receipts"] is True
    assert records_failed([record])
    assert not records_failed([{**record, "bal_identical": True}])


# ------------------------------------------------------------- executionless sync


def test_sync_bench(cache_dir: Path, tmp_path: Path) -> None:
    """--sync-blocks alone: one `sync` record, every root of both paths the executed one."""
    proc, record = bench_record(cache_dir, tmp_path, "--sync-blocks", "3", "--sync-txs", "8")
    assert record["workload"] == "sync"
    assert record["sync_blocks"] == 3 and record["sync_txs"] == 8 and record["txs"] == 24
    assert record["executor"] == PARALLEL
    assert record["roots_match"] is True and record["root_mismatches"] == []
    assert record["identical"] is True and record["all_succeeded"] is True
    assert record["error"] is None
    assert record["sync_speedup"] == pytest.approx(record["execute_s"] / record["apply_s"])
    assert record["execute_s"] == pytest.approx(
        record["execute_only_s"] + record["execute_commit_s"])
    assert record["bal_bytes_per_tx"] > 20
    assert record["blocks_per_commit"] == SYNC_BATCH  # batches as a syncing node writes them
    assert "executionless sync" in proc.stdout and "roots" in proc.stdout
    assert "seq blk s" not in proc.stdout  # no workloads without --workload


def test_sync_chain_advances_nonces_and_reports_a_wrong_root(cache_dir: Path, tmp_path: Path) -> None:
    import dataclasses

    from bench.runner import machine_info
    from bench.sync import bench_sync, build_chain, first_pass
    from execution.sequential import SequentialExecutor

    chain = build_chain(3, 5, seed=3, hot_share=0.4, cache_dir=cache_dir)
    blocks = [chain.block(k) for k in range(3)]
    senders = [[tx.sender for tx in block.transactions] for block in blocks]
    assert senders[0] == senders[1] == senders[2] and len(set(senders[0])) == 5
    assert [{tx.nonce for tx in block.transactions} for block in blocks] == [{0}, {1}, {2}]
    assert [env.number for env in chain.envs] == [1, 2, 3]
    planned = first_pass(chain)
    assert all(p.all_succeeded for p in planned)
    assert len({p.post_state_root for p in planned}) == 3
    # Committed two blocks at a time: block 2 reads block 1's state before it is written.
    batched = bench_sync(chain, SequentialExecutor(), scratch_root=tmp_path,
                         machine=machine_info(), workers=1, planned=planned, commit_every=2)
    assert batched["roots_match"] is True and batched["blocks_per_commit"] == 2
    # A wrong expected root for block 2: both paths are reported, the record fails.
    planned[1] = dataclasses.replace(planned[1], post_state_root=b"\x11" * 32)
    record = bench_sync(chain, SequentialExecutor(), scratch_root=tmp_path,
                        machine=machine_info(), workers=1, planned=planned)
    assert record["roots_match"] is False and record["identical"] is False
    assert sorted(m["path"] for m in record["root_mismatches"]) == ["apply", "execute"]
    assert {m["block"] for m in record["root_mismatches"]} == {2}


def test_applied_accounts_answer_only_for_their_own_state(cache_dir: Path) -> None:
    """Executionless sync keeps the accounts each applied block leaves
    (`PostStateAccounts`) for the next block; applied out of order, on another
    pre-state, the lists still give exactly the first pass's roots."""
    from bench.sync import build_chain, first_pass
    from execution.bal.apply import PostStateAccounts, apply_access_list
    from execution.executor import StateView

    chain = build_chain(4, 5, seed=5, hot_share=0.4, cache_dir=cache_dir)
    planned = first_pass(chain)
    vm_class = chain.envs[0].vm_class
    nodes = dict(chain.genesis_nodes)
    roots = [chain.genesis_root] + [p.post_state_root for p in planned]
    accounts = PostStateAccounts()
    # In order, then block 2 again from block 1's state (the cache holds block 3's
    # accounts by then: every sender's nonce is another), then blocks 3 and 4.
    for k in (0, 1, 2, 1, 2, 3):
        applied = apply_access_list(planned[k].access_list, vm_class,
                                    StateView(nodes, roots[k]), {}, accounts)
        assert applied.post_state_root == roots[k + 1], f"block {k + 1}"
        nodes.update(applied.state_nodes)
    assert accounts.root == roots[4]
    senders = {tx.sender for tx in chain.block(3).transactions}
    known = accounts.at(roots[4])
    assert senders <= set(known) and {known[s].nonce for s in senders} == {4}


# ------------------------------------------------------------------ the model


def test_simulate_workers(cache_dir: Path, tmp_path: Path) -> None:
    """--simulate-workers: predictions for each N, checked against the 1- and 2-worker runs."""
    proc, record = bench_record(
        cache_dir, tmp_path, "-w", "mixed", "--txs", "40", "--workers", "2",
        "--simulate-workers", "4,8,16",
    )
    sim = record["simulated"]
    assert "error" not in sim, sim.get("traceback")
    assert sim["workers"] == [4, 8, 16]
    for key in ("blockstm_s", "bal_s", "coordinator_utilisation", "bal_coordinator_utilisation"):
        assert len(sim[key]) == 3 and all(v is not None for v in sim[key]), key
    assert all(t > 0 for t in sim["blockstm_s"] + sim["bal_s"])
    assert all(0 < u <= 1 for u in sim["coordinator_utilisation"] + sim["bal_coordinator_utilisation"])
    for side, measured in (("blockstm", ("one_worker_s", "parallel_s")),
                           ("bal", ("bal_1worker_execution_s", "bal_execution_s"))):
        checks = sim["validation"][side]
        assert set(checks) == {"1", "2"}
        for label, key in zip(("1", "2"), measured):
            check = checks[label]
            assert check["predicted_s"] > 0 and check["measured_s"] > 0
            assert check["measured_s"] <= record[key]  # the fastest run, the rounds' included
            assert check["relative_error"] == pytest.approx(
                check["predicted_s"] / check["measured_s"] - 1)
    assert sim["validation"]["blockstm"]["1"]["in_sample"] is True
    assert sim["validation"]["blockstm"]["2"]["in_sample"] is False
    assert sim["validation"]["cores"] == record["machine"]["usable_cpus"]
    assert len(sim["blockstm_narrowed_at"]) == 3
    assert sim["parameters"]["blockstm_coordinator_per_result_us"] > 0
    assert "model: predicted execution seconds" in proc.stdout


def _model_costs(n: int, execute: float, chain: bool = False):
    from bench.simulate import TxCosts

    slot = b"\x01" * 52  # one storage slot every transaction reads and writes (a chain)
    zero = [0.0] * n
    return TxCosts(
        n=n, recover=zero, execute=[execute] * n, own_update=zero, send=zero, recv=zero,
        share=zero, update=zero, validate=zero,
        reads=[(slot,) if chain and i else () for i in range(n)],
        writes=[(slot,) if chain else () for _ in range(n)],
        deltas=[() for _ in range(n)],
    )


def test_model_scales_until_the_coordinator_is_the_bottleneck() -> None:
    """Without conflicts the workers share the block; a coordinator that costs more per
    result than a worker's share caps the time at its own work and is ~100% busy."""
    from bench.simulate import ModelParams, simulate_bal, simulate_blockstm

    costs = _model_costs(400, execute=1e-3)
    cheap = ModelParams(c0=1e-6, setup0=0.0, bal_c0=1e-6, bal_setup0=0.0, bal_root=[])
    times = [simulate_blockstm(costs, cheap, n, n + 1)["seconds"] for n in (1, 2, 4, 8)]
    assert times[0] == pytest.approx(0.4, rel=0.02)
    for n, t in zip((2, 4, 8), times[1:]):
        assert t == pytest.approx(0.4 / n, rel=0.1)
    assert simulate_bal(costs, cheap, 4, 5)["seconds"] == pytest.approx(0.1, rel=0.05)
    # A coordinator at 0.5 ms a result: 0.2 s for the block, whatever the worker count.
    costly = dataclasses.replace(cheap, c0=5e-4)
    run = simulate_blockstm(costs, costly, 16, 17)
    assert run["seconds"] == pytest.approx(0.2, rel=0.1)
    assert run["coordinator_utilisation"] > 0.9
    assert simulate_blockstm(costs, costly, 1, 2)["coordinator_utilisation"] < 0.6
    # Fewer cores than processes: they share them.
    assert simulate_blockstm(costs, cheap, 4, 2)["seconds"] == pytest.approx(0.2, rel=0.1)


def test_model_reexecutes_a_dependency_chain_and_the_import_does_not() -> None:
    from bench.simulate import ModelParams, simulate_bal, simulate_blockstm

    costs = _model_costs(200, execute=1e-3, chain=True)
    params = ModelParams(c0=1e-5, setup0=0.0, bal_c0=1e-5, bal_setup0=0.0, bal_root=[])
    one = simulate_blockstm(costs, params, 1, 2)
    assert one["incarnations"] == 200 and one["aborts"] == 0
    four = simulate_blockstm(costs, params, 4, 5)
    assert four["incarnations"] > 200  # stale reads, aborts, re-executions
    assert four["seconds"] >= 0.9 * one["seconds"]  # a chain: no gain from more workers
    # The import knows every write set up front: the chain runs at once.
    assert simulate_bal(costs, params, 4, 5)["seconds"] == pytest.approx(0.05, rel=0.1)


def test_profiling_puts_the_coordinator_back(cache_dir: Path) -> None:
    import execution.bal.importer as importer
    import execution.blockstm.executor as executor
    from bench.simulate import profile_coordinator
    from bench.workloads import build
    from execution.blockstm import BlockSTMExecutor

    before = (executor.wait, executor._BlockRun.end_block, importer._ImportRun._root_steps)
    workload = build("transfers", 8, seed=1, cache_dir=cache_dir)
    with BlockSTMExecutor(1, force_parallel=True) as blockstm:
        profile = profile_coordinator(blockstm, workload.block, workload.pre_state(), runs=1)
    assert profile.results == 8 and profile.setup_s > 0 and profile.loop_s > 0
    assert (executor.wait, executor._BlockRun.end_block, importer._ImportRun._root_steps) == before


@pytest.mark.slow
def test_pairs_runs_checkouts_alternately_under_the_same_load(tmp_path: Path) -> None:
    """`python -m bench.pairs` on the dev setup, this tree under two labels: every run
    commits all it admitted, and the report holds each run in alternating order."""
    from conftest import free_port_block

    out = tmp_path / "pairs.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.pairs", "--checkout", f"A={REPO_ROOT}",
         "--checkout", f"B={REPO_ROOT}", "--pairs", "1", "--count", "300",
         "--base-rpc-port", str(free_port_block(1)), "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [run["checkout"] for run in runs] == ["A", "B"]
    for run in runs:
        report = run["report"]
        assert report["admitted"] == report["committed"] == 300, report
        assert report["node_cpu"]["cpu_us_per_committed_tx"] > 0
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["checkout"] for line in lines[-2:]] == ["A", "B"]
    # (300 transfers can commit in one block: no committed rate, but an admission rate)
    assert all(line["median_admitted_per_s"] > 0 and line["median_cpu_us_per_committed_tx"] > 0
               for line in lines[-2:])


def test_pairs_refuses_a_directory_that_is_not_a_checkout(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.pairs", "--checkout", f"A={REPO_ROOT}",
         "--checkout", f"B={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2 and "not a Laminar checkout" in done.stderr, done.stderr
