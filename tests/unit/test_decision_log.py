"""The decision log on real files: order, privacy, rotation, pruning, failures, threads."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from memory_router.decision_log import PROMPT_KEYS, DecisionLog, read_records
from memory_router.settings import DecisionLogSettings

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC).timestamp()
TS = "2025-03-01T12:00:00.123Z"  # T0 as the log writes it
DAY = 86_400.0
# A rotated name holding a real month (the module also checks the rest of the date).
ROTATED = re.compile(r"decisions-\d{4}(0[1-9]|1[0-2])\d{2}T\d{12}Z\.jsonl")
Make = Callable[..., DecisionLog]


class Clock:
    """A wall clock the test moves by hand."""

    now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Where the log goes; not created, since the log must create it."""
    return tmp_path / "logs"


@pytest.fixture
def make_log(folder: Path) -> Iterator[Callable[..., DecisionLog]]:
    """Build logs writing to folder/decisions.jsonl; all are closed at the end."""
    logs: list[DecisionLog] = []

    def make(
        clock: Any = None, log_prompts: bool = False, max_queue: int = 10_000, **options: Any
    ) -> DecisionLog:
        options.setdefault("path", folder / "decisions.jsonl")
        settings = DecisionLogSettings(**options)
        log = DecisionLog(settings, log_prompts, clock or Clock(), max_queue=max_queue)
        logs.append(log)
        return log

    yield make
    for log in logs:
        log.close()


def ns(path: Path) -> list[int]:
    return [orjson.loads(line)["n"] for line in path.read_bytes().splitlines()]


def rotated(folder: Path) -> list[Path]:
    """Rotated files, oldest first."""
    return sorted(path for path in folder.iterdir() if ROTATED.fullmatch(path.name))


def stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%S%fZ")


def test_lines_are_json_objects_in_order_with_a_utc_timestamp(make_log: Make, folder: Path) -> None:
    log = make_log()
    for n in range(200):
        odd: dict[Any, Any] = {"n": n, "model": "qwen3:8b", "path": Path("/x"), 3: "non-str key"}
        log.write(odd)
    log.write({"n": 200, "ts": "2020-01-01T00:00:00.000Z"})
    log.close()
    records = [orjson.loads(x) for x in (folder / "decisions.jsonl").read_bytes().splitlines()]
    assert [r["n"] for r in records] == list(range(201))
    assert records[0] == {"ts": TS, "n": 0, "model": "qwen3:8b", "path": "/x", "3": "non-str key"}
    assert records[-1]["ts"] == "2020-01-01T00:00:00.000Z"  # a record's own ts is kept
    assert log.dropped == 0


@pytest.mark.parametrize(
    "ts",
    [1_700_000_000.0, 1_700_000_000.0004994, 1_700_000_000.9995, 1_700_000_001.4069994,
     1_620_189_061.6069994, 1_700_000_059.999_999_7, 1_704_067_199.999],
)  # fmt: skip
def test_the_timestamp_is_datetimes_isoformat_to_the_millisecond(
    make_log: Make, folder: Path, ts: float
) -> None:
    # The formatted date and time of day is reused within a second: the second after it
    # (and one of a new day) must not reuse it.
    clock = Clock()
    log = make_log(clock=clock)
    for at in (ts - 1.0, ts, ts + 1.0):
        clock.now = at
        log.write({"n": 0})
    log.close()
    expected = [
        datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        for at in (ts - 1.0, ts, ts + 1.0)
    ]
    records = [orjson.loads(x) for x in (folder / "decisions.jsonl").read_bytes().splitlines()]
    assert [r["ts"] for r in records] == expected


RECORD = {
    "model": "m",
    "prompt": "secret",
    "prompt_text": "secret",
    "messages": [{"role": "user", "content": "secret"}],
    "request": {"messages": ["secret"], "n": 1, "tools": [{"prompt": "secret", "k": 2}]},
}


SCRUBBED = {"ts": TS, "model": "m", "request": {"n": 1, "tools": [{"k": 2}]}}


