"""A `laminar node` with test-only behaviour, for the multi-node tests: Byzantine
validators and network partitions live here, in the tests, not in the shipped node.

    python tests/harness_node.py [--equivocate] [--partitions] node --config ...

--equivocate  whenever this validator proposes a fresh block, it also builds and signs
              a second block for the same round (timestamp + 1) and publishes both,
              alternating which goes first (an equivocating proposer)
--partitions  serves `laminar_debugBlockPeers([peer id, ...])`: drop all gossip from
              those peers and never sync from them (replaces the previous set; [] heals)
--lie-bal K,K whenever this validator proposes a fresh block, it publishes instead the
              same block with a wrong access list, of the next kind in K,K,... (see
              tests/bal_lies.py: value, missing, extra, index, read, past; hash: the
              header's blockAccessListHash does not match the list; garbage: bytes that
              are not a list), its header rehashed to match, signed

Everything after the harness flags is the `laminar` command line.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/bal_lies.py

import rlp  # noqa: E402
import trio  # noqa: E402
from eth_hash.auto import keccak  # noqa: E402
from eth_keys import keys  # noqa: E402

from consensus.engine import OutboundContext, OutboundHook  # noqa: E402
from consensus.messages import Proposal  # noqa: E402
from node.rpc.errors import invalid_params  # noqa: E402
from node.service import Node, NodeHooks  # noqa: E402
from tools.cli import build_parser, run_node_command  # noqa: E402

log = logging.getLogger("laminar.harness")


def _own_fresh_proposal(context: OutboundContext, message: Any) -> bool:
    """A proposal this validator signed with no proof-of-lock round (the reactor also
    re-sends other validators' messages through the hook)."""
    return (
        isinstance(message, Proposal) and message.pol_round == -1
        and context.private_key is not None
        and message.signer(context.chain_id) == context.address
    )


def equivocating_proposer(context: OutboundContext) -> OutboundHook:
    """Each fresh proposal of ours gets a twin: the same transactions, timestamp + 1 (made
    once per round: a re-sent proposal goes out with the same twin)."""
    twins: dict[tuple[int, int], Any] = {}

    async def outbound(message: Any) -> Sequence[Any]:
        if not _own_fresh_proposal(context, message):
            return [message]
        assert context.private_key is not None
        known = twins.get((message.height, message.round))
        if known is not None:
            return [known, message] if message.height % 2 else [message, known]
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
        twins[(message.height, message.round)] = other
        return [other, message] if message.height % 2 else [message, other]

    return outbound


def lying_access_lists(kinds: list[str]):
    """Each fresh proposal of ours goes out with a wrong access list (kinds in turn); a
    re-sent one goes out as the same lie, never as the honest block."""
    from bal_lies import LIES

    def make(context: OutboundContext) -> OutboundHook:
        proposals = iter(range(1 << 62))
        told: dict[tuple[int, int], Any] = {}

        async def outbound(message: Any) -> Sequence[Any]:
            if not _own_fresh_proposal(context, message):
                return [message]
            assert context.private_key is not None
            known = told.get((message.height, message.round))
            if known is not None:
                return [known]
            kind = kinds[next(proposals) % len(kinds)]
            block = context.chain.decode_block(message.block_bytes)
            header = block.header
            if kind == "hash":
                lie, header_hash = block.access_list, keccak(b"not the list")
            elif kind == "garbage":
                lie = b"\x01not a list"
                header_hash = keccak(lie)
            else:
                truth = context.chain.access_list(block)
                try:
                    wrong = LIES[kind](truth, len(block.transactions))
                except StopIteration:  # nothing of that kind in this block
                    wrong = LIES["extra"](truth, len(block.transactions))
                lie = wrong.encode()
                header_hash = keccak(lie)
            lying = block.copy(header=header.copy(block_access_list_hash=header_hash),
                               access_list=lie)
            log.warning("FAULT INJECTION: lying access list (%s) at height %d round %d: block 0x%s",
                        kind, message.height, message.round, lying.header.hash.hex())
            lie_message = Proposal.sign(
                keys.PrivateKey(context.private_key), context.chain_id, message.height,
                message.round, lying.header.hash, -1, rlp.encode(lying),
            )
            told[(message.height, message.round)] = lie_message
            return [lie_message]

        return outbound

    return make


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
        elif flag == "--lie-bal":
            hooks.consensus_outbound = lying_access_lists(argv.pop(0).split(","))
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
