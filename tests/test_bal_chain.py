"""Laminar's chain with block-level access lists, on real LevelDBs: the proposer's block
carries its list and the header commits to it; a validator running any executor refuses
a block whose list is wrong; a node syncing certified blocks with `sync_mode = "bal"`
applies their lists without executing and ends in the same state, serving the same
receipts."""

from __future__ import annotations

import pytest
import rlp
from bal_lies import LIES
from eth_account import Account
from eth_keys import keys
from eth_utils import keccak

from execution.bal.codec import BlockAccessList
from execution.bal.importer import BALImportExecutor
from execution.blockstm import BlockSTMExecutor
from execution.sequential import SequentialExecutor
from node.blocks import EMPTY_ACCESS_LIST_HASH
from node.chain import CHAIN_FORMAT, Chain, GenesisMismatchError, InvalidProposalError
from node.genesis import dev_accounts, dev_genesis
from storage.chain_store import FORMAT_KEY
from storage.leveldb import LevelDB

GENESIS = dev_genesis((keys.PrivateKey(b"\x01" * 32).public_key.to_canonical_address(),))
SENDERS = [Account.from_key(a.private_key) for a in dev_accounts()[:4]]
# Init code: SSTORE(0, 42), LOG0 of nothing, deploy no code.
INIT_STORE_AND_LOG = bytes.fromhex("602a60005560006000a000")


def _tx(chain: Chain, sender, nonce: int, **fields):
    body = {"type": 2, "chainId": 31337, "nonce": nonce, "value": 5, "gas": 21_000,
            "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
            "to": dev_accounts()[5].address}
    body.update(fields)
    raw = bytes(sender.sign_transaction(body).raw_transaction)
    return chain.vm_class.get_transaction_builder().decode(raw)


def _block_txs(chain: Chain, height: int) -> list:
    txs = [_tx(chain, s, height) for s in SENDERS[:3]]
    txs.append(_tx(chain, SENDERS[3], height, to=None, value=0, gas=200_000,
                   data=INIT_STORE_AND_LOG))
    return txs


@pytest.fixture
def chains(tmp_path):
    made = []

    def make(name: str, executor=None) -> Chain:
        db = LevelDB(tmp_path / name)
        chain = Chain(db, executor or SequentialExecutor(), GENESIS)
        made.append((chain, db))
        return chain

    yield make
    for chain, db in made:
        close = getattr(chain.executor, "close", None)
        if close is not None:
            close()
        db.close()


def _commit(chain: Chain, proposal) -> None:
    chain.write_block(proposal, b"certificate")
    chain.advance_head(proposal)


def test_proposed_blocks_carry_their_list(chains) -> None:
    chain = chains("a")
    assert chain.head.block_access_list_hash == EMPTY_ACCESS_LIST_HASH  # genesis
    proposal = chain.propose(_block_txs(chain, 0), 1_000, b"\x33" * 20)
    block = proposal.block
    assert keccak(block.access_list) == block.header.block_access_list_hash
    access_list = BlockAccessList.decode(block.access_list)
    assert access_list == proposal.result.access_list
    # The deployed contract's slot and every sender's nonce are in it.
    nonces = {a.address for a in access_list.accounts if a.nonce_changes}
    assert {bytes.fromhex(s.address[2:]) for s in SENDERS} <= nonces
    assert any(slot.changes[-1].value == 42
               for a in access_list.accounts for slot in a.storage_changes)
    _commit(chain, proposal)
    stored = chain.block_by_hash(proposal.header.hash)
    assert stored is not None and stored.access_list == block.access_list
    assert chain.access_list(stored) == access_list


