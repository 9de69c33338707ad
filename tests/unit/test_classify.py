"""Task classification from cheap signals (no embedding vote: that is tested with the engine)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from memory_router.domain import TaskClass
from memory_router.routing.classify import classify
from memory_router.routing.decision import Decision
from memory_router.routing.engine import ACTIVE_WINDOW, RoutingEngine
from memory_router.routing.policy import Claim, View, choose, passthrough
from memory_router.routing.signals import read_signals
from memory_router.settings import ModelSpec, RoutingSettings, load_settings
from memory_router.wire.openai import ChatCompletionRequest

REPO = Path(__file__).resolve().parents[2]
CATALOG: list[ModelSpec] = load_settings(REPO / "config", environ={}, env_file=None).models.models
FAST, CODER, LONG = "qwen3:30b-a3b", "qwen2.5-coder:32b", "llama4:16x17b"
EVERY = frozenset({FAST, CODER, LONG})

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}
]


def request(*messages: dict[str, Any], **extra: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "cline-memory-router", "messages": list(messages), **extra}
    )


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def native_call(name: str, arguments: str = "{}", call_id: str = "c1") -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        ],
    }


def task_of(req: ChatCompletionRequest) -> TaskClass:
    return classify(read_signals(req)).task


# --- classify ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Please update the memory bank with today's progress",
        "Read the memory-bank and continue",
        "follow your custom instructions",
        "Open memory-bank/activeContext.md",
        "<task>UPDATE MEMORY BANK</task>",
    ],
)
def test_memory_bank_phrases_are_memory(text: str) -> None:
    assert task_of(request(user(text))) == "memory"


def test_memory_bank_path_in_recent_tool_arguments_is_memory() -> None:
    req = request(
        user("carry on"),
        native_call("read_file", '{"path": "memory-bank/progress.md"}'),
        {"role": "tool", "tool_call_id": "c1", "content": "# Progress"},
        tools=TOOLS,
    )
    signals = read_signals(req)
    assert signals.memory_bank is True
    result = classify(signals)
    assert result.task == "memory"
    assert result.reasons == (
        "memory bank read",
        "the latest turns read memory-bank/progress.md (read_file)",
    )


def test_native_recent_edit_tool_call_is_implement() -> None:
    req = request(
        user("carry on"),
        native_call("write_to_file", '{"path": "a.py", "content": "x = 1"}'),
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        native_call("read_file", '{"path": "b.py"}', "c2"),
        {"role": "tool", "tool_call_id": "c2", "content": "..."},
        tools=TOOLS,
    )
    signals = read_signals(req)
    assert signals.tool_style == "native"
    assert signals.recent_tools == ("write_to_file", "read_file")
    result = classify(signals)
    assert result.task == "implement"
    assert result.reasons == ("the agent is editing (write_to_file)",)


def test_xml_recent_edit_tool_call_is_implement() -> None:
    req = request(
        {"role": "system", "content": "Tools:\n<read_file>\n<path>x</path>\n</read_file>"},
        user("make it work"),
        {
            "role": "assistant",
            "content": "I'll write it.\n<write_to_file>\n<path>a.py</path>\n</write_to_file>",
        },
        user("[write_to_file for 'a.py'] Result: saved"),
    )
    signals = read_signals(req)
    assert signals.tool_style == "xml"
    assert signals.recent_tools == ("write_to_file",)
    assert classify(signals).task == "implement"


def test_edit_tool_older_than_recent_window_is_ignored() -> None:
    old = [native_call("write_to_file", "{}")] + [user(f"chat {i}") for i in range(6)]
    req = request(user("hi"), *old)
    signals = read_signals(req)
    assert signals.recent_tools == ()
    assert classify(signals).task == "chat"


def test_read_only_recent_tools_are_not_implement() -> None:
    req = request(user("hello"), native_call("read_file"), tools=TOOLS)
    assert task_of(req) == "chat"


@pytest.mark.parametrize(
    "text",
    [
        "Generate a concise title for this conversation",
        "write a short summary of the task above",
        "Suggest three follow-up questions",
        "Please summarize this conversation",
        "create a commit message for these changes",
    ],
)
def test_housekeeping_prompts_are_meta(text: str) -> None:
    req = request(user(text))
    assert read_signals(req).housekeeping is True
    result = classify(read_signals(req))
    assert result.task == "meta"
    assert result.reasons == ("client housekeeping prompt (title, summary, follow-up)",)


def test_housekeeping_wording_with_tools_is_not_meta() -> None:
    req = request(user("Create a title component for the page"), tools=TOOLS)
    assert read_signals(req).housekeeping is False
    assert task_of(req) == "implement"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Explain why the cache misses on every request", "analyze"),
        ("Review the architecture and compare both designs", "analyze"),
        ("Investigate the slow start-up", "analyze"),
        ("Explain this code to me", "analyze"),
        ("Implement pagination for the list endpoint", "implement"),
        ("Fix the failing test in test_api.py", "implement"),
        ("Explain the bug and fix it", "implement"),  # both: implementation wins
        ("hello, how are you today?", "chat"),
        ("thanks!", "chat"),
    ],
)
def test_keyword_classification(text: str, expected: TaskClass) -> None:
    assert task_of(request(user(text))) == expected


def test_keywords_are_read_from_last_user_message_only() -> None:
    req = request(
        {"role": "system", "content": "You can implement, fix, write and edit code."},
        user("Implement the parser"),
        {"role": "assistant", "content": "Done."},
        user("thanks, looks good"),
    )
    assert task_of(req) == "chat"


def test_keywords_beyond_first_2000_characters_are_ignored() -> None:
    req = request(user("x" * 2000 + " implement this"))
    assert read_signals(req).implement_words == 0
    assert task_of(req) == "chat"


def test_housekeeping_beats_memory_bank() -> None:
    assert task_of(request(user("Generate a title for the memory bank update"))) == "meta"


def test_memory_beats_recent_edit() -> None:
    req = request(user("update memory bank"), native_call("write_to_file"))
    assert task_of(req) == "memory"


# --- passthrough and Decision --------------------------------------------------------------


def test_passthrough_runs_the_named_model_unrouted() -> None:
    spec = CATALOG[1]
    assert passthrough(spec) == Decision(
        model=CODER,
        backend="ollama",
        num_ctx=32768,
        keep_alive="30m",
        task=None,
        reasons=(f"client asked for {CODER}",),
        routed=False,
    )


def test_reason_header_is_ascii_single_line() -> None:
    decision = Decision(
        model="m",
        backend="ollama",
        num_ctx=1,
        keep_alive=None,
        task="chat",
        reasons=("caf\u00e9 \U0001f642", "line one\nline two", "x"),
    )
    header = decision.reason_header()
    assert header == "caf? ?; line one line two; x"
    assert header.isascii()


def test_reason_header_is_capped_at_512() -> None:
    decision = Decision("m", "b", None, None, None, reasons=("a" * 600,))
    assert decision.reason_header() == "a" * 512


def route(req: ChatCompletionRequest) -> Decision:
    return RoutingEngine(CATALOG, RoutingSettings(), 4096).decide(req, View())


def test_route_reason_header_from_real_decision() -> None:
    decision = route(request(user("update the memory bank")))
    assert decision.reason_header() == (
        'memory bank update; user said "update the memory bank"; '
        f"memory -> {FAST} (fit 0.95, no load, num_ctx 32768)"
    )


def test_reason_header_has_no_carriage_return_from_client_tool_names() -> None:
    req = request(
        user("go"),
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "a", "function": {"name": "write_to_file", "arguments": "{}"}},
                {"id": "b", "function": {"name": "evil\r\nX-Injected: 1", "arguments": "{}"}},
            ],
        },
    )
    header = route(req).reason_header()
    assert "\r" not in header
    assert "\n" not in header


def test_decision_as_dict_is_plain_data() -> None:
    decision = choose("chat", 10, 0, CATALOG, View(), RoutingSettings(), ["r"])
    data = decision.as_dict()
    assert data["model"] == FAST
    assert data["reasons"] == ("r", f"chat -> {FAST} (fit 0.90, no load, num_ctx 32768)")
    assert data["candidates"][0] == {
        "model": FAST,
        "backend": "ollama",
        "task_fit": 0.90,
        "num_ctx": 32768,
        "fits": True,
        "score": 0.90,
        "loads": False,
        "evicts": (),
        "load_s": 0.0,
        "cost": 0.0,
        "lacks": (),
    }


# --- who spoke last ------------------------------------------------------------------------


def edited() -> list[dict[str, Any]]:
    return [
        user("<task>\nAdd a --verbose flag\n</task>"),
        native_call("write_to_file", '{"path": "cli.py", "content": "x"}'),
        {"role": "tool", "tool_call_id": "c1", "content": "saved"},
    ]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("thanks, looks good", "chat"),
        ("looks good, go ahead", "implement"),
        ("why did you put it in cli.py rather than config.py? don't change anything", "analyze"),
        ("also handle -v as a short form", "implement"),
        ("write a commit message for this", "meta"),
        ("note in progress.md that the flag is done", "memory"),
    ],
)
def test_the_users_reply_after_edits_decides(reply: str, expected: TaskClass) -> None:
    req = request(*edited(), user(reply), tools=TOOLS)
    assert task_of(req) == expected


def test_mid_loop_edits_are_implement_whatever_the_task_said() -> None:
    assert task_of(request(*edited(), tools=TOOLS)) == "implement"


def test_mid_loop_reads_for_a_question_are_analysis() -> None:
    req = request(
        user("<task>\nwhat happens to queued jobs when the worker restarts?\n</task>"),
        native_call("read_file", '{"path": "worker.py"}'),
        {"role": "tool", "tool_call_id": "c1", "content": "def restart(): ..."},
        tools=TOOLS,
    )
    assert task_of(req) == "analyze"


def test_clines_condense_instruction_is_meta_even_mid_loop() -> None:
    req = request(
        *edited()[:2],
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": 'saved\n<explicit_instructions type="summarize_task">\nsummarize\n'
            "</explicit_instructions>",
        },
        tools=TOOLS,
    )
    assert task_of(req) == "meta"


def test_a_pasted_trace_is_judged_by_the_words_around_it() -> None:
    trace = "Traceback (most recent call last):\n" + '  File "a.py", line 1\n' * 12
    assert task_of(request(user(f"what is going on here?\n\n{trace}"))) == "analyze"
    assert task_of(request(user(f"fix this crash\n\n{trace}"))) == "implement"


def test_naming_the_bank_in_a_code_change_is_not_memory_work() -> None:
    text = "fix the crash in the indexer when a memory-bank file is saved twice"
    assert task_of(request(user(text))) == "implement"
    assert task_of(request(user("what does the memory bank say about auth?"))) == "memory"


def test_a_condensed_read_request_lapses_after_other_work() -> None:
    req = request(
        user("<task>\nFollow your custom instructions. Add a --force flag to `sync`.\n</task>"),
        {"role": "assistant", "content": "Summary so far: the bank was read; cli.py holds sync."},
        native_call("write_to_file", '{"path": "cli.py", "content": "x"}', "c1"),
        {"role": "tool", "tool_call_id": "c1", "content": "saved"},
        native_call("execute_command", '{"command": "pytest"}', "c2"),
        {"role": "tool", "tool_call_id": "c2", "content": "3 passed"},
        tools=TOOLS,
    )
    assert task_of(req) == "implement"


def test_a_condensed_read_request_lapses_after_one_edit() -> None:
    """Cline's condensing keeps the task and the last turn: one edit of a source file shows the
    agent is past the start of the task, where the bank is read."""
    task = user("<task>\nFollow your custom instructions. Add a --force flag to `sync`.\n</task>")
    summary = {
        "role": "assistant",
        "content": "Summary so far: the bank was read; cli.py holds sync.",
    }
    edit = native_call("editor", '{"command": "str_replace", "path": "cli.py"}', "c1")
    req = request(
        task, summary, edit, {"role": "tool", "tool_call_id": "c1", "content": "ok"}, tools=TOOLS
    )
    assert task_of(req) == "implement"
    xml = {
        "role": "assistant",
        "content": "<replace_in_file>\n<path>cli.py</path>\n<diff>x</diff>\n</replace_in_file>",
    }
    done = user("[replace_in_file for 'cli.py'] Result:\nsaved")
    assert task_of(request(task, summary, xml, done)) == "implement"
    # One look at a source file is not enough: the agent may still be about to read the bank.
    look = native_call("read_file", '{"path": "cli.py"}', "c1")
    req = request(
        task, summary, look, {"role": "tool", "tool_call_id": "c1", "content": "x"}, tools=TOOLS
    )
    assert task_of(req) == "memory"


CONTINUED = (
    "\nThis session is being continued from a previous conversation that ran out of context. "
    "The conversation is summarized below:\n1. Primary Request: add --force to sync...\n\n"
    "Please continue the conversation from where we left it off without asking the user any "
    "further questions. Continue with the last task that you were asked to work on.\n"
)


def test_after_clines_condensing_the_read_request_has_lapsed() -> None:
    """Cline's summarize_task keeps the task and its first answer (here: reading the bank) and
    answers the summary call with its continuation prompt; the agent goes on with the task."""
    task = user("<task>\nFollow your custom instructions. Add a --force flag to `sync`.\n</task>")
    first = native_call("read_file", '{"path": "memory-bank/activeContext.md"}', "c0")
    summary = native_call("summarize_task", '{"context": "1. Primary Request: ..."}', "c9")
    native = request(
        task,
        first,
        summary,
        {"role": "tool", "tool_call_id": "c9", "content": CONTINUED},
        tools=TOOLS,
    )
    assert task_of(native) == "implement"
    xml = request(
        task,
        {
            "role": "assistant",
            "content": "<read_file>\n<path>memory-bank/activeContext.md</path>\n</read_file>",
        },
        {
            "role": "assistant",
            "content": "<summarize_task>\n<context>...</context>\n</summarize_task>",
        },
        user("[summarize_task] Result:" + CONTINUED),
    )
    assert task_of(xml) == "implement"
    # Before the summary, the same first answer leaves the read request standing.
    assert task_of(request(task, first, tools=TOOLS)) == "memory"


def test_an_imperative_after_a_comma_is_not_small_talk() -> None:
    assert task_of(request(user("good catch, fix it"))) == "implement"


def test_the_bank_rules_of_the_system_prompt_never_decide_the_class() -> None:
    # The memory-bank rules tell the agent to read the bank at the start of every task; what
    # the user asked is still the task: a feature is implementation, with the rules or not.
    rules = {"role": "system", "content": "You are Cline.\n# Rules\n# Cline's Memory Bank\n..."}
    req = request(rules, user("<task>\nAdd a --force flag to sync\n</task>"), tools=TOOLS)
    decision = route(req)
    assert decision.signals["class"] == decision.task == "implement"
    assert decision.model == CODER
    assert not any("memory bank first" in reason for reason in decision.reasons)
    assert route(request(user("Add a --force flag to sync"), tools=TOOLS)).task == "implement"


def in_workspace(path: str, text: str) -> ChatCompletionRequest:
    system = {"role": "system", "content": f"You are Cline.\nCurrent Working Directory: {path}\n"}
    return request(system, user(f"<task>\n{text}\n</task>"), tools=TOOLS)


def shared_coder(decision: Decision, task: TaskClass) -> Decision:
    """``decision`` as if its session's ``task`` work had run on the coder it shared."""
    fit = {spec.name: spec.task_fit[task] for spec in CATALOG}
    candidates = tuple(replace(c, task_fit=fit[c.model]) for c in decision.candidates)
    return replace(decision, task=task, model=CODER, candidates=candidates)


