"""Fork rules: the Ethereum mainnet schedule (for replay), Laminar's own fork, and the
forks of the consensus test fixtures by name (for blocktest)."""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import Optional, Type

from eth.abc import VirtualMachineAPI
from eth.chains.mainnet import MAINNET_VM_CONFIGURATION
from eth.vm.forks import (
    ArrowGlacierVM,
    BerlinVM,
    ByzantiumVM,
    CancunVM,
    ConstantinopleVM,
    FrontierVM,
    GrayGlacierVM,
    HomesteadVM,
    IstanbulVM,
    LondonVM,
    MuirGlacierVM,
    ParisVM,
    PetersburgVM,
    PragueVM,
    ShanghaiVM,
    SpuriousDragonVM,
    TangerineWhistleVM,
)

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


# ---------------------------------------------------------------- forks by name

# The names the consensus test fixtures (ethereum/tests, execution-spec-tests) give the
# forks, and py-evm's VM for each. Homestead is without the DAO-fork header rule: that
# is mainnet's block 1,920,000, not a rule of the fork.
FORKS_BY_NAME: dict[str, Type[VirtualMachineAPI]] = {
    "Frontier": FrontierVM,
    "Homestead": HomesteadVM.configure(support_dao_fork=False),
    "EIP150": TangerineWhistleVM,
    "TangerineWhistle": TangerineWhistleVM,
    "EIP158": SpuriousDragonVM,
    "SpuriousDragon": SpuriousDragonVM,
    "Byzantium": ByzantiumVM,
    "Constantinople": ConstantinopleVM,
    "ConstantinopleFix": PetersburgVM,
    "Petersburg": PetersburgVM,
    "Istanbul": IstanbulVM,
    "MuirGlacier": MuirGlacierVM,
    "Berlin": BerlinVM,
    "London": LondonVM,
    "ArrowGlacier": ArrowGlacierVM,
    "GrayGlacier": GrayGlacierVM,
    "Merge": ParisVM,
    "Paris": ParisVM,
    "Shanghai": ShanghaiVM,
    "Cancun": CancunVM,
    "Prague": PragueVM,
}
# "CancunToPragueAtTime15k", "BerlinToLondonAt5": a transition network, the second fork
# from that timestamp (thousands with a k) or block number on.
_TRANSITION = re.compile(r"^(?P<before>[A-Za-z0-9]+?)To(?P<after>[A-Za-z0-9]+?)At(?P<time>Time)?(?P<at>\d+)(?P<k>k?)$")


class UnknownNetworkError(ValueError):
    """A network name this node has no fork rules for."""


@dataclass(frozen=True)
class ForkSchedule:
    """Which VM applies to a block of a test network: one fork, or a transition."""

    first: Type[VirtualMachineAPI]
    second: Optional[Type[VirtualMachineAPI]] = None
    at: int = 0
    by_timestamp: bool = False

    def vm_for(self, number: int, timestamp: int) -> Type[VirtualMachineAPI]:
        if self.second is None:
            return self.first
        position = timestamp if self.by_timestamp else number
        return self.second if position >= self.at else self.first


def fork_schedule(network: str) -> ForkSchedule:
    """The fork schedule a test fixture's `network` names; UnknownNetworkError otherwise."""
    if network in FORKS_BY_NAME:
        return ForkSchedule(FORKS_BY_NAME[network])
    match = _TRANSITION.match(network)
    if match and match["before"] in FORKS_BY_NAME and match["after"] in FORKS_BY_NAME:
        at = int(match["at"]) * (1000 if match["k"] else 1)
        return ForkSchedule(
            FORKS_BY_NAME[match["before"]], FORKS_BY_NAME[match["after"]], at,
            by_timestamp=bool(match["time"]),
        )
    raise UnknownNetworkError(
        f"no fork rules for network {network!r} (known: {', '.join(FORKS_BY_NAME)}, "
        "and transitions such as CancunToPragueAtTime15k)"
    )
