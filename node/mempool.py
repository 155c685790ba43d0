"""Transaction pool.

The mempool receives raw signed transactions (from JSON-RPC
``eth_sendRawTransaction`` and, later, p2p gossip), validates them against the
current head state and keeps them until the block producer pulls them with
:meth:`Mempool.select_for_block`.

It knows nothing about RPC or storage: account state is read through the small
:class:`AccountReader` protocol, which the node implements over the head state.

Concurrency: the pool lives on the single trio thread; no locks are used and no
method awaits except :meth:`Mempool.wait_for_transactions`.

Policy summary (geth-like, see ``MempoolConfig`` for the knobs):

* Only EIP-155 replay-protected legacy txs and typed txs 0x01/0x02/0x04 are
  accepted; blob txs (0x03) are rejected: this chain has no DA layer.
* Signatures: 0 < r < n, 0 < s <= n/2 (EIP-2 low-s) and y parity 0/1 for every
  tx type ("invalid transaction: invalid signature values (r, s, y parity)").
* Fee floor: ``max_fee_per_gas`` must be >= the base fee of the *next* block
  (the ``base_fee`` argument of :meth:`Mempool.add_raw`), and
  ``max_priority_fee_per_gas`` (the gas price for legacy txs) must be >=
  ``MempoolConfig.min_priority_fee`` (default 0 for a devnet). There is no
  separate absolute minimum gas price.
* Intrinsic gas is py-evm's value for the fork (base cost, calldata, creation,
  access list, EIP-7702 authorizations) plus the EIP-3860 initcode word cost
  for creations (Shanghai+, which py-evm charges at execution time rather than
  in ``intrinsic_gas``), and the gas limit must also cover the EIP-7623 calldata
  floor (Prague+).
* Balance: the sender's balance must cover ``gas * max_fee + value`` of the new
  tx *plus* the same cost of all its other pooled txs (geth's overdraft rule).
* Replacement (same sender and nonce) needs both the fee cap and the tip to be
  strictly higher and at least ``price_bump_percent`` % higher.
* When the pool is full, the cheapest *tail* transaction (highest nonce) of
  another sender is evicted if the new tx pays a strictly higher effective tip;
  evicting only tails never opens a nonce gap in someone else's queue.
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Protocol, Sequence

import rlp
import trio
from eth.abc import SignedTransactionAPI, VirtualMachineAPI
from eth.constants import CREATE_CONTRACT_ADDRESS
from eth.vm.forks.shanghai.computation import ShanghaiComputation
from eth.vm.forks.shanghai.constants import INITCODE_WORD_COST, MAX_INITCODE_SIZE

from execution.rules import signature_values_in_range
from execution.senders import recover_sender
from execution.transaction_decoding import DecodedTransaction, decode_transaction
from node.config import MempoolSettings

ACCESS_LIST_TX_TYPE = 0x01
DYNAMIC_FEE_TX_TYPE = 0x02
BLOB_TX_TYPE = 0x03
SET_CODE_TX_TYPE = 0x04
SUPPORTED_TYPED_TX_TYPES = frozenset({ACCESS_LIST_TX_TYPE, DYNAMIC_FEE_TX_TYPE, SET_CODE_TX_TYPE})

TX_GAS = 21000  # smallest possible tx gas; block filling stops below this


class AccountReader(Protocol):
    """Read-only view of the head state used by the mempool.

    ``has_code`` implements EIP-3607 (senders with deployed code are
    rejected). Implementations must return False for accounts whose code is an
    EIP-7702 delegation designator (``0xef0100 || address``): since Prague such
    accounts are still EOAs and may send transactions.
    """

    def get_nonce(self, address: bytes) -> int: ...

    def get_balance(self, address: bytes) -> int: ...

    def has_code(self, address: bytes) -> bool: ...


class MempoolError(ValueError):
    """A transaction was rejected. ``str(err)`` is a user-facing, geth-like message."""


class InvalidTransactionError(MempoolError):
    """The transaction is invalid in itself (undecodable, bad signature, wrong chain, gas
    below intrinsic...), whatever the state: a peer that relays it is misbehaving."""


@dataclass
class MempoolConfig:
    chain_id: int
    block_gas_limit: int = 30_000_000
    max_tx_bytes: int = MempoolSettings.max_tx_bytes
    max_pool_size: int = MempoolSettings.max_pool_size
    max_per_sender: int = MempoolSettings.max_per_sender
    price_bump_percent: int = 10
    min_priority_fee: int = MempoolSettings.min_priority_fee
    # Max distance between a tx nonce and the sender's account nonce.
    max_nonce_gap: int = 64

    @classmethod
    def from_settings(cls, chain_id: int, block_gas_limit: int,
                      settings: MempoolSettings) -> MempoolConfig:
        return cls(
            chain_id=chain_id, block_gas_limit=block_gas_limit,
            max_tx_bytes=settings.max_tx_bytes, max_pool_size=settings.max_pool_size,
            max_per_sender=settings.max_per_sender, min_priority_fee=settings.min_priority_fee,
        )


@dataclass
class PooledTx:
    tx: SignedTransactionAPI
    hash: bytes
    sender: bytes
    raw: bytes
    received_at: float = field(default_factory=time.time)
    seq: int = 0  # insertion order, tie-breaker for equal prices
    # Dev chain: sent by eth_sendTransaction from an impersonated account; the signature
    # is a placeholder and `sender` is the account. Never gossiped.
    impersonated: bool = False
    # The fields the pool's rules read, copied once out of the transaction (each read of
    # a py-evm field goes through several accessors: about 1 us).
    nonce: int = field(init=False)
    gas: int = field(init=False)
    max_fee: int = field(init=False)
    max_priority_fee: int = field(init=False)
    cost: int = field(init=False)  # what the sender can be charged: gas * max_fee + value

    def __post_init__(self) -> None:
        tx = self.tx
        self.nonce = tx.nonce
        self.gas = tx.gas
        self.max_fee = tx.max_fee_per_gas
        self.max_priority_fee = tx.max_priority_fee_per_gas
        self.cost = self.gas * self.max_fee + tx.value

    def effective_tip(self, base_fee: int) -> int:
        """Miner tip per gas at ``base_fee`` (negative if the fee cap is below it)."""
        return min(self.max_priority_fee, self.max_fee - base_fee)


class TailHeap:
    """Every sender's tail (its highest-nonce pooled tx), cheapest first, for eviction.

    The order depends on the base fee (the effective tip), so the heap is made for one
    base fee, from the pool's tails, and made again when the base fee changes or stale
    entries pile up. Tails are pushed as they change and checked when they reach the
    top (a tail that was removed, or is no longer its sender's highest nonce, is dropped
    then). Before, finding the victim scanned every sender: about 3 ms an admission in a
    full pool of 5,000 senders, for every transaction a client or a peer sent into it."""

    def __init__(self, by_sender: dict[bytes, dict[int, PooledTx]]) -> None:
        self.by_sender = by_sender  # the pool's own: sender -> nonce -> tx
        self.base_fee: int | None = None
        self.heap: list[tuple[tuple[int, int, int], int, PooledTx]] = []
        self.pushes = itertools.count()  # tie-break: the same tx may be pushed twice

    def is_tail(self, pooled: PooledTx) -> bool:
        txs = self.by_sender.get(pooled.sender)
        if not txs:
            return False
        return txs.get(pooled.nonce) is pooled and pooled.nonce == max(txs)

    def push(self, pooled: PooledTx) -> None:
        if self.base_fee is None:
            return  # no heap yet: the next `cheapest` makes it from the pool
        if len(self.heap) > 2 * len(self.by_sender) + STALE_TAILS:
            # Mostly stale (the pool churned without being full): drop it, and let the
            # next `cheapest` make it again, so it cannot grow without bound.
            self.base_fee, self.heap = None, []
            return
        heapq.heappush(self.heap, (_eviction_key(pooled, self.base_fee),
                                   next(self.pushes), pooled))

    def _remake(self, base_fee: int) -> None:
        self.base_fee = base_fee
        self.heap = [(_eviction_key(tail, base_fee), next(self.pushes), tail)
                     for tail in (txs[max(txs)] for txs in self.by_sender.values() if txs)]
        heapq.heapify(self.heap)

    def cheapest(self, base_fee: int, exclude_sender: bytes) -> PooledTx | None:
        """The cheapest tail at `base_fee` of a sender other than `exclude_sender`."""
        if base_fee != self.base_fee:
            self._remake(base_fee)
        heap = self.heap
        set_aside = []
        victim = None
        while heap:
            pooled = heap[0][2]
            if not self.is_tail(pooled):
                heapq.heappop(heap)
            elif pooled.sender == exclude_sender:
                set_aside.append(heapq.heappop(heap))
            else:
                victim = pooled
                break
        for entry in set_aside:
            heapq.heappush(heap, entry)
        return victim


STALE_TAILS = 1024  # entries past two per sender before the heap is dropped (made again when needed)


def _eviction_key(pooled: PooledTx, base_fee: int) -> tuple[int, int, int]:
    """Lowest effective tip first, then lowest fee cap, then the newest."""
    return (pooled.effective_tip(base_fee), pooled.max_fee, -pooled.seq)


def executable_run(
    txs: dict[int, PooledTx] | None, reader: AccountReader, sender: bytes
) -> list[PooledTx]:
    """A sender's pooled txs (by nonce) with consecutive nonces from its account nonce."""
    if not txs:
        return []
    nonce = reader.get_nonce(sender)
    run = []
    while nonce in txs:
        run.append(txs[nonce])
        nonce += 1
    return run


