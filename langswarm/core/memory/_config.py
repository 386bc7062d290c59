"""Configuration: from ``initialize_memory``'s arguments to a backend and runtime settings.

Runtime options are the fields of :class:`RuntimeSettings`; backend options are the keyword
arguments of each backend's constructor, checked by :func:`parse_options` the same way. Each
option's type is its annotation and its meaning its ``help`` metadata, so an error can name the
key, the type expected and the values allowed, and the reference in the README is checked
against these definitions.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from ._validate import parse_choice
from .exceptions import MemoryConfigurationError
from .interfaces import Durability, Summarizer

__all__ = [
    "DEFAULT_DB_ENV",
    "PROFILES",
    "RuntimeSettings",
    "build",
    "default_db_path",
    "parse_options",
    "settings_from_options",
]

#: Environment variable that moves the "production" profile's database file.
DEFAULT_DB_ENV = "LANGSWARM_MEMORY_DB"

PROFILES: dict[str, dict[str, Any]] = {
    "development": {"backend": "memory"},
    "testing": {"backend": "sqlite", "config": {"db_path": ":memory:"}},
    "production": {"backend": "sqlite"},
}


def default_db_path() -> str:
    """Where the "production" profile keeps its SQLite file."""
    configured = os.environ.get(DEFAULT_DB_ENV)
    if configured:
        return configured
    return str(Path.home() / ".langswarm" / "memory.db")


def _help(text: str) -> dict[str, str]:
    """Field metadata: what the option means, for errors and the configuration reference."""
    return {"help": text}


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """How the runtime behaves, whatever the backend. Each field is an option of
    ``initialize_memory(memory={...})`` / ``MemoryManager.from_config``."""

    durability: Durability | None = field(
        default=None,
        metadata=_help(
            "when writes are acknowledged: 'committed' (stored) or 'buffered' (accepted); "
            "default: committed on persistent backends, buffered in memory"
        ),
    )
    flush_capacity: int = field(
        default=16_384,
        metadata=_help("writes the flusher holds before writers wait (backpressure)"),
    )
    retry_budget: float = field(
        default=10.0,
        metadata=_help("seconds a failing storage operation is retried before it fails"),
    )
    idle_timeout: float = field(
        default=300.0, metadata=_help("seconds without a call before a session leaves memory")
    )
    max_live_sessions: int = field(
        default=100_000,
        metadata=_help("sessions kept in memory at most (least recently used leave first)"),
    )
    ttl_seconds: float | None = field(
        default=None,
        metadata=_help(
            "seconds after its last update when a session expires (default: the backend's)"
        ),
    )
    sweep_interval: float = field(
        default=1.0, metadata=_help("seconds between passivation and expiry sweeps")
    )
    shutdown_grace: float = field(
        default=30.0, metadata=_help("seconds closing waits for pending writes to be stored")
    )
    max_restarts: int = field(
        default=3, metadata=_help("crashes of a session within restart_period before it fails")
    )
    restart_period: float = field(
        default=5.0, metadata=_help("window in seconds for counting max_restarts")
    )
    mailbox_size: int = field(
        default=256, metadata=_help("commands queued per busy session before callers wait")
    )
    call_timeout: float | None = field(
        default=30.0,
        metadata=_help("seconds a call may wait for its session before MemoryOverloadError"),
    )
    tail_size: int = field(
        default=2_000, metadata=_help("newest messages per session kept in memory")
    )
    summary_max_tokens: int = field(default=512, metadata=_help("token budget of each summary"))
    summarizer: Summarizer | None = field(
        default=None, metadata=_help("a Summarizer; default: the offline extractive one")
    )


def parse_options(
    target: Callable[..., Any] | type, options: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Check ``options`` against ``target``'s typed fields (a dataclass) or keyword
    parameters (a constructor) and return them, enums and numbers normalised.

    Errors name the key, the type expected and, for choices, the allowed values.
    """
    hints = _option_types(target)
    checked: dict[str, Any] = {}
    for key, value in options.items():
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise MemoryConfigurationError(f"unknown {where} option {key!r}; known: {known}")
        checked[key] = _coerce(hints[key], value, f"{where} option {key!r}")
    return checked


