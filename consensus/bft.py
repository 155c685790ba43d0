"""The BFT engine: Tendermint consensus among the genesis validators, over the p2p layer.

It implements `consensus.engine.ConsensusEngine` like the single-validator engine, and is
what the node runs when the genesis names more than one validator (or when this node is
an observer of such a chain). It is the reactor (consensus/reactor.py: the state
machine, WAL, timers, block building and validation) plus block sync (consensus/sync.py),
both registered with the node's network port (`engine.ConsensusNetwork`):

    network.on_message(reactor.on_consensus)                 # gossip validator + inbox
    network.serve_sync(sync.serve_status, sync.serve_blocks)  # /laminar/sync/1

Idle behaviour: unlike the single-validator engine, a BFT chain completes heights even
without transactions (the proposer waits up to `block_time` for one, then proposes a
possibly empty block): empty blocks about every `block_time` on an idle devnet.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import trio

from consensus.engine import (
    BlockChain,
    ConsensusNetwork,
    OutboundContext,
    OutboundHook,
    TransactionSource,
)
from consensus.reactor import ConsensusReactor, ReactorSettings
from consensus.sync import BlockSync
from consensus.timers import TimeoutConfig
from consensus.validators import ValidatorSet

if TYPE_CHECKING:
    # trio.TaskStatus is hidden from mypy by trio-typing's stubs: see consensus/engine.py.
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)


class BFTEngine:
    def __init__(
        self, *, chain: BlockChain[Any], mempool: TransactionSource, network: ConsensusNetwork,
        validators: ValidatorSet, private_key: Optional[bytes], datadir: Path,
        timeouts: TimeoutConfig, settings: ReactorSettings, sync_poll_interval: float = 2.0,
        outbound: Optional[Callable[[OutboundContext], OutboundHook]] = None,
    ) -> None:
        self.reactor = ConsensusReactor(
            chain=chain, mempool=mempool, network=network, validators=validators,
            private_key=private_key, datadir=datadir, timeouts=timeouts, settings=settings,
            outbound=outbound,
        )
        self.sync = BlockSync(
            chain=chain, network=network, validators=validators, importer=self.reactor,
            poll_interval=sync_poll_interval,
            behind_grace=max(3.0, 2 * settings.block_time + timeouts.propose),
        )
        self.reactor.sync = self.sync
        network.on_message(self.reactor.on_consensus)
        network.serve_sync(self.sync.serve_status, self.sync.serve_blocks)

    @property
    def address(self) -> Optional[bytes]:
        return self.reactor.address

    def describe(self) -> str:
        reactor = self.reactor
        n = reactor.validators.n
        if reactor.index is None:
            return f"BFT observer ({n} validators, no vote)"
        assert reactor.address is not None  # a validator's index comes from its address
        return (
            f"BFT (Tendermint), validator {reactor.index} of {n} "
            f"(0x{reactor.address.hex()}), quorum {reactor.validators.quorum}"
        )

    def bad_blocks(self) -> list:
        """The latest proposals this validator refused after executing them, oldest first."""
        return list(self.reactor.bad_blocks)

    def status(self) -> dict:
        state = self.reactor.status()
        state["synced_blocks"] = self.sync.synced_blocks
        return state

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.reactor.run)
            await nursery.start(self.sync.run)
            task_status.started()
