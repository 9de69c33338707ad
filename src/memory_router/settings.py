"""Typed settings: ``server_config.yaml``, ``models.yaml``, ``.env``, environment.

The folder the YAML files come from is found as ``locations`` describes (``--config-dir``,
``ROUTER_CONFIG_DIR``, ``./config``, the user's config folder, the built-in defaults).
Sources are composed explicitly, lowest first: the YAML files, then ``.env``, then the
process environment. Anything invalid becomes a ``ConfigError`` naming the file (or the
environment variable), the key and what is wrong; the CLI turns that into exit code 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from .addresses import normalize_ollama_url
from .domain import TASK_CLASSES, KeepAlive, TaskClass, check_keep_alive
from .errors import ConfigError
from .locations import (
    USER_CLASSIFIER,
    USER_TASK_EXAMPLES,
    anchor_paths,
    locate_config,
    user_data_dir,
)
from .models_config import ModelsConfig, ModelSpec

__all__ = [
    "EmbeddedSettings",
    "FailoverSettings",
    "LoggingSettings",
    "MemorySettings",
    "ModelSpec",
    "ModelsConfig",
    "OllamaHost",
    "OllamaSettings",
    "OpenAIUpstream",
    "ServerConfig",
    "ServerSettings",
    "Settings",
    "load_settings",
    "normalize_ollama_url",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_keys: list[SecretStr] = Field(default_factory=list)
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0)
    cors_origins: list[str] = Field(default_factory=list)
    keep_alive_s: int = Field(75, ge=1)
    """How long an idle HTTP/1.1 connection is kept open. Longer than clients keep theirs
    pooled (httpx and so the openai SDK: 5 s), or a reused connection meets a closed one."""
    drain_s: float = Field(30.0, ge=0)
    """On SIGTERM the router stops taking requests; those running may finish for this long,
    then each still running ends with an error event (or a 503)."""
    allow_unauthenticated_remote: bool = False
    """Listen beyond loopback without ``api_keys``: anyone who reaches the port may use it."""


class OllamaSettings(_Strict):
    enabled: bool = True
    base_url: str = "http://127.0.0.1:11434"
    connect_timeout_s: float = Field(3.0, gt=0)
    # Longest silence allowed between two chunks of a stream (a cold load of a big model
    # sends nothing until it is done, so this is generous).
    read_timeout_s: float = Field(600.0, gt=0)
    # The memory of the machine Ollama runs on, when that is not this one (OLLAMA_HOST on
    # another machine): it cannot be detected from here. Unset on a loopback Ollama: the
    # routing.budget values, or what this machine has.
    vram_bytes: int | None = Field(None, ge=0)
    ram_bytes: int | None = Field(None, ge=0)
    reserve_bytes: int | None = Field(None, ge=0)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return normalize_ollama_url(value)


class OllamaHost(OllamaSettings):
    """Another machine's Ollama: a backend of its own, named by ``models[].backend``.

    Its memory cannot be detected from here, so it is stated."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    vram_bytes: int = Field(ge=0)
    ram_bytes: int = Field(ge=0)
    reserve_bytes: int = Field(2 * 1024**3, ge=0)


