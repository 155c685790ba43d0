"""debug_getBadBlocks in a 4-validator network of real `laminar node` processes.

Validator 0 runs the test harness's lying proposer (tests/harness_node.py --lie-bal
value): every block it proposes carries an access list with a wrong post-value. The
honest validators execute it, refuse it, and must then list those blocks, and only
those, in debug_getBadBlocks: the block, its hash and its RLP, none of them on the chain.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import rlp
from eth_utils import keccak
from test_bal_network import Trickle
from test_bft_network import network, rpc, wait_height, wait_until  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

LIAR = 0
HONEST = (1, 2, 3)
BAD_BLOCK_TIMEOUT_S = 300
LOG_LAG_S = 15
SPEC_DIR = Path(os.environ.get("LAMINAR_EXECUTION_APIS", "/work/shared/conformance/execution-apis"))


def schema_violations(result: list) -> list[str]:
    """debug_getBadBlocks' result against the execution-apis schema, where the spec is
    present (tests/test_rpc_conformance.py loads it; it skips without it)."""
    if not (SPEC_DIR / "src" / "schemas").is_dir():
        return []
    from test_rpc_conformance import load_spec, violations_of

    return violations_of(load_spec(), "debug_getBadBlocks", [], result)


def told_lies(text: str) -> set[str]:
    """Hashes (0x-hex) of the blocks the liar published with a wrong access list."""
    return {"0x" + block for block in re.findall(
        r"FAULT INJECTION: lying access list \(\w+\) at height \d+ round \d+: block 0x([0-9a-f]{64})",
        text)}


def evidence(node) -> list[str]:
    return [line for line in node.text().splitlines() if "proposed an invalid block" in line]


def test_refused_proposals_are_the_bad_blocks(network) -> None:  # noqa: F811
    net = network(start=())
    net.start(LIAR, harness=("--partitions", "--lie-bal", "value"))
    net.start(*HONEST)
    honest = [net.nodes[i] for i in HONEST]
    wait_height(net.running(), 1)

    def some_bad_block() -> bool:
        return any(rpc(node.url, "debug_getBadBlocks") for node in honest)

    with Trickle(honest[0].url):  # every proposal carries transactions to lie about
        wait_until(some_bad_block, "an honest validator to list a refused proposal",
                   timeout=BAD_BLOCK_TIMEOUT_S)

    # Every node lists only lies, each as it was told. (The liar may list its own: a
    # lying block reaching it back through gossip is refused like anyone else's.)
    listed = 0
    for node in net.running():
        bad_blocks = rpc(node.url, "debug_getBadBlocks")
        assert not schema_violations(bad_blocks)
        for bad in bad_blocks:
            listed += node is not net.nodes[LIAR]
            # The liar logs each lie as it publishes it; its output may reach us later.
            wait_until(lambda h=bad["hash"]: h in told_lies(net.text(LIAR)),
                       f"the liar's log to show {bad['hash']} as a lie: {evidence(node)}",
                       timeout=LOG_LAG_S)
            assert bad["block"]["hash"] == bad["hash"]
            fields = rlp.decode(bytes.fromhex(bad["rlp"][2:]))
            assert "0x" + keccak(rlp.encode(fields[0])).hex() == bad["hash"]
            assert len(fields[1]) == len(bad["block"]["transactions"]) > 0
            assert rpc(node.url, "eth_getBlockByHash", bad["hash"], False) is None  # never committed
    assert listed > 0
