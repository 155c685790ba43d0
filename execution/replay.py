"""`laminar replay`: re-execute a real Ethereum mainnet block and compare with its header.

A block folder holds `block.json` (as `eth_getBlockByNumber(N, true)` returns it),
`prestate.json` (geth prestateTracer shape: every account and slot the block touches) and
`block_hashes.json` (`{number: hash}` for BLOCKHASH). Each may also be gzipped
(`block.json.gz`...). The prestate is partial, so the header's stateRoot cannot be
rebuilt; what is checked is gasUsed, logsBloom, receiptsRoot (from Byzantium on: earlier
receipts embed intermediate full-state roots), transactionsRoot (our reconstruction of the
signed transactions) and that every sender recovers to the transaction's `from`.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import rlp
from eth.abc import SignedTransactionAPI, VirtualMachineAPI
from eth.vm.forks.shanghai.withdrawals import Withdrawal
from eth_hash.auto import keccak

from execution.bal.builder import AccessListUnsupported
from execution.bal.codec import BlockAccessList
from execution.bal.importer import AccessListMismatch
from execution.executor import (
    ETHEREUM_RULES,
    BlockEnv,
    BlockInput,
    BlockRuleError,
    Executor,
    InvalidBlockError,
    StateView,
)
from execution.forks import BYZANTIUM_BLOCK, PARIS_BLOCK, mainnet_vm_for_block
from execution.prestate import PrestateError, load_prestate
from execution.roots import make_header_roots
from execution.sequential import SequentialExecutor

MAINNET_CHAIN_ID = 1
# One-shot replays of smaller blocks run sequentially (see _one_shot_plan). Measured on
# this project's 2-core machine, whole `laminar replay` wall time, Block-STM over
# sequential (median of 5 pairs, 2026-12-01): 380 transactions 1.34x, 687 1.15x,
# 1,100 0.95x: starting and warming two workers is repaid from about 1,000 on.
ONE_SHOT_PARALLEL_MIN_TRANSACTIONS = 1000


class ReplayInputError(Exception):
    """The block folder cannot be replayed: missing file, bad JSON, missing or bad field."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------------------- reading


