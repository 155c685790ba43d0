"""Validation, the rolling commit, and folding committed write sets into the state.

Validation re-resolves an incarnation's reads against the multi-version memory; the
rolling commit advances over the lowest transactions once their reads are final (every
lower one committed) and applies the block-level checks in order; the fold replays the
committed write sets into the coordinator's py-evm state, in order, with the receipts.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from eth.rlp.accounts import Account
from eth.vm.forks import ByzantiumVM
from eth_hash.auto import keccak

from execution.account_rlp import decode_account_fields
from execution.blockstm.messages import TxIndex, TxResult, invalid_reason
from execution.blockstm.mvmemory import MVMemory
from execution.blockstm.scheduler import EXECUTED, Scheduler
from execution.blockstm.state import OutcomeComputation, fold_write_set, merge_write_sets
from execution.blockstm.triereader import NodeMissing, lookup
from execution.executor import BlockEnv, InvalidBlockError
from execution.receipts import make_receipt
from execution.rules import GasHeader, block_level_reason


class RollingCommit:
    def __init__(self, env: BlockEnv, txs: Sequence, mv: MVMemory, sched: Scheduler,
                 results: list[Optional[TxResult]], abort: Callable[[TxIndex], None]) -> None:
        self.env = env
        self.txs = txs
        self.mv = mv
        self.sched = sched
        self.results = results
        self.abort = abort
        self.gas_used = 0

    def validate(self) -> None:
        """Validate every executed transaction above the commit index; abort the stale."""
        sched = self.sched
        status = sched.status
        results = self.results
        validate = self.mv.validate
        span = sched.validation_range()
        for v in span:
            if status[v] == EXECUTED:
                result = results[v]
                assert result is not None
                if not validate(v, result.reads):
                    self.abort(v)
        sched.validated_below(max(span.start, span.stop))

    def advance(self) -> None:
        """Commit the lowest transactions whose reads are final; InvalidBlockError for one
        that cannot be in the block."""
        sched = self.sched
        while True:
            c = sched.next_to_commit()
            if c < 0:
                return
            result = self.results[c]
            assert result is not None
            if not self.mv.validate(c, result.reads):
                self.abort(c)
                return
            sched.commit(c)
            tx = self.txs[c]
            reason = block_level_reason(self.env, tx, self.gas_used)
            if reason is None:
                reason = invalid_reason(result.outcome)
            if reason is not None:
                raise InvalidBlockError(c, reason)
            self.gas_used += self.env.vm_class.finalize_gas_used(
                tx, OutcomeComputation(result.outcome)
            )


def prime_account_cache(
    cache: dict, base_accounts: dict[bytes, bytes], results: Sequence[Optional[TxResult]],
    end: int, node_of: Callable[[bytes], Any], root: bytes,
) -> None:
    """Give the commit AccountDB the pre-state accounts the fold will touch, so it does
    not walk the trie for them (py-evm's HexaryTrie decodes every node of the path on
    every read). Accounts the workers read come with their RLP; the others (e.g.
    recipients of blind credits) are looked up with the lean reader over a decoded-node
    cache. Called before the fold, so every value inserted is a pre-state value (the
    cache is a plain dict, never evicted)."""
    for address, encoded in base_accounts.items():
        if address not in cache:
            cache[address] = Account(*decode_account_fields(encoded)) if encoded else Account()
    prime_written_accounts(cache, base_accounts, results, 0, end, node_of, root)


def prime_written_accounts(
    cache: dict, base_accounts: dict[bytes, bytes], results: Sequence[Optional[TxResult]],
    start: int, end: int, node_of: Callable[[bytes], Any], root: bytes,
) -> None:
    """Put the pre-state accounts that transactions [start, end) write into `cache`:
    from the workers' reads where they have them, else with the lean reader. Must run
    before the fold (every value inserted is a pre-state value)."""
    touched: set = set()
    for i in range(start, end):
        result = results[i]
        if result is None:
            continue
        for key in result.writes:
            touched.add(key[:20])
        for key in result.deltas:
            touched.add(key[:20])
    # Not touched.difference_update(cache): that walks the whole cache (every account
    # the block has primed so far) on each call, and this runs at every advance of the
    # commit index.
    for address in [address for address in touched if address not in cache]:
        encoded = base_accounts.get(address)
        if encoded is None:
            try:
                encoded = lookup(node_of, root, keccak(address))
            except (KeyError, NodeMissing, ValueError):
                continue  # let py-evm read it (and raise what it raises)
        cache[address] = Account(*decode_account_fields(encoded)) if encoded else Account()


class Fold:
    """The committed write sets, replayed into the coordinator's state with the receipts."""

    def __init__(self, state: Any, env: BlockEnv, txs: Sequence) -> None:
        self.state = state
        self.vm_class = env.vm_class
        self.txs = txs
        self.receipts: list = []
        self.bloom = 0
        self.header = GasHeader(0)
        self.merged = False  # whether the write sets went in as one

    @property
    def receipts_before_fold(self) -> bool:
        """Byzantium on, a receipt carries no state root: it can be made as soon as its
        transaction commits, before any write set is folded."""
        return issubclass(self.vm_class, ByzantiumVM)

    def receipts_up_to(self, results: Sequence[Optional[TxResult]], end: int) -> None:
        """Make the receipts of committed transactions up to `end` that have none yet
        (only where `receipts_before_fold`)."""
        assert self.receipts_before_fold
        for i in range(len(self.receipts), end):
            result = results[i]
            assert result is not None
            self.add_receipt(i, result.outcome)

    def fold(self, results: list[Optional[TxResult]], end: int) -> None:
        """Fold the committed write sets of transactions [0, end), freeing them, with the
        receipts not made yet."""
        state = self.state
        vm_class = self.vm_class
        made = len(self.receipts)
        if issubclass(vm_class, ByzantiumVM):
            # Receipts no longer carry a state root: when no write set wipes storage,
            # deletes an account or changes code, the write sets merge into one (last
            # write wins, credits add up) and the state takes each location once (the
            # coinbase once per block instead of once per transaction).
            merged = merge_write_sets(results, end)
            if merged is not None:
                self.merged = True
                state.lock_changes()
                fold_write_set(state, merged[0], merged[1], {})
                for i in range(end):
                    result = results[i]
                    assert result is not None
                    if i >= made:
                        self.add_receipt(i, result.outcome)
                    results[i] = None
                return
        for i in range(end):
            result = results[i]
            assert result is not None
            state.lock_changes()
            fold_write_set(state, result.writes, result.deltas, result.codes)
            if i >= made:
                self.add_receipt(i, result.outcome)
            results[i] = None  # free memory

    def add_receipt(self, i: int, outcome: tuple) -> None:
        receipt = make_receipt(self.vm_class, self.header, self.txs[i], OutcomeComputation(outcome),
                               self.state)
        self.header.gas_used = receipt.gas_used
        self.bloom |= int(receipt.bloom)
        self.receipts.append(receipt)
