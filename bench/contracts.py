"""The bench's Vyper contracts, compiled once and cached on disk by source hash.

`compiled("ERC20")` returns the runtime code and storage layout of
`bench/contracts/ERC20.vy`. The first call for a given source compiles it with the
`vyper` package (0.4.x) and writes `<cache dir>/<name>-<sha256 of source>.json`; later
runs (and runs without vyper installed) read that file. The cache dir is `--cache-dir`,
else `$LAMINAR_BENCH_CACHE`, else `$XDG_CACHE_HOME/laminar/bench` (`~/.cache/...`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from eth_utils import keccak

SOURCE_DIR = Path(__file__).resolve().parent / "contracts"
CACHE_ENV = "LAMINAR_BENCH_CACHE"
_CACHE_FORMAT = 1


class ContractBuildError(RuntimeError):
    """A bench contract cannot be compiled (no vyper and no cached build, or a bad source)."""


@dataclass(frozen=True)
class CompiledContract:
    name: str
    runtime: bytes  # deployed code
    storage_slots: dict[str, int]  # storage variable -> first slot
    vyper_version: str

    def slot(self, variable: str) -> int:
        try:
            return self.storage_slots[variable]
        except KeyError:
            raise ContractBuildError(
                f"{self.name}: no storage variable {variable!r} in the layout"
            ) from None


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "laminar" / "bench"


def mapping_slot(base_slot: int, key: bytes | int) -> int:
    """Storage slot of `map[key]` for a Vyper 0.4 `HashMap` at `base_slot`.

    Vyper hashes the slot first, then the key: keccak256(slot ++ key), each as 32 bytes
    (Solidity uses the opposite order). Addresses are left-padded to 32 bytes.
    """
    key_int = int.from_bytes(key, "big") if isinstance(key, bytes) else key
    return int.from_bytes(
        keccak(base_slot.to_bytes(32, "big") + key_int.to_bytes(32, "big")), "big"
    )


def _compile(source: str) -> tuple[bytes, dict[str, int], str]:
    try:
        import vyper
    except ImportError:
        raise ContractBuildError(
            "compiling the bench contracts needs the vyper compiler "
            "(pip install vyper==0.4.3), or a cached build in the cache dir"
        ) from None
    try:
        out = vyper.compile_code(source, output_formats=["bytecode_runtime", "layout"])
    except Exception as exc:  # vyper's own exception tree
        raise ContractBuildError(f"vyper failed: {exc}") from None
    layout = out["layout"]
    storage = layout.get("storage_layout", layout)
    slots = {name: int(entry["slot"]) for name, entry in storage.items()}
    runtime_hex = out["bytecode_runtime"]
    runtime = bytes.fromhex(runtime_hex[2:] if runtime_hex.startswith("0x") else runtime_hex)
    return runtime, slots, str(getattr(vyper, "__version__", "unknown"))


_memo: dict[tuple[str, str], CompiledContract] = {}


def compiled(name: str, cache_dir: Optional[Path] = None) -> CompiledContract:
    """Runtime code and storage layout of `bench/contracts/<name>.vy` (cached)."""
    path = SOURCE_DIR / f"{name}.vy"
    try:
        source = path.read_text()
    except OSError as exc:
        raise ContractBuildError(f"cannot read {path}: {exc}") from None
    digest = hashlib.sha256(source.encode()).hexdigest()
    memo_key = (name, digest)
    if memo_key in _memo:
        return _memo[memo_key]

    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_file = directory / f"{name}-{digest[:32]}.json"
    contract: Optional[CompiledContract] = None
    try:
        data = json.loads(cache_file.read_text())
        if data.get("format") == _CACHE_FORMAT and data.get("source_sha256") == digest:
            contract = CompiledContract(
                name=name,
                runtime=bytes.fromhex(data["runtime"]),
                storage_slots={k: int(v) for k, v in data["storage_slots"].items()},
                vyper_version=data.get("vyper_version", "unknown"),
            )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        contract = None

    if contract is None:
        runtime, slots, version = _compile(source)
        contract = CompiledContract(name, runtime, slots, version)
        record = {
            "format": _CACHE_FORMAT,
            "name": name,
            "source_sha256": digest,
            "vyper_version": version,
            "runtime": runtime.hex(),
            "storage_slots": slots,
        }
        try:  # best effort: a read-only cache dir only costs a recompile next time
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}-", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            os.replace(tmp, cache_file)
        except OSError:
            pass
    _memo[memo_key] = contract
    return contract
