"""Message tags and state-location keys shared by the coordinator and the workers.

Everything that crosses a process boundary is a small tuple of bytes, ints, dicts and
lists, pickled by `multiprocessing.Connection.send`.

Coordinator -> worker
    (BLOCK, block_id, env, pre_root, prelude, nodes)
                                                  a new block: env is the BlockEnv, prelude
                                                   the block's pre-transaction storage writes
                                                   ({key: value}, EIP-4788/2935 slots), nodes
                                                   the whole pre-state when it is a small
                                                   in-memory dict (else None)
    (WORK, block_id, updates, tasks, nodes)       updates: [(tx, writes, deltas, codes)] write
                                                   sets of finished incarnations (or
                                                   (tx, None, None, None): ESTIMATE, the
                                                   incarnation was aborted); tasks:
                                                   [(tx, incarnation, tx object | None: the
                                                   worker already has it)]; nodes:
                                                   {hash: node} another worker fetched
    (NODE, block_id, request_id, values)          answer to NEED (value or None per hash)
    (END, block_id)                               block over: drop tasks, acknowledge
    (STOP,)                                       exit
Worker -> coordinator
    (NEED, block_id, request_id, hashes)          trie nodes / code missing from the cache
                                                   (a batch: prefetch asks for many at once)
    (DONE, block_id, tx, inc, reads, writes, deltas, codes, outcome, base_accounts)
    (BLOCKED, block_id, tx, inc, dep)             read an ESTIMATE of tx `dep`
    (RESULTS, [DONE or BLOCKED message, ...])     several results in one message
    (ERROR, block_id, tx, inc, text)              unexpected exception (coordinator falls back)
    (ENDED, block_id, timing)                     acknowledgement of END; timing: the
                                                   worker's seconds this block [running tasks
                                                   (wall), running tasks (CPU), waiting for
                                                   messages, sending results]

State locations ("keys") are bytes: the 20-byte address plus a one-byte field tag
(balance, nonce, code hash, existence, storage wipe, pre-state storage), or plus the 32-byte big-endian slot
number for a storage slot (52 bytes).
"""

from __future__ import annotations

BLOCK, WORK, NODE, END, STOP = 1, 2, 3, 4, 5
NEED, DONE, BLOCKED, ERROR, ENDED, RESULTS = 11, 12, 13, 14, 15, 16

BAL = b"b"  # balance (int); may carry commutative deltas
NON = b"n"  # nonce (int)
COD = b"c"  # code hash (bytes)
EXI = b"e"  # account exists in the trie (bool)
WIP = b"w"  # storage wiped in this transaction (True): older slot values read as 0
STO = b"s"  # the pre-state account has storage (bool; read-only, never written: EIP-7610)

FIELD_KEY_LEN = 21
SLOT_KEY_LEN = 52


def slot_key(address: bytes, slot: int) -> bytes:
    return address + slot.to_bytes(32, "big")
