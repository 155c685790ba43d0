"""The worker process: executes incarnations on local replicas, never on shared memory.

A worker keeps, per block, a replica of the multi-version memory (fed by the write sets
the coordinator broadcasts) and the block prelude; per pre-state root, a base-value cache
(kept while blocks run on the same root); and, across blocks, content-addressed caches of
raw and decoded trie nodes and code (valid under any root). Base values are read with the
lean trie reader (`triereader.lookup`) over those caches. When tasks arrive, the account
paths of their senders and recipients are prefetched in batched NEED round trips; a node
still missing during execution costs one round trip. Nodes fetched by one worker reach the
others with their next WORK message. Results are sent in batches (`RESULTS_BATCH`).
"""

from __future__ import annotations

import logging
import os
import traceback
from collections import deque
from time import perf_counter, process_time
from typing import Any, Optional

from eth.constants import EMPTY_SHA3
from eth_hash.auto import keccak
from eth_utils import ValidationError

from execution.account_rlp import decode_account_fields, decode_storage_value
from execution.bal.builder import AccessListUnsupported
from execution.bal.index_check import changes_of, listed_changes, note_accesses
from execution.blockstm import messages as m
from execution.blockstm.mvmemory import EstimateHit, MVMemory
from execution.blockstm.state import make_tx_state, outcome_of
from execution.blockstm.triereader import BLANK_ROOT, NodeMissing, decode_node, lookup
from execution.gc_policy import freeze_startup_objects, tune_collector
from execution.post_state import SLOT_BYTES, root_part
from execution.rules import check_transaction, make_execution_context, readable_error
from execution.senders import recover_sender

_NODE_CACHE_LIMIT = 2_000_000
_FIELD_INDEX = {m.EXI: 0, m.NON: 1, m.BAL: 2, m.COD: 3}


class _Stop(Exception):
    pass


_MAX_PREFETCH_ROUNDS = 16
# Results are sent in batches of this many (or as soon as the task queue is empty, and
# before any round trip): fewer messages, fewer wake-ups of the coordinator.
RESULTS_BATCH = 3
# An access-list import's results wait for nothing but the coordinator's receipts: bigger
# batches, fewer wake-ups of a coordinator that shares the cores with the workers (2,000
# transfers, 2026-12-07: the coordinator's reading of its pipes 46-60 ms -> 20-25 ms).
CHECKED_RESULTS_BATCH = 16


