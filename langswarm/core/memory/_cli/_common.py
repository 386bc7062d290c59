"""What every command shares: the store option, session filters, durations, running a
command's coroutine on the chosen event loop, and turning failures into one line."""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import click

from .._config import URL_ENV, build, memory_from_url
from .._retry import RetryPolicy
from ..backends.base import Backend
from ..backends.retrying import RetryingBackend
from ..exceptions import MemoryConfigurationError, MemoryConnectionError, MemoryError
from ..interfaces import SessionStatus

__all__ = [
    "PROG",
    "CommandError",
    "Group",
    "Options",
    "Selection",
    "open_store",
    "parse_age",
    "run",
    "selection_options",
    "sqlite_path",
    "url_argument",
    "url_option",
]

PROG = "langswarm-memory"
F = TypeVar("F", bound=Callable[..., Any])

#: How long a failing store call is retried (dropped connections, a busy SQLite file).
RETRY = RetryPolicy(budget=30.0)


class CommandError(click.ClickException):
    """A command failed (exit status 1); the message is printed as one line, after the
    command (``where``) when raised inside one."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        ctx = click.get_current_context(silent=True)
        self.where = PROG if ctx is None else ctx.command_path


class Group(click.Group):
    """A command group that calls a missing command a usage error (not a help page)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args:
            raise click.UsageError("a command is required", ctx)
        return super().parse_args(ctx, args)


@dataclass(slots=True)
class Options:
    """The root options every command sees."""

    loop: str = "asyncio"


def run(main: Callable[[], Awaitable[int]]) -> int:
    """Run ``main`` on the event loop chosen with ``--loop``; its return is the exit status.

    Ctrl-C (SIGINT) ends it with status 130 once the stores are closed; a storage failure
    raises :class:`CommandError` with the root cause's message.
    """
    options = click.get_current_context().find_object(Options) or Options()
    try:
        return anyio.run(main, backend=options.loop)
    except KeyboardInterrupt:
        path = click.get_current_context().command_path
        click.echo(f"{path}: interrupted", err=True)
        return 130
    except BaseException as exc:
        cause = _root_cause(exc)
        if isinstance(cause, click.ClickException):
            raise cause from None
        if isinstance(cause, MemoryError | OSError):
            raise CommandError(str(cause)) from None
        raise


def _root_cause(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (task groups wrap what failed inside them)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


# -- stores -------------------------------------------------------------------------------


def url_option(f: F) -> F:
    """``--url``: the store, defaulting to ``LANGSWARM_MEMORY_URL``."""
    return click.option(
        "--url",
        "-u",
        envvar=URL_ENV,
        metavar="URL",
        callback=_check_url,
        help=f"the store: sqlite:///relative.db, sqlite:////absolute.db, redis://host:6379/0, "
        f"rediss://..., redis+cluster://host:port,host:port (default: ${URL_ENV})",
    )(f)


def url_argument(name: str) -> Callable[[F], F]:
    """A positional store URL."""
    return click.argument(name, metavar=name.upper(), callback=_check_url)


def _check_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    if not value:
        raise click.UsageError(f"no store given: pass --url or set {URL_ENV}", ctx)
    try:
        memory = memory_from_url(value)
    except MemoryConfigurationError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    if memory["backend"] == "memory":
        raise click.BadParameter(
            "memory:// lives inside one process; give an sqlite:// or redis:// store",
            ctx,
            param,
        )
    return value


def sqlite_path(url: str) -> str | None:
    """The database file a ``sqlite://`` URL names (``None`` for other stores)."""
    memory = memory_from_url(url)
    if memory["backend"] != "sqlite":
        return None
    path: str = memory["config"]["db_path"]
    return path


@asynccontextmanager
async def open_store(url: str, *, create: bool = False) -> AsyncIterator[RetryingBackend]:
    """The store at ``url``, open, its reads retried; closed on the way out.

    Without ``create`` a missing SQLite file is an error instead of a new empty database.
    """
    path = sqlite_path(url)
    if path is not None and path != ":memory:" and not create and not await _exists(path):
        raise MemoryConnectionError(f"no SQLite database at {path}")
    backend: Backend = build(None, memory_from_url(url), {})[0]
    await anyio.to_thread.run_sync(backend.preflight)
    await backend.open()
    try:
        yield RetryingBackend(backend, RETRY)
    finally:
        with anyio.CancelScope(shield=True):
            await backend.close()


async def _exists(path: str) -> bool:
    return await anyio.Path(path).exists()


# -- selecting sessions ---------------------------------------------------------------------


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_age(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    """A duration such as ``90s``, ``15m``, ``12h``, ``30d`` or ``2w``."""
    if value is None:
        return None
    found = _AGE.fullmatch(value.strip())
    if found is None:
        raise click.BadParameter(
            f"expected a duration like 90s, 15m, 12h, 30d or 2w, not {value!r}", ctx, param
        )
    return timedelta(seconds=float(found[1]) * _UNITS[found[2]])


@dataclass(frozen=True, slots=True)
class Selection:
    """Which sessions a command works on (every filter given must hold)."""

    users: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    status: SessionStatus | None = None
    older_than: timedelta | None = None
    newer_than: timedelta | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def everything(self) -> bool:
        return self == Selection(now=self.now)

    @property
    def updated_before(self) -> datetime | None:
        return None if self.older_than is None else self.now - self.older_than

    @property
    def updated_after(self) -> datetime | None:
        return None if self.newer_than is None else self.now - self.newer_than


def selection_options(f: F) -> F:
    """``--user``, ``--session``, ``--status``, ``--older-than``, ``--newer-than``; the
    command receives them as one ``selection`` argument."""
    options = [
        click.option(
            "--user",
            "users",
            multiple=True,
            metavar="USER_ID",
            help="only sessions of this user (repeatable)",
        ),
        click.option(
            "--session",
            "sessions",
            multiple=True,
            metavar="SESSION_ID",
            help="only this session (repeatable)",
        ),
        click.option(
            "--status",
            type=click.Choice([s.value for s in SessionStatus]),
            help="only sessions with this status",
        ),
        click.option(
            "--older-than",
            callback=parse_age,
            metavar="AGE",
            help="only sessions not updated for AGE (90s, 15m, 12h, 30d, 2w)",
        ),
        click.option(
            "--newer-than",
            callback=parse_age,
            metavar="AGE",
            help="only sessions updated within AGE",
        ),
    ]

    @functools.wraps(f)
    def command(*args: Any, **kwargs: Any) -> Any:
        status = kwargs.pop("status")
        kwargs["selection"] = Selection(
            users=kwargs.pop("users"),
            sessions=kwargs.pop("sessions"),
            status=None if status is None else SessionStatus(status),
            older_than=kwargs.pop("older_than"),
            newer_than=kwargs.pop("newer_than"),
        )
        return f(*args, **kwargs)

    for option in reversed(options):
        command = option(command)
    return command  # type: ignore[return-value]
