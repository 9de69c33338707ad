"""Tool calls checked against the schema the client sent, with unambiguous faults repaired.

Local models get tool calls slightly wrong in a few typical ways: the arguments object encoded
twice as a JSON string, a trailing comma, a markdown code fence around the JSON, or nothing at
all for a tool that takes no arguments. ``ToolCheck`` sits on one answer's event stream,
collects each call whole, repairs those faults when the result then fits the tool's
``parameters`` schema, and counts the rest. A call it cannot vouch for is passed on as it came:
never dropped, never invented. Pure: no I/O, and it never raises on what a model sends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..events import Event, ToolCallDelta
from ..wire.openai import Tool

__all__ = ["ToolCheck"]

_MAX_PROBLEMS = 5
_MAX_MESSAGE = 160
_FENCE = re.compile(r"\A\s*```[A-Za-z0-9_-]*\s*(.*?)\s*```\s*\Z", re.DOTALL)
_NEXT = re.compile(r"\s*(\S)")  # the next character that is not whitespace
_UNCHECKED = object()  # the cached "validator" of a tool whose schema cannot be used


@dataclass(slots=True)
class _Pending:
    index: int
    id: str | None
    name: str | None
    parts: list[str] = field(default_factory=list)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _tool_spec(tool: Tool | Mapping[str, Any]) -> tuple[str, Any] | None:
    """The name and ``parameters`` of an OpenAI tool given as a model or a plain dict."""
    function = tool.get("function") if isinstance(tool, Mapping) else tool.function
    if isinstance(function, Mapping):
        name, parameters = function.get("name"), function.get("parameters")
    else:
        name, parameters = getattr(function, "name", None), getattr(function, "parameters", None)
    return (name, parameters) if isinstance(name, str) and name else None


def _without_trailing_commas(text: str) -> str:
    """``text`` without the commas that stand right before a ``}`` or ``]`` (outside strings)."""
    out: list[str] = []
    in_string = escaped = False
    for position, char in enumerate(text):
        if escaped:
            escaped = False
        elif in_string:
            escaped = char == "\\"
            in_string = char != '"'
        elif char == '"':
            in_string = True
        elif char == "," and (after := _NEXT.match(text, position + 1)) and after[1] in "}]":
            continue
        out.append(char)
    return "".join(out)


def _parse(raw: str) -> tuple[Any, list[str]]:
    """The arguments' value and the repairs it took; raises ``ValueError`` if not JSON."""
    repairs: list[str] = []
    text = raw
    if not text.strip():
        return {}, ["empty"]
    if fence := _FENCE.match(text):
        text = fence.group(1)
        repairs.append("fenced")
    try:
        value = json.loads(text)
    except ValueError:
        fixed = _without_trailing_commas(text)
        if fixed == text:
            raise
        value = json.loads(fixed)
        repairs.append("trailing_comma")
    if isinstance(value, str):
        try:
            inner = json.loads(value)
        except ValueError:
            return value, repairs
        if isinstance(inner, dict):
            return inner, [*repairs, "double_encoded"]
    return value, repairs


def _compile(schema: Any) -> Any:
    """A jsonschema validator for ``schema``, or ``_UNCHECKED`` if the schema is unusable."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
    from jsonschema.validators import validator_for  # type: ignore[import-untyped]

    if schema is None:
        schema = {"type": "object"}
    if not isinstance(schema, Mapping | bool):
        return _UNCHECKED
    try:
        cls = validator_for(schema, default=Draft202012Validator)
        cls.check_schema(schema)
        return cls(schema)
    except Exception:  # SchemaError, or anything a hostile schema makes jsonschema do
        return _UNCHECKED


def _first_error(validator: Any, value: Any) -> str | None:
    """The most telling way ``value`` breaks the validator's schema, or None if it fits."""
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

    error = best_match(validator.iter_errors(value))
    if error is None:
        return None
    return f"{error.json_path}: {error.message}" if error.path else str(error.message)