class BlockContext:
    def __init__(self, worker: "Worker", block_id: int, env: Any, pre_root: bytes,
                 prelude: dict, checks_list: bool = False) -> None:
        self.block_id = block_id
        # The access-list importer's block: each transaction is checked against the
        # list's write set at its index (`execution.bal.index_check`), which stays in
        # the replica; only the verdict and the outcome go back.
        self.checks_list = checks_list
        self.accessed_addresses: set[bytes] = set()
        self.accessed_slots: set[bytes] = set()
        self.env = env
        self.vm_class = env.vm_class
        self.execution_context = make_execution_context(env)
        self.mv = MVMemory()
        self.prelude = prelude
        self.codes: dict[bytes, bytes] = {}
        self.txs: dict[int, Any] = {}
        cache = worker.base_caches.get(pre_root)
        if cache is None:
            cache = {}
            worker.base_caches = {pre_root: cache}  # one root at a time
        self.base = cache
        self.pre_root = pre_root
        self.storage_roots: dict[bytes, bytes] = {}
        self.worker = worker
        self.prefetched: set = set()
        # Base account RLPs loaded for this block and not yet reported: the coordinator
        # primes its commit AccountDB with them instead of walking the trie again.
        self.reported: set = set()
        self.new_accounts: dict[bytes, bytes] = {}

    def _account_rlp(self, address: bytes) -> bytes:
        encoded = self.base.get(address)
        if encoded is None:
            encoded = lookup(self.worker.node_of, self.pre_root, keccak(address))
            self.base[address] = encoded
        return encoded

    def _storage_root(self, address: bytes) -> bytes:
        root = self.storage_roots.get(address)
        if root is None:
            encoded = self._account_rlp(address)
            root = decode_account_fields(encoded).storage_root if encoded else BLANK_ROOT
            self.storage_roots[address] = root
        return root

    def base_value(self, key: bytes) -> Any:
        base = self.base
        try:
            return base[key]
        except KeyError:
            pass
        value = self.prelude.get(key)
        if value is None:
            address = key[:20]
            if len(key) == m.SLOT_KEY_LEN:
                root = self._storage_root(address)
                encoded = lookup(self.worker.node_of, root, keccak(key[20:])) \
                    if root != BLANK_ROOT else b""
                value = decode_storage_value(encoded) if encoded else 0
                base[key] = value
                return value
            if key[20:] == m.WIP:
                return False
            if key[20:] == m.STO:
                return self._storage_root(address) != BLANK_ROOT
            encoded = self._account_rlp(address)
            if address not in self.reported:
                self.reported.add(address)
                self.new_accounts[address] = encoded
            if encoded:
                acct = decode_account_fields(encoded)  # rlp's Account sedes: twice the time
                fields = (True, acct.nonce, acct.balance, acct.code_hash)
                self.storage_roots[address] = acct.storage_root
            else:
                fields = (False, 0, 0, EMPTY_SHA3)
            base[address + m.EXI] = fields[0]
            base[address + m.NON] = fields[1]
            base[address + m.BAL] = fields[2]
            base[address + m.COD] = fields[3]
            return fields[_FIELD_INDEX[key[20:]]]
        return value

    def code_of(self, code_hash: bytes) -> bytes:
        code = self.codes.get(code_hash)
        if code is None:
            code = self.worker.raw_node(code_hash)
        return code

    def prefetch(self, tasks: list) -> None:
        """Fetch, in batched round trips, the account-trie nodes on the paths to the
        senders and recipients of `tasks` (first incarnations only)."""
        root = self.pre_root
        paths = []
        base = self.base
        for tx_index, _inc, raw in tasks:
            if tx_index in self.prefetched:
                continue
            self.prefetched.add(tx_index)
            try:
                tx = self.decoded(tx_index, raw)
                addresses = (recover_sender(tx), tx.to)
            except Exception:
                continue  # the execution reports it
            for address in addresses:
                if address and address not in base:
                    paths.append((root, keccak(address)))
        self.worker.fetch_paths(paths)

    def apply_update(self, tx: int, writes: Optional[dict], deltas: Optional[dict],
                     codes: Optional[dict]) -> None:
        if writes is None:
            self.mv.mark_estimate(tx)
            return
        assert deltas is not None  # a write set travels whole: writes, deltas, codes
        self.mv.record(tx, writes, deltas)
        if codes:
            self.codes.update(codes)

    def value_before(self, key: bytes, tx_index: int) -> Any:
        """The value at `key` as transaction `tx_index` finds it: the replica's latest
        write below it, else the pre-state's."""
        is_base, value = self.mv.resolve(key, tx_index)
        if is_base:
            base = self.base_value(key)
            return base + value if value else base
        return value

    def difference_from_list(self, tx_index: int, reads: dict, writes: dict,
                             deltas: dict) -> Optional[str]:
        """How the transaction's changes differ from the list's at its index (the write
        set the replica holds for it), or None; its accesses join the block's."""
        note_accesses(self.accessed_addresses, self.accessed_slots, reads, writes, deltas)
        mv = self.mv

        def before(key: bytes) -> Any:
            return self.value_before(key, tx_index)

        def slots_changed_before(address: bytes) -> list[bytes]:
            """The address's slots some index below changed (the prelude's too)."""
            changed = [key for key in mv.data if len(key) == m.SLOT_KEY_LEN
                       and key[:20] == address and not mv.resolve(key, tx_index)[0]]
            seen = set(changed)
            return changed + [key for key in self.prelude if key[:20] == address
                              and key not in seen]

        def had_storage(address: bytes) -> bool:
            return bool(self.base_value(address + m.STO))

        try:
            changes = changes_of(writes, deltas, before, slots_changed_before, had_storage)
        except AccessListUnsupported as exc:
            return str(exc)
        data = mv.data
        listed = listed_changes({key: data[key][1][tx_index]
                                 for key in mv.txkeys.get(tx_index, ())})
        if changes == listed:
            return None
        differing = sorted(set(changes.items()) ^ set(listed.items()))
        return f"transaction {tx_index}: changes {len(changes)} locations, the list {len(listed)} " \
               f"(first difference at 0x{differing[0][0].hex()})"

    def decoded(self, tx_index: int, tx: Any) -> Any:
        """The transaction object: sent once with its first task (None afterwards)."""
        if tx is None:
            return self.txs[tx_index]
        if isinstance(tx, (bytes, bytearray)):
            tx = self.vm_class.get_transaction_builder().decode(tx)
        self.txs[tx_index] = tx
        return tx

    def execute(self, tx_index: int, raw: bytes) -> tuple:
        tx = self.decoded(tx_index, raw)
        mv = self.mv
        reads: dict[bytes, tuple] = {}
        base_value = self.base_value

        def read(key: bytes, original_after_wipe: bool = False) -> Any:
            found = mv.resolve(key, tx_index)
            if key not in reads:
                reads[key] = found
            is_base, value = found
            if is_base:
                if original_after_wipe:
                    return 0
                base = base_value(key)
                return base + value if value else base
            return value

        state, db = make_tx_state(self.vm_class, self.execution_context, read, self.code_of)
        reason = check_transaction(state, self.env, tx, 0)
        if reason is not None:
            return reads, {}, {}, {}, m.invalid_outcome(reason)
        try:
            computation = state.apply_transaction(tx)
        except ValidationError as exc:
            return reads, {}, {}, {}, m.invalid_outcome(readable_error(exc))
        return reads, db.writes, db.deltas, db.codes, outcome_of(computation)


