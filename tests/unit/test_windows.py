"""Two Cline windows that open with the same words are two sessions from their first answers."""

from __future__ import annotations

from typing import Any

from memory_router.routing.decision import Decision
from memory_router.routing.engine import RoutingEngine, session_keys
from memory_router.routing.policy import Claim
from memory_router.settings import RoutingSettings
from memory_router.wire.openai import ChatCompletionRequest
from tests.unit.test_classify import CATALOG, CODER, FAST, native_call, request, user
from tests.unit.test_policy import resident, view

OPENING = "Follow your custom instructions, then: fix the failing billing test."
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
    for name in ("read_files", "editor")
]


def system(mode: str = "ACT") -> dict[str, Any]:
    text = f"You are Cline.\nCurrent Working Directory: /src/a\n{mode} MODE\n"
    return {"role": "system", "content": text}


def window(
    *turns: tuple[str, str, str, str], mode: str = "ACT", opening: str = OPENING
) -> ChatCompletionRequest:
    """A conversation that opens with ``opening``; each turn: call id, tool, arguments, result."""
    messages = [system(mode), user(opening)]
    for call_id, name, arguments, result in turns:
        messages.append(native_call(name, arguments, call_id))
        messages.append({"role": "tool", "tool_call_id": call_id, "content": result})
    return request(*messages, tools=TOOLS)


BANK = ("read_files", '{"files": ["memory-bank/activeContext.md"]}', "# Active context\n...")
EDIT = ("editor", '{"path": "app/billing.py", "new_text": "Decimal(0)"}', "edited app/billing.py")


def test_a_task_keeps_one_key_from_its_first_answer_on() -> None:
    first, opening = session_keys(window())
    assert first == opening  # no answer yet
    key, opened = session_keys(window(("call_a1", *BANK)))
    assert opened == first and key != first
    assert session_keys(window(("call_a1", *BANK), ("call_a2", *EDIT))) == (key, first)
    # The same task in Plan mode: another system prompt, the same task digits.
    plan, _ = session_keys(window(("call_a1", *BANK), mode="PLAN"))
    assert plan != key and plan[-8:] == key[-8:]


def test_two_windows_that_open_alike_part_at_their_first_answers() -> None:
    a, opening_a = session_keys(window(("call_a1", *BANK)))
    b, opening_b = session_keys(window(("call_b1", *BANK)))
    assert opening_a == opening_b and a != b
    # Answers in text (XML-style tools) part them by what they say.
    said = [system(), user(OPENING), {"role": "assistant", "content": "<read_file>a</read_file>"}]
    other = [*said[:2], {"role": "assistant", "content": "<read_file>b</read_file>"}]
    assert session_keys(request(*said))[0] != session_keys(request(*other))[0]


def test_a_window_keeps_its_model_from_its_first_request_on() -> None:
    the_view = view(resident(CODER, idle_s=1.0))
    engine = RoutingEngine(CATALOG, RoutingSettings(), 4096)
    fix = "Fix the failing test in tests/test_billing.py: app/billing.py must use Decimal."
    first = engine.decide(window(opening=fix), the_view)
    assert first.model == CODER and first.task == "implement"
    edit = window(("call_a1", *EDIT), opening=fix)
    second = engine.decide(edit, the_view)
    assert second.session != first.session and second.model == CODER
    assert second.signals["sticky"] == CODER  # its first request's choice
    assert "contested" not in second.signals  # its first request is its own, not alongside
    assert any("the session stays on" in reason for reason in second.reasons)


def test_a_second_window_that_opened_alike_shares_the_coder_with_the_first() -> None:
    """Window A edits on the coder; window B opened with the very same words and reads the
    memory bank. Before their first answers they are one session; from them on, two."""
    the_view = view(resident(CODER, idle_s=1.0))
    engine = RoutingEngine(CATALOG, RoutingSettings(), 4096)
    a = engine.decide(window(("call_a1", *EDIT)), the_view)
    assert a.model == CODER and a.session is not None
    engine.replied(a.session, working=True)  # it runs the edit and comes back
    b = engine.decide(window(("call_b1", *BANK)), the_view)
    assert b.task == "memory" and b.session != a.session
    assert b.signals["contested"] == [CODER] and b.model == CODER
    # Alone, the same request loads the fast model: the sharing is A's doing.
    alone = RoutingEngine(CATALOG, RoutingSettings(), 4096)
    assert alone.decide(window(("call_b1", *BANK)), the_view).model == FAST
    # A's own later requests never count A as alongside itself, nor does its opening.
    engine.replied(b.session or "", working=True)
    again = engine.decide(window(("call_a1", *EDIT), ("call_a2", *EDIT)), the_view)
    assert again.session == a.session and "contested" not in again.signals


def test_a_windows_first_request_stands_for_it_only_until_its_next() -> None:
    """A's first request (the memory read, on the fast model) is superseded once A goes on
    under its own key: it claims nothing for a task that starts later in the checkout."""
    the_view = view(resident(FAST, idle_s=1.0))
    engine = RoutingEngine(CATALOG, RoutingSettings(), 4096)
    opening = request(system(), user("Follow your custom instructions."), tools=TOOLS)
    read = engine.decide(opening, the_view)
    assert read.model == FAST and read.session is not None
    engine.replied(read.session, working=True)
    later = request(system(), user("What does the memory bank say about auth?"), tools=TOOLS)
    assert engine.contested("/src/a", "another task") == {FAST: [claim_of(read)]}
    goes_on = request(
        system(),
        user("Follow your custom instructions."),
        native_call(*BANK[:2], call_id="call_r1"),
        {"role": "tool", "tool_call_id": "call_r1", "content": BANK[2]},
        user("thanks, that is all"),
        tools=TOOLS,
    )
    done = engine.decide(goes_on, the_view)
    assert done.session != read.session
    engine.replied(done.session or "", working=False)  # it hands the turn to its user
    assert engine.contested("/src/a", "another task") == {}
    assert "contested" not in engine.decide(later, the_view).signals


def claim_of(decision: Decision) -> Claim:
    """The claim a session working on ``decision`` holds."""
    assert decision.task is not None
    return Claim(decision.task, frozenset(c.model for c in decision.candidates if c.fits))
