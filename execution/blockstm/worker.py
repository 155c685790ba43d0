"""The worker process: executes incarnations on local replicas, never on shared memory.

A worker keeps, per block, a replica of the multi-version memory (fed by the write sets
the coordinator broadcasts), the block prelude, a base-value cache for the block's
pre-state root, and — across blocks — a content-addressed cache of trie nodes and code
(valid under any root). Base values are read through py-evm's AccountDB over that node
cache; a node not cached yet costs one round trip to the coordinator (NEED/NODE).
"""

from __future__ import annotations

import logging
import os
import traceback
from collections import deque
from typing import Any, Optional

import rlp
from eth.constants import EMPTY_SHA3
from eth.db.account import AccountDB
from eth.rlp.accounts import Account
from eth_utils import ValidationError

from execution.blockstm import messages as m
from execution.blockstm.mvmemory import EstimateHit, MVMemory
from execution.blockstm.state import make_tx_state, outcome_of
from execution.overlay import OverlayDB
from execution.sequential import _readable, check_transaction, make_execution_context

_NODE_CACHE_LIMIT = 2_000_000
_FIELD_INDEX = {m.EXI: 0, m.NON: 1, m.BAL: 2, m.COD: 3}


class _Stop(Exception):
    pass


class _RemoteNodes:
    """A NodeReader over the worker's node cache; misses are asked of the coordinator."""

    def __init__(self, worker: "Worker") -> None:
        self.worker = worker

    def __getitem__(self, key: bytes) -> bytes:
        cache = self.worker.nodes
        try:
            return cache[key]
        except KeyError:
            value = self.worker.fetch_node(key)
            if value is None:
                raise KeyError(key) from None
            if len(cache) > _NODE_CACHE_LIMIT:
                cache.clear()
            cache[key] = value
            return value

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True


class BlockContext:
    def __init__(self, worker: "Worker", block_id: int, env: Any, pre_root: bytes,
                 prelude: dict) -> None:
        self.block_id = block_id
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
        self.accounts = AccountDB(OverlayDB(_RemoteNodes(worker)), pre_root)
        self.worker = worker
        # Base account RLPs loaded for this block and not yet reported: the coordinator
        # primes its commit AccountDB with them instead of walking the trie again.
        self.reported: set = set()
        self.new_accounts: dict[bytes, bytes] = {}

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
                value = self.accounts.get_storage(address, int.from_bytes(key[20:], "big"))
                base[key] = value
                return value
            if key[20:] == m.WIP:
                return False
            encoded = base.get(address)
            if encoded is None:
                encoded = self.accounts._get_encoded_account(address, from_journal=False)
                base[address] = encoded
            if address not in self.reported:
                self.reported.add(address)
                self.new_accounts[address] = encoded
            if encoded:
                acct = rlp.decode(encoded, sedes=Account)
                fields = (True, acct.nonce, acct.balance, acct.code_hash)
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
            code = _RemoteNodes(self.worker)[code_hash]
        return code

    def apply_update(self, tx: int, writes: Optional[dict], deltas: Optional[dict],
                     codes: Optional[dict]) -> None:
        if writes is None:
            self.mv.mark_estimate(tx)
            return
        self.mv.record(tx, writes, deltas)
        if codes:
            self.codes.update(codes)

    def decoded(self, tx_index: int, raw: bytes) -> Any:
        tx = self.txs.get(tx_index)
        if tx is None:
            tx = self.vm_class.get_transaction_builder().decode(raw)
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
            return reads, {}, {}, {}, ("invalid", reason)
        try:
            computation = state.apply_transaction(tx)
        except ValidationError as exc:
            return reads, {}, {}, {}, ("invalid", _readable(exc))
        return reads, db.writes, db.deltas, db.codes, outcome_of(computation)


class Worker:
    def __init__(self, conn: Any, worker_id: int) -> None:
        self.conn = conn
        self.worker_id = worker_id
        self.nodes: dict[bytes, bytes] = {}
        self.base_caches: dict[bytes, dict] = {}
        self.ctx: Optional[BlockContext] = None
        self.stash: deque = deque()
        self.tasks: deque = deque()

    # -- messages ---------------------------------------------------------------
    def fetch_node(self, key: bytes) -> Optional[bytes]:
        ctx = self.ctx
        block_id = ctx.block_id if ctx is not None else -1
        self.conn.send((m.NEED, block_id, key))
        while True:
            msg = self.conn.recv()
            if msg[0] == m.NODE and msg[2] == key:
                return msg[3]
            self.stash.append(msg)

    def next_message(self, block: bool) -> Optional[tuple]:
        if self.stash:
            return self.stash.popleft()
        if block or self.conn.poll():
            return self.conn.recv()
        return None

    def handle(self, msg: tuple) -> None:
        tag = msg[0]
        if tag == m.WORK:
            ctx = self.ctx
            if ctx is None or msg[1] != ctx.block_id:
                return
            for update in msg[2]:
                ctx.apply_update(*update)
            self.tasks.extend(msg[3])
        elif tag == m.BLOCK:
            _, block_id, env, pre_root, prelude = msg
            self.ctx = BlockContext(self, block_id, env, pre_root, prelude)
            self.tasks.clear()
        elif tag == m.END:
            self.tasks.clear()
            self.ctx = None
            self.conn.send((m.ENDED, msg[1]))
        elif tag == m.STOP:
            raise _Stop()
        # NODE answers that arrive late (after a block ended) are dropped

    def run(self) -> None:
        try:
            while True:
                msg = self.next_message(block=not self.tasks)
                while msg is not None:
                    self.handle(msg)
                    msg = self.next_message(block=False)
                if self.tasks:
                    self.run_task(*self.tasks.popleft())
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
            self.conn.send((m.BLOCKED, block_id, tx_index, incarnation, hit.tx))
            return
        except Exception:
            self.conn.send((m.ERROR, block_id, tx_index, incarnation, traceback.format_exc()))
            return
        # Our own replica learns our write set at once.
        ctx.apply_update(tx_index, writes, deltas, codes)
        accounts = ctx.new_accounts
        if accounts:
            ctx.new_accounts = {}
        self.conn.send((m.DONE, block_id, tx_index, incarnation, reads, writes, deltas,
                        codes, outcome, accounts))


def worker_main(conn: Any, worker_id: int) -> None:
    logging.getLogger("eth").setLevel(logging.WARNING)
    try:
        os.nice(0)
    except OSError:
        pass
    Worker(conn, worker_id).run()