def test_a_model_another_workspace_works_with_is_contested_while_it_works() -> None:
    now = [0.0]
    engine = RoutingEngine(CATALOG, RoutingSettings(), 4096, clock=lambda: now[0])
    fix = "Refactor app/billing.py to use Decimal and fix the failing test"
    first = engine.decide(in_workspace("/src/a", fix), View())
    assert first.model == CODER and first.task == "implement"
    # Contested for another workspace, never for its own.
    assert engine.contested("/src/b") == {CODER: [Claim("implement", EVERY)]}
    assert engine.contested("/src/a") == {}
    assert engine.contested(None) == {}
    # Memory work elsewhere on the coder (it shared it) does not claim the coder for itself.
    engine.remember("b", shared_coder(first, "memory"), "/src/b")
    assert engine.contested("/src/a") == {}
    assert engine.contested("/src/c") == {CODER: [Claim("implement", EVERY)]}
    # A session whose context only llama4 holds claims llama4, best or not for its work.
    only_long = tuple(replace(c, fits=c.model == LONG) for c in first.candidates)
    engine.remember("d", replace(first, model=LONG, candidates=only_long), "/src/d")
    assert engine.contested("/src/c")[LONG] == [Claim("implement", frozenset({LONG}))]
    # A session idle past session_idle_s, or pushed out by eight later requests, has left.
    now[0] = RoutingSettings().session_idle_s + 1
    assert engine.contested("/src/b") == {}
    now[0] = 0.0
    for _ in range(ACTIVE_WINDOW):
        engine.remember("b", shared_coder(first, "memory"), "/src/b")
    assert engine.contested("/src/b") == {}
    assert engine.contested("/src/c") == {}


