"""Importing a block with its access list: every transaction in parallel, none re-run.

The access list says what every index of the block changed. Each transaction can then
run at once, on any worker, over the state as of its index (the pre-state plus the
list's latest change below it for every location): Block-STM's worker processes run
them with the list's changes installed as the write sets of the transactions below, so
no read meets an ESTIMATE and nothing is validated or re-executed. The state root comes
from the list's final values and does not wait for the last transaction: with two
workers or more, nothing after the transactions that writes, and the knob on
(`BlockSTMConfig.share_root_with_workers`, off by default), each worker works out,
once its transactions are done, the accounts under its share of the account trie's
first nibbles (storage tries included, `execution.post_state.root_part`) and the
coordinator joins the sixteen children (`execution.trie.join_subtries`); otherwise the
coordinator folds the final values into the trie while the workers run. As the results
come in, in index order, the coordinator makes the receipts and builds the list again
from what the transactions really read and wrote (the builder Block-STM and the
sequential executor use); it must be byte-identical to the one the block came with: a
wrong value, a missing or extra location or a wrong index all show as a difference, and
then the block is invalid (`AccessListMismatch`). By induction on the index, a list that passes
means every transaction ran on exactly the state sequential execution gives it, so the
receipts, the gas and the root are sequential's.

Blocks before Byzantium (a state root in every receipt) or Spurious Dragon (empty
accounts that exist) are checked by the sequential executor instead: it builds the list
while it runs and the two are compared the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from multiprocessing.connection import wait
from typing import Any, Optional

from eth.constants import EMPTY_SHA3
from eth.rlp.accounts import Account
from eth.vm.forks import ByzantiumVM, PragueVM

from execution.account_rlp import AccountFields
from execution.bal.apply import (
    AppliedBlock,
    FinalAccount,
    apply_steps,
    final_account_steps,
    new_code,
    read_pre_account,
    root_input,
)
from execution.bal.builder import AccessListUnsupported, AccessRecord
from execution.bal.codec import BlockAccessList, SlotChanges
from execution.bal.index_check import ListedAccesses, listed_changes, record_changes
from execution.bal.recorder import recording_state_class
from execution.bal.write_sets import seed_write_sets
from execution.blockstm import messages as m
from execution.blockstm.access_list import PreBlockValues, code_reader
from execution.blockstm.commit import Fold
from execution.blockstm.executor import BlockSTMExecutor, WorkerFailure, prelude_writes
from execution.blockstm.state import OutcomeComputation, fold_write_set
from execution.executor import (
    BlockInput,
    BlockRuleError,
    ExecutionResult,
    ExecutionStats,
    InvalidBlockError,
    StateView,
    adopt_known_senders,
)
from execution.locations import EXI
from execution.overlay import OverlayDB
from execution.post_state import first_nibble, run_to_end
from execution.rules import (
    REQUEST_SYSTEM_CONTRACTS,
    block_level_reason,
    finish_block,
    make_execution_context,
)
from execution.sequential import SequentialExecutor
from execution.trie import BRANCH_WIDTH, join_subtries, root_branch

log = logging.getLogger(__name__)

# Locations folded between two looks at the workers' pipes (their results must not
# pile up while the coordinator works on the trie).
FOLD_CHUNK = 256


class AccessListMismatch(BlockRuleError):
    """The block's access list is not what its transactions do: the block is invalid."""


class _Unconfirmed(Exception):
    """The check where the transactions ran did not confirm the list (a wrong list, or
    one it cannot judge): the block is run sequentially, which builds the list and
    names the first difference."""


