"""Node configuration: defaults, an optional TOML file, and command-line overrides.

Precedence: command line > config file > defaults. Unknown keys and bad values are
errors that name the key, so a typo never silently falls back to a default.

Example `laminar.toml`:

    datadir = "/var/lib/laminar"
    genesis = "genesis.json"          # absent: the dev genesis
    validator_key = "validator.key"   # absent: the dev validator key (dev genesis only)

    [rpc]
    address = "127.0.0.1:8545"
    gas_cap = 50000000
    logs_block_range = 10000

    [consensus]
    block_time = 1.0
    timeout_propose = 3.0             # BFT (several validators) only; see docs/consensus.md

    [execution]
    executor = "bal"                  # or "blockstm", "sequential"; workers = N (default: CPUs)
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from consensus.timers import TimeoutConfig
from node.rpc.server import RpcServerConfig

DEFAULT_RPC_HOST = "127.0.0.1"
DEFAULT_RPC_PORT = 8545
MAX_PORT = 65535
DEFAULT_DATADIR = Path.home() / ".laminar"


class ConfigError(ValueError):
    """Bad configuration; the message names the setting and says what is expected."""


@dataclass
class RpcSettings:
    """[rpc]: the server's own settings (defaults: `RpcServerConfig`'s) and the methods'."""

    host: str = DEFAULT_RPC_HOST
    port: int = DEFAULT_RPC_PORT
    max_body_bytes: int = RpcServerConfig.max_body_bytes
    max_batch: int = RpcServerConfig.max_batch
    gas_cap: int = 50_000_000  # eth_call / eth_estimateGas gas ceiling, as geth's RPCGasCap
    logs_block_range: int = 10_000  # eth_getLogs: most blocks one query may span
    logs_max_results: int = 10_000
    max_filters: int = 1_000
    filter_timeout_s: float = 300.0  # filters not polled for this long are removed

    def server_config(self) -> RpcServerConfig:
        return RpcServerConfig(
            host=self.host, port=self.port, max_body_bytes=self.max_body_bytes,
            max_batch=self.max_batch,
        )


@dataclass
class ConsensusSettings:
    block_time: float = 1.0
    max_block_txs: Optional[int] = None
    # BFT only (genesis with more than one validator): Tendermint timeouts, seconds,
    # base + delta * round (defaults: consensus/timers.py's TimeoutConfig);
    # timeout_propose must exceed block_time.
    timeout_propose: float = TimeoutConfig.propose
    timeout_propose_delta: float = TimeoutConfig.propose_delta
    timeout_prevote: float = TimeoutConfig.prevote
    timeout_prevote_delta: float = TimeoutConfig.prevote_delta
    timeout_precommit: float = TimeoutConfig.precommit
    timeout_precommit_delta: float = TimeoutConfig.precommit_delta
    # Re-send this height's consensus messages when nothing progressed for this long.
    rebroadcast_interval: float = 1.0
    # How a node behind the chain catches up on certified blocks: "execute" runs every
    # block; "bal" applies each block's access list without executing it (the commit
    # certificate vouches for the header, which commits to the list, the receipts and
    # the state root the list must reproduce). See docs/bal.md.
    sync_mode: str = "execute"

    def timeouts(self) -> TimeoutConfig:
        return TimeoutConfig(
            propose=self.timeout_propose, propose_delta=self.timeout_propose_delta,
            prevote=self.timeout_prevote, prevote_delta=self.timeout_prevote_delta,
            precommit=self.timeout_precommit, precommit_delta=self.timeout_precommit_delta,
        )


@dataclass
class ExecutionSettings:
    # "bal" (default): propose with Block-STM, import blocks from their access lists;
    # "blockstm": re-discover every block's accesses; "sequential": the reference.
    executor: str = "bal"
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)


@dataclass
class MempoolSettings:
    """[mempool]: the pool's policy; `node.mempool.MempoolConfig` takes its defaults."""

    max_pool_size: int = 5_000
    max_per_sender: int = 64
    max_tx_bytes: int = 128 * 1024  # geth's txMaxSize
    min_priority_fee: int = 0  # wei: max_priority_fee_per_gas (legacy: gas price) below is refused
    # Processes that check batches of eth_sendRawTransaction (decode, signature, sender)
    # off the event loop (node/admission.py), started on the first such batch; 0: inline.
    admission_workers: int = 1


@dataclass
class P2PSettings:
    # libp2p listen multiaddr, e.g. "/ip4/127.0.0.1/tcp/30303". None: no networking
    # (a single-validator chain needs none).
    listen: Optional[str] = None
    # Peers to dial and keep connected: multiaddrs ending in /p2p/<peer id>.
    bootnodes: list[str] = field(default_factory=list)


