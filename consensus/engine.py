"""What a consensus engine needs from the node, and what it offers it.

Data flows one way: the mempool feeds the engine, the engine orders transactions into
blocks, the chain executes and persists them. An engine implements `ConsensusEngine`;
the single-validator engine (this package) and the BFT engine plug in the same way.
"""

from __future__ import annotations

from typing import Optional, Protocol, Sequence

import trio
from eth.abc import BlockHeaderAPI, SignedTransactionAPI


class TransactionSource(Protocol):
    """The mempool as consensus sees it."""

    async def wait_for_transactions(self) -> None: ...

    def select_for_block(
        self, base_fee: int, gas_limit: int, max_txs: Optional[int] = None
    ) -> list[SignedTransactionAPI]: ...


class BlockBuilder(Protocol):
    """The chain as consensus sees it (see node.chain.Chain)."""

    @property
    def head(self) -> BlockHeaderAPI: ...

    @property
    def chain_id(self) -> int: ...

    def next_base_fee(self) -> int: ...

    def propose(
        self, transactions: Sequence[SignedTransactionAPI], timestamp: Optional[int] = None,
        coinbase: bytes = ...,
    ): ...

    def write_block(self, proposal, certificate: bytes) -> None: ...

    def advance_head(self, proposal) -> None: ...


class ConsensusEngine(Protocol):
    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Order and commit blocks until cancelled."""
