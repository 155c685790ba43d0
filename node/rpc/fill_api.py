"""Transactions a client has not signed: eth_fillTransaction fills them in, eth_sign and
eth_signTransaction refuse them.

A Laminar node holds no account keys (eth_accounts is empty; wallets sign themselves),
so the signing methods answer geth's "unknown account" once their params are valid.
eth_fillTransaction does what geth's does without the signing: it completes the type,
nonce (the pending one), gas (an estimate at the head), fees (the tip eth_maxPriorityFeePerGas
suggests, a fee cap of twice the next base fee plus that tip) and chain id, and returns
the unsigned transaction for the client to sign and send with eth_sendRawTransaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import trio

from execution.call import CallError, CallRequest, EstimateFailed, estimate_gas
from node.rpc import encoding, params
from node.rpc.errors import RpcError, invalid_params, server_error
from node.rpc.eth_api import EthApi
from node.rpc.server import Methods

LEGACY_TYPE = 0
ACCESS_LIST_TYPE = 1
DYNAMIC_FEE_TYPE = 2
BLOB_TYPE = 3
SET_CODE_TYPE = 4
FEE_MARKET_TYPES = (DYNAMIC_FEE_TYPE, SET_CODE_TYPE)
BASE_FEE_HEADROOM = 2  # geth's default fee cap: twice the base fee plus the tip
BLOB_FIELDS = ("blobVersionedHashes", "blobs", "commitments", "proofs", "maxFeePerBlobGas")
UNKNOWN_ACCOUNT = "unknown account"  # geth's accounts.ErrUnknownAccount
ZERO_ADDRESS = b"\x00" * 20


@dataclass
class TxFields:
    """A GenericTransaction's fields, decoded; None where the client left one out."""

    sender: bytes
    to: Optional[bytes]
    value: int
    data: bytes
    type: Optional[int]
    nonce: Optional[int]
    gas: Optional[int]
    gas_price: Optional[int]
    max_fee: Optional[int]
    max_priority_fee: Optional[int]
    chain_id: Optional[int]
    access_list: Optional[list[dict]]
    authorization_list: Optional[list[dict]]


def blobs_refused() -> RpcError:
    """The chain's policy, not a malformed request: -32000 with the pool's words, as
    eth_sendRawTransaction refuses a blob transaction."""
    return server_error(
        "blob transactions are not supported: this chain has no data availability layer"
    )


def _optional_quantity(fields: dict, name: str) -> Optional[int]:
    value = fields.get(name)
    return None if value is None else params.quantity(value, name)


def _access_list(value: Any) -> list[dict]:
    if not isinstance(value, list):
        raise invalid_params("accessList: expected an array of {address, storageKeys}")
    entries = []
    for index, entry in enumerate(value):
        item = params.obj(entry, f"accessList[{index}]")
        keys = item.get("storageKeys", [])
        if not isinstance(keys, list):
            raise invalid_params(f"accessList[{index}].storageKeys: expected an array")
        entries.append({
            "address": encoding.data(params.address(item.get("address"), f"accessList[{index}].address")),
            "storageKeys": [encoding.data(params.hash32(k, "storageKey")) for k in keys],
        })
    return entries


def _authorization_list(value: Any) -> list[dict]:
    if not isinstance(value, list):
        raise invalid_params("authorizationList: expected an array of authorizations")
    entries = []
    for index, entry in enumerate(value):
        item = params.obj(entry, f"authorizationList[{index}]")
        name = f"authorizationList[{index}]"
        entries.append({
            "chainId": encoding.quantity(params.quantity(item.get("chainId"), f"{name}.chainId")),
            "address": encoding.data(params.address(item.get("address"), f"{name}.address")),
            "nonce": encoding.quantity(params.quantity(item.get("nonce"), f"{name}.nonce")),
            "yParity": encoding.quantity(params.quantity(item.get("yParity"), f"{name}.yParity")),
            "r": encoding.quantity(params.quantity(item.get("r"), f"{name}.r")),
            "s": encoding.quantity(params.quantity(item.get("s"), f"{name}.s")),
        })
    return entries


def parse_transaction(value: Any) -> TxFields:
    fields = params.obj(value, "transaction")
    if any(fields.get(name) is not None for name in BLOB_FIELDS):
        raise blobs_refused()
    data, legacy_data = fields.get("input"), fields.get("data")
    if data is not None and legacy_data is not None and data != legacy_data:
        raise invalid_params(
            'both "data" and "input" are set and not equal. Please use "input" to pass '
            "transaction call data"
        )
    data = data if data is not None else legacy_data
    access_list = fields.get("accessList")
    authorizations = fields.get("authorizationList")
    return TxFields(
        sender=params.address(fields["from"], "from") if fields.get("from") else ZERO_ADDRESS,
        to=params.address(fields["to"], "to") if fields.get("to") is not None else None,
        value=_optional_quantity(fields, "value") or 0,
        data=params.hex_bytes(data, "input") if data is not None else b"",
        type=_optional_quantity(fields, "type"),
        nonce=_optional_quantity(fields, "nonce"),
        gas=_optional_quantity(fields, "gas"),
        gas_price=_optional_quantity(fields, "gasPrice"),
        max_fee=_optional_quantity(fields, "maxFeePerGas"),
        max_priority_fee=_optional_quantity(fields, "maxPriorityFeePerGas"),
        chain_id=_optional_quantity(fields, "chainId"),
        access_list=_access_list(access_list) if access_list is not None else None,
        authorization_list=(
            _authorization_list(authorizations) if authorizations is not None else None
        ),
    )