@pytest.mark.parametrize(
    ("log_prompts", "expected"),
    [(False, SCRUBBED), (True, {"ts": TS, **RECORD})],
)
def test_prompt_keys_are_dropped_at_any_depth_unless_enabled(
    make_log: Make, folder: Path, log_prompts: bool, expected: dict[str, Any]
) -> None:
    assert {"prompt", "prompt_text", "messages"} == PROMPT_KEYS
    log = make_log(log_prompts=log_prompts)
    log.write(RECORD)
    log.close()
    assert read_records(folder / "decisions.jsonl") == [expected]
    assert (b"secret" in (folder / "decisions.jsonl").read_bytes()) is log_prompts
    assert "prompt" in RECORD  # the caller's record is not modified


def test_rotation_by_size_keeps_every_file_within_max_bytes(make_log: Make, folder: Path) -> None:
    line = len(orjson.dumps({"ts": TS, "n": 0})) + 1
    log = make_log(max_bytes=3 * line)  # the clock stands still: names must still differ
    for n in range(10):
        log.write({"n": n})
    log.close()
    files = rotated(folder)
    assert [ns(f) for f in files] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert ns(folder / "decisions.jsonl") == [9]
    assert files[0].name == f"decisions-{stamp(T0)}.jsonl"
    assert all(f.stat().st_size <= 3 * line for f in files)
    assert [r["n"] for r in read_records(folder / "decisions.jsonl")] == list(range(10))


def test_rotation_by_age_with_the_injected_clock(make_log: Make, folder: Path) -> None:
    clock = Clock()
    log = make_log(clock, max_age_days=7)
    log.write({"n": 0})
    assert log.flush(5)
    clock.now += 6 * DAY
    log.write({"n": 1})
    assert log.flush(5)
    assert rotated(folder) == []  # six days old: not yet
    clock.now += 2 * DAY
    log.write({"n": 2})
    log.close()
    (old,) = rotated(folder)
    assert old.name == f"decisions-{stamp(T0 + 8 * DAY)}.jsonl"
    assert ns(old) == [0, 1]
    assert ns(folder / "decisions.jsonl") == [2]


OLD_TS = datetime.fromtimestamp(T0 - 8 * DAY, UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("first_line", "mtime", "rotated_ns", "current_ns"),
    [
        (f'{{"ts": "{OLD_TS}", "n": -1}}', T0, [[-1]], [0]),  # the first record's ts decides
        ('{"ts": "2025-02-28T12:00:00.000Z", "n": -1}', T0 - 30 * DAY, [], [-1, 0]),
        ('{"n": -1}', T0 - 8 * DAY, [[-1]], [0]),  # no ts: the file's mtime decides
        ('{"n": -1}', T0 - 1 * DAY, [], [-1, 0]),
    ],
)
def test_a_file_found_at_start_up_is_rotated_when_old(
    make_log: Make, folder: Path, first_line: str, mtime: float, rotated_ns: Any, current_ns: Any
) -> None:
    folder.mkdir()
    (folder / "decisions.jsonl").write_text(first_line + "\n")
    os.utime(folder / "decisions.jsonl", (mtime, mtime))
    log = make_log(max_age_days=7)
    log.write({"n": 0})
    log.close()
    assert [ns(f) for f in rotated(folder)] == rotated_ns
    assert ns(folder / "decisions.jsonl") == current_ns


def test_pruning_keeps_the_newest_max_files(make_log: Make, folder: Path) -> None:
    log = make_log(max_bytes=10, max_files=2)  # every line rotates the one before
    for n in range(6):
        log.write({"n": n})
    log.close()
    assert [ns(f) for f in rotated(folder)] == [[3], [4]]
    assert [r["n"] for r in read_records(folder / "decisions.jsonl")] == [3, 4, 5]


UNRELATED = [
    "decisions.jsonl.bak",
    "decisions-notes.jsonl",
    "decisions-20200101T000000000000Z.jsonl.gz",
    "other-20200101T000000000000Z.jsonl",
    "decisions-20201399T000000000000Z.jsonl",  # the right shape, but no date
    "notes.txt",
]


