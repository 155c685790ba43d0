"""Compile the project's contracts (bench/contracts) with vyper, once per process."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import vyper

CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "bench" / "contracts"


@dataclass(frozen=True)
class Compiled:
    abi: list
    bytecode: str  # 0x-hex init code
    bytecode_runtime: str  # 0x-hex deployed code
    storage_layout: dict  # variable name -> {"slot": int, "type": str, "n_slots": int}


@lru_cache(maxsize=None)
def compile_contract(name: str) -> Compiled:
    source = (CONTRACTS_DIR / f"{name}.vy").read_text()
    out = vyper.compile_code(
        source, output_formats=["abi", "bytecode", "bytecode_runtime", "layout"]
    )
    layout = out["layout"]
    storage = layout.get("storage_layout", layout)
    return Compiled(
        abi=out["abi"],
        bytecode=out["bytecode"],
        bytecode_runtime=out["bytecode_runtime"],
        storage_layout=storage,
    )
