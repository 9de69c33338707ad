"""The decision log: one JSON line per routed request, appended by a background thread.

``write`` only encodes and enqueues, so the event loop never waits on the disk; one daemon
thread drains the bounded queue in order, rotating the file by size and age and pruning old
rotated files. A full queue or an unwritable file drops records (counted in ``dropped``) and
logs why, instead of failing the request that produced them.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TypeAlias

import orjson
import structlog
from structlog.contextvars import get_contextvars

from .settings import DecisionLogSettings

__all__ = ["PROMPT_KEYS", "DecisionLog", "read_records"]

PROMPT_KEYS: frozenset[str] = frozenset({"prompt", "prompt_text", "messages"})
"""Keys holding what the user wrote; dropped at any depth unless prompts may be logged."""
_DAY_S = 86_400.0
_GATHER_S = 0.05
_WARN_EVERY_S = 60.0
_MAX_BATCH = 1000
_STAMP = "%Y%m%dT%H%M%S%fZ"
_Item: TypeAlias = bytes | threading.Event | None  # a line, a flush marker, or the stop sign


def _logger() -> Any:
    # Looked up per use, not cached in a global: these events are rare.
    return structlog.get_logger("memory_router.decision_log")


class _Stamp:
    """ISO-8601 UTC with milliseconds; the date and time of day formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, ts: float) -> str:
        fraction, whole = math.modf(ts)
        second, micros = divmod(int(whole) * 1_000_000 + round(fraction * 1e6), 1_000_000)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{micros // 1000:03d}Z"


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _scrub(value: Any) -> Any:
    # Exact types first (isinstance against the Mapping ABC costs a microsecond a value), and
    # scalars kept in place without a call: this runs on every routed request.
    kind = type(value)
    if kind is dict:
        return {
            k: v if type(v) in _SCALARS else _scrub(v)
            for k, v in value.items()
            if k not in PROMPT_KEYS
        }
    if kind is list or kind is tuple:
        return [v if type(v) in _SCALARS else _scrub(v) for v in value]
    if kind in _SCALARS or not isinstance(value, Mapping):
        return value
    return {k: _scrub(v) for k, v in value.items() if k not in PROMPT_KEYS}


def _rotated_files(path: Path) -> list[tuple[datetime, Path]]:
    """Rotated siblings of ``path`` with their rotation times, oldest first."""
    pattern = re.compile(rf"{re.escape(path.stem)}-(\d{{8}}T\d{{12}}Z){re.escape(path.suffix)}")
    found: list[tuple[datetime, Path]] = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        try:
            stamp = datetime.strptime(match[1], _STAMP).replace(tzinfo=UTC)
        except ValueError:  # digits that are no date: not ours, so never pruned
            continue
        found.append((stamp, entry))
    return sorted(found)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record in the rotated files (oldest first) and then the current file."""
    records: list[dict[str, Any]] = []
    files = [file for _, file in _rotated_files(path)] + ([path] if path.exists() else [])
    for file in files:
        with file.open("rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError:  # a line torn by a crash: say so, read on
                    _logger().warning(
                        "skipping a malformed decision log line", file=str(file), line=number
                    )
    return records


class DecisionLog:
    """Append decision records to ``settings.path`` without blocking the caller."""

    def __init__(
        self,
        settings: DecisionLogSettings,
        log_prompts: bool = False,
        clock: Callable[[], float] = time.time,
        *,
        max_queue: int = 10_000,
    ) -> None:
        self._settings = settings
        self._path = settings.path
        self._log_prompts = log_prompts
        self._clock = clock
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()  # orders stamping and enqueueing; guards counters
        self._stamp = _Stamp()
        self.dropped = 0
        """Records lost to a full queue, an unwritable file or a closed log."""
        self._last_warning: float | None = None
        self._closed = False
        self._file: BinaryIO | None = None
        self._size = 0
        self._opened_at: float | None = None  # when the current file's first record came
        self._failing: set[str] = set()  # errors already logged, until the next success
        self._thread: threading.Thread | None = None
        if settings.enabled:
            self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
            self._thread.start()

    def write(self, record: Mapping[str, Any]) -> None:
        """Queue one record; never blocks and never raises for I/O trouble.

        Written while a request's id is bound (structlog's contextvars), the record carries it
        as ``request_id``, as that request's log lines and ``x-request-id`` header do."""
        if self._thread is None:
            return
        data = dict(record) if self._log_prompts else _scrub(record)
        # The id its request's log lines and response carry (the caller runs in its context).
        request_id = get_contextvars().get("request_id")
        with self._lock:
            if "ts" not in data:
                head = {"ts": self._stamp(self._clock())}
                if request_id is not None:
                    head["request_id"] = request_id
                data = {**head, **data}
            elif request_id is not None:
                data.setdefault("request_id", request_id)
            try:
                line = orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n"
                if not self._closed:
                    self._queue.put_nowait(line)
                    return
            except orjson.JSONEncodeError as exc:  # a cycle, say: our bug, not the request's
                _logger().error("decision record not encodable", error=str(exc))
            except queue.Full:  # the disk cannot keep up: shed load, say so once a minute
                now = self._clock()
                if self._last_warning is None or now - self._last_warning >= _WARN_EVERY_S:
                    self._last_warning = now
                    log, where = _logger(), str(self._path)
                    log.warning("decision log queue full", path=where, dropped=self.dropped + 1)
            self.dropped += 1

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is on disk; blocks, so not for the event loop."""
        if self._thread is None or not self._thread.is_alive():
            return True
        marker = threading.Event()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.wait(timeout)

    def close(self) -> None:
        """Write what is queued, stop the writer thread and close the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        while self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(queue.Full):  # the writer is draining: try again
                self._queue.put(None, timeout=0.1)
                break
        if self._thread is not None:
            self._thread.join()

    def _count_dropped(self, count: int) -> None:
        with self._lock:
            self.dropped += count

    # Everything below runs on the writer thread only.

    def _run(self) -> None:
        lines: list[bytes] = []  # written when the queue runs dry, at a marker, or when full
        while True:
            try:
                if lines:
                    item = self._queue.get(block=False)
                else:
                    item = self._queue.get()
                    # Let a batch gather: one wake-up and one write per burst of requests,
                    # not per request (each wake-up takes the GIL from the event loop).
                    if isinstance(item, bytes):
                        time.sleep(_GATHER_S)
            except queue.Empty:
                item = b""
            if isinstance(item, bytes) and item:
                lines.append(item)
                if len(lines) < _MAX_BATCH:
                    continue
            self._write(lines)
            lines = []
            if item is None:
                break
            if isinstance(item, threading.Event):
                item.set()
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, lines: list[bytes]) -> None:
        chunk: list[bytes] = []
        for index, line in enumerate(lines):
            opened = self._open()
            if opened and self._due(len(line)):
                self._append(chunk)
                chunk = []
                self._rotate()
                opened = self._open()
            if not opened:
                self._count_dropped(len(lines) - index)
                return
            if self._opened_at is None:
                self._opened_at = self._clock()
            chunk.append(line)
            self._size += len(line)
        self._append(chunk)

    def _due(self, incoming: int) -> bool:
        """Rotate before a line that would take the file past max_bytes, or once it is old."""
        age_s = self._settings.max_age_days * _DAY_S
        old = self._opened_at is not None and self._clock() - self._opened_at > age_s
        return self._size > 0 and (self._size + incoming > self._settings.max_bytes or old)

    def _open(self) -> bool:
        if self._file is not None:
            return True
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            handle = self._path.open("ab")
        except OSError as exc:
            self._fail(
                "open",
                f"cannot write the decision log {self._path}: {exc.strerror or exc}; make its "
                "folder writable by this user, or set logging.decision_log.path to a writable "
                "file, or logging.decision_log.enabled to false. Records are dropped meanwhile.",
            )
            return False
        self._failing.discard("open")
        self._file = handle
        stat = os.fstat(handle.fileno())
        self._size = stat.st_size
        self._opened_at = self._first_record_time(stat) if self._size else None
        self._prune()
        return True

    def _first_record_time(self, stat: os.stat_result) -> float:
        try:
            with self._path.open("rb") as handle:
                ts = orjson.loads(handle.readline(65_536)).get("ts")
            return datetime.fromisoformat(ts).timestamp()
        except (OSError, ValueError, TypeError, AttributeError):  # then the file system's guess
            return float(getattr(stat, "st_birthtime", stat.st_mtime))

    def _append(self, chunk: list[bytes]) -> None:
        if not chunk or self._file is None:
            return
        try:
            self._file.write(b"".join(chunk))
            self._file.flush()
        except OSError as exc:
            self._count_dropped(len(chunk))
            self._fail("write", f"cannot append to the decision log {self._path}: {exc}")
            return
        self._failing.discard("write")

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        stamp = datetime.fromtimestamp(self._clock(), UTC)
        rotated = _rotated_files(self._path)
        if rotated:  # names must sort in rotation order even if the clock stalls or goes back
            stamp = max(stamp, rotated[-1][0] + timedelta(microseconds=1))
        name = f"{self._path.stem}-{stamp.strftime(_STAMP)}{self._path.suffix}"
        target = self._path.with_name(name)
        try:
            self._path.rename(target)
        except OSError as exc:
            self._fail("rotate", f"cannot rotate the decision log {self._path}: {exc}")
            return
        self._failing.discard("rotate")
        self._size = 0
        self._opened_at = None  # the next _open prunes

    def _prune(self) -> None:
        """Delete rotated files past max_age_days, then all but the newest max_files."""
        rotated = _rotated_files(self._path)
        cutoff = datetime.fromtimestamp(self._clock() - self._settings.max_age_days * _DAY_S, UTC)
        expired = [file for stamp, file in rotated if stamp < cutoff]
        kept = [file for stamp, file in rotated if stamp >= cutoff]
        excess = kept[: max(0, len(kept) - self._settings.max_files)]
        for file in expired + excess:
            try:
                file.unlink()
            except OSError as exc:
                _logger().warning("cannot prune the decision log", path=str(file), error=str(exc))

    def _fail(self, kind: str, message: str) -> None:
        if kind not in self._failing:
            self._failing.add(kind)
            _logger().error(message, path=str(self._path))
