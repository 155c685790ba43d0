"""Fast checks of the BFT integration pieces: devnet key derivation, strict frame and
sync codecs, and Chain.import_block / decode_block (re-execution catches any change)."""

from __future__ import annotations

import random

import pytest
import rlp
from eth_account import Account
from eth_keys import keys

from consensus.messages import DecodeError, Step, Vote
from consensus.reactor import decode_frame, encode_frame
from consensus.sync import decode_block_item, decode_status, encode_block_item, encode_status
from execution.sequential import SequentialExecutor
from node.chain import Chain, InvalidProposalError
from node.genesis import dev_accounts, dev_genesis
from storage.leveldb import LevelDB
from tools.devnet import layout as devnet


def test_devnet_keys_are_deterministic_per_seed(tmp_path):
    a, b = devnet.plan(4, "s1"), devnet.plan(4, "s1")
    assert [(n.address, n.peer_id) for n in a] == [(n.address, n.peer_id) for n in b]
    c = devnet.plan(4, "s2")
    assert {n.address for n in a}.isdisjoint({n.address for n in c})
    nodes = devnet.init(tmp_path / "net", 4, seed="s1", base_rpc_port=9000, base_p2p_port=9100)
    config = (tmp_path / "net" / "node2" / "config.toml").read_text()
    assert 'address = "127.0.0.1:9002"' in config and "/tcp/9102" in config
    assert nodes[2].multiaddr not in config and nodes[0].multiaddr in config
    from p2p.identity import load_key_pair, peer_id_of
    assert str(peer_id_of(load_key_pair(tmp_path / "net" / "node1" / "p2p_key"))) == a[1].peer_id
    with pytest.raises(devnet.DevnetError):
        devnet.init(tmp_path / "net", 4)


def test_frames_and_sync_codecs_are_strict():
    key = bytes(range(1, 33))
    vote = Vote.sign(key, Step.PREVOTE, 1, 5, 0, b"\x11" * 32, 0)
    assert decode_frame(encode_frame(vote, 7)) == (7, vote)
    assert decode_status(encode_status(9, b"\x22" * 32)) == (9, b"\x22" * 32)
    assert decode_block_item(encode_block_item(b"blk", b"cert", b"\xc0")) == (
        b"blk", b"cert", b"\xc0")
    rng = random.Random(1)
    good = encode_frame(vote)
    samples = [rng.randbytes(rng.randrange(0, 300)) for _ in range(2000)]
    samples += [good[:i] for i in range(len(good))] + [good + b"\x00", b"\xc3\x02\x00\x80"]
    for data in samples:
        for decode in (decode_frame, decode_status, decode_block_item):
            try:
                decode(data)
            except DecodeError:
                pass


@pytest.fixture
def two_chains(tmp_path):
    genesis = dev_genesis((keys.PrivateKey(b"\x01" * 32).public_key.to_canonical_address(),))
    dbs = [LevelDB(tmp_path / name) for name in ("a", "b")]
    yield [Chain(db, SequentialExecutor(), genesis) for db in dbs]
    for db in dbs:
        db.close()


def test_import_block_reexecutes_and_rejects_any_difference(two_chains):
    builder, verifier = two_chains
    sender = Account.from_key(dev_accounts()[0].private_key)
    txs = [
        builder.vm_class.get_transaction_builder().decode(bytes(sender.sign_transaction({
            "type": 2, "chainId": 31337, "nonce": n, "to": dev_accounts()[1].address, "value": 5,
            "gas": 21_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
        }).raw_transaction))
        for n in range(3)
    ]
    proposal = builder.propose(txs, 1_000, b"\x33" * 20)
    data = rlp.encode(proposal.block)
    block = verifier.decode_block(data)
    assert verifier.block_hash_of(data) == proposal.header.hash
    for field, value in (
        ("state_root", b"\x00" * 32), ("gas_used", 1), ("receipt_root", b"\x01" * 32),
        ("base_fee_per_gas", 7), ("gas_limit", 29_000_000), ("timestamp", 0),
    ):
        forged = block.copy(header=block.header.copy(**{field: value}))
        with pytest.raises(InvalidProposalError, match=field if field != "timestamp" else "timestamp"):
            verifier.import_block(forged)
    # Another transaction list under the same header: caught when decoding.
    swapped = rlp.encode(block.copy(transactions=list(block.transactions[:2])))
    with pytest.raises(InvalidProposalError, match="transactions root"):
        verifier.decode_block(swapped)
    with pytest.raises(InvalidProposalError):
        verifier.decode_block(b"\xc0garbage")
    executed = verifier.import_block(block)
    verifier.write_block(executed, b"cert")
    verifier.advance_head(executed)
    assert verifier.head.hash == proposal.header.hash
    assert verifier.head.state_root == proposal.header.state_root
