"""A `laminar node` with test-only behaviour, for the multi-node tests: Byzantine
validators and network partitions live here, in the tests, not in the shipped node.

    python tests/harness_node.py [--equivocate] [--partitions] node --config ...

--equivocate  whenever this validator proposes a fresh block, it also builds and signs
              a second block for the same round (timestamp + 1) and publishes both,
              alternating which goes first (an equivocating proposer)
--partitions  serves `laminar_debugBlockPeers([peer id, ...])`: drop all gossip from
              those peers and never sync from them (replaces the previous set; [] heals)

Everything after the harness flags is the `laminar` command line.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rlp  # noqa: E402
import trio  # noqa: E402
from eth_keys import keys  # noqa: E402

from consensus.engine import OutboundContext, OutboundHook  # noqa: E402
from consensus.messages import Proposal  # noqa: E402
from node.rpc.errors import invalid_params  # noqa: E402
from node.service import Node, NodeHooks  # noqa: E402
from tools.cli import build_parser, run_node_command  # noqa: E402

log = logging.getLogger("laminar.harness")


def equivocating_proposer(context: OutboundContext) -> OutboundHook:
    """Each fresh proposal of ours gets a twin: the same transactions, timestamp + 1."""

    async def outbound(message: Any) -> Sequence[Any]:
        fresh = isinstance(message, Proposal) and message.pol_round == -1
        if not fresh or context.private_key is None:
            return [message]
        block = context.chain.decode_block(message.block_bytes)
        parent = context.chain.head
        async with context.execution_lock:
            twin = await trio.to_thread.run_sync(
                context.chain.propose, list(block.transactions), block.header.timestamp + 1,
                context.address, parent,
            )
        context.remember_executed(twin.header.hash, twin)
        other = Proposal.sign(
            keys.PrivateKey(context.private_key), context.chain_id, message.height,
            message.round, twin.header.hash, -1, rlp.encode(twin.block),
        )
        log.warning(
            "FAULT INJECTION: equivocating at height %d round %d", message.height, message.round
        )
        return [other, message] if message.height % 2 else [message, other]

    return outbound


def partitions(blocked: set[str]):
    def rpc_methods(node: Node) -> dict:
        def block_peers(peers: Any = None) -> list[str]:
            if peers is None:
                peers = []
            if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
                raise invalid_params("expected a list of peer id strings")
            blocked.clear()
            blocked.update(peers)
            log.warning("harness: blocking gossip and sync with %d peers", len(peers))
            return sorted(blocked)

        return {"laminar_debugBlockPeers": block_peers}

    return rpc_methods


def blocked_by(blocked: set[str]):
    return lambda peer: str(peer) in blocked


def main(argv: list[str]) -> int:
    hooks = NodeHooks()
    while argv and argv[0].startswith("--"):
        flag = argv.pop(0)
        if flag == "--equivocate":
            hooks.consensus_outbound = equivocating_proposer
        elif flag == "--partitions":
            blocked: set[str] = set()
            hooks.peer_filter = blocked_by(blocked)
            hooks.rpc_methods = partitions(blocked)
        else:
            print(f"harness_node: unknown flag {flag}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    if args.command != "node":
        print("harness_node: only the `node` command takes hooks", file=sys.stderr)
        return 2
    return run_node_command(args, hooks)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
