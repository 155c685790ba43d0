"""JSON-RPC methods over world state beyond plain reads: eth_getProof, eth_createAccessList
and eth_simulateV1.

This module parses parameters and shapes results; the state work is in execution/
(proof.py, access_list_call.py, simulate.py) and runs in a worker thread, as eth_call
does. Nothing here writes to the node's database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import rlp
import trio

from execution.access_list_call import AccessList, create_access_list
from execution.call import CallError
from execution.proof import AccountProof, MissingTrieNode, account_proof
from execution.simulate import (
    CLIENT_LIMIT_EXCEEDED,
    MAX_SIMULATED_BLOCKS,
    AccountOverride,
    BlockOverrides,
    CallOutcome,
    SimBlock,
    SimCall,
    SimOptions,
    SimulatedBlock,
    SimulationError,
    simulate,
)
from node.rpc import encoding, params
from node.rpc.errors import EXECUTION_REVERTED, RpcError, invalid_params, server_error
from node.rpc.eth_api import EthApi, decode_revert_reason
from node.rpc.server import Methods

#: eth_getProof: most storage keys one request may prove. geth has no cap; each key costs
#: a walk of up to 64 trie nodes, and 1,024 keys keep a reply near a few MB.
MAX_PROOF_SLOTS = 1024
SLOT_HEX_DIGITS = 64
FEE_FIELDS = ("gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "nonce")
VM_EXECUTION_ERROR = -32015  # eth_simulateV1: a call failed in the EVM (not a revert)
#: py-evm's exception names for VM errors, in geth's words where they differ.
VM_ERROR_WORDS = {"OutOfGas": "out of gas", "InvalidInstruction": "invalid opcode",
                  "StackDepthLimit": "max call depth exceeded",
                  "InsufficientFunds": "insufficient balance for transfer",
                  "WriteProtection": "write protection"}


def parse_access_list(value: Any, name: str = "accessList") -> AccessList:
    """An EIP-2930 list: [{address, storageKeys: [32-byte hex]}]; duplicates merge."""
    if not isinstance(value, list):
        raise invalid_params(f"{name}: expected an array of {{address, storageKeys}}")
    result: AccessList = {}
    for index, entry in enumerate(value):
        entry = params.obj(entry, f"{name}[{index}]")
        address = params.address(entry.get("address"), f"{name}[{index}].address")
        keys = entry.get("storageKeys", [])
        if not isinstance(keys, list):
            raise invalid_params(f"{name}[{index}].storageKeys: expected an array")
        slots = result.setdefault(address, {})
        for key_index, key in enumerate(keys):
            slot = params.hash32(key, f"{name}[{index}].storageKeys[{key_index}]")
            slots[int.from_bytes(slot, "big")] = None
    return result


def access_list_json(access_list: list[tuple[bytes, list[int]]]) -> list[dict]:
    return [
        {"address": encoding.data(address),
         "storageKeys": ["0x" + slot.to_bytes(32, "big").hex() for slot in slots]}
        for address, slots in access_list
    ]


def _storage_key(value: Any, name: str) -> tuple[int, str]:
    """(slot, how the reply names it). As geth: up to 32 bytes of hex, odd lengths allowed;
    a full 32-byte key is echoed as given, any shorter one as a quantity ("0x00" -> "0x0")."""
    slot = params.storage_slot(value, name)
    if len(value) - 2 == SLOT_HEX_DIGITS:
        return slot, "0x" + slot.to_bytes(32, "big").hex()
    return slot, encoding.quantity(slot)


def _proof_json(proof: AccountProof, key_names: list[str]) -> dict:
    return {
        "address": encoding.data(proof.address),
        "accountProof": [encoding.data(node) for node in proof.proof],
        "balance": encoding.quantity(proof.balance),
        "codeHash": encoding.data(proof.code_hash),
        "nonce": encoding.quantity(proof.nonce),
        "storageHash": encoding.data(proof.storage_root),
        "storageProof": [
            {
                "key": name,
                "value": encoding.quantity(item.value),
                "proof": [encoding.data(node) for node in item.proof],
            }
            for name, item in zip(key_names, proof.storage)
        ],
    }


@dataclass
class StateApi:
    eth: EthApi  # block resolution and call-request parsing, shared with eth_call

    async def get_proof(self, address: Any, storage_keys: Any, block: Any = None) -> dict:
        account = params.address(address, "address")
        if not isinstance(storage_keys, list):
            raise invalid_params("storageKeys: expected an array of storage keys")
        if len(storage_keys) > MAX_PROOF_SLOTS:
            raise invalid_params(
                f"storageKeys: at most {MAX_PROOF_SLOTS} keys per request, got {len(storage_keys)}"
            )
        keys = [_storage_key(key, f"storageKeys[{i}]") for i, key in enumerate(storage_keys)]
        header = self.eth._require_header(block)
        view = self.eth.chain.state_view(header)
        try:
            proof = await trio.to_thread.run_sync(
                account_proof, view.nodes, view.state_root, account, [slot for slot, _ in keys]
            )
        except MissingTrieNode as exc:
            raise server_error(f"missing trie node {exc}") from None
        return _proof_json(proof, [name for _, name in keys])

    async def create_access_list(self, tx: Any, block: Any = None) -> dict:
        request = self.eth._call_request(tx)
        fields = params.obj(tx, "transaction")
        for name in FEE_FIELDS:  # accepted and checked; calls run at gas price zero
            params.optional(fields.get(name), params.quantity, name)
        given = parse_access_list(fields["accessList"]) if fields.get("accessList") else None
        header = self.eth._require_header(block)
        env, view = self.eth.chain.env_of(header), self.eth.chain.state_view(header)
        gas_cap = min(self.eth.settings.gas_cap, header.gas_limit)
        try:
            result = await trio.to_thread.run_sync(
                create_access_list, env, view, request, gas_cap, given
            )
        except CallError as exc:
            raise server_error(str(exc)) from None
        reply: dict[str, Any] = {
            "accessList": access_list_json(result.access_list),
            "gasUsed": encoding.quantity(result.gas_used),
        }
        if result.error is not None:
            reply["error"] = result.error
        return reply

    async def simulate_v1(self, payload: Any, block: Any = None) -> list[dict]:
        fields = params.obj(payload, "payload")
        raw_blocks = fields.get("blockStateCalls")
        if not isinstance(raw_blocks, list):
            raise invalid_params("blockStateCalls: expected an array of blocks")
        if len(raw_blocks) > MAX_SIMULATED_BLOCKS:
            raise RpcError(CLIENT_LIMIT_EXCEEDED,
                           f"too many blocks: at most {MAX_SIMULATED_BLOCKS} per request")
        blocks = [parse_sim_block(raw, f"blockStateCalls[{i}]") for i, raw in enumerate(raw_blocks)]
        options = SimOptions(validation=_flag(fields, "validation"),
                             trace_transfers=_flag(fields, "traceTransfers"),
                             gas_cap=self.eth.settings.gas_cap)
        full = _flag(fields, "returnFullTransactions")
        header = self.eth._require_header(block)
        chain = self.eth.chain
        env, view = chain.env_of(header), chain.state_view(header)
        try:
            simulated = await trio.to_thread.run_sync(
                simulate, header, env, view, blocks, options, chain.header_class
            )
        except SimulationError as exc:
            raise RpcError(exc.code, exc.message) from None
        return [_block_json(item, full) for item in simulated]


# ---- eth_simulateV1 parameters --------------------------------------------------------


def _opt(fields: dict, key: str, parse: Callable[[Any, str], Any], where: str) -> Any:
    return params.optional(fields.get(key), parse, f"{where}.{key}")


def _storage_map(value: Any, name: str) -> dict[int, int]:
    storage = params.obj(value, name)
    return {
        int.from_bytes(params.hash32(slot, f"{name} key"), "big"):
            int.from_bytes(params.hash32(word, f"{name}[{slot}]"), "big")
        for slot, word in storage.items()
    }


def parse_state_overrides(value: Any, name: str) -> dict[bytes, AccountOverride]:
    result: dict[bytes, AccountOverride] = {}
    for raw_address, raw in params.obj(value, name).items():
        address = params.address(raw_address, f"{name} key")
        where = f"{name}[{raw_address}]"
        fields = params.obj(raw, where)
        if fields.get("state") is not None and fields.get("stateDiff") is not None:
            raise invalid_params(f"{where}: has both 'state' and 'stateDiff'")
        result[address] = AccountOverride(
            balance=_opt(fields, "balance", params.quantity, where),
            nonce=_opt(fields, "nonce", params.quantity, where),
            code=_opt(fields, "code", params.hex_bytes, where),
            storage=_opt(fields, "state", _storage_map, where),
            storage_diff=_opt(fields, "stateDiff", _storage_map, where),
            move_precompile_to=_opt(fields, "movePrecompileToAddress", params.address, where),
        )
    return result


def _withdrawals(value: Any, name: str) -> tuple:
    from eth.vm.forks.shanghai.withdrawals import Withdrawal

    if not isinstance(value, list):
        raise invalid_params(f"{name}: expected an array of withdrawals")
    items = []
    for index, raw in enumerate(value):
        where = f"{name}[{index}]"
        fields = params.obj(raw, where)
        items.append(Withdrawal(
            index=params.quantity(fields.get("index"), f"{where}.index"),
            validator_index=params.quantity(fields.get("validatorIndex"),
                                            f"{where}.validatorIndex"),
            address=params.address(fields.get("address"), f"{where}.address"),
            amount=params.quantity(fields.get("amount"), f"{where}.amount"),
        ))
    return tuple(items)


def _randao(value: Any, name: str) -> bytes:
    """A uint256 as the spec has it, or the 32-byte word geth also takes."""
    if isinstance(value, str) and len(value) == 2 + 2 * 32:
        return params.hash32(value, name)
    return params.quantity(value, name).to_bytes(32, "big")


def parse_block_overrides(value: Any, name: str) -> BlockOverrides:
    fields = params.obj(value, name)
    return BlockOverrides(
        number=_opt(fields, "number", params.quantity, name),
        time=_opt(fields, "time", params.quantity, name),
        gas_limit=_opt(fields, "gasLimit", params.quantity, name),
        fee_recipient=_opt(fields, "feeRecipient", params.address, name),
        base_fee_per_gas=_opt(fields, "baseFeePerGas", params.quantity, name),
        prev_randao=_opt(fields, "prevRandao", _randao, name),
        withdrawals=_opt(fields, "withdrawals", _withdrawals, name),
    )


def parse_sim_call(value: Any, name: str) -> SimCall:
    fields = params.obj(value, name)
    if fields.get("blobVersionedHashes"):
        raise invalid_params(f"{name}: blob transactions are not supported on this chain")
    if fields.get("authorizationList"):
        raise invalid_params(f"{name}: authorizationList is not supported by eth_simulateV1 here")
    data, input_ = fields.get("data"), fields.get("input")
    if data is not None and input_ is not None and data != input_:
        raise invalid_params(f"{name}: both 'data' and 'input' are set and differ")
    if fields.get("gasPrice") is not None and (fields.get("maxFeePerGas") is not None
                                               or fields.get("maxPriorityFeePerGas") is not None):
        raise invalid_params(
            f"{name}: both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified")
    given = fields.get("accessList")
    access_list = parse_access_list(given, f"{name}.accessList") if given else {}
    return SimCall(
        sender=_opt(fields, "from", params.address, name) or b"\x00" * 20,
        to=_opt(fields, "to", params.address, name),
        data=params.optional(input_ if input_ is not None else data, params.hex_bytes,
                             f"{name}.input") or b"",
        value=_opt(fields, "value", params.quantity, name) or 0,
        gas=_opt(fields, "gas", params.quantity, name),
        nonce=_opt(fields, "nonce", params.quantity, name),
        gas_price=_opt(fields, "gasPrice", params.quantity, name),
        max_fee_per_gas=_opt(fields, "maxFeePerGas", params.quantity, name),
        max_priority_fee_per_gas=_opt(fields, "maxPriorityFeePerGas", params.quantity, name),
        access_list=tuple((address, tuple(slots)) for address, slots in access_list.items()),
    )


def parse_sim_block(value: Any, name: str) -> SimBlock:
    fields = params.obj(value, name)
    calls = fields.get("calls") or []
    if not isinstance(calls, list):
        raise invalid_params(f"{name}.calls: expected an array of calls")
    return SimBlock(
        overrides=parse_block_overrides(fields.get("blockOverrides") or {},
                                        f"{name}.blockOverrides"),
        state_overrides=parse_state_overrides(fields.get("stateOverrides") or {},
                                              f"{name}.stateOverrides"),
        calls=tuple(parse_sim_call(call, f"{name}.calls[{i}]") for i, call in enumerate(calls)),
    )


def _flag(fields: dict, key: str) -> bool:
    return bool(params.optional(fields.get(key), params.boolean, key))


# ---- eth_simulateV1 results -----------------------------------------------------------


def _call_json(outcome: CallOutcome, header: Any, tx: Any, tx_index: int,
               first_log_index: int) -> dict:
    result: dict[str, Any] = {
        "status": "0x1" if outcome.success else "0x0",
        # A revert's data is in its error (as geth: returnData is empty then).
        "returnData": encoding.data(b"" if outcome.reverted else outcome.return_data),
        "gasUsed": encoding.quantity(outcome.gas_used),
        "maxUsedGas": encoding.quantity(outcome.max_used_gas),
        "logs": [
            {
                "address": encoding.data(address),
                "topics": ["0x" + topic.to_bytes(32, "big").hex() for topic in topics],
                "data": encoding.data(data),
                "blockNumber": encoding.quantity(header.block_number),
                "blockHash": encoding.data(header.hash),
                "blockTimestamp": encoding.quantity(header.timestamp),
                "transactionHash": encoding.data(tx.hash),
                "transactionIndex": encoding.quantity(tx_index),
                "logIndex": encoding.quantity(first_log_index + offset),
                "removed": False,
            }
            for offset, (address, topics, data) in enumerate(outcome.logs)
        ],
    }
    if outcome.reverted:
        reason = decode_revert_reason(outcome.return_data)
        error: dict[str, Any] = {
            "code": EXECUTION_REVERTED,
            "message": "execution reverted" + (f": {reason}" if reason else ""),
        }
        if outcome.return_data:
            error["data"] = encoding.data(outcome.return_data)
        result["error"] = error
    elif not outcome.success:
        name, _, detail = (outcome.error or "").partition(":")
        words = VM_ERROR_WORDS.get(name, outcome.error or "failed")
        result["error"] = {"code": VM_EXECUTION_ERROR, "message": f"vm execution error: {words}"}
    return result


def _block_json(block: SimulatedBlock, full_transactions: bool) -> dict:
    header = block.header
    body = [rlp.decode(rlp.encode(header)), [tx.encode() for tx in block.transactions], [],
            [rlp.decode(rlp.encode(w)) for w in block.withdrawals]]
    result = encoding.encode_header(header, len(rlp.encode(body)))
    if full_transactions:
        result["transactions"] = [encoding.encode_transaction(tx, header, index)
                                  for index, tx in enumerate(block.transactions)]
    else:
        result["transactions"] = [encoding.data(tx.hash) for tx in block.transactions]
    result["uncles"] = []
    result["withdrawals"] = [
        {"index": encoding.quantity(w.index), "validatorIndex": encoding.quantity(w.validator_index),
         "address": encoding.data(w.address), "amount": encoding.quantity(w.amount)}
        for w in block.withdrawals
    ]
    calls, log_index = [], 0
    for index, (tx, outcome) in enumerate(zip(block.transactions, block.outcomes)):
        calls.append(_call_json(outcome, header, tx, index, log_index))
        log_index += len(outcome.logs)
    result["calls"] = calls
    return result


def register_state_api(methods: Methods, eth: EthApi) -> StateApi:
    api = StateApi(eth)
    table: dict[str, Callable[..., Any]] = {
        "eth_getProof": api.get_proof,
        "eth_createAccessList": api.create_access_list,
        "eth_simulateV1": api.simulate_v1,
    }
    for name, handler in table.items():
        methods.register(name, handler)
    return api