class BALImportExecutor:
    """Imports blocks that carry an access list in parallel; builds the list (with
    Block-STM) for a block that has none, as a proposer does."""

    name = "bal"

    def __init__(self, workers: Optional[int] = None, force_parallel: bool = False) -> None:
        self.blockstm = BlockSTMExecutor(workers, force_parallel=force_parallel)
        self._sequential = SequentialExecutor()
        self._block_id = 1 << 40  # apart from the Block-STM executor's ids, same workers
        self.last_import_info: dict = {}

    @property
    def workers(self) -> int:
        return self.blockstm.workers

    def start(self) -> None:
        self.blockstm.start()

    def close(self) -> None:
        self.blockstm.close()

    def __enter__(self) -> BALImportExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def worker_pids(self) -> list[int]:
        return self.blockstm.worker_pids()

    def execute(self, block: BlockInput, pre_state: StateView) -> ExecutionResult:
        if block.access_list is None:
            result = self.blockstm.execute(
                dataclasses.replace(block, build_access_list=True), pre_state
            )
            return result
        return self.import_block(block, pre_state)

    def import_block(self, block: BlockInput, pre_state: StateView) -> ExecutionResult:
        """Run `block` from its access list; AccessListMismatch if the list is wrong."""
        started = time.perf_counter()
        access_list = block.access_list
        assert access_list is not None
        adopt_known_senders(block)
        vm_class = block.env.vm_class
        config = self.blockstm.config
        n = len(block.transactions)
        small = not config.force_parallel and (config.workers < 2 or n < 2 * config.workers)
        if small or not issubclass(vm_class, ByzantiumVM):
            return self._checked_sequentially(block, pre_state, started)
        pool = self.blockstm._ensure_pool()
        self._block_id += 1
        run = _ImportRun(self, pool, self._block_id, block, pre_state)
        try:
            result = run.run()
        except WorkerFailure as exc:
            log.warning("access-list import: %s; executing the block sequentially", exc)
            self.blockstm.kill_pool()
            return self._checked_sequentially(block, pre_state, started)
        except _Unconfirmed as exc:
            self.last_import_info = {"unconfirmed": str(exc)}
            log.info("access-list import: the list is not confirmed (%s); executing the "
                     "block sequentially to say where it differs", exc)
            result = self._checked_sequentially(block, pre_state, started)
            log.warning("access-list import: the sequential run confirmed a list the "
                        "index check did not (%s)", exc)
            return result
        finally:
            run.end_block()
        result.stats.seconds = time.perf_counter() - started
        if len(result.state_nodes) <= self.blockstm.config.ship_prestate_limit \
                and self.blockstm._pool is pool:
            pool.new_nodes = result.state_nodes
        self.last_import_info = run.info()
        return result

    def _checked_sequentially(self, block: BlockInput, pre_state: StateView,
                              started: float) -> ExecutionResult:
        given = block.access_list
        assert given is not None
        result = self._sequential.execute(
            dataclasses.replace(block, build_access_list=True, access_list=None), pre_state
        )
        assert result.access_list is not None
        check_access_list(given, result.access_list)
        result.stats.executor = self.name
        result.stats.fallback = True  # ran (and was checked) sequentially
        result.stats.seconds = time.perf_counter() - started
        return result


def check_access_list(given: BlockAccessList, built: BlockAccessList) -> None:
    """AccessListMismatch, naming the first difference, unless the lists are the same."""
    if given == built:  # the same list has one encoding
        return
    raise AccessListMismatch(f"the block's access list is wrong: {describe_difference(given, built)}")


def describe_difference(given: BlockAccessList, built: BlockAccessList) -> str:
    """The first difference between the block's list and the one its execution makes."""
    claimed = {a.address: a for a in given.accounts}
    actual = {a.address: a for a in built.accounts}
    for address in sorted(set(claimed) | set(actual)):
        where = f"account 0x{address.hex()}"
        if address not in actual:
            return f"{where} is listed but the block never accesses it"
        if address not in claimed:
            return f"{where} is accessed by the block but not listed"
        a, b = claimed[address], actual[address]
        if a == b:
            continue
        listed_slots = {c.slot: c.changes for c in a.storage_changes}
        executed_slots = {c.slot: c.changes for c in b.storage_changes}
        for slot in sorted(set(listed_slots) | set(executed_slots)):
            if listed_slots.get(slot) != executed_slots.get(slot):
                return (f"{where} slot {slot:#x} changes: the list says "
                        f"{_short(listed_slots.get(slot, ()))}, execution gives "
                        f"{_short(executed_slots.get(slot, ()))}")
        for name in ("storage_reads", "balance_changes", "nonce_changes",
                     "code_changes"):
            listed, executed = getattr(a, name), getattr(b, name)
            if listed != executed:
                return (f"{where} {name.replace('_', ' ')}: the list says "
                        f"{_short(listed)}, execution gives {_short(executed)}")
    return "the encodings differ"


