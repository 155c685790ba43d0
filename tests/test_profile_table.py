"""bench.profile_table: py-spy stacks sorted into the stages of a transaction's path, the
innermost named stage deciding, waits dropped, and microseconds per transaction from each
process group's CPU seconds."""

from __future__ import annotations

from pathlib import Path

from bench.profile_table import NODE, OTHER, WORKERS, is_wait, markdown, read_raw, table

CHILD = "process 1:\"laminar node\";process 9:\"forkserver\";"
RAW = "\n".join([
    # admission under the RPC server: the innermost stage (sender recovery) wins
    "process 1:\"laminar node\";RpcApp.__call__ (node/rpc/server.py:1);Mempool.add_raw (node/mempool.py:2);"
    "recover_sender (execution/senders.py:3) 30",
    "process 1:\"laminar node\";RpcApp.__call__ (node/rpc/server.py:1);Mempool.add_raw (node/mempool.py:2) 10",
    "process 1:\"laminar node\";RpcApp.__call__ (node/rpc/server.py:1);json.loads (json/__init__.py:4) 10",
    "process 1:\"laminar node\";trio.run (trio/_core/_run.py:7) 50",
    # children nest under the node's and the forkserver's process frames, as py-spy writes them
    CHILD + "process 2:\"worker\";Worker.run (execution/blockstm/worker.py:5);BlockContext.execute "
    "(execution/blockstm/worker.py:6) 40",
    CHILD + "process 2:\"worker\";Worker.run (execution/blockstm/worker.py:5);Worker.next_message "
    "(execution/blockstm/worker.py:8) 10",
    # an admission worker process recovering senders: the workers' CPU, the admission stage
    CHILD + "process 3:\"admission\";_process_worker (concurrent/futures/process.py:1);"
    "recover_sender (execution/senders.py:3) 50",
    # a worker waiting on its pipe: not work, dropped
    CHILD + "process 2:\"worker\";worker_main (execution/blockstm/worker.py:9);"
    "Worker.run (execution/blockstm/worker.py:5) 70",
    # trio's cached thread between jobs, an admission worker blocked on its queue: dropped
    "process 1:\"laminar node\";Thread.run (threading.py:1);WorkerThread._work (trio/_core/_thread_cache.py:2) 60",
    CHILD + "process 3:\"admission\";_process_worker (concurrent/futures/process.py:1);Queue.get "
    "(multiprocessing/queues.py:2);Connection._recv (multiprocessing/connection.py:3) 20",
])


def test_stages_and_microseconds_per_transaction(tmp_path: Path) -> None:
    path = tmp_path / "profile.raw"
    path.write_text(RAW + "\n")
    counts = read_raw(path)
    assert counts[NODE] == {
        "admission: sender recovery": 30,
        "admission: pool rules and state reads": 10,
        "JSON-RPC: HTTP, JSON, dispatch": 10,
        OTHER: 50,
    }
    assert counts[WORKERS] == {"workers: EVM execution": 40, "workers: messages to and from the coordinator": 10,
                               "admission: sender recovery": 50}
    # 1,000 transactions: node process 1 s (1,000 us a tx), workers 1 s (1,000 us a tx)
    rows = table(counts, transactions=1000, cpu_seconds={NODE: 1.0, WORKERS: 1.0})
    per_tx = {row.stage: row.microseconds_per_tx for row in rows}
    assert len(rows) == len(per_tx)  # one row a stage
    # recovery: 30 of the node's 100 samples, and 50 of the workers' 100
    assert per_tx["admission: sender recovery"] == 300 + 500 and per_tx[OTHER] == 500
    assert per_tx["workers: EVM execution"] == 400 and per_tx["workers: messages to and from the coordinator"] == 100
    assert round(sum(per_tx.values())) == 2000
    text = markdown(rows)
    assert text.splitlines()[2].startswith("| admission: sender recovery |")
    assert text.splitlines()[-1] == "| **whole node** | 100% | **2000** |"


def test_a_pipe_read_is_a_wait_only_in_a_worker_blocked_on_its_queue() -> None:
    read = "Connection._recv (multiprocessing/connection.py)"
    assert is_wait(["_process_worker (concurrent/futures/process.py)",
                    "Queue.get (multiprocessing/queues.py)", read])
    # a Block-STM worker reading a large message is working
    assert not is_wait(["Worker.run (execution/blockstm/worker.py)",
                        "Worker.next_message (execution/blockstm/worker.py)", read])
