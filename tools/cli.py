"""`laminar`: the command line. `laminar node` runs a node; `laminar replay` replays a block;
`laminar devnet init` writes a local multi-validator network and `laminar devnet` runs one;
`laminar load` sends transactions at a steady rate and reports latency and throughput.

Exit codes: 0 success, 1 a check failed (replay mismatch), 2 unusable input or
configuration (the message on stderr says what to fix).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence

import trio

EXIT_OK = 0
EXIT_USAGE = 2


def _add_node_parser(subparsers) -> None:
    node = subparsers.add_parser(
        "node",
        help="run a node (with no arguments: a dev chain in ~/.laminar on 127.0.0.1:8545)",
    )
    node.add_argument("--config", type=Path, help="TOML config file (see docs/configuration.md)")
    node.add_argument("--datadir", type=Path, help="data directory (default ~/.laminar)")
    node.add_argument("--rpc", metavar="HOST:PORT", help="JSON-RPC address (default 127.0.0.1:8545)")
    node.add_argument("--genesis", type=Path, help="genesis JSON file (default: the dev genesis)")
    node.add_argument("--validator-key", type=Path, help="file with the validator's private key (hex)")
    node.add_argument("--block-time", type=float, help="seconds between blocks (default 1)")
    node.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    node.add_argument(
        "--executor", choices=["bal", "blockstm", "sequential"],
        help="block executor (default bal: blocks from peers run in parallel from their "
        "access lists, own blocks with Block-STM; blockstm: Block-STM for all; "
        "sequential: the reference)",
    )
    node.add_argument("--workers", type=int, help="Block-STM worker processes (default: CPUs)")
    node.add_argument(
        "--sync-mode", choices=["execute", "bal"],
        help="catching up on certified blocks: execute them (default) or apply their "
        "access lists without executing (docs/bal.md)",
    )
    node.add_argument(
        "--p2p-listen", metavar="MULTIADDR",
        help="libp2p listen address, e.g. /ip4/127.0.0.1/tcp/30303 (default: no networking)",
    )
    node.add_argument(
        "--bootnode", metavar="MULTIADDR", action="append", default=[],
        help="peer to dial and keep connected (/ip4/../tcp/../p2p/<peer id>); repeatable",
    )


def _add_replay_parser(subparsers) -> None:
    replay = subparsers.add_parser(
        "replay", help="execute a real Ethereum block from a folder and check it against its header"
    )
    from tools.replay_cli import add_replay_arguments

    add_replay_arguments(replay)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="laminar", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_node_parser(subparsers)
    _add_replay_parser(subparsers)
    from tools.blocktest_cli import add_blocktest_arguments

    add_blocktest_arguments(subparsers.add_parser(
        "blocktest", help="run Ethereum consensus tests (BlockchainTests fixtures) "
        "through an executor"))
    from tools.devnet.cli import add_devnet_parser

    add_devnet_parser(subparsers)
    from tools.load import add_load_parser

    add_load_parser(subparsers)
    try:
        from bench.cli import add_bench_parser
    except ModuleNotFoundError as exc:  # bench/ not installed: no `laminar bench`
        if exc.name not in ("bench", "bench.cli"):
            raise
    else:
        add_bench_parser(subparsers)
    return parser


def _node_config(args: argparse.Namespace):
    from node.config import NodeConfig, load_config_file, parse_host_port, validate

    config = NodeConfig()
    if args.config:
        load_config_file(args.config, config)
    if args.datadir:
        config.datadir = args.datadir
    if args.rpc:
        config.rpc.host, config.rpc.port = parse_host_port(args.rpc)
    if args.genesis:
        config.genesis = args.genesis
    if args.validator_key:
        config.validator_key = args.validator_key
    if args.block_time is not None:
        config.consensus.block_time = args.block_time
    if args.log_level:
        config.log_level = args.log_level
    if args.executor:
        config.execution.executor = args.executor
    if args.workers is not None:
        config.execution.workers = args.workers
    if args.sync_mode:
        config.consensus.sync_mode = args.sync_mode
    if args.p2p_listen:
        config.p2p.listen = args.p2p_listen
    if args.bootnode:
        config.p2p.bootnodes = list(args.bootnode)
    validate(config)
    return config


async def _run_until_signalled(config, hooks=None) -> None:
    from node.service import run_node

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_node, config, hooks)
            async for signum in signals:
                logging.getLogger(__name__).info(
                    "received %s, shutting down", signal.Signals(signum).name
                )
                nursery.cancel_scope.cancel()
                break


def run_node_command(args: argparse.Namespace, hooks=None) -> int:
    """`laminar node`; `hooks` (node.service.NodeHooks) only from test harnesses."""
    from node.config import ConfigError

    try:
        config = _node_config(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Imported only now: py-evm takes about a second to import, and a bad command line
    # or config file should be reported at once.
    from node.service import NodeSetupError
    from storage.leveldb import DataDirInUseError

    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for noisy in ("eth", "hypercorn", "trie"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    from execution.gc_policy import freeze_startup_objects, tune_collector

    tune_collector()
    freeze_startup_objects()
    try:
        trio.run(_run_until_signalled, config, hooks)
    except Exception as exc:
        setup_error = _first_of(exc, (NodeSetupError, DataDirInUseError, OSError))
        if setup_error is None:
            raise
        print(f"error: {setup_error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _first_of(exc: BaseException, kinds: tuple) -> Optional[BaseException]:
    """The first exception of `kinds` in `exc` or, through nurseries, its exception groups."""
    if isinstance(exc, kinds):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_of(inner, kinds)
            if found is not None:
                return found
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "node":
        return run_node_command(args)
    if args.command == "replay":
        from tools.replay_cli import run_replay

        return run_replay(args)
    if args.command == "blocktest":
        from tools.blocktest_cli import run_blocktest

        return run_blocktest(args)
    if args.command == "devnet":
        from tools.devnet.cli import run_devnet

        return run_devnet(args)
    if args.command == "load":
        from tools.load import run_load_command

        return run_load_command(args)
    if args.command == "bench":
        from bench.cli import run_bench

        return run_bench(args)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