def read_json(folder: Path, name: str) -> Any:
    """`folder/name`, or `folder/name.gz`, parsed as JSON."""
    plain = folder / name
    packed = folder / (name + ".gz")
    try:
        if plain.is_file():
            with open(plain, "rb") as f:
                raw = f.read()
        elif packed.is_file():
            with gzip.open(packed, "rb") as f:
                raw = f.read()
        else:
            raise ReplayInputError(f"{folder}: no {name} (nor {name}.gz)")
        return json.loads(raw)
    except ReplayInputError:
        raise
    except (OSError, EOFError) as exc:
        raise ReplayInputError(f"{folder / name}: cannot read: {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReplayInputError(f"{folder / name}: not valid JSON: {exc}") from None


def _field(obj: Mapping[str, Any], key: str, where: str) -> Any:
    try:
        value = obj[key]
    except (KeyError, TypeError):
        raise ReplayInputError(f"{where}: missing field {key!r}") from None
    if value is None:
        raise ReplayInputError(f"{where}: field {key!r} is null")
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ReplayInputError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            if value[:2].lower() == "0x":
                return int(value, 16) if len(value) > 2 else 0
            return int(value, 10)
        except ValueError:
            pass
    raise ReplayInputError(f"{what}: expected a number, got {value!r}")


def _bytes(value: Any, what: str, length: Optional[int] = None) -> bytes:
    if not isinstance(value, str) or value[:2].lower() != "0x":
        raise ReplayInputError(f"{what}: expected a 0x-prefixed hex string, got {value!r}")
    try:
        data = bytes.fromhex(value[2:])
    except ValueError:
        raise ReplayInputError(f"{what}: not a hex string: {value[:40]!r}") from None
    if length is not None and len(data) != length:
        raise ReplayInputError(f"{what}: expected {length} bytes, got {len(data)}")
    return data


def _opt_int(block: Mapping[str, Any], key: str) -> Optional[int]:
    value = block.get(key)
    return None if value is None else _int(value, f"block.{key}")


# ------------------------------------------------------------------- transactions


def _access_list(tx: Mapping[str, Any], where: str) -> list:
    items = tx.get("accessList") or []
    out = []
    for i, item in enumerate(items):
        address = _bytes(_field(item, "address", f"{where}.accessList[{i}]"), where, 20)
        keys = [
            _bytes(k, f"{where}.accessList[{i}].storageKeys", 32)
            for k in item.get("storageKeys") or []
        ]
        out.append([address, keys])
    return out


def _authorization_list(tx: Mapping[str, Any], where: str) -> list:
    """EIP-7702 authorizations: [chain_id, address, nonce, y_parity, r, s] each."""
    out = []
    for i, item in enumerate(_field(tx, "authorizationList", where)):
        at = f"{where}.authorizationList[{i}]"
        out.append([
            _int(_field(item, "chainId", at), f"{at}.chainId"),
            _bytes(_field(item, "address", at), f"{at}.address", 20),
            _int(_field(item, "nonce", at), f"{at}.nonce"),
            _y_parity(item, at),
            _int(_field(item, "r", at), f"{at}.r"),
            _int(_field(item, "s", at), f"{at}.s"),
        ])
    return out


def _y_parity(tx: Mapping[str, Any], where: str) -> int:
    if tx.get("yParity") is not None:
        return _int(tx["yParity"], f"{where}.yParity")
    return _int(_field(tx, "v", where), f"{where}.v")


def decode_transaction(
    tx: Mapping[str, Any], vm_class: type[VirtualMachineAPI], where: str
) -> SignedTransactionAPI:
    """Rebuild a signed transaction from its JSON-RPC form with the fork's builder."""
    builder = vm_class.get_transaction_builder()
    type_id = _int(tx.get("type", "0x0"), f"{where}.type")
    to_value = tx.get("to")
    to = b"" if to_value in (None, "", "0x") else _bytes(to_value, f"{where}.to", 20)
    nonce = _int(_field(tx, "nonce", where), f"{where}.nonce")
    gas = _int(_field(tx, "gas", where), f"{where}.gas")
    value = _int(_field(tx, "value", where), f"{where}.value")
    data = _bytes(tx.get("input", tx.get("data", "0x")), f"{where}.input")
    r = _int(_field(tx, "r", where), f"{where}.r")
    s = _int(_field(tx, "s", where), f"{where}.s")

    if type_id == 0:
        gas_price = _int(_field(tx, "gasPrice", where), f"{where}.gasPrice")
        v = _int(_field(tx, "v", where), f"{where}.v")
        return builder.new_transaction(
            nonce=nonce, gas_price=gas_price, gas=gas, to=to, value=value, data=data,
            v=v, r=r, s=s,
        )

    chain_id = _int(_field(tx, "chainId", where), f"{where}.chainId")
    access_list = _access_list(tx, where)
    y_parity = _y_parity(tx, where)
    if type_id == 1:
        gas_price = _int(_field(tx, "gasPrice", where), f"{where}.gasPrice")
        payload = [chain_id, nonce, gas_price, gas, to, value, data, access_list,
                   y_parity, r, s]
    elif type_id in (2, 3, 4):  # EIP-1559 fees; type 3 adds blobs, type 4 authorizations
        max_priority = _int(
            _field(tx, "maxPriorityFeePerGas", where), f"{where}.maxPriorityFeePerGas"
        )
        max_fee = _int(_field(tx, "maxFeePerGas", where), f"{where}.maxFeePerGas")
        payload = [chain_id, nonce, max_priority, max_fee, gas, to, value, data,
                   access_list]
        if type_id == 3:
            max_fee_per_blob = _int(
                _field(tx, "maxFeePerBlobGas", where), f"{where}.maxFeePerBlobGas"
            )
            hashes = [
                _bytes(h, f"{where}.blobVersionedHashes", 32)
                for h in _field(tx, "blobVersionedHashes", where)
            ]
            payload += [max_fee_per_blob, hashes]
        elif type_id == 4:
            payload.append(_authorization_list(tx, where))
        payload += [y_parity, r, s]
    else:
        raise ReplayInputError(f"{where}: unsupported transaction type {type_id}")
    encoded = bytes([type_id]) + rlp.encode(payload)
    try:
        return builder.decode(encoded)
    except Exception as exc:  # py-evm: ValidationError, UnrecognizedTransactionType...
        raise ReplayInputError(
            f"{where}: type {type_id} transaction not valid under {vm_class.fork} "
            f"rules: {exc}"
        ) from None


# -------------------------------------------------------------------------- replay


def _block_hashes(raw: Any) -> dict[int, bytes]:
    if not isinstance(raw, Mapping):
        raise ReplayInputError("block_hashes.json: expected an object {number: hash}")
    return {
        _int(k, "block_hashes key"): _bytes(v, f"block_hashes[{k}]", 32)
        for k, v in raw.items()
    }


def _uncles(block: Mapping[str, Any], notes: list[str]) -> tuple[list[tuple[int, bytes]], int]:
    uncles = block.get("uncles") or []
    known: list[tuple[int, bytes]] = []
    for i, uncle in enumerate(uncles):
        if isinstance(uncle, Mapping):
            known.append((
                _int(_field(uncle, "number", f"uncles[{i}]"), f"uncles[{i}].number"),
                _bytes(_field(uncle, "miner", f"uncles[{i}]"), f"uncles[{i}].miner", 20),
            ))
    if uncles and len(known) != len(uncles):
        notes.append(
            f"block.json lists {len(uncles)} uncle(s) by hash only: uncle rewards "
            f"skipped; the miner's reward still counts {len(uncles)} nephew reward(s)"
        )
        return [], len(uncles)
    return known, len(uncles)


def _one_shot_plan(executor: Executor, transactions: int) -> tuple[Executor, Optional[str]]:
    """For a single replay: the executor to use, and why it is not the one asked for."""
    if getattr(executor, "name", "") != "blockstm" or transactions >= ONE_SHOT_PARALLEL_MIN_TRANSACTIONS:
        return executor, None
    return SequentialExecutor(), (
        f"a one-shot replay of {transactions} transactions runs sequentially: Block-STM's "
        f"worker start-up is only repaid from {ONE_SHOT_PARALLEL_MIN_TRANSACTIONS} on"
    )


def _start_workers_in_background(executor: Executor) -> Optional[threading.Thread]:
    """Start an executor's worker processes while the caller loads the pre-state."""
    start = getattr(executor, "start", None)
    if start is None:
        return None
    thread = threading.Thread(target=start, name="laminar-replay-worker-start", daemon=True)
    thread.start()
    return thread


def replay_block_dir(
    path: str | Path, executor: Executor, one_shot: bool = False,
    build_access_list: bool = False, access_list: Optional[BlockAccessList] = None,
) -> dict[str, Any]:
    """Replay the block in folder `path` with `executor`; the JSON-able report.

    `one_shot` (a single replay, as `laminar replay` does): a block too small to repay
    Block-STM's start-up runs sequentially, and otherwise the workers start while the
    pre-state loads; the report's `execution` says what ran. `build_access_list`: the
    report's `accessList` is the block's EIP-7928 access list (hex RLP); `access_list`:
    the block runs with that list (an importer checks and uses it)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ReplayInputError(f"{folder}: not a directory")
    load_started = time.perf_counter()
    block = read_json(folder, "block.json")
    hashes_raw = read_json(folder, "block_hashes.json")
    if not isinstance(block, Mapping):
        raise ReplayInputError("block.json: expected a block object")

    number = _int(_field(block, "number", "block"), "block.number")
    vm_class = mainnet_vm_for_block(number)
    notes: list[str] = []

    raw_txs = _field(block, "transactions", "block")
    if not isinstance(raw_txs, list):
        raise ReplayInputError("block.transactions: expected a list")
    transactions = []
    senders_ok = True
    for i, raw in enumerate(raw_txs):
        where = f"block.transactions[{i}]"
        if not isinstance(raw, Mapping):
            raise ReplayInputError(
                f"{where}: expected a full transaction object (eth_getBlockByNumber(N, true))"
            )
        tx = decode_transaction(raw, vm_class, where)
        expected_from = _bytes(_field(raw, "from", where), f"{where}.from", 20)
        try:
            sender = tx.sender
        except Exception:
            sender = None
        if sender != expected_from:
            senders_ok = False
            notes.append(
                f"transaction {i}: sender recovers to "
                f"{'nothing' if sender is None else '0x' + sender.hex()}, "
                f"block says {raw['from']}"
            )
        transactions.append(tx)

    withdrawals = []
    for i, w in enumerate(block.get("withdrawals") or []):
        where = f"block.withdrawals[{i}]"
        withdrawals.append(Withdrawal(
            index=_int(_field(w, "index", where), f"{where}.index"),
            validator_index=_int(_field(w, "validatorIndex", where), f"{where}.validatorIndex"),
            address=_bytes(_field(w, "address", where), f"{where}.address", 20),
            amount=_int(_field(w, "amount", where), f"{where}.amount"),
        ))

    pow_block = number < PARIS_BLOCK
    uncles, uncle_count = _uncles(block, notes) if pow_block else ([], 0)
    parent_beacon_root = block.get("parentBeaconBlockRoot")
    env = BlockEnv(
        vm_class=vm_class,
        chain_id=MAINNET_CHAIN_ID,
        number=number,
        timestamp=_int(_field(block, "timestamp", "block"), "block.timestamp"),
        coinbase=_bytes(_field(block, "miner", "block"), "block.miner", 20),
        gas_limit=_int(_field(block, "gasLimit", "block"), "block.gasLimit"),
        parent_hash=_bytes(_field(block, "parentHash", "block"), "block.parentHash", 32),
        difficulty=_opt_int(block, "difficulty") or 0,
        mix_hash=_bytes(block.get("mixHash") or "0x" + "00" * 32, "block.mixHash", 32),
        base_fee_per_gas=_opt_int(block, "baseFeePerGas"),
        excess_blob_gas=_opt_int(block, "excessBlobGas"),
        parent_beacon_block_root=(
            None if parent_beacon_root is None
            else _bytes(parent_beacon_root, "block.parentBeaconBlockRoot", 32)
        ),
        block_hashes=_block_hashes(hashes_raw),
        rules=ETHEREUM_RULES,  # a mainnet block runs under mainnet's rules, blobs included
    )
    block_input = BlockInput(
        env=env,
        transactions=tuple(transactions),
        withdrawals=tuple(withdrawals),
        apply_pow_rewards=pow_block,
        uncles=tuple(uncles),
        uncle_count=uncle_count,
        build_access_list=build_access_list,
        access_list=access_list,
    )
    asked_for = executor
    substitution = None
    starting = None
    if one_shot:
        executor, substitution = _one_shot_plan(executor, len(transactions))
        if substitution is None:
            starting = _start_workers_in_background(executor)
    try:
        prestate = read_json(folder, "prestate.json")
        nodes, state_root = load_prestate(prestate)
    except PrestateError as exc:
        raise ReplayInputError(f"prestate.json: {exc}") from None
    finally:
        if starting is not None:
            starting.join()

    expected_gas = _int(_field(block, "gasUsed", "block"), "block.gasUsed")
    expected_bloom = _int(_field(block, "logsBloom", "block"), "block.logsBloom")
    expected_receipts_root = _bytes(
        _field(block, "receiptsRoot", "block"), "block.receiptsRoot", 32
    )
    expected_tx_root = block.get("transactionsRoot")
    load_s = time.perf_counter() - load_started

    report: dict[str, Any] = {
        "block": number,
        "fork": vm_class.fork,
        "executor": asked_for.name,
        "transactions": len(transactions),
    }
    execute_started = time.perf_counter()
    try:
        result = executor.execute(block_input, StateView(nodes=nodes, state_root=state_root))
    except AccessListUnsupported as exc:
        raise ReplayInputError(f"the block has no access list: {exc}") from None
    except AccessListMismatch as exc:  # the block is fine, the list given with it is not
        invalid: Optional[dict[str, Any]] = {"index": None, "reason": str(exc)}
    except BlockRuleError as exc:  # e.g. a Prague block whose pre-state lacks the
        # system contracts its header's requests come from
        raise ReplayInputError(f"the block cannot be replayed: {exc}") from None
    except InvalidBlockError as exc:
        invalid = {"index": exc.index, "reason": exc.reason}
    else:
        invalid = None
    if invalid is not None:
        execute_s = time.perf_counter() - execute_started
        report.update({
            "gasUsed": None,
            "logsBloom": None,
            "receiptsRoot": None,
            "postStateRoot": None,
            "matches": {
                "gasUsed": False,
                "logsBloom": False,
                "receiptsRoot": False if number >= BYZANTIUM_BLOCK else None,
                "transactionsRoot": None,
                "senders": senders_ok,
            },
            "invalid": invalid,
            "timing": {"execute_s": execute_s, "load_s": load_s},
            "ok": False,
        })
        if notes:
            report["notes"] = notes
        return report
    execute_s = time.perf_counter() - execute_started

    tx_root, receipts_root = make_header_roots(transactions, result.receipts)
    matches = {
        "gasUsed": result.gas_used == expected_gas,
        "logsBloom": result.logs_bloom == expected_bloom,
        "receiptsRoot": (
            receipts_root == expected_receipts_root if number >= BYZANTIUM_BLOCK else None
        ),
        "transactionsRoot": (
            None if expected_tx_root is None
            else tx_root == _bytes(expected_tx_root, "block.transactionsRoot", 32)
        ),
        "senders": senders_ok,
    }
    report["execution"] = _execution_report(result, substitution, executor)
    if result.access_list is not None:
        encoded = result.access_list.encode()
        report["accessList"] = "0x" + encoded.hex()
        report["accessListHash"] = "0x" + keccak(encoded).hex()
    report.update({
        "gasUsed": hex(result.gas_used),
        "logsBloom": "0x" + result.logs_bloom.to_bytes(256, "big").hex(),
        "receiptsRoot": "0x" + receipts_root.hex(),
        "postStateRoot": "0x" + result.post_state_root.hex(),
        "matches": matches,
        "timing": {"execute_s": execute_s, "load_s": load_s},
        "ok": all(v for v in matches.values() if v is not None),
    })
    if notes:
        report["notes"] = notes
    return report


def _execution_report(result: Any, substitution: Optional[str], executor: Executor) -> dict:
    stats = result.stats
    ran = "sequential" if substitution is not None or stats.fallback else stats.executor
    record: dict[str, Any] = {"ran": ran, "workers": stats.workers}
    if substitution is not None:
        record["why"] = substitution
    elif stats.fallback:
        record["why"] = getattr(executor, "last_fallback_reason", None) or "fallback"
    return record


def replay_many(paths: Sequence[str | Path], executor: Executor) -> list[dict[str, Any]]:
    return [replay_block_dir(p, executor) for p in paths]
