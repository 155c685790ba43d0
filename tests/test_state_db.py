"""The batched account/storage databases behave exactly like py-evm's own.

The same random program of account and storage writes, deletions, storage wipes,
checkpoints with reverts and commits, state roots and persists runs against py-evm's
`AccountDB` and `BatchedAccountDB`: every state root and every read must agree, and a
fresh reader over what each persisted must see the same state.
"""

from __future__ import annotations

import random

import pytest
from eth.db.account import AccountDB
from eth.db.atomic import AtomicDB

from execution.state_db import BatchedAccountDB

ADDRESSES = [bytes([index]) * 20 for index in range(1, 9)]
SLOTS = [0, 1, 2, 3, 255, 2**255]


def random_program(rng: random.Random, length: int) -> list[tuple]:
    program: list[tuple] = []
    for _ in range(length):
        address = rng.choice(ADDRESSES)
        roll = rng.random()
        if roll < 0.25:
            program.append(("set_storage", address, rng.choice(SLOTS),
                            rng.choice([0, 1, rng.randrange(2**256)])))
        elif roll < 0.40:
            program.append(("set_balance", address, rng.choice([0, rng.randrange(10**20)])))
        elif roll < 0.50:
            program.append(("set_nonce", address, rng.randrange(5)))
        elif roll < 0.55:
            program.append(("set_code", address, rng.randbytes(rng.randrange(40))))
        elif roll < 0.60:
            program.append(("delete_account", address))
        elif roll < 0.65:
            program.append(("delete_storage", address))
        elif roll < 0.72:
            program.append(("record",))
        elif roll < 0.79:
            program.append(("discard",))
        elif roll < 0.84:
            program.append(("commit",))
        elif roll < 0.90:
            program.append(("lock_changes",))
        elif roll < 0.95:
            program.append(("make_state_root",))
        else:
            program.append(("persist",))
    program.append(("persist",))
    return program


def observe(accounts: AccountDB) -> tuple:
    """Everything a reader can see of the test's accounts."""
    return tuple(
        (accounts.get_balance(a), accounts.get_nonce(a), accounts.get_code(a),
         accounts.account_exists(a), tuple(accounts.get_storage(a, s) for s in SLOTS))
        for a in ADDRESSES
    )


def run(account_db_class: type[AccountDB], program: list[tuple]) -> list:
    db = AtomicDB()
    accounts = account_db_class(db)
    checkpoints: list = []
    trace: list = []
    for step in program:
        op, *args = step
        if op == "record":
            checkpoints.append(accounts.record())
        elif op == "discard":
            if checkpoints:
                accounts.discard(checkpoints.pop())
        elif op == "commit":
            if checkpoints:
                accounts.commit(checkpoints.pop())
        elif op in ("make_state_root", "persist", "lock_changes"):
            checkpoints.clear()  # as between transactions: no checkpoint outlives these
            getattr(accounts, op)()
            trace.append((op, accounts.state_root))
        else:
            getattr(accounts, op)(*args)
        trace.append(observe(accounts))
    # A fresh reader over the persisted database sees the same state.
    trace.append(observe(account_db_class(db, accounts.state_root)))
    return trace


@pytest.mark.parametrize("seed", range(60))
def test_batched_account_db_matches_py_evm(seed: int) -> None:
    rng = random.Random(seed)
    program = random_program(rng, rng.randrange(10, 120))
    assert run(BatchedAccountDB, program) == run(AccountDB, program)


def test_many_accounts_and_slots_in_one_root() -> None:
    """A block-sized batch: thousands of accounts and slots change before one persist."""
    program: list[tuple] = []
    rng = random.Random(1)
    for index in range(3000):
        address = index.to_bytes(20, "big")
        program.append(("set_balance", address, rng.randrange(1, 10**20)))
        if index % 3 == 0:
            program.append(("set_storage", ADDRESSES[0], index, rng.randrange(1, 2**64)))
    program.append(("persist",))
    for index in range(0, 3000, 7):  # then delete and rewrite some of them
        program.append(("delete_account", index.to_bytes(20, "big")))
        program.append(("set_storage", ADDRESSES[0], index, 0))
    program.append(("persist",))
    batched, reference = run(BatchedAccountDB, program), run(AccountDB, program)
    assert [s for s in batched if s[0] == "persist"] == [s for s in reference
                                                          if s[0] == "persist"]
    assert batched == reference