def _short(items: Any, limit: int = 3) -> str:
    """A list's first items, compactly: (index, value) pairs, slots in hex."""
    shown = ", ".join(_item_text(item) for item in items[:limit])
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return f"[{shown}{more}]"


def _item_text(item: Any) -> str:
    if isinstance(item, int):
        return hex(item)
    if isinstance(item, SlotChanges):
        return f"slot {item.slot:#x}: {_short(item.changes)}"
    index, value = dataclasses.astuple(item)
    if isinstance(value, bytes):
        return f"({index}, {len(value)} bytes of code)"
    return f"({index}, {value:#x})"


class _ImportRun:
    """One block imported from its access list (see the module doc)."""

    def __init__(self, owner: BALImportExecutor, pool: Any, block_id: int,
                 block: BlockInput, pre_state: StateView) -> None:
        self.owner = owner
        self.pool = pool
        self.block_id = block_id
        self.block = block
        self.env = block.env
        self.pre_state = pre_state
        self.txs = tuple(block.transactions)
        self.n = len(self.txs)
        # Each transaction's outcome, and where the list's changes at its index were not
        # what it changed (`messages.Checked`).
        self.outcomes: list[Optional[tuple]] = [None] * self.n
        self.differences: dict[int, str] = {}
        self.received = 0
        self.started_block = False
        self.needs = 0
        self.root_done_at = 0.0
        self.results_done_at = 0.0  # when the last result came in
        self.requests: tuple[bytes, ...] = ()
        self.prelude_record: Optional[AccessRecord] = None
        self.post_record: Any = None
        self.applied: Optional[AppliedBlock] = None  # the root from the list's final values
        # The root shared out to the workers (`_share_root`): their parts, and the code.
        self.parts_expected = 0
        self.root_parts: list[m.RootPart] = []
        self.root_codes: dict[bytes, bytes] = {}
        self.node_of = owner.blockstm.node_reader(pre_state.nodes)
        self.code_of = code_reader(pre_state.nodes)
        # Results taken in index order (`_take_results`): receipts, gas.
        self.taken = 0
        self.gas_used = 0
        self.fold: Optional[Fold] = None
        self.pre_accounts: dict[bytes, AccountFields] = {}
        self.edges: dict[int, dict] = {}  # the list's changes at 0 and n+1
        # per worker: seconds running tasks (wall, CPU), waiting for messages, sending
        self.worker_timing: list = [None] * len(pool.conns)
        # per worker: the addresses and slots its transactions accessed (`messages.Ended`)
        self.accessed: list[Optional[tuple]] = [None] * len(pool.conns)
        self.confirmed = False

    # ---------------------------------------------------------------- pre-state
    def _pre_account(self, address: bytes) -> AccountFields:
        account = self.pre_accounts.get(address)
        if account is None:
            account = read_pre_account(self.node_of, self.pre_state.state_root, address)
            self.pre_accounts[address] = account
        return account

    # ---------------------------------------------------------------- messaging
    def end_block(self) -> None:
        if not self.started_block:
            return
        self.started_block = False
        pool = self.pool
        try:
            for conn in pool.conns:
                conn.send(m.wire(m.End(self.block_id)))
            waiting = set(range(len(pool.conns)))
            deadline = time.monotonic() + self.owner.blockstm.config.liveness_timeout_s
            while waiting:
                ready = wait([pool.conns[w] for w in waiting],
                             timeout=max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise WorkerFailure("workers did not acknowledge the end of a block")
                for ready_conn in ready:
                    w = pool.conns.index(ready_conn)
                    msg = m.named(pool.conns[w].recv())
                    if isinstance(msg, m.Ended) and msg.block_id == self.block_id:
                        waiting.discard(w)
                        self.worker_timing[w] = [round(x, 3) for x in msg.timing]
                        self.accessed[w] = msg.accessed
                    elif isinstance(msg, m.Need):
                        self._answer_need(w, msg)
        except (WorkerFailure, EOFError, OSError, ValueError):
            self.owner.blockstm.kill_pool()

    def _answer_need(self, w: int, msg: m.Need) -> None:
        values: list = []
        if msg.block_id == self.block_id:
            self.needs += 1
            nodes = self.pre_state.nodes
            for key in msg.hashes:
                try:
                    values.append(nodes[key])
                except KeyError:
                    values.append(None)
        else:
            values = [None] * len(msg.hashes)
        self.pool.send(w, m.wire(m.Node(msg.block_id, msg.request_id, values)))

    def _drain(self, block: bool) -> None:
        """Handle what the workers sent; with `block`, wait for at least one message."""
        pool = self.pool
        conns = pool.conns
        waitables = list(conns) + [p.sentinel for p in pool.procs]
        timeout = self.owner.blockstm.config.liveness_timeout_s if block else 0
        ready = wait(waitables, timeout=timeout)
        if block and not ready and not pool.alive():
            raise WorkerFailure("a worker process died")
        for obj in ready:
            if obj not in conns:
                raise WorkerFailure("a worker process died")
            w = conns.index(obj)
            conn = conns[w]
            try:
                while conn.poll():
                    self._handle(w, m.named(conn.recv()))
            except (EOFError, OSError) as exc:
                raise WorkerFailure(f"worker {w} pipe closed ({exc!r})") from None

    def _handle(self, w: int, msg: m.Message) -> None:
        if isinstance(msg, m.Results):
            for inner in msg.messages:
                self._handle(w, m.named(inner))
        elif isinstance(msg, m.Need):
            self._answer_need(w, msg)
        elif isinstance(msg, m.Checked):
            if msg.block_id == self.block_id and self.outcomes[msg.tx] is None:
                self.outcomes[msg.tx] = msg.outcome
                if msg.difference is not None:
                    self.differences[msg.tx] = msg.difference
                self.received += 1
        elif isinstance(msg, m.RootPart):
            if msg.block_id == self.block_id:
                self.root_parts.append(msg)
        elif isinstance(msg, m.Blocked):
            if msg.block_id == self.block_id:
                raise WorkerFailure(f"transaction {msg.tx} met an ESTIMATE in an import")
        elif isinstance(msg, m.Error):
            if msg.block_id == self.block_id:
                what = "its share of the state root" if msg.tx < 0 else f"transaction {msg.tx}"
                raise WorkerFailure(f"worker {w} failed on {what}:\n{msg.text}")

    # ---------------------------------------------------------------- the block
    def run(self) -> ExecutionResult:
        env = self.env
        access_list = self.block.access_list
        assert access_list is not None
        started = time.perf_counter()
        self.db = OverlayDB(self.pre_state.nodes)
        state = recording_state_class(env.vm_class.get_state_class())(
            self.db, make_execution_context(env), self.pre_state.state_root
        )
        self.state = state
        recorder = state._account_db
        # A plain dict (py-evm's is a 2048-entry LRU): a block's fold touches more
        # accounts than that, and every eviction is a trie walk through py-evm's reader.
        recorder._account_cache = {}
        recorder.open_record()
        prelude = prelude_writes(state, env)
        for key, value in prelude.items():
            state.set_storage(key[:20], int.from_bytes(key[20:], "big"), value)
        self.prelude_record = recorder.close_record()
        # Values the prelude overwrote (before the block); later captures are not
        # pre-block values (the root work writes the list's values first).
        self.prelude_pre_values = dict(recorder.pre_values)

        # The workers decode, recover senders and fetch trie paths while the list
        # becomes write sets here; they run nothing before the write sets arrive.
        self._announce(prelude)
        seeds, codes = seed_write_sets(access_list, self.n, self._pre_account, self.edges)
        self._send_work(seeds, codes)

        # The state root from the list, while the transactions run.
        post_needs_receipts = (
            issubclass(env.vm_class, PragueVM) and env.rules.system_contracts_required
        )
        steps = self._root_steps(seeds, codes, post_needs_receipts)
        self.fold = Fold(state, env, self.txs)
        root_pending = True
        while root_pending or self.received < self.n:
            self._drain(block=not root_pending)
            self._take_results()
            if self.received == self.n and not self.results_done_at:
                self.results_done_at = time.perf_counter()
            if root_pending:
                root_pending = next(steps, _DONE) is not _DONE
                if not root_pending:
                    self.root_done_at = time.perf_counter()

        self._take_results()
        assert self.taken == self.n
        fold = self.fold
        if post_needs_receipts:
            recorder.open_record()
            requests = finish_block(state, self.block, fold.receipts)
            self.post_record = recorder.close_record()
            self.requests = requests
            state.persist()
        if self.parts_expected:
            while len(self.root_parts) < self.parts_expected:
                self._drain(block=True)
            self.applied = self._joined_root()
            self.root_done_at = time.perf_counter()
        self.end_block()  # the workers' accesses come with their acknowledgements
        self._check()
        return ExecutionResult(
            access_list=access_list,
            requests=self.requests,
            receipts=tuple(fold.receipts),
            gas_used=fold.header.gas_used,
            logs_bloom=fold.bloom,
            post_state_root=(self.applied.post_state_root if self.applied is not None
                             else state.state_root),
            state_nodes=self.applied.state_nodes if self.applied is not None else self.db.pending(),
            stats=ExecutionStats(
                executor=BALImportExecutor.name,
                transactions=self.n,
                seconds=0.0,
                workers=len(self.pool.conns),
                incarnations=self.n,
                # Execution: until the last transaction's result is in; the rest (what
                # is left of the root work, receipts, the check) is the commit tail.
                execution_seconds=self.results_done_at - started,
                commit_seconds=time.perf_counter() - self.results_done_at,
            ),
        )

    def _announce(self, prelude: dict) -> None:
        """The block to every worker, and each worker's transactions (i mod W) to
        prepare (`messages.Prepare`)."""
        nodes = self.pre_state.nodes
        config = self.owner.blockstm.config
        # As Block-STM: a small in-memory pre-state goes whole; otherwise the previous
        # block's new nodes (the top of this block's pre-state trie when blocks chain).
        if isinstance(nodes, dict) and len(nodes) <= config.ship_prestate_limit:
            shipped = nodes
        else:
            shipped = self.pool.new_nodes
        self.pool.new_nodes = None
        workers = len(self.pool.conns)
        self.started_block = True
        self.pool.broadcast(m.wire(m.Block(self.block_id, self.env, self.pre_state.state_root,
                                           prelude, shipped, checks_list=True)))
        for w in range(workers):
            share = [(i, self.txs[i]) for i in range(w, self.n, workers)]
            self.pool.send(w, m.wire(m.Prepare(self.block_id, share)))

    def _send_work(self, seeds: list[Optional[dict]], codes: dict[bytes, bytes]) -> None:
        """The list's write sets to every worker (one message, pickled once), then its
        tasks (the transactions it prepared)."""
        updates: list[tuple] = [(i, seed, {}, {}) for i, seed in enumerate(seeds)
                                if seed is not None]
        if codes:  # a worker keeps the block's code by hash, whichever update brings it
            first = updates[0] if updates else (0, {}, {}, {})
            updates[:1] = [(first[0], first[1], {}, codes)]
        if updates:
            self.pool.broadcast(m.wire(m.Work(self.block_id, updates, [], {})))
        workers = len(self.pool.conns)
        for w in range(workers):
            tasks = [(i, 0, None) for i in range(w, self.n, workers)]
            self.pool.send(w, m.wire(m.Work(self.block_id, [], tasks, {})))

    def _root_steps(self, seeds: list[Optional[dict]], codes: dict[bytes, bytes],
                    post_needs_receipts: bool) -> Any:
        """The state root from the list while the transactions run, a chunk at a time,
        then what follows the transactions (a generator: the caller looks at the
        workers' pipes between steps).

        When nothing after the transactions can change the state (no withdrawals, no
        rewards, no system contract to call), the list's final values go straight into
        the tries (`execution.bal.apply.apply_steps`, as executionless sync does) and
        py-evm's state is left as the prelude made it; what follows the transactions
        then only reads, and the same on either state. Otherwise they go through py-evm's
        state (`fold_write_set`), which runs the withdrawals and system calls after."""
        state = self.state
        adb = state._account_db
        merged: dict = {}
        per_tx = False
        for seed in seeds:
            if seed is None:
                continue
            for key, value in seed.items():
                if value is False and key[20:] == EXI:
                    per_tx = True  # an account deleted: fold index by index
                merged[key] = value
        if not per_tx and not post_needs_receipts and self._nothing_after_transactions():
            access_list = self.block.access_list
            assert access_list is not None
            yield
            if self._root_can_be_shared():
                finals = yield from final_account_steps(access_list, self._pre_account)
                if finals is not None:  # None: an account emptied at some index
                    self._share_root(finals)
                    adb.open_record()
                    self.requests = finish_block(state, self.block, [])
                    self.post_record = adb.close_record()
                    return
            self.applied = yield from apply_steps(
                access_list, self.env.vm_class, self.pre_state, self.owner.blockstm.decoded_nodes,
                pre_account=self._pre_account,
            )
            adb.open_record()
            self.requests = finish_block(state, self.block, [])
            self.post_record = adb.close_record()
            return
        cache = adb._account_cache
        for address in {key[:20] for key in merged}:
            if address not in cache:
                cache[address] = Account(*self._pre_account(address))
        yield
        if per_tx:
            for seed in seeds:
                if seed is not None:
                    state.lock_changes()
                    fold_write_set(state, seed, {}, codes)
                    yield
        else:
            items = list(merged.items())
            for start in range(0, len(items), FOLD_CHUNK):
                fold_write_set(state, dict(items[start:start + FOLD_CHUNK]), {}, codes)
                yield
        if post_needs_receipts:
            return
        adb.open_record()
        self.requests = finish_block(state, self.block, [])
        self.post_record = adb.close_record()
        yield
        state.persist()
        yield

    def _root_can_be_shared(self) -> bool:
        """Switched on (`BlockSTMConfig.share_root_with_workers`), two workers or more, and
        a pre-state whose account trie's root is a branch."""
        if not self.owner.blockstm.config.share_root_with_workers:
            return False
        return len(self.pool.conns) >= 2 and root_branch(
            self.pre_state.state_root, self.pre_state.nodes.__getitem__,
            self.owner.blockstm.decoded_nodes) is not None

    def _share_root(self, finals: list[FinalAccount]) -> None:
        """Each worker a share of the account trie's first nibbles (`messages.RootShare`),
        balanced by accounts and slots; the workers take them up once their
        transactions are done."""
        by_nibble: list[list] = [[] for _ in range(BRANCH_WIDTH)]
        for final in finals:
            by_nibble[first_nibble(final.address)].append(root_input(final))
        workers = len(self.pool.conns)
        shares: list[list] = [[] for _ in range(workers)]
        loads = [0] * workers
        weight = [sum(1 + len(item[5]) for item in items) for items in by_nibble]
        for nibble in sorted(range(BRANCH_WIDTH), key=weight.__getitem__, reverse=True):
            w = loads.index(min(loads))
            shares[w].extend(by_nibble[nibble])
            loads[w] += weight[nibble]
        self.root_codes = new_code(finals)
        self.parts_expected = workers
        for w, share in enumerate(shares):
            self.pool.send(w, m.wire(m.RootShare(self.block_id, share)))

    def _joined_root(self) -> AppliedBlock:
        """The workers' parts of the root under the pre-state's root branch."""
        children: dict[int, Any] = {}
        nodes = dict(self.root_codes)
        for part in self.root_parts:
            children.update(part.children)
            nodes.update(part.nodes)
        pre_state = self.pre_state
        decoded = self.owner.blockstm.decoded_nodes
        joined = join_subtries(pre_state.state_root, pre_state.nodes.__getitem__, children, decoded)
        if joined is None:
            # Fewer than two children left: not with values that all exist (an account
            # emptied anywhere never gets here), but if so, the whole trie here.
            access_list = self.block.access_list
            assert access_list is not None
            return run_to_end(apply_steps(access_list, self.env.vm_class, pre_state, decoded,
                                          pre_account=self._pre_account))
        root, root_nodes = joined
        nodes.update(root_nodes)
        return AppliedBlock(post_state_root=root, state_nodes=nodes, seconds=0.0)

    def _nothing_after_transactions(self) -> bool:
        """Whether `finish_block` only reads here: no withdrawals or rewards, and no
        request system contract with code (before or after the transactions)."""
        block, env = self.block, self.env
        if block.withdrawals or block.apply_pow_rewards:
            return False
        if not issubclass(env.vm_class, PragueVM):
            return True
        if env.rules.system_contracts_required:
            return False
        access_list = block.access_list
        assert access_list is not None
        for address in REQUEST_SYSTEM_CONTRACTS:
            if self._pre_account(address).code_hash != EMPTY_SHA3:
                return False
            if any(a.address == address and a.code_changes for a in access_list.accounts):
                return False
        return True

    def _pre_value(self) -> Any:
        """A location's value before the block (what the prelude overwrote, as it was)."""
        pre = PreBlockValues(self.pre_accounts, self._pre_account, self.node_of, self.code_of)
        captured = self.prelude_pre_values

        def pre_value(location: bytes) -> Any:
            if location in captured:
                return captured[location]
            return pre.value(location)

        return pre_value

    def _take_results(self) -> None:
        """The receipts and the gas of the results in so far, in index order, while the
        workers run the rest. An invalid transaction stops the block at once, unless the
        list was wrong below it (then the state it ran on was too: _Unconfirmed); a
        list found wrong otherwise waits for the check, after every transaction's own
        validity."""
        env, outcomes, txs = self.env, self.outcomes, self.txs
        fold = self.fold
        assert fold is not None
        i = self.taken
        while i < self.n:
            outcome = outcomes[i]
            if outcome is None:
                break
            tx = txs[i]
            reason = block_level_reason(env, tx, self.gas_used) or m.invalid_reason(outcome)
            if reason is not None:
                wrong_below = [j for j in self.differences if j < i]
                if wrong_below:  # it ran on a state the list got wrong
                    raise _Unconfirmed(self.differences[min(wrong_below)])
                raise InvalidBlockError(i, f"{reason} (run from the block's access list)")
            self.gas_used += env.vm_class.finalize_gas_used(tx, OutcomeComputation(outcome))
            fold.add_receipt(i, outcome)
            i += 1
        self.taken = i

    def _check(self) -> None:
        """The list is the block's when every transaction changed what the list says at
        its index (checked by the workers, `execution.bal.index_check`), so did the
        coordinator's own indexes 0 and n+1, and the block accessed exactly the list's
        accounts and slots; otherwise _Unconfirmed."""
        given = self.block.access_list
        assert given is not None
        n = self.n
        listed = ListedAccesses(given, n)
        if listed.problem is not None:
            raise _Unconfirmed(listed.problem)
        if self.differences:
            raise _Unconfirmed(self.differences[min(self.differences)])
        if any(accessed is None for accessed in self.accessed):
            raise _Unconfirmed("a worker did not report its accesses")
        pre_value = self._pre_value()

        def after_transactions(location: bytes) -> Any:
            return listed.value_at(location, n + 1, pre_value)

        addresses: set[bytes] = set()
        slots: set[bytes] = set()
        for index, record, value_before in ((0, self.prelude_record, pre_value),
                                            (n + 1, self.post_record, after_transactions)):
            assert record is not None
            try:
                changes = record_changes(record, value_before)
            except AccessListUnsupported as exc:
                raise _Unconfirmed(str(exc)) from None
            if changes != listed_changes(self.edges.get(index)):
                raise _Unconfirmed(f"block access index {index} changes other locations")
            addresses |= record.addresses
            slots |= record.slots
        for worker_addresses, worker_slots in self.accessed:  # type: ignore[misc]
            addresses |= worker_addresses
            slots |= worker_slots
        difference = listed.difference(addresses, slots)
        if difference is not None:
            raise _Unconfirmed(difference)
        self.confirmed = True

    def info(self) -> dict:
        return {"needs": self.needs,
                "confirmed_where_run": self.confirmed,
                "root_shared": self.parts_expected > 0,
                "root_before_last_result": self.root_done_at <= self.results_done_at,
                "worker_timing": self.worker_timing}


_DONE = object()

