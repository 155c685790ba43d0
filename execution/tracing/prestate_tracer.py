"""geth's prestateTracer: the accounts a transaction touched, as they were before it (and,
in diffMode, what it changed).

Touched: the sender, the recipient (or the created contract), the block's coinbase,
every frame's accounts, the targets of BALANCE / EXTCODESIZE / EXTCODECOPY /
EXTCODEHASH and SELFDESTRUCT, and the storage slots SLOAD and SSTORE named. Values are
read at the end from two states: the one just before the transaction (the replay
persists the block's state up to it, so its root can be read) and the one after.

Output as geth's: `{address: {balance: hex, nonce: number, code: hex, storage: {slot:
value}}}`, zero nonce, empty code and empty storage left out, accounts that did not exist
(or were empty) before left out of the pre-state. diffMode: `{pre, post}` with only the
accounts the transaction changed; `pre` keeps only the slots that changed, `post` only
the fields and slots that changed (a slot set to zero is left out of `post`), and an
account that is gone afterwards is in `pre` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol

from eth.abc import ComputationAPI, MessageAPI, SignedTransactionAPI, StateAPI
from eth.db.account import AccountDB

from execution.tracing.hooks import Tracer, stack_ints

SLOAD = 0x54
SSTORE = 0x55
ADDRESS_OPCODES = (0x31, 0x3B, 0x3C, 0x3F)  # BALANCE, EXTCODESIZE, EXTCODECOPY, EXTCODEHASH
ADDRESS_MODULUS = 2**160
WORD = 32


@dataclass(frozen=True)
class PrestateTracerConfig:
    diff_mode: bool = False
    disable_code: bool = False
    disable_storage: bool = False


class AccountReader(Protocol):
    def get_balance(self, address: bytes) -> int: ...

    def get_nonce(self, address: bytes) -> int: ...

    def get_code(self, address: bytes) -> bytes: ...

    def get_storage(self, address: bytes, slot: int) -> int: ...

    def account_exists(self, address: bytes) -> bool: ...


def _word(value: int) -> str:
    return "0x" + value.to_bytes(WORD, "big").hex()


class PrestateTracer(Tracer):
    """Made with the state just before the transaction (see `replay.MakeTracer`)."""

    def __init__(
        self, config: PrestateTracerConfig, state: StateAPI, tx: SignedTransactionAPI,
    ) -> None:
        self.config = config
        self.touched: dict[bytes, set[int]] = {}
        self.output: dict[str, Any] = {}
        # Persisting between transactions changes nothing of the block's execution (what
        # is per transaction is reset at every transaction anyway) and gives a root whose
        # nodes stay readable: the overlay never drops a node of an older root.
        state.persist()
        self.before: AccountReader = AccountDB(
            state._db, state.state_root
        )
        self.touch(tx.sender)
        if tx.to:
            self.touch(tx.to)
        self.touch(state.coinbase)

    def touch(self, address: bytes, slot: Optional[int] = None) -> None:
        slots = self.touched.setdefault(bytes(address), set())
        if slot is not None:
            slots.add(slot)

    def wants_steps(self) -> bool:
        return True

    def enter(self, message: MessageAPI, kind: str, parent: Optional[ComputationAPI]) -> None:
        self.touch(message.sender)
        self.touch(message.storage_address)
        if message.code_address:
            self.touch(message.code_address)

    def step(self, computation: ComputationAPI, opcode: int, pc: int) -> Any:
        if opcode in (SLOAD, SSTORE) or opcode in ADDRESS_OPCODES:
            stack = stack_ints(computation)
            if not stack:
                return None
            if opcode in ADDRESS_OPCODES:
                self.touch((stack[-1] % ADDRESS_MODULUS).to_bytes(20, "big"))
            else:
                self.touch(computation.msg.storage_address, stack[-1])
        return None

    def self_destruct(self, computation: ComputationAPI, beneficiary: bytes, value: int) -> None:
        self.touch(beneficiary)

    def _account(self, reader: AccountReader, address: bytes, slots: set[int]) -> dict[str, Any]:
        entry: dict[str, Any] = {"balance": hex(reader.get_balance(address))}
        nonce = reader.get_nonce(address)
        if nonce:
            entry["nonce"] = nonce
        code = reader.get_code(address)
        if code and not self.config.disable_code:
            entry["code"] = "0x" + code.hex()
        if slots and not self.config.disable_storage:
            entry["storage"] = {
                _word(slot): _word(reader.get_storage(address, slot)) for slot in sorted(slots)
            }
        return entry

    @staticmethod
    def _is_empty(reader: AccountReader, address: bytes) -> bool:
        return not reader.account_exists(address) or (
            reader.get_balance(address) == 0 and reader.get_nonce(address) == 0
            and not reader.get_code(address)
        )

    def finish(self, state: StateAPI) -> None:
        self.output = self._result(state)

    def result(self) -> dict[str, Any]:
        return self.output

    def _result(self, after: AccountReader) -> dict[str, Any]:
        before = self.before
        pre = {
            "0x" + address.hex(): self._account(before, address, slots)
            for address, slots in sorted(self.touched.items())
            if not self._is_empty(before, address) or any(
                before.get_storage(address, slot) for slot in slots
            )
        }
        if not self.config.diff_mode:
            return pre
        return self._diff(pre, after)

    def _diff(self, pre: dict[str, Any], after: AccountReader) -> dict[str, Any]:
        post: dict[str, Any] = {}
        kept_pre: dict[str, Any] = {}
        for address, slots in sorted(self.touched.items()):
            key = "0x" + address.hex()
            before = pre.get(key, {"balance": "0x0"})
            if self._is_empty(after, address) and key in pre:
                kept_pre[key] = before  # gone afterwards: in pre only
                continue
            now = self._account(after, address, slots)
            changed: dict[str, Any] = {}
            for name in ("balance", "nonce", "code"):
                if now.get(name) != before.get(name) and name in now:
                    changed[name] = now[name]
            old_storage = dict(before.get("storage", {}))
            new_storage = now.get("storage", {})
            changed_storage = {
                slot: value for slot, value in new_storage.items()
                if old_storage.get(slot, _word(0)) != value
            }
            if changed_storage:
                kept = {s: v for s, v in old_storage.items() if s in changed_storage}
                nonzero = {s: v for s, v in changed_storage.items() if int(v, 16)}
                if nonzero:
                    changed["storage"] = nonzero
                if key in pre:
                    before = dict(before)
                    if kept:
                        before["storage"] = kept
                    else:
                        before.pop("storage", None)
            elif key in pre:
                before = dict(before)
                before.pop("storage", None)
            if not changed and not changed_storage:
                continue
            post[key] = changed
            if key in pre:
                kept_pre[key] = before
        return {"pre": kept_pre, "post": post}
