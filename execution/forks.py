"""Fork rules: the Ethereum mainnet schedule (for replay) and Laminar's own fork."""

from __future__ import annotations

from bisect import bisect_right
from typing import Type

from eth.abc import VirtualMachineAPI
from eth.chains.mainnet import MAINNET_VM_CONFIGURATION
from eth.vm.forks import PragueVM

# The newest fork py-evm implements: the rules of Laminar's own chain.
LAMINAR_VM: Type[VirtualMachineAPI] = PragueVM

# (first block number, VM class), ascending, as py-evm ships it: Frontier, Homestead
# (with the DAO-fork header check), TangerineWhistle, SpuriousDragon, Byzantium,
# Petersburg (Constantinople's block, without EIP-1283), Istanbul, MuirGlacier, Berlin,
# London, ArrowGlacier, GrayGlacier, Paris (15537394), Shanghai (17034870), Cancun
# (19426587), Prague (22431084).
MAINNET_SCHEDULE: tuple[tuple[int, Type[VirtualMachineAPI]], ...] = tuple(
    (int(number), vm) for number, vm in MAINNET_VM_CONFIGURATION
)
_STARTS = [number for number, _ in MAINNET_SCHEDULE]

# Proof-of-stake starts here: no block or uncle rewards from Paris on.
PARIS_BLOCK = next(n for n, vm in MAINNET_SCHEDULE if vm.fork == "paris")
BYZANTIUM_BLOCK = next(n for n, vm in MAINNET_SCHEDULE if vm.fork == "byzantium")


def mainnet_vm_for_block(number: int) -> Type[VirtualMachineAPI]:
    """The VM class whose rules apply to mainnet block `number`."""
    if number < 0:
        raise ValueError(f"block number must be non-negative, got {number}")
    return MAINNET_SCHEDULE[bisect_right(_STARTS, number) - 1][1]