def encode_transaction(tx: SignedTransactionAPI) -> bytes:
    """Canonical wire encoding (legacy RLP or typed envelope)."""
    return tx.encode() if tx.type_id is not None else rlp.encode(tx)


@dataclass(frozen=True)
class CheckedTransaction:
    """A transaction that passed every check that needs no state; `tx` carries its
    sender and hash in py-evm's caches, so they survive a trip between processes."""

    raw: bytes
    tx: SignedTransactionAPI
    hash: bytes
    sender: bytes


class StatelessChecks:
    """The checks of a transaction that need only its bytes and the fork: decoding,
    canonical form, chain id, gas, signature values and sender recovery. They are the
    expensive part of admission (decode, re-encode and recovery: about 100 us of a
    transfer's), and depend on no state, so `node.admission` runs them in worker
    processes; a `StatelessChecks` pickles as its config and fork."""

    def __init__(self, config: MempoolConfig, fork_vm_class: type[VirtualMachineAPI]) -> None:
        self.config = config
        self.fork_vm_class = fork_vm_class
        self.builder = fork_vm_class.get_transaction_builder()
        state_class = fork_vm_class.get_state_class()
        # Fork feature detection (so the pool follows the fork it is given).
        self._has_initcode_rules = issubclass(state_class.computation_class, ShanghaiComputation)
        self._executor_class = state_class.transaction_executor_class

    def __reduce__(self):
        return (StatelessChecks, (self.config, self.fork_vm_class))

    def check(self, raw: bytes) -> CheckedTransaction:
        """Decode and check `raw`; raises InvalidTransactionError."""
        raw = bytes(raw)
        decoded = self.decode(raw)
        sender = self.validate(decoded.tx, decoded.signing_message)
        return CheckedTransaction(raw=raw, tx=decoded.tx, hash=decoded.hash, sender=sender)

    def _intrinsic_gas(self, tx: SignedTransactionAPI) -> int:
        gas = tx.intrinsic_gas
        if self._has_initcode_rules and tx.to == CREATE_CONTRACT_ADDRESS:
            gas += INITCODE_WORD_COST * ((len(tx.data) + 31) // 32)
        return gas

    def _floor_data_gas(self, tx: SignedTransactionAPI) -> int:
        # EIP-7623 (Prague): returns 0 on earlier forks.
        return self._executor_class.calc_data_floor_gas(tx, 0, 0)

    def decode(self, raw: bytes) -> DecodedTransaction:
        if len(raw) == 0:
            raise InvalidTransactionError("invalid transaction: empty input")
        if len(raw) > self.config.max_tx_bytes:
            raise InvalidTransactionError(
                f"oversized data: transaction size {len(raw)}, limit {self.config.max_tx_bytes}"
            )
        first = raw[0]
        if first == BLOB_TX_TYPE:
            raise InvalidTransactionError(
                "blob transactions are not supported: this chain has no data availability layer"
            )
        if first < 0x7F and first not in SUPPORTED_TYPED_TX_TYPES:
            raise InvalidTransactionError(f"transaction type not supported: 0x{first:02x}")
        try:
            decoded = decode_transaction(self.builder, raw)
        except Exception as exc:  # rlp / py-evm raise a variety of types
            raise InvalidTransactionError(f"invalid transaction: rlp decoding failed ({exc})") from None
        try:
            canonical = encode_transaction(decoded.tx) == raw
        except Exception:
            canonical = False
        if not canonical:
            raise InvalidTransactionError("invalid transaction: non-canonical encoding")
        return decoded

    def validate(self, tx: SignedTransactionAPI, signing_message: Optional[bytes] = None) -> bytes:
        """Checks that do not need account state. Returns the sender. `signing_message`:
        what the sender signed, when decoding already has it (`DecodedTransaction`)."""
        cfg = self.config
        if tx.chain_id is None:
            raise InvalidTransactionError("only replay-protected (EIP-155) transactions allowed")
        if tx.chain_id != cfg.chain_id:
            raise InvalidTransactionError(
                f"invalid chain id: transaction has {tx.chain_id}, this chain is {cfg.chain_id}"
            )
        if tx.gas > cfg.block_gas_limit:
            raise InvalidTransactionError(
                f"exceeds block gas limit: tx gas {tx.gas}, block gas limit {cfg.block_gas_limit}"
            )
        if tx.to == CREATE_CONTRACT_ADDRESS and self._has_initcode_rules and len(tx.data) > MAX_INITCODE_SIZE:
            raise InvalidTransactionError(
                f"max initcode size exceeded: code size {len(tx.data)}, limit {MAX_INITCODE_SIZE}"
            )
        try:
            intrinsic = self._intrinsic_gas(tx)
            floor = self._floor_data_gas(tx)
        except Exception as exc:
            raise InvalidTransactionError(f"invalid transaction: {exc}") from None
        if tx.gas < intrinsic:
            raise InvalidTransactionError(f"intrinsic gas too low: have {tx.gas}, want {intrinsic}")
        if tx.gas < floor:
            raise InvalidTransactionError(
                f"insufficient gas for floor data gas cost: have {tx.gas}, want {floor}"
            )
        try:
            tx.validate()  # field ranges, low-s, signature validity, 7702 auth list
        except Exception as exc:
            raise InvalidTransactionError(f"invalid transaction: {exc}") from None
        # py-evm's typed-tx validate() checks neither low-s nor r, s != 0 (only legacy
        # txs get EIP-2's check): enforce them for every type, as geth does.
        if not signature_values_in_range(tx):
            raise InvalidTransactionError("invalid transaction: invalid signature values (r, s, y parity)")
        try:
            sender = bytes(recover_sender(tx, signing_message))
        except Exception as exc:
            raise InvalidTransactionError(f"invalid sender: {exc}") from None
        if tx.max_priority_fee_per_gas > tx.max_fee_per_gas:
            raise InvalidTransactionError(
                "max priority fee per gas higher than max fee per gas: "
                f"tip {tx.max_priority_fee_per_gas}, fee cap {tx.max_fee_per_gas}"
            )
        return sender


class Mempool:
    def __init__(
        self, config: MempoolConfig, reader: AccountReader, fork_vm_class: type[VirtualMachineAPI]
    ) -> None:
        self.config = config
        self.reader = reader
        self.fork_vm_class = fork_vm_class
        self.checks = StatelessChecks(config, fork_vm_class)

        self._by_hash: dict[bytes, PooledTx] = {}
        self._by_sender: dict[bytes, dict[int, PooledTx]] = {}
        self._cost_by_sender: dict[bytes, int] = {}  # the sum of its pooled txs' cost
        self._tails = TailHeap(self._by_sender)  # eviction candidates when the pool is full
        self._seq = itertools.count()
        # Set (and replaced by a fresh one) every time a tx enters the pool.
        self._new_tx_event = trio.Event()

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._by_hash

    def __iter__(self) -> Iterator[PooledTx]:
        return iter(list(self._by_hash.values()))

    def get(self, tx_hash: bytes) -> PooledTx | None:
        return self._by_hash.get(tx_hash)

    def senders_of(self, transactions: Sequence[SignedTransactionAPI]) -> list[bytes | None]:
        """The sender this pool recovered for each of `transactions` (the same hash means
        the same signature, hence the same sender), None for one it does not hold: a
        proposal decoded from another validator's bytes need not be recovered again."""
        by_hash = self._by_hash
        found = []
        for tx in transactions:
            pooled = by_hash.get(bytes(tx.hash))
            found.append(pooled.sender if pooled is not None else None)
        return found

    def get_by_sender_nonce(self, sender: bytes, nonce: int) -> PooledTx | None:
        return self._by_sender.get(sender, {}).get(nonce)

    def senders(self) -> list[bytes]:
        return list(self._by_sender)

    def _executable_run(self, sender: bytes) -> list[PooledTx]:
        return executable_run(self._by_sender.get(sender), self.reader, sender)

    def pending_nonce(self, address: bytes) -> int:
        """Account nonce + consecutive pooled txs (eth_getTransactionCount "pending")."""
        return self.reader.get_nonce(address) + len(self._executable_run(address))

    def pending_transactions(self) -> list[PooledTx]:
        """Executable txs (consecutive nonces from the account nonce), by sender then nonce."""
        out: list[PooledTx] = []
        for sender in self._by_sender:
            out.extend(self._executable_run(sender))
        return out

    def queued_transactions(self) -> list[PooledTx]:
        """Pooled txs that are not executable yet (behind a nonce gap)."""
        pending = {p.hash for p in self.pending_transactions()}
        return [
            p
            for sender_txs in self._by_sender.values()
            for _, p in sorted(sender_txs.items())
            if p.hash not in pending
        ]

    def has_executable(self) -> bool:
        return any(
            self.reader.get_nonce(sender) in txs for sender, txs in self._by_sender.items()
        )

    # ---------------------------------------------------------- notification

    @property
    def new_tx_event(self) -> trio.Event:
        """The current event; it is set when the next tx enters the pool (or on
        :meth:`on_new_head`).

        A fresh event replaces it after each add, so always re-read this
        property before awaiting.
        """
        return self._new_tx_event

    async def wait_for_transactions(self) -> None:
        """Return once the pool holds at least one executable tx.

        Returns immediately if one is already there; otherwise sleeps until a
        tx is added (no polling). Executability is by nonce only: a tx whose fee
        cap is below a risen base fee still counts.
        """
        while not self.has_executable():
            await self._new_tx_event.wait()

    def _notify(self) -> None:
        event, self._new_tx_event = self._new_tx_event, trio.Event()
        event.set()

    # ------------------------------------------------------------- pool rules

    def _is_replacement_ok(self, old: PooledTx, new_tx: SignedTransactionAPI) -> bool:
        bump = 100 + self.config.price_bump_percent
        old_cap, old_tip = old.max_fee, old.max_priority_fee
        new_cap, new_tip = new_tx.max_fee_per_gas, new_tx.max_priority_fee_per_gas
        if new_cap <= old_cap or new_tip <= old_tip:
            return False
        return new_cap * 100 >= old_cap * bump and new_tip * 100 >= old_tip * bump

    def _pick_victim(self, exclude_sender: bytes, base_fee: int) -> PooledTx | None:
        """Cheapest tail (highest-nonce) tx among senders other than ``exclude_sender``:
        lowest effective tip first, then lowest fee cap, then the newest."""
        return self._tails.cheapest(base_fee, exclude_sender)

    # ------------------------------------------------------------- mutation

    def add_raw(self, raw: bytes, base_fee: int) -> PooledTx:
        """Validate and add a raw signed tx. ``base_fee`` is the next block's base fee.

        Raises :class:`MempoolError` on rejection; the pool is then unchanged.
        """
        raw = bytes(raw)
        decoded = self.checks.decode(raw)
        if decoded.hash in self._by_hash:
            raise MempoolError(f"already known: 0x{decoded.hash.hex()}")
        sender = self.checks.validate(decoded.tx, decoded.signing_message)
        return self._admit(decoded.tx, decoded.hash, sender, raw, base_fee, impersonated=False)

    def add_checked(self, checked: CheckedTransaction, base_fee: int) -> PooledTx:
        """Add a transaction whose stateless checks passed elsewhere (`node.admission`):
        only the pool's rules and the state checks run here. Raises MempoolError."""
        if checked.hash in self._by_hash:
            raise MempoolError(f"already known: 0x{checked.hash.hex()}")
        return self._admit(
            checked.tx, checked.hash, checked.sender, checked.raw, base_fee, impersonated=False
        )

    def add_impersonated(self, tx: SignedTransactionAPI, sender: bytes, base_fee: int) -> PooledTx:
        """Dev chain: add an unsigned transaction from an impersonated `sender` (its
        signature fields are placeholders; `tx.sender` is set to `sender`). The same
        checks as `add_raw` but the signature's. Raises MempoolError."""
        tx.__dict__["sender"] = sender  # py-evm's cached tx.sender
        tx_hash = bytes(tx.hash)
        if tx_hash in self._by_hash:
            raise MempoolError(f"already known: 0x{tx_hash.hex()}")
        self.checks.validate(tx)
        return self._admit(tx, tx_hash, sender, encode_transaction(tx), base_fee, impersonated=True)

    def impersonated_senders(self, transactions: Sequence[SignedTransactionAPI]) -> dict[bytes, bytes]:
        """tx hash -> sender for those of `transactions` that came in impersonated."""
        found = {}
        for tx in transactions:
            pooled = self._by_hash.get(bytes(tx.hash))
            if pooled is not None and pooled.impersonated:
                found[pooled.hash] = pooled.sender
        return found

    def _admit(
        self, tx: SignedTransactionAPI, tx_hash: bytes, sender: bytes, raw: bytes,
        base_fee: int, impersonated: bool,
    ) -> PooledTx:
        cfg = self.config
        if tx.max_fee_per_gas < base_fee:
            raise MempoolError(
                "max fee per gas less than block base fee: "
                f"maxFeePerGas {tx.max_fee_per_gas}, baseFee {base_fee}"
            )
        if tx.max_priority_fee_per_gas < cfg.min_priority_fee:
            raise MempoolError(
                "transaction underpriced: "
                f"tip {tx.max_priority_fee_per_gas}, minimum tip {cfg.min_priority_fee}"
            )

        # --- state-dependent checks
        if self.reader.has_code(sender):
            raise MempoolError(f"sender not an eoa: address 0x{sender.hex()} has code (EIP-3607)")
        account_nonce = self.reader.get_nonce(sender)
        if tx.nonce < account_nonce:
            raise MempoolError(f"nonce too low: next nonce is {account_nonce}, tx nonce {tx.nonce}")
        if tx.nonce - account_nonce > cfg.max_nonce_gap:
            raise MempoolError(
                f"nonce too high: next nonce is {account_nonce}, tx nonce {tx.nonce}, "
                f"at most {cfg.max_nonce_gap} ahead allowed"
            )

        sender_txs = self._by_sender.get(sender, {})
        old = sender_txs.get(tx.nonce)
        cost = tx.gas * tx.max_fee_per_gas + tx.value
        balance = self.reader.get_balance(sender)
        if balance < cost:
            raise MempoolError(
                f"insufficient funds for gas * price + value: balance {balance}, tx cost {cost}"
            )
        others_cost = self._cost_by_sender.get(sender, 0) - (old.cost if old is not None else 0)
        if balance < cost + others_cost:
            raise MempoolError(
                f"insufficient funds for gas * price + value: balance {balance}, tx cost {cost}, "
                f"cost of the sender's other pooled transactions {others_cost}"
            )

        victim: PooledTx | None = None
        if old is not None:
            if not self._is_replacement_ok(old, tx):
                raise MempoolError(
                    "replacement transaction underpriced: both max fee per gas and max priority "
                    f"fee per gas must be at least {cfg.price_bump_percent}% higher than the "
                    f"pooled transaction's ({old.max_fee}, {old.max_priority_fee})"
                )
        else:
            if len(sender_txs) >= cfg.max_per_sender:
                raise MempoolError(
                    f"too many pooled transactions from sender: limit {cfg.max_per_sender}"
                )
            if len(self._by_hash) >= cfg.max_pool_size:
                victim = self._pick_victim(sender, base_fee)
                new_key = (min(tx.max_priority_fee_per_gas, tx.max_fee_per_gas - base_fee),
                           tx.max_fee_per_gas)
                if victim is None or new_key <= (victim.effective_tip(base_fee), victim.max_fee):
                    raise MempoolError("txpool is full")

        # --- all checks passed: mutate
        pooled = PooledTx(
            tx=tx, hash=tx_hash, sender=sender, raw=raw, seq=next(self._seq),
            impersonated=impersonated,
        )
        if old is not None:
            self._remove(old)
        if victim is not None:
            self._remove(victim)
        sender_txs = self._by_sender.setdefault(sender, {})
        sender_txs[tx.nonce] = pooled
        if tx.nonce == max(sender_txs):
            self._tails.push(pooled)
        self._cost_by_sender[sender] = self._cost_by_sender.get(sender, 0) + pooled.cost
        self._by_hash[tx_hash] = pooled
        self._notify()
        return pooled

    def _remove(self, pooled: PooledTx) -> None:
        self._by_hash.pop(pooled.hash, None)
        txs = self._by_sender.get(pooled.sender)
        if txs is not None and txs.get(pooled.nonce) is pooled:
            del txs[pooled.nonce]
            if txs:
                self._cost_by_sender[pooled.sender] -= pooled.cost
                if pooled.nonce > max(txs):  # the tail left: the one below it is the tail
                    self._tails.push(txs[max(txs)])
            else:
                del self._by_sender[pooled.sender]
                del self._cost_by_sender[pooled.sender]

    def remove(self, tx_hash: bytes) -> PooledTx | None:
        pooled = self._by_hash.get(tx_hash)
        if pooled is not None:
            self._remove(pooled)
        return pooled

    def _prune_stale_nonces(self, sender: bytes) -> None:
        txs = self._by_sender.get(sender)
        if not txs:
            return
        account_nonce = self.reader.get_nonce(sender)
        for nonce in [n for n in txs if n < account_nonce]:
            self._remove(txs[nonce])

    def remove_committed(self, txs: Iterable[SignedTransactionAPI]) -> None:
        """Drop txs included in a committed block, plus any of their senders'
        pooled txs whose nonce is now below the account nonce (the reader must
        already reflect the new head)."""
        senders = set()
        for tx in txs:
            self.remove(bytes(tx.hash))
            try:
                senders.add(bytes(tx.sender))
            except Exception:
                continue
        for sender in senders:
            self._prune_stale_nonces(sender)

    def on_new_head(self, reader: AccountReader | None = None) -> None:
        """Re-validate against a new head state: drop txs whose nonce is below the
        account nonce, txs of senders that now have code (EIP-3607), and txs whose own
        cost exceeds the sender's balance. Cumulative affordability is re-checked lazily
        in :meth:`select_for_block`."""
        if reader is not None:
            self.reader = reader
        for sender in list(self._by_sender):
            self._prune_stale_nonces(sender)
            txs = self._by_sender.get(sender)
            if not txs:
                continue
            if self.reader.has_code(sender):
                for p in list(txs.values()):
                    self._remove(p)
                continue
            balance = self.reader.get_balance(sender)
            for p in [p for p in txs.values() if p.cost > balance]:
                self._remove(p)
        # A new head can make queued txs executable (e.g. a gap filled by a tx
        # that reached the chain through another node): wake waiters to re-check.
        self._notify()

    # ------------------------------------------------------------ selection

    def select_for_block(
        self, base_fee: int, gas_limit: int, max_txs: int | None = None
    ) -> list[SignedTransactionAPI]:
        """Pick txs for the next block (see `BlockSelection.run`). Does not modify the pool."""
        return self.selection(base_fee, gas_limit, max_txs)()

    def selection(
        self, base_fee: int, gas_limit: int, max_txs: int | None = None
    ) -> BlockSelection:
        """The next block's pick over a snapshot of the pool taken now, to run in a worker
        thread: a pool of 10,000 transactions takes about 45 ms to pick from, which
        would hold the event loop (and every RPC answer) that long."""
        return BlockSelection(
            {sender: dict(txs) for sender, txs in self._by_sender.items()},
            self.reader, base_fee, gas_limit, max_txs,
        )


@dataclass(frozen=True)
class BlockSelection:
    """A pick of transactions for a block from a snapshot of the pool (the pooled
    transactions are never changed in place, so the snapshot needs no lock)."""

    by_sender: dict[bytes, dict[int, PooledTx]]
    reader: AccountReader
    base_fee: int
    gas_limit: int
    max_txs: int | None

    def __call__(self) -> list[SignedTransactionAPI]:
        return self.run()

    def run(self) -> list[SignedTransactionAPI]:
        """Pick txs for the next block.

        Per sender: consecutive nonces from the account nonce, as long as the
        balance covers the cumulative ``gas * max_fee + value``. Across senders:
        highest effective tip first (ties: earliest received), always taking a
        sender's lowest remaining nonce next (heap merge, as geth). A sender whose
        next tx has a fee cap below ``base_fee`` or does not fit in the remaining
        gas is skipped for the rest of the block (its later nonces cannot go
        first). Gas accounting uses the tx gas limit. Does not modify the pool.
        """
        base_fee, gas_limit, max_txs = self.base_fee, self.gas_limit, self.max_txs
        runs: dict[bytes, list[PooledTx]] = {}
        for sender, txs in self.by_sender.items():
            run = executable_run(txs, self.reader, sender)
            if not run:
                continue
            balance = self.reader.get_balance(sender)
            spent = 0
            affordable = []
            for p in run:
                spent += p.cost
                if spent > balance:
                    break
                affordable.append(p)
            if affordable:
                runs[sender] = affordable

        heap: list[tuple[int, int, bytes, int]] = []
        for sender, run in runs.items():
            head = run[0]
            heap.append((-head.effective_tip(base_fee), head.seq, sender, 0))
        heapq.heapify(heap)

        selected: list[SignedTransactionAPI] = []
        gas_left = gas_limit
        while heap:
            if max_txs is not None and len(selected) >= max_txs:
                break
            if gas_left < TX_GAS:
                break
            _, _, sender, idx = heapq.heappop(heap)
            p = runs[sender][idx]
            if p.max_fee < base_fee or p.gas > gas_left:
                continue  # drop this sender for this block
            selected.append(p.tx)
            gas_left -= p.gas
            if idx + 1 < len(runs[sender]):
                nxt = runs[sender][idx + 1]
                heapq.heappush(heap, (-nxt.effective_tip(base_fee), nxt.seq, sender, idx + 1))
        return selected
