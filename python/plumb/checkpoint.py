"""Atomic, checksummed checkpoints that never restore from a corrupt file.

The same file format and save protocol as the Rust crate ``plumb-checkpoint``;
files written by one are read by the other.

Directory layout::

    checkpoint-NNNNNNNNNNNNNNNNNNNN.ckpt       checkpoint N (20 zero-padded digits)
    .checkpoint-NNNNNNNNNNNNNNNNNNNN.ckpt.tmp  a save in progress; never read;
                                              deleted by the next open
    .checkpoint.lock                          flock(LOCK_EX) held by the one writer

File format, version 1 (integers little-endian)::

    offset size field
         0    8 magic b"PLUMBCKP"
         8    2 format version, u16 = 1
        10    2 header length, u16 = 48
        12    4 flags, u32 = 0 (reserved)
        16    8 sequence number, u64 (equals the number in the file name)
        24    8 time written, i64 nanoseconds since the Unix epoch, UTC
        32    8 payload length P, u64
        40    8 encoding: 1-8 printable ASCII bytes, NUL-padded ("json", "raw", ...)
        48    P payload
      48+P    4 CRC-32 (zlib's, IEEE 802.3) of bytes 0 .. 48+P

A reader checks, in order, and reports the first failure by its code:
at least 52 bytes (too_short), magic (bad_magic), version
(unsupported_version), header length, zero flags and encoding field
(bad_header), total length 48+P+4 (length_mismatch), checksum
(checksum_mismatch), and the sequence number against the file name
(sequence_mismatch).

Save protocol: write a temporary file in the same directory, fsync it, rename
it to its final name, fsync the directory, then delete checkpoints beyond the
newest ``keep``.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import pickle
import signal
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Tuple

__all__ = [
    "Checkpointer",
    "CheckpointError",
    "CheckpointInfo",
    "Corrupt",
    "Entry",
    "Locked",
    "StorageFull",
    "EXIT_EVICTED",
    "DEFAULT_SIGNALS",
    "encode_frame",
    "decode_frame",
    "file_name",
    "parse_file_name",
    "inspect",
    "read",
    "rfc3339",
]

log = logging.getLogger("plumb.checkpoint")

MAGIC = b"PLUMBCKP"
FORMAT_VERSION = 1
HEADER_LEN = 48
TRAILER_LEN = 4
MAX_ENCODING_LEN = 8
FILE_PREFIX = "checkpoint-"
FILE_SUFFIX = ".ckpt"
TEMP_PREFIX = ".checkpoint-"
TEMP_SUFFIX = ".ckpt.tmp"
LOCK_FILE = ".checkpoint.lock"

#: Exit code after saving on an eviction signal: EX_TEMPFAIL from sysexits.h
#: ("temporary failure; the user is invited to retry"). Same as the Rust crate.
EXIT_EVICTED = 75
#: Signals caught by default: SIGTERM (Kubernetes, Slurm, HTCondor), SIGQUIT,
#: SIGUSR1 (Slurm --signal, Lightning's requeue).
DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR1)

_HEADER = struct.Struct("<8sHHIQqQ8s")
assert _HEADER.size == HEADER_LEN


class CheckpointError(Exception):
    """Opening, saving or restoring checkpoints failed."""


class Locked(CheckpointError):
    """Another process is the writer of this checkpoint directory."""


class StorageFull(CheckpointError):
    """The file system is full (ENOSPC or EDQUOT); the previous checkpoint is intact."""


class Corrupt(CheckpointError):
    """A file is not a valid checkpoint. ``code`` is shared with the Rust reader."""

    def __init__(self, code: str, message: str, path: Optional[str] = None):
        self.code = code
        self.message = message
        self.path = path
        where = f"checkpoint {path} is corrupt: " if path else ""
        super().__init__(f"{where}{message}")


@dataclass(frozen=True)
class Header:
    """What a valid checkpoint's header says."""

    seq: int
    time_ns: int
    payload_len: int
    encoding: str


@dataclass(frozen=True)
class CheckpointInfo:
    """A valid checkpoint file and its header."""

    path: str
    seq: int
    time_ns: int
    size: int
    payload_len: int
    encoding: str

    @property
    def time_rfc3339(self) -> str:
        return rfc3339(self.time_ns)


@dataclass(frozen=True)
class Entry:
    """One checkpoint file in a directory; ``info`` is None when ``problem`` says why."""

    path: str
    seq: int
    size: int
    info: Optional[CheckpointInfo]
    problem: Optional[Corrupt]


