"""Genesis: the dev genesis (the well-known test mnemonic) and geth-like genesis files.

A genesis file is JSON:

    {
      "config": {"chainId": 31337},
      "gasLimit": "0x1c9c380",
      "timestamp": "0x0",
      "baseFeePerGas": "0x3b9aca00",
      "extraData": "0x",
      "alloc": {"0xADDRESS": {"balance": "0x...", "nonce": "0x0", "code": "0x...",
                              "storage": {"0xSLOT": "0xVALUE"}}},
      "validators": ["0xADDRESS", ...]
    }

`validators` is Laminar's addition: the fixed validator set (secp256k1 addresses).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import is_hex_address, to_canonical_address, to_checksum_address

DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_ACCOUNT_COUNT = 10
DEV_ACCOUNT_PATH = "m/44'/60'/0'/0/{index}"
# The dev validator's key comes from the same mnemonic on a path no funded account uses.
DEV_VALIDATOR_PATH = "m/44'/60'/1'/0/{index}"
DEV_BALANCE_WEI = 10_000 * 10**18
DEV_CHAIN_ID = 31337
DEFAULT_GAS_LIMIT = 30_000_000
MIN_GAS_LIMIT = 21_000  # one plain transfer
DEFAULT_BASE_FEE = 1_000_000_000  # 1 gwei, geth's genesis default
MAX_EXTRA_DATA_BYTES = 32


class GenesisError(ValueError):
    """The genesis file cannot be used; the message says which field and why."""


@dataclass(frozen=True)
class GenesisAccount:
    balance: int = 0
    nonce: int = 0
    code: bytes = b""
    storage: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Genesis:
    chain_id: int
    gas_limit: int
    timestamp: int
    base_fee_per_gas: int
    extra_data: bytes
    alloc: dict[bytes, GenesisAccount]
    validators: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON form; stored in the data dir so a restart uses the same chain."""
        alloc = {}
        for address, account in sorted(self.alloc.items()):
            entry: dict[str, Any] = {"balance": hex(account.balance)}
            if account.nonce:
                entry["nonce"] = hex(account.nonce)
            if account.code:
                entry["code"] = "0x" + account.code.hex()
            if account.storage:
                entry["storage"] = {hex(k): hex(v) for k, v in sorted(account.storage.items())}
            alloc[to_checksum_address(address)] = entry
        return {
            "config": {"chainId": self.chain_id},
            "gasLimit": hex(self.gas_limit),
            "timestamp": hex(self.timestamp),
            "baseFeePerGas": hex(self.base_fee_per_gas),
            "extraData": "0x" + self.extra_data.hex(),
            "alloc": alloc,
            "validators": [to_checksum_address(v) for v in self.validators],
        }


@dataclass(frozen=True)
class DevAccount:
    address: str
    private_key: str


def dev_accounts(count: int = DEV_ACCOUNT_COUNT) -> list[DevAccount]:
    """The funded accounts of the dev mnemonic, as every Ethereum dev node derives them."""
    Account.enable_unaudited_hdwallet_features()
    accounts = []
    for index in range(count):
        acct = Account.from_mnemonic(DEV_MNEMONIC, account_path=DEV_ACCOUNT_PATH.format(index=index))
        accounts.append(DevAccount(acct.address, "0x" + acct.key.hex()))
    return accounts


def dev_validator_key(index: int = 0) -> bytes:
    Account.enable_unaudited_hdwallet_features()
    acct = Account.from_mnemonic(DEV_MNEMONIC, account_path=DEV_VALIDATOR_PATH.format(index=index))
    return bytes(acct.key)


def dev_genesis(validator_addresses: tuple[bytes, ...]) -> Genesis:
    alloc = {
        to_canonical_address(a.address): GenesisAccount(balance=DEV_BALANCE_WEI)
        for a in dev_accounts()
    }
    return Genesis(
        chain_id=DEV_CHAIN_ID,
        gas_limit=DEFAULT_GAS_LIMIT,
        timestamp=0,
        base_fee_per_gas=DEFAULT_BASE_FEE,
        extra_data=b"",
        alloc=alloc,
        validators=validator_addresses,
    )


