"""`python -m bench.gossip`: the CPU gossip costs per message, py-libp2p's task manager
against Laminar's indexed one (`p2p/service_manager.py`), side by side.

Four real P2PServices in this process, on 127.0.0.1, in a star (a hub and three leaves
that dial it), as `tests/test_p2p.py` builds them. A leaf publishes N consensus messages
of 161 bytes (a vote's size) one by one; the clock and the process CPU counter run from
the first publish until the three other hosts have all N. CPU is the whole process: the
four hosts' sending, forwarding and receiving. Runs alternate between the two managers so
that the machine's drift falls on both.

With `--one-at-a-time` the leaf publishes the next message only once the three others
have the last: every hop is an RPC of its own (as votes travel on a devnet), instead of
the bursts the sender coalesces into a few large RPCs.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import trio
from libp2p.tools.anyio_service import background_trio_service

import p2p.service
from p2p.config import P2PConfig
from p2p.service import P2PService
from p2p.service_manager import background_service

VOTE_SIZE = 161
MANAGERS: dict[str, Callable[..., contextlib.AbstractAsyncContextManager]] = {
    "py-libp2p": background_trio_service,
    "indexed": background_service,
}


@dataclass
class Run:
    manager: str
    wall_seconds: float
    cpu_seconds: float


class _Receiver:
    def __init__(self) -> None:
        self.count = 0
        self._waiting: tuple[int, trio.Event] | None = None

    def __call__(self, payload: bytes, peer: object) -> bool:
        self.count += 1
        if self._waiting is not None and self.count >= self._waiting[0]:
            self._waiting[1].set()
            self._waiting = None
        return True

    async def wait_for(self, count: int) -> None:
        if self.count < count:
            event = trio.Event()
            self._waiting = (count, event)
            await event.wait()


@contextlib.asynccontextmanager
async def _star(root: Path, receivers: list[_Receiver]) -> AsyncIterator[list[P2PService]]:
    async with trio.open_nursery() as nursery:
        services: list[P2PService] = []
        for i, receiver in enumerate(receivers):
            bootstrap = (services[0].listen_addrs[0],) if services else ()
            config = P2PConfig(
                data_dir=root / f"host{i}",
                listen_addr="/ip4/127.0.0.1/tcp/0",
                bootstrap_peers=bootstrap,
            )
            service = P2PService(config)
            service.on_consensus(receiver)
            await nursery.start(service.run)
            services.append(service)
        hub = services[0]
        for leaf in services[1:]:
            await hub.wait_gossip_ready(leaf.peer_id)
            await leaf.wait_gossip_ready(hub.peer_id)
        yield services
        nursery.cancel_scope.cancel()


async def measure(manager: str, messages: int, one_at_a_time: bool = False) -> Run:
    """One star, `messages` from a leaf (a burst, or one at a time), with `manager`
    running pubsub."""
    p2p.service.background_service = MANAGERS[manager]  # type: ignore[attr-defined]
    try:
        receivers = [_Receiver() for _ in range(4)]
        others = [receiver for i, receiver in enumerate(receivers) if i != 1]
        with tempfile.TemporaryDirectory(prefix="laminar-gossip-") as tmp:
            async with _star(Path(tmp), receivers) as services:
                publisher = services[1]
                payloads = [i.to_bytes(4, "big") * (VOTE_SIZE // 4) + b"v" for i in range(messages)]
                wall0, cpu0 = time.perf_counter(), time.process_time()
                for sent, payload in enumerate(payloads, start=1):
                    await publisher.publish_consensus(payload)
                    if one_at_a_time:
                        for receiver in others:
                            await receiver.wait_for(sent)
                for receiver in others:
                    await receiver.wait_for(messages)
                wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        p2p.service.background_service = background_service  # type: ignore[attr-defined]
    return Run(manager, wall, cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gossip", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages per run (default 3000)")
    parser.add_argument("--pairs", type=int, default=3, help="alternated pairs of runs (default 3)")
    parser.add_argument(
        "--one-at-a-time", action="store_true",
        help="publish each message once the others have the last (one RPC per hop)",
    )
    args = parser.parse_args(argv)
    if args.messages < 1 or args.pairs < 1:
        parser.error("--messages and --pairs must be at least 1")
    runs: list[Run] = []
    for pair in range(args.pairs):
        order = list(MANAGERS) if pair % 2 == 0 else list(reversed(MANAGERS))
        for manager in order:
            run = trio.run(measure, manager, args.messages, args.one_at_a_time)
            runs.append(run)
            print(
                f"{manager:>10}: {args.messages} messages to 3 hosts in {run.wall_seconds:.2f} s, "
                f"process CPU {run.cpu_seconds:.2f} s "
                f"({run.cpu_seconds / args.messages * 1e6:,.0f} µs per message)",
                flush=True,
            )
    for manager in MANAGERS:
        cpu = statistics.median(r.cpu_seconds for r in runs if r.manager == manager)
        wall = statistics.median(r.wall_seconds for r in runs if r.manager == manager)
        print(f"median {manager:>10}: CPU {cpu:.2f} s, wall {wall:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