def test_pruning_by_age_leaves_unrelated_files_alone(make_log: Make, folder: Path) -> None:
    folder.mkdir()
    expired = folder / f"decisions-{stamp(T0 - 10 * DAY)}.jsonl"
    recent = folder / f"decisions-{stamp(T0 - 1 * DAY)}.jsonl"
    for path in [expired, recent, *(folder / name for name in UNRELATED)]:
        path.write_text('{"n": -1}\n')
    log = make_log(max_bytes=10, max_age_days=7, max_files=1)
    log.write({"n": 0})
    log.write({"n": 1})  # rotates {"n": 0}, then prunes: the expired one and the excess
    log.close()
    assert not expired.exists()
    assert not recent.exists()  # max_files=1 keeps only the file rotated just now
    assert [ns(f) for f in rotated(folder)] == [[0]]
    for name in UNRELATED:
        assert (folder / name).read_text() == '{"n": -1}\n', name


def test_unwritable_location_logs_one_clear_error_and_drops(make_log: Make, folder: Path) -> None:
    (folder.parent / "blocker").write_text("a file where a folder should be")
    path = folder.parent / "blocker" / "logs" / "decisions.jsonl"
    log = make_log(path=path)
    with capture_logs() as logs:
        for n in range(3):
            log.write({"n": n})
            assert log.flush(5)
        log.close()
    (error,) = [e for e in logs if e["log_level"] == "error"]
    assert str(path) in error["event"] and "writable" in error["event"]
    assert log.dropped == 3


def test_close_drains_everything_and_later_writes_are_dropped(make_log: Make, folder: Path) -> None:
    log = make_log()
    for n in range(5000):
        log.write({"n": n, "pad": "x" * 50})
    log.close()
    log.write({"n": 5000})
    log.close()  # twice is fine
    assert [r["n"] for r in read_records(folder / "decisions.jsonl")] == list(range(5000))
    assert log.dropped == 1


def test_concurrent_writers_keep_whole_lines_in_order(make_log: Make, folder: Path) -> None:
    log = make_log(max_bytes=50_000)  # rotations happen mid-stream too

    def produce(t: int) -> None:
        for i in range(300):
            log.write({"t": t, "i": i, "pad": "y" * 200})

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(produce, range(6)))
    log.close()
    records = read_records(folder / "decisions.jsonl")  # raises on a torn line
    assert len(records) == 6 * 300
    for t in range(6):
        assert [r["i"] for r in records if r["t"] == t] == list(range(300))
    assert rotated(folder)


def test_a_full_queue_drops_and_warns_at_most_once_a_minute(
    make_log: Make, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    real_write = DecisionLog._write

    def stuck_write(self: DecisionLog, lines: list[bytes]) -> None:
        if lines:
            entered.set()
            release.wait(5)
        real_write(self, lines)

    monkeypatch.setattr(DecisionLog, "_write", stuck_write)
    clock = Clock()
    log = make_log(clock, max_queue=2)
    with capture_logs() as logs:
        log.write({"n": 0})
        assert entered.wait(5)  # the writer holds record 0; the queue is empty
        for n in range(1, 5):
            log.write({"n": n})  # 1 and 2 fit; 3 and 4 are dropped
        clock.now += 61
        log.write({"n": 5})
        release.set()
        log.close()
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [w["dropped"] for w in warnings] == [1, 3]
    assert log.dropped == 3
    assert [r["n"] for r in read_records(folder / "decisions.jsonl")] == [0, 1, 2]


def test_a_disabled_log_writes_nothing(make_log: Make, folder: Path) -> None:
    log = make_log(enabled=False)
    log.write({"n": 0})
    log.close()
    assert not folder.exists() and log.dropped == 0


def test_read_records_warns_about_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    rotated_file = tmp_path / f"decisions-{stamp(T0)}.jsonl"
    rotated_file.write_text('{"n": 0}\n{"n": 1, "tor\n')
    path.write_text('{"n": 2}\n')
    with capture_logs() as logs:
        assert [r["n"] for r in read_records(path)] == [0, 2]
    assert [(e["file"], e["line"]) for e in logs] == [(str(rotated_file), 2)]