# ---- parsing ---------------------------------------------------------------------------


def _quantity(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise GenesisError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise GenesisError(f"{where}: must not be negative")
        return value
    if isinstance(value, str):
        try:
            number = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
        except ValueError:
            raise GenesisError(f"{where}: {value!r} is not a decimal or 0x-hex number") from None
        if number < 0:
            raise GenesisError(f"{where}: must not be negative")
        return number
    raise GenesisError(f"{where}: expected a number, got {type(value).__name__}")


def _hex_bytes(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise GenesisError(f"{where}: expected a 0x-prefixed hex string")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise GenesisError(f"{where}: {value!r} is not valid hex") from None


def _address(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise GenesisError(f"{where}: expected an address string")
    candidate = value if value.startswith("0x") else "0x" + value
    if not is_hex_address(candidate):
        raise GenesisError(f"{where}: {value!r} is not a 20-byte hex address")
    return to_canonical_address(candidate)


def parse_genesis(data: Any) -> Genesis:
    if not isinstance(data, dict):
        raise GenesisError("genesis: expected a JSON object")
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise GenesisError("config: expected an object")
    if "chainId" not in config:
        raise GenesisError("config.chainId: required")
    chain_id = _quantity(config["chainId"], "config.chainId")
    if chain_id == 0:
        raise GenesisError("config.chainId: must be positive")
    gas_limit = _quantity(data.get("gasLimit", DEFAULT_GAS_LIMIT), "gasLimit")
    if gas_limit < MIN_GAS_LIMIT:
        raise GenesisError(f"gasLimit: must be at least {MIN_GAS_LIMIT} (one transfer)")
    extra_data = _hex_bytes(data.get("extraData", "0x"), "extraData")
    if len(extra_data) > MAX_EXTRA_DATA_BYTES:
        raise GenesisError(f"extraData: at most {MAX_EXTRA_DATA_BYTES} bytes")
    alloc_json = data.get("alloc", {})
    if not isinstance(alloc_json, dict):
        raise GenesisError("alloc: expected an object of address -> account")
    alloc: dict[bytes, GenesisAccount] = {}
    for raw_address, entry in alloc_json.items():
        where = f"alloc.{raw_address}"
        address = _address(raw_address, where)
        if not isinstance(entry, dict):
            raise GenesisError(f"{where}: expected an object")
        storage_json = entry.get("storage", {})
        if not isinstance(storage_json, dict):
            raise GenesisError(f"{where}.storage: expected an object")
        alloc[address] = GenesisAccount(
            balance=_quantity(entry.get("balance", 0), f"{where}.balance"),
            nonce=_quantity(entry.get("nonce", 0), f"{where}.nonce"),
            code=_hex_bytes(entry.get("code", "0x"), f"{where}.code"),
            storage={
                _quantity(k, f"{where}.storage key"): _quantity(v, f"{where}.storage[{k}]")
                for k, v in storage_json.items()
            },
        )
    validators_json = data.get("validators")
    if not isinstance(validators_json, list) or not validators_json:
        raise GenesisError("validators: required, a non-empty list of validator addresses")
    validators = tuple(_address(v, f"validators[{i}]") for i, v in enumerate(validators_json))
    if len(set(validators)) != len(validators):
        raise GenesisError("validators: duplicate address")
    return Genesis(
        chain_id=chain_id,
        gas_limit=gas_limit,
        timestamp=_quantity(data.get("timestamp", 0), "timestamp"),
        base_fee_per_gas=_quantity(data.get("baseFeePerGas", DEFAULT_BASE_FEE), "baseFeePerGas"),
        extra_data=extra_data,
        alloc=alloc,
        validators=validators,
    )


def load_genesis_file(path: Path) -> Genesis:
    try:
        text = path.read_text()
    except OSError as exc:
        raise GenesisError(f"cannot read genesis file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenesisError(f"genesis file {path} is not valid JSON: {exc}") from None
    return parse_genesis(data)
