"""Single-validator engine: the one validator proposes, signs and commits every block.

It keeps the shape of a BFT height (propose, execute, certify, commit) with a quorum of
one, so the chain, storage and RPC see exactly what the BFT engine will give them.
Blocks are produced only when transactions wait, at most one per `block_time`: an idle
chain does not grow. On the dev chain, `DevControls` (evm_setAutomine,
evm_setIntervalMining, evm_increaseTime, evm_setNextBlockTimestamp) change when blocks
come and what time they carry, and evm_mine / anvil_set* produce blocks on demand
through `produce_block`.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import trio
from eth_keys import keys

from consensus.certificate import CommitCertificate, sign_precommit
from consensus.engine import BlockChain, ConsensusNetwork, DevTransactionSource
from consensus.sync import BlockSync

if TYPE_CHECKING:
    # trio.TaskStatus is hidden from mypy by trio-typing's stubs: see consensus/engine.py.
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

SINGLE_VALIDATOR_ROUND = 0


@dataclass
class DevControls:
    """Dev-chain mining and clock settings (in memory: a restart resets them)."""

    automine: bool = True  # a block as soon as transactions wait (at most one per block_time)
    interval_s: Optional[float] = None  # also a block every interval, empty or not
    time_offset_s: int = 0  # added to the wall clock for block timestamps
    next_timestamp: Optional[int] = None  # the next block's timestamp, exactly (then cleared)


async def _wait_any(*events: trio.Event) -> None:
    """Return as soon as one of `events` is set."""
    async with trio.open_nursery() as nursery:
        async def wait_one(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(wait_one, event)


@dataclass
class SingleValidatorEngine:
    chain: BlockChain[Any]
    mempool: DevTransactionSource
    validator_key: bytes
    block_time: float = 1.0
    max_block_txs: int | None = None
    # With networking: observers of this chain follow it by block sync, served from here.
    network: Optional[ConsensusNetwork] = None

    def __post_init__(self) -> None:
        self.address = keys.PrivateKey(self.validator_key).public_key.to_canonical_address()
        self.blocks_committed = 0
        self.dev = DevControls()
        # One block at a time: the producer loop, evm_mine, anvil_set* and evm_revert.
        self.production_lock = trio.Lock()
        self._controls_changed = trio.Event()
        if self.network is not None:
            serving = BlockSync(chain=self.chain, network=self.network, validators=None)
            self.network.serve_sync(serving.serve_status, serving.serve_blocks)

    def describe(self) -> str:
        return f"single validator 0x{self.address.hex()}"

    def bad_blocks(self) -> list:
        """None: the single validator proposes every block itself."""
        return []

    def status(self) -> dict:
        head = self.chain.head
        return {
            "mode": "single", "height": head.block_number + 1, "round": 0,
            "step": "propose", "head": head.block_number, "validators": 1,
            "validator_index": 0, "address": "0x" + self.address.hex(),
            "commits": self.blocks_committed, "evidence": [],
        }

    def controls_changed(self) -> None:
        """Wake the producer loop to re-read `dev` (call after changing it)."""
        event, self._controls_changed = self._controls_changed, trio.Event()
        event.set()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        last_block_at = trio.current_time() - self.block_time
        while True:
            await self._wait_for_work(last_block_at)
            await trio.sleep_until(last_block_at + self.block_time)
            last_block_at = trio.current_time()
            await self.produce_block()

    async def _wait_for_work(self, last_block_at: float) -> None:
        """Until a block is due: executable transactions with automine on, or the mining
        interval elapsed; re-checked whenever the pool or the dev controls change."""
        while True:
            pool_changed, controls_changed = self.mempool.new_tx_event, self._controls_changed
            if self.dev.automine and self.mempool.has_executable():
                return
            due = (last_block_at + self.dev.interval_s
                   if self.dev.interval_s is not None else math.inf)
            if trio.current_time() >= due:
                return
            with trio.move_on_at(due):
                await _wait_any(pool_changed, controls_changed)

    def next_timestamp(self) -> int:
        """The next mined block's timestamp: the one set by evm_setNextBlockTimestamp (then
        the clock goes on from it), else the wall clock plus evm_increaseTime's offset (the
        chain keeps it above the parent's)."""
        if self.dev.next_timestamp is not None:
            timestamp, self.dev.next_timestamp = self.dev.next_timestamp, None
            self.dev.time_offset_s = timestamp - int(time.time())  # later blocks go on from it
            return timestamp
        return int(time.time()) + self.dev.time_offset_s

    async def produce_block(
        self, timestamp: Optional[int] = None, state_patch: Optional[Any] = None,
        with_transactions: bool = True,
    ) -> None:
        """Build, sign and commit the next block (empty if no transaction waits).
        Dev chain: `timestamp` forces the block's time; a `state_patch` block carries the
        account edits and no transactions."""
        async with self.production_lock:
            await self._produce_block(timestamp, state_patch, with_transactions)

    async def _produce_block(
        self, timestamp: Optional[int], state_patch: Optional[Any], with_transactions: bool,
    ) -> None:
        head = self.chain.head
        transactions = await trio.to_thread.run_sync(self.mempool.selection(
            self.chain.next_base_fee(), head.gas_limit, self.max_block_txs
        )) if with_transactions else []
        if timestamp is not None:
            block_time = timestamp
        elif state_patch is not None:  # an edit is not "the next mined block": keep its time
            block_time = int(time.time()) + self.dev.time_offset_s
        else:
            block_time = self.next_timestamp()
        impersonated = self.mempool.impersonated_senders(transactions)
        proposal = await trio.to_thread.run_sync(
            functools.partial(
                self.chain.propose, transactions, block_time, self.address, None,
                self.mempool.senders_of(transactions), state_patch=state_patch,
                impersonated=impersonated,
            )
        )
        for tx, reason in proposal.dropped:
            log.warning("dropped transaction 0x%s: %s", tx.hash.hex(), reason)
        header = proposal.header
        certificate = CommitCertificate(
            height=header.block_number,
            round=SINGLE_VALIDATOR_ROUND,
            block_hash=header.hash,
            signatures=(
                sign_precommit(
                    self.validator_key, self.chain.chain_id, header.block_number,
                    SINGLE_VALIDATOR_ROUND, header.hash,
                ),
            ),
        )
        await trio.to_thread.run_sync(self.chain.write_block, proposal, certificate.encode())
        self.chain.advance_head(proposal)
        self.blocks_committed += 1
        log.info(
            "committed block %d (%d txs, gas %d) 0x%s",
            header.block_number, len(proposal.block.transactions), header.gas_used,
            header.hash.hex()[:16],
        )
