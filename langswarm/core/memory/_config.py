"""Configuration: from ``initialize_memory``'s arguments to a backend and runtime settings.

Runtime options are the fields of :class:`RuntimeSettings`; backend options are the keyword
arguments of each backend's constructor, checked by :func:`parse_options` the same way. Each
option's type is its annotation and its meaning its ``help`` metadata, so an error can name the
key, the type expected and the values allowed, and the reference in docs/configuration.md is
checked against these definitions.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from ._validate import parse_choice
from .exceptions import MemoryConfigurationError
from .interfaces import Durability, Summarizer

__all__ = [
    "DEFAULT_DB_ENV",
    "ENV_PREFIX",
    "URL_ENV",
    "memory_from_url",
    "options_from_env",
    "PROFILES",
    "RuntimeSettings",
    "build",
    "default_db_path",
    "describe_type",
    "parse_options",
    "settings_from_options",
]

#: Environment variable that moves the "production" profile's database file.
DEFAULT_DB_ENV = "LANGSWARM_MEMORY_DB"
#: Environment variable naming the store when ``initialize_memory()`` is given none.
URL_ENV = "LANGSWARM_MEMORY_URL"
#: Prefix of the environment variables that set runtime options.
ENV_PREFIX = "LANGSWARM_MEMORY_"

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

    Errors name the key, the type expected and, for choices, the allowed values; an unknown
    key is answered with the closest known one and every known key with its type.
    """
    hints = _option_types(target)
    checked: dict[str, Any] = {}
    for key, value in options.items():
        if key not in hints:
            raise MemoryConfigurationError(_unknown(key, hints, where))
        checked[key] = _coerce(hints[key], value, f"{where} option {key!r}")
    return checked


