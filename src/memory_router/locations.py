"""Which folder the configuration is read from, and what relative paths in it mean.

The first of these that applies: the folder given (``--config-dir``), ``ROUTER_CONFIG_DIR``,
``./config`` when it holds a ``server_config.yaml``, the user's config folder
(``$XDG_CONFIG_HOME/memory-router`` or ``~/.config/memory-router``) when it holds one, else
the built-in defaults shipped in the package (``defaults/``, which in the repository links to
``config/``). Relative paths in a folder's files are relative to that folder; those of the
built-in defaults to the user's data folder (``$XDG_DATA_HOME/memory-router`` or
``~/.local/share/memory-router``), never to the package. A relative path set through an
environment variable is relative to the working directory, as in a shell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import ServerConfig

__all__ = [
    "BUILT_IN_CONFIG",
    "USER_CLASSIFIER",
    "USER_TASK_EXAMPLES",
    "ConfigLocation",
    "anchor_paths",
    "locate_config",
    "user_config_dir",
    "user_data_dir",
]

APP = "memory-router"
BUILT_IN_CONFIG = Path(__file__).parent / "defaults"
SERVER_FILE = "server_config.yaml"
USER_TASK_EXAMPLES = "user_task_examples.yaml"
USER_CLASSIFIER = "learned_classifier.npz"
"""The learned classifier ``memory-router learn`` retrained, in the user's data folder."""
"""The user's confirmed task examples (``memory-router learn``), in the user's data folder."""


@dataclass(frozen=True)
class ConfigLocation:
    directory: Path
    source: str
    """How it was chosen: ``--config-dir``, ``ROUTER_CONFIG_DIR``, ``./config``,
    ``user config folder`` or ``built-in defaults``."""
    paths_relative_to: Path
    """What relative paths in its files are relative to (absolute)."""


def _home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def _xdg(env: Mapping[str, str], name: str, fallback: str) -> Path:
    value = env.get(name, "")
    # The XDG spec: a relative value is invalid and ignored.
    base = Path(value) if value and Path(value).is_absolute() else _home(env) / fallback
    return base / APP


def user_config_dir(env: Mapping[str, str]) -> Path:
    return _xdg(env, "XDG_CONFIG_HOME", ".config")


def user_data_dir(env: Mapping[str, str]) -> Path:
    return _xdg(env, "XDG_DATA_HOME", ".local/share")


def _is_built_in(directory: Path) -> bool:
    try:
        return directory.resolve() == BUILT_IN_CONFIG.resolve()
    except OSError:
        return False


def _location(directory: Path, source: str, env: Mapping[str, str], cwd: Path) -> ConfigLocation:
    if _is_built_in(directory):  # however reached, the defaults keep their data out of the package
        return ConfigLocation(directory, source, user_data_dir(env))
    return ConfigLocation(directory, source, cwd / directory)


def locate_config(
    given: Path | str | None, env: Mapping[str, str], cwd: Path | None = None
) -> ConfigLocation:
    """The folder to read, by the order in the module's docstring."""
    cwd = cwd or Path.cwd()
    if given:
        return _location(Path(given), "--config-dir", env, cwd)
    if env.get("ROUTER_CONFIG_DIR"):
        return _location(Path(env["ROUTER_CONFIG_DIR"]), "ROUTER_CONFIG_DIR", env, cwd)
    # Found rather than named: a folder counts only if it holds the router's file (a project's
    # own config/ does not), and not if it is the defaults (the repository's config/): the
    # user's folder comes before those.
    for directory, source in (
        (cwd / "config", "./config"),
        (user_config_dir(env), "user config folder"),
    ):
        if (directory / SERVER_FILE).is_file() and not _is_built_in(directory):
            return ConfigLocation(directory, source, directory)
    return ConfigLocation(BUILT_IN_CONFIG, "built-in defaults", user_data_dir(env))


def _anchor(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def anchor_paths(
    server: ServerConfig, base: Path, from_env: set[tuple[str, str]], cwd: Path | None = None
) -> ServerConfig:
    """``server`` with every relative path made absolute: against ``base``, or against the
    working directory for a value an environment variable set (``from_env``)."""
    cwd = cwd or Path.cwd()

    def anchored(section: str, key: str, path: Path) -> Path:
        return _anchor(path, cwd if (section, key) in from_env else base)

    memory, embedded = server.memory, server.embedded
    decisions = server.logging.decision_log
    model_path = embedded.model_path
    return server.model_copy(
        update={
            "memory": memory.model_copy(
                update={
                    "vector_store_path": anchored(
                        "memory", "vector_store_path", memory.vector_store_path
                    ),
                    "workspace_roots": [_anchor(p, base) for p in memory.workspace_roots],
                    "allowed_roots": [_anchor(p, base) for p in memory.allowed_roots],
                }
            ),
            "embedded": embedded.model_copy(
                update={"model_path": None if model_path is None else _anchor(model_path, base)}
            ),
            "logging": server.logging.model_copy(
                update={
                    "decision_log": decisions.model_copy(
                        update={"path": _anchor(decisions.path, base)}
                    )
                }
            ),
        }
    )
