"""Dev-chain methods (evm_*, anvil_*, hardhat_*) and eth_sendTransaction.

Only the single-validator dev genesis answers them; on any other chain every dev method
is refused (-32601, saying why) and eth_sendTransaction answers geth's "unknown
account", as a node holding no keys does. What they do to the chain, in short (the
whole story is in docs/json-rpc.md, "Dev chain methods"):

- mining (evm_mine, anvil_mine, automine, interval mining) goes through the producer
  of consensus/single.py, one block at a time under its production lock;
- state edits (anvil_set*) are never made in place: each commits one new block, with no
  transactions, whose pre-state is the parent's plus the edits, so its header's state
  root is the stored state;
- impersonated transactions are signed with a throwaway key derived from the sender
  (a valid signature keeps py-evm's checks as they are) and carry the impersonated
  sender beside them, in the pool, in the block's commit batch and in memory;
- evm_revert rewinds the head in one synced batch (Chain.rewind_to).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import trio
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey

from consensus.single import SingleValidatorEngine
from node.chain import AccountPatch, Chain, StatePatch
from node.mempool import Mempool, MempoolError
from node.rpc import encoding, params
from node.rpc.errors import METHOD_NOT_FOUND, RpcError, invalid_params, server_error
from node.rpc.eth_api import DEFAULT_PRIORITY_FEE, EthApi
from node.rpc.server import Methods

MAX_MINE_BLOCKS = 1000  # anvil_mine / hardhat_mine: blocks per call (each is executed)
DEFAULT_MINE_INTERVAL_S = 1  # anvil_mine: seconds between the mined blocks' timestamps
MS_PER_S = 1000
STORAGE_VALUE_BYTES = 32
BASE_FEE_HEADROOM = 2  # default maxFeePerGas: this many times the next base fee, plus tip
# Seed of the throwaway keys that sign impersonated transactions (public on purpose).
IMPERSONATION_KEY_DOMAIN = b"laminar dev chain impersonation key"
NOT_DEV_CHAIN = "is only available on the dev chain (the single-validator dev genesis)"


def impersonation_key(sender: bytes) -> PrivateKey:
    """The key that signs `sender`'s impersonated transactions: one per sender, so two
    senders' otherwise equal transactions still differ in hash."""
    return PrivateKey(keccak(IMPERSONATION_KEY_DOMAIN + sender))


