"""Block-level access lists (EIP-7928): the codec refuses every non-canonical encoding,
the sequential executor and Block-STM build byte-identical lists, and a block imported
with its list in parallel gives exactly sequential's results, or is refused, naming
why, when the list lies."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import rlp
from bal_lies import LIES
from eth.vm.forks import ByzantiumVM
from eth_utils import keccak
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_blockstm_properties import PRE, _block, _materialize, op

from execution.bal.apply import apply_access_list
from execution.bal.builder import AccessListUnsupported
from execution.bal.codec import (
    AccessListDecodeError,
    AccountChanges,
    BalanceChange,
    BlockAccessList,
    CodeChange,
    NonceChange,
    SlotChanges,
    StorageChange,
    access_list_json,
)
from execution.bal.importer import AccessListMismatch, BALImportExecutor
from execution.blockstm import BlockSTMExecutor
from execution.blockstm.config import BlockSTMConfig
from execution.executor import BlockInput, ExecutionResult, InvalidBlockError, StateView
from execution.forks import mainnet_vm_for_block
from execution.prestate import load_prestate
from execution.replay import ReplayInputError, read_json, replay_block_dir
from execution.sequential import SequentialExecutor

REPO = Path(__file__).resolve().parent.parent
MAINNET = REPO / "tests" / "data" / "mainnet"
MAINNET_BLOCKS = sorted((p.name for p in MAINNET.iterdir() if p.is_dir()), key=int)
# Before Cancun, SELFDESTRUCT wiped a contract's whole storage; these blocks wipe a
# contract that had storage, which no access list can name slot by slot.
NO_ACCESS_LIST = {"116525", "1796867", "8889776"}


@pytest.fixture(scope="module")
def blockstm():
    with BlockSTMExecutor(2, force_parallel=True) as executor:
        yield executor


@pytest.fixture(scope="module")
def importer():
    with BALImportExecutor(2, force_parallel=True) as executor:
        yield executor


def _summary(result: ExecutionResult) -> tuple:
    return ([r.encode() for r in result.receipts], result.gas_used, result.logs_bloom,
            result.post_state_root, result.requests)


def _built(executor, block: BlockInput, pre: StateView) -> ExecutionResult:
    return executor.execute(dataclasses.replace(block, build_access_list=True), pre)


# ---------------------------------------------------------------------------- codec


def _sample() -> BlockAccessList:
    return BlockAccessList((
        AccountChanges(
            address=b"\x01" * 20,
            storage_changes=(SlotChanges(1, (StorageChange(0, 5), StorageChange(2, 0))),
                             SlotChanges(0x100, (StorageChange(1, 2**256 - 1),))),
            storage_reads=(2, 3),
            balance_changes=(BalanceChange(1, 10**18),),
        ),
        AccountChanges(address=b"\x02" * 20),
    ))


def test_empty_list_is_rlp_of_nothing() -> None:
    empty = BlockAccessList()
    assert empty.encode() == b"\xc0"
    assert empty.hash() == keccak(b"\xc0")
    assert BlockAccessList.decode(b"\xc0") == empty


def test_encoding_round_trips_and_matches_pyrlp() -> None:
    sample = _sample()
    encoded = sample.encode()
    items = rlp.decode(encoded)
    assert rlp.encode(items) == encoded  # the fast encoder writes canonical RLP
    assert BlockAccessList.decode(encoded) == sample
    assert sample.hash() == keccak(encoded)
    json_form = access_list_json(sample)
    assert json_form[0]["storageChanges"][0]["changes"][1] == {
        "index": "0x2", "value": "0x" + "00" * 32}
    assert json_form[1] == {"address": "0x" + "02" * 20, "storageChanges": [],
                            "storageReads": [], "balanceChanges": [], "nonceChanges": [],
                            "codeChanges": []}


def _account_item(address: bytes = b"\x01" * 20, slots=(), reads=(), balances=(),
                  nonces=(), codes=()) -> list:
    return [address, list(slots), list(reads), list(balances), list(nonces), list(codes)]


@pytest.mark.parametrize("items, reason", [
    ([_account_item(b"\x02" * 20), _account_item(b"\x01" * 20)], "ascending address"),
    ([_account_item(), _account_item()], "ascending address"),
    ([_account_item(slots=[[2, [[1, 1]]], [1, [[1, 1]]]])], "ascending slot"),
    ([_account_item(slots=[[1, [[2, 1], [1, 1]]]])], "ascending index"),
    ([_account_item(slots=[[1, []]])], "empty change list"),
    ([_account_item(slots=[[1, [[1, 1]]]], reads=[1])], "both read-only and changed"),
    ([_account_item(reads=[3, 3])], "ascending slot"),
    ([_account_item(balances=[[1, 5], [1, 6]])], "ascending index"),
    ([_account_item(address=b"\x01" * 19)], "20 bytes"),
    ([_account_item()[:5]], "6 items"),
    ([_account_item(nonces=[[1, 2**64]])], "above"),
    ([_account_item(balances=[[2**32, 1]])], "above"),
    ([_account_item(balances=[[1, [1]]])], "integer"),
    (b"\x01" * 20, "must be a list"),
])
def test_decoder_refuses_non_canonical_lists(items, reason: str) -> None:
    with pytest.raises(AccessListDecodeError, match=reason):
        BlockAccessList.decode(rlp.encode(items))


def test_decoder_refuses_bad_bytes() -> None:
    encoded = _sample().encode()
    with pytest.raises(AccessListDecodeError, match="not valid RLP"):
        BlockAccessList.decode(encoded + b"\x00")  # trailing bytes
    with pytest.raises(AccessListDecodeError, match="not valid RLP"):
        BlockAccessList.decode(encoded[:-1])
    with pytest.raises(AccessListDecodeError, match="leading zero"):
        BlockAccessList.decode(rlp.encode([_account_item(balances=[[b"\x00\x01", 5]])]))
    # A long-form length where the short form fits.
    with pytest.raises(AccessListDecodeError):
        BlockAccessList.decode(b"\xf8\x00")
    with pytest.raises(AccessListDecodeError, match="exceeds the limit"):
        BlockAccessList.decode(encoded, max_bytes=len(encoded) - 1)


# ------------------------------------------------------------- an account's final state


def _ascending(changes, make):
    """Distinct ascending indexes with a value each (the codec's order)."""
    return st.lists(st.tuples(st.integers(0, 6), changes), max_size=4, unique_by=lambda c: c[0]).map(
        lambda items: tuple(make(index, value) for index, value in sorted(items)))


account_changes = st.builds(
    lambda balances, nonces, codes, slots: AccountChanges(
        address=b"\xaa" * 20, balance_changes=balances, nonce_changes=nonces, code_changes=codes,
        storage_changes=tuple(SlotChanges(slot, changes) for slot, changes in enumerate(slots) if changes)),
    _ascending(st.integers(0, 3), BalanceChange),
    _ascending(st.integers(0, 2), NonceChange),
    _ascending(st.sampled_from([b"", b"\x60\x00"]), CodeChange),
    st.lists(_ascending(st.integers(0, 2), StorageChange), max_size=2),
)


@settings(max_examples=500, deadline=None)
@given(changes=account_changes, pre_nonce=st.integers(0, 1), pre_balance=st.integers(0, 1),
       pre_code=st.booleans())
def test_final_account_shortcut_is_the_index_walk(changes, pre_nonce, pre_balance, pre_code) -> None:
    """`final_account` skips walking the indexes when no index can leave the account
    empty; it must give what the walk gives (including None: emptied somewhere)."""
    from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3

    from execution.account_rlp import AccountFields
    from execution.bal.apply import final_account, final_account_by_index

    pre = AccountFields(pre_nonce, pre_balance, BLANK_ROOT_HASH, keccak(b"\x60\x01") if pre_code
                        else EMPTY_SHA3)
    assert final_account(changes, pre) == final_account_by_index(changes, pre)


# ---------------------------------------------------------------- built the same way


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=6, max_size=18), coinbase_choice=st.integers(0, 3))
def test_random_blocks_build_identical_lists_and_import_exactly(
        blockstm, importer, ops, coinbase_choice) -> None:
    env, raws = _block(ops, coinbase_choice)
    try:
        expected = _built(SequentialExecutor(), _materialize(env, raws), PRE)
    except InvalidBlockError:
        return  # an invalid block has no list (Block-STM refuses it the same way)
    parallel = _built(blockstm, _materialize(env, raws), PRE)
    assert expected.access_list is not None and parallel.access_list is not None
    assert parallel.access_list.encode() == expected.access_list.encode()
    assert _summary(parallel) == _summary(expected)

    imported = importer.execute(
        dataclasses.replace(_materialize(env, raws), access_list=expected.access_list), PRE
    )
    assert _summary(imported) == _summary(expected)
    assert imported.stats.executor == "bal"
    # Confirmed where the transactions ran: not run again sequentially.
    assert importer.last_import_info["confirmed_where_run"], importer.last_import_info


