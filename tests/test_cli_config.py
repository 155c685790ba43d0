"""`laminar node` with bad command lines, config files and genesis files: exit code 2 and
an "error:" line that says what is wrong, never a traceback and never a running node.
And a custom genesis, given properly, runs its own chain.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from conftest import LAMINAR, REPO_ROOT
from eth_account import Account

EXIT_USAGE = 2
CLI_TIMEOUT_S = 30
CUSTOM_CHAIN_ID = 4242
CUSTOM_BALANCE = 123 * 10**18


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*LAMINAR, "node", *args], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=CLI_TIMEOUT_S,
    )


def assert_usage_error(done: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, one clear "error:" line naming `fragments`, no traceback, never served."""
    assert done.returncode == EXIT_USAGE, done
    assert "Traceback" not in done.stderr, done.stderr
    assert "JSON-RPC (HTTP + WebSocket)" not in done.stdout, done.stdout
    error_lines = [line for line in done.stderr.splitlines() if "error:" in line]
    assert error_lines, done.stderr
    for fragment in fragments:
        assert fragment in error_lines[-1], error_lines[-1]
    return error_lines[-1]


def rpc(url: str, method: str, *params):
    reply = requests.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10
    ).json()
    assert "error" not in reply, reply
    return reply["result"]


# ---- command line and config file -------------------------------------------------------


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--rpc", "nonsense"], ["error: --rpc: expected HOST:PORT, got 'nonsense'"]),
        (["--rpc", "127.0.0.1:http"], ["--rpc", "'http' is not a number"]),
        (["--rpc", "127.0.0.1:70000"], ["--rpc", "out of range"]),
        (["--block-time", "-1"], ["consensus.block_time", "positive"]),
        (["--block-time", "0"], ["consensus.block_time", "positive"]),
        (["--block-time", "inf"], ["consensus.block_time", "positive"]),
        (["--block-time", "nan"], ["consensus.block_time", "positive"]),
        (["--block-time", "soon"], ["--block-time", "invalid float value"]),
        (["--log-level", "loud"], ["--log-level", "invalid choice"]),
    ],
)
def test_bad_command_line(tmp_path, args, fragments):
    datadir = tmp_path / "data"
    assert_usage_error(run_cli("--datadir", str(datadir), *args), *fragments)
    assert not datadir.exists()  # refused before touching the disk


@pytest.mark.parametrize(
    "toml, fragments",
    [
        ("bogus_key = 1\n", ["unknown setting 'bogus_key'", "top level"]),
        ("[rpc]\nadress = \"127.0.0.1:0\"\n", ["unknown setting 'adress'", "[rpc]"]),
        ("[consenssus]\nblock_time = 1\n", ["unknown setting 'consenssus'"]),
        ("[rpc]\nport = 99999\n", ["rpc.port", "out of range"]),
        ("[rpc]\naddress = \"nonsense\"\n", ["rpc.address", "HOST:PORT"]),
        ("[consensus]\nblock_time = \"fast\"\n", ["consensus.block_time", "expected a number"]),
        ("[consensus]\nblock_time = -1\n", ["consensus.block_time", "positive"]),
        ("datadir = [\n", ["not valid TOML"]),
    ],
)
def test_bad_config_file(tmp_path, toml, fragments):
    config = tmp_path / "laminar.toml"
    config.write_text(toml)
    datadir = tmp_path / "data"
    assert_usage_error(run_cli("--config", str(config), "--datadir", str(datadir)), *fragments)
    assert not datadir.exists()


def test_missing_config_file(tmp_path):
    assert_usage_error(run_cli("--config", str(tmp_path / "nope.toml")), "cannot read config file")