@pytest.mark.parametrize("executor", ["sequential", "blockstm", "bal"])
def test_every_executor_refuses_a_wrong_list(chains, executor) -> None:
    builder = chains("builder")
    made = {"sequential": SequentialExecutor, "blockstm": lambda: BlockSTMExecutor(2),
            "bal": lambda: BALImportExecutor(2, force_parallel=True)}[executor]()
    verifier = chains("verifier", made)
    proposal = builder.propose(_block_txs(builder, 0), 1_000, b"\x33" * 20)
    block = proposal.block
    truth = BlockAccessList.decode(block.access_list)
    for kind, lie in LIES.items():
        if kind in ("storage value", "missing slot") and not any(
                a.storage_changes for a in truth.accounts):
            continue
        wrong = lie(truth, len(block.transactions)).encode()
        forged = block.copy(header=block.header.copy(block_access_list_hash=keccak(wrong)),
                            access_list=wrong)
        decoded = verifier.decode_block(rlp.encode(forged))  # canonical, hashes right
        with pytest.raises(InvalidProposalError, match="access list is wrong"):
            verifier.import_block(decoded)
    # A list that does not hash to its header, and bytes that are not a list.
    with pytest.raises(InvalidProposalError, match="does not hash"):
        verifier.decode_block(rlp.encode(block.copy(access_list=b"\xc0")))
    garbage = b"\x01"
    with pytest.raises(InvalidProposalError, match="undecodable access list"):
        verifier.decode_block(rlp.encode(block.copy(
            header=block.header.copy(block_access_list_hash=keccak(garbage)),
            access_list=garbage)))
    # The true block imports, and the chain moves on.
    executed = verifier.import_block(verifier.decode_block(rlp.encode(block)))
    assert executed.header.state_root == proposal.header.state_root
    _commit(verifier, executed)
    assert verifier.head.hash == proposal.header.hash


def test_import_checks_the_transactions_root_of_a_block_decode_block_did_not_check(
        chains) -> None:
    """A block decode_block checked has its transactions root taken from its header on
    import; any other block object has it built again and compared."""
    builder = chains("builder")
    verifier = chains("verifier")
    proposal = builder.propose(_block_txs(builder, 0), 1_000, b"\x33" * 20)
    block = proposal.block
    wrong_root = block.copy(header=block.header.copy(transaction_root=b"\x11" * 32))
    with pytest.raises(InvalidProposalError, match="transaction_root"):
        verifier.import_block(wrong_root)
    with pytest.raises(InvalidProposalError, match="transactions root"):
        verifier.decode_block(rlp.encode(wrong_root))
    same_transactions = block.copy(transactions=list(block.transactions))  # other objects
    executed = verifier.import_block(same_transactions)
    assert executed.header.hash == proposal.header.hash


def test_executionless_sync_reaches_the_same_state_and_receipts(chains) -> None:
    source = chains("source")
    follower = chains("follower")
    for height in range(4):
        proposal = source.propose(_block_txs(source, height), 1_000 + height, b"\x33" * 20)
        _commit(source, proposal)
    for number in range(1, 5):
        committed = source.committed_block(number)
        assert committed is not None
        block_rlp, _certificate, receipts = committed
        block = follower.decode_block(block_rlp)
        applied = follower.apply_synced_block(block, receipts)
        assert applied.result.stats.executor == "bal-sync"
        _commit(follower, applied)
    assert follower.head.hash == source.head.hash
    assert follower.head.state_root == source.head.state_root
    head = source.head
    assert [r.encode() for r in follower.receipts(head.hash)] == [
        r.encode() for r in source.receipts(head.hash)]
    state = follower.head_state()
    assert all(state.get_storage(a, 0) == 42 for a in _created(source))


def _created(chain: Chain) -> list[bytes]:
    from eth._utils.address import generate_contract_address

    sender = bytes.fromhex(SENDERS[3].address[2:])
    return [generate_contract_address(sender, n) for n in range(4)]


def test_executionless_sync_refuses_what_does_not_match(chains) -> None:
    source = chains("source")
    follower = chains("follower")
    proposal = source.propose(_block_txs(source, 0), 1_000, b"\x33" * 20)
    _commit(source, proposal)
    committed = source.committed_block(1)
    assert committed is not None
    block_rlp, _certificate, receipts = committed
    block = follower.decode_block(block_rlp)

    with pytest.raises(InvalidProposalError, match="undecodable receipts"):
        follower.apply_synced_block(block, b"\xc3\x01\x02\x03")
    short = rlp.encode(rlp.decode(receipts)[:-1])
    with pytest.raises(InvalidProposalError, match="receipts for 4 transactions"):
        follower.apply_synced_block(block, short)
    swapped = rlp.decode(receipts)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(InvalidProposalError, match="receipts root"):
        follower.apply_synced_block(block, rlp.encode(swapped))
    # A list that hashes into a (forged) header but gives another state root.
    truth = BlockAccessList.decode(block.access_list)
    wrong = LIES["value"](truth, len(block.transactions)).encode()
    forged = block.copy(header=block.header.copy(block_access_list_hash=keccak(wrong)),
                        access_list=wrong)
    with pytest.raises(InvalidProposalError, match="gives state root"):
        follower.apply_synced_block(follower.decode_block(rlp.encode(forged)), receipts)
    # Nothing was written: the true block still applies.
    _commit(follower, follower.apply_synced_block(block, receipts))
    assert follower.head.state_root == source.head.state_root


