"""The SQLite driver as the backend uses it: aiosqlite's connection with one call that runs a
whole function on its thread, the mapping of driver errors to ours, and write transactions."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import aiosqlite

from ..exceptions import (
    MemoryBackendError,
    MemoryConfigurationError,
    MemoryConnectionError,
    MemoryCorruptionError,
    TransientBackendError,
)
from ..exceptions import MemoryError as _MemoryError

__all__ = ["Connection", "check_driver", "describe", "write_transaction"]

T = TypeVar("T")

# Primary result codes worth a retry: lock contention and I/O or space trouble that can pass.
_TRANSIENT_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_PROTOCOL,
    }
)


def describe(exc: BaseException, path: str) -> _MemoryError:
    """Map a driver or OS error to ours, with a message naming the database."""
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code in _TRANSIENT_CODES:
            return TransientBackendError(f"SQLite database {path} is busy or unavailable: {exc}")
        if code == sqlite3.SQLITE_READONLY:
            return MemoryBackendError(f"SQLite database {path} is read-only: {exc}")
        if code == sqlite3.SQLITE_NOTADB:
            return MemoryBackendError(f"{path} is not an SQLite database: {exc}")
        if code == sqlite3.SQLITE_CORRUPT:
            return MemoryCorruptionError(f"SQLite database {path} is corrupt: {exc}")
        if code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
            return MemoryConnectionError(f"cannot open SQLite database {path}: {exc}")
    elif isinstance(exc, OSError):
        return MemoryBackendError(f"SQLite database {path}: {exc}")
    return MemoryBackendError(f"SQLite backend for {path} failed: {exc!r}")


@contextlib.contextmanager
def write_transaction(
    db: sqlite3.Connection, path: str, file_id: tuple[int, int] | None
) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` around the block; ``ROLLBACK`` if it raises.

    With WAL, SQLite keeps writing to a database file that was deleted or replaced without
    complaint, and the data would vanish with the connection: such a commit is refused.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        if file_id is not None:
            _check_file(path, file_id)
        db.execute("COMMIT")
    except BaseException:
        # SQLite rolls back by itself on some errors (e.g. SQLITE_FULL).
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _check_file(path: str, file_id: tuple[int, int]) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    if st is None or (st.st_dev, st.st_ino) != file_id:
        raise MemoryBackendError(f"SQLite database {path} was deleted or replaced while open")


class Connection(aiosqlite.Connection):
    """aiosqlite's connection, plus one call that runs a whole function on its thread.

    A batch is then one hand-off to the driver thread instead of one per statement. It builds
    on aiosqlite's internal ``_execute`` (the queue every public method uses) and ``_conn``;
    :func:`check_driver` refuses a release without them at open, with a clear error.
    """

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` on the connection's thread with its ``sqlite3`` connection."""
        return cast(T, await self._execute(_with_db, self, fn, args))  # type: ignore[no-untyped-call]


def _with_db(conn: Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    return fn(conn._conn, *args)


def check_driver() -> None:
    if not (
        callable(getattr(aiosqlite.Connection, "_execute", None))
        and isinstance(getattr(aiosqlite.Connection, "_conn", None), property)
    ):
        version = getattr(aiosqlite, "__version__", "?")
        raise MemoryConfigurationError(
            f"aiosqlite {version} lacks the connection internals this backend runs batches "
            "through; install a release from 0.20 up to 0.22"
        )
