"""``memory-router``: serve the API, explain a routing decision, check the set-up."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from ..errors import ConfigError, RouterError
from ..settings import ServerSettings, Settings, load_settings
from . import memory as memory_cli
from . import review as review_cli
from . import status as status_cli

__all__ = ["app", "main"]

app = typer.Typer(
    name="memory-router",
    help="A local OpenAI-compatible router that picks the right model for every Cline request.",
    no_args_is_help=True,
    add_completion=False,
)

app.command()(memory_cli.index)
app.command()(memory_cli.search)
app.command()(status_cli.status)
app.command()(review_cli.review)
app.command()(review_cli.learn)

ConfigDir = Annotated[
    Path | None,
    typer.Option(
        "--config-dir",
        help="Folder holding server_config.yaml and models.yaml (default: ROUTER_CONFIG_DIR, "
        "./config, ~/.config/memory-router, else the built-in defaults).",
    ),
]


def _settings(config_dir: Path | None, overrides: dict[str, str] | None = None) -> Settings:
    environ: dict[str, str] | None = None
    if overrides:
        import os

        environ = {**os.environ, **overrides}
    return load_settings(config_dir, environ=environ)


def _is_loopback(host: str) -> bool:
    name = host.strip().removeprefix("[").removesuffix("]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback  # 127.0.0.0/8, ::1
    except ValueError:  # a host name: it may resolve to anything
        return False


def exposure_refusal(server: ServerSettings) -> str | None:
    """Why the router must not listen on ``server.host`` as configured, or None.

    Without API keys the router serves whoever reaches it: fine on loopback, refused beyond
    it unless ``allow_unauthenticated_remote`` says the user means it."""
    if server.api_keys or server.allow_unauthenticated_remote or _is_loopback(server.host):
        return None
    return (
        f"refusing to listen on {server.host or 'every address'} without API keys: anyone who "
        "can reach this machine could use the router and its models. Set keys in "
        "server_config.yaml (server.api_keys: [a-long-random-key]) or in the environment "
        "(ROUTER_API_KEYS=key1,key2); clients then send `Authorization: Bearer <key>` (in "
        "Cline: the API key field). Or listen on 127.0.0.1 only. To serve without keys "
        "anyway, pass --insecure-no-auth or set server.allow_unauthenticated_remote: true "
        "(ROUTER_ALLOW_UNAUTHENTICATED_REMOTE=true)."
    )


@app.command()
def serve(
    config_dir: ConfigDir = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Listen beyond loopback without API keys: anyone who reaches the port may "
            "use the router (server.allow_unauthenticated_remote).",
        ),
    ] = False,
) -> None:
    """Run the router's HTTP server."""
    overrides = {}
    if host:
        overrides["ROUTER_HOST"] = host
    if port:
        overrides["ROUTER_PORT"] = str(port)
    if insecure_no_auth:
        overrides["ROUTER_ALLOW_UNAUTHENTICATED_REMOTE"] = "true"
    settings = _settings(config_dir, overrides)
    server = settings.config.server
    refusal = exposure_refusal(server)
    if refusal is not None:
        raise RouterError(refusal)

    import structlog
    import uvicorn

    from ..api.app import create_app
    from ..logs import configure_logging

    logging_settings = settings.config.logging
    configure_logging(logging_settings.level, logging_settings.json_logs)
    log = structlog.get_logger("memory_router.cli")
    log.info(
        "config_read",
        source=settings.config_source,
        folder=str(settings.config_dir),
        files=list(settings.config_files),
        paths_relative_to=str(settings.paths_relative_to),
    )
    if not server.api_keys and not _is_loopback(server.host):
        log.warning(
            "no_api_keys",
            host=server.host,
            note="listening beyond loopback without API keys (allow_unauthenticated_remote): "
            "anyone who reaches this port can use the router",
        )
    application = create_app(settings)

    class Server(uvicorn.Server):
        """uvicorn's server, with the router's drain on SIGTERM: running requests get
        ``server.drain_s`` to finish, then end with an error event instead of being cut."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not self.should_exit and self.started:
                service = application.state.service
                loop = asyncio.get_event_loop()
                loop.call_soon_threadsafe(service.begin_drain, server.drain_s)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        application,
        host=server.host,
        port=server.port,
        loop="auto",
        http="auto",
        log_config=None,
        # The router logs every request itself (one JSON line with the routing outcome);
        # uvicorn's access line would repeat it, and builds its arguments even when muted.
        access_log=False,
        # The drain ends every request by drain_s: this is only a backstop.
        timeout_graceful_shutdown=math.ceil(server.drain_s) + 5,
        # Idle connections outlive the clients' pools (httpx: 5 s, uvicorn's default too),
        # so a client never reuses one the router is closing.
        timeout_keep_alive=server.keep_alive_s,
    )
    served = Server(config)
    # Ctrl-C (SIGINT) after the drain is a clean stop, as uvicorn.run treats it.
    with contextlib.suppress(KeyboardInterrupt):
        served.run()
    if not served.started:
        sys.exit(3)  # uvicorn's start-up failure code: the port is taken, say


@app.command()
def route(
    request_file: Annotated[Path, typer.Argument(help="A chat request as JSON ('-' for stdin).")],
    config_dir: ConfigDir = None,
    live: Annotated[
        bool, typer.Option("--live/--offline", help="Read what Ollama has loaded now.")
    ] = True,
) -> None:
    """Print the routing decision for a request, without calling any model."""
    from ..service import RouterService
    from ..wire.openai import ChatCompletionRequest, parse_request

    settings = _settings(config_dir)
    text = sys.stdin.read() if str(request_file) == "-" else request_file.read_text("utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RouterError(f"{request_file} is not valid JSON: {exc}") from None
    data.setdefault("model", settings.models.virtual_model)
    request = parse_request(ChatCompletionRequest, data)
    service = RouterService(settings)
    # What Ollama holds now (/api/ps, /api/tags, /api/show: no model runs); without an
    # answering Ollama the decision is made as if nothing were loaded, and says so.
    note = (
        asyncio.run(service.fleet.read_residency())
        if live
        else "residency and Ollama's model capabilities not read (--offline)"
    )
    decision = service.decide_chat(request, remember=False)
    result = decision.as_dict()
    if note:
        result["reasons"] = [*result["reasons"], note]
    typer.echo(json.dumps(result, indent=2, default=str))


@app.command()
def doctor(config_dir: ConfigDir = None) -> None:
    """Check the configuration, Ollama, the models and the embedded fallback."""
    from rich.console import Console
    from rich.table import Table

    settings = _settings(config_dir)
    console = Console()
    table = Table("check", "result", "detail", title="memory-router doctor")
    rows = asyncio.run(_doctor_rows(settings))
    rows.append(_embedded_row(settings))
    for check, ok, detail in rows:
        table.add_row(check, "[green]ok[/]" if ok else "[red]problem[/]", detail)
    console.print(table)
    if not all(ok for _, ok, _ in rows):
        raise typer.Exit(1)


async def _doctor_rows(settings: Settings) -> list[tuple[str, bool, str]]:
    from ..backends.ollama import OllamaBackend

    where = f"{settings.config_dir} ({settings.config_source})"
    rows: list[tuple[str, bool, str]] = [("configuration", True, where)]
    hosts = [
        ("ollama", settings.config.ollama),
        *((h.name, h) for h in settings.config.ollama_hosts),
    ]
    for name, host in hosts:
        ollama = OllamaBackend(host, name=name)
        try:
            status = await ollama.status()
            where = "ollama" if name == "ollama" else f"ollama host {name}"
            rows.append((where, status.answers, status.version or status.detail))
            if status.answers:
                present = {model.name for model in await ollama.list_models()}
                wanted = [
                    (f"model {spec.name}", spec.name)
                    for spec in settings.models.catalog()
                    if spec.backend == name
                ]
                llm = settings.config.routing.classifier.llm
                if llm.model is not None and llm.backend == name:
                    wanted.append((f"LLM classifier {llm.model}", llm.model))
                for check, model in wanted:
                    pulled = model in present
                    there = "" if name == "ollama" else f" on {host.base_url}"
                    advice = "pulled" if pulled else f"run `ollama pull {model}`{there}"
                    rows.append((check, pulled, advice))
        finally:
            await ollama.aclose()
    return rows


def _embedded_row(settings: Settings) -> tuple[str, bool, str]:
    mode = settings.config.embedded.mode
    if mode == "never":
        return ("embedded model", True, "disabled (mode never)")
    from ..backends.embedded import packaged_model_path

    try:
        path: Any = settings.config.embedded.model_path or packaged_model_path()
    except (ImportError, OSError, ValueError) as exc:
        return ("embedded model", False, f"{exc}: reinstall with ./scripts/setup.sh")
    return ("embedded model", Path(path).is_file(), f"{path} (mode {mode})")


def main() -> None:
    """Entry point: configuration errors exit 2 with the file, key and reason."""
    try:
        app()
    except ConfigError as exc:
        print(f"memory-router: invalid configuration: {exc}", file=sys.stderr)
        sys.exit(2)
    except RouterError as exc:
        print(f"memory-router: {exc.message}", file=sys.stderr)
        sys.exit(1)
