"""Wiring of one node: storage, chain, mempool, consensus engine and JSON-RPC server.

Data flows one way: RPC feeds the mempool, consensus orders blocks from it, the chain
executes and persists them, and commit listeners tell the mempool, filters and
subscriptions what became final.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import trio
from eth.abc import BlockAPI, ReceiptAPI
from eth_keys import keys

from consensus.bft import BFTEngine
from consensus.engine import ConsensusEngine, OutboundContext, OutboundHook
from consensus.reactor import ReactorSettings
from consensus.single import SingleValidatorEngine
from consensus.validators import ValidatorSet
from execution.gc_policy import FreezeOnCommit
from execution.registry import close_executor, make_executor
from node import genesis as genesis_module
from node.admission import AdmissionWorkers
from node.chain import Chain
from node.config import NodeConfig, make_p2p_config
from node.genesis import Genesis, GenesisError, load_genesis_file, parse_genesis
from node.mempool import InvalidTransactionError, Mempool, MempoolConfig, MempoolError, PooledTx
from node.metrics import NodeMetrics, peer_counter
from node.rpc import encoding
from node.rpc.debug_api import DebugApi, register_debug_api
from node.rpc.dev_api import DevApi, register_dev_api
from node.rpc.eth_api import EthApi, register_eth_api, register_subscriptions
from node.rpc.extras import register_rpc_eth_extras
from node.rpc.filters import FilterManager
from node.rpc.server import Methods, serve_rpc
from node.rpc.state_api import register_state_api
from node.rpc.subscriptions import SubscriptionHub
from storage.chain_store import CHAIN_CONFIG_KEY
from storage.files import hex_key_file_content, write_secret_file
from storage.leveldb import LevelDB

if TYPE_CHECKING:
    # trio.TaskStatus is hidden from mypy by trio-typing's stubs: see consensus/engine.py.
    from trio_typing import TaskStatus

    from p2p.gossip import Verdict
    from p2p.service import P2PService
# p2p (and libp2p, half a second to import) only when networking is on: imported where used.

log = logging.getLogger(__name__)

# How long a thread that holds the GIL may keep it while another waits (CPython: 5 ms).
# The event loop answers JSON-RPC while a block executes in a worker thread (the Block-STM
# coordinator, the proposal's execution); each answer takes the GIL back several times
# (socket reads and writes release it). With 1 ms, eth_blockNumber on a dev node under
# full load answered at p90 11 ms and p99 24-39 ms, against 18-23 and 55-60 ms with 5 ms,
# at the same committed tx/s (2 vCPUs, 2026-12-06, docs/performance.md).
GIL_SWITCH_INTERVAL_S = 0.001

VALIDATOR_KEY_FILE = "validator.key"
PRIVATE_KEY_BYTES = 32


class NodeSetupError(RuntimeError):
    """The node cannot start as configured; the message says what to change."""


def read_key_file(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise NodeSetupError(f"cannot read validator key {path}: {exc.strerror}") from None
    body = text[2:] if text.startswith("0x") else text
    try:
        key = bytes.fromhex(body)
    except ValueError:
        raise NodeSetupError(f"validator key {path}: expected 32 bytes of hex") from None
    if len(key) != PRIVATE_KEY_BYTES:
        raise NodeSetupError(f"validator key {path}: expected 32 bytes, got {len(key)}")
    return key


def resolve_genesis(config: NodeConfig, db: LevelDB) -> tuple[Genesis, bool]:
    """The genesis to run: the stored one on restart, else the file given, else the dev one.

    Returns (genesis, is_dev).
    """
    stored = db.get(CHAIN_CONFIG_KEY)
    given = load_genesis_file(config.genesis) if config.genesis else None
    if stored is not None:
        stored_genesis = parse_genesis(json.loads(stored))
        if given is not None and given != stored_genesis:
            raise NodeSetupError(
                f"the data dir {config.datadir} holds a chain from a different genesis than "
                f"{config.genesis}; use another --datadir, or drop --genesis to resume it"
            )
        dev_validator = keys.PrivateKey(genesis_module.dev_validator_key()).public_key
        is_dev = config.genesis is None and stored_genesis.validators == (
            dev_validator.to_canonical_address(),
        )
        return stored_genesis, is_dev
    if given is not None:
        return given, False
    dev_key = keys.PrivateKey(genesis_module.dev_validator_key())
    return genesis_module.dev_genesis((dev_key.public_key.to_canonical_address(),)), True


def resolve_validator_key(config: NodeConfig, genesis: Genesis, is_dev: bool) -> Optional[bytes]:
    """The validator key this node signs with, or None for an observer.

    A single-validator chain needs its validator's key (the dev chain creates it). On a
    chain with several validators, a node without a key, or whose key is not in the
    validator set, runs as an observer: it follows commits and syncs, but never votes.
    """
    key_path = config.validator_key or config.datadir / VALIDATOR_KEY_FILE
    single = len(genesis.validators) == 1
    if config.validator_key is None and not key_path.exists():
        if is_dev:
            write_secret_file(key_path, hex_key_file_content(genesis_module.dev_validator_key()))
        elif not single:
            log.warning("no validator key: running as an observer")
            return None
        else:
            raise NodeSetupError(
                "this chain's genesis is not the dev genesis: give the validator's key with "
                "--validator-key FILE (32 bytes of hex)"
            )
    key = read_key_file(key_path)
    address = keys.PrivateKey(key).public_key.to_canonical_address()
    if address not in genesis.validators:
        if single and config.p2p.listen is None:
            raise NodeSetupError(
                f"validator key {key_path} (address 0x{address.hex()}) is not in the genesis "
                "validator set (an observer needs networking: --p2p-listen)"
            )
        log.warning(
            "validator key %s (address 0x%s) is not in the genesis validator set: "
            "running as an observer", key_path, address.hex(),
        )
        return None
    return key


@dataclass
class NodeHooks:
    """Entry points for test harnesses (tests/harness_node.py); the shipped node sets
    none. Byzantine behaviour and network partitions live in the tests, not here."""

    # Makes the BFT reactor's outbound hook (consensus.engine.OutboundHook).
    consensus_outbound: Optional[Callable[[OutboundContext], OutboundHook]] = None
    # p2p peer filter: True drops a peer's gossip and keeps block sync away from it.
    peer_filter: Optional[Callable[[Any], bool]] = None
    # Extra JSON-RPC methods, given the running node's parts.
    rpc_methods: Optional[Callable[["Node"], dict[str, Callable[..., Any]]]] = None


def _consensus_port(p2p: P2PService):
    from node.consensus_port import P2PConsensusPort

    return P2PConsensusPort(p2p)


def make_engine(
    config: NodeConfig, genesis: Genesis, chain: Chain, mempool: Mempool,
    validator_key: Optional[bytes], p2p: Optional[P2PService], hooks: NodeHooks,
    is_dev: bool = False,
) -> tuple[ConsensusEngine, Optional[SingleValidatorEngine]]:
    """Single-validator engine for a one-validator genesis run by its validator; the BFT
    engine otherwise (several validators, or an observer), which needs networking.
    The second value is the dev chain's producer (the dev methods drive it), else None."""
    if len(genesis.validators) == 1 and validator_key is not None:
        single = SingleValidatorEngine(
            chain, mempool, validator_key, config.consensus.block_time,
            config.consensus.max_block_txs,
            network=_consensus_port(p2p) if p2p is not None else None,
        )
        return single, (single if is_dev else None)
    if p2p is None:
        raise NodeSetupError(
            f"the genesis names {len(genesis.validators)} validators: BFT consensus needs "
            "networking; give --p2p-listen (and --bootnode for the other validators)"
        )
    c = config.consensus
    if c.timeout_propose <= c.block_time:
        raise NodeSetupError(
            f"consensus.timeout_propose ({c.timeout_propose}s) must exceed consensus.block_time "
            f"({c.block_time}s): the proposer waits up to block_time for transactions"
        )
    bft = BFTEngine(
        chain=chain, mempool=mempool, network=_consensus_port(p2p),
        validators=ValidatorSet.from_genesis(genesis), private_key=validator_key,
        datadir=config.datadir,
        timeouts=c.timeouts(),
        settings=ReactorSettings(
            block_time=c.block_time, max_block_txs=c.max_block_txs,
            rebroadcast_interval=c.rebroadcast_interval, sync_mode=c.sync_mode,
        ),
        outbound=hooks.consensus_outbound,
    )
    return bft, None


