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


DELEGATION = b"\xef\x01\x00" + b"\x42" * 20  # EIP-7702: still an EOA that may send


@pytest.mark.parametrize("seed", range(20))
def test_the_chains_state_reader_reads_what_py_evm_reads(tmp_path, seed: int) -> None:
    """`node.chain.StateReader` (the lean trie reader, shared decoded nodes, one read an
    account) against py-evm's AccountDB over the same LevelDB, at two roots in turn."""
    from execution.overlay import OverlayDB
    from node.chain import StateReader
    from storage.leveldb import LevelDB

    rng = random.Random(seed)
    db = LevelDB(tmp_path / "state")
    try:
        overlay = OverlayDB(db)
        accounts = AccountDB(overlay)
        shared: dict = {}
        for _ in range(2):
            for address in ADDRESSES:
                roll = rng.random()
                if roll < 0.2:
                    accounts.delete_account(address)
                    continue
                accounts.set_balance(address, rng.choice([0, rng.randrange(10**24)]))
                accounts.set_nonce(address, rng.randrange(1000))
                if roll < 0.4:
                    accounts.set_code(address, rng.choice([DELEGATION, rng.randbytes(30), b""]))
                if roll < 0.6:
                    accounts.set_storage(address, rng.choice(SLOTS), rng.randrange(1, 2**256))
            accounts.persist()
            db.write_atomically(overlay.pending())
            root = accounts.state_root
            reader, expected = StateReader(db, root, shared), AccountDB(OverlayDB(db), root)
            for address in [*ADDRESSES, b"\x77" * 20]:  # the last one never existed
                code = expected.get_code(address)
                assert reader.get_balance(address) == expected.get_balance(address)
                assert reader.get_nonce(address) == expected.get_nonce(address)
                assert reader.get_code(address) == code
                assert reader.has_code(address) == (bool(code) and code != DELEGATION)
                for slot in SLOTS:
                    assert reader.get_storage(address, slot) == expected.get_storage(address, slot)
    finally:
        db.close()


def test_state_classes_log_under_py_evms_logger_names() -> None:
    """Each state class looks its logger up once (py-evm's property did it several times
    per transaction); it is the very logger py-evm's property gives, so logging set up by
    name (`eth.vm.state.<class>`) still reaches py-evm's messages."""
    import eth.vm.state
    from eth.vm.forks.cancun.state import CancunState
    from eth_utils import ExtendedDebugLogger

    from execution.bal.recorder import recording_state_class
    from execution.blockstm.state import blockstm_state_class
    from execution.state_db import batched_state_class

    for state_class in (batched_state_class(CancunState), blockstm_state_class(CancunState),
                        recording_state_class(CancunState)):
        instance = state_class.__new__(state_class)
        py_evms = eth.vm.state.BaseState.logger.fget(instance)
        assert isinstance(state_class.logger, ExtendedDebugLogger)
        assert instance.logger is py_evms
        assert py_evms.name == f"eth.vm.state.{state_class.__name__}"