def test_busy_ports_are_named_and_nothing_runs(tmp_path):
    """A port another process holds stops the node with an error naming it: JSON-RPC, and
    p2p (py-libp2p itself only logs the failure and would run on, unreachable)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rpc_busy = run_cli("--datadir", str(tmp_path / "a"), "--rpc", f"127.0.0.1:{port}")
        p2p_busy = run_cli("--datadir", str(tmp_path / "b"), "--rpc", "127.0.0.1:0",
                           "--p2p-listen", f"/ip4/127.0.0.1/tcp/{port}")
    assert_usage_error(rpc_busy, f"cannot serve JSON-RPC on 127.0.0.1:{port}", "in use")
    assert_usage_error(p2p_busy, f"cannot listen for p2p on /ip4/127.0.0.1/tcp/{port}", "in use",
                       "--p2p-listen")


# ---- genesis files ----------------------------------------------------------------------


def write_custom_genesis(folder: Path) -> tuple[Path, Path, Account, Account]:
    """A chain-4242 genesis funding a fresh account, with one fresh validator (key on disk)."""
    validator, funded = Account.create(), Account.create()
    genesis = folder / "genesis.json"
    genesis.write_text(json.dumps({
        "config": {"chainId": CUSTOM_CHAIN_ID},
        "gasLimit": hex(30_000_000),
        "baseFeePerGas": hex(10**9),
        "alloc": {funded.address: {"balance": hex(CUSTOM_BALANCE)}},
        "validators": [validator.address],
    }))
    key_file = folder / "validator.key"
    key_file.write_text("0x" + bytes(validator.key).hex() + "\n")
    return genesis, key_file, validator, funded


BAD_GENESIS_TEXTS = {
    "not-json": ("this is not json", ["genesis", "not valid JSON"]),
    "no-validators": ('{"config": {"chainId": 4242}, "alloc": {}}', ["validators: required"]),
    "empty-validators": ('{"config": {"chainId": 4242}, "validators": []}', ["validators: required"]),
    "bad-validator": ('{"config": {"chainId": 4242}, "validators": ["0x1234"]}', ["validators[0]"]),
    "no-chain-id": ('{"config": {}, "validators": ["0x' + "11" * 20 + '"]}', ["config.chainId: required"]),
    "not-an-object": ("[1, 2]", ["expected a JSON object"]),
}


@pytest.fixture(scope="module")
def genesis_failures(tmp_path_factory):
    """Every failing start with a genesis file, launched at once (each imports py-evm, ~1 s)."""
    folder = tmp_path_factory.mktemp("genesis-failures")
    genesis, _key_file, _validator, _funded = write_custom_genesis(folder)
    stranger_key = folder / "stranger.key"
    stranger_key.write_text(bytes(Account.create().key).hex())
    short_key = folder / "short.key"
    short_key.write_text("0x1234")
    cases: dict[str, list[str]] = {}
    for name, (text, _fragments) in BAD_GENESIS_TEXTS.items():
        path = folder / f"{name}.json"
        path.write_text(text)
        cases[name] = ["--genesis", str(path)]
    cases["missing-file"] = ["--genesis", str(folder / "absent.json")]
    cases["no-validator-key"] = ["--genesis", str(genesis)]
    cases["stranger-key"] = ["--genesis", str(genesis), "--validator-key", str(stranger_key)]
    cases["short-key"] = ["--genesis", str(genesis), "--validator-key", str(short_key)]
    processes = {
        name: subprocess.Popen(
            [*LAMINAR, "node", "--datadir", str(folder / name), "--rpc", "127.0.0.1:0", *args],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name, args in cases.items()
    }
    results = {}
    try:
        for name, process in processes.items():
            stdout, stderr = process.communicate(timeout=CLI_TIMEOUT_S)
            results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


@pytest.mark.parametrize("name", list(BAD_GENESIS_TEXTS))
def test_bad_genesis_file(genesis_failures, name):
    assert_usage_error(genesis_failures[name], *BAD_GENESIS_TEXTS[name][1])


def test_missing_genesis_file(genesis_failures):
    assert_usage_error(genesis_failures["missing-file"], "cannot read genesis file")


def test_custom_genesis_without_validator_key(genesis_failures):
    assert_usage_error(genesis_failures["no-validator-key"], "--validator-key", "not the dev genesis")


def test_custom_genesis_with_a_key_outside_the_validator_set(genesis_failures):
    assert_usage_error(genesis_failures["stranger-key"], "not in the genesis validator set")
    assert_usage_error(genesis_failures["short-key"], "expected 32 bytes")


def test_custom_genesis_runs_its_own_chain(node_factory, tmp_path):
    genesis, key_file, validator, funded = write_custom_genesis(tmp_path)
    node = node_factory("--genesis", str(genesis), "--validator-key", str(key_file),
                        datadir=tmp_path / "custom")
    assert "Dev accounts" not in node.text()  # not the dev chain, no dev keys advertised
    assert rpc(node.url, "eth_chainId") == hex(CUSTOM_CHAIN_ID)
    assert rpc(node.url, "net_version") == str(CUSTOM_CHAIN_ID)
    assert rpc(node.url, "eth_getBalance", funded.address, "latest") == hex(CUSTOM_BALANCE)
    assert rpc(node.url, "laminar_validators") == [validator.address.lower()]

    # The funded account can transact on chain 4242; the validator signs the block.
    raw = funded.sign_transaction({
        "type": 2, "chainId": CUSTOM_CHAIN_ID, "nonce": 0, "to": validator.address, "value": 5,
        "gas": 21_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
    }).raw_transaction
    tx_hash = rpc(node.url, "eth_sendRawTransaction", "0x" + bytes(raw).hex())
    deadline = time.monotonic() + CLI_TIMEOUT_S
    while (receipt := rpc(node.url, "eth_getTransactionReceipt", tx_hash)) is None:  # live poll
        assert time.monotonic() < deadline, "not mined"
    assert receipt["status"] == "0x1"
    commit = rpc(node.url, "laminar_getCommit", receipt["blockNumber"])
    assert commit["signers"] == [validator.address.lower()]


def test_existing_dev_datadir_with_a_different_genesis(node_factory, tmp_path):
    datadir = tmp_path / "dev"
    dev = node_factory(datadir=datadir)
    head = rpc(dev.url, "eth_getBlockByNumber", "latest", False)["hash"]
    assert dev.stop() == 0
    genesis, key_file, _validator, _funded = write_custom_genesis(tmp_path)
    done = run_cli("--datadir", str(datadir), "--rpc", "127.0.0.1:0",
                   "--genesis", str(genesis), "--validator-key", str(key_file))
    assert_usage_error(done, "different genesis", str(datadir))
    # The refused start did not touch the chain: the dev node resumes it.
    again = node_factory(datadir=datadir)
    assert rpc(again.url, "eth_chainId") == hex(31337)
    assert rpc(again.url, "eth_getBlockByNumber", "latest", False)["hash"] == head
