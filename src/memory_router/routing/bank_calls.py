"""Tool calls and their results, as far as Cline's memory bank is concerned.

Both tool styles: native ``tool_calls`` (JSON arguments) answered by ``role: "tool"`` messages,
and XML tool tags in the assistant's text answered by ``[tool for 'path'] Result:`` user
messages. A call reads or writes bank files by path, by a shell command (``cat``, a redirect,
``tee``) or by a patch; a result confirms it unless it says the call failed. Paths are relative
to the workspace; a bank outside it is reported from its ``memory-bank/`` folder on. Pure: no
I/O. :mod:`.memory_signals` puts these together into the turn's phase.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import NamedTuple

__all__ = [
    "BANK",
    "BANK_FOLDERS",
    "COMMAND_TOOLS",
    "NEUTRAL_TOOLS",
    "READ_TOOLS",
    "WRITE_TOOLS",
    "XML_EDIT",
    "XML_TOOLS",
    "XML_WORK",
    "BankCall",
    "bank_path",
    "has_bank",
    "native_call",
    "native_ok",
    "xml_calls",
    "xml_ok",
]

BANK = "memory-bank"
BANK_FOLDERS = ("memory-bank", "cline_docs")
"""The bank's folder: Cline's memory bank, and the older ``cline_docs/`` it was kept in."""


def has_bank(text: str) -> bool:
    """Whether ``text`` names a memory-bank folder at all (a cheap look before parsing)."""
    return any(folder in text for folder in BANK_FOLDERS)


def _bank_index(parts: list[str]) -> int | None:
    """The index of the last memory-bank folder among a path's parts, if any."""
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in BANK_FOLDERS:
            return i
    return None


_XML_FAILED = (
    "The user denied this operation",
    "The tool execution failed",
    "is blocked by the .clineignore",
    "Missing value for required parameter",
    "Error reading file",
    "[[NOTE] This file read has been removed",
)


def _names(names: str) -> frozenset[str]:
    return frozenset(names.split())


READ_TOOLS = _names("read_files read_file read_many_files view_file open_file")
WRITE_TOOLS = _names(
    "editor write_to_file replace_in_file apply_diff apply_patch insert_content"
    " search_and_replace edit_file create_file write_file"
)
COMMAND_TOOLS = _names("run_commands execute_command run_command bash shell")
# Conversation tools: no file work, so they neither touch the bank nor move the agent on.
NEUTRAL_TOOLS = _names(
    "ask_question ask_followup_question attempt_completion submit_and_exit plan_mode_respond"
    " act_mode_respond switch_to_act_mode switch_mode new_task condense summarize_task"
    " report_bug focus_chain update_todo_list"
)
_KNOWN_TOOLS = READ_TOOLS | WRITE_TOOLS | COMMAND_TOOLS | NEUTRAL_TOOLS
XML_TOOLS = _KNOWN_TOOLS | _names(
    "list_files search_files list_code_definition_names codebase_search browser_action"
    " use_mcp_tool access_mcp_resource load_mcp_documentation web_fetch web_search new_rule"
    " fetch_instructions"
)
XML_WORK = re.compile(r"<(" + "|".join(sorted(XML_TOOLS - NEUTRAL_TOOLS)) + r")>")
XML_EDIT = re.compile(r"<(" + "|".join(sorted(XML_TOOLS & WRITE_TOOLS)) + r")>")
_XML_BLOCK = re.compile(r"<(" + "|".join(sorted(XML_TOOLS)) + r")>(.*?)</\1>", re.DOTALL)
_XML_PATH = re.compile(r"<path>\s*(.*?)\s*</path>", re.DOTALL)
_XML_COMMAND = re.compile(r"<command>(.*?)</command>", re.DOTALL)
_PATCH_FILE = re.compile(r"^\*\*\* (?:Add|Update|Delete) File: (.+?)\s*$", re.MULTILINE)
_PATH_KEYS = ("path", "file_path", "filePath", "absolute_path", "absolutePath", "target_file")
_SHELL_TOKEN = re.compile(
    r"[^\s\"'`<>|;&()=,]*(?:memory-bank|cline_docs)(?:[/\\][^\s\"'`<>|;&()=,]*)?"
)
_SHELL_WRITE = re.compile(r"(?:>>?|\btee\s+(?:-a\s+)?)\s*[\"']?([^\s\"'`;&|<>]+)")
_SHELL_READER = re.compile(r"\s*(?:cat|head|tail|less|more|bat|nl|type|Get-Content)\b")


class BankCall(NamedTuple):
    """One tool call as far as the memory bank is concerned."""

    message: int  # index of the assistant message
    tool: str
    call_id: str | None  # native calls only
    target: str  # the path or command Cline echoes in an XML result header
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    bank: bool  # touches the memory bank at all (a file, the folder, a search in it)
    neutral: bool  # a conversation tool


def bank_path(raw: str, workspace: str | None) -> str | None:
    """``raw`` relative to the workspace when it lies in a memory-bank folder, else None."""
    path = raw.strip().strip("\"'`").replace("\\", "/")
    if not has_bank(path):
        return None
    path = path.removeprefix("file://")
    if workspace:
        root = workspace.replace("\\", "/").rstrip("/") + "/"
        path = path.removeprefix(root)
    if "./" in path or "//" in path or path.endswith("/."):
        path = posixpath.normpath(path)
    parts = path.split("/")
    index = _bank_index(parts)
    if index is None:  # e.g. src/memory-bank-utils/x.md
        return None
    if path.startswith(("/", "~", "..")) or path[1:2] == ":":
        # Not under the workspace (or none is known): report from the memory-bank folder on.
        parts = parts[index:]
    return "/".join(parts)