@dataclass
class NodeConfig:
    datadir: Path = DEFAULT_DATADIR
    genesis: Optional[Path] = None
    validator_key: Optional[Path] = None
    log_level: str = "info"
    rpc: RpcSettings = field(default_factory=RpcSettings)
    consensus: ConsensusSettings = field(default_factory=ConsensusSettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    mempool: MempoolSettings = field(default_factory=MempoolSettings)
    p2p: P2PSettings = field(default_factory=P2PSettings)

    @property
    def chaindata(self) -> Path:
        return self.datadir / "chaindata"


def parse_host_port(text: str, what: str = "--rpc") -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{what}: expected HOST:PORT, got {text!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what}: port {port_text!r} is not a number") from None
    if not 0 <= port <= MAX_PORT:
        raise ConfigError(f"{what}: port {port} is out of range 0-{MAX_PORT}")
    return host.strip("[]"), port


PATH_SETTINGS = ("datadir", "genesis", "validator_key")
OPTIONAL_INT_SETTINGS = ("max_block_txs",)
SYNC_MODES = ("execute", "bal")
OPTIONAL_STR_SETTINGS = ("listen",)


def _coerce(key: str, name: str, value: Any, current: Any) -> Any:
    """Check a config-file value against the type of the setting's default."""
    if name in PATH_SETTINGS:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a path string")
        return Path(value).expanduser()
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false")
        return value
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number")
        return float(value)
    if isinstance(current, int) or name in OPTIONAL_INT_SETTINGS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer")
        return value
    if isinstance(current, str) or name in OPTIONAL_STR_SETTINGS:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string")
        return value
    if isinstance(current, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings")
        return list(value)
    raise ConfigError(f"{key}: cannot be set from a config file")


def _apply(section: str, target: Any, values: dict[str, Any]) -> None:
    known = {f.name for f in fields(target)}
    for name, value in values.items():
        if name not in known:
            where = f"[{section}]" if section else "top level"
            raise ConfigError(f"unknown setting {name!r} at {where}; known: {sorted(known)}")
        current = getattr(target, name)
        if hasattr(current, "__dataclass_fields__"):
            if not isinstance(value, dict):
                raise ConfigError(f"[{name}] must be a table")
            _apply(name, current, value)
        else:
            key = f"{section}.{name}" if section else name
            setattr(target, name, _coerce(key, name, value, current))


def load_config_file(path: Path, config: NodeConfig) -> None:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    rpc = data.get("rpc")
    if isinstance(rpc, dict) and "address" in rpc:
        if not isinstance(rpc["address"], str):
            raise ConfigError("rpc.address: expected \"HOST:PORT\"")
        config.rpc.host, config.rpc.port = parse_host_port(rpc.pop("address"), "rpc.address")
    _apply("", config, data)
    base = path.parent
    for name in ("genesis", "validator_key"):
        value = getattr(config, name)
        if value is not None and not value.is_absolute():
            setattr(config, name, base / value)


def validate(config: NodeConfig) -> None:
    from execution.registry import EXECUTOR_NAMES

    if config.execution.executor not in EXECUTOR_NAMES:
        raise ConfigError(
            f"execution.executor: {config.execution.executor!r} is not one of "
            f"{list(EXECUTOR_NAMES)}"
        )
    if config.execution.workers < 1:
        raise ConfigError("execution.workers: must be at least 1")
    if not 0 < config.consensus.block_time < math.inf:  # also refuses nan and inf
        raise ConfigError("consensus.block_time: must be a positive number of seconds")
    for name in (
        "timeout_propose", "timeout_propose_delta", "timeout_prevote", "timeout_prevote_delta",
        "timeout_precommit", "timeout_precommit_delta", "rebroadcast_interval",
    ):
        if not 0 <= getattr(config.consensus, name) < math.inf:
            raise ConfigError(f"consensus.{name}: must be a number of seconds >= 0")
    if config.consensus.rebroadcast_interval <= 0:
        raise ConfigError("consensus.rebroadcast_interval: must be positive")
    if config.consensus.sync_mode not in SYNC_MODES:
        raise ConfigError(
            f"consensus.sync_mode: {config.consensus.sync_mode!r} is not one of {list(SYNC_MODES)}"
        )
    if not 0 <= config.rpc.port <= MAX_PORT:
        raise ConfigError(f"rpc.port: {config.rpc.port} is out of range 0-{MAX_PORT}")
    if config.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("log_level: one of debug, info, warning, error")
    for name in ("max_body_bytes", "max_batch", "gas_cap", "logs_block_range", "max_filters"):
        if getattr(config.rpc, name) < 1:
            raise ConfigError(f"rpc.{name}: must be at least 1")
    _validate_p2p(config)
    if config.mempool.max_pool_size < 1:
        raise ConfigError("mempool.max_pool_size: must be at least 1")
    if config.mempool.admission_workers < 0:
        raise ConfigError("mempool.admission_workers: must be 0 (check inline) or more")


def _validate_p2p(config: NodeConfig) -> None:
    """Multiaddr syntax is checked here so a typo fails before anything starts."""
    if config.p2p.listen is None:
        if config.p2p.bootnodes:
            raise ConfigError("p2p.bootnodes: given without p2p.listen (--p2p-listen)")
        return
    try:
        make_p2p_config(config)
    except ValueError as exc:
        raise ConfigError(f"p2p: {exc}") from None


def make_p2p_config(config: NodeConfig):
    """The p2p stage's own config (its key file lives in the data dir)."""
    from p2p.config import P2PConfig

    assert config.p2p.listen is not None  # callers make one only when p2p.listen is set
    return P2PConfig(
        data_dir=config.datadir,
        listen_addr=config.p2p.listen,
        bootstrap_peers=tuple(config.p2p.bootnodes),
    )