@dataclass
class Node:
    """A running node's parts, for tests and tools that embed one."""

    config: NodeConfig
    chain: Chain
    mempool: Mempool
    engine: ConsensusEngine
    rpc_port: Optional[int] = None
    p2p: Optional[P2PService] = None  # when networking is on


def print_banner(node: Node, is_dev: bool) -> None:
    lines = [
        f"Laminar node, chain id {node.chain.chain_id}, head #{node.chain.head.block_number}",
        f"data dir: {node.config.datadir}",
        f"consensus: {node.engine.describe()}",
        f"execution: {node.config.execution.executor}"
        + (f" ({node.config.execution.workers} workers)"
           if node.config.execution.executor in ("bal", "blockstm") else ""),
        f"JSON-RPC (HTTP + WebSocket): http://{node.config.rpc.host}:{node.rpc_port}",
    ]
    if node.p2p is not None:
        lines.append(f"p2p peer id: {node.p2p.peer_id}")
        lines.extend(f"p2p listening: {addr}" for addr in node.p2p.listen_addrs)
    if is_dev:
        lines.append("")
        lines.append(f"Dev accounts (mnemonic: \"{genesis_module.DEV_MNEMONIC}\"), 10,000 ETH each:")
        for index, account in enumerate(genesis_module.dev_accounts()):
            lines.append(f"  ({index}) {account.address}  key {account.private_key}")
        lines.append("These keys are public: never use them on a real network.")
    print("\n".join(lines), flush=True)