def test_two_sessions_on_one_checkout_contest_only_while_the_other_works() -> None:
    engine = RoutingEngine(CATALOG, RoutingSettings(), 4096)
    fix = "Refactor app/billing.py to use Decimal and fix the failing test"
    implementing = engine.decide(in_workspace("/src/a", fix), View())
    assert implementing.model == CODER
    x = implementing.session
    assert x is not None
    # Task y starts in the same checkout while x's request is in flight: a second window.
    assert engine.contested("/src/a", "y") == {CODER: [Claim("implement", EVERY)]}
    # x's answer called a tool Cline runs by itself: x comes back without its user.
    engine.replied(x, working=True)
    assert engine.contested("/src/a", "y") == {CODER: [Claim("implement", EVERY)]}
    # ... however many requests y sends meanwhile (x's tool may run for a while).
    engine.remember("y", shared_coder(implementing, "memory"), "/src/a")
    engine.remember("y", shared_coder(implementing, "memory"), "/src/a")
    assert engine.contested("/src/a", "y") == {CODER: [Claim("implement", EVERY)]}
    # x's answer hands the turn to its user (the task's result, a question): x waits, and
    # a task started after it is one developer's next task, not a second window.
    engine.replied(x, working=False)
    assert engine.contested("/src/a", "y") == {}
    assert engine.contested("/src/a", "z") == {}
    # x's user answers: x works again. y's memory work claims nothing from x.
    engine.remember(x, implementing, "/src/a")
    assert engine.contested("/src/a", "y") == {CODER: [Claim("implement", EVERY)]}
    assert engine.contested("/src/a", x) == {}
    # Only a session's latest answer counts: y's waiting answer is y's, not x's.
    engine.replied("y", working=False)
    assert engine.contested("/src/a", "y") == {CODER: [Claim("implement", EVERY)]}


