"""Memory-bank signals from tool calls: writes, reads, their results, pending reads."""

from __future__ import annotations

import json

from tests.unit.cline_requests import (
    ACTIVE,
    BANK,
    BRIEF,
    PROGRESS,
    TASK,
    WS,
    load,
    native_call,
    native_edit,
    native_task,
    ok,
    signals,
    xml_call,
    xml_task,
)

# --- writes ---------------------------------------------------------------------------------


def test_native_editor_on_the_bank_is_an_update() -> None:
    body = native_task("update memory bank", "native_turn2")
    native_edit(body, f"{WS}/memory-bank/progress.md", "done", old_text="in progress")
    found = signals(body)
    assert found.phase == "update"
    assert found.files_written == (PROGRESS,)
    assert found.files_read == BANK
    assert found.reasons == (
        'user said "update memory bank"',
        f"the latest turns write {PROGRESS} (editor)",
    )


def test_native_write_without_a_phrase_is_still_an_update() -> None:
    body = native_edit(
        load("native_turn2"), f"{WS}/memory-bank/activeContext.md", "# Active Context\n- todo"
    )
    found = signals(body)
    assert (found.phase, found.files_written) == ("update", (ACTIVE,))
    assert found.reasons == (TASK, f"the latest turns write {ACTIVE} (editor)")


def test_native_editor_naming_the_bank_in_its_text_only_is_not_a_bank_write() -> None:
    body = native_edit(
        native_task("document the CLI"),
        f"{WS}/README.md",
        "See memory-bank/progress.md for status.",
    )
    found = signals(body)
    assert (found.phase, found.files_written) == ("none", ())


def test_failed_native_write_is_not_a_written_file() -> None:
    body = native_edit(
        native_task("update memory bank"),
        f"{WS}/memory-bank/progress.md",
        "x",
        old_text="nope",
        success=False,
    )
    found = signals(body)
    assert (found.phase, found.files_written) == ("update", ())


def test_xml_write_to_file_on_the_bank_is_an_update() -> None:
    body = xml_call(
        load("xml_turn2"),
        "Updating.\n\n<write_to_file>\n<path>memory-bank/activeContext.md</path>\n<content>\n"
        "# Active Context\nSee memory-bank/progress.md\n</content>\n</write_to_file>",
        "[write_to_file for 'memory-bank/activeContext.md'] Result:\nThe content was "
        "successfully saved to memory-bank/activeContext.md.",
    )
    found = signals(body)
    assert found.phase == "update"
    assert found.files_written == (ACTIVE,)  # not progress.md, which the content names
    assert found.files_read == (BRIEF,)
    assert found.reasons == (TASK, f"the latest turns write {ACTIVE} (write_to_file)")


def test_denied_xml_replace_in_file_is_an_update_turn_but_no_written_file() -> None:
    body = xml_call(
        load("xml_turn2"),
        "<replace_in_file>\n<path>memory-bank/progress.md</path>\n<diff>\n------- SEARCH\n"
        "- done: in progress\n=======\n- done: done\n+++++++ REPLACE\n</diff>\n</replace_in_file>",
        "[replace_in_file for 'memory-bank/progress.md'] Result:\nThe user denied this operation.",
    )
    found = signals(body)
    assert (found.phase, found.files_written, found.files_read) == ("update", (), (BRIEF,))


def test_initialize_native() -> None:
    body = native_edit(
        native_task("initialize memory bank"),
        f"{WS}/memory-bank/projectbrief.md",
        "# Project Brief\n",
    )
    found = signals(body)
    assert (found.phase, found.files_written) == ("initialize", (BRIEF,))
    assert found.reasons == (
        'user said "initialize memory bank"',
        f"the latest turns write {BRIEF} (editor)",
    )


def test_initialize_xml() -> None:
    body = xml_call(
        xml_task("initialize memory bank"),
        "<write_to_file>\n<path>memory-bank/projectbrief.md</path>\n<content>\n# Project Brief\n"
        "</content>\n</write_to_file>",
        "[write_to_file for 'memory-bank/projectbrief.md'] Result:\nThe content was "
        "successfully saved to memory-bank/projectbrief.md.",
    )
    found = signals(body)
    assert (found.phase, found.files_written, found.files_read) == ("initialize", (BRIEF,), ())


