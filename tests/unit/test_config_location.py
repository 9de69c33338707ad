"""Where the configuration is read from, and what its relative paths are relative to."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

import memory_router
from memory_router.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
BUILT_IN = Path(memory_router.__file__).parent / "defaults"
SHIPPED_FILES = ("server_config.yaml", "models.yaml", "task_examples.yaml")


@pytest.fixture
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An empty working directory and empty user config and data folders."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return {
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
    }


def folder(directory: Path, port: int, **sections: object) -> Path:
    """A config folder whose server port says which one was read."""
    directory.mkdir(parents=True, exist_ok=True)
    server = {"server": {"port": port}, **sections}
    (directory / "server_config.yaml").write_text(yaml.safe_dump(server), encoding="utf-8")
    (directory / "models.yaml").write_text(
        (BUILT_IN / "models.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    return directory


def load(environ: dict[str, str], config_dir: Path | None = None) -> Settings:
    return load_settings(config_dir, environ=environ, env_file=None)


def test_no_config_anywhere_reads_the_built_in_defaults(
    homes: dict[str, str], tmp_path: Path
) -> None:
    settings = load(homes)
    assert settings.config_dir.resolve() == BUILT_IN.resolve()
    assert settings.config_source == "built-in defaults"
    assert settings.config.server.port == 8000
    assert len(settings.models.models) == 3 and settings.task_examples
    # Relative paths of the defaults: in the user's data folder, not the package's.
    data = tmp_path / "xdg-data" / "memory-router"
    assert settings.paths_relative_to == data
    assert settings.config.memory.vector_store_path == data / "vector_stores"
    assert settings.config.logging.decision_log.path == data / "logs" / "decisions.jsonl"


def test_without_xdg_variables_the_folders_are_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    folder(home / ".config" / "memory-router", 8101)
    settings = load({"HOME": str(home)})
    assert (settings.config_source, settings.config.server.port) == ("user config folder", 8101)
    (home / ".config" / "memory-router" / "server_config.yaml").unlink()
    settings = load({"HOME": str(home)})
    assert settings.config_source == "built-in defaults"
    data = home / ".local" / "share" / "memory-router"
    assert settings.config.memory.vector_store_path == data / "vector_stores"


def test_config_folder_precedence(homes: dict[str, str], tmp_path: Path) -> None:
    given = folder(tmp_path / "given", 8001)
    from_env = folder(tmp_path / "from-env", 8002)
    folder(Path.cwd() / "config", 8003)
    folder(Path(homes["XDG_CONFIG_HOME"]) / "memory-router", 8004)
    environ = {**homes, "ROUTER_CONFIG_DIR": str(from_env)}
    seen = load(environ, given)
    assert (seen.config.server.port, seen.config_source) == (8001, "--config-dir")
    assert seen.config_dir == given
    seen = load(environ)
    assert (seen.config.server.port, seen.config_source) == (8002, "ROUTER_CONFIG_DIR")
    seen = load(homes)
    assert (seen.config.server.port, seen.config_source) == (8003, "./config")
    assert seen.config_dir == Path.cwd() / "config"
    (Path.cwd() / "config" / "server_config.yaml").unlink()  # a config/ of something else
    seen = load(homes)
    assert (seen.config.server.port, seen.config_source) == (8004, "user config folder")
    assert seen.config_dir == Path(homes["XDG_CONFIG_HOME"]) / "memory-router"


def test_an_explicit_folder_must_hold_the_files(homes: dict[str, str], tmp_path: Path) -> None:
    from memory_router.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load({**homes, "ROUTER_CONFIG_DIR": str(tmp_path / "absent")})
    assert info.value.source == str(tmp_path / "absent" / "server_config.yaml")
    assert info.value.reason == "file not found"


def test_relative_paths_resolve_against_the_folder_read(
    homes: dict[str, str], tmp_path: Path
) -> None:
    directory = folder(
        tmp_path / "conf",
        8000,
        memory={
            "vector_store_path": "index",
            "workspace_roots": ["projects/a", str(tmp_path / "abs")],
            "allowed_roots": ["~/code"],
        },
        embedded={"model_path": "models/tiny.gguf"},
        logging={"decision_log": {"path": "logs/decisions.jsonl"}},
    )
    settings = load({**homes, "ROUTER_CONFIG_DIR": str(directory)})
    memory = settings.config.memory
    assert settings.paths_relative_to == directory
    assert memory.vector_store_path == directory / "index"
    assert memory.workspace_roots == [directory / "projects/a", tmp_path / "abs"]
    assert memory.allowed_roots == [Path.home() / "code"]
    assert settings.config.embedded.model_path == directory / "models/tiny.gguf"
    assert settings.config.logging.decision_log.path == directory / "logs/decisions.jsonl"


def test_a_relative_folder_is_made_absolute(homes: dict[str, str]) -> None:
    folder(Path.cwd() / "mine", 8000)
    settings = load({**homes, "ROUTER_CONFIG_DIR": "mine"})
    assert settings.config.memory.vector_store_path == Path.cwd() / "mine" / "vector_stores"


def test_a_relative_path_from_the_environment_is_relative_to_the_working_directory(
    homes: dict[str, str], tmp_path: Path
) -> None:
    directory = folder(tmp_path / "conf", 8000)
    environ = {**homes, "ROUTER_CONFIG_DIR": str(directory), "VECTOR_STORE_PATH": "here"}
    assert load(environ).config.memory.vector_store_path == Path.cwd() / "here"


def test_the_repository_config_is_the_built_in_defaults(
    homes: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One copy: config/ in the repository links to the package's defaults, and running from
    the repository reads them as the built-in defaults (data in the user's data folder)."""
    assert (REPO / "config").resolve() == BUILT_IN.resolve()
    monkeypatch.chdir(REPO)
    settings = load(homes)
    assert settings.config_source == "built-in defaults"
    assert settings.paths_relative_to == Path(homes["XDG_DATA_HOME"]) / "memory-router"
    # A user's own folder is not hidden by the repository's link to the defaults.
    folder(Path(homes["XDG_CONFIG_HOME"]) / "memory-router", 8123)
    assert load(homes).config.server.port == 8123
    # Named explicitly, the defaults still keep their data out of the package.
    explicit = load(homes, REPO / "config")
    assert explicit.config.memory.vector_store_path.parent == settings.paths_relative_to


def test_the_defaults_are_package_data() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "defaults/*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["memory_router"]
    assert all((BUILT_IN / name).is_file() for name in SHIPPED_FILES)
