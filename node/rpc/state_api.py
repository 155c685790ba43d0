"""JSON-RPC methods over world state beyond plain reads: eth_getProof, eth_createAccessList
and eth_simulateV1.

This module parses parameters and shapes results; the state work is in execution/
(proof.py, access_list_call.py, simulate.py) and runs in a worker thread, as eth_call
does. Nothing here writes to the node's database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import trio

from execution.access_list_call import AccessList, create_access_list
from execution.call import CallError
from execution.proof import AccountProof, MissingTrieNode, account_proof
from node.rpc import encoding, params
from node.rpc.errors import invalid_params, server_error
from node.rpc.eth_api import EthApi
from node.rpc.server import Methods

#: eth_getProof: most storage keys one request may prove. geth has no cap; each key costs
#: a walk of up to 64 trie nodes, and 1,024 keys keep a reply near a few MB.
MAX_PROOF_SLOTS = 1024
SLOT_HEX_DIGITS = 64
FEE_FIELDS = ("gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "nonce")


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


def register_state_api(methods: Methods, eth: EthApi) -> StateApi:
    api = StateApi(eth)
    table: dict[str, Callable[..., Any]] = {
        "eth_getProof": api.get_proof,
        "eth_createAccessList": api.create_access_list,
    }
    for name, handler in table.items():
        methods.register(name, handler)
    return api