class Worker:
    def __init__(self, conn: Any, worker_id: int) -> None:
        self.conn = conn
        self.worker_id = worker_id
        self.nodes: dict[bytes, bytes] = {}  # raw nodes and code by hash, any root
        self.decoded: dict[bytes, list] = {}  # decoded trie nodes by hash, any root
        self.base_caches: dict[bytes, dict] = {}
        self.request_id = 0
        # per block: seconds running tasks (wall, CPU), blocked in recv, sending results
        self.timing = [0.0, 0.0, 0.0, 0.0]
        self.ctx: Optional[BlockContext] = None
        self.stash: deque = deque()
        self.tasks: deque = deque()
        self.outbox: list = []  # results not sent yet (see RESULTS_BATCH)
        self.root_share: Optional[m.RootShare] = None  # worked out once the tasks are done

    # -- messages ---------------------------------------------------------------
    def fetch_nodes(self, keys: list) -> None:
        """One NEED round trip for `keys`; the answers land in the node cache."""
        ctx = self.ctx
        block_id = ctx.block_id if ctx is not None else -1
        if self.outbox:
            self.flush()
        self.request_id += 1
        rid = self.request_id
        self.conn.send(m.wire(m.Need(block_id, rid, keys)))
        while True:
            msg = m.named(self.conn.recv())
            if isinstance(msg, m.Node) and msg.request_id == rid:
                nodes = self.nodes
                if len(nodes) > _NODE_CACHE_LIMIT:
                    nodes.clear()
                    self.decoded.clear()
                for key, value in zip(keys, msg.values):
                    if value is not None:
                        nodes[key] = value
                return
            self.stash.append(msg)

    def fetch_paths(self, paths: list[tuple[bytes, bytes]]) -> None:
        """Fetch, in batched round trips (one per trie level), the nodes on the paths
        to `paths`' (root, hashed key)."""
        cached = self.cached_node
        for _ in range(_MAX_PREFETCH_ROUNDS):
            missing = set()
            unfinished = []
            for path in paths:
                try:
                    lookup(cached, *path)
                except NodeMissing as exc:
                    missing.add(exc.node_hash)
                    unfinished.append(path)
            if not missing:
                return
            self.fetch_nodes(list(missing))
            paths = unfinished

    def run_root_share(self, share: m.RootShare) -> None:
        """Work out a share of the post-state root (`execution.post_state.root_part`):
        the nodes on its paths first, in batched round trips, then the tries."""
        ctx = self.ctx
        if ctx is None or share.block_id != ctx.block_id:
            return
        try:
            paths = []
            for address, storage_root, _nonce, _balance, _code_hash, slots in share.accounts:
                paths.append((ctx.pre_root, keccak(address)))
                if slots and storage_root != BLANK_ROOT:
                    paths.extend((storage_root, keccak(slot.to_bytes(SLOT_BYTES, "big")))
                                 for slot in slots)
            self.fetch_paths(paths)
            if len(self.decoded) > _NODE_CACHE_LIMIT:  # it also takes the nodes made here
                self.decoded.clear()
            children, nodes = root_part(ctx.pre_root, share.accounts, self.raw_node, self.decoded)
        except Exception:
            self.conn.send(m.wire(m.Error(share.block_id, -1, 0, traceback.format_exc())))
            return
        self.conn.send(m.wire(m.RootPart(share.block_id, children, nodes)))

    def raw_node(self, key: bytes) -> bytes:
        value = self.nodes.get(key)
        if value is None:
            self.fetch_nodes([key])
            value = self.nodes.get(key)
            if value is None:
                raise KeyError(key)
        return value

    def cached_node(self, key: bytes) -> list:
        """The decoded trie node `key` from the caches; NodeMissing if not cached."""
        node = self.decoded.get(key)
        if node is None:
            raw = self.nodes.get(key)
            if raw is None:
                raise NodeMissing(key)
            node = self.decoded[key] = decode_node(raw)
        return node

    def node_of(self, key: bytes) -> list:
        """The decoded trie node `key`, fetched from the coordinator if not cached."""
        node = self.decoded.get(key)
        if node is None:
            node = self.decoded[key] = decode_node(self.raw_node(key))
        return node

    def next_message(self, block: bool) -> Optional[m.Message]:
        if self.stash:
            return self.stash.popleft()
        if block:
            t0 = perf_counter()
            msg = m.named(self.conn.recv())
            self.timing[2] += perf_counter() - t0
            return msg
        if self.conn.poll():
            return m.named(self.conn.recv())
        return None

    def handle(self, msg: m.Message) -> None:
        if isinstance(msg, m.Work):
            ctx = self.ctx
            if ctx is None or msg.block_id != ctx.block_id:
                return
            for update in msg.updates:
                ctx.apply_update(*update)
            if msg.nodes:
                self.nodes.update(msg.nodes)
            if msg.tasks:
                self.tasks.extend(msg.tasks)
                ctx.prefetch(msg.tasks)
        elif isinstance(msg, m.Prepare):
            ctx = self.ctx
            if ctx is not None and msg.block_id == ctx.block_id:
                ctx.prefetch([(tx_index, 0, tx) for tx_index, tx in msg.transactions])
        elif isinstance(msg, m.RootShare):
            self.root_share = msg
        elif isinstance(msg, m.Block):
            nodes = msg.nodes
            if nodes:
                if len(self.nodes) + len(nodes) > _NODE_CACHE_LIMIT:
                    self.nodes.clear()
                    self.decoded.clear()
                self.nodes.update(nodes)
            self.ctx = BlockContext(self, msg.block_id, msg.env, msg.pre_root, msg.prelude,
                                    msg.checks_list)
            self.root_share = None
            self.tasks.clear()
            self.outbox.clear()
            self.timing = [0.0, 0.0, 0.0, 0.0]
        elif isinstance(msg, m.End):
            ctx = self.ctx
            accessed = None
            if ctx is not None and ctx.block_id == msg.block_id and ctx.checks_list:
                accessed = (ctx.accessed_addresses, ctx.accessed_slots)
            self.root_share = None
            self.tasks.clear()
            self.outbox.clear()
            self.ctx = None
            self.conn.send(m.wire(m.Ended(msg.block_id, self.timing, accessed)))
        elif isinstance(msg, m.Stop):
            raise _Stop()
        # NODE answers that arrive late (after a block ended) are dropped

    def run(self) -> None:
        try:
            while True:
                batch = CHECKED_RESULTS_BATCH if self.ctx is not None and self.ctx.checks_list \
                    else RESULTS_BATCH
                if self.outbox and (not self.tasks or len(self.outbox) >= batch):
                    self.flush()
                msg = self.next_message(block=not self.tasks and self.root_share is None)
                while msg is not None:
                    self.handle(msg)
                    msg = self.next_message(block=False)
                if self.tasks:
                    t0 = perf_counter()
                    c0 = process_time()
                    self.run_task(*self.tasks.popleft())
                    timing = self.timing
                    timing[0] += perf_counter() - t0
                    timing[1] += process_time() - c0
                elif self.root_share is not None:  # after the tasks: their results go first
                    share, self.root_share = self.root_share, None
                    self.run_root_share(share)
        except (_Stop, EOFError, OSError, KeyboardInterrupt):
            return

    def run_task(self, tx_index: int, incarnation: int, raw: bytes) -> None:
        ctx = self.ctx
        if ctx is None:
            return
        block_id = ctx.block_id
        try:
            reads, writes, deltas, codes, outcome = ctx.execute(tx_index, raw)
        except EstimateHit as hit:
            self.outbox.append(m.wire(m.Blocked(block_id, tx_index, incarnation, hit.tx)))
            return
        except Exception:
            self.conn.send(m.wire(m.Error(block_id, tx_index, incarnation, traceback.format_exc())))
            return
        if ctx.checks_list:
            difference = ctx.difference_from_list(tx_index, reads, writes, deltas)
            self.outbox.append(m.wire(m.Checked(block_id, tx_index, outcome, difference)))
            return
        # Our own replica learns our write set at once.
        ctx.apply_update(tx_index, writes, deltas, codes)
        accounts = ctx.new_accounts
        if accounts:
            ctx.new_accounts = {}
        self.outbox.append(m.wire(m.Done(block_id, tx_index, incarnation, reads, writes, deltas,
                                         codes, outcome, accounts)))

    def flush(self) -> None:
        """Send the buffered results in one message."""
        t0 = perf_counter()
        outbox = self.outbox
        self.conn.send(m.wire(m.Results(outbox)) if len(outbox) > 1 else outbox[0])
        self.outbox = []
        self.timing[3] += perf_counter() - t0


def worker_main(conn: Any, worker_id: int) -> None:
    logging.getLogger("eth").setLevel(logging.WARNING)
    tune_collector()
    freeze_startup_objects()
    profile_dir = os.environ.get("LAMINAR_BLOCKSTM_PROFILE")
    if not profile_dir:
        Worker(conn, worker_id).run()
        return
    import cProfile  # opt-in worker profile, dumped when the worker exits

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        Worker(conn, worker_id).run()
    finally:
        profiler.disable()
        profiler.dump_stats(os.path.join(profile_dir, f"worker-{worker_id}-{os.getpid()}.prof"))
