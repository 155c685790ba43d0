"""Corrections to py-evm 0.12.1b1's EVM, applied once when the execution stage is imported
(in the node, in every Block-STM worker, in the tools), so every executor and eth_call
run the corrected rules. Each names the rule it restores; tests/test_evm_rules.py checks
each against the value the EIP gives. Re-check them on a py-evm upgrade: a fix that
py-evm has made itself should be dropped.
"""

from __future__ import annotations

import importlib
from typing import Any

from eth._utils.padding import zpad_right
from eth_utils import big_endian_to_int

# By module path: `eth.precompiles.modexp` as an attribute is the precompile function,
# which the package re-exports under the module's name. Any: its globals are patched below.
modexp_precompile: Any = importlib.import_module("eth.precompiles.modexp")


def modexp_result(data: bytes) -> int:
    """EIP-198: base ** exponent % modulus over the operands the input declares. py-evm
    answers 0 whenever the base is empty, but an empty base is 0 and 0 ** 0 is 1: with
    an empty base, an empty (or zero) exponent and a modulus above 1 the result is 1."""
    base_length, exponent_length, modulus_length = modexp_precompile.extract_lengths(data)
    if modulus_length == 0:
        return 0
    base_end = 96 + base_length
    exponent_end = base_end + exponent_length
    modulus = big_endian_to_int(zpad_right(data[exponent_end:exponent_end + modulus_length],
                                           to_size=modulus_length))
    if modulus == 0:
        return 0
    base = big_endian_to_int(zpad_right(data[96:base_end], to_size=base_length))
    exponent = big_endian_to_int(zpad_right(data[base_end:exponent_end], to_size=exponent_length))
    return pow(base, exponent, modulus)


def apply() -> None:
    # py-evm's precompile looks `_modexp` up as a module global at call time.
    modexp_precompile._modexp = modexp_result


apply()
