"""SQLite storage through aiosqlite; under trio, the driver is reached through a private loop.

Tables: ``sessions`` (one row per session: the columns that listing and expiry filter on,
the stored sequence range and the packed metadata), ``messages`` keyed by
``(session_id, seq)`` and ``summaries`` keyed by ``(session_id, summary_id)``. Payloads are
msgpack from :mod:`._codec`. Messages of a session are contiguous from ``first_seq`` up to
``next_seq``, so counts never need a scan of ``messages``.

Every protocol call is one function run on aiosqlite's connection thread (an asyncio host
awaits it directly, a trio host through the private loop): calls run one at a time in arrival
order, so a batch is exactly one ``BEGIN IMMEDIATE … COMMIT`` and a read never sees a batch
half-applied.

Durability: ``synchronous=FULL`` by default, so a committed batch survives power loss.
``synchronous="NORMAL"`` under WAL skips the fsync on commit: still safe against a process
crash and never corrupt, but an OS crash or power cut may drop the last committed batches.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar, cast

import aiosqlite
import anyio

from .._loop import on_asyncio
from .._tokens import count_missing
from ..exceptions import (
    MemoryBackendError,
    MemoryConfigurationError,
    MemoryConnectionError,
    MemoryCorruptionError,
    TransientBackendError,
)
from ..exceptions import MemoryError as _MemoryError
from ..interfaces import Message, SessionMetadata, SessionStatus
from ._codec import (
    pack_message,
    pack_meta,
    pack_summary,
    unpack_message,
    unpack_meta,
    unpack_summary,
)
from ._loop_thread import LoopThread
from .base import SessionSnapshot, SessionWrite

__all__ = ["SQLiteBackend"]

T = TypeVar("T")

#: Version of the table layout, kept in ``PRAGMA user_version``; payloads carry their own.
SCHEMA_VERSION = 2
#: WAL pages between automatic checkpoints (SQLite's default is 1,000). Concurrent sessions
#: dirty many index pages per batch; checkpointing less often writes each page back once
#: for several batches.
WAL_AUTOCHECKPOINT = 4000

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sessions (
        session_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        expires_at REAL,
        message_count INTEGER NOT NULL,
        next_seq INTEGER NOT NULL,
        first_seq INTEGER NOT NULL,
        meta BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id, updated_at)",
    "CREATE INDEX IF NOT EXISTS sessions_status ON sessions (status)",
    "CREATE INDEX IF NOT EXISTS sessions_updated ON sessions (updated_at)",
    "CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires_at)",
    # Rows in arrival order, found through the (session_id, seq) index: a batch touching
    # many sessions appends to the table instead of dirtying a table page per session.
    """CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        payload BLOB NOT NULL
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_session ON messages (session_id, seq)",
    """CREATE TABLE IF NOT EXISTS summaries (
        session_id TEXT NOT NULL,
        summary_id TEXT NOT NULL,
        covers_through INTEGER NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (session_id, summary_id)
    )""",
)

# Version 1 kept messages in a WITHOUT ROWID table keyed by (session_id, seq).
_MIGRATE_FROM_1 = (
    "ALTER TABLE messages RENAME TO messages_v1",
    *_SCHEMA,
    "INSERT INTO messages (session_id, seq, payload)"
    " SELECT session_id, seq, payload FROM messages_v1 ORDER BY session_id, seq",
    "DROP TABLE messages_v1",
    "DROP INDEX sessions_status",
    "CREATE INDEX sessions_status ON sessions (status)",
)

_SELECT_SEQS = (
    "SELECT session_id, first_seq, next_seq FROM sessions"
    " WHERE session_id IN (SELECT value FROM json_each(?))"
)
_UPSERT_SESSION = """
    INSERT INTO sessions (session_id, user_id, status, created_at, updated_at, expires_at,
                          message_count, first_seq, next_seq, meta)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (session_id) DO UPDATE SET
        user_id = excluded.user_id, status = excluded.status,
        created_at = excluded.created_at, updated_at = excluded.updated_at,
        expires_at = excluded.expires_at, message_count = excluded.message_count,
        first_seq = excluded.first_seq, next_seq = excluded.next_seq, meta = excluded.meta"""
_UPDATE_SEQS = "UPDATE sessions SET first_seq = ?, next_seq = ? WHERE session_id = ?"
# OR IGNORE: a retried batch whose first attempt did commit stores nothing twice.
_INSERT_MESSAGE = "INSERT OR IGNORE INTO messages (session_id, seq, payload) VALUES (?, ?, ?)"
_TRIM = "DELETE FROM messages WHERE session_id = ? AND seq < ?"
# DO UPDATE rather than OR REPLACE keeps the rowid, which orders summaries that tie.
_UPSERT_SUMMARY = """
    INSERT INTO summaries (session_id, summary_id, covers_through, payload) VALUES (?, ?, ?, ?)
    ON CONFLICT (session_id, summary_id) DO UPDATE SET
        covers_through = excluded.covers_through, payload = excluded.payload"""
