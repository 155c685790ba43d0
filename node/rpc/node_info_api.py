"""What this node runs and what it holds: eth_config (EIP-7910) and eth_capabilities.

Laminar has one fork from genesis on: py-evm's newest (execution.forks.LAMINAR_VM,
Prague). So eth_config's `current` is that fork, active from the genesis timestamp,
and `next` / `last` are null (no fork is scheduled). The fork id is EIP-6122's /
EIP-2124's FORK_HASH: CRC32 of the genesis hash, with no fork after genesis to fold in.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable

from eth.vm.forks.cancun.constants import BEACON_ROOTS_ADDRESS, GAS_PER_BLOB
from eth.vm.forks.prague.constants import (
    BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE,
    CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS,
    DEPOSIT_CONTRACT_ADDRESS,
    HISTORY_STORAGE_ADDRESS,
    MAX_BLOB_GAS_PER_BLOCK,
    TARGET_BLOB_GAS_PER_BLOCK,
    WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS,
)

from node.chain import Chain
from node.rpc import encoding
from node.rpc.server import Methods

# EIP-7910's names of the precompiles, by address.
PRECOMPILE_NAMES: dict[int, str] = {
    0x01: "ECREC",
    0x02: "SHA256",
    0x03: "RIPEMD160",
    0x04: "ID",
    0x05: "MODEXP",
    0x06: "BN254_ADD",
    0x07: "BN254_MUL",
    0x08: "BN254_PAIRING",
    0x09: "BLAKE2F",
    0x0A: "KZG_POINT_EVALUATION",
    0x0B: "BLS12_G1ADD",
    0x0C: "BLS12_G1MSM",
    0x0D: "BLS12_G2ADD",
    0x0E: "BLS12_G2MSM",
    0x0F: "BLS12_PAIRING_CHECK",
    0x10: "BLS12_MAP_FP_TO_G1",
    0x11: "BLS12_MAP_FP2_TO_G2",
}

# EIP-7910's names of Prague's system contracts. Laminar runs one only where the genesis
# put its code (execution/rules.py checks the code before each system call), so
# eth_config lists the ones with code in the head state.
SYSTEM_CONTRACTS: dict[str, bytes] = {
    "BEACON_ROOTS_ADDRESS": BEACON_ROOTS_ADDRESS,
    "CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS": CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS,
    "DEPOSIT_CONTRACT_ADDRESS": DEPOSIT_CONTRACT_ADDRESS,
    "HISTORY_STORAGE_ADDRESS": HISTORY_STORAGE_ADDRESS,
    "WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS": WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS,
}

# Which method each eth_capabilities resource stands for: a resource is disabled when
# the node does not serve its method (eth_getProof comes with another module).
STATE_PROOF_METHOD = "eth_getProof"


def fork_id(genesis_hash: bytes) -> str:
    """EIP-2124 FORK_HASH for a chain with every fork at genesis: CRC32(genesis hash)."""
    return "0x" + zlib.crc32(genesis_hash).to_bytes(4, "big").hex()


def precompiles(chain: Chain) -> dict[str, str]:
    computation = chain.vm_class.get_state_class().computation_class
    found = {}
    for address in computation._precompiles:
        number = int.from_bytes(address, "big")
        found[PRECOMPILE_NAMES.get(number, f"PRECOMPILE_{number:#x}")] = encoding.data(address)
    return dict(sorted(found.items()))


def system_contracts(chain: Chain) -> dict[str, str]:
    state = chain.head_state()
    return {
        name: encoding.data(address)
        for name, address in sorted(SYSTEM_CONTRACTS.items())
        if state.has_code(address)
    }


def eth_config(chain: Chain) -> dict[str, Any]:
    genesis = chain.header_by_number(0)
    assert genesis is not None  # every chain has its genesis
    current = {
        "activationTime": genesis.timestamp,
        "blobSchedule": {
            "baseFeeUpdateFraction": BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE,
            "max": MAX_BLOB_GAS_PER_BLOCK // GAS_PER_BLOB,
            "target": TARGET_BLOB_GAS_PER_BLOCK // GAS_PER_BLOB,
        },
        "chainId": encoding.quantity(chain.chain_id),
        "forkId": fork_id(genesis.hash),
        "precompiles": precompiles(chain),
        "systemContracts": system_contracts(chain),
    }
    return {"current": current, "next": None, "last": None}


def eth_capabilities(chain: Chain, served: Callable[[str], bool]) -> dict[str, Any]:
    """An archive node: every block, receipt, log and state from genesis on, never pruned
    (no deleteStrategy); state proofs only where eth_getProof is served."""
    head = chain.head
    kept = {"disabled": False, "oldestBlock": encoding.quantity(0)}
    proofs = dict(kept) if served(STATE_PROOF_METHOD) else {"disabled": True}
    return {
        "head": {"number": encoding.quantity(head.block_number), "hash": encoding.data(head.hash)},
        "state": dict(kept),
        "tx": dict(kept),
        "logs": dict(kept),
        "receipts": dict(kept),
        "blocks": dict(kept),
        "stateproofs": proofs,
    }


def register_node_info_api(methods: Methods, chain: Chain) -> None:
    methods.register("eth_config", lambda: eth_config(chain))
    methods.register(
        "eth_capabilities", lambda: eth_capabilities(chain, lambda name: name in methods)
    )
