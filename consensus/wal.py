"""The consensus write-ahead log: every message a validator signs, synced before it is sent.

One append-only file per validator, `<datadir>/consensus/wal-<address>.log`:

    magic "LMNRWAL\\x01"
    record*:  length (u32 big-endian) | crc32(payload) (u32 big-endian) | payload
              payload = messages.Proposal/Vote.encode()

`record_*` writes one record with a single write() and fsyncs before returning, so a
message that was sent is always in the log. On open the log is replayed; a torn final
record (a crash mid-append: short, or failing its checksum at the end of the file, or
zero-filled) is truncated away. A bad record *followed by more data* cannot come from a
crash of an append-only writer, so it is reported (`WALCorruptError`) rather than silently
dropping signed votes, which would open the door to equivocation.

The log refuses (`ConflictingSignatureError`) to record a second, different message for a
(height, round, step) it already holds: the last guard before a double-sign leaves the node.

The calls block on fsync; from trio, run them with `trio.to_thread.run_sync`.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Optional, Union

from consensus.messages import MAX_MESSAGE_BYTES, DecodeError, Proposal, Step, Vote, decode_message

log = logging.getLogger(__name__)

WAL_MAGIC = b"LMNRWAL\x01"
RECORD_HEADER = struct.Struct(">II")
MAX_RECORD_BYTES = MAX_MESSAGE_BYTES

Message = Union[Proposal, Vote]


class WALCorruptError(RuntimeError):
    """The log is damaged somewhere other than its tail; refusing to guess."""


class ConflictingSignatureError(RuntimeError):
    """A different message is already recorded for this (height, round, step)."""


def _step(message: Message) -> Step:
    return Step.PROPOSE if isinstance(message, Proposal) else message.kind


def _same_value(a: Message, b: Message) -> bool:
    if a.block_hash != b.block_hash:
        return False
    if not isinstance(a, Proposal):
        return True
    assert isinstance(b, Proposal)  # same (height, round, step) as a proposal
    return a.pol_round == b.pol_round


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encode_record(message: Message) -> bytes:
    payload = message.encode()
    return RECORD_HEADER.pack(len(payload), zlib.crc32(payload)) + payload


class WAL:
    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        self.truncated_bytes = 0  # torn tail removed on open
        self._index: dict[tuple[int, int, Step], Message] = {}
        self._file: Optional[BinaryIO] = None
        self._open()

    @classmethod
    def for_validator(cls, datadir: Union[str, Path], address: bytes) -> "WAL":
        return cls(Path(datadir) / "consensus" / f"wal-{address.hex()}.log")

    # ---- open and replay ------------------------------------------------------------

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self._write_fresh(self.path, [])
            _fsync_dir(self.path.parent)
        data = self.path.read_bytes()
        if len(data) < len(WAL_MAGIC):
            if WAL_MAGIC.startswith(data):  # torn while being created
                self._write_fresh(self.path, [])
                data = WAL_MAGIC
            else:
                raise WALCorruptError(f"{self.path}: not a consensus WAL")
        if data[:len(WAL_MAGIC)] != WAL_MAGIC:
            raise WALCorruptError(f"{self.path}: not a consensus WAL (bad magic)")
        offset = len(WAL_MAGIC)
        while offset < len(data):
            message, end = self._read_record(data, offset)
            if message is None:
                if end >= len(data) or not data[offset:].strip(b"\x00"):
                    break  # a torn tail
                raise WALCorruptError(
                    f"{self.path}: corrupt record at offset {offset} with "
                    f"{len(data) - end} bytes of log after it"
                )
            self._index_message(message)
            offset = end
        if offset < len(data):
            self.truncated_bytes = len(data) - offset
            log.warning(
                "%s: truncating a torn final record (%d bytes)", self.path, self.truncated_bytes
            )
            with open(self.path, "r+b") as f:
                f.truncate(offset)
                f.flush()
                os.fsync(f.fileno())
        self._file = open(self.path, "ab")

    @staticmethod
    def _read_record(data: bytes, offset: int) -> tuple[Optional[Message], int]:
        """The record at `offset` and where it ends; (None, end) if it is bad, where `end`
        is how far the record claims to reach (len(data) or beyond if it is short)."""
        if len(data) - offset < RECORD_HEADER.size:
            return None, len(data)
        length, checksum = RECORD_HEADER.unpack_from(data, offset)
        end = offset + RECORD_HEADER.size + length
        if length == 0:
            return None, offset + RECORD_HEADER.size
        if length > MAX_RECORD_BYTES or end > len(data):
            return None, end
        payload = data[offset + RECORD_HEADER.size:end]
        if zlib.crc32(payload) != checksum:
            return None, end
        try:
            return decode_message(payload), end
        except DecodeError:
            return None, end

    def _index_message(self, message: Message) -> None:
        key = (message.height, message.round, _step(message))
        existing = self._index.get(key)
        if existing is not None and not _same_value(existing, message):
            log.error("%s: conflicting records for %s; keeping the first", self.path, key)
            return
        self._index.setdefault(key, message)

    @staticmethod
    def _write_fresh(path: Path, messages: list[Message]) -> None:
        with open(path, "wb") as f:
            f.write(WAL_MAGIC + b"".join(encode_record(m) for m in messages))
            f.flush()
            os.fsync(f.fileno())

    # ---- writing --------------------------------------------------------------------

    def record_vote(self, vote: Vote) -> bool:
        return self._record(vote)

    def record_proposal(self, proposal: Proposal) -> bool:
        return self._record(proposal)

    def _record(self, message: Message) -> bool:
        """Append and fsync; False (and no write) if exactly this value is already logged."""
        if self._file is None:
            raise RuntimeError("the WAL is closed")
        key = (message.height, message.round, _step(message))
        existing = self._index.get(key)
        if existing is not None:
            if _same_value(existing, message):
                return False
            raise ConflictingSignatureError(
                f"already signed {_step(message).name.lower()} at height {message.height} "
                f"round {message.round} for another value"
            )
        self._file.write(encode_record(message))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._index[key] = message
        return True

    # ---- reading --------------------------------------------------------------------

    def last_signed(self, height: int, round_: int, step: Step) -> Optional[Message]:
        return self._index.get((height, round_, Step(step)))

    def signed_votes(self, height: int) -> list[Vote]:
        return [
            m for k, m in sorted(self._index.items(), key=lambda kv: (kv[0][1], kv[0][2]))
            if k[0] == height and isinstance(m, Vote)
        ]

    def signed_proposals(self, height: int) -> list[Proposal]:
        return [
            m for k, m in sorted(self._index.items(), key=lambda kv: kv[0][1])
            if k[0] == height and isinstance(m, Proposal)
        ]

    def messages(self, min_height: int = 0) -> list[Message]:
        """Everything signed at `min_height` and above (what `StateMachine.restore` takes)."""
        return [m for k, m in sorted(self._index.items()) if k[0] >= min_height]

    def __len__(self) -> int:
        return len(self._index)

    # ---- pruning --------------------------------------------------------------------

    def prune_below(self, height: int) -> int:
        """Drop records of heights below `height` (call with a committed height); rewrites
        the log atomically (temp file, fsync, rename, fsync dir). Returns records dropped."""
        keep = {k: m for k, m in self._index.items() if k[0] >= height}
        dropped = len(self._index) - len(keep)
        if not dropped:
            return 0
        tmp = self.path.with_name(self.path.name + ".tmp")
        self._write_fresh(tmp, [keep[k] for k in sorted(keep)])
        assert self._file is not None, "the WAL is closed"
        self._file.close()
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._index = keep
        self._file = open(self.path, "ab")
        return dropped

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "WAL":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
