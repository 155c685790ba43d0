"""`laminar devnet` and `laminar devnet init`: the command line over tools/devnet/layout.py
(the files of a devnet) and tools/devnet/runner.py (running one)."""

from __future__ import annotations

import sys
from pathlib import Path

from node import genesis as genesis_module
from tools.devnet.layout import DEFAULT_SEED, DevnetError, init
from tools.devnet.runner import add_runner_arguments, run_devnet_network


def add_devnet_parser(subparsers) -> None:
    devnet = subparsers.add_parser(
        "devnet",
        help="local multi-validator networks: run one (no subcommand) or `init` one",
        description="With no subcommand: run a local BFT devnet of N validator processes "
        "(created with `devnet init` when DIR holds none), print their RPC URLs, show a live "
        "view of the chain; Ctrl-C stops them all. `devnet init` only writes the files.",
    )
    add_runner_arguments(devnet)
    sub = devnet.add_subparsers(dest="devnet_command", required=False, metavar="{init}")
    init_parser = sub.add_parser("init", help="write genesis, keys and configs for N validators")
    init_parser.add_argument("--validators", type=int, required=True, help="number of validators (n = 3f+1: 4, 7, ...)")
    init_parser.add_argument("--out", type=Path, required=True, help="output directory")
    init_parser.add_argument("--seed", default=DEFAULT_SEED, help="key derivation seed (same seed, same keys)")
    init_parser.add_argument("--base-rpc-port", type=int, default=8545)
    init_parser.add_argument("--base-p2p-port", type=int, default=30303)
    init_parser.add_argument("--host", default="127.0.0.1")
    init_parser.add_argument(
        "--hosts",
        type=lambda text: text.split(","),
        metavar="H0,H1,...",
        help="one host per validator (IPv4 address or DNS name) instead of --host: how the "
        "others reach it (e.g. fixed container IPs)",
    )
    init_parser.add_argument(
        "--listen-host", help="address every node binds RPC and p2p to (e.g. 0.0.0.0; default: its host)"
    )
    init_parser.add_argument(
        "--same-ports", action="store_true", help="every node on the base ports (one host per node)"
    )
    init_parser.add_argument(
        "--if-absent", action="store_true", help="do nothing (exit 0) when --out already holds a devnet"
    )
    init_parser.add_argument("--block-time", type=float, default=1.0)
    init_parser.add_argument("--timeout-propose", type=float, help="consensus.timeout_propose (default 3)")
    init_parser.add_argument("--timeout-prevote", type=float, help="consensus.timeout_prevote (default 1)")
    init_parser.add_argument("--timeout-precommit", type=float, help="consensus.timeout_precommit (default 1)")
    init_parser.add_argument("--max-block-txs", type=int, help="consensus.max_block_txs")
    init_parser.add_argument("--gas-limit", type=int, help="the genesis block gas limit (default 30,000,000)")
    init_parser.add_argument("--mempool-max-per-sender", type=int, help="mempool.max_per_sender")
    init_parser.add_argument("--mempool-max-pool-size", type=int, help="mempool.max_pool_size")


def run_devnet(args) -> int:
    if args.devnet_command is None:
        return run_devnet_network(args)
    if args.devnet_command != "init":
        return 2
    if args.if_absent and (Path(args.out) / "genesis.json").exists():
        print(f"{Path(args.out).resolve()} already holds a devnet: left as it is")
        return 0
    timeouts = {
        name: value
        for name, value in (
            ("timeout_propose", args.timeout_propose),
            ("timeout_prevote", args.timeout_prevote),
            ("timeout_precommit", args.timeout_precommit),
        )
        if value is not None
    }
    mempool = {
        name: value
        for name, value in (
            ("max_per_sender", args.mempool_max_per_sender),
            ("max_pool_size", args.mempool_max_pool_size),
        )
        if value is not None
    }
    try:
        nodes = init(
            args.out,
            args.validators,
            seed=args.seed,
            base_rpc_port=args.base_rpc_port,
            base_p2p_port=args.base_p2p_port,
            host=args.host,
            block_time=args.block_time,
            timeouts=timeouts,
            max_block_txs=args.max_block_txs,
            mempool=mempool,
            hosts=args.hosts,
            listen_host=args.listen_host,
            same_ports=args.same_ports,
            gas_limit=args.gas_limit,
        )
    except (DevnetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    print(f"devnet of {len(nodes)} validators in {out} (chain id {genesis_module.DEV_CHAIN_ID})")
    for node in nodes:
        print(f"  node{node.index}: validator 0x{node.address.hex()}  rpc {node.rpc_url}  p2p {node.multiaddr}")
    print(f"run each with: laminar node --config {out}/node<i>/config.toml")
    return 0