def accept_gossiped_transaction(
    mempool: Mempool, chain: Chain, on_pending: Callable[[PooledTx], None], raw: bytes
) -> Verdict:
    """A transaction from a peer: into the mempool; the verdict decides re-gossip."""
    from p2p.gossip import Verdict

    try:
        pooled = mempool.add_raw(raw, chain.next_base_fee())
    except InvalidTransactionError:
        return Verdict.REJECT  # invalid whatever the state: the relaying peer misbehaves
    except MempoolError:
        return Verdict.IGNORE  # known, stale or unaffordable here: drop, no penalty
    on_pending(pooled)
    return Verdict.ACCEPT


def _publish_commit(
    node: Node, hub: SubscriptionHub, api: EthApi, block: BlockAPI, receipts: Sequence[ReceiptAPI]
) -> None:
    node.mempool.on_new_head(node.chain.head_state())
    node.mempool.remove_committed(block.transactions)
    if hub.has_subscribers("newHeads"):
        hub.publish("newHeads", encoding.encode_header(block.header))
    if hub.has_subscribers("logs"):
        logs = []
        log_index = 0
        for tx_index, (tx, receipt) in enumerate(zip(block.transactions, receipts)):
            logs.extend(encoding.encode_logs(receipt, block.header, tx, tx_index, log_index))
            log_index += len(receipt.logs)
        if logs:
            hub.publish("logs", logs)


async def run_node(
    config: NodeConfig, hooks: Optional[NodeHooks] = None, *,
    task_status: TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a node until cancelled; reports the running `Node` through `task_status`."""
    hooks = hooks or NodeHooks()
    db = LevelDB(config.chaindata)
    executor = None
    admission = None
    try:
        try:
            genesis, is_dev = resolve_genesis(config, db)
        except GenesisError as exc:
            raise NodeSetupError(f"genesis: {exc}") from None
        validator_key = resolve_validator_key(config, genesis, is_dev)
        executor = make_executor(config.execution.executor, config.execution.workers)
        chain = Chain(db, executor, genesis)
        mempool = Mempool(
            MempoolConfig.from_settings(genesis.chain_id, genesis.gas_limit, config.mempool),
            chain.head_state(),
            chain.vm_class,
        )
        admission = AdmissionWorkers(mempool.checks, config.mempool.admission_workers)
        filters = FilterManager(config.rpc.max_filters, config.rpc.filter_timeout_s)
        p2p = None
        if config.p2p.listen is not None:
            from p2p.service import P2PService

            p2p = P2PService(make_p2p_config(config))
            p2p.set_peer_filter(hooks.peer_filter)
        engine, dev_engine = make_engine(
            config, genesis, chain, mempool, validator_key, p2p, hooks, is_dev
        )
        node = Node(config, chain, mempool, engine, p2p=p2p)
        api = EthApi(
            chain, mempool, config.rpc, filters, genesis.validators,
            broadcast=p2p.publish_transaction if p2p is not None else None,
            consensus_state=engine.status,
            p2p=p2p,
            admission=admission,
        )
        if p2p is not None:
            p2p.on_transaction(
                lambda raw, peer: accept_gossiped_transaction(
                    mempool, chain, api.on_pending_transaction, raw
                )
            )
        hub = SubscriptionHub()
        methods = Methods()
        register_rpc_eth_extras(methods, api, engine.bad_blocks)  # txpool_, debug_getRaw*, ...
        register_eth_api(methods, api)
        register_debug_api(methods, DebugApi(chain, api, config.rpc))
        register_state_api(methods, api)
        register_dev_api(methods, DevApi(chain, mempool, api, dev_engine))
        metrics = NodeMetrics(
            chain, mempool, peer_counter(p2p), methods.__contains__, admission
        )
        methods.observers.append(metrics.on_rpc_call)
        chain.on_commit(metrics.on_commit)
        if hooks.rpc_methods is not None:
            for name, handler in hooks.rpc_methods(node).items():
                methods.register(name, handler)
        register_subscriptions(hub, api)
        chain.on_commit(lambda block, receipts: _publish_commit(node, hub, api, block, receipts))
        # run_node is a whole node process (`laminar node`): its collector and its threads'
        # turns at the GIL are the node's to set.
        collector = FreezeOnCommit()
        chain.on_commit(lambda block, receipts: collector.block_committed())
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        rpc_config = config.rpc.server_config()
        async with trio.open_nursery() as nursery:
            if p2p is not None:
                await nursery.start(p2p.run)
            node.rpc_port = await nursery.start(
                partial(serve_rpc, rpc_config, methods, hub, metrics=metrics.render)
            )
            await nursery.start(engine.run)
            print_banner(node, is_dev)
            task_status.started(node)
    finally:
        if admission is not None:
            admission.close()
        if executor is not None:
            close_executor(executor)  # Block-STM: stop its worker processes
        db.close()
