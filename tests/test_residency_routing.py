"""Residency control end to end: two Cline sessions through the router and the emulator.

The emulator plays the reference machine (16 GiB VRAM, 128 GiB RAM, the three models at their
real sizes) with loads scaled to about a second and a half, so a cold load is visible: the
router must send SSE keepalive comments while it lasts, must not unload a model while a
request runs on it, and must answer 429 with Retry-After past a model's queue limit.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from memory_router.decision_log import read_records
from tests.conftest import RouterFactory, RouterThread
from tests.ollama_emulator import OllamaEmulator, Script, reference_profile

FIXTURES = Path(__file__).parent / "fixtures" / "cline"
FAST, CODER = "qwen3:30b-a3b", "qwen2.5-coder:32b"
LOAD_S_PER_GB = 0.08  # the coder (19.9 GB) loads in about 1.6 s
_CONTENT = re.compile(r'"content":"[^"]')  # generated text, not the opening role chunk


def cline_session(task: str, call: tuple[str, dict[str, Any]], result: str) -> dict[str, Any]:
    """A real Cline 3.0.65 request (system prompt, 25 tools) one tool call into a task."""
    body = json.loads((FIXTURES / "native_turn1.json").read_text(encoding="utf-8"))
    body = copy.deepcopy(body)
    body["messages"][1] = {"role": "user", "content": f"<task>\n{task}\n</task>"}
    name, arguments = call
    body["messages"] += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": result},
    ]
    return body


IMPLEMENT = cline_session(
    "The checkout test fails with a KeyError, fix it",
    ("replace_in_file", {"path": "src/orders.py", "diff": "- a\n+ b"}),
    "The content was successfully saved to src/orders.py.",
)
MEMORY = cline_session(
    "follow your custom instructions",
    ("read_file", {"path": "memory-bank/projectbrief.md"}),
    "# Project brief\nA shop for hand-made furniture.",
)


class Stream:
    """One streamed request read line by line on a thread, with arrival times."""

    def __init__(self, base_url: str, body: dict[str, Any]) -> None:
        self.base_url = base_url
        self.body = body
        self.status = 0
        self.headers: dict[str, str] = {}
        self.lines: list[tuple[float, str]] = []
        self.error: BaseException | None = None
        self.first_content_at: float | None = None
        self.ended_at: float | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Stream:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            with (
                httpx.Client(base_url=self.base_url, timeout=60) as client,
                client.stream("POST", "/v1/chat/completions", json=self.body) as response,
            ):
                self.status = response.status_code
                self.headers = dict(response.headers)
                for line in response.iter_lines():
                    now = time.monotonic()
                    self.lines.append((now, line))
                    if self.first_content_at is None and _CONTENT.search(line):
                        self.first_content_at = now
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.ended_at = time.monotonic()

    def join(self) -> Stream:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        assert self.error is None, self.error
        return self

    @property
    def comments(self) -> list[str]:
        return [line for _, line in self.lines if line.startswith(":")]

    @property
    def done(self) -> bool:
        return any(line == "data: [DONE]" for _, line in self.lines)


@pytest.fixture
def machine() -> Any:
    config = reference_profile()
    config.load_seconds_per_gb = LOAD_S_PER_GB
    config.token_delay_s = 0.0
    with OllamaEmulator(config) as emulator:
        yield emulator


def start_router(make_router: RouterFactory, emulator: OllamaEmulator, **routing: Any) -> Any:
    settings: dict[str, Any] = {
        "first_event_grace_s": 0.1,
        "keepalive_s": 0.2,
        "budget": {"disk_bytes_per_s": 1e9 / LOAD_S_PER_GB},
        **routing,
    }
    return make_router(emulator.base_url, routing=settings)


def test_two_sessions_no_eviction_in_flight_and_keepalives_during_loads(
    machine: OllamaEmulator, make_router: RouterFactory
) -> None:
    # A load is cheap next to a better fit here, so the memory session wants the fast model
    # even though that means evicting the coder the other session is using. Sessions count
    # as working alongside for a second only (session_idle_s), so the implementing one,
    # decided before its 1.6 s load, claims nothing by then (see the sharing tests below).
    router = start_router(make_router, machine, load_cost_per_s=0.001, session_idle_s=1.0)
    slow = Script(content="patched " * 20, token_delay_s=0.05)  # about a second of tokens
    machine.enqueue(slow, Script(content="The brief says: furniture."))

    implement = Stream(router.base_url, IMPLEMENT).start()
    deadline = time.monotonic() + 20
    while implement.first_content_at is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert implement.first_content_at is not None, "the coder never answered"
    assert machine.in_flight(CODER) == 1

    memory = Stream(router.base_url, MEMORY).start()
    implement.join()
    memory.join()

    # Both sessions were served to the end, each by the model its work needs.
    assert (implement.status, memory.status) == (200, 200)
    assert implement.headers["x-router-model"] == CODER
    assert memory.headers["x-router-model"] == FAST
    assert implement.done and memory.done
    # The cold loads (1.6 s and 1.5 s) were bridged with SSE comments.
    assert len(implement.comments) >= 3
    assert len(memory.comments) >= 3
    assert all(c == ": waiting for the model to load" for c in implement.comments)
    # The router asked for the coder's unload only once its request had finished.
    assert machine.unload_requests == [(CODER, 0)]
    assert implement.ended_at is not None and memory.first_content_at is not None
    assert memory.first_content_at > implement.ended_at
    loads = [(load.model, load.reason, load.evicted) for load in machine.loads]
    assert loads == [(CODER, "cold", []), (FAST, "cold", [])]
    assert ("qwen2.5-coder:32b", "keep_alive_0") in machine.unloads
    assert "evicting qwen2.5-coder:32b" in memory.headers["x-router-reason"]

    # The decision log has one line per routed request, with the load it caused.
    log_path = router.settings.config.logging.decision_log.path
    records = wait_for_records(log_path, 2)
    by_model = {record["model"]: record for record in records}
    assert by_model[CODER]["class"] == "implement"
    assert by_model[FAST]["class"] == "memory"
    assert by_model[FAST]["evicted"] == [CODER]
    assert by_model[FAST]["caused_load"] is True
    # The load the backend reported: the emulator's own measure of it (a busy machine
    # stretches the load's sleep, and both figures with it), not the nominal 1.5 s.
    fast_load = next(load for load in machine.loads if load.model == FAST)
    assert fast_load.duration_s >= 18.56 * LOAD_S_PER_GB * 0.99
    assert by_model[FAST]["load_s"] == pytest.approx(fast_load.duration_s, abs=0.25)
    assert all("prompt" not in record for record in records)


def wait_for_records(path: Path, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists() and len(records := read_records(path)) >= count:
            return records
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} decision records in {path}")


def test_queue_limit_answers_429_with_retry_after(
    machine: OllamaEmulator, make_router: RouterFactory
) -> None:
    router = start_router(
        make_router,
        machine,
        queue={"max_running_per_model": 1, "max_waiting_per_model": 1, "retry_after_s": 7},
    )
    machine.enqueue(*(Script(content="slow " * 10, token_delay_s=0.1) for _ in range(2)))
    body = {**IMPLEMENT, "model": CODER}
    first = Stream(router.base_url, body).start()
    second = Stream(router.base_url, body).start()
    # Both admitted: one running on Ollama, one waiting in the router's queue (its headers
    # and keepalive comments are out once it is admitted).
    deadline = time.monotonic() + 20
    while not (first.status and second.status and machine.in_flight(CODER)):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with httpx.Client(base_url=router.base_url, timeout=30) as client:
        third = client.post("/v1/chat/completions", json=body)
    assert third.status_code == 429
    assert third.headers["retry-after"] == "7"
    error = third.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "qwen2.5-coder:32b" in error["message"] and "limit 2" in error["message"]
    first.join()
    second.join()
    assert first.status == second.status == 200
    # The place is free again once they are done.
    with httpx.Client(base_url=router.base_url, timeout=30) as client:
        again = client.post("/v1/chat/completions", json={**body, "stream": False})
    assert again.status_code == 200


def test_warm_model_is_loaded_at_start_up(
    machine: OllamaEmulator, make_router: RouterFactory
) -> None:
    router: RouterThread = start_router(make_router, machine, warm_pinned=True)
    machine.wait_until(lambda: any(load.model == FAST for load in machine.loads), timeout=10)
    (load,) = machine.loads
    assert (load.model, load.num_ctx) == (FAST, 32768)
    warm = [r.json for r in machine.requests if r.path == "/api/chat"]
    assert warm == [
        {
            "model": FAST,
            "messages": [],
            "stream": False,
            "keep_alive": "24h",
            "options": {"num_ctx": 32768},
        }
    ]
    # A memory turn then runs on the warm model without a load.
    with httpx.Client(base_url=router.base_url, timeout=30) as client:
        reply = client.post("/v1/chat/completions", json={**MEMORY, "stream": False})
    assert reply.headers["x-router-model"] == FAST
    assert "resident" in reply.headers["x-router-reason"]
    assert len(machine.loads) == 1


def in_checkout(body: dict[str, Any], workspace: str) -> dict[str, Any]:
    """The same Cline request from a window open on another checkout."""
    body = copy.deepcopy(body)
    system = body["messages"][0]["content"]
    assert "/tmp/cline_capture/todo-app" in system
    body["messages"][0]["content"] = system.replace("/tmp/cline_capture/todo-app", workspace)
    return body


def test_two_windows_share_the_coder_while_one_works_on_it(
    machine: OllamaEmulator, make_router: RouterFactory
) -> None:
    """Window A is in its implementation loop on the coder (each answer edits a file); a
    window on another checkout, or a second task on A's own, reads its memory bank. That turn
    runs on the resident coder rather than evict it, since A would load it back at its next
    turn. Once A's answer hands the turn to its user, the same turn loads the fast model."""
    router = start_router(make_router, machine)
    edit = Script(tool_calls=[{"name": "editor", "arguments": {"path": "src/orders.py"}}])
    with httpx.Client(base_url=router.base_url, timeout=30) as client:

        def send(body: dict[str, Any], answer: Script) -> httpx.Response:
            # A's answers stream (their tool call arrives as deltas), the others' do not.
            machine.enqueue(answer)
            stream = body is IMPLEMENT
            reply = client.post("/v1/chat/completions", json={**body, "stream": stream})
            assert reply.status_code == 200, reply.text
            assert ("data: [DONE]" in reply.text) == stream
            return reply

        assert send(IMPLEMENT, edit).headers["x-router-model"] == CODER
        loads = len(machine.loads)
        brief = Script(content="The brief says: furniture.")
        for workspace in ("/home/dev/src/other-app", "/tmp/cline_capture/todo-app"):
            shared = send(in_checkout(MEMORY, workspace), brief)
            assert shared.headers["x-router-model"] == CODER
            reason = shared.headers["x-router-reason"]
            assert "another session is working with qwen2.5-coder:32b alongside" in reason
            assert send(IMPLEMENT, edit).headers["x-router-model"] == CODER
        assert len(machine.loads) == loads and machine.unload_requests == []
        # A's task is done: its answer waits for its user. A new task's memory turn now
        # loads (the windows above stay on the coder for the rest of their memory work).
        done = send(IMPLEMENT, Script(content="Fixed: the checkout test passes."))
        assert done.headers["x-router-model"] == CODER
        alone = send(in_checkout(MEMORY, "/home/dev/src/third-app"), brief)
        assert alone.headers["x-router-model"] == FAST
        assert "evicting qwen2.5-coder:32b" in alone.headers["x-router-reason"]