def _entries(access_list: BlockAccessList) -> list[tuple[int, str, int]]:
    """(account position, field, position in the field's list) of every change."""
    entries = []
    for a, account in enumerate(access_list.accounts):
        for s, slot in enumerate(account.storage_changes):
            entries.extend((a, f"slot {s}", c) for c in range(len(slot.changes)))
        for name in ("balance_changes", "nonce_changes", "code_changes"):
            entries.extend((a, name, c) for c in range(len(getattr(account, name))))
    return entries


def _changes_of(account: AccountChanges, where: str) -> tuple:
    if where.startswith("slot "):
        return account.storage_changes[int(where[5:])].changes
    return getattr(account, where)


def _with_changes(account: AccountChanges, where: str, changes: tuple) -> AccountChanges:
    if where.startswith("slot "):
        s = int(where[5:])
        slots = list(account.storage_changes)
        if changes:
            slots[s] = dataclasses.replace(slots[s], changes=changes)
        else:
            del slots[s]
        return dataclasses.replace(account, storage_changes=tuple(slots))
    return dataclasses.replace(account, **{where: changes})


def _lie(truth: BlockAccessList, txs: int, data) -> BlockAccessList:
    """A canonical list that differs from `truth` in one random way."""
    accounts = list(truth.accounts)
    kind = data.draw(st.sampled_from(["value", "index", "drop", "add", "read", "unread",
                                      "drop account", "add account"]))
    entries = _entries(truth)
    if kind in ("value", "index", "drop") and entries:
        a, where, c = data.draw(st.sampled_from(entries))
        changes = list(_changes_of(accounts[a], where))
        change = changes[c]
        field = dataclasses.fields(change)[1].name
        value = getattr(change, field)
        if kind == "value":
            changes[c] = dataclasses.replace(change, **{field: value + b"\x00" if isinstance(
                value, bytes) else value + data.draw(st.integers(1, 2))})
        elif kind == "index":
            low = changes[c - 1].index + 1 if c else 0
            high = changes[c + 1].index - 1 if c + 1 < len(changes) else txs + 1
            others = [i for i in range(low, high + 1) if i != change.index]
            assume(others)
            changes[c] = dataclasses.replace(change, index=data.draw(st.sampled_from(others)))
        else:
            del changes[c]
        accounts[a] = _with_changes(accounts[a], where, tuple(changes))
    elif kind == "add":
        a = data.draw(st.integers(0, len(accounts) - 1))
        taken = {c.index for c in accounts[a].balance_changes}
        index = data.draw(st.integers(1, txs + 1).filter(lambda i: i not in taken))
        balances = sorted(accounts[a].balance_changes + (BalanceChange(index, 12345),),
                          key=lambda c: c.index)
        accounts[a] = dataclasses.replace(accounts[a], balance_changes=tuple(balances))
    elif kind == "read":
        a = data.draw(st.integers(0, len(accounts) - 1))
        accounts[a] = dataclasses.replace(accounts[a], storage_reads=tuple(
            sorted(set(accounts[a].storage_reads) | {2**255 + 7})))
    elif kind == "unread":
        with_reads = [a for a, account in enumerate(accounts) if account.storage_reads]
        assume(with_reads)
        a = data.draw(st.sampled_from(with_reads))
        reads = list(accounts[a].storage_reads)
        del reads[data.draw(st.integers(0, len(reads) - 1))]
        accounts[a] = dataclasses.replace(accounts[a], storage_reads=tuple(reads))
    elif kind == "drop account":
        del accounts[data.draw(st.integers(0, len(accounts) - 1))]
    else:
        stranger = b"\xee" * 20
        assume(truth.account(stranger) is None)
        accounts = sorted(accounts + [AccountChanges(stranger)], key=lambda a: a.address)
    lie = BlockAccessList(tuple(accounts))
    assume(lie != truth)
    return BlockAccessList.decode(lie.encode())  # canonical, as a block brings it


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=6, max_size=18), coinbase_choice=st.integers(0, 3),
       data=st.data())
