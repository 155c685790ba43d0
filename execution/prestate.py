"""Build an in-memory world state from a geth prestateTracer dump.

Shape: `{address: {"balance": hex, "nonce": int | hex, "code"?: hex, "storage"?: {slot: value}}}`.
Every listed address exists (even if empty); an absent address does not.
"""

from __future__ import annotations

from typing import Any, Mapping

from eth.db.account import AccountDB
from eth_utils import to_canonical_address

from execution.overlay import OverlayDB


class PrestateError(ValueError):
    """The prestate dump is malformed (bad address, number or hex string)."""


def _to_int(value: Any, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise PrestateError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if text[:2].lower() == "0x":
                return int(text, 16) if len(text) > 2 else 0
            return int(text, 10)
        except ValueError:
            pass
    raise PrestateError(f"{what}: expected a number, got {value!r}")


def _to_bytes(value: Any, what: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise PrestateError(f"{what}: expected a hex string, got {value!r}")
    text = value[2:] if value[:2].lower() == "0x" else value
    if len(text) % 2:
        text = "0" + text
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise PrestateError(f"{what}: not a hex string: {value[:40]!r}") from None


def load_prestate(prestate_json: Mapping[str, Any]) -> tuple[dict[bytes, bytes], bytes]:
    """Return `(nodes, state_root)`: the trie nodes and code (keyed by hash) and the root."""
    if not isinstance(prestate_json, Mapping):
        raise PrestateError("prestate must be a JSON object of {address: account}")
    db = OverlayDB({})
    accounts = AccountDB(db)
    for address_text, entry in prestate_json.items():
        try:
            address = to_canonical_address(address_text)
        except (ValueError, TypeError):
            raise PrestateError(f"bad address {address_text!r}") from None
        if not isinstance(entry, Mapping):
            raise PrestateError(f"{address_text}: account must be an object")
        accounts.touch_account(address)  # exists, even when empty
        balance = _to_int(entry.get("balance"), f"{address_text}.balance")
        if balance:
            accounts.set_balance(address, balance)
        nonce = _to_int(entry.get("nonce"), f"{address_text}.nonce")
        if nonce:
            accounts.set_nonce(address, nonce)
        code = _to_bytes(entry.get("code"), f"{address_text}.code")
        if code:
            accounts.set_code(address, code)
        storage = entry.get("storage") or {}
        if not isinstance(storage, Mapping):
            raise PrestateError(f"{address_text}.storage must be an object")
        for slot_text, value_text in storage.items():
            value = _to_int(value_text, f"{address_text}.storage[{slot_text}]")
            if value:
                slot = _to_int(slot_text, f"{address_text}.storage slot")
                accounts.set_storage(address, slot, value)
    accounts.persist()
    return dict(db.pending()), accounts.state_root