def seconds(value: Any, name: str) -> int:
    """A non-negative count of seconds (or ms), as a JSON integer or a hex quantity:
    Hardhat's helpers send numbers, ethers' send hex."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.startswith("0x"):
        number = params.quantity(value, name)
    else:
        raise invalid_params(f"{name}: expected a number or a hex quantity, got {value!r}")
    if number < 0:
        raise invalid_params(f"{name}: must not be negative")
    return number


@dataclass
class Snapshot:
    block_number: int
    block_hash: bytes
    time_offset_s: int


@dataclass
class DevApi:
    chain: Chain
    mempool: Mempool
    eth: EthApi
    # The dev chain's producer; None on any other chain (every dev method is refused).
    engine: Optional[SingleValidatorEngine]
    impersonated: set[bytes] = field(default_factory=set)
    snapshots: dict[int, Snapshot] = field(default_factory=dict)
    next_snapshot_id: int = 1

    def _dev(self, method: str) -> SingleValidatorEngine:
        if self.engine is None:
            raise RpcError(METHOD_NOT_FOUND, f"{method} {NOT_DEV_CHAIN}")
        return self.engine

    # ---- mining ---------------------------------------------------------------------

    async def evm_mine(self, timestamp: Any = None) -> str:
        engine = self._dev("evm_mine")
        forced = None if timestamp is None else self._later_than_head(timestamp, "timestamp")
        if forced is not None:
            engine.dev.time_offset_s = forced - int(time.time())
        await engine.produce_block(timestamp=forced)
        return "0x0"

    async def anvil_mine(self, blocks: Any = None, interval: Any = None) -> None:
        engine = self._dev("anvil_mine")
        count = 1 if blocks is None else params.quantity(blocks, "numBlocks")
        step = DEFAULT_MINE_INTERVAL_S if interval is None else params.quantity(interval, "interval")
        if count > MAX_MINE_BLOCKS:
            raise invalid_params(f"numBlocks: at most {MAX_MINE_BLOCKS} blocks per call")
        timestamp = None
        for _ in range(count):
            await engine.produce_block(timestamp=timestamp)
            timestamp = self.chain.head.timestamp + max(step, 1)
        if count and timestamp is not None:
            engine.dev.time_offset_s = self.chain.head.timestamp - int(time.time())
        return None

    def set_automine(self, enabled: Any) -> bool:
        engine = self._dev("evm_setAutomine")
        engine.dev.automine = params.boolean(enabled, "enabled")
        engine.controls_changed()
        return True

    def set_interval_mining(self, interval_ms: Any) -> bool:
        engine = self._dev("evm_setIntervalMining")
        ms = seconds(interval_ms, "interval")
        engine.dev.interval_s = ms / MS_PER_S if ms else None
        engine.controls_changed()
        return True

    # ---- time -----------------------------------------------------------------------

    def _later_than_head(self, value: Any, name: str) -> int:
        timestamp = seconds(value, name)
        head = self.chain.head.timestamp
        if timestamp <= head:
            raise invalid_params(
                f"Timestamp {timestamp} is lower than or equal to previous block's timestamp {head}"
            )
        return timestamp

    def increase_time(self, delta: Any) -> str:
        engine = self._dev("evm_increaseTime")
        engine.dev.time_offset_s += seconds(delta, "seconds")
        return str(engine.dev.time_offset_s)

    def set_next_block_timestamp(self, timestamp: Any) -> None:
        engine = self._dev("evm_setNextBlockTimestamp")
        forced = self._later_than_head(timestamp, "timestamp")
        engine.dev.next_timestamp = forced  # the offset follows when that block is mined
        return None

    # ---- state edits ----------------------------------------------------------------

    async def _patch(self, method: str, address: Any, edit: AccountPatch) -> bool:
        engine = self._dev(method)
        patch: StatePatch = {params.address(address, "address"): edit}
        await engine.produce_block(state_patch=patch, with_transactions=False)
        return True

    async def set_balance(self, address: Any, balance: Any) -> bool:
        edit = AccountPatch(balance=params.quantity(balance, "balance"))
        return await self._patch("anvil_setBalance", address, edit)

    async def set_nonce(self, address: Any, nonce: Any) -> bool:
        edit = AccountPatch(nonce=params.quantity(nonce, "nonce"))
        return await self._patch("anvil_setNonce", address, edit)

    async def set_code(self, address: Any, code: Any) -> bool:
        edit = AccountPatch(code=params.hex_bytes(code, "code"))
        return await self._patch("anvil_setCode", address, edit)

    async def set_storage_at(self, address: Any, slot: Any, value: Any) -> bool:
        raw = params.hex_bytes(value, "value")
        if len(raw) > STORAGE_VALUE_BYTES:
            raise invalid_params(f"value: at most {STORAGE_VALUE_BYTES} bytes")
        edit = AccountPatch(storage={
            params.storage_slot(slot, "slot"): int.from_bytes(raw, "big")
        })
        return await self._patch("anvil_setStorageAt", address, edit)

    # ---- impersonation --------------------------------------------------------------

    def impersonate(self, address: Any) -> bool:
        self._dev("anvil_impersonateAccount")
        self.impersonated.add(params.address(address, "address"))
        return True

    def stop_impersonating(self, address: Any) -> bool:
        self._dev("anvil_stopImpersonatingAccount")
        self.impersonated.discard(params.address(address, "address"))
        return True

    async def send_transaction(self, tx: Any) -> str:
        """eth_sendTransaction: from an impersonated account on the dev chain only; this
        node holds no keys, so anything else is geth's "unknown account"."""
        fields = params.obj(tx, "transaction")
        if "from" not in fields:
            raise invalid_params("from: missing the sender")
        sender = params.address(fields["from"], "from")
        if self.engine is None or sender not in self.impersonated:
            raise server_error("unknown account")
        signed = await self._impersonated_transaction(sender, fields)
        try:
            pooled = self.mempool.add_impersonated(signed, sender, self.chain.next_base_fee())
        except MempoolError as exc:
            raise server_error(str(exc)) from None
        self.eth.on_pending_transaction(pooled)  # never gossiped: peers could not check it
        return encoding.data(pooled.hash)

    async def _impersonated_transaction(self, sender: bytes, fields: dict) -> Any:
        for unsupported in ("accessList", "authorizationList", "blobVersionedHashes"):
            if fields.get(unsupported):
                raise invalid_params(f"{unsupported}: not supported for impersonated transactions")
        if "data" in fields and "input" in fields and fields["data"] != fields["input"]:
            raise invalid_params(
                'both "data" and "input" are set and not equal. Please use "input" to pass '
                "transaction call data"
            )
        data_field = fields.get("input", fields.get("data"))
        data = params.hex_bytes(data_field, "input") if data_field is not None else b""
        to = params.address(fields["to"], "to") if fields.get("to") else b""
        value = params.quantity(fields["value"], "value") if fields.get("value") else 0
        nonce = (params.quantity(fields["nonce"], "nonce") if fields.get("nonce") is not None
                 else self.mempool.pending_nonce(sender))
        if fields.get("gasPrice") is not None:
            if fields.get("maxFeePerGas") is not None or fields.get("maxPriorityFeePerGas") is not None:
                raise invalid_params("both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified")
            tip = fee_cap = params.quantity(fields["gasPrice"], "gasPrice")
        else:
            tip = (params.quantity(fields["maxPriorityFeePerGas"], "maxPriorityFeePerGas")
                   if fields.get("maxPriorityFeePerGas") is not None else DEFAULT_PRIORITY_FEE)
            fee_cap = (params.quantity(fields["maxFeePerGas"], "maxFeePerGas")
                       if fields.get("maxFeePerGas") is not None
                       else BASE_FEE_HEADROOM * self.chain.next_base_fee() + tip)
            tip = min(tip, fee_cap)
        if fields.get("gas") is not None:
            gas = params.quantity(fields["gas"], "gas")
        else:
            estimate_request = {"from": encoding.data(sender), "input": encoding.data(data),
                                "value": encoding.quantity(value)}
            if to:
                estimate_request["to"] = encoding.data(to)
            gas = int(await self.eth.estimate_gas(estimate_request), 16)
        builder = self.chain.vm_class.get_transaction_builder()
        unsigned = builder.new_unsigned_dynamic_fee_transaction(
            self.chain.chain_id, nonce, tip, fee_cap, gas, to, value, data, [],
        )
        signed = await trio.to_thread.run_sync(
            unsigned.as_signed_transaction, impersonation_key(sender)
        )
        # In this fork's own transaction class (what blocks decode to), not London's.
        return builder.decode(signed.encode())

    # ---- snapshots ------------------------------------------------------------------

    def snapshot(self) -> str:
        engine = self._dev("evm_snapshot")
        head = self.chain.head
        snapshot_id = self.next_snapshot_id
        self.next_snapshot_id += 1
        self.snapshots[snapshot_id] = Snapshot(
            head.block_number, head.hash, engine.dev.time_offset_s
        )
        return encoding.quantity(snapshot_id)

    async def revert(self, snapshot_id: Any) -> bool:
        """Back to a snapshot's block: False (Hardhat's answer) for an id that is unknown,
        already reverted to, or taken after a snapshot since reverted to."""
        engine = self._dev("evm_revert")
        wanted = params.quantity(snapshot_id, "snapshotId")
        snapshot = self.snapshots.get(wanted)
        if snapshot is None:
            return False
        async with engine.production_lock:
            if self.chain.store.canonical_hash(snapshot.block_number) != snapshot.block_hash:
                raise server_error("snapshot's block is no longer on the chain")
            removed = await trio.to_thread.run_sync(self.chain.rewind_to, snapshot.block_number)
            for tx_hash in removed:
                self.mempool.remove(tx_hash)
            self.mempool.on_new_head(self.chain.head_state())
        for later in [i for i in self.snapshots if i >= wanted]:
            del self.snapshots[later]
        engine.dev.time_offset_s = snapshot.time_offset_s
        engine.dev.next_timestamp = None
        return True


