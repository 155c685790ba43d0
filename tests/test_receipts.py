"""`execution.receipts.make_receipt` gives py-evm's receipt, object and encoding, for
every transaction type, failed or not, with and without logs; before Byzantium it is
py-evm's own call."""

from __future__ import annotations

import pytest
from eth.vm.forks import FrontierVM
from eth_account import Account

from execution.blockstm.state import OutcomeComputation
from execution.forks import LAMINAR_VM
from execution.receipts import make_receipt
from execution.rules import GasHeader

KEY = Account.from_key(b"\x07" * 32)
TO = "0x5e5E5e5e5E5e5E5E5e5E5E5e5e5E5E5E5e5E5E5e"  # 0x5e...5e, checksummed
GWEI = 10**9
BASE = {"chainId": 31337, "nonce": 3, "gas": 90_000, "to": TO, "value": 5, "data": "0x1234"}
FEES_1559 = {"maxFeePerGas": 9 * GWEI, "maxPriorityFeePerGas": GWEI}


def signed(kind: str) -> bytes:
    if kind == "legacy":
        tx = {**BASE, "gasPrice": 9 * GWEI}
    elif kind == "access list (2930)":
        tx = {**BASE, "gasPrice": 9 * GWEI, "type": 1,
              "accessList": [{"address": TO, "storageKeys": ["0x" + "00" * 31 + "01"]}]}
    elif kind == "dynamic fee (1559)":
        tx = {**BASE, **FEES_1559, "type": 2}
    else:  # set code (7702)
        authorization = KEY.sign_authorization({"chainId": 31337, "address": TO, "nonce": 4})
        tx = {**BASE, **FEES_1559, "type": 4, "authorizationList": [authorization]}
    return bytes(KEY.sign_transaction(tx).raw_transaction)


LOGS = ((b"\x11" * 20, (1, 2**255 + 7), b"payload"), (b"\x22" * 20, (), b""))


@pytest.mark.parametrize("kind", ["legacy", "access list (2930)", "dynamic fee (1559)",
                                  "set code (7702)"])
@pytest.mark.parametrize("is_error", [False, True])
@pytest.mark.parametrize("logs", [(), LOGS])
def test_receipts_are_py_evms(kind: str, is_error: bool, logs: tuple) -> None:
    tx = LAMINAR_VM.get_transaction_builder().decode(signed(kind))
    computation = OutcomeComputation(("ok", 30_000, 4_000, 0, is_error, () if is_error else logs))
    header = GasHeader(1_234_567)
    expected = LAMINAR_VM.make_receipt(header, tx, computation, None)
    made = make_receipt(LAMINAR_VM, header, tx, computation, None)
    assert type(made) is type(expected)
    assert made == expected
    assert made.encode() == expected.encode()
    assert made.bloom == expected.bloom and made.gas_used == expected.gas_used


def test_before_byzantium_the_receipt_is_py_evms_own_call() -> None:
    """A Frontier receipt holds the state root after the transaction: py-evm makes it
    from the state, so the fast path must not be taken."""
    calls = []

    class Recording(FrontierVM):
        @classmethod
        def make_receipt(cls, base_header, transaction, computation, state):  # type: ignore[override]
            calls.append(transaction)
            return "py-evm's"

    assert make_receipt(Recording, GasHeader(0), "tx", None, None) == "py-evm's"
    assert calls == ["tx"]