# One statement is one consistent snapshot and one trip to the driver thread. Rows are
# (kind, order, tie-break, blob): 0 = session row, 1 = message, 2 = summary.
_LOAD_SESSION = """
    SELECT 0, first_seq, next_seq, meta FROM sessions WHERE session_id = ?1
    UNION ALL
    SELECT * FROM (SELECT 1, seq, 0, payload FROM messages WHERE session_id = ?1
                   ORDER BY seq DESC LIMIT ?2)
    UNION ALL
    SELECT 2, covers_through, rowid, payload FROM summaries WHERE session_id = ?1"""
_LOAD_MESSAGES = (
    "SELECT payload FROM messages WHERE session_id = ? AND seq >= ? AND seq < ? ORDER BY seq"
)
# Per status: sessions and stored messages; the summary count rides along on every row.
_USAGE = """
    SELECT status, COUNT(*), TOTAL(next_seq - first_seq), (SELECT COUNT(*) FROM summaries)
    FROM sessions GROUP BY status"""

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


def _describe(exc: BaseException, path: str) -> _MemoryError:
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


@dataclass(slots=True)
class _Phase:
    """Rows for one run of writes with distinct sessions, so statement order is free."""

    deletes: list[tuple[str]] = field(default_factory=list)
    upserts: list[tuple[Any, ...]] = field(default_factory=list)
    seq_updates: list[tuple[int, int, str]] = field(default_factory=list)
    messages: list[tuple[str, int, bytes]] = field(default_factory=list)
    trims: list[tuple[str, int]] = field(default_factory=list)
    summaries: list[tuple[str, str, int, bytes]] = field(default_factory=list)


def _session_row(sid: str, meta: SessionMetadata, first: int, nxt: int) -> tuple[Any, ...]:
    expires = meta.expires_at.timestamp() if meta.expires_at is not None else None
    return (
        sid,
        meta.user_id,
        meta.status.value,
        meta.created_at.timestamp(),
        meta.updated_at.timestamp(),
        expires,
        nxt,
        first,
        nxt,
        pack_meta(meta),
    )


def _plan(batch: Sequence[SessionWrite], seqs: dict[str, tuple[int, int]]) -> list[_Phase]:
    """Turn ``batch`` into rows to write, given each stored session's ``(first, next)`` seq.

    Same semantics as :class:`InMemoryBackend`: messages below the stored ``next_seq`` were
    stored by an earlier attempt and are skipped; writes to an absent session without
    metadata are dropped. A session that repeats in the batch starts a new phase.
    """
    phases = [_Phase()]
    seen: set[str] = set()
    for write in batch:
        sid = write.session_id
        if sid in seen:
            phases.append(_Phase())
            seen.clear()
        seen.add(sid)
        phase = phases[-1]
        if write.delete:
            phase.deletes.append((sid,))
            seqs.pop(sid, None)
        stored = seqs.get(sid)
        if stored is None:
            if write.meta is None:
                continue
            first = nxt = write.first_seq
        else:
            first, nxt = stored
        fresh = write.messages[max(nxt - write.first_seq, 0) :]
        new_first, new_next = first, nxt + len(fresh)
        if write.trim_before is not None and write.trim_before > first:
            new_first = min(write.trim_before, new_next)
            phase.trims.append((sid, new_first))
        phase.messages.extend((sid, seq, pack_message(m)) for seq, m in enumerate(fresh, start=nxt))
        if write.meta is not None:
            phase.upserts.append(_session_row(sid, write.meta, new_first, new_next))
        elif (new_first, new_next) != (first, nxt):
            phase.seq_updates.append((new_first, new_next, sid))
        seqs[sid] = (new_first, new_next)
        phase.summaries.extend(
            (sid, s.summary_id, s.covers_through, pack_summary(s)) for s in write.summaries
        )
    return phases


