"""``memory-router status``: what a running router serves, holds and has answered.

It asks the router over HTTP (``/ready``, ``/v1/models``, ``/metrics``), the same way a
monitoring tool would, so it shows the running process's view, not a fresh one.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import RouterError
from ..settings import load_settings

__all__ = ["status"]


def _get(base: str, path: str, key: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(base + path)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:  # /ready answers 503 with a body when not ready
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise RouterError(
            f"no router answers at {base} ({exc}): start it with ./scripts/run_system.sh, "
            f"or pass --url"
        ) from exc


def _metrics(text: str) -> dict[str, dict[str, float]]:
    """Per model: resident bytes and num_ctx, in flight, answered, tokens."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            model = sample.labels.get("model")
            if model is None:
                continue
            row = out[model]
            if sample.name == "memory_router_resident_bytes":
                row["resident"] = sample.value
                row["num_ctx"] = float(sample.labels["num_ctx"])
            elif sample.name == "memory_router_in_flight":
                row["in_flight"] = sample.value
            elif sample.name == "memory_router_requests_total":
                row["answered"] = row.get("answered", 0) + sample.value
            elif sample.name == "memory_router_tokens_total":
                kind = sample.labels["kind"]
                row[kind] = row.get(kind, 0) + sample.value
            elif sample.name == "memory_router_llm_classifier_requests_total":
                row[f"classifier_{sample.labels['outcome']}"] = sample.value
    return out


def _size(size: float) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def status(
    config_dir: Annotated[
        Path | None,
        typer.Option("--config-dir", help="Folder holding server_config.yaml and models.yaml."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="The router's base URL (default: host and port from the config)."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(help="A key the router accepts (default: the first of server.api_keys)."),
    ] = None,
) -> None:
    """What a running router serves: backends, models, what is resident and in flight."""
    from rich.console import Console
    from rich.table import Table

    settings = load_settings(config_dir)
    server = settings.config.server
    base = (url or f"http://{server.host}:{server.port}").rstrip("/")
    key = api_key or (server.api_keys[0].get_secret_value() if server.api_keys else None)
    _, body = _get(base, "/ready", key)
    ready: dict[str, Any] = json.loads(body)
    listed, body = _get(base, "/v1/models", key)
    if listed == 401:
        raise RouterError(
            f"the router at {base} did not accept "
            + ("the API key given" if key else "a request without an API key")
            + ": pass one of its keys with --api-key (or set ROUTER_API_KEYS as it has them)"
        )
    models = json.loads(body)["data"]
    seen = _metrics(_get(base, "/metrics", key)[1].decode())

    console = Console()
    state = {
        "ready": "[green]ready[/]",
        "degraded": "[yellow]degraded (the embedded demo model serves)[/]",
        "starting": "[yellow]starting (the classifier is loading)[/]",
    }.get(str(ready.get("status")), "[red]not ready[/]")
    console.print(f"router {base}: {state}")
    for backend in ready.get("backends", []):
        answers = "answers" if backend["answers"] else f"does not answer: {backend['detail']}"
        console.print(f"  backend {backend['name']} ({backend['kind']}): {answers}")
    for note in ready.get("notes", []):
        console.print(f"  [yellow]{note}[/]")
    for missing in ready.get("missing_models", []):
        console.print(f"  [red]missing: {missing}[/]")
    for key, failing in sorted((ready.get("failing") or {}).items()):
        if failing.get("cooling"):
            console.print(
                f"  [red]cooling down: {key}[/], {failing['failures']} failures in a row, "
                f"{failing['cooldown_left_s']:.0f} s left (last: {failing['last_error']})"
            )
        else:
            console.print(f"  [yellow]failing: {key}[/], {failing['failures']} in a row")
    table = Table("model", "context", "takes", "resident", "in flight", "answered", "tokens in/out")
    for item in models[1:]:  # the virtual model first, then the concrete ones
        row = seen.get(item["id"], {})
        resident = (
            f"{_size(row['resident'])} at num_ctx {row['num_ctx']:.0f}"
            if "resident" in row
            else "-"
        )
        table.add_row(
            item["id"],
            str(item.get("context_length", "")),
            ", ".join(item.get("capabilities", [])) or "?",
            resident,
            f"{row.get('in_flight', 0):.0f}",
            f"{row.get('answered', 0):.0f}",
            f"{row.get('prompt', 0):.0f} / {row.get('completion', 0):.0f}",
        )
    console.print(table)
    for model, row in seen.items():
        if "classifier_class" in row:
            named, none, failed = (
                round(row.get(f"classifier_{outcome}", 0))
                for outcome in ("class", "no_class", "failed")
            )
            console.print(
                f"LLM classifier {model}: asked {named + none + failed} times, {named} answers "
                f"named a class, {none} named none, {failed} failed"
            )
