"""Block-STM's vocabulary: state locations, and the messages between the coordinator and
its workers.

Every message is a named tuple. On the wire it travels as a plain tuple, its tag first
(`wire(msg)`), and the receiver names it again (`named(raw)`): pickling a named tuple
costs about 3 us more per message each way (measured 2026-12-01 on a DONE
message of a transfer: 2.6 us vs 6.0 us to pickle, 2.6 vs 5.3 us to unpickle), naming
a received tuple 0.4 us.

Coordinator -> worker
    Block(block_id, env, pre_root, prelude, nodes, checks_list)   a new block: env is the
        BlockEnv, prelude the block's pre-transaction storage writes ({location: value},
        EIP-4788 / EIP-2935), nodes the whole pre-state when it is a small in-memory dict
        (else None); checks_list: the access-list importer's block, whose write sets are
        the list's: each transaction is checked against its own and answered by Checked
    Work(block_id, updates, tasks, nodes)   updates: [(tx, writes, deltas, codes)] write
        sets of finished incarnations, or (tx, None, None, None): ESTIMATE, the
        incarnation was aborted; tasks: [(tx, incarnation, transaction or None: the
        worker already has it)]; nodes: {hash: node} another worker fetched
    Prepare(block_id, transactions)         [(tx, transaction)] the worker will run: decode
        them, recover their senders and fetch their accounts' trie paths now, run nothing
        (the access-list importer sends it before the write sets are ready; the tasks
        then come without their transactions)
    Node(block_id, request_id, values)      answer to Need (value or None per hash)
    RootShare(block_id, accounts)           the access-list importer's: the worker's share
        of the state root, to work out when its tasks are done: [RootInput] (the final
        values of the accounts under some first nibbles of the account trie,
        `execution.bal.apply`); answered by RootPart
    End(block_id)                           block over: drop tasks, acknowledge
    Stop()                                  exit
Worker -> coordinator
    Need(block_id, request_id, hashes)      trie nodes / code missing from its cache
    Done(block_id, tx, incarnation, reads, writes, deltas, codes, outcome, accounts)
    Checked(block_id, tx, outcome, difference)   a transaction of a checks_list block:
        difference is None when its changes are the list's at its index, else why not
        (`execution.bal.index_check`)
    Blocked(block_id, tx, incarnation, dependency)   read an ESTIMATE of `dependency`
    Results(messages)                       several Done / Blocked in one message
    RootPart(block_id, children, nodes)     a RootShare worked out: {first nibble: the
        account trie's new child there} and the new trie nodes (`execution.trie.
        update_subtries`)
    Error(block_id, tx, incarnation, text)  unexpected exception (the block falls back)
    Ended(block_id, timing, accessed)       acknowledges End; timing: the worker's
        seconds this block [running tasks (wall), running tasks (CPU), waiting for
        messages, sending results]; accessed: for a checks_list block, the addresses
        and slots its transactions accessed (else None)

State locations are `execution.locations`' (address + field tag, or address + slot).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Union

from execution.locations import BAL as BAL
from execution.locations import COD as COD
from execution.locations import EXI as EXI
from execution.locations import FIELD_KEY_LEN as FIELD_KEY_LEN
from execution.locations import NON as NON
from execution.locations import SLOT_KEY_LEN as SLOT_KEY_LEN
from execution.locations import STO as STO
from execution.locations import WIP as WIP
from execution.locations import Location as Location
from execution.locations import slot_key as slot_key

# ---- locations (execution.locations', re-exported) ---------------------------------

TxIndex = int
Incarnation = int


# ---- message tags ---------------------------------------------------------------------

BLOCK, WORK, NODE, END, STOP, PREPARE, ROOT_SHARE = 1, 2, 3, 4, 5, 6, 7
NEED, DONE, BLOCKED, ERROR, ENDED, RESULTS, ROOT_PART, CHECKED = 11, 12, 13, 14, 15, 16, 17, 18


# ---- coordinator -> worker ------------------------------------------------------------


class Block(NamedTuple):
    block_id: int
    env: Any
    pre_root: bytes
    prelude: dict
    nodes: Optional[dict]
    checks_list: bool


class Work(NamedTuple):
    block_id: int
    updates: list
    tasks: list
    nodes: dict


class Prepare(NamedTuple):
    block_id: int
    transactions: list


class Node(NamedTuple):
    block_id: int
    request_id: int
    values: list


class RootShare(NamedTuple):
    block_id: int
    accounts: list


class End(NamedTuple):
    block_id: int


class Stop(NamedTuple):
    pass


# ---- worker -> coordinator ------------------------------------------------------------


class Need(NamedTuple):
    block_id: int
    request_id: int
    hashes: list


class Done(NamedTuple):
    block_id: int
    tx: TxIndex
    incarnation: Incarnation
    reads: dict
    writes: dict
    deltas: dict
    codes: dict
    outcome: tuple
    accounts: dict


class Checked(NamedTuple):
    block_id: int
    tx: TxIndex
    outcome: tuple
    difference: Optional[str]


class Blocked(NamedTuple):
    block_id: int
    tx: TxIndex
    incarnation: Incarnation
    dependency: TxIndex


class Results(NamedTuple):
    messages: list


class RootPart(NamedTuple):
    block_id: int
    children: dict
    nodes: dict


class Error(NamedTuple):
    block_id: int
    tx: TxIndex
    incarnation: Incarnation
    text: str


class Ended(NamedTuple):
    block_id: int
    timing: list
    accessed: Optional[tuple]


Message = Union[Block, Work, Prepare, Node, RootShare, End, Stop, Need, Done, Checked, Blocked,
                Results, RootPart, Error, Ended]

_BY_TAG: dict[int, Any] = {
    BLOCK: Block, WORK: Work, PREPARE: Prepare, NODE: Node, ROOT_SHARE: RootShare, END: End,
    STOP: Stop, NEED: Need, DONE: Done, BLOCKED: Blocked, RESULTS: Results, ROOT_PART: RootPart,
    ERROR: Error, ENDED: Ended, CHECKED: Checked,
}
_TAG_OF: dict[type, int] = {cls: tag for tag, cls in _BY_TAG.items()}


def wire(message: Message) -> tuple:
    """The plain tuple a message travels as: its tag, then its fields."""
    return (_TAG_OF[type(message)], *message)


def named(raw: tuple) -> Message:
    """A received message with its field names."""
    return _BY_TAG[raw[0]]._make(raw[1:])


# ---- outcomes -------------------------------------------------------------------------

OK, INVALID = "ok", "invalid"


def invalid_outcome(reason: str) -> tuple:
    """The outcome of a transaction that cannot be applied (the block is invalid)."""
    return (INVALID, reason)


def invalid_reason(outcome: tuple) -> Optional[str]:
    """Why the transaction cannot be applied, or None when it ran."""
    return outcome[1] if outcome[0] == INVALID else None


class TxResult(NamedTuple):
    """What the coordinator keeps of an incarnation it accepted (in-process only)."""

    reads: dict
    writes: dict
    deltas: dict
    codes: dict
    outcome: tuple