class SQLiteBackend:
    """Sessions in an SQLite file (or ``":memory:"``), written one transaction per batch."""

    name = "sqlite"
    ttl_seconds = None

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
        self.persistent = db_path != ":memory:"
        self._enable_wal = enable_wal
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._thread = LoopThread(name="langswarm-sqlite")
        # Owned by the private loop: set in _open, cleared in _close.
        self._conn: _Connection | None = None
        self._file_id: tuple[int, int] | None = None

    # -- protocol -------------------------------------------------------------------------

    def preflight(self) -> None:
        """Nothing to reach ahead of time: the file is opened (and checked) by :meth:`open`."""

    async def open(self) -> None:
        if self._conn is not None:
            return
        _check_driver()
        try:
            # Shielded: opening is bounded (busy_timeout) and must end open or cleaned up.
            with anyio.CancelScope(shield=True):
                await self._thread.run(self._open)
        except _MemoryError:
            self._thread.stop()
            raise
        except Exception as exc:
            self._thread.stop()
            error = _describe(exc, self.db_path)
            if not isinstance(error, MemoryConnectionError):
                error = MemoryConnectionError(f"cannot use SQLite database: {error}")
            raise error from exc

    async def close(self) -> None:
        try:
            if self._conn is not None:
                with anyio.CancelScope(shield=True):
                    await self._thread.run(self._close)
        finally:
            self._thread.stop()

    def apply(self, batch: Sequence[SessionWrite]) -> Awaitable[None]:
        # Handed to the private loop now, not when the caller first awaits.
        return self._call(self._apply, batch)

    async def load_session(self, session_id: str, *, tail: int) -> SessionSnapshot | None:
        return await self._call(self._load_session, session_id, max(tail, 0))

    async def load_messages(self, session_id: str, *, start: int, stop: int) -> list[Message]:
        return await self._call(self._load_messages, session_id, start, stop)

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int | None = 100,
        updated_before: datetime | None = None,
    ) -> list[SessionMetadata]:
        where: list[str] = []
        params: list[Any] = []
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        if status is not None:
            # With a user given, "+" keeps the planner on the per-user index.
            where.append("+status = ?" if user_id is not None else "status = ?")
            params.append(SessionStatus(status).value)
        if updated_before is not None:
            where.append("updated_at < ?")
            params.append(updated_before.timestamp())
        sql = "SELECT meta FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY updated_at DESC, rowid DESC LIMIT ?"
        params.append(-1 if limit is None else limit)
        return await self._call(self._list_sessions, sql, params)

    async def get_usage_stats(self) -> dict[str, Any]:
        return await self._call(self._usage_stats)

    async def delete_sessions(self, session_ids: Sequence[str]) -> int:
        if not session_ids:
            return 0
        return await self._call(self._delete_sessions, list(dict.fromkeys(session_ids)))

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
            raise _describe(exc, self.db_path) from exc

    # -- private loop -------------------------------------------------------------------------

    async def _open(self) -> None:
        self._file_id = None
        # Made on the (daemon) loop thread, aiosqlite's worker thread is a daemon as well, so a
        # backend nobody closed never blocks interpreter exit.
        path, timeout = self.db_path, self._busy_timeout

        def connector() -> sqlite3.Connection:
            return sqlite3.connect(path, timeout=timeout, isolation_level=None)

        conn = _Connection(connector, 64)
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
            await conn.run(self._prepare)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    # -- driver thread: one function per protocol call ----------------------------------------

    @contextlib.contextmanager
    def _write_transaction(self, db: sqlite3.Connection) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` around the block; ``ROLLBACK`` if it raises."""
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._check_file()
            db.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself on some errors (e.g. SQLITE_FULL).
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _check_file(self) -> None:
        """Refuse to commit when the database file was deleted or replaced since opening.

        With WAL, SQLite keeps writing to an unlinked file without complaint, and the data
        would vanish with the connection.
        """
        if self._file_id is None:
            return
        try:
            st = os.stat(self.db_path)
        except FileNotFoundError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != self._file_id:
            raise MemoryBackendError(
                f"SQLite database {self.db_path} was deleted or replaced while open"
            )

    def _prepare(self, db: sqlite3.Connection) -> None:
        """Set pragmas, create or check the schema, and prove the file is writable."""
        if self.persistent:
            if self._enable_wal:
                db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {self._synchronous}")
            db.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
        with self._write_transaction(db):
            ((version,),) = db.execute("PRAGMA user_version").fetchall()
            if version > SCHEMA_VERSION:
                raise MemoryBackendError(
                    f"SQLite database {self.db_path} has schema version {version}; this "
                    f"release reads version {SCHEMA_VERSION} at most"
                )
            for statement in _MIGRATE_FROM_1 if version == 1 else _SCHEMA:
                db.execute(statement)
            # Written even when unchanged: a read-only file fails here, not at the first batch.
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if self.persistent:
            st = os.stat(self.db_path)
            self._file_id = (st.st_dev, st.st_ino)

    def _apply(self, db: sqlite3.Connection, batch: Sequence[SessionWrite]) -> None:
        if not batch:
            return
        count_missing(batch)
        ids = json.dumps([w.session_id for w in batch])
        with self._write_transaction(db):
            rows = db.execute(_SELECT_SEQS, (ids,)).fetchall()
            seqs = {sid: (first, nxt) for sid, first, nxt in rows}
            for phase in _plan(batch, seqs):
                _write_phase(db, phase)

    @staticmethod
    def _load_session(db: sqlite3.Connection, session_id: str, tail: int) -> SessionSnapshot | None:
        rows = db.execute(_LOAD_SESSION, (session_id, tail)).fetchall()
        head = [row for row in rows if row[0] == 0]
        if not head:
            return None
        _, first_seq, next_seq, blob = head[0]
        body = sorted(row for row in rows if row[0] != 0)
        meta = unpack_meta(blob)
        meta.message_count = next_seq  # what storage holds decides
        return SessionSnapshot(
            meta=meta,
            messages=[unpack_message(row[3]) for row in body if row[0] == 1],
            first_seq=first_seq,
            next_seq=next_seq,
            summaries=[unpack_summary(row[3]) for row in body if row[0] == 2],
        )

    @staticmethod
    def _load_messages(
        db: sqlite3.Connection, session_id: str, start: int, stop: int
    ) -> list[Message]:
        rows = db.execute(_LOAD_MESSAGES, (session_id, start, stop)).fetchall()
        return [unpack_message(payload) for (payload,) in rows]

    @staticmethod
    def _list_sessions(
        db: sqlite3.Connection, sql: str, params: list[Any]
    ) -> list[SessionMetadata]:
        return [unpack_meta(meta) for (meta,) in db.execute(sql, params).fetchall()]

    def _usage_stats(self, db: sqlite3.Connection) -> dict[str, Any]:
        rows = db.execute(_USAGE).fetchall()
        return {
            "backend": self.name,
            "total_sessions": sum(row[1] for row in rows),
            "total_messages": int(sum(row[2] for row in rows)),
            "total_summaries": rows[0][3] if rows else 0,
            "sessions_by_status": {row[0]: row[1] for row in rows},
            "storage_size_mb": self._storage_size_mb(),
        }

    def _storage_size_mb(self) -> float | None:
        if not self.persistent:
            return None
        size = 0
        for path in (self.db_path, self.db_path + "-wal"):
            with contextlib.suppress(FileNotFoundError):
                size += os.stat(path).st_size
        return size / (1024 * 1024)

    def _delete_sessions(self, db: sqlite3.Connection, session_ids: list[str]) -> int:
        rows = [(sid,) for sid in session_ids]
        with self._write_transaction(db):
            return _delete_rows(db, rows)


class _Connection(aiosqlite.Connection):
    """aiosqlite's connection, plus one call that runs a whole function on its thread.

    A batch is then one hand-off to the driver thread instead of one per statement. It builds
    on aiosqlite's internal ``_execute`` (the queue every public method uses) and ``_conn``;
    :func:`_check_driver` refuses a release without them at open, with a clear error.
    """

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` on the connection's thread with its ``sqlite3`` connection."""
        return cast(T, await self._execute(_with_db, self, fn, args))  # type: ignore[no-untyped-call]