def _is_file(path: str) -> bool:
    return path.endswith(".md") and not any(char in path for char in "*?[")


def _shell(command: str, workspace: str | None) -> tuple[list[str], list[str]]:
    """Memory-bank files a shell command writes (redirect, tee) and reads (cat and kin)."""
    writes = [
        path
        for match in _SHELL_WRITE.finditer(command)
        if (path := bank_path(match.group(1), workspace)) and _is_file(path)
    ]
    reads: list[str] = []
    if _SHELL_READER.match(command):
        for token in _SHELL_TOKEN.findall(command):
            path = bank_path(token, workspace)
            if path and _is_file(path) and path not in writes:
                reads.append(path)
    return reads, writes


def _call(
    message: int,
    tool: str,
    call_id: str | None,
    paths: list[str],
    commands: list[str],
    workspace: str | None,
    mentions_bank: bool,
) -> BankCall:
    reads: list[str] = []
    writes: list[str] = []
    bank = False
    neutral = tool in NEUTRAL_TOOLS
    if not neutral:
        for command in commands:
            if has_bank(command):
                bank = True
                read, written = _shell(command, workspace)
                reads += read
                writes += written
        for raw in paths:
            path = bank_path(raw, workspace)
            if path is not None:
                bank = True
                if _is_file(path) and tool in WRITE_TOOLS:
                    writes.append(path)
                elif _is_file(path) and tool in READ_TOOLS:
                    reads.append(path)
        # Some other tool (a search, a listing, a sub-agent) aimed at the memory bank.
        bank = bank or (mentions_bank and tool not in _KNOWN_TOOLS)
    target = paths[0] if paths else commands[0] if commands else ""
    return BankCall(message, tool, call_id, target, tuple(reads), tuple(writes), bank, neutral)


def native_call(
    message: int, tool: str, call_id: str | None, arguments: str, workspace: str | None
) -> BankCall:
    try:
        args = json.loads(arguments)
    except ValueError:
        args = None
    if not isinstance(args, dict):
        args = {}
    paths: list[str] = []
    commands: list[str] = []
    if tool in COMMAND_TOOLS:
        listed = args.get("commands")
        commands = [c for c in listed if isinstance(c, str)] if isinstance(listed, list) else []
        commands += [c] if isinstance(c := args.get("command"), str) else []
    elif tool == "apply_patch":
        patch = next((v for v in args.values() if isinstance(v, str) and "***" in v), "")
        paths = _PATCH_FILE.findall(patch)
    else:
        # A writer's target only: its new text may well name other bank files.
        paths = [v for k in _PATH_KEYS if isinstance(v := args.get(k), str)]
        items = [] if tool in WRITE_TOOLS else args.get("files", args.get("paths"))
        for item in items if isinstance(items, list) else ():
            if isinstance(item, str):
                paths.append(item)
            elif isinstance(item, dict):
                paths += [v for k in _PATH_KEYS if isinstance(v := item.get(k), str)]
    return _call(message, tool, call_id, paths, commands, workspace, True)


def xml_calls(message: int, text: str, workspace: str | None) -> list[BankCall]:
    calls: list[BankCall] = []
    for match in _XML_BLOCK.finditer(text):
        tool, body = match.group(1), match.group(2)
        paths = _XML_PATH.findall(body)
        if tool in WRITE_TOOLS:
            paths = paths[:1]  # the target; the content may quote other paths
        commands = _XML_COMMAND.findall(body) if tool in COMMAND_TOOLS else []
        calls.append(_call(message, tool, None, paths, commands, workspace, has_bank(body)))
    return calls


def native_ok(call: BankCall, result: str, workspace: str | None) -> set[str]:
    """The bank files a native result confirms (cline 3.x answers ``{query, success}`` items)."""
    stripped = result.lstrip()
    if stripped.startswith('{"error"'):
        return set()
    try:
        value = json.loads(stripped) if stripped[:1] in ("[", "{") else None
    except ValueError:
        value = None
    items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    if not items or not all(isinstance(item, dict) and "success" in item for item in items):
        return set(call.reads + call.writes)
    confirmed: set[str] = set()
    for item in items:
        query = str(item.get("query", ""))
        if call.tool in COMMAND_TOOLS:  # one item a command, the command as its query
            if item.get("success") is True:
                read, written = _shell(query, workspace)
                confirmed.update(read + written)
            continue
        query = query.removeprefix("edit:").removeprefix("insert:")  # the editor's queries
        if item.get("success") is True and (path := bank_path(query, workspace)):
            confirmed.add(path)
    return confirmed


def xml_ok(call: BankCall, result: str, workspace: str | None) -> bool:
    """Whether the next user message shows the XML tool ran without failing."""
    header = f"[{call.tool} for '"
    chosen, start = -1, 0
    while (at := result.find(header, start)) >= 0:
        close = result.find("'] Result:", at)
        if close < 0:
            break
        named = result[at + len(header) : close]
        if named == call.target or bank_path(named, workspace) == bank_path(call.target, workspace):
            chosen = close
            break
        start = close
    if chosen < 0:
        return False  # not run: Cline runs one tool a message, or the task was interrupted
    section = result[chosen : chosen + 400]
    return not any(marker in section for marker in _XML_FAILED)
