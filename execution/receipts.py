"""Receipts as py-evm makes them (Byzantium on), without its generic constructor.

py-evm's `make_receipt` builds each `Receipt` through rlp's `Serializable` keyword path
(argument merging and validation) and a bloom filter even when there are no logs: 30 us
a transfer's receipt here, made on the coordinator, the serial part of a parallel block.
`make_receipt` gives the same object (fields, encoding, typed wrapper) in a fraction of
that; `tests/test_receipts.py` compares the two on every transaction type, with and
without logs, failed and successful.
"""

from __future__ import annotations

import itertools
from typing import Any

from eth.rlp.logs import Log
from eth.rlp.receipts import Receipt
from eth.vm.forks import ByzantiumVM
from eth.vm.forks.berlin.transactions import TypedTransaction
from eth.vm.forks.byzantium.constants import (
    EIP658_TRANSACTION_STATUS_CODE_FAILURE,
    EIP658_TRANSACTION_STATUS_CODE_SUCCESS,
)
from eth_bloom import BloomFilter
from rlp.sedes.serializable import BaseSerializable

_BYZANTIUM_MAKE_RECEIPT = ByzantiumVM.make_receipt.__func__


def make_receipt(vm_class: Any, base_header: Any, transaction: Any, computation: Any,
                 state: Any) -> Any:
    """`vm_class.make_receipt(base_header, transaction, computation, state)`: the
    receipt of `transaction` when the block's transactions before it used
    `base_header.gas_used`."""
    if getattr(vm_class.make_receipt, "__func__", None) is not _BYZANTIUM_MAKE_RECEIPT:
        return vm_class.make_receipt(base_header, transaction, computation, state)
    gas_used = base_header.gas_used + vm_class.finalize_gas_used(transaction, computation)
    status = (EIP658_TRANSACTION_STATUS_CODE_FAILURE if computation.is_error
              else EIP658_TRANSACTION_STATUS_CODE_SUCCESS)
    logs = tuple(Log(address, topics, data) for address, topics, data in computation.get_log_entries())
    bloom = int(BloomFilter.from_iterable(
        itertools.chain.from_iterable(log.bloomables for log in logs))) if logs else 0
    receipt = Receipt.__new__(Receipt)
    # rlp's positional path: the fields in Receipt's order, no keyword merging.
    BaseSerializable.__init__(receipt, status, gas_used, bloom, logs)
    if isinstance(transaction, TypedTransaction):
        return transaction.receipt_builder.typed_receipt_class(transaction.type_id, receipt)
    return receipt
