"""A :mod:`logging` handler that ships records to a plumb collector.

Records go out as OTLP/HTTP JSON (``POST $PLUMB_COLLECTOR/v1/logs``), the
OpenTelemetry log format that ``plumb serve`` and any OpenTelemetry collector
accept::

    import logging
    from plumb import PlumbHandler

    logging.getLogger().addHandler(PlumbHandler())   # $PLUMB_COLLECTOR
    logging.getLogger(__name__).warning("disk %s is %d%% full", "/data", 93)

The handler never blocks the application: ``emit`` formats the record and
puts it on a bounded queue; a background thread sends batches. When the
queue is full, records are dropped and counted (``handler.dropped``; the next
batch carries a warning record saying how many). When the collector cannot
be reached, a batch is appended to a local spool file (JSON lines, one OTLP
request per line, named ``logs-<pid>.jsonl``, under ``$PLUMB_SPOOL``, else
``$PLUMB_OUTBOX/logs``, else ``$PLUMB_HOME/outbox/logs``) and sent later,
oldest first, once the collector answers again. Without a collector
configured every batch goes to the spool. Files left by processes that have
exited are taken over and sent by any later handler (see ``_adopt``).

Each record carries: its time, severity, message, logger name (as the
instrumentation scope), source location, thread, the exception's type,
message and stack trace when there is one, and the record's ``extra=``
fields as attributes. The resource carries ``service.name`` (the
``service_name`` argument, ``$OTEL_SERVICE_NAME``, or the program's name),
``plumb.run.id`` (``$PLUMB_RUN_ID``, set by ``plumb run``), ``host.name`` and
``process.pid``.

Standard library only.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import re
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional

from .traced import clean_traceback

try:
    import fcntl
except ImportError:  # not POSIX: spool files of dead processes are left alone
    fcntl = None  # type: ignore[assignment]

__all__ = ["PlumbHandler", "otlp_severity"]

# The attributes every LogRecord has; anything else came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None)).keys()
) | {"message", "asctime", "taskName"}

_SCOPE_VERSION = "0.1.0"

# Each process's lock on its spool files, per spool directory (see _hold_lock).
_LOCKS: Dict[Any, Optional[int]] = {}
_LOCKS_GUARD = threading.Lock()

# Put on the queue by flush(): the shipper then tries the spool at once.
_DRAIN: Dict[str, Any] = {}


def otlp_severity(levelno: int) -> int:
    """The OpenTelemetry SeverityNumber for a logging level.

    DEBUG is 5, INFO 9, WARNING 13, ERROR 17, CRITICAL 21; levels in between
    map into the range below the next standard one (logging's steps of 10
    become OpenTelemetry's steps of 4), and anything under DEBUG is TRACE.
    """
    if levelno < logging.DEBUG:
        return 1 + max(0, min(3, levelno * 4 // 10))
    if levelno >= logging.CRITICAL:
        return 21 + min(3, (levelno - logging.CRITICAL) * 4 // 10)
    base = levelno // 10 * 10
    return {10: 5, 20: 9, 30: 13, 40: 17}[base] + (levelno - base) * 4 // 10


def _value(v: Any) -> Dict[str, Any]:
    """An OTLP AnyValue. 64-bit integers are strings, as the protobuf JSON
    mapping writes them."""
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [_value(x) for x in v]}}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": [{"key": str(k), "value": _value(x)} for k, x in v.items()]}}
    if isinstance(v, bytes):
        return {"stringValue": v.decode("utf-8", "replace")}
    return {"stringValue": repr(v)}


def _attrs(d: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in d.items() if v is not None]


def _plumb_home() -> str:
    """The store directory, chosen as plumb chooses it: ``$PLUMB_HOME``, else
    ``$XDG_DATA_HOME/plumb``, else ``~/.local/share/plumb``."""
    home = os.environ.get("PLUMB_HOME")
    if home:
        return home
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "plumb")


def _default_spool_dir() -> str:
    """``$PLUMB_SPOOL``, else ``logs`` in plumb's outbox (``$PLUMB_OUTBOX``,
    else ``<plumb home>/outbox``), beside the runs waiting to be shipped."""
    env = os.environ.get("PLUMB_SPOOL")
    if env:
        return env
    outbox = os.environ.get("PLUMB_OUTBOX") or os.path.join(_plumb_home(), "outbox")
    return os.path.join(outbox, "logs")


# Spool files: ``logs-<pid>.jsonl`` (what process <pid> spooled) and
# ``logs-<pid>-<n>.jsonl`` (files of dead processes that <pid> took over).
# Either belongs to <pid> while it holds ``logs-<pid>.lock``.
_SPOOL_NAME = re.compile(r"^logs-(\d+)(?:-\d+)?\.jsonl$")


class PlumbHandler(logging.Handler):
    """Ships log records to a plumb collector as OTLP/HTTP JSON, or spools them.

    Arguments (all optional):

    - ``collector``: the collector's base URL; default ``$PLUMB_COLLECTOR``.
      ``None`` and no variable: records go to the spool only.
    - ``service_name``: default ``$OTEL_SERVICE_NAME`` or the program's name.
    - ``token``: bearer token; default ``$PLUMB_TOKEN``.
    - ``batch_size``: records per request (default 512).
    - ``flush_interval``: longest a record waits before being sent, seconds.
    - ``queue_size``: records held before new ones are dropped (default 10000).
    - ``spool_dir``: default ``$PLUMB_SPOOL``, ``$PLUMB_OUTBOX/logs`` or
      ``$PLUMB_HOME/outbox/logs``.
    - ``retry_interval``: how often a spooled batch is retried, seconds.
    - ``timeout``: per request, seconds.
    """

    def __init__(
        self,
        collector: Optional[str] = None,
        *,
        level: int = logging.NOTSET,
        service_name: Optional[str] = None,
        token: Optional[str] = None,
        batch_size: int = 512,
        flush_interval: float = 1.0,
        queue_size: int = 10000,
        spool_dir: Optional[str] = None,
        retry_interval: float = 5.0,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(level)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if flush_interval <= 0 or retry_interval <= 0 or timeout <= 0:
            raise ValueError("flush_interval, retry_interval and timeout must be positive")
        collector = collector if collector is not None else os.environ.get("PLUMB_COLLECTOR") or None
        if collector is not None and not collector.startswith(("http://", "https://")):
            raise ValueError(f"collector {collector!r}: expected an http:// or https:// URL")
        self.endpoint = collector.rstrip("/") + "/v1/logs" if collector else None
        self.token = token if token is not None else os.environ.get("PLUMB_TOKEN") or None
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_interval = retry_interval
        self.timeout = timeout
        self.spool_dir = spool_dir or _default_spool_dir()
        self.spool_path = os.path.join(self.spool_dir, f"logs-{os.getpid()}.jsonl")
        # Held for the handler's life: while it is, no other process takes
        # this process's spool files; once the process is gone, the kernel
        # releases it and any handler may take them over.
        self._lock_file = self._hold_lock()
        self._taken = itertools.count()
        self._last_adopt_try = 0.0
        self.dropped = 0
        """Records dropped because the queue was full."""
        self.rejected = 0
        """Records the collector refused as malformed (HTTP 400); not retried."""
        self.sent = 0
        """Records the collector acknowledged."""
        self.spooled = 0
        """Records written to the spool (they may have been sent since)."""
        service = (
            service_name
            or os.environ.get("OTEL_SERVICE_NAME")
            or os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "python")
            or "python"
        )
        resource = {
            "service.name": service,
            "plumb.run.id": os.environ.get("PLUMB_RUN_ID") or None,
            "host.name": socket.gethostname(),
            "process.pid": os.getpid(),
        }
        self._resource = {"attributes": _attrs(resource)}
        self._ssl = None
        ca = os.environ.get("PLUMB_CA_CERT")
        if ca and self.endpoint and self.endpoint.startswith("https://"):
            self._ssl = ssl.create_default_context(cafile=ca)
        self._queue: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue(queue_size)
        self._reported_drops = 0
        self._warned: set = set()
        # Records queued and not yet sent or spooled; flush waits for zero.
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._flush_request = threading.Event()
        self._closed = False
        self._last_spool_try = 0.0
        self._thread = threading.Thread(target=self._run, name="plumb-log-shipper", daemon=True)
        self._thread.start()

    # -- application side: must never block or raise ------------------------

    def emit(self, record: logging.LogRecord) -> None:
        try:
            item = self._encode(record)
        except Exception:
            self.handleError(record)
            return
        with self._pending_lock:
            try:
                self._queue.put_nowait(item)
                self._pending += 1
            except queue.Full:
                self.dropped += 1

    def _encode(self, record: logging.LogRecord) -> Dict[str, Any]:
        attributes: Dict[str, Any] = {
            "code.filepath": record.pathname,
            "code.lineno": record.lineno,
            "code.function": record.funcName,
            "thread.name": record.threadName,
            "thread.id": record.thread,
        }
        if record.exc_info and record.exc_info[0] is not None:
            etype, evalue, tb = record.exc_info
            attributes["exception.type"] = getattr(etype, "__qualname__", str(etype))
            attributes["exception.message"] = str(evalue)
            if evalue is not None:
                # Without the frames of @traced wrappers, as the user wrote it.
                clean_traceback(evalue)
                tb = evalue.__traceback__
            attributes["exception.stacktrace"] = "".join(traceback.format_exception(etype, evalue, tb))
        elif record.exc_text:
            attributes["exception.stacktrace"] = record.exc_text
        if record.stack_info:
            attributes["code.stacktrace"] = record.stack_info
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                attributes[key] = value
        t = str(int(record.created * 1e9))
        return {
            "scope": record.name,
            "record": {
                "timeUnixNano": t,
                "observedTimeUnixNano": t,
                "severityNumber": otlp_severity(record.levelno),
                "severityText": record.levelname,
                "body": {"stringValue": record.getMessage()},
                "attributes": _attrs(attributes),
            },
        }

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until everything queued so far was sent or spooled, and the
        spool (with the files dead processes left) was tried once; False on
        timeout."""
        if self._closed and not self._thread.is_alive():
            return self._pending == 0
        with self._pending_lock:
            try:
                self._queue.put_nowait(_DRAIN)
                self._pending += 1
            except queue.Full:
                pass
        self._flush_request.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._pending_lock:
                if self._pending == 0:
                    return True
            time.sleep(0.005)
        return False

    def close(self) -> None:
        """Sends or spools what is left, then stops the shipper thread."""
        if not self._closed:
            self._closed = True
            self.flush(max(self.timeout * 2, 1.0))
            try:
                self._queue.put(None, timeout=1.0)
            except queue.Full:
                pass
            self._thread.join(max(self.timeout * 2, 1.0))
        super().close()

    # -- shipper thread ------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch: List[Dict[str, Any]] = []
            taken = 0
            stop = False
            drain = False
            deadline = time.monotonic() + self.flush_interval
            while len(batch) < self.batch_size:
                wait = deadline - time.monotonic()
                if self._flush_request.is_set():
                    wait = 0
                try:
                    item = self._queue.get(timeout=max(wait, 0)) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                taken += 1
                if item is _DRAIN:
                    drain = True
                    break
                batch.append(item)
            if self._queue.empty():
                self._flush_request.clear()
            try:
                drops = self.dropped - self._reported_drops
                if drops > 0:
                    self._reported_drops += drops
                    batch.append(self._drop_notice(drops))
                if batch:
                    self._ship(batch)
                if drain or (not batch and time.monotonic() - self._last_spool_try >= self.retry_interval):
                    self._drain_spool(adopt_now=drain)
            except Exception as e:  # the shipper must survive anything
                self._warn_once("internal", f"plumb log handler: {e!r}")
            with self._pending_lock:
                self._pending -= taken
            if stop:
                return

    def _drop_notice(self, n: int) -> Dict[str, Any]:
        t = str(time.time_ns())
        return {
            "scope": "plumb.log",
            "record": {
                "timeUnixNano": t,
                "observedTimeUnixNano": t,
                "severityNumber": 13,
                "severityText": "WARNING",
                "body": {"stringValue": f"plumb log handler: {n} records dropped (queue full)"},
                "attributes": _attrs({"plumb.log.dropped": n}),
            },
        }

    def _payload(self, batch: List[Dict[str, Any]]) -> Dict[str, Any]:
        scopes: Dict[str, List[Dict[str, Any]]] = {}
        for item in batch:
            scopes.setdefault(item["scope"], []).append(item["record"])
        return {
            "resourceLogs": [
                {
                    "resource": self._resource,
                    "scopeLogs": [
                        {"scope": {"name": name, "version": _SCOPE_VERSION}, "logRecords": records}
                        for name, records in scopes.items()
                    ],
                }
            ]
        }

    def _ship(self, batch: List[Dict[str, Any]]) -> None:
        body = json.dumps(self._payload(batch), separators=(",", ":")).encode()
        # Older batches go first, so that the collector sees records in order.
        if self._own_spool_files() and not self._drain_spool():
            self._spool(body, len(batch))
            return
        outcome = self._post(body)
        if outcome == "sent":
            self.sent += len(batch)
        elif outcome == "rejected":
            self.rejected += len(batch)
        else:
            self._spool(body, len(batch))

    def _post(self, body: bytes) -> str:
        """'sent', 'rejected' (malformed: never retried) or 'retry'."""
        if self.endpoint is None:
            return "retry"
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as resp:
                resp.read()
            return "sent"
        except urllib.error.HTTPError as e:
            if e.code == 400:
                self._warn_once("400", f"plumb log handler: the collector refused a batch as malformed: {e.read()[:200]!r}")
                return "rejected"
            self._warn_once(f"http{e.code}", f"plumb log handler: {self.endpoint} answered {e.code}; spooling to {self.spool_path}")
            return "retry"
        except (OSError, ValueError) as e:
            self._warn_once("unreachable", f"plumb log handler: cannot reach {self.endpoint} ({e}); spooling to {self.spool_path}")
            return "retry"

    def _spool(self, body: bytes, records: int) -> None:
        try:
            os.makedirs(os.path.dirname(self.spool_path), mode=0o700, exist_ok=True)
            with _private(self.spool_path, os.O_APPEND) as f:
                f.write(body + b"\n")
            self.spooled += records
        except OSError as e:
            self.dropped += records
            self._warn_once("spool", f"plumb log handler: cannot write the spool {self.spool_path}: {e}")

    def _hold_lock(self) -> Optional[int]:
        """This process's lock on its spool files in ``spool_dir``, shared by
        every handler of the process (a flock is per open file, so a second
        one would fail) and held until the process exits."""
        if fcntl is None:
            return None
        key = (os.getpid(), os.path.abspath(self.spool_dir))
        with _LOCKS_GUARD:
            if key not in _LOCKS:
                _LOCKS[key] = self._take_lock()
            return _LOCKS[key]

    def _take_lock(self) -> Optional[int]:
        assert fcntl is not None
        try:
            os.makedirs(self.spool_dir, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(self.spool_dir, f"logs-{os.getpid()}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            # Without the lock this process's files could be taken while it
            # lives; the spool still works, and nothing is taken from others
            # (see _adopt), which needs the directory anyway.
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            # Another live process with our pid (another pid namespace) holds
            # it: share nothing with it rather than wait.
            os.close(fd)
            return None
        return fd

    def _own_spool_files(self) -> List[str]:
        """This process's spool file and the files it took over, oldest
        first."""
        me = str(os.getpid())
        try:
            names = os.listdir(self.spool_dir)
        except OSError:
            return []
        taken = []
        own = False
        for name in names:
            m = _SPOOL_NAME.match(name)
            if m is None or m.group(1) != me:
                continue
            if name == f"logs-{me}.jsonl":
                own = True
            else:
                taken.append(name)
        taken.sort(key=lambda n: int(n.rsplit("-", 1)[1].split(".")[0]))
        paths = [os.path.join(self.spool_dir, n) for n in taken]
        if own:
            paths.append(self.spool_path)
        return paths

    def _adopt(self) -> None:
        """Takes over the spool files of processes that are gone.

        A file ``logs-<pid>...`` belongs to a dead process when its lock
        ``logs-<pid>.lock`` can be taken (the kernel drops a flock when its
        holder dies, so a reused pid or a live process is never mistaken for
        a dead one). Holding that lock, the file is renamed to a name of this
        process: the rename is atomic, so when several handlers adopt at
        once each file goes to exactly one of them, and a handler that dies
        while sending leaves its files to the next one.
        """
        if fcntl is None or self._lock_file is None:
            return
        me = str(os.getpid())
        try:
            names = sorted(os.listdir(self.spool_dir))
        except OSError:
            return
        owners: Dict[str, List[str]] = {}
        for name in names:
            m = _SPOOL_NAME.match(name)
            if m is not None and m.group(1) != me:
                owners.setdefault(m.group(1), []).append(name)
        for pid, files in owners.items():
            lock = os.path.join(self.spool_dir, f"logs-{pid}.lock")
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # its process is alive
                for name in files:
                    target = os.path.join(self.spool_dir, f"logs-{me}-{next(self._taken)}.jsonl")
                    try:
                        os.rename(os.path.join(self.spool_dir, name), target)
                    except FileNotFoundError:
                        pass  # another handler took it first
                    except OSError as e:
                        self._warn_once("adopt", f"plumb log handler: cannot take over the spool file {name}: {e}")
                # The dead process's lock is not needed any more. Removed
                # while held, so a handler that opened it meanwhile finds no
                # file to take (the renames are done).
                try:
                    os.unlink(lock)
                except OSError:
                    pass
            finally:
                os.close(fd)

    def _drain_spool(self, adopt_now: bool = False) -> bool:
        """Sends spooled batches oldest first, this process's own and those
        of dead processes it takes over; True when none is left."""
        self._last_spool_try = time.monotonic()
        if self.endpoint is None:
            return not self._own_spool_files()
        now = time.monotonic()
        if adopt_now or now - self._last_adopt_try >= self.retry_interval or self._last_adopt_try == 0.0:
            self._last_adopt_try = now
            self._adopt()
        for path in self._own_spool_files():
            if not self._drain_file(path):
                return False
        return True

    def _drain_file(self, path: str) -> bool:
        """Sends one spool file's batches oldest first; True when it is gone."""
        try:
            with open(path, "rb") as f:
                lines = [line for line in f.read().split(b"\n") if line.strip()]
        except FileNotFoundError:
            return True
        except OSError as e:
            self._warn_once("spool-read", f"plumb log handler: cannot read the spool {path}: {e}")
            return False
        done = 0
        for line in lines:
            outcome = self._post(line)
            if outcome == "retry":
                break
            n = _count_records(line)
            if outcome == "sent":
                self.sent += n
            else:
                self.rejected += n
            done += 1
        try:
            if done == len(lines):
                os.unlink(path)
                return True
            if done:
                # Keep what is left; the rename makes the rewrite atomic.
                tmp = path + ".tmp"
                with _private(tmp, os.O_TRUNC) as f:
                    f.write(b"".join(line + b"\n" for line in lines[done:]))
                os.replace(tmp, path)
        except OSError as e:
            self._warn_once("spool-write", f"plumb log handler: cannot rewrite the spool {path}: {e}")
        return False

    def _warn_once(self, key: str, message: str) -> None:
        # Not through logging: that would feed this handler its own errors.
        if key not in self._warned:
            self._warned.add(key)
            try:
                sys.stderr.write(message + "\n")
            except Exception:
                pass


def _private(path: str, mode: int):
    """Opens ``path`` for writing (``mode``: ``os.O_APPEND`` or
    ``os.O_TRUNC``), created 0600 whatever the umask: spooled records hold
    what the application logged."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | mode, 0o600), "ab" if mode == os.O_APPEND else "wb")


def _count_records(line: bytes) -> int:
    try:
        doc = json.loads(line)
        return sum(
            len(s.get("logRecords", [])) for r in doc.get("resourceLogs", []) for s in r.get("scopeLogs", [])
        )
    except ValueError:
        return 0
