"""bench.profile_table: py-spy stacks sorted into the stages of a transaction's path, the
innermost named stage deciding, and microseconds per transaction from the CPU seconds."""

from __future__ import annotations

from pathlib import Path

from bench.profile_table import OTHER, markdown, read_raw, table

RAW = "\n".join([
    # admission under the RPC server: the innermost stage (sender recovery) wins
    "process 1:\"laminar node\";RpcApp.__call__ (node/rpc/server.py:1);Mempool.add_raw (node/mempool.py:2);"
    "recover_sender (execution/senders.py:3) 30",
    "process 1:\"laminar node\";RpcApp.__call__ (node/rpc/server.py:1);Mempool.add_raw (node/mempool.py:2) 10",
    "process 1:\"laminar node\";RpcApp.__call__ (node/rpc/server.py:1);json.loads (json/__init__.py:4) 10",
    "process 2:\"worker\";Worker.run (execution/blockstm/worker.py:5);BlockContext.execute "
    "(execution/blockstm/worker.py:6) 40",
    "process 1:\"laminar node\";trio.run (trio/_core/_run.py:7) 10",
])


def test_stages_and_microseconds_per_transaction(tmp_path: Path) -> None:
    path = tmp_path / "profile.raw"
    path.write_text(RAW + "\n")
    counts = read_raw(path)
    assert counts == {
        "admission: sender recovery": 30,
        "admission: pool rules and state reads": 10,
        "JSON-RPC: HTTP, JSON, dispatch": 10,
        "workers: EVM execution": 40,
        OTHER: 10,
    }
    rows = table(counts, transactions=1000, cpu_seconds=2.0)  # 2,000 us per transaction
    per_tx = {row.stage: row.microseconds_per_tx for row in rows}
    assert per_tx["workers: EVM execution"] == 800 and per_tx["admission: sender recovery"] == 600
    assert round(sum(per_tx.values())) == 2000
    text = markdown(rows)
    assert text.splitlines()[2].startswith("| workers: EVM execution | 40.0% | 800 |")
    assert text.splitlines()[-1] == "| **whole node** | 100% | **2000** |"