def test_a_random_wrong_list_is_never_confirmed(importer, ops, coinbase_choice, data) -> None:
    """The check where the transactions ran (`execution.bal.index_check`) must never pass
    a list the builder would not make: every one-place lie about a valid random block
    is caught there, and refused, naming the difference."""
    env, raws = _block(ops, coinbase_choice)
    try:
        truth = _built(SequentialExecutor(), _materialize(env, raws), PRE)
    except InvalidBlockError:
        return
    assert truth.access_list is not None
    lie = _lie(truth.access_list, len(raws), data)
    with pytest.raises(AccessListMismatch, match="the block's access list is wrong"):
        importer.execute(dataclasses.replace(_materialize(env, raws), access_list=lie), PRE)
    assert "unconfirmed" in importer.last_import_info


def _workload_block(name: str, txs: int):
    from bench.workloads import build

    workload = build(name, txs)
    return workload


def _with_withdrawals(block: BlockInput) -> BlockInput:
    """The block with withdrawals after its transactions (index n+1): one to the coinbase,
    which the transactions' fees credit too, one to an account that did not exist."""
    from eth.vm.forks.shanghai.withdrawals import Withdrawal

    withdrawals = (
        Withdrawal(index=0, validator_index=1, address=block.env.coinbase, amount=7),
        Withdrawal(index=1, validator_index=2, address=b"\xab" * 20, amount=3),
    )
    return dataclasses.replace(block, withdrawals=withdrawals)