def transaction_type(tx: TxFields) -> int:
    """The type the fields ask for, as geth infers it when `type` is absent."""
    has_fee_market = tx.max_fee is not None or tx.max_priority_fee is not None
    if tx.gas_price is not None and has_fee_market:
        raise invalid_params("both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified")
    if tx.type is not None:
        kind = tx.type
        if kind == BLOB_TYPE:
            raise blobs_refused()
        if kind not in (LEGACY_TYPE, ACCESS_LIST_TYPE, DYNAMIC_FEE_TYPE, SET_CODE_TYPE):
            raise invalid_params(f"transaction type not supported: {kind:#x}")
    elif tx.authorization_list is not None:
        kind = SET_CODE_TYPE
    elif tx.gas_price is not None:
        kind = ACCESS_LIST_TYPE if tx.access_list is not None else LEGACY_TYPE
    else:
        kind = DYNAMIC_FEE_TYPE
    if kind in FEE_MARKET_TYPES and tx.gas_price is not None:
        raise invalid_params(f"gasPrice is not a field of a type {kind:#x} transaction")
    if kind not in FEE_MARKET_TYPES and has_fee_market:
        raise invalid_params(f"maxFeePerGas is not a field of a type {kind:#x} transaction")
    if kind != SET_CODE_TYPE and tx.authorization_list is not None:
        raise invalid_params(f"authorizationList is not a field of a type {kind:#x} transaction")
    if kind == LEGACY_TYPE and tx.access_list is not None:
        raise invalid_params("accessList is not a field of a legacy (type 0x0) transaction")
    if kind == SET_CODE_TYPE:
        if tx.to is None:
            raise invalid_params("a set-code transaction (type 0x4) needs a recipient (to)")
        if not tx.authorization_list:
            raise invalid_params("a set-code transaction (type 0x4) needs an authorizationList")
    return kind


async def fill_transaction(api: EthApi, value: Any) -> dict[str, Any]:
    tx = parse_transaction(value)
    kind = transaction_type(tx)
    chain_id = api.chain.chain_id
    if tx.chain_id is not None and tx.chain_id != chain_id:
        raise invalid_params(f"chainId does not match node's (have={tx.chain_id}, want={chain_id})")
    header = api.chain.head
    base_fee = api.chain.next_base_fee()
    nonce = tx.nonce if tx.nonce is not None else api.mempool.pending_nonce(tx.sender)
    gas = tx.gas
    if gas is None:
        request = CallRequest(sender=tx.sender, to=tx.to, data=tx.data, value=tx.value, gas=None)
        env, view = api.chain.env_of(header), api.chain.state_view(header)
        cap = min(api.settings.gas_cap, header.gas_limit)
        try:
            gas = await trio.to_thread.run_sync(estimate_gas, env, view, request, cap)
        except CallError as exc:
            raise server_error(str(exc)) from None
        except EstimateFailed as exc:
            raise api._failed_call(exc.result) from None
    filled: dict[str, Any] = {
        "type": encoding.quantity(kind),
        "nonce": encoding.quantity(nonce),
        "to": encoding.data(tx.to) if tx.to is not None else None,
        "gas": encoding.quantity(gas),
        "value": encoding.quantity(tx.value),
        "input": encoding.data(tx.data),
        "chainId": encoding.quantity(chain_id),
    }
    if kind in FEE_MARKET_TYPES:
        tip = tx.max_priority_fee if tx.max_priority_fee is not None else api._suggested_tip()
        fee_cap = tx.max_fee if tx.max_fee is not None else BASE_FEE_HEADROOM * base_fee + tip
        if fee_cap < tip:
            raise invalid_params(
                f"maxFeePerGas ({fee_cap}) < maxPriorityFeePerGas ({tip})"
            )
        filled["maxFeePerGas"] = encoding.quantity(fee_cap)
        filled["maxPriorityFeePerGas"] = encoding.quantity(tip)
        filled["gasPrice"] = encoding.quantity(fee_cap)  # not in a block yet: the cap
    else:
        price = tx.gas_price if tx.gas_price is not None else base_fee + api._suggested_tip()
        filled["gasPrice"] = encoding.quantity(price)
    if kind != LEGACY_TYPE:
        filled["accessList"] = tx.access_list or []
    if kind == SET_CODE_TYPE:
        filled["authorizationList"] = tx.authorization_list
    return {"tx": filled}


def sign(address: Any, message: Any) -> str:
    params.address(address, "address")
    params.hex_bytes(message, "message")
    raise server_error(UNKNOWN_ACCOUNT)


def sign_transaction(value: Any) -> dict:
    tx = parse_transaction(value)
    transaction_type(tx)
    raise server_error(UNKNOWN_ACCOUNT)


def register_fill_api(methods: Methods, api: EthApi) -> None:
    async def fill(value: Any) -> dict:
        return await fill_transaction(api, value)

    methods.register("eth_fillTransaction", fill)
    methods.register("eth_sign", sign)
    methods.register("eth_signTransaction", sign_transaction)
