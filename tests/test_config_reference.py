"""docs/configuration.md and the code agree: every option the code accepts is documented with
its type, default and variable, every documented option is accepted, and configuration
errors name the key, the type expected and the values allowed."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import re
from pathlib import Path
from typing import Any

import pytest

from langswarm.core.memory import _config
from langswarm.core.memory._config import (
    DEFAULT_DB_ENV,
    ENV_PREFIX,
    PROFILES,
    URL_ENV,
    RuntimeSettings,
    _option_types,
    build,
    describe_type,
    memory_from_url,
)
from langswarm.core.memory.backends.encrypted import EncryptedBackend, StaticKeyring
from langswarm.core.memory.backends.memory import InMemoryBackend
from langswarm.core.memory.backends.redis import RedisBackend
from langswarm.core.memory.backends.sqlite import SQLiteBackend
from langswarm.core.memory.exceptions import MemoryConfigurationError

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
BACKENDS: dict[str, type] = {"sqlite": SQLiteBackend, "redis": RedisBackend}
NO_VARIABLE = "—"
REQUIRED = "required"


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row (``\\|`` is a literal bar), code spans unwrapped."""
    parts = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [re.sub(r"^`([^`]*)`$", r"\1", part.strip().replace("\\|", "|")) for part in parts]


def table(heading: str) -> list[dict[str, str]]:
    """The first table after the heading ``heading`` (its whole text), as dicts by column."""
    lines = REFERENCE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip("#").strip() == heading)
    rows = [line for line in lines[start + 1 :] if line.startswith("|") or line.startswith("#")]
    block: list[str] = []
    for line in rows:
        if line.startswith("#"):
            break
        block.append(line)
    assert len(block) >= 2, f"no table under {heading!r}"
    header = _cells(block[0])
    return [dict(zip(header, _cells(line), strict=True)) for line in block[2:]]


def by_name(rows: list[dict[str, str]], column: str) -> dict[str, dict[str, str]]:
    return {row[column]: row for row in rows}


def literal(text: str) -> Any:
    """A default as the reference writes it (``None``, ``16384``, ``"FULL"``)."""
    return ast.literal_eval(text)


# -- runtime options -------------------------------------------------------------------------


def test_every_runtime_option_is_documented_with_its_type_default_and_variable() -> None:
    documented = by_name(table("Runtime options"), "Option")
    fields = {f.name: f for f in dataclasses.fields(RuntimeSettings)}
    assert set(documented) == set(fields)
    hints = _option_types(RuntimeSettings)
    for name, field in fields.items():
        row = documented[name]
        assert row["Type"] == describe_type(hints[name]), name
        assert literal(row["Default"]) == field.default, name
        assert row["Meaning"], name
        expected = NO_VARIABLE if name == "summarizer" else f"{ENV_PREFIX}{name.upper()}"
        assert row["Environment variable"] == expected, name


def test_every_documented_runtime_option_is_accepted_at_its_default() -> None:
    for name, row in by_name(table("Runtime options"), "Option").items():
        _, settings = build(None, {"backend": "memory", name: literal(row["Default"])}, {})
        assert getattr(settings, name) == literal(row["Default"])


def _text_for(row: dict[str, str]) -> tuple[str, Any]:
    """A value other than the default, as a variable would hold it, and the value meant."""
    default = literal(row["Default"])
    kind = row["Type"]
    if kind.startswith("'buffered'"):
        return "buffered", "buffered"
    if default is None:
        return "60", 60
    if kind.endswith("| None"):
        return "none", None
    if kind == "int":
        return str(default + 1), default + 1
    return str(default + 0.5), default + 0.5


def test_every_documented_variable_sets_its_option(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [r for r in table("Runtime options") if r["Environment variable"] != NO_VARIABLE]
    assert rows
    for row in rows:
        monkeypatch.setenv(row["Environment variable"], _text_for(row)[0])
    monkeypatch.delenv(URL_ENV, raising=False)
    _, settings = build(None, None, {})
    for row in rows:
        value = getattr(settings, row["Option"])
        assert getattr(value, "value", value) == _text_for(row)[1], row["Option"]


def test_arguments_win_over_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}IDLE_TIMEOUT", "5")
    _, settings = build(None, {"backend": "memory", "idle_timeout": 7}, {})
    assert settings.idle_timeout == 7
    _, settings = build(None, {"backend": "memory"}, {"idle_timeout": 9})
    assert settings.idle_timeout == 9


