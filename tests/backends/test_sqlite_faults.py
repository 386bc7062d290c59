"""SQLiteBackend under real faults: another process holding the lock, read-only and vanished
files, corrupt rows, a newer schema, a failing batch and a cancelled caller. Every test runs on
asyncio and on trio (the ``anyio_backend`` fixture), which is the trio-host check."""

from __future__ import annotations

import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from langswarm.core.memory.backends.base import SessionWrite
from langswarm.core.memory.backends.sqlite import SCHEMA_VERSION, SQLiteBackend
from langswarm.core.memory.exceptions import (
    MemoryBackendError,
    MemoryConfigurationError,
    MemoryConnectionError,
    MemoryCorruptionError,
    TransientBackendError,
)
from langswarm.core.memory.interfaces import Message, MessageRole, SessionMetadata
from tests.helpers import hold_write_lock

pytestmark = pytest.mark.anyio


def texts(n: int, start: int = 0) -> list[Message]:
    return [Message(role=MessageRole.USER, content=f"m{i}") for i in range(start, start + n)]


def write(session_id: str, n: int, start: int = 0) -> SessionWrite:
    """A write that creates or updates ``session_id`` and appends ``n`` messages."""
    return SessionWrite(
        session_id,
        meta=SessionMetadata(session_id=session_id, user_id="u", message_count=start + n),
        messages=texts(n, start),
        first_seq=start,
    )


async def stored(path: str, session_id: str) -> list[object]:
    """The message contents stored for ``session_id``, read through a fresh backend."""
    backend = SQLiteBackend(path)
    await backend.open()
    try:
        snap = await backend.load_session(session_id, tail=1_000)
    finally:
        await backend.close()
    return [] if snap is None else [m.content for m in snap.messages]