@pytest.mark.parametrize("name", ["transfers", "erc20", "amm", "mixed"])
def test_workloads_build_identical_lists_and_import_exactly(blockstm, importer, name) -> None:
    workload = _workload_block(name, 120)
    pre = workload.pre_state()
    workload_block = workload.block
    workload.block = lambda: _with_withdrawals(workload_block())  # type: ignore[method-assign]
    expected = _built(SequentialExecutor(), workload.block(), pre)
    parallel = _built(blockstm, workload.block(), pre)
    assert expected.access_list is not None and parallel.access_list is not None
    assert parallel.access_list.encode() == expected.access_list.encode()
    # Every transaction is listed: its sender's nonce changes at its index.
    indexes = {c.index for a in expected.access_list.accounts for c in a.nonce_changes}
    assert set(range(1, workload.txs + 1)) <= indexes
    post = expected.access_list.account(b"\xab" * 20)
    assert post is not None and post.balance_changes == (
        BalanceChange(workload.txs + 1, 3 * 10**9),)

    imported = importer.execute(
        dataclasses.replace(workload.block(), access_list=expected.access_list), pre
    )
    assert _summary(imported) == _summary(expected)
    assert importer.last_import_info["needs"] == 0  # the small pre-state was shipped

    # Executionless: the list alone gives the same post-state, node for node.
    applied = apply_access_list(expected.access_list, workload.env.vm_class, pre)
    assert applied.post_state_root == expected.post_state_root
    assert applied.state_nodes == expected.state_nodes


