"""A replay folder for a Cancun mainnet-numbered block with blob transactions, built by
py-evm's own VM (`CancunVM.import_block`: its execution, its header), not by Laminar.

No real mainnet block with blob transactions and its pre-state can be fetched here (no
network), so the block is made: three type-3 transactions (one and two blobs), a plain
transfer, and a contract call that stores what BLOBHASH and BLOBBASEFEE return. The
folder has the layout of tests/data/mainnet: block.json as eth_getBlockByNumber(N, true)
returns it, prestate.json, block_hashes.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from eth.chains.base import ChainContext
from eth.consensus.context import ConsensusContext
from eth.db.account import AccountDB
from eth.db.atomic import AtomicDB
from eth.db.chain import ChainDB
from eth.vm.forks import CancunVM
from eth.vm.forks.cancun.blocks import CancunBlockHeader
from eth_account import Account
from eth_utils import to_checksum_address

BLOCK_NUMBER = 19_500_000  # inside mainnet's Cancun range (19,426,587 - 22,431,083)
TIMESTAMP = 1_712_000_000
CHAIN_ID = 1
GWEI = 10**9
ETHER = 10**18
SENDERS = [Account.from_key(bytes([0x30 + i]) * 32) for i in range(3)]
RECIPIENT = b"\x5e" * 20
PROBE = b"\xb1" * 20  # SSTORE(0, BLOBHASH(0)); SSTORE(1, BLOBHASH(1)); SSTORE(2, BLOBBASEFEE)
PROBE_CODE = bytes.fromhex("600049600055" "600149600155" "4a600255" "00")
PARENT_EXCESS_BLOB_GAS = 3 * 131_072 * 5  # a blob base fee above the minimum
VERSIONED = [bytes([1]) + bytes([i]) * 31 for i in range(1, 4)]


def _prestate() -> dict:
    accounts = {s.address: {"balance": hex(10 * ETHER), "nonce": "0x0"} for s in SENDERS}
    accounts["0x" + PROBE.hex()] = {"balance": "0x0", "nonce": "0x1",
                                    "code": "0x" + PROBE_CODE.hex(), "storage": {}}
    return accounts


def _transactions() -> list:
    builder = CancunVM.get_transaction_builder()
    common = {"chainId": CHAIN_ID, "maxFeePerGas": 200 * GWEI, "maxPriorityFeePerGas": 2 * GWEI}
    specs = [
        (SENDERS[0], {"type": 3, "nonce": 0, "to": to_checksum_address(PROBE), "gas": 100_000,
                      "value": 0, "maxFeePerBlobGas": 10 * GWEI,
                      "blobVersionedHashes": VERSIONED[:2]}),
        (SENDERS[1], {"type": 2, "nonce": 0, "to": to_checksum_address(RECIPIENT),
                      "gas": 21_000, "value": ETHER}),
        (SENDERS[2], {"type": 3, "nonce": 0, "to": to_checksum_address(RECIPIENT),
                      "gas": 21_000, "value": 5, "maxFeePerBlobGas": 10 * GWEI,
                      "blobVersionedHashes": VERSIONED[2:]}),
        (SENDERS[0], {"type": 3, "nonce": 1, "to": to_checksum_address(PROBE), "gas": 100_000,
                      "value": 0, "maxFeePerBlobGas": 10 * GWEI,
                      "blobVersionedHashes": VERSIONED[1:]}),
    ]
    txs = []
    for account, fields in specs:
        raw = account.sign_transaction({**common, **fields, "data": b""}).raw_transaction
        txs.append(builder.decode(bytes(raw)))
    return txs


def _tx_json(tx, index: int, header) -> dict:
    return {
        "type": hex(tx.type_id), "chainId": hex(tx.chain_id), "nonce": hex(tx.nonce),
        "from": "0x" + tx.sender.hex(), "to": "0x" + tx.to.hex(), "gas": hex(tx.gas),
        "value": hex(tx.value), "input": "0x" + tx.data.hex(),
        "maxFeePerGas": hex(tx.max_fee_per_gas),
        "maxPriorityFeePerGas": hex(tx.max_priority_fee_per_gas),
        "accessList": [], "yParity": hex(tx.y_parity), "v": hex(tx.y_parity),
        "r": hex(tx.r), "s": hex(tx.s), "hash": "0x" + tx.hash.hex(),
        "transactionIndex": hex(index), "blockNumber": hex(header.block_number),
        **({"maxFeePerBlobGas": hex(tx.max_fee_per_blob_gas),
            "blobVersionedHashes": ["0x" + h.hex() for h in tx.blob_versioned_hashes]}
           if tx.type_id == 3 else {}),
    }


def build_blob_block(folder: Path) -> dict:
    """Write the replay folder; returns the block's JSON."""
    db = AtomicDB()
    accounts = AccountDB(db)
    for address, entry in _prestate().items():
        raw = bytes.fromhex(address[2:])
        accounts.set_balance(raw, int(entry["balance"], 16))
        accounts.set_nonce(raw, int(entry["nonce"], 16))
        if entry.get("code"):
            accounts.set_code(raw, bytes.fromhex(entry["code"][2:]))
    accounts.persist()

    parent = CancunBlockHeader(
        difficulty=0, block_number=BLOCK_NUMBER - 1, gas_limit=30_000_000,
        timestamp=TIMESTAMP - 12, coinbase=b"\x00" * 20, parent_hash=b"\x77" * 32,
        state_root=accounts.state_root, gas_used=15_000_000, base_fee_per_gas=10 * GWEI,
        withdrawals_root=b"\x56" * 32, blob_gas_used=3 * 131_072,
        excess_blob_gas=PARENT_EXCESS_BLOB_GAS, parent_beacon_block_root=b"\x42" * 32,
    )
    chaindb = ChainDB(db)
    chaindb.persist_checkpoint_header(parent, 1)
    template = CancunVM.create_header_from_parent(
        parent, coinbase=b"\xfe" * 20, timestamp=TIMESTAMP,
        parent_beacon_block_root=b"\x43" * 32,
    )
    vm = CancunVM(template, chaindb, ChainContext(CHAIN_ID), ConsensusContext(db))
    block_class = vm.get_block_class()
    block = block_class(header=template, transactions=_transactions(), uncles=[],
                        withdrawals=[])
    mined = vm.import_block(block).block
    header = mined.header
    block_json = {
        "number": hex(header.block_number), "hash": "0x" + header.hash.hex(),
        "parentHash": "0x" + header.parent_hash.hex(), "miner": "0x" + header.coinbase.hex(),
        "stateRoot": "0x" + header.state_root.hex(),
        "transactionsRoot": "0x" + header.transaction_root.hex(),
        "receiptsRoot": "0x" + header.receipt_root.hex(),
        "logsBloom": "0x" + header.bloom.to_bytes(256, "big").hex(),
        "difficulty": "0x0", "gasLimit": hex(header.gas_limit), "gasUsed": hex(header.gas_used),
        "timestamp": hex(header.timestamp), "extraData": "0x", "mixHash": "0x" + header.mix_hash.hex(),
        "nonce": "0x" + header.nonce.hex(), "baseFeePerGas": hex(header.base_fee_per_gas),
        "withdrawalsRoot": "0x" + header.withdrawals_root.hex(),
        "blobGasUsed": hex(header.blob_gas_used), "excessBlobGas": hex(header.excess_blob_gas),
        "parentBeaconBlockRoot": "0x" + header.parent_beacon_block_root.hex(),
        "uncles": [], "withdrawals": [],
        "transactions": [_tx_json(tx, i, header) for i, tx in enumerate(mined.transactions)],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "block.json").write_text(json.dumps(block_json, indent=1))
    (folder / "prestate.json").write_text(json.dumps(_prestate(), indent=1))
    (folder / "block_hashes.json").write_text(json.dumps({str(parent.block_number): "0x" + parent.hash.hex()}))
    return block_json