def rfc3339(time_ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 UTC with Z, trailing zeros trimmed."""
    secs, frac = divmod(time_ns, 1_000_000_000)
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    text = (epoch + datetime.timedelta(seconds=secs)).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def _check_encoding(encoding: str) -> bytes:
    raw = encoding.encode("ascii", errors="replace")
    if not 1 <= len(raw) <= MAX_ENCODING_LEN or not all(0x21 <= b <= 0x7E for b in raw):
        raise ValueError(
            f"encoding name {encoding!r} must be 1 to {MAX_ENCODING_LEN} printable ASCII characters without spaces"
        )
    return raw


def _header(seq: int, time_ns: int, payload_len: int, encoding: bytes) -> bytes:
    return _HEADER.pack(MAGIC, FORMAT_VERSION, HEADER_LEN, 0, seq, time_ns, payload_len, encoding)


def encode_frame(seq: int, time_ns: int, encoding: str, payload: bytes) -> bytes:
    """One complete checkpoint file in memory."""
    header = _header(seq, time_ns, len(payload), _check_encoding(encoding))
    crc = zlib.crc32(payload, zlib.crc32(header))
    return header + bytes(payload) + struct.pack("<I", crc)


def decode_frame(data: bytes) -> Tuple[Header, bytes]:
    """Validates a whole checkpoint file; raises Corrupt naming the first problem."""
    n = len(data)
    if n < HEADER_LEN + TRAILER_LEN:
        raise Corrupt("too_short", f"too short: {n} bytes, a checkpoint has at least {HEADER_LEN + TRAILER_LEN}")
    magic, version, header_len, flags, seq, time_ns, payload_len, enc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise Corrupt("bad_magic", 'bad magic: does not start with "PLUMBCKP"')
    if version != FORMAT_VERSION:
        raise Corrupt("unsupported_version", f"unsupported format version {version} (this reader knows {FORMAT_VERSION})")
    if header_len != HEADER_LEN:
        raise Corrupt("bad_header", f"bad header: header length {header_len}, version 1 uses {HEADER_LEN}")
    if flags != 0:
        raise Corrupt("bad_header", f"bad header: reserved flags are {flags:#x}, must be 0")
    name = enc.rstrip(b"\0")
    if not name or b"\0" in name or not all(0x21 <= b <= 0x7E for b in name):
        raise Corrupt("bad_header", f"bad header: encoding field {enc.hex()} is not NUL-padded printable ASCII")
    expected = HEADER_LEN + TRAILER_LEN + payload_len
    if expected != n:
        raise Corrupt(
            "length_mismatch",
            f"length mismatch: header says {expected} bytes, file has {n} (torn or truncated)",
        )
    body = memoryview(data)[: n - TRAILER_LEN]
    (stored,) = struct.unpack_from("<I", data, n - TRAILER_LEN)
    computed = zlib.crc32(body)
    if stored != computed:
        raise Corrupt("checksum_mismatch", f"checksum mismatch: stored crc32 {stored:08x}, computed {computed:08x}")
    return Header(seq, time_ns, payload_len, name.decode("ascii")), bytes(body[HEADER_LEN:])


def file_name(seq: int) -> str:
    return f"{FILE_PREFIX}{seq:020d}{FILE_SUFFIX}"


def parse_file_name(name: str) -> Optional[int]:
    if not (name.startswith(FILE_PREFIX) and name.endswith(FILE_SUFFIX)):
        return None
    digits = name[len(FILE_PREFIX) : len(name) - len(FILE_SUFFIX)]
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    return int(digits)


def _list(directory: str) -> List[Tuple[int, str]]:
    found = []
    for name in os.listdir(directory):
        seq = parse_file_name(name)
        if seq is not None:
            found.append((seq, os.path.join(directory, name)))
    found.sort()
    return found


def _read_checkpoint(path: str, seq_in_name: int) -> Tuple[CheckpointInfo, bytes]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise Corrupt("unreadable", f"unreadable: {e}", path) from e
    try:
        header, payload = decode_frame(data)
    except Corrupt as e:
        raise Corrupt(e.code, e.message, path) from None
    if header.seq != seq_in_name:
        raise Corrupt(
            "sequence_mismatch",
            f"sequence mismatch: file name says {seq_in_name}, header says {header.seq}",
            path,
        )
    info = CheckpointInfo(path, header.seq, header.time_ns, len(data), header.payload_len, header.encoding)
    return info, payload


def _newest_valid(files: List[Tuple[int, str]]) -> Optional[Tuple[CheckpointInfo, bytes]]:
    for seq, path in reversed(files):
        try:
            return _read_checkpoint(path, seq)
        except Corrupt as e:
            log.warning("skipping checkpoint %s that cannot be used (%s); falling back to the previous one", path, e.message)
    return None


def inspect(directory: str) -> List[Entry]:
    """Every checkpoint file in ``directory``, oldest first, validated, without locking."""
    entries = []
    for seq, path in _list(directory):
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0
        try:
            info, _ = _read_checkpoint(path, seq)
            entries.append(Entry(path, seq, size, info, None))
        except Corrupt as e:
            entries.append(Entry(path, seq, size, None, e))
    return entries


def read(directory: str, seq: Optional[int] = None) -> Optional[Tuple[CheckpointInfo, bytes]]:
    """Checkpoint ``seq`` (or the newest valid one) as (info, payload), without locking."""
    files = _list(directory)
    if seq is None:
        return _newest_valid(files)
    for s, path in files:
        if s == seq:
            return _read_checkpoint(path, s)
    raise CheckpointError(f"no checkpoint with sequence number {seq} in {directory}")


def _decode(info: CheckpointInfo, payload: bytes) -> Any:
    if info.encoding == "json":
        return json.loads(payload)
    if info.encoding == "pickle":
        return pickle.loads(payload)
    raise CheckpointError(
        f"checkpoint {info.path} is encoded as {info.encoding!r}; use restored_bytes() to decode it yourself"
    )


def _encode(encoding: str, state: Any) -> bytes:
    if encoding == "json":
        return json.dumps(state, separators=(",", ":")).encode("utf-8")
    if encoding == "pickle":
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    raise ValueError(f"save() knows the encodings 'json' and 'pickle', not {encoding!r}; use save_bytes()")


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("cannot remove temporary checkpoint %s: %s", path, e)


class Checkpointer:
    """The one writer of a checkpoint directory.

    Opening finds the newest valid checkpoint (``restored``); corrupt files
    are skipped with a warning naming them. ``save`` writes atomically.
    Eviction signals only set a flag, polled at the program's safe points:
    ``at_safe_point(state)`` saves when due and, after a signal, exits with
    ``EXIT_EVICTED`` by raising SystemExit, so ``finally`` blocks, context
    managers and atexit handlers still run.

    Signal handlers can only be installed from the main thread; pass
    ``signals=()`` elsewhere.
    """

    def __init__(
        self,
        directory: "os.PathLike[str] | str",
        *,
        keep: int = 3,
        every_steps: Optional[int] = None,
        every_seconds: Optional[float] = None,
        signals: Iterable[int] = DEFAULT_SIGNALS,
        exit_code: int = EXIT_EVICTED,
        encoding: str = "json",
    ) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1: keeping no checkpoint would delete the one just saved")
        if every_steps is not None and every_steps < 1:
            raise ValueError("every_steps must be at least 1")
        if encoding not in ("json", "pickle"):
            raise ValueError(f"encoding must be 'json' or 'pickle', not {encoding!r}")
        self.directory = os.fspath(directory)
        self.keep = keep
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self.exit_code = exit_code
        self.encoding = encoding
        self._signal: Optional[int] = None
        self._previous_handlers: List[Tuple[int, Any]] = []
        self._lock_fd: Optional[int] = None
        signals = list(signals)
        if signals and threading.current_thread() is not threading.main_thread():
            raise CheckpointError("signal handlers can only be installed from the main thread; pass signals=()")

        try:
            os.makedirs(self.directory, exist_ok=True)
            self._lock_fd = os.open(os.path.join(self.directory, LOCK_FILE), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise CheckpointError(f"checkpoint directory {self.directory}: {e}") from e
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise Locked(
                f"checkpoint directory {self.directory} is in use by another process "
                f"(it holds the lock on {os.path.join(self.directory, LOCK_FILE)})"
            ) from None
        for name in os.listdir(self.directory):
            if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
                # Left by a writer killed mid-save; we hold the lock, so no live writer owns it.
                _remove_quietly(os.path.join(self.directory, name))
        files = _list(self.directory)
        self._files = [seq for seq, _ in files]
        self._next_seq = files[-1][0] + 1 if files else 1
        self._restored = _newest_valid(files)
        self.last_saved: Optional[CheckpointInfo] = None
        self._steps = 0
        self._last_save = time.monotonic()
        for sig in signals:
            self._previous_handlers.append((sig, signal.signal(sig, self._on_signal)))

    # The handler only records the signal: saving from inside it could catch
    # the program's state half-updated. The program saves at its safe points.
    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signal = signum

    @property
    def restored(self) -> Optional[CheckpointInfo]:
        """The newest valid checkpoint found when opening, if any."""
        return self._restored[0] if self._restored else None

    def restored_bytes(self) -> Optional[bytes]:
        """Its payload, in whatever encoding it was saved."""
        return self._restored[1] if self._restored else None

    def restore(self, default: Any = None) -> Any:
        """The state of the newest valid checkpoint (json or pickle), or ``default``."""
        if self._restored is None:
            return default
        return _decode(*self._restored)

    def save(self, state: Any) -> CheckpointInfo:
        """Saves ``state`` in this checkpointer's encoding (JSON by default)."""
        return self.save_bytes(_encode(self.encoding, state), self.encoding)

    def save_bytes(self, payload: bytes, encoding: str = "raw") -> CheckpointInfo:
        """Saves bytes already encoded by the caller, atomically.

        Raises StorageFull or CheckpointError; the temporary file is removed
        and earlier checkpoints are untouched.
        """
        if self._lock_fd is None:
            raise CheckpointError("this checkpointer is closed")
        enc = _check_encoding(encoding)
        # Every attempt consumes a number, so a failed save never leaves a
        # file whose number a later save would reuse.
        seq = self._next_seq
        self._next_seq += 1
        time_ns = time.time_ns()
        header = _header(seq, time_ns, len(payload), enc)
        crc = zlib.crc32(payload, zlib.crc32(header))
        temp = os.path.join(self.directory, f"{TEMP_PREFIX}{seq:020d}{TEMP_SUFFIX}")
        path = os.path.join(self.directory, file_name(seq))
        try:
            _remove_quietly(temp)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                for part in (header, payload, struct.pack("<I", crc)):
                    view = memoryview(part)
                    while view:
                        view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, path)
        except OSError as e:
            _remove_quietly(temp)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(f"no space left to write checkpoint {path}; the previous checkpoint is intact") from e
            raise CheckpointError(f"writing checkpoint {path}: {e}") from e
        self._files.append(seq)
        try:
            # Without this the rename may be lost in a power failure.
            _fsync_dir(self.directory)
        except OSError as e:
            raise CheckpointError(f"writing checkpoint {path}: syncing the directory: {e}") from e
        info = CheckpointInfo(path, seq, time_ns, HEADER_LEN + len(payload) + TRAILER_LEN, len(payload), encoding)
        self._prune()
        self._steps = 0
        self._last_save = time.monotonic()
        self.last_saved = info
        return info

    def _prune(self) -> None:
        while len(self._files) > self.keep:
            old = os.path.join(self.directory, file_name(self._files.pop(0)))
            try:
                os.unlink(old)
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("cannot delete old checkpoint %s: %s", old, e)

    def step(self) -> None:
        """Counts one unit of work for ``every_steps``."""
        self._steps += 1

    @property
    def eviction_signal(self) -> Optional[int]:
        """The signal that requested eviction, if one arrived."""
        return self._signal

    def should_save(self) -> bool:
        """True after an eviction signal, or when ``every_steps``/``every_seconds`` are due."""
        return (
            self._signal is not None
            or (self.every_steps is not None and self._steps >= self.every_steps)
            or (self.every_seconds is not None and time.monotonic() - self._last_save >= self.every_seconds)
        )

    def exit_if_evicted(self) -> None:
        """After an eviction signal, closes and raises SystemExit(EXIT_EVICTED)."""
        if self._signal is not None:
            log.warning("state saved after eviction signal %d; exiting with %d", self._signal, self.exit_code)
            self.close()
            raise SystemExit(self.exit_code)

    def at_safe_point(self, state: Any) -> Optional[CheckpointInfo]:
        """Counts a step, saves if due, and exits cleanly after an eviction signal."""
        self.step()
        if not self.should_save():
            return None
        info = self.save(state)
        self.exit_if_evicted()
        return info

    def close(self) -> None:
        """Restores the previous signal handlers and releases the lock."""
        for sig, previous in reversed(self._previous_handlers):
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous_handlers = []
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # Best effort for code that forgets close(); never raises.
        try:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
        except Exception:
            pass