# -- top level, profiles, backends -----------------------------------------------------------


def _top_level_keys() -> set[str]:
    """The keys ``build`` takes out of the memory dict before the runtime options."""
    tree = ast.parse(inspect.getsource(_config.build))
    return {
        str(node.args[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and ast.unparse(node.func) == "options.pop"
        and isinstance(node.args[0], ast.Constant)
    }


def test_top_level_keys_and_profiles_are_documented() -> None:
    keys = by_name(table("Top-level keys"), "Key")
    assert _top_level_keys() >= {"backend", "config"}, "the scan should find build's keys"
    assert set(keys) == _top_level_keys()
    assert all(row["Type"] and row["Default"] for row in keys.values())
    for backend in ("memory", "sqlite", "redis"):
        assert f"'{backend}'" in keys["backend"]["Type"]
    assert set(by_name(table("Profiles"), "Profile")) == set(PROFILES)


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_every_backend_option_is_documented_with_its_type_and_default(kind: str) -> None:
    backend = BACKENDS[kind]
    documented = by_name(table(f"`{kind}`"), "Option")
    hints = _option_types(backend)
    assert set(documented) == set(hints)
    parameters = inspect.signature(backend).parameters
    for name, row in documented.items():
        assert row["Type"] == describe_type(hints[name]), (kind, name)
        assert row["Meaning"], (kind, name)
        if (kind, name) != ("sqlite", "db_path"):  # the default path: next test
            assert literal(row["Default"]) == parameters[name].default, (kind, name)


def test_the_documented_sqlite_default_path_is_the_one_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(DEFAULT_DB_ENV, raising=False)
    row = by_name(table("`sqlite`"), "Option")["db_path"]
    backend, _ = build(None, {"backend": "sqlite"}, {})
    assert backend.db_path == str(Path(literal(row["Default"])).expanduser())
    monkeypatch.setenv(DEFAULT_DB_ENV, str(tmp_path / "elsewhere.db"))
    backend, _ = build(None, {"backend": "sqlite"}, {})
    assert backend.db_path == str(tmp_path / "elsewhere.db")
    assert DEFAULT_DB_ENV in row["Meaning"]


def keyring() -> StaticKeyring:
    return StaticKeyring({"k1": os.urandom(32)}, current="k1")


def test_every_encryption_option_is_documented_and_accepted() -> None:
    documented = by_name(table("`encryption`"), "Option")
    hints = _option_types(EncryptedBackend)
    hints.pop("inner")  # the store itself, from backend and config
    assert set(documented) == set(hints)
    parameters = inspect.signature(EncryptedBackend).parameters
    options: dict[str, Any] = {}
    for name, row in documented.items():
        assert row["Type"] == describe_type(hints[name]), name
        assert row["Meaning"], name
        default = parameters[name].default
        if default is inspect.Parameter.empty:
            assert row["Default"] == REQUIRED, name
        else:
            assert literal(row["Default"]) == default, name
            options[name] = default
    backend, _ = build(
        None, {"backend": "memory", "encryption": {**options, "keyring": keyring()}}, {}
    )
    assert isinstance(backend, EncryptedBackend)
    assert literal(by_name(table("Top-level keys"), "Key")["encryption"]["Default"]) is None


def test_the_memory_backend_takes_no_options_as_documented() -> None:
    assert _option_types(InMemoryBackend) == {}
    assert "Takes no options." in REFERENCE.read_text()
    with pytest.raises(MemoryConfigurationError, match="takes no options"):
        build(None, {"backend": "memory", "config": {"size": 1}}, {})


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_every_documented_backend_option_is_accepted_at_its_default(kind: str) -> None:
    config = {
        name: literal(row["Default"]) for name, row in by_name(table(f"`{kind}`"), "Option").items()
    }
    backend, _ = build(None, {"backend": kind, "config": config}, {})
    assert isinstance(backend, BACKENDS[kind])


def test_every_documented_url_names_its_store(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = table("Backend URLs")
    schemes = {row["URL"].partition("://")[0] for row in rows}
    assert schemes == {"memory", "sqlite", "redis", "rediss", "redis+cluster", "rediss+cluster"}
    for row in rows:
        store = re.match(r"`?(\w+)", row["Store"]).group(1)  # type: ignore[union-attr]
        memory = memory_from_url(row["URL"])
        assert memory["backend"] == store, row["URL"]
        monkeypatch.setenv(URL_ENV, row["URL"])
        backend, _ = build(None, None, {})
        assert backend.name == store, row["URL"]
    redis = memory_from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")
    backend, _ = build(None, redis, {})
    assert backend.cluster


def test_sqlite_urls_name_the_documented_files() -> None:
    assert memory_from_url("sqlite:///chat.db")["config"]["db_path"] == "chat.db"
    assert memory_from_url("sqlite:////var/lib/app/chat.db")["config"]["db_path"] == (
        "/var/lib/app/chat.db"
    )
    assert memory_from_url("sqlite://:memory:")["config"]["db_path"] == ":memory:"


def test_every_variable_the_code_reads_is_listed() -> None:
    variables = by_name(table("Environment variables"), "Variable")
    assert set(variables) == {URL_ENV, DEFAULT_DB_ENV, f"{ENV_PREFIX}<OPTION>"}


# -- errors ----------------------------------------------------------------------------------


def error_of(memory: dict[str, Any]) -> str:
    with pytest.raises(MemoryConfigurationError) as raised:
        build(None, memory, {})
    return str(raised.value)


def test_a_backend_key_typo_is_a_configuration_error_naming_the_keys_there_are() -> None:
    text = error_of({"backend": "sqlite", "config": {"path": "x.db"}})
    assert "unknown sqlite backend option 'path'" in text
    assert "did you mean 'db_path'?" in text
    assert "db_path (str)" in text and "synchronous ('FULL' | 'NORMAL')" in text
    text = error_of({"backend": "redis", "config": {"hostname": "x"}})
    assert "did you mean 'host'?" in text and "ttl_seconds (int | None)" in text


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        (
            {"backend": "memory", "idle_timeout": "5m"},
            "memory option 'idle_timeout' expects float, not '5m' (str)",
        ),
        (
            {"backend": "memory", "durability": "always"},
            "memory option 'durability' expects 'buffered' | 'committed' | None, not 'always'",
        ),
        (
            {"backend": "memory", "max_restarts": 1.5},
            "memory option 'max_restarts' expects int, not 1.5 (float)",
        ),
        (
            {"backend": "memory", "call_timeout": True},
            "memory option 'call_timeout' expects float | None, not True (bool)",
        ),
        (
            {"backend": "sqlite", "config": {"synchronous": "OFF"}},
            "sqlite backend option 'synchronous' expects 'FULL' | 'NORMAL', not 'OFF' (str)",
        ),
        (
            {"backend": "redis", "config": {"port": "6379"}},
            "redis backend option 'port' expects int, not '6379' (str)",
        ),
        (
            {"backend": "redis", "config": {"ttl_seconds": 1.5}},
            "redis backend option 'ttl_seconds' expects int | None, not 1.5 (float)",
        ),
        (
            {"backend": "memory", "idle_timeout": -1},
            "memory option 'idle_timeout' must be zero or more, not -1",
        ),
        (
            {"backend": "redis", "config": {"pool_size": 0}},
            "redis backend: pool_size must be a positive int, not 0",
        ),
        (
            {"backend": "memory", "config": ["x"]},
            "memory config key 'config' expects a dict of backend options, not list",
        ),
        (
            {"config": {}},
            "memory config key 'backend' expects 'memory' | 'sqlite' | 'redis', not None",
        ),
    ],
)
def test_errors_name_the_key_the_type_expected_and_the_values_allowed(
    memory: dict[str, Any], expected: str
) -> None:
    assert expected in error_of(memory)


def test_a_bad_variable_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}DURABILITY", "always")
    text = error_of({"backend": "memory"})
    assert text.startswith(f"{ENV_PREFIX}DURABILITY: memory option 'durability' expects")
