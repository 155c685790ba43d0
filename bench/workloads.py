"""Block builders for `laminar bench`: signed transactions over a synthetic pre-state.

Each builder returns a `Workload`: a block environment, the block's transactions as
signed, encoded bytes (decoded afresh for every run, so no executor profits from a
sender another one already recovered: py-evm caches it on the transaction object), and
an in-memory pre-state (trie nodes and code by hash, plus the root) in which every
sender is funded. Contracts (ERC20, Pool, Vault) are put straight into the pre-state with
their runtime code and storage, using Vyper 0.4's storage layout, rather than deployed.

Everything derives from `seed`: keys, recipients, amounts and order. Signatures are
deterministic (RFC 6979), so a builder called twice with the same arguments returns the
same bytes.

All transactions are EIP-1559 (type 2), chain id 31337, every sender distinct and at
nonce 0: the only dependencies between transactions are the ones a workload means to
have (the AMM's reserves, the mixed workload's hot accounts) and the block's coinbase,
which every transaction pays its priority fee to (`--tip-gwei 0` removes that).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from eth.abc import SignedTransactionAPI
from eth.db.account import AccountDB
from eth_keys import keys
from eth_utils import keccak

from bench import DEFAULT_HOT_SHARE, DEFAULT_SIZES
from bench.contracts import CompiledContract, compiled, mapping_slot
from execution.executor import BlockEnv, BlockInput, StateView
from execution.forks import LAMINAR_VM
from execution.overlay import OverlayDB

CHAIN_ID = 31337
BASE_FEE = 1_000_000_000  # 1 gwei, the dev genesis default
MAX_FEE = 3 * BASE_FEE
DEFAULT_TIP = 1_000_000_000
FUNDING = 100 * 10**18  # every sender's ETH
TOKEN_BALANCE = 10**24  # every ERC20 holder's tokens
POOL_RESERVE = 10**24  # each side of the AMM pool
TRADER_BALANCE = 10**21  # each trader's deposit of each pool token
BLOCK_NUMBER = 1
BLOCK_TIMESTAMP = 1_750_000_000
MIN_BLOCK_GAS_LIMIT = 30_000_000

GAS_TRANSFER = 21_000
GAS_VAULT = 80_000
GAS_ERC20 = 90_000
GAS_SWAP = 150_000

SYNTHETIC = tuple(DEFAULT_SIZES)

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_TRANSFER_SELECTOR = keccak(b"transfer(address,uint256)")[:4]
_SWAP_SELECTOR = keccak(b"swap(uint256,bool)")[:4]

COINBASE = keccak(b"laminar-bench coinbase")[12:]
PARENT_HASH = keccak(b"laminar-bench parent")
TOKEN_ADDRESS = keccak(b"laminar-bench ERC20")[12:]
POOL_ADDRESS = keccak(b"laminar-bench Pool")[12:]
VAULT_ADDRESS = keccak(b"laminar-bench Vault")[12:]


@dataclass
class Workload:
    """A block to benchmark: environment, signed transactions, pre-state."""

    name: str
    description: str
    env: BlockEnv
    encoded_transactions: tuple[bytes, ...]
    nodes: dict[bytes, bytes]
    state_root: bytes
    # What the block is expected to do, checked on the sequential result: every receipt
    # succeeds and every transaction burns at least this much gas.
    min_gas_per_tx: int = GAS_TRANSFER
    params: dict = field(default_factory=dict)

    @property
    def txs(self) -> int:
        return len(self.encoded_transactions)

    def decode_transactions(self) -> tuple[SignedTransactionAPI, ...]:
        builder = self.env.vm_class.get_transaction_builder()
        return tuple(builder.decode(raw) for raw in self.encoded_transactions)

    def block(self) -> BlockInput:
        """A fresh `BlockInput` (newly decoded transactions, no cached senders)."""
        return BlockInput(env=self.env, transactions=self.decode_transactions())

    def pre_state(self) -> StateView:
        return StateView(nodes=self.nodes, state_root=self.state_root)


# ----------------------------------------------------------------------------- helpers


class _Keys:
    """Deterministic private keys and fresh addresses for one workload and seed."""

    def __init__(self, seed: int, workload: str) -> None:
        self._prefix = b"laminar-bench|" + str(seed).encode() + b"|" + workload.encode() + b"|"

    def private_key(self, role: str, index: int) -> keys.PrivateKey:
        counter = 0
        while True:
            material = keccak(
                self._prefix + role.encode() + b"|" + str(index).encode() + b"|" + bytes([counter])
            )
            if 0 < int.from_bytes(material, "big") < _SECP256K1_N:
                return keys.PrivateKey(material)
            counter += 1

    def address(self, role: str, index: int) -> bytes:
        """A fresh address nobody holds a key for (a recipient)."""
        return keccak(self._prefix + b"addr|" + role.encode() + b"|" + str(index).encode())[12:]


@dataclass
class _Account:
    balance: int = 0
    code: bytes = b""
    storage: dict[int, int] = field(default_factory=dict)


class _StateBuilder:
    def __init__(self) -> None:
        self.accounts: dict[bytes, _Account] = {}

    def account(self, address: bytes) -> _Account:
        return self.accounts.setdefault(address, _Account())

    def fund(self, address: bytes, wei: int = FUNDING) -> None:
        self.account(address).balance += wei

    def contract(self, address: bytes, contract: CompiledContract) -> _Account:
        account = self.account(address)
        account.code = contract.runtime
        return account

    def build(self) -> tuple[dict[bytes, bytes], bytes]:
        db = OverlayDB({})
        state = AccountDB(db)
        for address in sorted(self.accounts):
            account = self.accounts[address]
            state.touch_account(address)
            if account.balance:
                state.set_balance(address, account.balance)
            if account.code:
                state.set_code(address, account.code)
                state.set_nonce(address, 1)  # EIP-161: contracts start at nonce 1
            for slot, value in sorted(account.storage.items()):
                if value:
                    state.set_storage(address, slot, value)
        state.persist()
        return dict(db.pending()), state.state_root


def _u256(value: int) -> bytes:
    return value.to_bytes(32, "big")


def erc20_transfer_data(to: bytes, amount: int) -> bytes:
    return _TRANSFER_SELECTOR + _u256(int.from_bytes(to, "big")) + _u256(amount)


def swap_data(amount_in: int, zero_for_one: bool) -> bytes:
    return _SWAP_SELECTOR + _u256(amount_in) + _u256(int(zero_for_one))


def _sign(
    key: keys.PrivateKey, to: bytes, value: int, data: bytes, gas: int, tip: int, nonce: int = 0
) -> bytes:
    builder = LAMINAR_VM.get_transaction_builder()
    unsigned = builder.new_unsigned_dynamic_fee_transaction(
        chain_id=CHAIN_ID,
        nonce=nonce,
        max_priority_fee_per_gas=tip,
        max_fee_per_gas=max(MAX_FEE, BASE_FEE + tip),
        gas=gas,
        to=to,
        value=value,
        data=data,
        access_list=(),
    )
    return unsigned.as_signed_transaction(key, chain_id=CHAIN_ID).encode()


def _env(total_gas: int) -> BlockEnv:
    return BlockEnv(
        vm_class=LAMINAR_VM,
        chain_id=CHAIN_ID,
        number=BLOCK_NUMBER,
        timestamp=BLOCK_TIMESTAMP,
        coinbase=COINBASE,
        gas_limit=max(MIN_BLOCK_GAS_LIMIT, total_gas + 1_000_000),
        parent_hash=PARENT_HASH,
        mix_hash=keccak(b"laminar-bench prevrandao"),
        base_fee_per_gas=BASE_FEE,
        excess_blob_gas=0,
        parent_beacon_block_root=keccak(b"laminar-bench beacon root"),
    )


Progress = Optional[Callable[[int], None]]  # called with the number of txs just signed


def _finish(
    name: str,
    description: str,
    state: _StateBuilder,
    signed: list[tuple[bytes, int]],
    min_gas: int,
    params: dict,
) -> Workload:
    nodes, root = state.build()
    return Workload(
        name=name,
        description=description,
        env=_env(sum(gas for _, gas in signed)),
        encoded_transactions=tuple(raw for raw, _ in signed),
        nodes=nodes,
        state_root=root,
        min_gas_per_tx=min_gas,
        params=params,
    )


def _tick(progress: Progress) -> None:
    if progress is not None:
        progress(1)


# ---------------------------------------------------------------------------- builders


def build_transfers(
    txs: int = DEFAULT_SIZES["transfers"], seed: int = 1, tip: int = DEFAULT_TIP,
    progress: Progress = None, senders: int | None = None, **_: object,
) -> Workload:
    """`txs` ETH transfers to fresh recipients: each from its own funded sender, or with
    `senders`, from that many senders in round robin, each sending its next nonce (the
    order a node's mempool gives a block when a few accounts send many transactions)."""
    keyring = _Keys(seed, "transfers")
    rng = random.Random(f"{seed}:transfers")
    state = _StateBuilder()
    accounts = txs if senders is None else min(senders, txs)
    keys_ = [keyring.private_key("sender", i) for i in range(accounts)]
    per_sender = -(-txs // accounts)  # transactions each sender sends
    for key in keys_:
        state.fund(key.public_key.to_canonical_address(), FUNDING * per_sender)
    signed = []
    for i in range(txs):
        key = keys_[i % accounts]
        value = rng.randrange(10**15, 10**18)
        raw = _sign(
            key, keyring.address("recipient", i), value, b"", GAS_TRANSFER, tip, nonce=i // accounts
        )
        signed.append((raw, GAS_TRANSFER))
        _tick(progress)
    if senders is None:
        description = f"{txs} ETH transfers between distinct accounts"
        params: dict = {"seed": seed}
    else:
        description = f"{txs} ETH transfers from {accounts} senders in round robin"
        params = {"seed": seed, "senders": accounts}
    return _finish("transfers", description, state, signed, GAS_TRANSFER, params)


def _token(state: _StateBuilder, cache_dir) -> tuple[CompiledContract, _Account]:
    erc20 = compiled("ERC20", cache_dir)
    return erc20, state.contract(TOKEN_ADDRESS, erc20)


def _give_tokens(erc20: CompiledContract, token: _Account, holder: bytes, amount: int) -> None:
    slot = mapping_slot(erc20.slot("balanceOf"), holder)
    token.storage[slot] = token.storage.get(slot, 0) + amount
    total = erc20.slot("totalSupply")
    token.storage[total] = token.storage.get(total, 0) + amount


def build_erc20(
    txs: int = DEFAULT_SIZES["erc20"], seed: int = 1, tip: int = DEFAULT_TIP,
    progress: Progress = None, cache_dir=None, **_: object,
) -> Workload:
    """`txs` transfers of one ERC20 token, each from its own holder to a fresh address."""
    keyring = _Keys(seed, "erc20")
    rng = random.Random(f"{seed}:erc20")
    state = _StateBuilder()
    erc20, token = _token(state, cache_dir)
    signed = []
    for i in range(txs):
        key = keyring.private_key("holder", i)
        holder = key.public_key.to_canonical_address()
        state.fund(holder)
        _give_tokens(erc20, token, holder, TOKEN_BALANCE)
        data = erc20_transfer_data(keyring.address("recipient", i), rng.randrange(1, 10**21))
        signed.append((_sign(key, TOKEN_ADDRESS, 0, data, GAS_ERC20, tip), GAS_ERC20))
        _tick(progress)
    return _finish(
        "erc20", f"{txs} ERC20 transfers between distinct holders", state, signed,
        GAS_TRANSFER + 1, {"seed": seed},
    )


def _pool(state: _StateBuilder, cache_dir) -> tuple[CompiledContract, _Account]:
    pool_code = compiled("Pool", cache_dir)
    pool = state.contract(POOL_ADDRESS, pool_code)
    pool.storage[pool_code.slot("reserve0")] = POOL_RESERVE
    pool.storage[pool_code.slot("reserve1")] = POOL_RESERVE
    return pool_code, pool


def _trader(pool_code: CompiledContract, pool: _Account, trader: bytes) -> None:
    pool.storage[mapping_slot(pool_code.slot("balance0"), trader)] = TRADER_BALANCE
    pool.storage[mapping_slot(pool_code.slot("balance1"), trader)] = TRADER_BALANCE


def _swap_tx(rng: random.Random, key: keys.PrivateKey, tip: int) -> tuple[bytes, int]:
    data = swap_data(rng.randrange(10**15, 10**18), rng.random() < 0.5)
    return _sign(key, POOL_ADDRESS, 0, data, GAS_SWAP, tip), GAS_SWAP


def build_amm(
    txs: int = DEFAULT_SIZES["amm"], seed: int = 1, tip: int = DEFAULT_TIP,
    progress: Progress = None, cache_dir=None, **_: object,
) -> Workload:
    """`txs` swaps on one constant-product pool: each reads the reserves the last wrote."""
    keyring = _Keys(seed, "amm")
    rng = random.Random(f"{seed}:amm")
    state = _StateBuilder()
    pool_code, pool = _pool(state, cache_dir)
    signed = []
    for i in range(txs):
        key = keyring.private_key("trader", i)
        trader = key.public_key.to_canonical_address()
        state.fund(trader)
        _trader(pool_code, pool, trader)
        signed.append(_swap_tx(rng, key, tip))
        _tick(progress)
    return _finish(
        "amm", f"{txs} swaps on one constant-product pool (a dependency chain)", state,
        signed, GAS_TRANSFER + 1, {"seed": seed},
    )


def build_mixed(
    txs: int = DEFAULT_SIZES["mixed"], seed: int = 1, tip: int = DEFAULT_TIP,
    hot_share: float = DEFAULT_HOT_SHARE, progress: Progress = None, cache_dir=None,
    **_: object,
) -> Workload:
    """A blend with `round(hot_share * txs)` transactions on hot state.

    Cold transactions (independent of each other): ETH transfers and ERC20 transfers
    (half each, at random) from distinct senders to fresh addresses. Hot transactions
    (at random positions) take turns between three kinds that all conflict within
    their kind: an ETH transfer to the Vault contract (its code counts deposits in
    storage), an ERC20 transfer to one hot holder, and a swap on the AMM pool.
    """
    if not 0.0 <= hot_share <= 1.0:
        raise ValueError(f"hot share must be between 0 and 1, got {hot_share}")
    keyring = _Keys(seed, "mixed")
    rng = random.Random(f"{seed}:mixed")
    state = _StateBuilder()
    erc20, token = _token(state, cache_dir)
    pool_code, pool = _pool(state, cache_dir)
    state.contract(VAULT_ADDRESS, compiled("Vault", cache_dir))
    hot_holder = keyring.address("hot-holder", 0)
    _give_tokens(erc20, token, hot_holder, TOKEN_BALANCE)
    n_hot = round(hot_share * txs)
    hot = set(rng.sample(range(txs), n_hot))
    counts = {"eth": 0, "erc20": 0, "vault": 0, "erc20_hot": 0, "swap": 0}
    signed = []
    hot_turn = 0
    for i in range(txs):
        key = keyring.private_key("sender", i)
        sender = key.public_key.to_canonical_address()
        state.fund(sender)
        if i in hot:
            kind = ("vault", "erc20_hot", "swap")[hot_turn % 3]
            hot_turn += 1
        else:
            kind = "eth" if rng.random() < 0.5 else "erc20"
        counts[kind] += 1
        if kind == "eth":
            value = rng.randrange(10**15, 10**18)
            tx = (_sign(key, keyring.address("recipient", i), value, b"", GAS_TRANSFER, tip), GAS_TRANSFER)
        elif kind == "vault":
            value = rng.randrange(10**15, 10**18)
            tx = (_sign(key, VAULT_ADDRESS, value, b"", GAS_VAULT, tip), GAS_VAULT)
        elif kind in ("erc20", "erc20_hot"):
            _give_tokens(erc20, token, sender, TOKEN_BALANCE)
            to = hot_holder if kind == "erc20_hot" else keyring.address("recipient", i)
            data = erc20_transfer_data(to, rng.randrange(1, 10**21))
            tx = (_sign(key, TOKEN_ADDRESS, 0, data, GAS_ERC20, tip), GAS_ERC20)
        else:
            _trader(pool_code, pool, sender)
            tx = _swap_tx(rng, key, tip)
        signed.append(tx)
        _tick(progress)
    return _finish(
        "mixed",
        f"{txs} mixed transactions, {n_hot} on hot state (hot share {hot_share:g})",
        state, signed, GAS_TRANSFER,
        {"seed": seed, "hot_share": hot_share, "hot_txs": n_hot, "kinds": counts},
    )


BUILDERS: dict[str, Callable[..., Workload]] = {
    "transfers": build_transfers,
    "erc20": build_erc20,
    "amm": build_amm,
    "mixed": build_mixed,
}


def build(name: str, txs: int, seed: int = 1, **options: object) -> Workload:
    """Build the synthetic workload `name` with `txs` transactions."""
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise ValueError(
            f"unknown synthetic workload {name!r} (known: {', '.join(BUILDERS)})"
        ) from None
    return builder(txs=txs, seed=seed, **options)


def contract_names() -> Iterable[str]:
    return ("ERC20", "Pool", "Vault")