def test_a_session_waiting_for_its_user_claims_nothing_in_another_workspace() -> None:
    engine = RoutingEngine(CATALOG, RoutingSettings(), 4096)
    fix = "Refactor app/billing.py to use Decimal and fix the failing test"
    implementing = engine.decide(in_workspace("/src/a", fix), View())
    x = implementing.session
    assert x is not None
    engine.replied(x, working=True)
    assert engine.contested("/src/b", "y") == {CODER: [Claim("implement", EVERY)]}
    engine.replied(x, working=False)  # its result is shown; the developer reads it
    assert engine.contested("/src/b", "y") == {}
    engine.replied("unknown", working=True)  # no request of that session: nothing to note
    assert engine.contested("/src/b", "y") == {}


def test_plan_and_act_of_one_task_are_never_alongside_each_other() -> None:
    """Plan and Act prompts differ, so a task in each mode is two sessions; their keys end in
    the same digits (the first user message), and flipping modes is not taking turns."""
    engine = RoutingEngine(CATALOG, RoutingSettings(), 4096)
    fix = "Refactor app/billing.py to use Decimal and fix the failing test"
    acting = engine.decide(in_workspace("/src/a", fix), View())
    act = acting.session
    assert act is not None and acting.model == CODER
    plan = "0" * 12 + act[-8:]  # the same task under the Plan prompt
    other = "0" * 12 + "f" * 8  # another task under the Plan prompt
    for key in (plan, other):
        engine.remember(key, shared_coder(acting, "memory"), "/src/a")
    engine.remember(act, acting, "/src/a")  # act answers after both
    assert engine.contested("/src/a", plan) == {}
    assert engine.contested("/src/a", other) == {CODER: [Claim("implement", EVERY)]}