def register_dev_api(methods: Methods, api: DevApi) -> None:
    """The dev methods under their Hardhat (evm_, hardhat_) and Anvil (anvil_) names."""
    table: dict[str, Callable[..., Any]] = {
        "eth_sendTransaction": api.send_transaction,
        "evm_mine": api.evm_mine,
        "anvil_mine": api.anvil_mine,
        "hardhat_mine": api.anvil_mine,
        "evm_setAutomine": api.set_automine,
        "anvil_setAutomine": api.set_automine,
        "evm_setIntervalMining": api.set_interval_mining,
        "evm_increaseTime": api.increase_time,
        "anvil_increaseTime": api.increase_time,
        "evm_setNextBlockTimestamp": api.set_next_block_timestamp,
        "anvil_setNextBlockTimestamp": api.set_next_block_timestamp,
        "evm_snapshot": api.snapshot,
        "evm_revert": api.revert,
    }
    edits: dict[str, Callable[..., Any]] = {
        "setBalance": api.set_balance,
        "setNonce": api.set_nonce,
        "setCode": api.set_code,
        "setStorageAt": api.set_storage_at,
        "impersonateAccount": api.impersonate,
        "stopImpersonatingAccount": api.stop_impersonating,
    }
    for name, handler in edits.items():
        table["anvil_" + name] = handler
        table["hardhat_" + name] = handler
    for name, handler in table.items():
        methods.register(name, handler)
