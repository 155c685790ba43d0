"""`laminar bench --sync-blocks N`: executionless sync against execution, block by block.

A chain of N blocks of the mixed workload (`--sync-txs T` transactions each), each
block's pre-state the previous block's post-state, is taken through two paths side by
side, from the same genesis state:

* **execute**: the bench's parallel executor (Block-STM by default) runs the block;
* **apply**: `execution.bal.apply.apply_access_list` folds the block's EIP-7928 access
  list into the state (no EVM).

Both commit as a syncing node does: the new state nodes of each sync batch
(`consensus.sync.SYNC_BATCH` blocks, each block reading its pre-state through the
batch's nodes not written yet) go to LevelDB in one atomic, fsynced batch.

Each path has its own fresh LevelDB holding the genesis state and reads its pre-state
from it (as a node does), so a path's block k runs on the state its own blocks 1..k-1
made. Every post-state root of both paths must be the root the untimed first pass got.

Untimed, before any clock starts: signing every transaction, and a first pass that runs
the chain on the sequential executor with `build_access_list` (the lists, the expected
roots, and the check that every transaction succeeded). Decoding each block's
transactions (afresh for the execute path) is outside the clock too.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from eth_utils import keccak

from bench.workloads import (
    BASE_FEE,
    BLOCK_TIMESTAMP,
    GAS_ERC20,
    GAS_SWAP,
    GAS_TRANSFER,
    GAS_VAULT,
    TOKEN_ADDRESS,
    VAULT_ADDRESS,
    Progress,
    _env,
    _give_tokens,
    _Keys,
    _pool,
    _sign,
    _StateBuilder,
    _tick,
    _token,
    _trader,
    erc20_transfer_data,
    swap_data,
)
from bench.workloads import POOL_ADDRESS as POOL_ADDRESS
from consensus.sync import SYNC_BATCH
from execution.bal.codec import BlockAccessList
from execution.executor import BlockEnv, BlockInput, Executor, StateView
from execution.overlay import LayeredNodes
from storage.leveldb import LevelDB

DEFAULT_SYNC_TXS = 50
# Every sender sends one transaction per block for the whole chain: enough ETH and tokens
# (swaps are of at most 0.1 of a token, on a trader balance of 1,000).
SYNC_FUNDING = 10**24
SYNC_TOKENS = 10**24
BLOCK_INTERVAL_S = 12


@dataclass
class Chain:
    """N consecutive blocks over one genesis state (senders at advancing nonces)."""

    genesis_nodes: dict[bytes, bytes]
    genesis_root: bytes
    envs: list[BlockEnv]
    blocks: list[tuple[bytes, ...]]  # encoded transactions per block
    params: dict = field(default_factory=dict)

    @property
    def txs(self) -> int:
        return sum(len(b) for b in self.blocks)

    def block(self, k: int) -> BlockInput:
        """Block k (0-based) with freshly decoded transactions."""
        env = self.envs[k]
        builder = env.vm_class.get_transaction_builder()
        return BlockInput(env=env, transactions=tuple(builder.decode(raw) for raw in self.blocks[k]))


def build_chain(
    blocks: int, txs_per_block: int = DEFAULT_SYNC_TXS, seed: int = 1, tip: int = 10**9,
    hot_share: float = 0.1, cache_dir: Any = None, progress: Progress = None,
) -> Chain:
    """`blocks` blocks of `txs_per_block` mixed transactions each.

    Position i of every block is sent by sender i at nonce k (block k): no nonce chain
    inside a block, one per sender across the chain. Each block mixes like the mixed
    workload: cold ETH and ERC20 transfers to fresh addresses, and a share `hot_share` of
    hot transactions at random positions, taking turns between Vault deposits, ERC20
    transfers to one hot holder and pool swaps (so blocks conflict inside, and every
    block reads what the one before wrote)."""
    if blocks < 1 or txs_per_block < 1:
        raise ValueError("a chain needs at least one block of at least one transaction")
    keyring = _Keys(seed, "sync")
    rng = random.Random(f"{seed}:sync")
    state = _StateBuilder()
    erc20, token = _token(state, cache_dir)
    pool_code, pool = _pool(state, cache_dir)
    from bench.contracts import compiled

    state.contract(VAULT_ADDRESS, compiled("Vault", cache_dir))
    hot_holder = keyring.address("hot-holder", 0)
    _give_tokens(erc20, token, hot_holder, SYNC_TOKENS)
    senders = [keyring.private_key("sender", i) for i in range(txs_per_block)]
    for key in senders:
        address = key.public_key.to_canonical_address()
        state.fund(address, SYNC_FUNDING)
        _give_tokens(erc20, token, address, SYNC_TOKENS)
        _trader(pool_code, pool, address)
    nodes, root = state.build()
    counts = {"eth": 0, "erc20": 0, "vault": 0, "erc20_hot": 0, "swap": 0}
    n_hot = round(hot_share * txs_per_block)
    hot_turn = 0
    envs: list[BlockEnv] = []
    encoded: list[tuple[bytes, ...]] = []
    for k in range(blocks):
        hot = set(rng.sample(range(txs_per_block), n_hot))
        signed: list[bytes] = []
        gas = 0
        for i, key in enumerate(senders):
            if i in hot:
                kind = ("vault", "erc20_hot", "swap")[hot_turn % 3]
                hot_turn += 1
            else:
                kind = "eth" if rng.random() < 0.5 else "erc20"
            counts[kind] += 1
            fresh = k * txs_per_block + i
            if kind == "eth":
                raw = _sign(key, keyring.address("recipient", fresh), rng.randrange(10**15, 10**18),
                            b"", GAS_TRANSFER, tip, nonce=k)
                gas += GAS_TRANSFER
            elif kind == "vault":
                raw = _sign(key, VAULT_ADDRESS, rng.randrange(10**15, 10**18), b"", GAS_VAULT, tip,
                            nonce=k)
                gas += GAS_VAULT
            elif kind in ("erc20", "erc20_hot"):
                to = hot_holder if kind == "erc20_hot" else keyring.address("recipient", fresh)
                data = erc20_transfer_data(to, rng.randrange(1, 10**18))
                raw = _sign(key, TOKEN_ADDRESS, 0, data, GAS_ERC20, tip, nonce=k)
                gas += GAS_ERC20
            else:
                data = swap_data(rng.randrange(10**15, 10**17), rng.random() < 0.5)
                raw = _sign(key, POOL_ADDRESS, 0, data, GAS_SWAP, tip, nonce=k)
                gas += GAS_SWAP
            signed.append(raw)
            _tick(progress)
        base = _env(gas)
        envs.append(dataclasses.replace(
            base,
            number=k + 1,
            timestamp=BLOCK_TIMESTAMP + BLOCK_INTERVAL_S * k,
            parent_hash=keccak(b"laminar-bench sync parent|" + str(k).encode()),
            mix_hash=keccak(b"laminar-bench sync prevrandao|" + str(k).encode()),
            base_fee_per_gas=BASE_FEE,
        ))
        encoded.append(tuple(signed))
    return Chain(
        genesis_nodes=nodes, genesis_root=root, envs=envs, blocks=encoded,
        params={"seed": seed, "hot_share": hot_share, "hot_txs_per_block": n_hot,
                "senders": txs_per_block, "kinds": counts},
    )


# ------------------------------------------------------------------------- first pass


@dataclass
class PlannedBlock:
    access_list: BlockAccessList
    encoded_bytes: int
    post_state_root: bytes
    all_succeeded: bool
    state_nodes: int


def first_pass(chain: Chain, on_block: Callable[[int], None] = lambda _: None) -> list[PlannedBlock]:
    """Untimed: the chain on the sequential executor with `build_access_list`, in memory."""
    from bench.runner import receipt_status_ok
    from execution.sequential import SequentialExecutor

    executor = SequentialExecutor()
    nodes = dict(chain.genesis_nodes)
    root = chain.genesis_root
    planned: list[PlannedBlock] = []
    for k in range(len(chain.blocks)):
        block = dataclasses.replace(chain.block(k), build_access_list=True)
        result = executor.execute(block, StateView(nodes=nodes, state_root=root))
        assert result.access_list is not None
        nodes.update(result.state_nodes)
        root = result.post_state_root
        planned.append(PlannedBlock(
            access_list=result.access_list,
            encoded_bytes=len(result.access_list.encode()),
            post_state_root=root,
            all_succeeded=(
                len(result.receipts) == len(chain.blocks[k])
                and all(receipt_status_ok(r) for r in result.receipts)
            ),
            state_nodes=len(result.state_nodes),
        ))
        on_block(len(chain.blocks[k]))
    return planned


# ------------------------------------------------------------------------------ bench


def _fresh_db(root: Path, name: str, nodes: dict[bytes, bytes]) -> LevelDB:
    db = LevelDB(Path(tempfile.mkdtemp(prefix=f"sync-{name}-", dir=root)) / "db")
    db.write_atomically(nodes)
    return db


class _SyncPath:
    """One way through the chain (execute or apply) with its own LevelDB and head.

    As a syncing node does (`consensus.sync`, `Chain.write_blocks`), the blocks of one
    sync batch (`SYNC_BATCH`) are run one on top of the other, each reading its
    pre-state through the batch's new nodes, and written in one fsynced LevelDB batch."""

    def __init__(self, name: str, run: Callable[[BlockInput, PlannedBlock, StateView], tuple[bytes, dict]],
                 db: LevelDB, root: bytes, commit_every: int) -> None:
        self.name = name
        self.run = run
        self.db = db
        self.root = root
        self.commit_every = commit_every
        self.pending: dict[bytes, bytes] = {}
        self.pending_blocks = 0
        self.run_s: list[float] = []
        self.commit_s: list[float] = []  # one per written batch
        self.commit_share_s: list[float] = []  # per block: its batch's commit / its size

    def step(self, block: BlockInput, plan: PlannedBlock, number: int,
             mismatches: list[dict[str, Any]], last: bool) -> Optional[str]:
        """Block `number` on this path, timed, then (at the batch's end) the batch
        committed; an error's text, or None."""
        from bench.runner import _describe

        gc.collect()
        try:
            started = time.perf_counter()
            pre = StateView(nodes=LayeredNodes(self.pending, self.db), state_root=self.root)
            root, nodes = self.run(block, plan, pre)
            ran = time.perf_counter()
            self.run_s.append(ran - started)
            self.pending.update(nodes)
            self.pending_blocks += 1
            if last or self.pending_blocks == self.commit_every:
                self.db.write_atomically(self.pending)
                elapsed = time.perf_counter() - ran
                self.commit_s.append(elapsed)
                self.commit_share_s.extend([elapsed / self.pending_blocks] * self.pending_blocks)
                self.pending, self.pending_blocks = {}, 0
        except Exception as exc:
            return f"block {number} ({self.name}): {_describe(exc)}"
        if root != plan.post_state_root:
            mismatches.append({"block": number, "path": self.name})
        self.root = root
        return None

    def block_s(self) -> list[float]:
        """Each block's run plus its share of its batch's commit."""
        return [run + commit for run, commit in zip(self.run_s, self.commit_share_s)]

    def close(self) -> None:
        folder = self.db.path.parent
        self.db.close()
        shutil.rmtree(folder, ignore_errors=True)


