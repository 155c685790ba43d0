"""Ethereum JSON shapes: blocks, transactions, receipts and logs as execution-apis spells them.

Quantities are minimal hex ("0x0", "0x1a"), data is even-length hex, addresses are
lower-case hex (clients checksum them themselves), absent values are null.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import rlp
from eth._utils.address import generate_contract_address
from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI

LEGACY_TX_TYPE = 0
SET_CODE_TX_TYPE = 4  # EIP-7702
BYZANTIUM_STATUS_SUCCESS = b"\x01"


def quantity(value: int) -> str:
    return hex(value)


def data(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def address_or_none(value: bytes) -> Optional[str]:
    return data(value) if value else None


def tx_type(tx: SignedTransactionAPI) -> int:
    type_id = getattr(tx, "type_id", None)
    return LEGACY_TX_TYPE if type_id is None else type_id


def effective_gas_price(tx: SignedTransactionAPI, base_fee: Optional[int]) -> int:
    if tx_type(tx) == LEGACY_TX_TYPE or tx_type(tx) == 1 or base_fee is None:
        return tx.gas_price
    return min(tx.max_fee_per_gas, base_fee + tx.max_priority_fee_per_gas)


def encode_header(header: BlockHeaderAPI, size: Optional[int] = None) -> dict[str, Any]:
    """A header as blocks and newHeads carry it; `size` (bytes of the block) only for blocks."""
    result = {
        "number": quantity(header.block_number),
        "hash": data(header.hash),
        "parentHash": data(header.parent_hash),
        "nonce": data(header.nonce),
        "sha3Uncles": data(header.uncles_hash),
        "logsBloom": data(header.bloom.to_bytes(256, "big")),
        "transactionsRoot": data(header.transaction_root),
        "stateRoot": data(header.state_root),
        "receiptsRoot": data(header.receipt_root),
        "miner": data(header.coinbase),
        "difficulty": quantity(header.difficulty),
        "extraData": data(header.extra_data),
        "gasLimit": quantity(header.gas_limit),
        "gasUsed": quantity(header.gas_used),
        "timestamp": quantity(header.timestamp),
        "mixHash": data(header.mix_hash),
        "baseFeePerGas": quantity(header.base_fee_per_gas),
        "withdrawalsRoot": data(header.withdrawals_root),
        "blobGasUsed": quantity(header.blob_gas_used),
        "excessBlobGas": quantity(header.excess_blob_gas),
        "parentBeaconBlockRoot": data(header.parent_beacon_block_root),
        "requestsHash": data(header.requests_hash),
        "blockAccessListHash": data(header.block_access_list_hash),
    }
    if size is not None:
        result["size"] = quantity(size)
    return result


def encode_block(block: BlockAPI, full_transactions: bool) -> dict[str, Any]:
    header = block.header
    result = encode_header(header, len(rlp.encode(block)))
    if full_transactions:
        result["transactions"] = [
            encode_transaction(tx, header, index) for index, tx in enumerate(block.transactions)
        ]
    else:
        result["transactions"] = [data(tx.hash) for tx in block.transactions]
    result["uncles"] = []
    result["withdrawals"] = []
    return result


def encode_transaction(
    tx: SignedTransactionAPI, header: Optional[BlockHeaderAPI], index: Optional[int]
) -> dict[str, Any]:
    """A transaction; `header` and `index` are None while it is pending."""
    kind = tx_type(tx)
    base_fee = header.base_fee_per_gas if header is not None else None
    result: dict[str, Any] = {
        "blockHash": data(header.hash) if header is not None else None,
        "blockNumber": quantity(header.block_number) if header is not None else None,
        "blockTimestamp": quantity(header.timestamp) if header is not None else None,
        "from": data(tx.sender),
        "gas": quantity(tx.gas),
        "hash": data(tx.hash),
        "input": data(tx.data),
        "nonce": quantity(tx.nonce),
        "to": address_or_none(tx.to),
        "transactionIndex": quantity(index) if index is not None else None,
        "value": quantity(tx.value),
        "type": quantity(kind),
    }
    if kind == LEGACY_TX_TYPE:
        result["gasPrice"] = quantity(tx.gas_price)
        result["v"] = quantity(tx.v)
        if tx.v not in (27, 28):
            result["chainId"] = quantity((tx.v - 35) // 2)
    else:
        result["chainId"] = quantity(tx.chain_id)
        result["accessList"] = [
            {"address": data(address), "storageKeys": ["0x" + slot.to_bytes(32, "big").hex() for slot in slots]}
            for address, slots in tx.access_list
        ]
        if kind == 1:
            result["gasPrice"] = quantity(tx.gas_price)
        else:
            result["maxFeePerGas"] = quantity(tx.max_fee_per_gas)
            result["maxPriorityFeePerGas"] = quantity(tx.max_priority_fee_per_gas)
            # Pending: the fee cap; mined: what was actually paid per gas.
            result["gasPrice"] = quantity(
                effective_gas_price(tx, base_fee) if base_fee is not None else tx.max_fee_per_gas
            )
        if kind == SET_CODE_TX_TYPE:
            result["authorizationList"] = [
                {
                    "chainId": quantity(auth.chain_id), "address": data(auth.address),
                    "nonce": quantity(auth.nonce), "yParity": quantity(auth.y_parity),
                    "r": quantity(auth.r), "s": quantity(auth.s),
                }
                for auth in tx.authorization_list
            ]
        result["v"] = quantity(tx.y_parity)
        result["yParity"] = quantity(tx.y_parity)
    result["r"] = quantity(tx.r)
    result["s"] = quantity(tx.s)
    return result


def _receipt_status(receipt: ReceiptAPI) -> int:
    return 1 if receipt.state_root == BYZANTIUM_STATUS_SUCCESS else 0


def encode_logs(
    receipt: ReceiptAPI,
    header: BlockHeaderAPI,
    tx: SignedTransactionAPI,
    tx_index: int,
    first_log_index: int,
) -> list[dict[str, Any]]:
    return [
        {
            "address": data(log.address),
            "topics": ["0x" + topic.to_bytes(32, "big").hex() for topic in log.topics],
            "data": data(log.data),
            "blockNumber": quantity(header.block_number),
            "blockHash": data(header.hash),
            "blockTimestamp": quantity(header.timestamp),
            "transactionHash": data(tx.hash),
            "transactionIndex": quantity(tx_index),
            "logIndex": quantity(first_log_index + offset),
            "removed": False,
        }
        for offset, log in enumerate(receipt.logs)
    ]


def encode_receipt(
    block: BlockAPI, receipts: Sequence[ReceiptAPI], tx_index: int
) -> dict[str, Any]:
    header = block.header
    tx = block.transactions[tx_index]
    receipt = receipts[tx_index]
    previous_cumulative = receipts[tx_index - 1].gas_used if tx_index > 0 else 0
    first_log_index = sum(len(r.logs) for r in receipts[:tx_index])
    contract_address = None
    if not tx.to:
        contract_address = data(generate_contract_address(tx.sender, tx.nonce))
    return {
        "transactionHash": data(tx.hash),
        "transactionIndex": quantity(tx_index),
        "blockHash": data(header.hash),
        "blockNumber": quantity(header.block_number),
        "from": data(tx.sender),
        "to": address_or_none(tx.to),
        "cumulativeGasUsed": quantity(receipt.gas_used),
        "gasUsed": quantity(receipt.gas_used - previous_cumulative),
        "contractAddress": contract_address,
        "logs": encode_logs(receipt, header, tx, tx_index, first_log_index),
        "logsBloom": data(receipt.bloom.to_bytes(256, "big")),
        "type": quantity(tx_type(tx)),
        "status": quantity(_receipt_status(receipt)),
        "effectiveGasPrice": quantity(effective_gas_price(tx, header.base_fee_per_gas)),
    }