@pytest.mark.parametrize("shipped", [True, False], ids=["pre-state shipped", "pre-state fetched"])
@pytest.mark.parametrize("name", ["transfers", "erc20", "mixed"])
def test_the_workers_share_the_root_and_it_is_sequentials(name: str, shipped: bool) -> None:
    """With the knob on and nothing after the transactions, each of the two workers works out the
    accounts under its share of the account trie's first nibbles (storage tries too),
    and the coordinator joins them: the root and every new node are sequential's, with
    the pre-state shipped whole or fetched node by node from the coordinator."""
    workload = _workload_block(name, 120)
    pre = workload.pre_state()
    expected = _built(SequentialExecutor(), workload.block(), pre)
    assert expected.access_list is not None
    config = BlockSTMConfig(workers=2, force_parallel=True, share_root_with_workers=True,
                            ship_prestate_limit=BlockSTMConfig().ship_prestate_limit if shipped else 0)
    with BALImportExecutor(2, force_parallel=True) as importer:
        importer.blockstm.config = config
        imported = importer.execute(
            dataclasses.replace(workload.block(), access_list=expected.access_list), pre)
        info = importer.last_import_info
    assert info["root_shared"]
    assert (info["needs"] == 0) == shipped
    assert _summary(imported) == _summary(expected)
    assert imported.state_nodes == expected.state_nodes


@pytest.mark.parametrize("after", [1, 40, 80])
@pytest.mark.parametrize("name", ["transfers", "mixed"])
def test_block_stm_switching_to_sequential_mid_block_builds_the_same_list(name, after) -> None:
    """Block-STM records each transaction's accesses as the commit index passes it; a
    block that goes sequential part-way must still list every index exactly once."""
    from execution.blockstm import BlockSTMConfig

    workload = _workload_block(name, 120)
    pre = workload.pre_state()
    expected = _built(SequentialExecutor(), workload.block(), pre)
    config = BlockSTMConfig(workers=2, force_parallel=True, fallback_after=after)
    with BlockSTMExecutor(config=config) as executor:
        parallel = _built(executor, workload.block(), pre)
        assert executor.last_fallback_at is not None  # the switch happened
    assert parallel.access_list is not None and expected.access_list is not None
    assert parallel.access_list.encode() == expected.access_list.encode()
    assert _summary(parallel) == _summary(expected)


# ------------------------------------------------------------------------- lying lists


@pytest.mark.parametrize("name", ["erc20", "amm"])
def test_every_kind_of_lying_list_is_refused(importer, name) -> None:
    workload = _workload_block(name, 40)
    pre = workload.pre_state()
    truth = _built(SequentialExecutor(), workload.block(), pre)
    assert truth.access_list is not None
    for kind, make_lie in LIES.items():
        lie = make_lie(truth.access_list, workload.txs)
        assert lie != truth.access_list, kind
        block = dataclasses.replace(workload.block(), access_list=lie)
        with pytest.raises(AccessListMismatch, match="the block's access list is wrong"):
            importer.execute(block, pre)
        assert "unconfirmed" in importer.last_import_info, kind  # caught where it ran
    # The honest list still imports (nothing was kept of the refused ones).
    honest = importer.execute(
        dataclasses.replace(workload.block(), access_list=truth.access_list), pre)
    assert _summary(honest) == _summary(truth)


