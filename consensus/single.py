"""Single-validator engine: the one validator proposes, signs and commits every block.

It keeps the shape of a BFT height (propose, execute, certify, commit) with a quorum of
one, so the chain, storage and RPC see exactly what the BFT engine will give them.
Blocks are produced only when transactions wait, at most one per `block_time`: an idle
chain does not grow.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import trio
from eth_keys import keys

from consensus.certificate import CommitCertificate, sign_precommit
from consensus.engine import BlockChain, ConsensusNetwork, TransactionSource
from consensus.sync import BlockSync

if TYPE_CHECKING:
    # trio.TaskStatus is hidden from mypy by trio-typing's stubs: see consensus/engine.py.
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

SINGLE_VALIDATOR_ROUND = 0


@dataclass
class SingleValidatorEngine:
    chain: BlockChain[Any]
    mempool: TransactionSource
    validator_key: bytes
    block_time: float = 1.0
    max_block_txs: int | None = None
    # With networking: observers of this chain follow it by block sync, served from here.
    network: Optional[ConsensusNetwork] = None

    def __post_init__(self) -> None:
        self.address = keys.PrivateKey(self.validator_key).public_key.to_canonical_address()
        self.blocks_committed = 0
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

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        last_block_at = trio.current_time() - self.block_time
        while True:
            await self.mempool.wait_for_transactions()
            await trio.sleep_until(last_block_at + self.block_time)
            last_block_at = trio.current_time()
            await self.produce_block()

    async def produce_block(self) -> None:
        head = self.chain.head
        transactions = self.mempool.select_for_block(
            self.chain.next_base_fee(), head.gas_limit, self.max_block_txs
        )
        proposal = await trio.to_thread.run_sync(
            self.chain.propose, transactions, int(time.time()), self.address, None,
            self.mempool.senders_of(transactions),
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