def _unknown(key: object, hints: Mapping[str, Any], where: str) -> str:
    if not hints:
        return f"unknown {where} option {key!r}: the {where} takes no options"
    close = difflib.get_close_matches(str(key), list(hints), n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    known = ", ".join(f"{name} ({describe_type(hints[name])})" for name in sorted(hints))
    return f"unknown {where} option {key!r}{guess}; known: {known}"


def _option_types(target: Callable[..., Any] | type) -> dict[str, Any]:
    if dataclasses.is_dataclass(target):
        hints = typing.get_type_hints(target)
        return {f.name: hints[f.name] for f in dataclasses.fields(target)}
    init = target.__init__ if isinstance(target, type) else target  # type: ignore[misc]
    hints = typing.get_type_hints(init)
    hints.pop("return", None)
    return hints


def describe_type(annotation: Any) -> str:
    """An option's type as errors and docs/configuration.md write it: ``float | None``,
    ``'FULL' | 'NORMAL'`` (an enum by its values)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(describe_type(arg) for arg in typing.get_args(annotation))
    if origin is Literal:
        return " | ".join(repr(arg) for arg in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " | ".join(repr(member.value) for member in annotation)
    if annotation is type(None):
        return "None"
    return str(getattr(annotation, "__name__", annotation))


class _WrongType(Exception):
    """Within this module: a value is not of the type tried."""


def _coerce(annotation: Any, value: Any, what: str) -> Any:
    """``value`` as ``annotation`` allows, or a configuration error naming ``what``, the type
    expected (with the allowed values, for choices) and the value given."""
    try:
        return _accept(annotation, value, what)
    except _WrongType:
        given = f"{value!r} ({type(value).__name__})"
        raise MemoryConfigurationError(
            f"{what} expects {describe_type(annotation)}, not {given}"
        ) from None


def _accept(annotation: Any, value: Any, what: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for choice in typing.get_args(annotation):
            try:
                return _accept(choice, value, what)
            except _WrongType:
                continue
        raise _WrongType
    if origin is Literal:
        if value not in typing.get_args(annotation):
            raise _WrongType
        return value
    if annotation is type(None):
        if value is not None:
            raise _WrongType
        return None
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        try:
            return parse_choice(annotation, value, what, MemoryConfigurationError)
        except MemoryConfigurationError:
            raise _WrongType from None
    return _scalar(annotation, value, what)


def _scalar(annotation: Any, value: Any, what: str) -> Any:
    if annotation in (int, float):
        kinds = int if annotation is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise _WrongType
        if not value >= 0:  # negative, or NaN
            raise MemoryConfigurationError(f"{what} must be zero or more, not {value!r}")
        return value
    if isinstance(annotation, type) and not isinstance(value, annotation):
        raise _WrongType
    if annotation is str and not value:
        raise MemoryConfigurationError(f"{what} expects a non-empty str")
    return value


def settings_from_options(options: Mapping[str, Any]) -> RuntimeSettings:
    """Runtime settings from the options beside ``backend`` in a memory config."""
    return RuntimeSettings(**parse_options(RuntimeSettings, options, "memory"))


def _backend(kind: str, config: Mapping[str, Any]) -> Any:
    if kind in ("memory", "in_memory", "inmemory"):
        from .backends.memory import InMemoryBackend

        options = parse_options(InMemoryBackend, config, "memory backend")
        return _construct(InMemoryBackend, options, "memory backend")
    if kind == "sqlite":
        from .backends.sqlite import SQLiteBackend

        options = parse_options(SQLiteBackend, config, "sqlite backend")
        if "db_path" not in options:
            path = Path(default_db_path())
            path.parent.mkdir(parents=True, exist_ok=True)
            options["db_path"] = str(path)
        return _construct(SQLiteBackend, options, "sqlite backend")
    if kind == "redis":
        from .backends.redis import RedisBackend

        options = parse_options(RedisBackend, config, "redis backend")
        return _construct(RedisBackend, options, "redis backend")
    raise MemoryConfigurationError(
        f"unknown memory backend {kind!r}; expected 'memory', 'sqlite' or 'redis'"
    )


def _construct(backend: Callable[..., Any], options: dict[str, Any], where: str) -> Any:
    """``backend(**options)``; a value the backend refuses is reported as ``where``'s."""
    try:
        return backend(**options)
    except MemoryConfigurationError as exc:
        raise MemoryConfigurationError(f"{where}: {exc}") from exc


def memory_from_url(url: str) -> dict[str, Any]:
    """The ``memory=`` dict for a store given as a URL: ``memory://``, ``sqlite:///relative``
    or ``sqlite:////absolute/path`` (``sqlite://:memory:``), ``redis://``, ``rediss://`` or
    ``redis+cluster://host:port,host:port`` (Redis backend options such as ``key_prefix`` may
    go in the query)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise MemoryConfigurationError(f"a memory URL looks like sqlite:///file.db, not {url!r}")
    if scheme == "memory":
        return {"backend": "memory"}
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise MemoryConfigurationError(f"memory URL {url!r} names no SQLite file")
        return {"backend": "sqlite", "config": {"db_path": path}}
    if scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        return {"backend": "redis", "config": _redis_url_config(url)}
    raise MemoryConfigurationError(
        f"unknown memory URL scheme {scheme!r}; expected memory, sqlite, redis, rediss or "
        "redis+cluster"
    )


#: Redis backend options a URL's query may carry (the rest of the query stays in the URL).
_REDIS_URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "key_prefix": str,
    "ttl_seconds": int,
    "pool_size": int,
    "connect_timeout": float,
    "socket_timeout": float,
}


_KINDS: dict[Callable[[str], Any], str] = {int: "a whole number", float: "a number"}


def _redis_url_config(url: str) -> dict[str, Any]:
    """``url`` split into the Redis backend's options: ``?key_prefix=app&ttl_seconds=3600``
    become options, other query items (``ssl_*``) stay in the URL."""
    base, sep, query = url.partition("?")
    if not sep:
        return {"url": url}
    config: dict[str, Any] = {}
    kept = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        convert = _REDIS_URL_OPTIONS.get(name)
        if convert is None:
            kept.append((name, value))
            continue
        try:
            config[name] = convert(value)
        except ValueError:
            raise MemoryConfigurationError(
                f"redis URL option {name} must be {_KINDS[convert]}, not {value!r}"
            ) from None
    config["url"] = f"{base}?{urlencode(kept)}" if kept else base
    return config


def options_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Runtime options set in the environment: ``LANGSWARM_MEMORY_<OPTION>`` for each field of
    :class:`RuntimeSettings` (numbers as text, ``none`` for ``None``)."""
    found: dict[str, Any] = {}
    for option in dataclasses.fields(RuntimeSettings):
        raw = environ.get(f"{ENV_PREFIX}{option.name.upper()}")
        if raw is None or option.name == "summarizer":
            continue
        found[option.name] = _from_text(raw.strip(), option.name)
    return found


def _from_text(raw: str, name: str) -> Any:
    if raw.lower() in ("none", ""):
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def _env_options() -> dict[str, Any]:
    """Runtime options set in the environment, checked one by one so that an error names
    the variable it came from."""
    found = options_from_env(os.environ)
    for name, value in found.items():
        try:
            parse_options(RuntimeSettings, {name: value}, "memory")
        except MemoryConfigurationError as exc:
            raise MemoryConfigurationError(f"{ENV_PREFIX}{name.upper()}: {exc}") from exc
    return found


def build(
    profile: str | None, memory: Mapping[str, Any] | None, overrides: Mapping[str, Any]
) -> tuple[Any, RuntimeSettings]:
    """Turn ``initialize_memory`` arguments into a backend and runtime settings.

    Without a profile or ``memory``, ``LANGSWARM_MEMORY_URL`` names the store (default: in
    memory). ``LANGSWARM_MEMORY_<OPTION>`` variables set runtime options that the arguments
    do not.
    """
    if profile is not None and memory is not None:
        raise MemoryConfigurationError("pass either a profile or memory=..., not both")
    url = os.environ.get(URL_ENV)
    if memory is None and profile is None and url:
        memory = memory_from_url(url)
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
    options = {**_env_options(), **memory}
    kind = options.pop("backend", None)
    if not isinstance(kind, str):
        raise MemoryConfigurationError(
            f"memory config key 'backend' expects 'memory' | 'sqlite' | 'redis', not {kind!r}"
        )
    config = options.pop("config", None) or {}
    if not isinstance(config, Mapping):
        raise MemoryConfigurationError(
            f"memory config key 'config' expects a dict of backend options, not "
            f"{type(config).__name__}"
        )
    encryption = options.pop("encryption", None)
    options.update(overrides)
    backend = _backend(kind.lower(), config)
    if encryption is not None:
        backend = _encrypted(backend, encryption)
    return backend, settings_from_options(options)


def _encrypted(backend: Any, encryption: object) -> Any:
    """``backend`` behind encryption at rest, from ``{"keyring": ..., "allow_plaintext": ...}``."""
    from .backends.encrypted import EncryptedBackend

    if not isinstance(encryption, Mapping) or "keyring" not in encryption or "inner" in encryption:
        raise MemoryConfigurationError(
            "memory config key 'encryption' expects {'keyring': ..., 'allow_plaintext': bool}"
        )
    checked = parse_options(EncryptedBackend, encryption, "encryption")
    return _construct(lambda **kw: EncryptedBackend(backend, **kw), checked, "encryption")
