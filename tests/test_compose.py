"""docker-compose.yml: four validators in containers, as a user gets them with `docker compose up`.

One compose project per module run (a unique `-p` name, free host ports and a free /24 chosen
through the file's LAMINAR_RPC_PORT_i / LAMINAR_SUBNET variables), brought up once after
docker/prepare-offline.sh built the image; the tests then run in file order against it:

1. all four containers report healthy (the image's HEALTHCHECK) and reach height 5;
2. web3.py sends transfers through validator 0 and reads them on validator 3;
3. `docker kill` of one validator: the other three keep committing; `start` it and it syncs;
4. `restart` of a validator (compose): it comes back and syncs;
5. `docker network disconnect` of two: the other two halt (no quorum) without forking,
   then `network connect` (same fixed IPs) and all four commit again with equal hashes.

`down -v` at the end, always. Uses `docker compose` when the engine has the plugin, else
`docker-compose` (v1). Skipped only when no Docker engine answers.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import subprocess
import time
import uuid

import pytest
import requests
from conftest import DEV_KEYS, REPO_ROOT, free_port_block
from eth_account import Account
from web3 import Web3

PREPARE = REPO_ROOT / "docker" / "prepare-offline.sh"
PREPARE_TIMEOUT_S = 30 * 60
DEADLINE_S = 120
CHAIN_ID = 31337
VALIDATORS = [f"validator{i}" for i in range(4)]


def _run(args: list[str], timeout: float = 180, check: bool = True, env=None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def _docker_answers() -> bool:
    try:
        return _run(["docker", "info"], timeout=60, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [
    pytest.mark.slow,
    pytest.mark.docker,
    pytest.mark.timeout(PREPARE_TIMEOUT_S + 900),
    pytest.mark.skipif(not _docker_answers(), reason="no Docker engine answers (`docker info` failed)"),
]


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin) when present, else `docker-compose` (v1)."""
    if _run(["docker", "compose", "version"], check=False, timeout=30).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed")


def free_subnet_prefix() -> str:
    """A 10.213.X prefix whose /24 overlaps no Docker network on this engine."""
    used = []
    ids = _run(["docker", "network", "ls", "-q"]).stdout.split()
    if ids:
        for net in json.loads(_run(["docker", "network", "inspect", *ids]).stdout):
            for cfg in (net.get("IPAM") or {}).get("Config") or []:
                if cfg.get("Subnet"):
                    try:
                        used.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
                    except ValueError:
                        pass
    for _ in range(200):
        prefix = f"10.213.{random.randrange(100, 250)}"
        candidate = ipaddress.ip_network(f"{prefix}.0/24")
        if not any(candidate.overlaps(u) for u in used if u.version == 4):
            return prefix
    raise RuntimeError("no free 10.213.x.0/24")