@pytest.fixture
async def opened(sqlite_path: str) -> AsyncIterator[SQLiteBackend]:
    backend = SQLiteBackend(sqlite_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def test_lock_held_past_busy_timeout_is_transient_and_loses_nothing(
    sqlite_path: str,
) -> None:
    backend = SQLiteBackend(sqlite_path, busy_timeout=0.2)
    await backend.open()
    try:
        await backend.apply([write("s", 3)])
        process = await hold_write_lock(sqlite_path, 2.0)
        async with process:
            started = time.monotonic()
            with pytest.raises(TransientBackendError, match="busy"):
                await backend.apply([write("s", 2, start=3), write("t", 1)])
            assert time.monotonic() - started < 1.5
            assert process.returncode is None  # still holding the lock: the timeout fired
            await process.wait()
        assert process.returncode == 0

        snap = await backend.load_session("s", tail=10)
        assert snap is not None and snap.next_seq == 3  # the failed batch left nothing
        assert await backend.load_session("t", tail=10) is None

        await backend.apply([write("s", 2, start=3), write("t", 1)])  # the flusher's retry
    finally:
        await backend.close()
    assert await stored(sqlite_path, "s") == ["m0", "m1", "m2", "m3", "m4"]
    assert await stored(sqlite_path, "t") == ["m0"]


async def test_lock_held_within_busy_timeout_waits_and_succeeds(sqlite_path: str) -> None:
    backend = SQLiteBackend(sqlite_path, busy_timeout=10.0)
    await backend.open()
    try:
        await backend.apply([write("s", 3)])
        process = await hold_write_lock(sqlite_path, 2.0)
        async with process:
            started = time.monotonic()
            await backend.apply([write("s", 2, start=3)])
            assert time.monotonic() - started > 1.0  # it did wait for the other writer
            await process.wait()
        assert process.returncode == 0
    finally:
        await backend.close()
    assert await stored(sqlite_path, "s") == ["m0", "m1", "m2", "m3", "m4"]


def helper_threads() -> int:
    return sum(t.name == "langswarm-sqlite" for t in threading.enumerate())


async def test_read_only_file_fails_fast_at_open(read_only_db: str) -> None:
    threads = helper_threads()
    backend = SQLiteBackend(read_only_db, busy_timeout=5.0)
    started = time.monotonic()

    with pytest.raises(MemoryConnectionError, match="read-only"):
        await backend.open()

    assert time.monotonic() - started < 2.0
    assert helper_threads() == threads
    with pytest.raises(MemoryBackendError, match="not open"):
        await backend.apply([write("s", 1)])
    await backend.close()


async def test_missing_directory_fails_fast_at_open(tmp_path: Path) -> None:
    backend = SQLiteBackend(str(tmp_path / "gone" / "memory.db"))
    started = time.monotonic()

    with pytest.raises(MemoryConnectionError, match="cannot open"):
        await backend.open()

    assert time.monotonic() - started < 2.0


async def test_failed_opens_leave_no_thread_behind(tmp_path: Path) -> None:
    # A failed connect used to let aiosqlite's worker report to the private loop after it
    # was closed; pytest turns such an error in a thread into a failure of this test.
    threads = helper_threads()
    for _ in range(100):
        with pytest.raises(MemoryConnectionError):
            await SQLiteBackend(str(tmp_path / "gone" / "memory.db")).open()
    assert helper_threads() == threads


async def test_directory_vanishing_while_open_fails_the_batch(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    backend = SQLiteBackend(str(directory / "memory.db"))
    await backend.open()
    try:
        await backend.apply([write("s", 2)])
        shutil.rmtree(directory)
        started = time.monotonic()

        with pytest.raises(MemoryBackendError, match="deleted or replaced"):
            await backend.apply([write("s", 1, start=2)])

        assert time.monotonic() - started < 2.0
    finally:
        await backend.close()


@pytest.fixture
def not_a_database(sqlite_path: str) -> str:
    Path(sqlite_path).write_bytes(b"this is not an sqlite file\n" * 200)
    return sqlite_path


async def test_not_a_database(not_a_database: str) -> None:
    with pytest.raises(MemoryConnectionError, match="not an SQLite database"):
        await SQLiteBackend(not_a_database).open()


@pytest.fixture
def newer_schema(sqlite_path: str) -> str:
    db = sqlite3.connect(sqlite_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    return sqlite_path


async def test_newer_schema_is_refused(newer_schema: str) -> None:
    with pytest.raises(MemoryBackendError, match="schema version") as caught:
        await SQLiteBackend(newer_schema).open()
    assert not isinstance(caught.value, MemoryConnectionError)


# The layout of schema version 1, as the first release wrote it.
VERSION_1 = (
    """CREATE TABLE sessions (session_id TEXT PRIMARY KEY, user_id TEXT NOT NULL,
        status TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
        expires_at REAL, message_count INTEGER NOT NULL, next_seq INTEGER NOT NULL,
        first_seq INTEGER NOT NULL, meta BLOB NOT NULL)""",
    "CREATE INDEX sessions_user ON sessions (user_id, updated_at)",
    "CREATE INDEX sessions_status ON sessions (status, updated_at)",
    "CREATE INDEX sessions_updated ON sessions (updated_at)",
    "CREATE INDEX sessions_expires ON sessions (expires_at)",
    """CREATE TABLE messages (session_id TEXT NOT NULL, seq INTEGER NOT NULL,
        payload BLOB NOT NULL, PRIMARY KEY (session_id, seq)) WITHOUT ROWID""",
    """CREATE TABLE summaries (session_id TEXT NOT NULL, summary_id TEXT NOT NULL,
        covers_through INTEGER NOT NULL, payload BLOB NOT NULL,
        PRIMARY KEY (session_id, summary_id))""",
)


async def test_a_version_1_file_is_migrated(sqlite_path: str, tmp_path: Path) -> None:
    source = str(tmp_path / "source.db")
    backend = SQLiteBackend(source)
    await backend.open()
    await backend.apply([write("a", 3), write("b", 2)])
    await backend.close()
    old = sqlite3.connect(sqlite_path)
    for statement in VERSION_1:
        old.execute(statement)
    old.execute("ATTACH DATABASE ? AS src", (source,))
    for table in ("sessions", "summaries"):
        old.execute(f"INSERT INTO {table} SELECT * FROM src.{table}")
    old.execute("INSERT INTO messages SELECT session_id, seq, payload FROM src.messages")
    old.commit()
    old.execute("DETACH DATABASE src")
    old.execute("PRAGMA user_version = 1")
    old.close()

    migrated = SQLiteBackend(sqlite_path)
    await migrated.open()
    try:
        await migrated.apply([SessionWrite("a", messages=texts(1, start=3), first_seq=3)])
        a = await migrated.load_session("a", tail=10)
        assert a is not None and [m.content for m in a.messages] == ["m0", "m1", "m2", "m3"]
        assert await stored(sqlite_path, "b") == ["m0", "m1"]
    finally:
        await migrated.close()
    db = sqlite3.connect(sqlite_path)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        assert "messages_v1" not in tables and "messages_session" in tables
    finally:
        db.close()


async def test_corrupt_payload(opened: SQLiteBackend, sqlite_path: str) -> None:
    await opened.apply([write("s", 3)])
    db = sqlite3.connect(sqlite_path)
    db.execute("UPDATE messages SET payload = x'c1' WHERE session_id = 's' AND seq = 2")
    db.commit()
    db.close()

    with pytest.raises(MemoryCorruptionError):
        await opened.load_session("s", tail=10)
    assert [m.content for m in await opened.load_messages("s", start=0, stop=2)] == ["m0", "m1"]


async def test_failing_batch_is_rolled_back(opened: SQLiteBackend) -> None:
    # The second write's sequence numbers overflow SQLite's 64-bit integers mid-batch.
    bad = write("bad", 2, start=2**63 - 1)

    with pytest.raises(MemoryBackendError):
        await opened.apply([write("good", 2), bad])

    assert await opened.load_session("good", tail=10) is None
    await opened.apply([write("good", 2)])
    snap = await opened.load_session("good", tail=10)
    assert snap is not None and [m.content for m in snap.messages] == ["m0", "m1"]


async def test_cancelled_caller_leaves_a_whole_batch(opened: SQLiteBackend) -> None:
    with anyio.CancelScope() as scope:
        scope.cancel()
        await opened.apply([write("s", 500)])

    snap = await opened.load_session("s", tail=1_000)
    assert snap is not None and snap.next_seq == 500
    await opened.apply([write("s", 1, start=500)])
    assert (await opened.get_usage_stats())["total_messages"] == 501


async def test_close_is_idempotent_and_stops_the_helper_thread(sqlite_path: str) -> None:
    threads = helper_threads()
    backend = SQLiteBackend(sqlite_path)
    await backend.open()
    assert helper_threads() == threads + 1

    await backend.close()
    await backend.close()

    assert helper_threads() == threads
    with pytest.raises(MemoryBackendError, match="not open"):
        await backend.load_session("s", tail=1)


async def test_in_memory_database(anyio_backend: str) -> None:
    backend = SQLiteBackend()
    assert not backend.persistent
    await backend.open()
    try:
        await backend.apply([write("s", 2)])
        stats = await backend.get_usage_stats()
    finally:
        await backend.close()
    assert stats["total_messages"] == 2
    assert stats["storage_size_mb"] is None


# A script that opens a backend held by a global and exits without closing it.
NEVER_CLOSED = """
import sys, anyio
from langswarm.core.memory.backends.sqlite import SQLiteBackend
backend = SQLiteBackend(sys.argv[1])
anyio.run(backend.open, backend=sys.argv[2])
print("opened", flush=True)
"""


async def test_unclosed_backend_does_not_block_interpreter_exit(
    sqlite_path: str, anyio_backend: str
) -> None:
    with anyio.fail_after(20):
        result = await anyio.run_process(
            [sys.executable, "-c", NEVER_CLOSED, sqlite_path, anyio_backend], check=False
        )
    assert result.stdout == b"opened\n"
    assert result.returncode == 0


async def test_bad_options_are_configuration_errors() -> None:
    with pytest.raises(MemoryConfigurationError, match="synchronous"):
        SQLiteBackend(synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(MemoryConfigurationError, match="busy_timeout"):
        SQLiteBackend(busy_timeout=-1)
