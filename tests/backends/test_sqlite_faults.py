"""SQLiteBackend under real faults and on files it did not write: another process holding the
lock or writing the same session, read-only and vanished files, rows it cannot read, older and
newer schemas, a failing batch and a cancelled caller. Every test runs on asyncio and on trio
(the ``anyio_backend`` fixture), which is the trio-host check."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from langswarm.core.memory.backends._codec import pack_message, pack_meta, pack_summary
from langswarm.core.memory.backends._sqlite_schema import SCHEMA_VERSION
from langswarm.core.memory.backends.base import SessionWrite
from langswarm.core.memory.backends.sqlite import SQLiteBackend
from langswarm.core.memory.exceptions import (
    MemoryBackendError,
    MemoryConfigurationError,
    MemoryConnectionError,
    MemoryCorruptionError,
    MemoryValidationError,
    TransientBackendError,
)
from langswarm.core.memory.interfaces import Message, MessageRole, SessionMetadata, SessionStatus
from tests.backends.conftest import T0, contents, meta, summary, texts
from tests.children import script
from tests.helpers import hold_write_lock

pytestmark = pytest.mark.anyio


def write(session_id: str, n: int, start: int = 0) -> SessionWrite:
    """Create ``session_id`` unless stored (as ``get_or_create`` does), and append
    ``texts(n, start)`` to it."""
    return SessionWrite(session_id, "i1", "w1", create=meta(session_id), messages=texts(n, start))


async def stored(path: str, session_id: str) -> list[object]:
    """The message contents stored for ``session_id``, read through a fresh backend."""
    backend = SQLiteBackend(path)
    await backend.open()
    try:
        snap = await backend.load_session(session_id, tail=1_000)
    finally:
        await backend.close()
    return [] if snap is None else contents(snap.messages)


@pytest.fixture
async def opened(sqlite_path: str) -> AsyncIterator[SQLiteBackend]:
    backend = SQLiteBackend(sqlite_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def run_sql(path: str, *statements: str) -> None:
    """Change the file behind the backend's back, as another program would."""
    db = sqlite3.connect(path)
    try:
        for statement in statements:
            db.execute(statement)
        db.commit()
    finally:
        db.close()


# -- other processes ----------------------------------------------------------------------


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


