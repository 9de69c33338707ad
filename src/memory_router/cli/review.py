"""``memory-router review`` and ``learn``: the loop from real use.

``review`` reads the decision log and lists suspected misroutes with why each is suspected
(``misroutes``); ``--export`` writes them as candidate examples for the user to confirm.
``learn`` adds the confirmed ones to the user's own examples and retrains (``learn``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import RouterError
from ..locations import user_data_dir
from ..misroutes import Suspect, counts, find_misroutes, parse_duration, recent
from ..settings import load_settings

__all__ = ["learn", "review"]


def _log_path(log: Path | None, config_dir: Path | None) -> Path:
    if log is not None:
        return log
    decisions = load_settings(config_dir).config.logging.decision_log
    return decisions.path


def _summary(records: int, suspects: list[Suspect]) -> str:
    by_kind = {kind: n for kind, n in counts(suspects).items() if n}
    kinds = ", ".join(f"{kind} {n}" for kind, n in by_kind.items())
    return f"{records} records read, {len(suspects)} suspected" + (f": {kinds}" if kinds else "")


def _table(suspects: list[Suspect]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("request", no_wrap=True)
    for title in ("class → model", "why suspected", "proposed"):
        table.add_column(title)
    for suspect in suspects:
        record = suspect.record
        ts = str(record.get("ts") or "")
        table.add_row(
            ts[5:19].replace("T", " "),
            suspect.request_id or "-",
            f"{record.get('class') or 'direct'} → {record.get('model')}",
            "\n".join(f"[bold]{r.kind}[/]: {r.detail}" for r in suspect.reasons),
            suspect.proposed_class or "",
        )
    Console().print(table)


def review(
    log: Annotated[
        Path | None,
        typer.Option(
            "--log",
            help="The decision log (default: logging.decision_log.path from the settings); "
            "its rotated files are read too.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, not a table.")] = False,
    since: Annotated[
        str | None,
        typer.Option(help="Only records this recent: e.g. 30m, 2h, 7d, 1w."),
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            help="Also write the suspects as candidate examples (JSONL) to confirm, then "
            "`memory-router learn FILE`.",
        ),
    ] = None,
    config_dir: Annotated[
        Path | None, typer.Option("--config-dir", help="Where the settings are read from.")
    ] = None,
) -> None:
    """List suspected misroutes in the decision log, each with why it is suspected."""
    from ..decision_log import read_records

    path = _log_path(log, config_dir)
    if not path.exists():
        raise RouterError(f"no decision log at {path}: pass --log, or route some requests first")
    records = read_records(path)
    if since is not None:
        try:
            seconds = parse_duration(since)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--since") from None
        records = recent(records, seconds, time.time())
    suspects = find_misroutes(records)
    if export is not None:
        lines = [json.dumps(s.candidate(), ensure_ascii=False) for s in suspects]
        export.parent.mkdir(parents=True, exist_ok=True)
        export.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    summary = _summary(len(records), suspects)
    if as_json:
        body: dict[str, Any] = {
            "log": str(path),
            "records": len(records),
            "counts": counts(suspects),
            "suspects": [s.as_dict() for s in suspects],
        }
        typer.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    if suspects:
        _table(suspects)
    typer.echo(summary)
    if export is not None:
        typer.echo(
            f'wrote {len(suspects)} candidates to {export}: set "confirmed": true and fix '
            f'"proposed_class" (and "words" where empty) on those to learn, then run '
            f"`memory-router learn {export}`"
        )


def learn(
    file: Annotated[
        Path,
        typer.Argument(help="Candidates from `review --export`, some confirmed.", exists=True),
    ],
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="The user's data folder (default: $XDG_DATA_HOME/memory-router or "
            "~/.local/share/memory-router).",
        ),
    ] = None,
) -> None:
    """Add the confirmed candidates to your own examples and retrain."""
    from ..learn import LEARNED_EXAMPLES, LEARNED_WEIGHTS, add_examples, read_candidates, retrain

    folder = data_dir or user_data_dir(os.environ)
    confirmed, unconfirmed, problems = read_candidates(file)
    if problems:
        typer.echo(
            f"memory-router learn: {file}: {len(problems)} confirmed "
            f"{'entry' if len(problems) == 1 else 'entries'} cannot be learned, so nothing "
            "was added:",
            err=True,
        )
        for problem in problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(1)
    if not confirmed:
        typer.echo(
            f'nothing confirmed in {file} ({unconfirmed} unconfirmed): set "confirmed": true '
            "on the entries to learn"
        )
        return
    result = add_examples(folder, confirmed)
    where = folder / LEARNED_EXAMPLES
    for title, group in (("added", result.added), ("relabelled", result.relabelled)):
        if group:
            typer.echo(f"{title} {len(group)} example(s) in {where}:")
            for candidate in group:
                typer.echo(f"  {candidate.task}: {candidate.words[:100]}")
    if result.known:
        typer.echo(f"{result.known} confirmed example(s) were there already")
    if unconfirmed:
        typer.echo(f"{unconfirmed} unconfirmed entr{'y' if unconfirmed == 1 else 'ies'} skipped")
    done = retrain(result.examples, folder / LEARNED_WEIGHTS)
    typer.echo(
        f"wrote {done['examples']} example(s) to {done['task_examples']}: the router adds "
        "them to its task examples at its next start"
    )
    if done["classifier"] is not None:
        typer.echo(f"retrained the learned classifier: weights in {done['classifier']}")
    if done["note"]:
        typer.echo(f"note: {done['note']}")
