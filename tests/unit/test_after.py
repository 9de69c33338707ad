"""The after-response batch: queued calls run together, later, in order, each isolated."""

from __future__ import annotations

import asyncio
import contextvars
from pathlib import Path

import pytest
import structlog

from memory_router.after import AfterResponse
from memory_router.calls import ChatCall
from memory_router.decision_log import DecisionLog, read_records
from memory_router.pipeline import Run
from memory_router.routing.decision import Decision
from memory_router.service import RouterService
from memory_router.settings import DecisionLogSettings, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_calls_wait_for_the_batch_and_run_in_order() -> None:
    async def main() -> tuple[list[int], list[int]]:
        done: list[int] = []
        after = AfterResponse(delay_s=0.05)
        for n in range(5):
            after.add(done.append, n)
        await asyncio.sleep(0)  # a turn of the loop is not enough: the batch waits delay_s
        before = list(done)
        await asyncio.sleep(0.15)
        return before, done

    before, done = asyncio.run(main())
    assert before == []
    assert done == [0, 1, 2, 3, 4]


def test_one_timer_per_batch_and_a_new_batch_after_it() -> None:
    async def main() -> list[tuple[str, int]]:
        done: list[tuple[str, int]] = []
        after = AfterResponse(delay_s=0.03)
        after.add(lambda: done.append(("first", len(after))))
        after.add(lambda: done.append(("second", len(after))))
        await asyncio.sleep(0.1)
        after.add(lambda: done.append(("third", len(after))))
        assert len(after) == 1
        await asyncio.sleep(0.1)
        return done

    # Both of the first batch ran in one drain (nothing was left queued while they ran).
    assert asyncio.run(main()) == [("first", 0), ("second", 0), ("third", 0)]


def test_each_call_runs_in_the_context_it_was_added_in() -> None:
    # The request log line must carry its own request's id, not the batch's first.
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")

    async def main() -> list[str]:
        seen: list[str] = []
        after = AfterResponse(delay_s=0.02)

        async def request(name: str) -> None:
            request_id.set(name)
            after.add(lambda: seen.append(request_id.get()))

        for name in ("a", "b", "c"):
            await asyncio.create_task(request(name))  # a task per request, as the server runs
        await asyncio.sleep(0.08)
        return seen

    assert asyncio.run(main()) == ["a", "b", "c"]


def test_drain_runs_everything_now_and_only_once() -> None:
    async def main() -> list[int]:
        done: list[int] = []
        after = AfterResponse(delay_s=0.05)
        after.add(done.append, 1)
        after.add(done.append, 2)
        after.drain()
        assert done == [1, 2]
        await asyncio.sleep(0.12)  # the cancelled timer must not run them again
        return done

    assert asyncio.run(main()) == [1, 2]


def test_outside_a_running_loop_the_call_runs_at_once() -> None:
    done: list[str] = []
    AfterResponse().add(done.append, "now")
    assert done == ["now"]


def test_a_failing_call_is_logged_and_the_rest_still_run() -> None:
    def broken() -> None:
        raise ValueError("bad record")

    async def main() -> list[int]:
        done: list[int] = []
        after = AfterResponse(delay_s=0.01)
        after.add(done.append, 1)
        after.add(broken)
        after.add(done.append, 3)
        await asyncio.sleep(0.08)
        return done

    with structlog.testing.capture_logs() as logs:
        assert asyncio.run(main()) == [1, 3]
    failed = [entry for entry in logs if entry["event"] == "after_response_failed"]
    assert len(failed) == 1
    assert "broken" in failed[0]["call"]
    assert failed[0]["log_level"] == "error"


@pytest.mark.parametrize("records", [1, 3])
def test_closing_the_service_writes_the_records_still_queued(tmp_path: Path, records: int) -> None:
    settings = load_settings(REPO / "config")
    service = RouterService(settings)
    log_path = tmp_path / "decisions.jsonl"
    service.decision_log = DecisionLog(DecisionLogSettings(path=log_path))
    decision = Decision("qwen3:30b-a3b", "ollama", 32768, -1, "chat", ("because",))

    async def main() -> int:
        service.after.delay_s = 60.0  # far beyond the test: only the close can write them
        for _ in range(records):
            run = Run(service, decision, lambda d: ChatCall(d.model, []))
            run.outcome = "ok"
            service.after.add(service.record, run, 0.01)
        queued = len(service.after)
        await service.aclose()
        return queued

    assert asyncio.run(main()) == records
    written = read_records(log_path)
    assert len(written) == records
    assert all(r["model"] == "qwen3:30b-a3b" and r["outcome"] == "ok" for r in written)
