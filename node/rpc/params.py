"""Strict decoding of JSON-RPC parameters; every failure is an INVALID_PARAMS error."""

from __future__ import annotations

from typing import Any, Optional

from eth_utils import is_hex_address, to_canonical_address

from node.rpc.errors import invalid_params

BLOCK_TAGS = ("latest", "earliest", "pending", "safe", "finalized")
HASH_BYTES = 32
UINT256_HEX_DIGITS = 64  # every EVM quantity fits in 256 bits
SHOWN_VALUE_CHARS = 80  # an error message quotes at most this much of a bad value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."


def quantity(value: Any, name: str) -> int:
    """A 0x-hex quantity of at most 256 bits: anything larger could not be a balance, a
    gas figure or a block number, and would only reach py-evm to fail there."""
    if not isinstance(value, str) or not value.startswith("0x") or len(value) < 3:
        raise invalid_params(f"{name}: expected a 0x-prefixed hex quantity, got {_shown(value)}")
    if len(value) > 3 and value[2] == "0":
        raise invalid_params(f"{name}: hex number with leading zero digits: {_shown(value)}")
    if len(value) - 2 > UINT256_HEX_DIGITS:
        raise invalid_params(f"{name}: quantity does not fit in 256 bits")
    try:
        number = int(value, 16)
    except ValueError:
        raise invalid_params(f"{name}: {_shown(value)} is not hex") from None
    return number


def hex_bytes(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise invalid_params(f"{name}: expected 0x-prefixed hex data, got {_shown(value)}")
    body = value[2:]
    if len(body) % 2:
        raise invalid_params(f"{name}: hex data must have an even number of digits")
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise invalid_params(f"{name}: {_shown(value)} is not hex") from None


def hash32(value: Any, name: str) -> bytes:
    raw = hex_bytes(value, name)
    if len(raw) != HASH_BYTES:
        raise invalid_params(f"{name}: expected a 32-byte hash")
    return raw


def address(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not is_hex_address(value):
        raise invalid_params(f"{name}: expected a 20-byte hex address, got {_shown(value)}")
    return to_canonical_address(value)


def storage_slot(value: Any, name: str) -> int:
    """A slot as geth takes it: up to 32 bytes of hex, leading zeros allowed."""
    if isinstance(value, str) and value.startswith("0x") and len(value) <= 2 + 2 * HASH_BYTES:
        try:
            return int(value[2:] or "0", 16)
        except ValueError:
            raise invalid_params(f"{name}: {_shown(value)} is not hex") from None
    raise invalid_params(f"{name}: expected a hex storage slot of at most 32 bytes")


def block_ref(value: Any, name: str = "block") -> Any:
    """A block number, a tag, or an EIP-1898 object; returned as int, tag str or ('hash', h)."""
    if value is None:
        return "latest"
    if isinstance(value, str):
        if value in BLOCK_TAGS:
            return value
        if len(value) == 2 + 2 * HASH_BYTES:  # a block hash (the spec allows it plain)
            return ("hash", hash32(value, name))
        return quantity(value, name)
    if isinstance(value, dict):
        if "blockHash" in value:
            return ("hash", hash32(value["blockHash"], f"{name}.blockHash"))
        if "blockNumber" in value:
            return block_ref(value["blockNumber"], f"{name}.blockNumber")
    raise invalid_params(
        f"{name}: expected a block number, one of {', '.join(BLOCK_TAGS)}, or {{blockHash}}"
    )


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise invalid_params(f"{name}: expected true or false")
    return value


def optional(value: Any, parse, name: str) -> Optional[Any]:
    return None if value is None else parse(value, name)


def obj(value: Any, name: str) -> dict:
    if not isinstance(value, dict):
        raise invalid_params(f"{name}: expected an object")
    return value