def _option_types(target: Callable[..., Any] | type) -> dict[str, Any]:
    if dataclasses.is_dataclass(target):
        hints = typing.get_type_hints(target)
        return {f.name: hints[f.name] for f in dataclasses.fields(target)}
    init = target.__init__ if isinstance(target, type) else target  # type: ignore[misc]
    hints = typing.get_type_hints(init)
    hints.pop("return", None)
    return hints


def _coerce(annotation: Any, value: Any, what: str) -> Any:
    """``value`` as ``annotation`` allows, or a configuration error naming ``what``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        choices = typing.get_args(annotation)
        if value is None and type(None) in choices:
            return None
        errors: list[str] = []
        for choice in choices:
            if choice is type(None):
                continue
            try:
                return _coerce(choice, value, what)
            except MemoryConfigurationError as exc:
                errors.append(str(exc))
        if type(None) in choices:
            raise MemoryConfigurationError(f"{errors[0]} or None")
        raise MemoryConfigurationError(errors[0])
    if origin is Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            listed = ", ".join(map(repr, allowed))
            raise MemoryConfigurationError(f"{what} must be one of {listed}, not {value!r}")
        return value
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return parse_choice(annotation, value, what, MemoryConfigurationError)
    return _scalar(annotation, value, what)


def _scalar(annotation: Any, value: Any, what: str) -> Any:
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MemoryConfigurationError(f"{what} must be a number, not {value!r}")
        if value < 0:
            raise MemoryConfigurationError(f"{what} must not be negative, not {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MemoryConfigurationError(f"{what} must be an int, not {value!r}")
        if value < 0:
            raise MemoryConfigurationError(f"{what} must not be negative, not {value!r}")
        return value
    if annotation in (str, bool):
        if not isinstance(value, annotation) or (annotation is str and not value):
            name = "a non-empty string" if annotation is str else "True or False"
            raise MemoryConfigurationError(f"{what} must be {name}, not {value!r}")
        return value
    if isinstance(annotation, type) and not isinstance(value, annotation):
        raise MemoryConfigurationError(
            f"{what} must be a {annotation.__name__}, not {type(value).__name__}"
        )
    return value


def settings_from_options(options: Mapping[str, Any]) -> RuntimeSettings:
    """Runtime settings from the options beside ``backend`` in a memory config."""
    return RuntimeSettings(**parse_options(RuntimeSettings, options, "memory"))


def _backend(kind: str, config: Mapping[str, Any]) -> Any:
    if kind in ("memory", "in_memory", "inmemory"):
        from .backends.memory import InMemoryBackend

        return InMemoryBackend(**parse_options(InMemoryBackend, config, "memory backend"))
    if kind == "sqlite":
        from .backends.sqlite import SQLiteBackend

        options = parse_options(SQLiteBackend, config, "sqlite backend")
        if "db_path" not in options:
            path = Path(default_db_path())
            path.parent.mkdir(parents=True, exist_ok=True)
            options["db_path"] = str(path)
        return SQLiteBackend(**options)
    if kind == "redis":
        from .backends.redis import RedisBackend

        return RedisBackend(**parse_options(RedisBackend, config, "redis backend"))
    raise MemoryConfigurationError(
        f"unknown memory backend {kind!r}; expected 'memory', 'sqlite' or 'redis'"
    )


def build(
    profile: str | None, memory: Mapping[str, Any] | None, overrides: Mapping[str, Any]
) -> tuple[Any, RuntimeSettings]:
    """Turn ``initialize_memory`` arguments into a backend and runtime settings."""
    if profile is not None and memory is not None:
        raise MemoryConfigurationError("pass either a profile or memory=..., not both")
    if memory is None:
        name = profile or "development"
        if not isinstance(name, str) or name not in PROFILES:
            raise MemoryConfigurationError(
                f"unknown memory profile {name!r}; expected one of {', '.join(PROFILES)}"
            )
        memory = PROFILES[name]
    if not isinstance(memory, Mapping):
        raise MemoryConfigurationError(
            "memory= must be a dict like {'backend': ..., 'config': {...}}"
        )
    options = dict(memory)
    kind = options.pop("backend", None)
    if not isinstance(kind, str):
        raise MemoryConfigurationError("memory config needs a 'backend' name")
    config = options.pop("config", None) or {}
    if not isinstance(config, Mapping):
        raise MemoryConfigurationError("memory config 'config' must be a dict")
    options.update(overrides)
    return _backend(kind.lower(), config), settings_from_options(options)
