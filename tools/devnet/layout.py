"""`laminar devnet init`: the files of a local multi-validator BFT network.

    laminar devnet init --validators 4 --out devnet [--seed S] [--base-rpc-port 8545]
                        [--base-p2p-port 30303] [--host 127.0.0.1]

writes

    devnet/genesis.json          chain id 31337, the dev mnemonic's ten accounts funded,
                                 "validators": the N validator addresses
    devnet/devnet.json           summary: per node its validator address, peer id, RPC URL,
                                 p2p multiaddr (for tools and tests)
    devnet/node{i}/config.toml   datadir = devnet/node{i}, genesis, validator_key, rpc
                                 address host:base_rpc+i, p2p listen host:base_p2p+i,
                                 bootnodes = every other validator's multiaddr
    devnet/node{i}/validator.key secp256k1 key (hex)
    devnet/node{i}/p2p_key       libp2p Ed25519 identity (the node's data dir holds it)

Keys are derived from the seed (keccak("laminar/devnet/<kind>/" || seed || i)), so a
given seed always gives the same addresses and peer ids: docs and tests can name them.
These keys are public knowledge for anyone with the seed: a devnet is for testing only.
Run node i with `laminar node --config devnet/node{i}/config.toml`, or all of them with
`laminar devnet --dir devnet` (tools/devnet/runner.py).

One host per node (containers, docker-compose.yml): `--hosts 10.0.0.10,10.0.0.11,...`
names how the others reach node i (an IPv4 address gives /ip4, a name /dns4),
`--listen-host 0.0.0.0` what every node binds, `--same-ports` puts every node on the
base ports; `--if-absent` makes a rerun on an existing devnet a no-op.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from eth_hash.auto import keccak
from eth_keys import keys

from node import genesis as genesis_module
from storage.files import hex_key_file_content, write_secret_file

DEFAULT_SEED = "laminar-devnet"
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class DevnetError(ValueError):
    pass


@dataclass(frozen=True)
class DevnetNode:
    index: int
    validator_key: bytes
    address: bytes
    peer_id: str
    rpc: str  # host:port
    p2p: str  # listen multiaddr
    # How the others reach this node when it differs from where it listens (containers:
    # listen on 0.0.0.0, dial its fixed IP or hostname). None: the listen address.
    advertise_host: Optional[str] = None

    @property
    def multiaddr(self) -> str:
        if self.advertise_host is None:
            return f"{self.p2p}/p2p/{self.peer_id}"
        port = self.p2p.rsplit("/", 1)[1]
        return f"{_host_multiaddr(self.advertise_host)}/tcp/{port}/p2p/{self.peer_id}"

    @property
    def rpc_url(self) -> str:
        """The RPC URL others use (the advertised host when the node binds 0.0.0.0)."""
        port = self.rpc.rsplit(":", 1)[1]
        return f"http://{self.advertise_host or self.rpc.rsplit(':', 1)[0]}:{port}"


def _host_multiaddr(host: str) -> str:
    """/ip4/A.B.C.D for an IPv4 address, else /dns4/NAME."""
    import ipaddress

    try:
        return f"/ip4/{ipaddress.IPv4Address(host)}"
    except ValueError:
        return f"/dns4/{host}"


def _derive(kind: str, seed: str, index: int) -> bytes:
    return keccak(f"laminar/devnet/{kind}/".encode() + seed.encode() + index.to_bytes(4, "big"))


def validator_key(seed: str, index: int) -> bytes:
    key = _derive("validator", seed, index)
    counter = 0
    while not 0 < int.from_bytes(key, "big") < SECP256K1_ORDER:  # astronomically rare
        counter += 1
        key = keccak(key + counter.to_bytes(4, "big"))
    return key


def p2p_key_pair(seed: str, index: int):
    from libp2p.crypto.ed25519 import create_new_key_pair

    return create_new_key_pair(_derive("p2p", seed, index))


def plan(
    validators: int, seed: str = DEFAULT_SEED, base_rpc_port: int = 8545,
    base_p2p_port: int = 30303, host: str = "127.0.0.1",
    hosts: Optional[list[str]] = None, listen_host: Optional[str] = None,
    same_ports: bool = False,
) -> list[DevnetNode]:
    """The nodes of a devnet. By default all on `host`, ports base+i. For one machine
    (or container) per node: `hosts` (node i's address, an IPv4 address or a DNS name),
    `listen_host` (what each binds, e.g. 0.0.0.0) and `same_ports` (every node on the
    base ports)."""
    from p2p.identity import peer_id_of

    if validators < 1:
        raise DevnetError("--validators: at least 1")
    span = 1 if same_ports else validators
    for name, base in (("--base-rpc-port", base_rpc_port), ("--base-p2p-port", base_p2p_port)):
        if not 0 < base or base + span - 1 > 65535:
            raise DevnetError(f"{name}: ports {base}..{base + span - 1} out of range")
    if hosts is not None and len(hosts) != validators:
        raise DevnetError(f"--hosts: {len(hosts)} hosts given for {validators} validators")
    if hosts is not None and any(not h or "/" in h or ":" in h for h in hosts):
        raise DevnetError("--hosts: comma-separated IPv4 addresses or host names")
    nodes = []
    for i in range(validators):
        key = validator_key(seed, i)
        node_host = hosts[i] if hosts is not None else host
        bind = listen_host or node_host
        offset = 0 if same_ports else i
        nodes.append(DevnetNode(
            index=i,
            validator_key=key,
            address=keys.PrivateKey(key).public_key.to_canonical_address(),
            peer_id=str(peer_id_of(p2p_key_pair(seed, i))),
            rpc=f"{bind}:{base_rpc_port + offset}",
            p2p=f"{_host_multiaddr(bind)}/tcp/{base_p2p_port + offset}",
            advertise_host=node_host if bind != node_host else None,
        ))
    return nodes


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def render_config(
    node: DevnetNode, nodes: list[DevnetNode], datadir: Path, block_time: float,
    timeouts: dict[str, float], max_block_txs: Optional[int], mempool: dict[str, int],
) -> str:
    bootnodes = [other.multiaddr for other in nodes if other.index != node.index]
    lines = [
        f"# Laminar devnet validator {node.index} (0x{node.address.hex()}), peer {node.peer_id}",
        f"datadir = {_toml_str(str(datadir))}",
        'genesis = "../genesis.json"',
        'validator_key = "validator.key"',
        "",
        "[rpc]",
        f"address = {_toml_str(node.rpc)}",
        "",
        "[consensus]",
        f"block_time = {block_time}",
    ]
    lines += [f"{name} = {value}" for name, value in timeouts.items()]
    if max_block_txs is not None:
        lines.append(f"max_block_txs = {max_block_txs}")
    if mempool:
        lines += ["", "[mempool]"] + [f"{name} = {value}" for name, value in mempool.items()]
    lines += [
        "",
        "[p2p]",
        f"listen = {_toml_str(node.p2p)}",
        "bootnodes = [" + ", ".join(_toml_str(b) for b in bootnodes) + "]",
        "",
    ]
    return "\n".join(lines)


def _write_key(path: Path, content: bytes) -> None:
    """A key file of this devnet; one left by an interrupted init must be the same key."""
    if not write_secret_file(path, content) and path.read_bytes() != content:
        raise DevnetError(f"{path} holds another key (a different --seed?): remove it first")


def init(
    out: Path, validators: int, *, seed: str = DEFAULT_SEED, base_rpc_port: int = 8545,
    base_p2p_port: int = 30303, host: str = "127.0.0.1", block_time: float = 1.0,
    timeouts: Optional[dict[str, float]] = None, max_block_txs: Optional[int] = None,
    mempool: Optional[dict[str, int]] = None, hosts: Optional[list[str]] = None,
    listen_host: Optional[str] = None, same_ports: bool = False, gas_limit: Optional[int] = None,
) -> list[DevnetNode]:
    out = Path(out).resolve()
    if (out / "genesis.json").exists():
        raise DevnetError(f"{out} already holds a devnet (genesis.json); pick another --out")
    nodes = plan(
        validators, seed, base_rpc_port, base_p2p_port, host, hosts=hosts,
        listen_host=listen_host, same_ports=same_ports,
    )
    genesis = genesis_module.dev_genesis(tuple(n.address for n in nodes))
    if gas_limit is not None:
        if gas_limit < genesis_module.MIN_GAS_LIMIT:
            raise DevnetError(f"--gas-limit: at least {genesis_module.MIN_GAS_LIMIT} (one transfer)")
        genesis = dataclasses.replace(genesis, gas_limit=gas_limit)
    out.mkdir(parents=True, exist_ok=True)
    for node in nodes:
        node_dir = out / f"node{node.index}"
        node_dir.mkdir(parents=True, exist_ok=True)
        _write_key(node_dir / "validator.key", hex_key_file_content(node.validator_key))
        _write_key(node_dir / "p2p_key", p2p_key_pair(seed, node.index).private_key.serialize())
        (node_dir / "config.toml").write_text(render_config(
            node, nodes, node_dir, block_time, dict(timeouts or {}), max_block_txs,
            dict(mempool or {}),
        ))
    (out / "genesis.json").write_text(json.dumps(genesis.to_json(), indent=2) + "\n")
    summary = {
        "chainId": genesis.chain_id,
        "seed": seed,
        "nodes": [
            {
                "index": n.index,
                "address": "0x" + n.address.hex(),
                "peerId": n.peer_id,
                "rpc": n.rpc_url,
                "p2p": n.multiaddr,
                "config": str(out / f"node{n.index}" / "config.toml"),
            }
            for n in nodes
        ],
    }
    (out / "devnet.json").write_text(json.dumps(summary, indent=2) + "\n")
    return nodes
