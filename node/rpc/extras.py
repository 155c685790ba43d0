"""The execution-apis methods beyond the core eth_ table, registered together so the node
wires them with one call: txpool_, debug_getRaw*, eth_fillTransaction and the signing
refusals, eth_config and eth_capabilities."""

from __future__ import annotations

from typing import Callable, Sequence

from eth.abc import BlockAPI

from node.rpc.eth_api import EthApi
from node.rpc.fill_api import register_fill_api
from node.rpc.node_info_api import register_node_info_api
from node.rpc.raw_api import no_bad_blocks, register_raw_api
from node.rpc.server import Methods
from node.rpc.txpool_api import register_txpool_api


def register_rpc_eth_extras(
    methods: Methods, api: EthApi, bad_blocks: Callable[[], Sequence[BlockAPI]] = no_bad_blocks
) -> None:
    """`bad_blocks`: the proposals the consensus engine refused (ConsensusEngine.bad_blocks)."""
    register_txpool_api(methods, api.mempool)
    register_raw_api(methods, api, bad_blocks)
    register_fill_api(methods, api)
    register_node_info_api(methods, api.chain)
