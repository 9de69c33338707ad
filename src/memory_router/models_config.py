"""``models.yaml``: the concrete models the router may choose, and where they run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .domain import TASK_CLASSES, Capability, KeepAlive, TaskClass, check_keep_alive

__all__ = ["ModelSpec", "ModelsConfig"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """One concrete model the router may choose."""

    name: str = Field(min_length=1)
    backend: str = "ollama"
    """Where it runs. A list (``[ollama, gpu2]``) makes a pool: every host in it serves the
    model; ``backend`` is then the first and ``pool`` all of them."""
    pool: tuple[str, ...] = ()
    role: Literal["fast", "coder", "long_context", "general"] = "general"
    description: str = ""
    context_window: int = Field(gt=0)
    num_ctx: int = Field(gt=0)
    keep_alive: KeepAlive = "30m"
    warm: bool = False
    """Loaded at start-up and kept in preference: evicting it is charged its full reload
    however long it has been idle. The router may still unload it for a model that needs
    the room; ``keep_alive: -1`` pins a model, which the router never unloads."""
    task_fit: dict[TaskClass, float]
    think: bool | None = None
    capabilities: tuple[Capability, ...] | None = None
    """What the model takes, in Ollama's words; read from Ollama's ``/api/show`` when not set.
    The router sends images only to a model with ``vision`` and tools only to one with
    ``tools``."""

    _keep_alive = field_validator("keep_alive")(check_keep_alive)

    @model_validator(mode="before")
    @classmethod
    def _hosts(cls, data: Any) -> Any:
        backend = data.get("backend") if isinstance(data, dict) else None
        if isinstance(backend, list) and backend and all(isinstance(b, str) for b in backend):
            return {**data, "backend": backend[0], "pool": tuple(dict.fromkeys(backend))}
        return data

    def placements(self) -> list[ModelSpec]:
        """One entry per host that serves it (a pool's members; else itself)."""
        if len(self.pool) < 2:
            return [self]
        return [self.model_copy(update={"backend": host}) for host in self.pool]

    @field_validator("task_fit")
    @classmethod
    def _scores(cls, value: dict[TaskClass, float]) -> dict[TaskClass, float]:
        for task, score in value.items():
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"score for {task!r} must lie between 0 and 1, got {score}")
        missing = [task for task in TASK_CLASSES if task not in value]
        if missing:
            raise ValueError(f"missing scores for {', '.join(missing)}")
        return value


class ModelsConfig(_Strict):
    """The contents of ``models.yaml``."""

    virtual_model: str = "cline-memory-router"
    reserved_output_tokens: int = Field(4096, gt=0)
    models: list[ModelSpec] = Field(min_length=1)

    def by_name(self) -> dict[str, ModelSpec]:
        return {model.name: model for model in self.models}

    def catalog(self) -> list[ModelSpec]:
        """What the policy chooses from: each model once per host that serves it."""
        return [placed for model in self.models for placed in model.placements()]