def _warm_up(chain: Chain, executor: Executor) -> None:
    from execution.bal.apply import apply_access_list
    from execution.sequential import SequentialExecutor

    pre = StateView(nodes=chain.genesis_nodes, state_root=chain.genesis_root)
    built = SequentialExecutor().execute(
        dataclasses.replace(chain.block(0), build_access_list=True), pre
    )
    assert built.access_list is not None
    executor.execute(chain.block(0), pre)
    apply_access_list(built.access_list, chain.envs[0].vm_class, pre)


def bench_sync(
    chain: Chain,
    executor: Executor,
    *,
    scratch_root: Path,
    machine: dict[str, Any],
    workers: int,
    planned: Optional[list[PlannedBlock]] = None,  # the first pass, if done already
    warmup: Optional[Chain] = None,
    first_pass_s: Optional[float] = None,
    commit_every: int = SYNC_BATCH,
    on_step: Callable[[str, int], None] = lambda _d, _n: None,
    on_done: Callable[[int], None] = lambda _n: None,
) -> dict[str, Any]:
    """Execute vs apply every block of `chain` (see the module doc); one record."""
    from execution.bal.apply import PostStateAccounts, apply_access_list

    n_blocks = len(chain.blocks)
    t_per_block = len(chain.blocks[0])
    if planned is None:
        on_step("sync: first pass, making the access lists (untimed)", 0)
        first_started = time.perf_counter()
        planned = first_pass(chain, on_done)
        first_pass_s = time.perf_counter() - first_started

    if warmup is not None:
        # Untimed: first-use costs (the worker pool, code paths) on a block of another
        # chain (same shape, another seed), so that neither path gets this chain's
        # nodes into a cache before it starts.
        on_step("sync: warming up", 0)
        _warm_up(warmup, executor)

    vm_class = chain.envs[0].vm_class
    name = getattr(executor, "name", type(executor).__name__)

    def execute(block: BlockInput, plan: PlannedBlock, pre: StateView) -> tuple[bytes, dict]:
        result = executor.execute(block, pre)
        return result.post_state_root, result.state_nodes

    decoded_nodes: dict = {}  # kept across blocks, as a syncing node keeps them
    accounts = PostStateAccounts()

    def apply(block: BlockInput, plan: PlannedBlock, pre: StateView) -> tuple[bytes, dict]:
        applied = apply_access_list(plan.access_list, vm_class, pre, decoded_nodes, accounts)
        return applied.post_state_root, applied.state_nodes

    paths = [
        _SyncPath("execute", execute, _fresh_db(scratch_root, "execute", chain.genesis_nodes),
                  chain.genesis_root, commit_every),
        _SyncPath("apply", apply, _fresh_db(scratch_root, "apply", chain.genesis_nodes),
                  chain.genesis_root, commit_every),
    ]
    mismatches: list[dict[str, Any]] = []
    errors: list[str] = []
    gc.collect()
    gc.freeze()  # the chain and the lists: not for every collection to walk again
    try:
        for k in range(n_blocks):
            block = chain.block(k)  # decoded afresh, outside the clock
            on_step(f"sync: block {k + 1}/{n_blocks}", t_per_block)
            # Alternate which path goes first, so drift spreads over both.
            for path in (paths if k % 2 == 0 else paths[::-1]):
                error = path.step(block, planned[k], k + 1, mismatches, last=k == n_blocks - 1)
                if error is not None:
                    errors.append(error)
                    break
            if errors:
                break
            on_done(t_per_block)
    finally:
        gc.unfreeze()
        for path in paths:
            path.close()
    exec_s, exec_commit_s = paths[0].run_s, paths[0].commit_s
    apply_s, apply_commit_s = paths[1].run_s, paths[1].commit_s

    complete = not errors and len(exec_s) == n_blocks and len(apply_s) == n_blocks

    execute_total = sum(exec_s) + sum(exec_commit_s) if complete else None
    apply_total = sum(apply_s) + sum(apply_commit_s) if complete else None
    roots_match = complete and not mismatches
    txs = chain.txs
    list_bytes = sum(p.encoded_bytes for p in planned)
    return {
        "workload": "sync",
        "description": (
            f"{n_blocks} chained blocks of {t_per_block} mixed transactions: executed "
            f"({name}, {workers} workers) vs applied from their access lists, each sync "
            f"batch of {commit_every} blocks committed to LevelDB in one fsynced write"
        ),
        "sync_blocks": n_blocks,
        "sync_txs": t_per_block,
        "txs": txs,
        "workers": workers,
        "executor": name,
        "execute_s": execute_total,
        "apply_s": apply_total,
        "sync_speedup": (
            execute_total / apply_total if execute_total and apply_total else None
        ),
        # The parts: executing / applying alone, and the commits (the same batches).
        "execute_only_s": sum(exec_s) if complete else None,
        "execute_commit_s": sum(exec_commit_s) if complete else None,
        "apply_only_s": sum(apply_s) if complete else None,
        "apply_commit_s": sum(apply_commit_s) if complete else None,
        "apply_only_speedup": (
            sum(exec_s) / sum(apply_s) if complete and sum(apply_s) > 0 else None
        ),
        "median_block_execute_s": statistics.median(paths[0].block_s()) if complete else None,
        "median_block_apply_s": statistics.median(paths[1].block_s()) if complete else None,
        "blocks_per_commit": commit_every,
        "roots_match": roots_match,
        "root_mismatches": mismatches[:20],
        "identical": roots_match,  # the bench's own check: every post-state root equal
        "all_succeeded": all(p.all_succeeded for p in planned),
        "bal_bytes_per_tx": list_bytes / txs if txs else None,
        "state_nodes_per_block": sum(p.state_nodes for p in planned) / n_blocks,
        "first_pass_s": first_pass_s,
        "params": chain.params,
        "repeat": 1,
        "error": "; ".join(errors) if errors else None,
        "machine": machine,
    }