# Init code: SSTORE(1, BLOCKHASH(NUMBER - 2)), deploy no code: the grandparent's hash,
# which a block of a sync batch must see although that block is not written yet (the
# parent's hash comes with the header).
INIT_STORE_GRANDPARENT_HASH = bytes.fromhex("436002900340600155" + "00")


@pytest.mark.parametrize("mode", ["execute", "bal"])
def test_a_sync_batch_is_written_at_once_and_a_bad_block_keeps_the_good_ones(
        chains, tmp_path, mode) -> None:
    """Block sync imports a batch one block on top of the other (each reading its parent's
    state, and in execute mode its hash, from the batch not written yet), then writes it
    in one synced write; a block that fails ends the batch, and the ones before it are
    still written. Reopened, the node is at the batch's last block."""
    source = chains("source")
    hasher = Account.from_key(dev_accounts()[4].private_key)
    for height in range(4):
        txs = _block_txs(source, height) + [_tx(source, hasher, height, to=None, value=0,
                                                gas=200_000, data=INIT_STORE_GRANDPARENT_HASH)]
        _commit(source, source.propose(txs, 1_000 + height, b"\x33" * 20))
    follower = chains(f"follower-{mode}")
    blocks = []
    for number in range(1, 5):
        block_rlp, certificate, receipts = source.committed_block(number)
        blocks.append((follower.decode_block(block_rlp), certificate, receipts))
    # Block 4 with a list that gives another state root (bal) / another list (execute).
    block, _, receipts = blocks[3]
    wrong = LIES["value"](BlockAccessList.decode(block.access_list), len(block.transactions)).encode()
    forged = follower.decode_block(rlp.encode(block.copy(
        header=block.header.copy(block_access_list_hash=keccak(wrong)), access_list=wrong)))

    def run(block, receipts, synced):
        if mode == "bal":
            return follower.apply_synced_block(block, receipts, synced=synced)
        return follower.import_block(block, synced=synced)

    synced = follower.begin_sync_batch()
    for block, certificate, receipts in blocks[:3]:
        synced.add(run(block, receipts, synced), certificate)
    with pytest.raises(InvalidProposalError):
        run(forged, receipts, synced)
    assert follower.store.canonical_hash(1) is None  # nothing written yet
    follower.write_blocks(synced)
    for proposal in synced.proposals:
        follower.advance_head(proposal)
    assert follower.head.hash == source.header_by_number(3).hash

    follower.db.close()
    reopened = Chain(LevelDB(tmp_path / f"follower-{mode}"), SequentialExecutor(), GENESIS)
    try:
        assert reopened.head.hash == source.header_by_number(3).hash
        assert reopened.head.state_root == source.header_by_number(3).state_root
        from eth._utils.address import generate_contract_address

        contract = generate_contract_address(bytes.fromhex(hasher.address[2:]), 2)
        assert reopened.head_state().get_storage(contract, 1) == int.from_bytes(
            source.header_by_number(1).hash, "big")
        # The true block 4 follows on the reopened node.
        block, certificate, receipts = blocks[3]
        _commit(reopened, reopened.import_block(block))
        assert reopened.head.state_root == source.head.state_root
    finally:
        reopened.db.close()


def test_a_data_dir_of_the_old_format_is_refused(tmp_path) -> None:
    db = LevelDB(tmp_path / "old")
    Chain(db, SequentialExecutor(), GENESIS)
    assert db.get(FORMAT_KEY) == CHAIN_FORMAT
    db.write_atomically({FORMAT_KEY: b"laminar/1"})
    with pytest.raises(GenesisMismatchError, match="earlier Laminar"):
        Chain(db, SequentialExecutor(), GENESIS)
    db.close()
