"""SQLite storage through aiosqlite; under trio, the driver is reached through a private loop.

Every protocol call is one function run on aiosqlite's connection thread (an asyncio host
awaits it directly, a trio host through the private loop): calls run one at a time in arrival
order, so a batch is exactly one ``BEGIN IMMEDIATE … COMMIT``. Other processes may open the
same file: SQLite's write lock orders their transactions, and each transaction decides from
what the file holds, so the file, not any process, decides sequence numbers and ownership.

Durability: ``synchronous=FULL`` by default, so a committed batch survives power loss.
``synchronous="NORMAL"`` under WAL skips the fsync on commit: still safe against a process
crash and never corrupt, but an OS crash or power cut may drop the last committed batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

import anyio

from .._loop import on_asyncio
from .._retry import RetryPolicy
from ..exceptions import (
    MemoryBackendError,
    MemoryConfigurationError,
    MemoryConnectionError,
    TransientBackendError,
)
from ..exceptions import MemoryError as _MemoryError
from ..interfaces import Message, SessionMetadata, SessionStatus
from . import _sqlite_ops as ops
from ._loop_thread import LoopThread
from ._sqlite_driver import Connection, check_driver, describe, write_transaction
from ._sqlite_schema import prepare
from .base import SessionSnapshot, SessionWrite, WriteResult

__all__ = ["SQLiteBackend"]

T = TypeVar("T")


class SQLiteBackend:
    """Sessions in an SQLite file (or ``":memory:"``), written one transaction per batch."""

    name = "sqlite"
    ttl_seconds: float | None = None

    def __init__(
        self,
        db_path: str = ":memory:",
        *,
        enable_wal: bool = True,
        busy_timeout: float = 5.0,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise MemoryConfigurationError(
                f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}"
            )
        if busy_timeout < 0:
            raise MemoryConfigurationError(f"busy_timeout must be >= 0, not {busy_timeout!r}")
        self.db_path = db_path
        self.persistent = self.shared = db_path != ":memory:"
        self._pragmas: dict[str, str] = {"synchronous": synchronous}
        if enable_wal:
            self._pragmas = {"journal_mode": "WAL", **self._pragmas}
        self._busy_timeout = busy_timeout
        self._thread = LoopThread(name="langswarm-sqlite")
        # Owned by the private loop: set in _open, cleared in _close.
        self._conn: Connection | None = None
        self._opening: asyncio.Lock | None = None
        self._file_id: tuple[int, int] | None = None
        # Runtimes (one per event loop, each in its thread) that opened it and have not
        # closed it: the connection closes with the last of them.
        self._users = 0
        self._users_lock = threading.Lock()

    # -- protocol -------------------------------------------------------------------------

    def preflight(self) -> None:
        """Nothing to reach ahead of time: the file is opened (and checked) by :meth:`open`."""

    async def open(self) -> None:
        """Open for the running event loop; each loop that uses the backend opens it."""
        check_driver()
        # Counted and handed to the private loop in one step, so that a close on another
        # thread never stops the loop between the two.
        with self._users_lock:
            self._users += 1
            opened = self._thread.submit(self._open)
        try:
            # Shielded: opening is bounded (busy_timeout) and must end open or cleaned up.
            with anyio.CancelScope(shield=True):
                await self._thread.wait(opened)
        except _MemoryError:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            error = describe(exc, self.db_path)
            if not isinstance(error, MemoryConnectionError):
                error = MemoryConnectionError(f"cannot use SQLite database: {error}")
            raise error from exc

    async def close(self) -> None:
        """Close for the running event loop; other loops' runtimes carry on until theirs,
        and the last one closes the connection and stops the private loop."""
        with self._users_lock:
            self._users = max(self._users - 1, 0)
            if self._users > 0:
                return
            closed = self._thread.submit(self._close) if self._thread.started else None
        try:
            if closed is not None:
                with anyio.CancelScope(shield=True):
                    await self._thread.wait(closed)
        finally:
            with self._users_lock:
                if self._users == 0:
                    self._thread.stop()

    def apply(self, batch: Sequence[SessionWrite]) -> Awaitable[list[WriteResult]]:
        # Handed to the driver now (trio) or when first awaited (asyncio), never twice.
        return self._call(ops.apply_batch, batch, self._transaction)

    async def load_session(self, session_id: str, *, tail: int) -> SessionSnapshot | None:
        return await self._call(ops.load_session, session_id, max(tail, 0))

    async def load_messages(self, session_id: str, *, start: int, stop: int) -> list[Message]:
        return await self._call(ops.load_messages, session_id, start, stop)

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int | None = 100,
        updated_before: datetime | None = None,
    ) -> list[SessionMetadata]:
        return await self._call(ops.list_sessions, user_id, status, limit, updated_before)

    async def get_usage_stats(self) -> dict[str, Any]:
        stats = await self._call(ops.usage_stats)
        return {"backend": self.name, **stats, "storage_size_mb": self._storage_size_mb()}

    async def delete_sessions(
        self, session_ids: Sequence[str], *, idle_before: datetime | None = None
    ) -> int:
        if not session_ids:
            return 0
        ids = list(dict.fromkeys(session_ids))
        return await self._call(ops.delete_sessions, ids, idle_before, self._transaction)

    # -- host side --------------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        """Run ``fn(db, *args)`` on the driver's thread; await it for the result, with every
        failure mapped to our errors.

        aiosqlite answers asyncio callers itself, so an asyncio host hands the call straight
        to the driver thread (queued when first awaited); a trio host goes through the
        private loop, starting now.
        """
        conn = self._conn
        if conn is None:
            raise MemoryBackendError(f"SQLite backend for {self.db_path} is not open")
        if on_asyncio():
            return self._mapped(conn.run(fn, *args))
        return self._mapped(self._thread.wait(self._thread.submit(conn.run, fn, *args)))

    async def _mapped(self, pending: Awaitable[T]) -> T:
        try:
            return await pending
        except _MemoryError:
            raise
        except Exception as exc:
            if self._conn is None:  # closed meanwhile: aiosqlite refuses with a ValueError
                raise MemoryBackendError(f"SQLite backend for {self.db_path} is closed") from exc
            raise describe(exc, self.db_path) from exc

    def _transaction(self, db: sqlite3.Connection) -> contextlib.AbstractContextManager[None]:
        """A write transaction on the driver's connection ``db`` (run on its thread)."""
        return write_transaction(db, self.db_path, self._file_id)

    def _storage_size_mb(self) -> float | None:
        if not self.persistent:
            return None
        size = 0
        for path in (self.db_path, self.db_path + "-wal"):
            with contextlib.suppress(FileNotFoundError):
                size += os.stat(path).st_size
        return size / (1024 * 1024)

    # -- private loop -------------------------------------------------------------------------

    async def _open(self) -> None:
        # Loops opening at the same moment queue here; only the first connects.
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._conn is None:  # else opened for another event loop already
                await self._connect()

    async def _connect(self) -> None:
        self._file_id = None
        # Made on the (daemon) loop thread, aiosqlite's worker thread is a daemon as well, so a
        # backend nobody closed never blocks interpreter exit.
        path, timeout = self.db_path, self._busy_timeout

        def connector() -> sqlite3.Connection:
            return sqlite3.connect(path, timeout=timeout, isolation_level=None)

        conn = Connection(connector, 64)
        try:
            await conn
        except BaseException:
            # On a failed connect aiosqlite stops its worker without waiting for it; if this
            # loop closed first, the worker's last report would fail in that thread.
            worker = getattr(conn, "_thread", None)
            if isinstance(worker, threading.Thread) and worker.is_alive():
                worker.join(timeout=5)
            raise
        try:
            await self._prepare(conn)
        except BaseException:
            await conn.close()
            raise
        if self.persistent:
            st = os.stat(path)
            self._file_id = (st.st_dev, st.st_ino)
        self._conn = conn

    async def _prepare(self, conn: Connection) -> None:
        """Set up the file; another process opening it at the same moment may hold it for a
        while (switching it to WAL takes it whole), so a busy file is tried again."""
        backoff = RetryPolicy(budget=max(self._busy_timeout, 1.0)).start()
        while True:
            try:
                await conn.run(prepare, self.db_path, self.persistent, self._pragmas)
                return
            except sqlite3.OperationalError as exc:
                delay = backoff.next_delay()
                if delay is None or not isinstance(
                    describe(exc, self.db_path), TransientBackendError
                ):
                    raise
                await asyncio.sleep(delay)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        self._opening = None  # bound to this loop, which may stop now
        if conn is not None:
            await conn.close()