def test_mismatch_names_the_account_and_the_field(importer) -> None:
    workload = _workload_block("erc20", 40)
    pre = workload.pre_state()
    truth = _built(SequentialExecutor(), workload.block(), pre)
    assert truth.access_list is not None
    lie = LIES["read"](truth.access_list, workload.txs)
    with pytest.raises(AccessListMismatch, match="storage reads: the list says"):
        importer.execute(dataclasses.replace(workload.block(), access_list=lie), pre)
    lie = LIES["extra"](truth.access_list, workload.txs)
    with pytest.raises(AccessListMismatch, match="0xeeee.* is listed but the block never"):
        importer.execute(dataclasses.replace(workload.block(), access_list=lie), pre)


# ---------------------------------------------------------------------------- mainnet


@pytest.mark.slow
@pytest.mark.parametrize("number", MAINNET_BLOCKS)
def test_mainnet_lists_identical_and_imports_exact(blockstm, importer, number: str) -> None:
    block_dir = MAINNET / number
    if number in NO_ACCESS_LIST:
        with pytest.raises(ReplayInputError, match="wipes the storage"):
            replay_block_dir(block_dir, SequentialExecutor(), build_access_list=True)
        return
    sequential = replay_block_dir(block_dir, SequentialExecutor(), build_access_list=True)
    parallel = replay_block_dir(block_dir, blockstm, build_access_list=True)
    assert sequential["ok"] and parallel["ok"]
    assert parallel["accessList"] == sequential["accessList"]
    access_list = BlockAccessList.decode(bytes.fromhex(sequential["accessList"][2:]))
    imported = replay_block_dir(block_dir, importer, access_list=access_list)
    for key in ("gasUsed", "logsBloom", "receiptsRoot", "postStateRoot"):
        assert imported[key] == sequential[key], key
    assert imported["ok"]
    fork_vm = mainnet_vm_for_block(int(number))
    if issubclass(fork_vm, ByzantiumVM):
        pre = load_prestate(read_json(block_dir, "prestate.json"))
        applied = apply_access_list(access_list, fork_vm, StateView(*pre))
        assert "0x" + applied.post_state_root.hex() == sequential["postStateRoot"]
    else:
        with pytest.raises(AccessListUnsupported, match="before Byzantium"):
            apply_access_list(access_list, fork_vm, PRE)


def test_unsupported_block_says_why() -> None:
    block_dir = MAINNET / "1796867"
    with pytest.raises(ReplayInputError, match="no access list: block access index 1 wipes"):
        replay_block_dir(block_dir, SequentialExecutor(), build_access_list=True)
    assert AccessListUnsupported.__doc__


# -------------------------------------------------------------------- laminar replay


def _laminar(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


@pytest.mark.slow
def test_replay_cli_makes_and_imports_a_list(tmp_path: Path) -> None:
    block = str(MAINNET / "19929064")
    made = _laminar("replay", block, "--make-bal", str(tmp_path / "bal.rlp"))
    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout)
    encoded = (tmp_path / "bal.rlp").read_bytes()
    assert report["accessListBytes"] == len(encoded)
    assert report["accessListHash"] == "0x" + keccak(encoded).hex()

    imported = _laminar("replay", block, "--bal", str(tmp_path / "bal.rlp"), "--workers", "2")
    assert imported.returncode == 0, imported.stderr
    imported_report = json.loads(imported.stdout)
    assert imported_report["executor"] == "bal"
    assert imported_report["postStateRoot"] == report["postStateRoot"]
    assert imported_report["receiptsRoot"] == report["receiptsRoot"]

    (tmp_path / "cut.rlp").write_bytes(encoded[:100])
    cut = _laminar("replay", block, "--bal", str(tmp_path / "cut.rlp"))
    assert cut.returncode == 2 and cut.stderr.startswith("error: ")
    assert "not valid RLP" in cut.stderr

    # Another block's list: the check fails (exit 1) and says where.
    other = _laminar("replay", str(MAINNET / "19426587"), "--bal", str(tmp_path / "bal.rlp"))
    assert other.returncode == 1, other.stderr
    assert "access list is wrong" in json.loads(other.stdout)["invalid"]["reason"]