class OpenAIUpstream(_Strict):
    """An OpenAI-compatible server: llama.cpp server, vLLM, LM Studio or a cloud endpoint."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    base_url: str = Field(pattern=r"^https?://")
    api_key: SecretStr | None = None
    connect_timeout_s: float = Field(3.0, gt=0)
    read_timeout_s: float = Field(600.0, gt=0)


class EmbeddedSettings(_Strict):
    """The in-process llama.cpp fallback on the packaged Gemma 3 270M GGUF."""

    mode: Literal["auto", "always", "never"] = "auto"
    model_path: Path | None = None
    n_ctx: int = Field(32768, ge=512)
    n_parallel: int = Field(1, ge=1, le=16)
    threads: int = Field(0, ge=0)
    # The base model rambles until the context is full; cap answers unless the client asks.
    default_max_tokens: int = Field(256, ge=1)


class MemorySettings(_Strict):
    """Memory-bank indexing: which workspaces, where the index lives, how text is embedded."""

    enabled: bool = True
    # Workspaces whose memory-bank/ is indexed at start-up and watched. A workspace named by a
    # request is indexed too when it lies under one of these roots (or allowed_roots).
    workspace_roots: list[Path] = Field(default_factory=list)
    allowed_roots: list[Path] = Field(default_factory=list)
    vector_store_path: Path = Path("vector_stores")
    # A Chroma server (e.g. "http://127.0.0.1:8001") shared by several router replicas;
    # empty: a local persistent store under vector_store_path.
    chroma_url: str | None = Field(None, pattern=r"^https?://")
    embedder: Literal["onnx", "sentence-transformers", "ollama"] = "onnx"
    # Which ONNX graph: "auto" measures the int8 graphs against the float one on this CPU
    # once (cached) and runs the first that holds the bar; or force one.
    onnx_graph: Literal["auto", "int8", "int8-7bit", "fp32"] = "auto"
    ollama_embed_model: str = "all-minilm"
    max_file_bytes: int = Field(2 * 1024 * 1024, gt=0)
    # MiniLM reads at most 256 word pieces; 200 cl100k tokens stay within that.
    chunk_max_tokens: int = Field(200, ge=32, le=8192)
    watch: bool = True
    debounce_ms: int = Field(300, ge=0)


GIB = 1024**3


class DecisionLogSettings(_Strict):
    """One JSON line per routed request, rotated by size and age, pruned by count."""

    enabled: bool = True
    path: Path = Path("logs/decisions.jsonl")
    max_bytes: int = Field(20_000_000, gt=0)
    """Rotate the current file once it grows past this."""
    max_age_days: float = Field(7.0, gt=0)
    """Rotate a file this old, and delete rotated files older than this."""
    max_files: int = Field(10, ge=1)
    """Rotated files kept, newest first."""


class BudgetSettings(_Strict):
    """The memory the models may use. Unset sizes are detected (NVML, nvidia-smi, psutil)."""

    vram_bytes: int | None = Field(None, ge=0)
    ram_bytes: int | None = Field(None, ge=0)
    reserve_bytes: int = Field(2 * GIB, ge=0)
    """Kept free for the system and other programs (taken from RAM)."""
    disk_bytes_per_s: float = Field(2e9, gt=0)
    """Prior for load time (weights size / this) until a load has been measured."""


class QueueSettings(_Strict):
    """Per-model admission: requests beyond this wait-list get 429 with Retry-After."""

    max_waiting_per_model: int = Field(8, ge=0)
    max_running_per_model: int = Field(1, ge=1)
    """Requests a model runs at once (Ollama's OLLAMA_NUM_PARALLEL)."""
    retry_after_s: int = Field(5, ge=1)


class FailoverSettings(_Strict):
    """What happens when a model server fails before the answer's first event."""

    retries: int = Field(2, ge=0)
    """Further attempts on the same model and host (connection refused or reset, 502/503,
    Ollama busy), with jittered exponential backoff from ``backoff_s``."""
    backoff_s: float = Field(0.25, ge=0)
    deadline_s: float = Field(30.0, gt=0)
    """No retry or fallback starts later than this after the request arrived."""
    fallback: bool = True
    """Then the next candidate of the decision answers (response header x-router-fallback)."""
    cooldown_after: int = Field(3, ge=1)
    """Failures in a row after which a host (or a model on it) is skipped for a while."""
    cooldown_s: float = Field(10.0, gt=0)
    """The first cooldown; it doubles while the host keeps failing, up to cooldown_max_s."""
    cooldown_max_s: float = Field(300.0, gt=0)


class EscalationSettings(_Strict):
    """Where a request goes when no local model's context holds it. Off unless both are set."""

    backend: str | None = None
    """The name of an ``openai_upstreams`` entry."""
    model: str | None = None


class LlmClassifierSettings(_Strict):
    """A small local model asked for the class when the cheap signals are not decisive."""

    model: str | None = None
    """The model's name on ``backend`` (e.g. ``qwen3:0.6b``); none: off."""
    backend: str = "ollama"
    """``ollama``, ``embedded``, or an ``ollama_hosts`` or ``openai_upstreams`` entry."""
    timeout_s: float = Field(3.0, gt=0)
    """Longer than this and the request is routed without the model's answer."""
    keep_alive: KeepAlive = "30m"
    retry_after_s: float = Field(30.0, ge=0)
    """After a failure the model is not asked again for this long."""
    cpu_only: bool = True
    """On Ollama, run it on the CPU (``num_gpu: 0``): loading it then never evicts a model
    from the GPU."""

    _keep_alive = field_validator("keep_alive")(check_keep_alive)


class ClassifierSettings(_Strict):
    embedding: bool = True
    """Embed the user's latest words (the memory bank's MiniLM): for the learned classifier,
    and for the labelled examples in ``task_examples.yaml`` when it is off."""
    min_similarity: float = Field(0.35, ge=-1.0, le=1.0)
    learned: bool = True
    """Where the rules are not decisive, the learned classifier (weights shipped with the
    package, trained on the routing corpus) reads the user's words and the request's shape;
    off: the nearest labelled example decides."""
    weights: Path | None = None
    """The learned classifier's weights: those ``memory-router learn`` wrote to the user's
    data folder (``learned_classifier.npz``) when there are some, else the shipped ones."""
    confident: float = Field(0.6, ge=0.0, le=1.0)
    """Below this top probability of the learned classifier, the LLM classifier (if one is
    configured) is asked."""
    llm: LlmClassifierSettings = LlmClassifierSettings()


class RoutingSettings(_Strict):
    """How the virtual model chooses: policy, budget, stickiness, queues, escalation."""

    policy: Literal["residency", "best_fit", "fixed"] = "residency"
    """residency: task fit minus switch cost; best_fit: task fit only; fixed: fixed_model."""
    fixed_model: str | None = None
    ctx_ladder: list[int] = Field(default_factory=lambda: [8192, 16384, 32768, 65536, 131072])
    load_cost_per_s: float = Field(0.03, ge=0)
    """Task fit one second of model loading costs (0.03: a 10 s load costs 0.3 of fit, about
    the gap between a good and a poor model for a task), spread over the turns it serves."""
    recency_half_life_s: float = Field(600.0, gt=0)
    """How fast the expected cost of evicting a model fades after its last use."""
    session_idle_s: float = Field(900.0, gt=0)
    """A session idle this long is re-routed from scratch."""
    poll_s: float = Field(15.0, gt=0)
    """How often /api/ps is read besides after each request."""
    warm_pinned: bool = True
    first_event_grace_s: float = Field(2.0, ge=0)
    """How long a streamed answer waits for its first event before the headers go out."""
    keepalive_s: float = Field(5.0, gt=0)
    """SSE comment interval while a model loads."""
    budget: BudgetSettings = BudgetSettings()
    queue: QueueSettings = QueueSettings()
    escalation: EscalationSettings = EscalationSettings()
    failover: FailoverSettings = FailoverSettings()
    classifier: ClassifierSettings = ClassifierSettings()

    @field_validator("ctx_ladder")
    @classmethod
    def _ladder(cls, value: list[int]) -> list[int]:
        if not value or any(size < 512 for size in value):
            raise ValueError("list at least one context size, each at least 512")
        return sorted(set(value))


class LoggingSettings(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_logs: bool = True
    log_prompts: bool = False
    decision_log: DecisionLogSettings = DecisionLogSettings()

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class ServerConfig(_Strict):
    """The contents of ``server_config.yaml``."""

    server: ServerSettings = ServerSettings()
    ollama: OllamaSettings = OllamaSettings()
    ollama_hosts: list[OllamaHost] = Field(default_factory=list)
    """More Ollama servers (other machines), each with its own residency."""
    openai_upstreams: list[OpenAIUpstream] = Field(default_factory=list)
    embedded: EmbeddedSettings = EmbeddedSettings()
    memory: MemorySettings = MemorySettings()
    routing: RoutingSettings = RoutingSettings()
    logging: LoggingSettings = LoggingSettings()


class Settings(_Strict):
    """Everything the router reads at start-up."""

    config: ServerConfig
    models: ModelsConfig
    config_dir: Path
    task_examples: dict[TaskClass, list[str]] = Field(default_factory=dict)
    """Labelled example requests per task class (``task_examples.yaml``; optional), followed by
    the user's confirmed ones (``user_task_examples.yaml`` in the user's data folder, written
    by ``memory-router learn``)."""
    config_source: str = "--config-dir"
    """How ``config_dir`` was found (see ``locations``)."""
    config_files: tuple[str, ...] = ()
    """The files read from it."""
    paths_relative_to: Path | None = None
    """What relative paths in the files were made relative to."""


# Environment variables and the (section, key) they override in server_config.yaml.
_ENV_KEYS: dict[str, tuple[str, str]] = {
    "ROUTER_HOST": ("server", "host"),
    "ROUTER_PORT": ("server", "port"),
    "ROUTER_API_KEYS": ("server", "api_keys"),
    "ROUTER_ALLOW_UNAUTHENTICATED_REMOTE": ("server", "allow_unauthenticated_remote"),
    "OLLAMA_HOST": ("ollama", "base_url"),
    "OLLAMA_BASE_URL": ("ollama", "base_url"),  # listed second: wins over OLLAMA_HOST
    "ROUTER_EMBEDDED": ("embedded", "mode"),
    "VECTOR_STORE_PATH": ("memory", "vector_store_path"),
    "LOG_LEVEL": ("logging", "level"),
    "ROUTER_LOG_PROMPTS": ("logging", "log_prompts"),
}


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml  # small, but only needed at start-up

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), "-", "file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "-"
        raise ConfigError(str(path), where, f"invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "-", "the top level must be a mapping of keys")
    return data


def _env_value(name: str, raw: str) -> Any:
    if name == "ROUTER_API_KEYS":
        return [key.strip() for key in raw.split(",") if key.strip()]
    return raw


def _validation_error(
    exc: ValidationError, source: str, env_sources: Mapping[tuple[str, ...], str]
) -> ConfigError:
    first = exc.errors()[0]
    loc = tuple(str(part) for part in first["loc"])
    key = ".".join(loc) or "-"
    for path, env_name in env_sources.items():
        if loc[: len(path)] == path:
            return ConfigError(f"environment variable {env_name}", key, first["msg"])
    return ConfigError(source, key, first["msg"])


def load_settings(
    config_dir: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    env_file: Path | str | None = ".env",
) -> Settings:
    """Load and validate all configuration; raise ``ConfigError`` on anything invalid."""
    env: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        from dotenv import dotenv_values

        env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    env.update(os.environ if environ is None else environ)

    location = locate_config(config_dir, env)
    directory = location.directory
    server_path = directory / "server_config.yaml"
    models_path = directory / "models.yaml"
    server_raw = _read_yaml(server_path)
    models_raw = _read_yaml(models_path)

    env_sources: dict[tuple[str, ...], str] = {}
    for name, (section, key) in _ENV_KEYS.items():
        if env.get(name):
            block = server_raw.setdefault(section, {})
            if not isinstance(block, dict):
                raise ConfigError(str(server_path), section, "must be a mapping")
            block[key] = _env_value(name, env[name])
            env_sources[(section, key)] = name

    try:
        server = ServerConfig.model_validate(server_raw)
    except ValidationError as exc:
        raise _validation_error(exc, str(server_path), env_sources) from None
    try:
        models = ModelsConfig.model_validate(models_raw)
    except ValidationError as exc:
        raise _validation_error(exc, str(models_path), {}) from None

    _cross_check(server, models, models_path, server_path)
    from_env = {(path[0], path[1]) for path in env_sources}
    server = anchor_paths(server, location.paths_relative_to, from_env)
    examples_path = directory / "task_examples.yaml"
    examples = _task_examples(examples_path)
    if env.get("XDG_DATA_HOME") or env.get("HOME"):  # an environment with no home has no data
        examples = _merge_examples(
            examples, _task_examples(user_data_dir(env) / USER_TASK_EXAMPLES)
        )
        learned = user_data_dir(env) / USER_CLASSIFIER
        if server.routing.classifier.weights is None and learned.is_file():
            classifier = server.routing.classifier.model_copy(update={"weights": learned})
            routing = server.routing.model_copy(update={"classifier": classifier})
            server = server.model_copy(update={"routing": routing})
    read = [server_path, models_path] + ([examples_path] if examples_path.is_file() else [])
    return Settings(
        config=server,
        models=models,
        config_dir=directory,
        task_examples=examples,
        config_source=location.source,
        config_files=tuple(path.name for path in read),
        paths_relative_to=location.paths_relative_to,
    )


def _task_examples(path: Path) -> dict[TaskClass, list[str]]:
    if not path.is_file():
        return {}
    raw = _read_yaml(path)
    examples: dict[TaskClass, list[str]] = {}
    for key, value in raw.items():
        if key not in TASK_CLASSES:
            raise ConfigError(
                str(path), str(key), f"not a task class: use {', '.join(TASK_CLASSES)}"
            )
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ConfigError(str(path), str(key), "must be a list of non-empty strings")
        examples[key] = value
    return examples


def _merge_examples(
    base: dict[TaskClass, list[str]], user: dict[TaskClass, list[str]]
) -> dict[TaskClass, list[str]]:
    """The configured examples, each class followed by the user's that are not among them."""
    merged = {task: list(texts) for task, texts in base.items()}
    for task, texts in user.items():
        merged.setdefault(task, []).extend(t for t in texts if t not in merged[task])
    return merged


def _cross_check(
    server: ServerConfig, models: ModelsConfig, models_path: Path, server_path: Path
) -> None:
    backends = {"ollama", "embedded"}
    for key, named in (
        ("ollama_hosts", [host.name for host in server.ollama_hosts]),
        ("openai_upstreams", [up.name for up in server.openai_upstreams]),
    ):
        for index, name in enumerate(named):
            if name in backends:
                raise ConfigError(
                    str(server_path), f"{key}.{index}.name", f"{name!r} names another backend"
                )
            backends.add(name)
    routing = server.routing
    names = {model.name for model in models.models}
    if routing.policy == "fixed" and routing.fixed_model not in names:
        raise ConfigError(
            str(server_path),
            "routing.fixed_model",
            f"policy 'fixed' needs fixed_model set to one of {', '.join(sorted(names))}",
        )
    escalation = routing.escalation
    if (escalation.backend is None) != (escalation.model is None):
        raise ConfigError(
            str(server_path), "routing.escalation", "set both backend and model, or neither"
        )
    upstreams = {up.name for up in server.openai_upstreams}
    if escalation.backend is not None and escalation.backend not in upstreams:
        raise ConfigError(
            str(server_path),
            "routing.escalation.backend",
            f"{escalation.backend!r} is not an openai_upstreams entry"
            + (f": use one of {', '.join(sorted(upstreams))}" if upstreams else ""),
        )
    classifier = routing.classifier.llm
    if classifier.model is not None and classifier.backend not in backends:
        raise ConfigError(
            str(server_path),
            "routing.classifier.llm.backend",
            f"unknown backend {classifier.backend!r}: use one of {', '.join(sorted(backends))}",
        )
    seen: set[str] = set()
    for index, model in enumerate(models.models):
        where = f"models.{index}"
        if model.name in seen:
            raise ConfigError(str(models_path), f"{where}.name", f"duplicate model {model.name!r}")
        seen.add(model.name)
        if model.name == models.virtual_model:
            raise ConfigError(str(models_path), f"{where}.name", "clashes with virtual_model")
        for host in model.pool or (model.backend,):
            if host not in backends:
                raise ConfigError(
                    str(models_path),
                    f"{where}.backend",
                    f"unknown backend {host!r}: use one of {', '.join(sorted(backends))}",
                )
        ollamas = {"ollama", *(host.name for host in server.ollama_hosts)}
        if len(model.pool) > 1 and not set(model.pool) <= ollamas:
            raise ConfigError(
                str(models_path),
                f"{where}.backend",
                f"a pool lists Ollama hosts only (ollama or ollama_hosts names), got "
                f"{', '.join(h for h in model.pool if h not in ollamas)}",
            )
        if model.num_ctx > model.context_window:
            raise ConfigError(
                str(models_path),
                f"{where}.num_ctx",
                f"{model.num_ctx} exceeds context_window {model.context_window}",
            )
