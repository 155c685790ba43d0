"""geth's default tracer, the struct (opcode) logger: one entry per opcode executed.

Field by field as geth's `logger.StructLogger` prints them: `pc`, `op`, `gas` (before the
opcode), `gasCost`, `depth` (1 for the transaction's own frame), `refund` (the
transaction's refund counter), `stack` (bottom first, quantities), `memory` (32-byte
words), `returnData` (of the last call that returned), `storage` (at SLOAD and SSTORE
only: every slot this contract read or wrote so far in the transaction, the SSTORE's new
value included), `error` (only on the opcode that failed).

`gasCost` is what geth charges before the opcode runs: for CALL-type opcodes that
includes the gas handed to the callee (so within a frame `gas - gasCost` of a step is the
next step's `gas` except after a call, whose unused gas comes back); for CREATE and
CREATE2 it does not include the endowment, as in geth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from eth.abc import ComputationAPI, MessageAPI
from eth.exceptions import OutOfGas, Revert

from execution.tracing.errors import geth_error
from execution.tracing.hooks import Tracer, stack_ints

SLOAD = 0x54
SSTORE = 0x55
CREATE_OPCODES = (0xF0, 0xF5)
INVALID = 0xFE  # the designated invalid opcode: py-evm has no entry for it, geth names it
WORD = 32
NEEDED_GAS = re.compile(r"Needed (\d+)")  # py-evm's OutOfGas message: "Out of gas: Needed N - ..."
GETH_NAMES = {"SHA3": "KECCAK256"}  # py-evm's older mnemonics where geth renamed them


@dataclass(frozen=True)
class StructLogConfig:
    disable_stack: bool = False
    disable_storage: bool = False
    enable_memory: bool = False
    enable_return_data: bool = False
    limit: int = 0  # 0: no limit (the node's cap still applies)


def opcode_name(computation: ComputationAPI, opcode: int) -> str:
    opcode_fn = computation.opcodes.get(opcode)
    if opcode_fn is None:
        return "INVALID" if opcode == INVALID else f"opcode {opcode:#04x} not defined"
    mnemonic = getattr(opcode_fn, "mnemonic", None) or opcode_fn.__wrapped__.mnemonic
    return GETH_NAMES.get(mnemonic, mnemonic)


def _word(value: int) -> str:
    return "0x" + value.to_bytes(WORD, "big").hex()


class StructLogger(Tracer):
    """Collects `structLogs`; `max_entries` is the node's cap when the client sets none,
    `max_values` the node's cap on the stack items, memory words and storage entries the
    logs hold (past it, recording stops and `over_size` says so)."""

    def __init__(self, config: StructLogConfig, max_entries: int, max_values: int) -> None:
        self.config = config
        self.values_left = max_values
        self.over_size = False
        self.limit = config.limit if config.limit > 0 else max_entries
        self.cap_is_the_nodes = config.limit <= 0
        self.logs: list[dict[str, Any]] = []
        self.over_cap = False
        self._frames: list[ComputationAPI] = []
        # Per contract address: slots read or written so far ({slot: value}).
        self._storage: dict[bytes, dict[str, str]] = {}
        self._spawn_cost: dict[int, int] = {}  # id(parent computation) -> gasCost at spawn

    def wants_steps(self) -> bool:
        return True

    def enter(self, message: MessageAPI, kind: str, parent: Optional[ComputationAPI]) -> None:
        pass

    def step(self, computation: ComputationAPI, opcode: int, pc: int) -> Any:
        if len(self.logs) >= self.limit or self.over_size:
            self.over_cap = len(self.logs) >= self.limit
            return None
        entry: dict[str, Any] = {
            "pc": pc,
            "op": opcode_name(computation, opcode),
            "gas": computation.get_gas_remaining(),
            "gasCost": 0,
            "depth": computation.msg.depth + 1,
            "refund": _refund_counter(computation),
        }
        stack = stack_ints(computation)
        if not self.config.disable_stack:
            entry["stack"] = [hex(v) for v in stack]
        if self.config.enable_memory:
            memory = bytes(computation._memory._bytes)
            entry["memory"] = [
                "0x" + memory[i:i + WORD].hex() for i in range(0, len(memory), WORD)
            ]
        if self.config.enable_return_data:
            entry["returnData"] = "0x" + bytes(computation.return_data).hex()
        if opcode == SSTORE and not self.config.disable_storage and len(stack) >= 2:
            entry["storage"] = self._remember(computation, stack[-1], stack[-2])
        self.values_left -= (
            len(entry.get("stack", ())) + len(entry.get("memory", ()))
            + len(entry.get("storage", ()))
        )
        if self.values_left < 0:
            self.over_size = True
            return None
        self.logs.append(entry)
        return (entry, opcode, stack[-1] if stack else None)

    def child_started(self, parent: ComputationAPI, message: MessageAPI) -> None:
        token_entry = self._last_entry_of(parent)
        if token_entry is None:
            return
        cost = token_entry["gas"] - parent.get_gas_remaining()
        if getattr(parent, "_trace_opcode", None) in CREATE_OPCODES:
            cost -= message.gas
        self._spawn_cost[id(parent)] = cost

    def step_end(self, computation: ComputationAPI, token: Any, error: Optional[Exception]) -> None:
        if token is None:
            return
        entry, opcode, top = token
        spawn_cost = self._spawn_cost.pop(id(computation), None)
        if spawn_cost is not None:
            entry["gasCost"] = spawn_cost
        else:
            entry["gasCost"] = max(entry["gas"] - computation.get_gas_remaining(), 0)
            if isinstance(error, OutOfGas):
                # py-evm charged nothing for the piece it could not pay: add what that
                # piece needed, so gasCost shows (as geth's) more than the gas left.
                needed = NEEDED_GAS.search(str(error))
                if needed is not None:
                    entry["gasCost"] += int(needed.group(1))
        if error is not None and not isinstance(error, Revert):
            entry["error"] = geth_error(error)
        if opcode == SLOAD and error is None and not self.config.disable_storage:
            loaded = stack_ints(computation)[-1]
            entry["storage"] = self._remember(computation, top, loaded)

    def _last_entry_of(self, computation: ComputationAPI) -> Optional[dict[str, Any]]:
        depth = computation.msg.depth + 1
        for entry in reversed(self.logs):
            if entry["depth"] == depth:
                return entry
        return None

    def _remember(self, computation: ComputationAPI, slot: int, value: int) -> dict[str, str]:
        slots = self._storage.setdefault(computation.msg.storage_address, {})
        slots[_word(slot)] = _word(value)
        return dict(slots)


def _refund_counter(computation: ComputationAPI) -> int:
    """The transaction's refund counter so far: this frame's and its finished children's,
    and the same of every frame it was called from."""
    total = 0
    frame: Optional[ComputationAPI] = computation
    while frame is not None:
        total += frame.get_gas_refund()
        frame = getattr(frame, "_trace_parent", None)
    return total
