"""The sequential executor: the reference every other executor must match exactly.

It runs a block's transactions one after another on py-evm's state object, the way
py-evm's `VM.import_block` does (block pre-processing, `apply_all_transactions`,
withdrawals, block post-processing, block rewards, persist), but without a chain
database, a header chain or header validation: the environment comes from `BlockEnv` and
the pre-state from a `StateView`, and every write lands in an `OverlayDB` whose buffer
becomes `ExecutionResult.state_nodes`. The rules around the transactions are
`execution/rules.py`'s.
"""

from __future__ import annotations

import logging
import time
from typing import Optional, Sequence

from eth.abc import ReceiptAPI, SignedTransactionAPI, StateAPI
from eth_utils import ValidationError

from execution.bal.builder import AccessRecord, build_access_list
from execution.bal.recorder import RecordingAccountDB, pre_state_storage, recording_state_class
from execution.executor import (
    BlockEnv,
    BlockInput,
    ExecutionResult,
    ExecutionStats,
    InvalidBlockError,
    StateView,
    adopt_known_senders,
)
from execution.overlay import OverlayDB
from execution.receipts import make_receipt
from execution.rules import (
    GasHeader,
    block_preprocessing,
    check_transaction,
    finish_block,
    make_execution_context,
    readable_error,
)
from execution.state_db import batched_state_class

# py-evm logs every transaction and computation at DEBUG; unless someone configured
# the "eth" logger on purpose, keep that out (a root logger at DEBUG would cost more
# than the execution itself).
_eth_logger = logging.getLogger("eth")
if _eth_logger.level == logging.NOTSET:
    _eth_logger.setLevel(logging.WARNING)


def apply_transactions(
    state: StateAPI,
    env: BlockEnv,
    transactions: Sequence[SignedTransactionAPI],
    receipts: list[ReceiptAPI],
    start: int = 0,
    gas_used: int = 0,
    bloom: int = 0,
    recorder: Optional[RecordingAccountDB] = None,
    records: Optional[list[AccessRecord]] = None,
) -> tuple[int, int]:
    """Apply `transactions[start:]` to `state` one after another; return (gas_used, bloom).

    py-evm's VM.apply_all_transactions without the header copies: the only header field
    make_receipt reads is the cumulative gas (`gas_used`: what the transactions before
    `start` used). Receipts are appended to `receipts`. Pre-Byzantium make_receipt
    computes the intermediate state root each receipt carries (the fork requires it);
    afterwards no per-transaction root is computed. The sequential executor runs a whole
    block through it; Block-STM runs the rest of a block through it when it falls back
    mid-block (after folding the committed prefix into `state`). With a `recorder` (the
    state's recording account DB) each transaction's access record goes to `records`.
    """
    vm_class = env.vm_class
    header = GasHeader(gas_used)
    for index in range(start, len(transactions)):
        tx = transactions[index]
        if recorder is not None:
            recorder.open_record()
        reason = check_transaction(state, env, tx, gas_used)
        if reason is not None:
            raise InvalidBlockError(index, reason)
        state.lock_changes()
        try:
            computation = state.apply_transaction(tx)
        except ValidationError as exc:
            raise InvalidBlockError(index, readable_error(exc)) from exc
        header.gas_used = gas_used
        receipt = make_receipt(vm_class, header, tx, computation, state)
        gas_used = receipt.gas_used
        bloom |= int(receipt.bloom)
        receipts.append(receipt)
        if recorder is not None and records is not None:
            records.append(recorder.close_record())
    return gas_used, bloom


class SequentialExecutor:
    """Runs transactions one after another: the reference executor."""

    name = "sequential"

    def execute(self, block: BlockInput, pre_state: StateView) -> ExecutionResult:
        started = time.perf_counter()
        env = block.env
        vm_class = env.vm_class
        transactions = tuple(block.transactions)
        adopt_known_senders(block)

        db = OverlayDB(pre_state.nodes)
        building = block.build_access_list
        state_class = (recording_state_class if building else batched_state_class)(
            vm_class.get_state_class()
        )
        state = state_class(db, make_execution_context(env), pre_state.state_root)
        recorder = state._account_db if building else None
        records: list[AccessRecord] = []

        if recorder is not None:
            recorder.open_record()
        block_preprocessing(state, env)
        if recorder is not None:
            records.append(recorder.close_record())

        receipts: list[ReceiptAPI] = []
        gas_used, bloom = apply_transactions(
            state, env, transactions, receipts, recorder=recorder, records=records
        )
        executed = time.perf_counter()

        if recorder is not None:
            recorder.open_record()
        requests = finish_block(state, block, receipts)
        access_list = None
        if recorder is not None:
            records.append(recorder.close_record())
            access_list = build_access_list(
                records, recorder.pre_values.__getitem__, pre_state_storage(pre_state)
            )
        state.persist()
        post_root = state.state_root
        finished = time.perf_counter()
        return ExecutionResult(
            access_list=access_list,
            requests=requests,
            receipts=tuple(receipts),
            gas_used=gas_used,
            logs_bloom=bloom,
            post_state_root=post_root,
            state_nodes=db.pending(),
            stats=ExecutionStats(
                executor=self.name,
                transactions=len(transactions),
                seconds=finished - started,
                workers=1,
                incarnations=len(transactions),
                execution_seconds=executed - started,
                commit_seconds=finished - executed,
            ),
        )
