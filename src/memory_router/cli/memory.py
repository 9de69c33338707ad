"""``memory-router index`` and ``memory-router search``: the memory bank from the shell."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ..settings import Settings

__all__ = ["index", "search"]

ConfigDir = Annotated[
    Path | None,
    typer.Option("--config-dir", help="Folder holding server_config.yaml and models.yaml."),
]


def _settings(config_dir: Path | None) -> Settings:
    from ..logs import configure_logging
    from ..settings import load_settings

    settings = load_settings(config_dir)
    # Logs go to stderr and stay out of the way of the output; warnings still show.
    level = max(settings.config.logging.level, "WARNING", key=_LEVELS.index)
    configure_logging(level, json_logs=False)
    return settings


_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def index(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="A workspace (or its memory-bank folder). Default: the configured "
            "workspace roots, else the current folder."
        ),
    ] = None,
    config_dir: ConfigDir = None,
) -> None:
    """Index memory banks into the vector store, then print a summary."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TimeElapsedColumn,
    )
    from rich.table import Table

    from ..memory.service import MemoryService

    settings = _settings(config_dir)
    memory = MemoryService(settings.config.memory, settings.config.ollama.base_url)
    targets = [path] if path else list(settings.config.memory.workspace_roots) or [Path.cwd()]
    console = Console(stderr=True)
    started = time.perf_counter()
    reports = []
    for target in targets:
        bank = memory.bank_for(target, trusted=True)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task(f"indexing {bank.workspace.name}", total=None)

            def progress(done: int, total: int, task: TaskID = task, bar: Progress = bar) -> None:
                bar.update(task, completed=done, total=total)

            reports.append(memory.sync(bank, progress))

    table = Table("workspace", "files", "changed", "unchanged", "deleted", "chunks", "skipped")
    for report in reports:
        table.add_row(
            report.workspace,
            str(report.files_seen),
            str(report.files_indexed),
            str(report.files_unchanged),
            str(report.files_deleted),
            str(report.chunks_total),
            str(len(report.skipped)),
        )
    out = Console()
    out.print(table)
    for report in reports:
        out.print(
            f"{report.workspace}: {report.files_seen} files ({report.files_indexed} changed, "
            f"{report.files_unchanged} unchanged, {report.files_deleted} deleted), "
            f"{report.chunks_total} chunks, {len(report.skipped)} skipped",
            highlight=False,
            soft_wrap=True,
        )
        for skipped in report.skipped:
            out.print(f"skipped {skipped.path}: {skipped.reason}", highlight=False, soft_wrap=True)
    out.print(
        f"done in {time.perf_counter() - started:.2f}s (model: {memory.embedder.name})",
        highlight=False,
    )


def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    workspace: Annotated[
        Path | None, typer.Option("--workspace", "-w", help="Search only this workspace.")
    ] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many hits.")] = 5,
    config_dir: ConfigDir = None,
) -> None:
    """Search the indexed memory banks; best hits first."""
    from rich.console import Console

    from ..memory.service import MemoryService

    settings = _settings(config_dir)
    memory = MemoryService(settings.config.memory, settings.config.ollama.base_url)
    hits = memory.search(query, workspace, k)
    console = Console()
    if not hits:
        console.print("no hits: index a bank first with `memory-router index PATH`")
        raise typer.Exit(1)
    for rank, hit in enumerate(hits, start=1):
        heading = " > ".join(hit.heading_path) or "(top of file)"
        console.print(
            f"{rank}. [bold]{hit.file}[/] lines {hit.first_line}-{hit.last_line}  "
            f"score {hit.score:.3f}\n   {heading}\n   [dim]{hit.workspace}[/]",
            highlight=False,
        )
