"""Profiles and configuration: from ``initialize_memory``'s arguments to a backend and settings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .actors.session import ActorSettings
from .actors.supervisor import RestartPolicy
from .backends.base import Backend
from .exceptions import MemoryConfigurationError
from .interfaces import Durability, Summarizer

__all__ = ["DEFAULT_DB_ENV", "RuntimeSettings", "build", "default_db_path", "settings_from_options"]

#: Environment variable that moves the "production" profile's database file.
DEFAULT_DB_ENV = "LANGSWARM_MEMORY_DB"


def default_db_path() -> str:
    """Where the "production" profile keeps its SQLite file."""
    configured = os.environ.get(DEFAULT_DB_ENV)
    if configured:
        return configured
    return str(Path.home() / ".langswarm" / "memory.db")


PROFILES: dict[str, dict[str, Any]] = {
    "development": {"backend": "memory"},
    "testing": {"backend": "sqlite", "config": {"db_path": ":memory:"}},
    "production": {"backend": "sqlite"},
}


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """How the runtime behaves, independent of where it stores data.

    ``durability`` ``None`` means ``committed`` on persistent backends and ``buffered``
    on the in-memory one.
    """

    durability: Durability | None = None
    flush_capacity: int = 16_384
    retry_budget: float = 10.0
    idle_timeout: float = 300.0
    max_live_sessions: int = 100_000
    ttl_seconds: float | None = None
    sweep_interval: float = 1.0
    shutdown_grace: float = 30.0
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    actor: ActorSettings = field(default_factory=ActorSettings)
    summarizer: Summarizer | None = None


_RUNTIME_KEYS: dict[str, type | tuple[type, ...]] = {
    "durability": str,
    "flush_capacity": int,
    "retry_budget": (int, float),
    "idle_timeout": (int, float),
    "max_live_sessions": int,
    "ttl_seconds": (int, float),
    "sweep_interval": (int, float),
    "shutdown_grace": (int, float),
    "max_restarts": int,
    "restart_period": (int, float),
    "mailbox_size": int,
    "call_timeout": (int, float),
    "tail_size": int,
    "summary_max_tokens": int,
}


def settings_from_options(options: dict[str, Any], summarizer: Any) -> RuntimeSettings:
    for key, value in options.items():
        expected = _RUNTIME_KEYS.get(key)
        if expected is None:
            known = ", ".join(sorted(_RUNTIME_KEYS))
            raise MemoryConfigurationError(f"unknown memory option {key!r}; known: {known}")
        if value is not None and (not isinstance(value, expected) or isinstance(value, bool)):
            raise MemoryConfigurationError(f"memory option {key!r} has the wrong type")
        if isinstance(value, int | float) and value < 0:
            raise MemoryConfigurationError(f"memory option {key!r} must not be negative")
    durability = options.get("durability")
    if durability is not None:
        try:
            durability = Durability(durability)
        except ValueError:
            raise MemoryConfigurationError(
                f"durability must be 'buffered' or 'committed', not {durability!r}"
            ) from None
    if summarizer is not None and not isinstance(summarizer, Summarizer):
        raise MemoryConfigurationError("summarizer must implement the Summarizer protocol")
    actor = ActorSettings(
        **{
            k: options[k]
            for k in ("mailbox_size", "call_timeout", "tail_size", "summary_max_tokens")
            if k in options
        }
    )
    policy = RestartPolicy(
        **{
            field: options[key]
            for key, field in (("max_restarts", "max_restarts"), ("restart_period", "period"))
            if key in options
        }
    )
    plain = {
        k: options[k]
        for k in (
            "flush_capacity",
            "retry_budget",
            "idle_timeout",
            "max_live_sessions",
            "ttl_seconds",
            "sweep_interval",
            "shutdown_grace",
        )
        if k in options
    }
    return RuntimeSettings(
        durability=durability, restart_policy=policy, actor=actor, summarizer=summarizer, **plain
    )


def _backend(kind: str, config: dict[str, Any]) -> Backend:
    try:
        if kind in ("memory", "in_memory", "inmemory"):
            if config:
                raise MemoryConfigurationError("the memory backend takes no config")
            from .backends.memory import InMemoryBackend

            return InMemoryBackend()
        if kind == "sqlite":
            from .backends.sqlite import SQLiteBackend

            if "db_path" not in config:
                path = Path(default_db_path())
                path.parent.mkdir(parents=True, exist_ok=True)
                config = {"db_path": str(path), **config}
            return SQLiteBackend(**config)
        if kind == "redis":
            from .backends.redis import RedisBackend

            return RedisBackend(**config)
    except TypeError as exc:
        raise MemoryConfigurationError(f"bad {kind} backend config: {exc}") from exc
    raise MemoryConfigurationError(
        f"unknown memory backend {kind!r}; expected 'memory', 'sqlite' or 'redis'"
    )


def build(
    profile: str | None, memory: dict[str, Any] | None, overrides: dict[str, Any]
) -> tuple[Backend, RuntimeSettings]:
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
    if not isinstance(memory, dict):
        raise MemoryConfigurationError(
            "memory= must be a dict like {'backend': ..., 'config': {...}}"
        )
    options = dict(memory)
    kind = options.pop("backend", None)
    if not isinstance(kind, str):
        raise MemoryConfigurationError("memory config needs a 'backend' name")
    config = options.pop("config", None) or {}
    if not isinstance(config, dict):
        raise MemoryConfigurationError("memory config 'config' must be a dict")
    options.update(overrides)
    summarizer = options.pop("summarizer", None)
    if kind == "redis":
        if config.get("ttl_seconds") and "ttl_seconds" not in options:
            # Redis expires stored keys itself; live actors must expire with them.
            options["ttl_seconds"] = config["ttl_seconds"]
        if "retry_budget" in options and "retry_budget_seconds" not in config:
            # The backend retries connection errors itself, within the runtime's budget.
            config["retry_budget_seconds"] = options["retry_budget"]
    return _backend(kind.lower(), dict(config)), settings_from_options(options, summarizer)