async def test_two_processes_appending_to_one_session_lose_nothing(
    sqlite_path: str, anyio_backend: str
) -> None:
    n = 100
    backend = SQLiteBackend(sqlite_path, busy_timeout=30)
    await backend.open()
    try:
        await backend.apply([write("s", 0)])
        child = await anyio.open_process(
            [sys.executable, script("sqlite_writer"), sqlite_path, str(n), anyio_backend],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        async with child:
            assert child.stdin is not None and child.stdout is not None
            seen = b""
            while b"ready\n" not in seen:
                seen += await child.stdout.receive()
            await child.stdin.send(b"go\n")
            for i in range(n):
                message = Message(MessageRole.USER, f"parent{i}", message_id=f"p{i}", token_count=1)
                [result] = await backend.apply(
                    [SessionWrite("s", "i1", "parent", messages=[message])]
                )
                assert result.error is None and result.appended_at is not None
            if await child.wait() != 0:
                assert child.stderr is not None
                pytest.fail(b"".join([chunk async for chunk in child.stderr]).decode())
        snap = await backend.load_session("s", tail=3 * n)
    finally:
        await backend.close()

    # Every acknowledged message is stored once, numbered without gaps, each writer's in order.
    assert snap is not None
    assert (snap.first_seq, snap.next_seq, snap.meta.message_count) == (0, 2 * n, 2 * n)
    stored_texts = [str(c) for c in contents(snap.messages)]
    for writer in ("parent", "child"):
        assert [t for t in stored_texts if t.startswith(writer)] == [
            f"{writer}{i}" for i in range(n)
        ]


# -- files it cannot use ------------------------------------------------------------------


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


async def test_not_a_database(sqlite_path: str) -> None:
    await anyio.Path(sqlite_path).write_bytes(b"this is not an sqlite file\n" * 200)

    with pytest.raises(MemoryConnectionError, match="not an SQLite database"):
        await SQLiteBackend(sqlite_path).open()


async def test_newer_schema_is_refused(sqlite_path: str) -> None:
    run_sql(sqlite_path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(MemoryBackendError, match="schema version") as caught:
        await SQLiteBackend(sqlite_path).open()
    assert not isinstance(caught.value, MemoryConnectionError)


# -- files of older releases --------------------------------------------------------------

# Schema versions 1 and 2: one sessions row with the listing columns and the metadata packed
# in a msgpack blob; messages without an id column (version 1: a WITHOUT ROWID table).
OLD_LAYOUT = {
    1: (
        """CREATE TABLE messages (session_id TEXT NOT NULL, seq INTEGER NOT NULL,
            payload BLOB NOT NULL, PRIMARY KEY (session_id, seq)) WITHOUT ROWID""",
        "CREATE INDEX sessions_status ON sessions (status, updated_at)",
    ),
    2: (
        """CREATE TABLE messages (id INTEGER PRIMARY KEY, session_id TEXT NOT NULL,
            seq INTEGER NOT NULL, payload BLOB NOT NULL)""",
        "CREATE UNIQUE INDEX messages_session ON messages (session_id, seq)",
        "CREATE INDEX sessions_status ON sessions (status)",
    ),
}
OLD_COMMON = (
    """CREATE TABLE sessions (session_id TEXT PRIMARY KEY, user_id TEXT NOT NULL,
        status TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
        expires_at REAL, message_count INTEGER NOT NULL, next_seq INTEGER NOT NULL,
        first_seq INTEGER NOT NULL, meta BLOB NOT NULL)""",
    "CREATE INDEX sessions_user ON sessions (user_id, updated_at)",
    "CREATE INDEX sessions_updated ON sessions (updated_at)",
    "CREATE INDEX sessions_expires ON sessions (expires_at)",
    """CREATE TABLE summaries (session_id TEXT NOT NULL, summary_id TEXT NOT NULL,
        covers_through INTEGER NOT NULL, payload BLOB NOT NULL,
        PRIMARY KEY (session_id, summary_id))""",
)


def old_sessions() -> dict[str, tuple[SessionMetadata, int, int, list[tuple[str, int]]]]:
    """Per session: metadata, first and next sequence number, and (summary id, end) pairs."""
    return {
        "a": (
            meta(
                "a",
                updated=5,
                max_messages=40,
                metadata={"topic": "été", "n": [1, 2]},
                expires_at=T0.replace(year=2025),
            ),
            0,
            5,
            [("a:2", 2), ("a:4", 4)],
        ),
        "b": (
            meta("b", "bob", updated=3, status=SessionStatus.ARCHIVED, max_tokens=900),
            2,
            5,
            [("b:3", 3)],
        ),
        "c": (meta("c", "carol", updated=1), 0, 0, []),
    }


def write_old_file(path: str, version: int) -> None:
    """A file as schema ``version`` left it, holding :func:`old_sessions`."""
    db = sqlite3.connect(path)
    for statement in (*OLD_COMMON, *OLD_LAYOUT[version]):
        db.execute(statement)
    for sid, (m, first, nxt, summaries) in old_sessions().items():
        m.message_count = nxt  # what those releases stored
        expires = None if m.expires_at is None else m.expires_at.timestamp()
        db.execute(
            "INSERT INTO sessions (session_id, user_id, status, created_at, updated_at,"
            " expires_at, message_count, next_seq, first_seq, meta)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sid,
                m.user_id,
                m.status.value,
                m.created_at.timestamp(),
                m.updated_at.timestamp(),
                expires,
                nxt,
                nxt,
                first,
                pack_meta(m),
            ),
        )
        db.executemany(
            "INSERT INTO messages (session_id, seq, payload) VALUES (?, ?, ?)",
            [(sid, first + i, pack_message(x)) for i, x in enumerate(texts(nxt - first, first))],
        )
        db.executemany(
            "INSERT INTO summaries VALUES (?, ?, ?, ?)",
            [(sid, s, end, pack_summary(summary(sid, s, end))) for s, end in summaries],
        )
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()


@pytest.mark.parametrize("version", [1, 2])
async def test_an_older_file_is_upgraded_in_place(sqlite_path: str, version: int) -> None:
    write_old_file(sqlite_path, version)
    old = old_sessions()

    backend = SQLiteBackend(sqlite_path)
    await backend.open()
    try:
        a, b, c = [await backend.load_session(sid, tail=10) for sid in "abc"]
        assert a is not None and b is not None and c is not None
        listed = [m.session_id for m in await backend.list_sessions()]
        stats = await backend.get_usage_stats()
        appended, trimmed, refused = await backend.apply(
            [
                # m4 is stored already; "a:4" is the latest summary.
                SessionWrite(
                    "a",
                    a.incarnation,
                    "w1",
                    messages=texts(2, start=4),
                    summary=summary("a", "a:6", 6),
                    summary_base="a:4",
                ),
                SessionWrite("b", b.incarnation, "w1", trim_before=10, trim_base=1),
                SessionWrite("b", b.incarnation, "w1", messages=texts(1, start=5)),
            ]
        )
    finally:
        await backend.close()

    assert a.meta == replace(old["a"][0], message_count=5)
    assert [m.message_id for m in a.messages] == [f"m{i}" for i in range(5)]
    assert a.summaries == [summary("a", "a:2", 2), summary("a", "a:4", 4)]
    assert (a.first_seq, a.next_seq, a.version) == (0, 5, 1) and a.incarnation
    assert b.meta == replace(old["b"][0], message_count=3)
    assert contents(b.messages) == ["m2", "m3", "m4"] and (b.first_seq, b.next_seq) == (2, 5)
    assert b.summaries == [summary("b", "b:3", 3)] and b.incarnation != a.incarnation
    assert c.meta == old["c"][0] and c.messages == [] and c.summaries == []
    assert listed == ["a", "b", "c"]
    assert (stats["total_sessions"], stats["total_messages"], stats["total_summaries"]) == (3, 8, 3)
    assert stats["sessions_by_status"] == {"active": 2, "archived": 1}
    assert appended.appended_at == 5 and appended.summary_stored
    assert trimmed.state.first_seq == 3  # what the latest summary covers
    assert isinstance(refused.error, MemoryValidationError)  # b is archived
    assert await stored(sqlite_path, "a") == [f"m{i}" for i in range(6)]
    db = sqlite3.connect(sqlite_path)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        names = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        assert {"sessions_v2", "messages_v1"}.isdisjoint(names)
        assert {"messages_session", "messages_id", "sessions_status"} <= names
    finally:
        db.close()


async def test_a_version_3_file_gains_the_editing_columns(sqlite_path: str) -> None:
    path, opened = sqlite_path, SQLiteBackend(sqlite_path)
    await opened.open()
    await opened.apply([write("s", 4)])
    await opened.close()
    run_sql(
        path,
        "ALTER TABLE sessions DROP COLUMN cleared_at",
        "ALTER TABLE sessions DROP COLUMN edited",
        "PRAGMA user_version = 3",
    )
    await opened.open()
    snapshot = await opened.load_session("s", tail=10)
    assert snapshot is not None and contents(snapshot.messages) == ["m0", "m1", "m2", "m3"]
    [removed] = await opened.apply([SessionWrite("s", snapshot.incarnation, "w1", remove=["m1"])])
    assert removed.error is None
    await opened.close()
    assert await stored(path, "s") == ["m0", "", "m2", "m3"]
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        db.close()


# -- data it cannot read, batches that fail -----------------------------------------------


async def test_corrupt_payload(opened: SQLiteBackend, sqlite_path: str) -> None:
    await opened.apply([write("s", 3)])
    run_sql(sqlite_path, "UPDATE messages SET payload = x'c1' WHERE session_id = 's' AND seq = 2")

    with pytest.raises(MemoryCorruptionError):
        await opened.load_session("s", tail=10)
    assert contents(await opened.load_messages("s", start=0, stop=2)) == ["m0", "m1"]


UNREADABLE_ROWS = {"custom": "'{not json'", "status": "'paused'"}


@pytest.mark.parametrize("column", UNREADABLE_ROWS)
async def test_an_unreadable_session_row_is_corruption(
    opened: SQLiteBackend, sqlite_path: str, column: str
) -> None:
    await opened.apply([write("bad", 2)])
    run_sql(sqlite_path, f"UPDATE sessions SET {column} = {UNREADABLE_ROWS[column]}")

    with pytest.raises(MemoryCorruptionError):
        await opened.load_session("bad", tail=10)


@pytest.mark.parametrize("column", UNREADABLE_ROWS)
async def test_an_unreadable_session_row_fails_that_session_only(
    opened: SQLiteBackend, sqlite_path: str, column: str
) -> None:
    await opened.apply([write("bad", 2), write("good", 2)])
    run_sql(
        sqlite_path,
        f"UPDATE sessions SET {column} = {UNREADABLE_ROWS[column]} WHERE session_id = 'bad'",
    )
    # The application's metadata is read only by writes that change it (and by readers).
    touch = {"custom": {"k": 1}} if column == "custom" else {}
    bad_write = write("bad", 1, start=2)
    bad_write.custom = touch.get("custom", {})

    bad, good = await opened.apply([bad_write, write("good", 1, start=2)])

    assert isinstance(bad.error, MemoryCorruptionError) and bad.appended_at is None
    assert good.error is None and good.appended_at == 2
    assert await stored(sqlite_path, "good") == ["m0", "m1", "m2"]


async def test_failing_batch_is_rolled_back(opened: SQLiteBackend, sqlite_path: str) -> None:
    # The file refuses the second session's row, after the first one's rows were written.
    run_sql(
        sqlite_path,
        "CREATE TRIGGER refuse BEFORE INSERT ON sessions WHEN NEW.session_id = 'bad'"
        " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )

    with pytest.raises(MemoryBackendError, match="refused by the test"):
        await opened.apply([write("good", 2), write("bad", 2)])

    assert await opened.load_session("good", tail=10) is None
    assert (await opened.get_usage_stats())["total_messages"] == 0
    run_sql(sqlite_path, "DROP TRIGGER refuse")
    results = await opened.apply([write("good", 2), write("bad", 2)])
    assert [(r.created, r.appended_at) for r in results] == [(True, 0), (True, 0)]
    assert await stored(sqlite_path, "good") == ["m0", "m1"]


async def test_cancelled_caller_leaves_a_whole_batch(opened: SQLiteBackend) -> None:
    with anyio.CancelScope() as scope:
        scope.cancel()
        await opened.apply([write("s", 500)])

    snap = await opened.load_session("s", tail=1_000)
    assert snap is not None and snap.next_seq == 500
    await opened.apply([write("s", 1, start=500)])
    assert (await opened.get_usage_stats())["total_messages"] == 501


# -- lifecycle ----------------------------------------------------------------------------


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
    assert not backend.persistent and not backend.shared
    await backend.open()
    try:
        await backend.apply([write("s", 2)])
        stats = await backend.get_usage_stats()
    finally:
        await backend.close()
    assert stats["total_messages"] == 2
    assert stats["storage_size_mb"] is None


async def test_unclosed_backend_does_not_block_interpreter_exit(
    sqlite_path: str, anyio_backend: str
) -> None:
    with anyio.fail_after(20):
        result = await anyio.run_process(
            [sys.executable, script("never_closed"), sqlite_path, anyio_backend], check=False
        )
    assert result.stdout == b"opened\n"
    assert result.returncode == 0


async def test_bad_options_are_configuration_errors() -> None:
    with pytest.raises(MemoryConfigurationError, match="synchronous"):
        SQLiteBackend(synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(MemoryConfigurationError, match="busy_timeout"):
        SQLiteBackend(busy_timeout=-1)
