"""The Ethereum consensus tests (BlockchainTests fixtures) run through Laminar's executors.

A fixture file (ethereum/tests `BlockchainTests/`, execution-spec-tests
`blockchain_tests/`) maps test names to: `network` (the fork), `pre` (the genesis
accounts), `genesisBlockHeader` / `genesisRLP`, `blocks` (each an `rlp`, and
`expectException` when the block must be rejected), `lastblockhash`, and `postState` or
`postStateHash`. A test passes when every block marked invalid is rejected, every other
block is accepted, the head is `lastblockhash` and the head's state is the post-state.

Blocks may build side chains: every accepted block is kept by hash, its parent is looked
up by hash, and the head follows the greatest total difficulty (after the merge, where
difficulty is 0, the newest accepted block).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import rlp
from eth.abc import BlockAPI, BlockHeaderAPI
from eth.db.account import AccountDB
from eth_utils import to_canonical_address

from execution.block_import import BlockRejected, import_block
from execution.executor import Executor, StateView
from execution.forks import ForkSchedule, UnknownNetworkError, fork_schedule
from execution.overlay import OverlayDB
from execution.prestate import PrestateError, load_prestate

DEFAULT_CHAIN_ID = 1
BLOCKHASH_WINDOW = 256
HEADER_NUMBER_FIELD = 8  # positions in a header's RLP list, the same in every fork
HEADER_TIMESTAMP_FIELD = 11

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"


class BlockTestInputError(Exception):
    """A path that holds no usable fixtures: missing, unreadable, not JSON, no tests."""


@dataclass(frozen=True)
class Difference:
    """The first thing that is not as the fixture says."""

    field: str
    want: str
    got: str

    def __str__(self) -> str:
        return f"{self.field}: want {self.want}, got {self.got}"


@dataclass
class BlockTestResult:
    name: str
    path: str
    network: str
    status: str
    difference: Optional[Difference] = None
    reason: str = ""  # why skipped, or what broke
    # Blocks this run rejected, with why: "block 2: transaction 0: nonce too low ...".
    rejections: list[str] = field(default_factory=list)
    blocks: int = 0
    seconds: float = 0.0
    state_root: str = ""  # the head's state root once every block is imported

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "name": self.name,
            "path": self.path,
            "network": self.network,
            "status": self.status,
            "blocks": self.blocks,
            "seconds": round(self.seconds, 4),
            "rejections": self.rejections,
            "stateRoot": self.state_root,
        }
        if self.difference is not None:
            record["difference"] = {
                "field": self.difference.field,
                "want": self.difference.want,
                "got": self.difference.got,
            }
        if self.reason:
            record["reason"] = self.reason
        return record


@dataclass(frozen=True)
class BlockTest:
    name: str
    path: str
    fixture: Mapping[str, Any]

    @property
    def network(self) -> str:
        network = self.fixture.get("network")
        return network if isinstance(network, str) else "?"


# ------------------------------------------------------------------------- finding


def fixture_files(paths: Sequence[str | Path]) -> list[Path]:
    """Every .json file under `paths` (files as given, folders recursively), sorted."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.json") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise BlockTestInputError(f"{path}: no such file or directory")
    if not files:
        raise BlockTestInputError(
            f"no .json fixture files under {', '.join(str(p) for p in paths)}"
        )
    return files


def load_tests(path: Path) -> list[BlockTest]:
    """The tests of one fixture file, in file order."""
    try:
        with open(path, "rb") as f:
            content = json.load(f)
    except OSError as exc:
        raise BlockTestInputError(f"{path}: cannot read: {exc}") from None
    except ValueError as exc:
        raise BlockTestInputError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(content, dict):
        raise BlockTestInputError(f"{path}: expected an object of named tests")
    return [
        BlockTest(name, str(path), fixture)
        for name, fixture in content.items()
        if isinstance(fixture, dict) and "blocks" in fixture
    ]


def iter_tests(paths: Sequence[str | Path], name_filter: str = "") -> Iterator[BlockTest]:
    for path in fixture_files(paths):
        for test in load_tests(path):
            if name_filter in test.name or name_filter in test.path:
                yield test