class ToolCheck:
    """Checks and repairs the tool calls of one answer; feed it every event in order."""

    def __init__(self, schemas: Mapping[str, Any]) -> None:
        self._schemas = dict(schemas)  # tool name -> its ``parameters`` schema
        self._validators: dict[str, Any] = {}
        self._pending: dict[int, _Pending] = {}
        self._checked = self._invalid = self._unchecked = 0
        self._repaired: dict[str, int] = {}
        self._problems: list[str] = []

    @classmethod
    def for_request(cls, tools: Sequence[Tool | Mapping[str, Any]] | None) -> ToolCheck | None:
        """A check for a request's ``tools``; None when it has none, so plain chat pays nothing."""
        if not tools:
            return None
        schemas: dict[str, Any] = {}
        for tool in tools:
            if spec := _tool_spec(tool):
                schemas.setdefault(*spec)
        return cls(schemas)

    def see(self, event: Event) -> list[Event]:
        """The events to pass on now that ``event`` came.

        Tool-call pieces are held until their call is complete, which is when anything else
        comes (text, reasoning or the ``Finish``); every other event passes at once, after the
        calls it completes. Calls are held together, so pieces of parallel calls may interleave.
        """
        if not isinstance(event, ToolCallDelta):
            return [*self.flush(), event]
        pending = self._pending.get(event.index)
        if pending is None:
            pending = self._pending[event.index] = _Pending(event.index, event.id, event.name)
        pending.id = pending.id or event.id
        pending.name = pending.name or event.name
        pending.parts.append(event.arguments)
        return []

    def flush(self) -> list[Event]:
        """The held calls, checked and whole; for a stream that ends without a ``Finish``."""
        done: list[Event] = [self._check(pending) for pending in self._pending.values()]
        self._pending.clear()
        return done

    def report(self) -> dict[str, Any]:
        """Counts for the request log, and the first few problems in words."""
        return {
            "checked": self._checked,
            "repaired": dict(self._repaired),
            "invalid": self._invalid,
            "unchecked": self._unchecked,
            "problems": list(self._problems),
        }

    def _check(self, call: _Pending) -> ToolCallDelta:
        self._checked += 1
        raw = "".join(call.parts)
        whole = ToolCallDelta(index=call.index, id=call.id, name=call.name, arguments=raw)
        name = call.name or ""
        if name not in self._schemas:
            return self._fault(whole, f"unknown tool {call.name!r}")
        if name not in self._validators:
            self._validators[name] = _compile(self._schemas[name])
        validator = self._validators[name]
        if validator is _UNCHECKED:
            self._unchecked += 1
            self._note(f"{name}: schema unusable, call not checked")
            return whole
        try:
            value, repairs = _parse(raw)
        except (ValueError, RecursionError) as error:  # RecursionError: absurdly deep JSON
            reason = error.msg if isinstance(error, json.JSONDecodeError) else type(error).__name__
            return self._fault(whole, f"{name}: arguments are not JSON ({reason})")
        if not isinstance(value, dict):
            return self._fault(whole, f"{name}: arguments are not a JSON object")
        try:
            mismatch = _first_error(validator, value)
        except Exception:  # an unresolvable $ref or the like: the schema cannot judge
            self._unchecked += 1
            self._note(f"{name}: schema could not be applied, call not checked")
            return whole
        if mismatch is not None:
            return self._fault(whole, f"{name}: {mismatch}")
        if not repairs:
            return whole
        for kind in repairs:
            self._repaired[kind] = self._repaired.get(kind, 0) + 1
        self._note(f"{name}: repaired {', '.join(repairs)}")
        arguments = json.dumps(value, ensure_ascii=False)
        return ToolCallDelta(index=call.index, id=call.id, name=call.name, arguments=arguments)

    def _fault(self, whole: ToolCallDelta, problem: str) -> ToolCallDelta:
        self._invalid += 1
        self._note(problem)
        return whole

    def _note(self, problem: str) -> None:
        if len(self._problems) < _MAX_PROBLEMS:
            self._problems.append(_short(problem))