class Cluster:
    def __init__(self) -> None:
        self.project = f"laminartest{uuid.uuid4().hex[:10]}"
        self.compose = compose_command()
        base = free_port_block(4)
        self.ports = [base + i for i in range(4)]
        self.subnet = free_subnet_prefix()
        self.env = {
            **os.environ,
            "LAMINAR_SUBNET": self.subnet,
            **{f"LAMINAR_RPC_PORT_{i}": str(p) for i, p in enumerate(self.ports)},
        }

    def run(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
        return _run([*self.compose, "-p", self.project, "-f", str(REPO_ROOT / "docker-compose.yml"), *args],
                    timeout=timeout, check=check, env=self.env)

    def container(self, service: str) -> str:
        cid = self.run("ps", "-q", service).stdout.strip()
        assert cid, f"no container for {service}"
        return cid

    @property
    def network(self) -> str:
        return f"{self.project}_laminar"

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def rpc(self, i: int, method: str, *params, timeout: float = 5):
        reply = requests.post(self.url(i), json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                              timeout=timeout).json()
        assert "error" not in reply, (i, method, reply)
        return reply["result"]

    def height(self, i: int) -> int:
        """Validator i's height, or -1 when its RPC does not answer."""
        try:
            return int(self.rpc(i, "eth_blockNumber"), 16)
        except (requests.RequestException, ValueError):
            return -1

    def health(self, service: str) -> str:
        return _run(["docker", "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                     self.container(service)], check=False).stdout.strip()

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--tail", "40", check=False, timeout=60).stdout


def wait_until(predicate, what: str, cluster: Cluster, timeout: float = DEADLINE_S, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            heights = [cluster.height(i) for i in range(4)]
            raise AssertionError(f"timed out waiting for {what}; heights {heights}\n{cluster.logs()}")
        time.sleep(interval)


def wait_heights(cluster: Cluster, indices, target: int, timeout: float = DEADLINE_S) -> None:
    wait_until(lambda: all(cluster.height(i) >= target for i in indices),
               f"height {target} on validators {list(indices)}", cluster, timeout)


@pytest.fixture(scope="module")
def cluster():
    started = time.monotonic()
    result = subprocess.run([str(PREPARE)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=PREPARE_TIMEOUT_S)
    assert result.returncode == 0, f"prepare-offline.sh failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    print(f"\nprepare-offline.sh: {time.monotonic() - started:.0f}s")
    c = Cluster()
    try:
        c.run("up", "-d", timeout=300)
        yield c
    finally:
        c.run("down", "-v", "--remove-orphans", "-t", "10", timeout=300, check=False)
        print(f"compose stage: {time.monotonic() - started:.0f}s")


def test_all_healthy_and_height_5(cluster):
    wait_until(lambda: all(cluster.health(s) == "healthy" for s in VALIDATORS), "all four healthy", cluster)
    wait_heights(cluster, range(4), 5)
    assert int(cluster.rpc(0, "eth_chainId"), 16) == CHAIN_ID
    # the init service exited 0 and wrote one devnet: the four report the same validator set
    sets = {tuple(cluster.rpc(i, "laminar_validators")) for i in range(4)}
    assert len(sets) == 1 and len(next(iter(sets))) == 4
    state = cluster.rpc(0, "laminar_consensusState")
    assert state["validators"] == 4 and state["peers"] == 3


def test_transactions_via_validator0_seen_on_validator3(cluster):
    w0 = Web3(Web3.HTTPProvider(cluster.url(0), request_kwargs={"timeout": 30}))
    w3 = Web3(Web3.HTTPProvider(cluster.url(3), request_kwargs={"timeout": 30}))
    sender = Account.from_key(DEV_KEYS[1])
    recipient = Account.create().address
    nonce = w0.eth.get_transaction_count(sender.address, "pending")
    hashes = []
    for k in range(3):
        tx = {"to": recipient, "value": 10**15 * (k + 1), "gas": 21000, "maxFeePerGas": 3 * 10**9,
              "maxPriorityFeePerGas": 10**9, "nonce": nonce + k, "chainId": CHAIN_ID}
        hashes.append(w0.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction))
    for h in hashes:
        receipt = w3.eth.wait_for_transaction_receipt(h, timeout=90, poll_latency=0.3)
        assert receipt["status"] == 1
    wait_until(lambda: w3.eth.get_balance(recipient) == 6 * 10**15, "balance on validator 3", cluster)
    block = w3.eth.get_block(receipt["blockNumber"])
    assert block["hash"] == w0.eth.get_block(receipt["blockNumber"])["hash"]


def test_killed_validator_chain_goes_on_then_it_syncs(cluster):
    _run(["docker", "kill", cluster.container("validator3")])
    wait_until(lambda: cluster.height(3) == -1, "validator 3 down", cluster, timeout=30)
    h = max(cluster.height(i) for i in range(3))
    wait_heights(cluster, range(3), h + 3)  # three of four are a quorum
    cluster.run("start", "validator3")
    target = max(cluster.height(i) for i in range(3)) + 1
    wait_heights(cluster, [3], target)


def test_restarted_validator_syncs(cluster):
    cluster.run("restart", "-t", "20", "validator2", timeout=120)
    target = max(cluster.height(i) for i in (0, 1, 3)) + 2
    wait_heights(cluster, range(4), target)
    wait_until(lambda: cluster.health("validator2") == "healthy", "validator 2 healthy", cluster)


def _hashes(cluster: Cluster, i: int, upto: int) -> list[str]:
    body = [{"jsonrpc": "2.0", "id": n, "method": "eth_getBlockByNumber", "params": [hex(n), False]}
            for n in range(1, upto + 1)]
    replies = sorted(requests.post(cluster.url(i), json=body, timeout=30).json(), key=lambda r: r["id"])
    return [r["result"]["hash"] for r in replies]


def test_partition_halts_without_fork_then_heals(cluster):
    wait_heights(cluster, range(4), max(cluster.height(i) for i in range(4)))
    ips = {s: f"{cluster.subnet}.{10 + i}" for i, s in enumerate(VALIDATORS)}
    cut = ["validator2", "validator3"]
    for service in cut:
        _run(["docker", "network", "disconnect", cluster.network, cluster.container(service)])
    try:
        time.sleep(4)  # a height in flight may still complete
        before = [cluster.height(i) for i in (0, 1)]
        time.sleep(10)  # ~8 block times
        after = [cluster.height(i) for i in (0, 1)]
        assert min(before) >= 0, "validators 0 and 1 stopped answering"
        assert max(after) <= max(before) + 1, f"two of four kept committing: {before} -> {after}"
    finally:
        for service in cut:
            _run(["docker", "network", "connect", "--ip", ips[service], cluster.network,
                  cluster.container(service)], check=False)
    top = max(after)
    wait_heights(cluster, range(4), top + 3, timeout=180)
    upto = min(cluster.height(i) for i in range(4))
    chains = [_hashes(cluster, i, upto) for i in range(4)]
    assert all(chain == chains[0] for chain in chains), "validators disagree on a block hash: a fork"