def test_shell_reads_and_appends() -> None:
    body = native_call(
        native_task("what is left to do?"),
        "run_commands",
        {"commands": ["cat memory-bank/progress.md", "echo '- x' >> memory-bank/progress.md"]},
        ok("cat memory-bank/progress.md", "echo '- x' >> memory-bank/progress.md"),
    )
    found = signals(body)
    assert (found.phase, found.files_read, found.files_written) == (
        "update",
        (PROGRESS,),
        (PROGRESS,),
    )
    body = xml_call(
        xml_task("what is left to do?"),
        "<execute_command>\n<command>cat memory-bank/progress.md</command>\n"
        "<requires_approval>false</requires_approval>\n</execute_command>",
        "[execute_command for 'cat memory-bank/progress.md'] Result:\nCommand executed.\n"
        "Output:\n# Progress",
    )
    found = signals(body)
    assert (found.phase, found.files_read, found.files_written) == ("read", (PROGRESS,), ())


# --- reads, results, pending ----------------------------------------------------------------


def test_pending_native_read() -> None:
    body = load("native_turn2")
    body["messages"].pop()  # the tool result has not come back
    found = signals(body)
    assert (found.phase, found.pending_read, found.files_read) == ("read", BANK, ())


def test_pending_xml_read() -> None:
    body = load("xml_turn2")
    body["messages"].pop()
    found = signals(body)
    assert (found.phase, found.pending_read, found.files_read) == ("read", (BRIEF,), ())


def test_failed_reads_are_not_held() -> None:
    body = load("native_turn2")
    items = json.loads(body["messages"][3]["content"])
    items[2] = {"query": items[2]["query"], "result": "", "error": "ENOENT", "success": False}
    body["messages"][3]["content"] = json.dumps(items)
    assert signals(body).files_read == (BRIEF, ACTIVE)

    body["messages"][3]["content"] = '{"error":"Tool call read_files was rejected"}'
    assert (signals(body).files_read, signals(body).phase) == ((), "read")

    body = load("xml_turn2")
    body["messages"][3]["content"][0]["text"] = (
        "[read_file for 'memory-bank/projectbrief.md'] Result:\nThe tool execution failed with "
        "the following error:\n<error>\nFile not found\n</error>"
    )
    assert signals(body).files_read == ()


def test_only_the_tool_cline_ran_counts_in_xml() -> None:
    # Cline 2.x runs one tool a message; the second read below never happened.
    body = load("xml_turn2")
    body["messages"][2]["content"] += (
        "\n\n<read_file>\n<path>memory-bank/progress.md</path>\n</read_file>"
    )
    assert signals(body).files_read == (BRIEF,)


def test_paths() -> None:
    body = native_call(
        native_task("what do the notes say?"),
        "read_files",
        {
            "files": [
                {"path": "/elsewhere/memory-bank/notes.md"},
                {"path": f"{WS}/docs/memory-bank/api.md"},
                {"path": "./memory-bank/techContext.md", "start_line": 1, "end_line": 20},
                {"path": f"{WS}/src/memory-bank-utils/x.md"},
                {"path": f"{WS}/memory-bank/diagram.png"},
            ]
        },
        ok(
            "/elsewhere/memory-bank/notes.md",
            f"{WS}/docs/memory-bank/api.md",
            "./memory-bank/techContext.md",
            f"{WS}/src/memory-bank-utils/x.md",
            f"{WS}/memory-bank/diagram.png",
        ),
    )
    assert signals(body).files_read == (
        "memory-bank/notes.md",
        "docs/memory-bank/api.md",
        "memory-bank/techContext.md",
    )


def test_a_lookalike_folder_is_not_the_bank() -> None:
    body = native_call(
        native_task("what does the util doc say?"),
        "read_files",
        {"files": [{"path": f"{WS}/src/memory-bank-utils/x.md"}]},
        ok(f"{WS}/src/memory-bank-utils/x.md"),
    )
    found = signals(body)
    assert (found.phase, found.files_read, found.reasons) == ("none", (), ())


def test_listing_the_bank_folder_is_a_read_turn() -> None:
    body = xml_call(
        xml_task("what do you know about this project?"),
        "<list_files>\n<path>memory-bank</path>\n</list_files>",
        "[list_files for 'memory-bank'] Result:\nactiveContext.md\nprogress.md",
    )
    found = signals(body)
    assert (found.phase, found.files_read) == ("read", ())
    assert found.reasons == ("the latest turns read the memory bank (list_files)",)