def _with_db(conn: _Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    return fn(conn._conn, *args)


def _check_driver() -> None:
    if not (
        callable(getattr(aiosqlite.Connection, "_execute", None))
        and isinstance(getattr(aiosqlite.Connection, "_conn", None), property)
    ):
        version = getattr(aiosqlite, "__version__", "?")
        raise MemoryConfigurationError(
            f"aiosqlite {version} lacks the connection internals this backend runs batches "
            "through; install a release from 0.20 up to 0.22"
        )


def _write_phase(db: sqlite3.Connection, phase: _Phase) -> None:
    if phase.deletes:
        _delete_rows(db, phase.deletes)
    if phase.upserts:
        db.executemany(_UPSERT_SESSION, phase.upserts)
    if phase.seq_updates:
        db.executemany(_UPDATE_SEQS, phase.seq_updates)
    if phase.messages:
        db.executemany(_INSERT_MESSAGE, phase.messages)
    if phase.trims:
        db.executemany(_TRIM, phase.trims)
    if phase.summaries:
        db.executemany(_UPSERT_SUMMARY, phase.summaries)


def _delete_rows(db: sqlite3.Connection, rows: list[tuple[str]]) -> int:
    """Delete the given sessions with their messages and summaries; return sessions deleted."""
    db.executemany("DELETE FROM messages WHERE session_id = ?", rows)
    db.executemany("DELETE FROM summaries WHERE session_id = ?", rows)
    return int(db.executemany("DELETE FROM sessions WHERE session_id = ?", rows).rowcount)