# ------------------------------------------------------------------------ decoding


def _hex_bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"{what}: expected 0x-hex, got {str(value)[:40]!r}")
    return bytes.fromhex(value[2:])


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _big_endian(value: Any) -> int:
    return int.from_bytes(value, "big") if isinstance(value, bytes) else 0


def decode_block(schedule: ForkSchedule, raw: bytes) -> tuple[BlockAPI, type]:
    """The block in `raw`, decoded with the block class of the fork its header's number
    and timestamp fall in; ValueError on anything undecodable."""
    try:
        items = rlp.decode(raw)
        header_items = items[0]
        number = _big_endian(header_items[HEADER_NUMBER_FIELD])
        timestamp = _big_endian(header_items[HEADER_TIMESTAMP_FIELD])
    except Exception as exc:  # fixture bytes: any decoder error means "undecodable"
        raise ValueError(f"undecodable block RLP: {type(exc).__name__}: {exc}") from None
    vm_class = schedule.vm_for(number, timestamp)
    try:
        block = rlp.decode(raw, sedes=vm_class.get_block_class())
    except Exception as exc:
        raise ValueError(
            f"not a {vm_class.fork} block: {type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from None
    return block, vm_class


# ------------------------------------------------------------------------- running


@dataclass
class _Chain:
    """Every accepted block of one test, by hash, and the nodes of all their states."""

    nodes: dict[bytes, bytes]
    headers: dict[bytes, BlockHeaderAPI]
    total_difficulty: dict[bytes, int]
    head: BlockHeaderAPI

    def block_hashes_before(self, parent: BlockHeaderAPI) -> dict[int, bytes]:
        hashes: dict[int, bytes] = {}
        header: Optional[BlockHeaderAPI] = parent
        while header is not None and len(hashes) < BLOCKHASH_WINDOW:
            hashes[header.block_number] = header.hash
            header = self.headers.get(header.parent_hash)
        return hashes

    def accept(self, header: BlockHeaderAPI) -> None:
        self.headers[header.hash] = header
        td = self.total_difficulty[header.parent_hash] + header.difficulty
        self.total_difficulty[header.hash] = td
        head_td = self.total_difficulty[self.head.hash]
        if td > head_td or (header.difficulty == 0 and td == head_td):
            self.head = header


def _chain_id(fixture: Mapping[str, Any]) -> int:
    config = fixture.get("config")
    if isinstance(config, dict) and isinstance(config.get("chainid"), str):
        return int(config["chainid"], 16)
    return DEFAULT_CHAIN_ID


def run_test(test: BlockTest, executor: Executor) -> BlockTestResult:
    """Run one test on `executor`; never raises for what the fixture holds."""
    started = time.perf_counter()
    result = BlockTestResult(test.name, test.path, test.network, FAILED)
    try:
        _run(test, executor, result)
    except UnknownNetworkError as exc:
        result.status, result.reason = SKIPPED, str(exc)
    except (ValueError, KeyError, TypeError, PrestateError) as exc:
        result.status = FAILED
        result.reason = f"bad fixture: {type(exc).__name__}: {exc}"
        result.difference = Difference("fixture", "a well-formed test", result.reason)
    result.seconds = time.perf_counter() - started
    return result


def _run(test: BlockTest, executor: Executor, result: BlockTestResult) -> None:
    fixture = test.fixture
    schedule = fork_schedule(test.network)
    chain_id = _chain_id(fixture)

    genesis, _ = decode_block(schedule, _hex_bytes(fixture["genesisRLP"], "genesisRLP"))
    genesis_header = genesis.header
    expected_genesis = fixture.get("genesisBlockHeader", {}).get("hash")
    if expected_genesis is not None and _hex(genesis_header.hash) != expected_genesis.lower():
        result.difference = Difference("genesis hash", expected_genesis, _hex(genesis_header.hash))
        return
    nodes, genesis_root = load_prestate(fixture["pre"])
    if genesis_root != genesis_header.state_root:
        result.difference = Difference(
            "genesis stateRoot", _hex(genesis_header.state_root), _hex(genesis_root)
        )
        return
    chain = _Chain(
        nodes=nodes,  # load_prestate's own dict: every accepted block's nodes join it
        headers={genesis_header.hash: genesis_header},
        total_difficulty={genesis_header.hash: genesis_header.difficulty},
        head=genesis_header,
    )

    for index, entry in enumerate(fixture["blocks"], start=1):
        result.blocks = index
        must_fail = "expectException" in entry
        reason = _import(schedule, chain, executor, entry, chain_id)
        if reason is not None:
            result.rejections.append(f"block {index}: {reason}")
            if not must_fail:
                result.difference = Difference(f"block {index}", "valid", f"rejected: {reason}")
                return
        elif must_fail:
            result.difference = Difference(
                f"block {index}", f"rejected ({entry['expectException']})", "accepted"
            )
            return

    result.state_root = _hex(chain.head.state_root)
    want_head = fixture.get("lastblockhash")
    if want_head is not None and _hex(chain.head.hash) != want_head.lower():
        result.difference = Difference("lastblockhash", want_head, _hex(chain.head.hash))
        return
    difference = _post_state_difference(fixture, chain.nodes, chain.head.state_root)
    if difference is not None:
        result.difference = difference
        return
    result.status = PASSED


def _import(
    schedule: ForkSchedule, chain: _Chain, executor: Executor, entry: Mapping[str, Any],
    chain_id: int,
) -> Optional[str]:
    """Import one fixture block; None when accepted, else why it was rejected."""
    try:
        block, vm_class = decode_block(schedule, _hex_bytes(entry["rlp"], "rlp"))
    except ValueError as exc:
        return str(exc)
    header = block.header
    if header.hash in chain.headers:
        return None  # already imported: importing a known block is a no-op
    parent = chain.headers.get(header.parent_hash)
    if parent is None:
        return f"unknown parent 0x{header.parent_hash.hex()}"
    try:
        imported = import_block(
            vm_class, block, parent, executor,
            StateView(nodes=chain.nodes, state_root=parent.state_root),
            chain_id, chain.block_hashes_before(parent),
        )
    except BlockRejected as exc:
        return exc.reason
    chain.nodes.update(imported.result.state_nodes)
    chain.accept(header)
    return None


def _post_state_difference(
    fixture: Mapping[str, Any], nodes: Mapping[bytes, bytes], state_root: bytes
) -> Optional[Difference]:
    want_root = fixture.get("postStateHash")
    if isinstance(want_root, str):
        if _hex(state_root) != want_root.lower():
            return Difference("postStateHash", want_root, _hex(state_root))
        return None
    post = fixture.get("postState")
    if not isinstance(post, dict):
        return None
    accounts = AccountDB(OverlayDB(nodes), state_root)
    for address_text in sorted(post):
        want = post[address_text]
        where = f"postState[{address_text}]"
        address = to_canonical_address(address_text)
        if not accounts.account_exists(address):
            return Difference(where, "an account", "no account")
        for name, got in (
            ("balance", accounts.get_balance(address)),
            ("nonce", accounts.get_nonce(address)),
        ):
            expected = int(want.get(name, "0x0"), 16)
            if got != expected:
                return Difference(f"{where}.{name}", hex(expected), hex(got))
        want_code = want.get("code", "0x").lower()
        got_code = _hex(accounts.get_code(address))
        if got_code != want_code:
            return Difference(f"{where}.code", want_code[:80], got_code[:80])
        for slot_text, value_text in sorted((want.get("storage") or {}).items()):
            got_value = accounts.get_storage(address, int(slot_text, 16))
            if got_value != int(value_text, 16):
                return Difference(f"{where}.storage[{slot_text}]", value_text, hex(got_value))
    _, want_state_root = load_prestate(post)
    if want_state_root != state_root:
        return Difference(
            "postState root (an account or slot the fixture does not list)",
            _hex(want_state_root), _hex(state_root),
        )
    return None
