"""The node's Docker image, built offline by docker/prepare-offline.sh, runs a dev chain.

Builds (or, when nothing changed, reuses) the base image, the wheels and the image with the
script CI uses, starts a container with the image's default command, waits for Docker's own
healthcheck (eth_blockNumber) to report healthy, then talks JSON-RPC to it over the
published port: chain id, one transfer signed with a dev key and mined. Skipped only when no
Docker engine answers. The first run on a machine takes minutes (debootstrap, wheels).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from conftest import DEV_KEYS, REPO_ROOT
from eth_account import Account
from web3 import Web3

IMAGE = "laminar:latest"
PREPARE = REPO_ROOT / "docker" / "prepare-offline.sh"
PREPARE_TIMEOUT_S = 30 * 60
HEALTHY_TIMEOUT_S = 120
DEV_CHAIN_ID = 31337
RECIPIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def _docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


def _docker_answers() -> bool:
    try:
        return _docker("info", timeout=60, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [
    pytest.mark.slow,
    pytest.mark.docker,
    # the first test builds the image (module fixture): minutes on a machine's first run
    pytest.mark.timeout(PREPARE_TIMEOUT_S + 600),
    pytest.mark.skipif(not _docker_answers(), reason="no Docker engine answers (`docker info` failed)"),
]


@pytest.fixture(scope="module")
def image() -> str:
    result = subprocess.run(
        [str(PREPARE)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=PREPARE_TIMEOUT_S
    )
    assert result.returncode == 0, (
        f"docker/prepare-offline.sh failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    )
    return IMAGE


def test_image_config(image):
    config = json.loads(_docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] == "laminar"
    assert config["Entrypoint"] == ["laminar"]
    assert config["Cmd"] == ["node", "--datadir", "/data", "--rpc", "0.0.0.0:8545"]
    assert set(config["ExposedPorts"]) == {"8545/tcp", "30303/tcp"}
    assert "/data" in config["Volumes"]
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert _docker("run", "--rm", "--network=none", "--entrypoint", "id", image, "-u").stdout.strip() == "10001"


def test_container_serves_dev_chain(image):
    name = f"laminar-test-{uuid.uuid4().hex[:12]}"
    try:
        # a port Docker picks among the free ones, on loopback only
        _docker("run", "-d", "--rm", "--name", name, "-p", "127.0.0.1::8545", image)
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        status = ""
        while time.monotonic() < deadline:
            status = _docker(
                "inspect", "--format", "{{.State.Health.Status}}", name, check=False
            ).stdout.strip()
            if status in ("healthy", "unhealthy", ""):   # "": the container is gone
                break
            time.sleep(1)
        logs = _docker("logs", name, check=False)
        assert status == "healthy", f"container health {status!r}; logs:\n{logs.stdout}{logs.stderr}"

        host_port = _docker("port", name, "8545/tcp").stdout.split()[0]   # 127.0.0.1:NNNNN
        w3 = Web3(Web3.HTTPProvider(f"http://{host_port}", request_kwargs={"timeout": 30}))
        assert w3.eth.chain_id == DEV_CHAIN_ID

        sender = Account.from_key(DEV_KEYS[0])
        before = w3.eth.get_balance(RECIPIENT)
        tx = {
            "to": RECIPIENT, "value": 10**18, "gas": 21000,
            "maxFeePerGas": 3 * 10**9, "maxPriorityFeePerGas": 10**9,
            "nonce": w3.eth.get_transaction_count(sender.address, "pending"), "chainId": DEV_CHAIN_ID,
        }
        tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.2)
        assert receipt["status"] == 1
        assert receipt["blockNumber"] >= 1
        assert w3.eth.get_balance(RECIPIENT) == before + 10**18
    finally:
        _docker("rm", "-f", name, check=False)
