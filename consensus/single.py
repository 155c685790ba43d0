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

import trio
from eth_keys import keys

from consensus.certificate import CommitCertificate, sign_precommit
from consensus.engine import BlockBuilder, TransactionSource

log = logging.getLogger("laminar.consensus")

SINGLE_VALIDATOR_ROUND = 0


@dataclass
class SingleValidatorEngine:
    chain: BlockBuilder
    mempool: TransactionSource
    validator_key: bytes
    block_time: float = 1.0
    max_block_txs: int | None = None

    def __post_init__(self) -> None:
        self.address = keys.PrivateKey(self.validator_key).public_key.to_canonical_address()
        self.blocks_committed = 0

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
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
            self.chain.propose, transactions, int(time.time()), self.address
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
