"""Replay of 27 real Ethereum mainnet blocks (Frontier to Cancun) with the sequential executor.

Every block must reproduce its header's gasUsed and logsBloom, its receiptsRoot from
Byzantium on, and every sender must recover to the transaction's `from`.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from execution.forks import BYZANTIUM_BLOCK
from execution.replay import ReplayInputError, replay_block_dir
from execution.sequential import SequentialExecutor

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "mainnet"
BLOCKS = sorted((p.name for p in DATA.iterdir() if p.is_dir()), key=int)


def test_all_blocks_present() -> None:
    assert len(BLOCKS) == 27


def _header(block_dir: Path) -> dict:
    with gzip.open(block_dir / "block.json.gz", "rb") as f:
        return json.load(f)


@pytest.mark.parametrize("number", BLOCKS)
def test_replay_matches_header(number: str) -> None:
    block_dir = DATA / number
    report = replay_block_dir(block_dir, SequentialExecutor())
    header = _header(block_dir)

    assert report["block"] == int(number)
    assert report["executor"] == "sequential"
    assert report["transactions"] == len(header["transactions"])
    assert "invalid" not in report, report.get("invalid")
    assert int(report["gasUsed"], 16) == int(header["gasUsed"], 16)
    assert report["logsBloom"] == header["logsBloom"]
    assert len(report["logsBloom"]) == 2 + 512
    assert report["matches"]["gasUsed"] is True
    assert report["matches"]["logsBloom"] is True
    assert report["matches"]["senders"] is True
    if int(number) >= BYZANTIUM_BLOCK:
        assert report["receiptsRoot"] == header["receiptsRoot"]
        assert report["matches"]["receiptsRoot"] is True
    else:
        assert report["matches"]["receiptsRoot"] is None
    assert report["ok"] is True
    assert report["timing"]["execute_s"] >= 0
    json.dumps(report)  # JSON-able


def test_replay_missing_block_json(tmp_path: Path) -> None:
    with pytest.raises(ReplayInputError, match="block.json"):
        replay_block_dir(tmp_path, SequentialExecutor())


# ---------------------------------------------------------------- the real CLI


def _laminar_replay_wired() -> bool:
    laminar = REPO / ".venv" / "bin" / "laminar"
    if not laminar.exists():
        return False
    probe = subprocess.run(
        [str(laminar), "replay", "--help"], capture_output=True, text=True, timeout=120
    )
    return probe.returncode == 0


@pytest.fixture(scope="module")
def replay_cmd() -> list[str]:
    """`laminar replay`, as the installed command runs it."""
    if _laminar_replay_wired():
        return [str(REPO / ".venv" / "bin" / "laminar"), "replay"]
    return [sys.executable, "-m", "tools.replay_cli"]


def _run(cmd: list[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_cli_ok(replay_cmd: list[str]) -> None:
    proc = _run(replay_cmd, str(DATA / "19426587"), "--executor", "sequential")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert report["block"] == 19426587
    assert report["fork"] == "cancun"
    assert report["matches"] == {
        "gasUsed": True, "logsBloom": True, "receiptsRoot": True,
        "transactionsRoot": True, "senders": True,
    }


def test_cli_module_entry_point() -> None:
    proc = _run([sys.executable, "-m", "tools.replay_cli"], str(DATA / "46147"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["matches"]["receiptsRoot"] is None


def test_cli_missing_block_json(replay_cmd: list[str], tmp_path: Path) -> None:
    broken = tmp_path / "46147"
    shutil.copytree(DATA / "46147", broken)
    (broken / "block.json.gz").unlink()
    proc = _run(replay_cmd, str(broken))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ")
    assert "block.json" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_cli_bad_json(replay_cmd: list[str], tmp_path: Path) -> None:
    broken = tmp_path / "46147"
    shutil.copytree(DATA / "46147", broken)
    (broken / "prestate.json.gz").unlink()
    (broken / "prestate.json").write_text("{not json")
    proc = _run(replay_cmd, str(broken))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "prestate.json" in proc.stderr


def test_cli_unknown_executor(replay_cmd: list[str]) -> None:
    proc = _run(replay_cmd, str(DATA / "46147"), "--executor", "nope")
    assert proc.returncode == 2
    # argparse may reject it first ("usage: ...\nlaminar replay: error: ...").
    assert "error: " in proc.stderr and "nope" in proc.stderr
    assert proc.stdout == ""


def test_cli_tampered_block_exits_1(replay_cmd: list[str], tmp_path: Path) -> None:
    tampered = tmp_path / "4370000"
    shutil.copytree(DATA / "4370000", tampered)
    block = _header(tampered)
    block["gasUsed"] = hex(int(block["gasUsed"], 16) + 1)
    (tampered / "block.json.gz").unlink()
    (tampered / "block.json").write_text(json.dumps(block))  # plain JSON is read too
    proc = _run(replay_cmd, str(tampered))
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    assert report["matches"]["gasUsed"] is False
    assert report["matches"]["logsBloom"] is True
    assert report["matches"]["receiptsRoot"] is True


# ---- a Cancun block with blob transactions ---------------------------------------------


@pytest.fixture(scope="module")
def blob_block_dir(tmp_path_factory) -> Path:
    from blob_block import build_blob_block

    folder = tmp_path_factory.mktemp("blob-block")
    build_blob_block(folder)
    return folder


@pytest.mark.parametrize("executor_name", ["sequential", "blockstm"])
def test_replay_of_a_block_with_blob_transactions_matches_its_header(blob_block_dir, executor_name):
    """Laminar's own chain refuses blob transactions; a replayed mainnet block runs under
    mainnet's rules (blob gas, blob base fee, BLOBHASH). The block was built by py-evm's
    VM over a full pre-state, so even the state root must match."""
    from execution.blockstm import BlockSTMExecutor

    executor = (SequentialExecutor() if executor_name == "sequential"
                else BlockSTMExecutor(2, force_parallel=True))
    try:
        report = replay_block_dir(blob_block_dir, executor)
    finally:
        getattr(executor, "close", lambda: None)()
    header = json.loads((blob_block_dir / "block.json").read_text())
    assert "invalid" not in report, report.get("invalid")
    assert report["ok"] is True, report["matches"]
    assert report["fork"] == "cancun"
    assert sum(tx["type"] == "0x3" for tx in header["transactions"]) == 3
    assert int(header["blobGasUsed"], 16) == 5 * 131_072
    assert report["postStateRoot"] == header["stateRoot"]
    assert report["execution"]["ran"] == executor_name


def test_one_shot_replay_of_a_small_block_with_blockstm_says_it_ran_sequentially(blob_block_dir):
    done = subprocess.run(
        [sys.executable, "-m", "tools.cli", "replay", str(blob_block_dir), "--executor", "blockstm"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["executor"] == "blockstm"
    assert report["execution"]["ran"] == "sequential"
    assert "one-shot replay of 4 transactions" in report["execution"]["why"]


def test_replay_decodes_eip7702_transactions_from_their_json_form():
    """Prague blocks carry type-4 transactions: rebuilt from JSON, the hash is the same."""
    from eth.vm.forks import PragueVM
    from eth_account import Account
    from eth_utils import to_checksum_address

    from execution.replay import decode_transaction

    sender, authority = Account.from_key(b"\x51" * 32), Account.from_key(b"\x52" * 32)
    auth = authority.sign_authorization({"chainId": 1, "address": to_checksum_address("0x" + "ab" * 20), "nonce": 7})
    raw = sender.sign_transaction({
        "type": 4, "chainId": 1, "nonce": 0, "to": to_checksum_address("0x" + "cd" * 20), "value": 0,
        "gas": 100_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "data": b"",
        "authorizationList": [auth],
    }).raw_transaction
    tx = PragueVM.get_transaction_builder().decode(bytes(raw))
    item = tx.authorization_list[0]
    as_json = {
        "type": "0x4", "chainId": "0x1", "nonce": "0x0", "to": "0x" + "cd" * 20,
        "gas": hex(tx.gas), "value": "0x0", "input": "0x", "maxFeePerGas": hex(tx.max_fee_per_gas),
        "maxPriorityFeePerGas": hex(tx.max_priority_fee_per_gas), "accessList": [],
        "yParity": hex(tx.y_parity), "r": hex(tx.r), "s": hex(tx.s),
        "authorizationList": [{
            "chainId": hex(item.chain_id), "address": "0x" + item.address.hex(),
            "nonce": hex(item.nonce), "yParity": hex(item.y_parity),
            "r": hex(item.r), "s": hex(item.s),
        }],
    }
    rebuilt = decode_transaction(as_json, PragueVM, "tx")
    assert rebuilt.hash == tx.hash
    assert rebuilt.authorization_list[0].address == bytes.fromhex("ab" * 20)
