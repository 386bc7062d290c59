"""SQLite durability end to end, through the runtime and the global API.

Writers run in separate ``python`` processes, as an application would: a restart must find
everything a script wrote before simply returning from ``asyncio.run``/``trio.run``; a
SIGKILL must never lose an acknowledged ``committed`` write nor corrupt the file; another
process holding the write lock delays writes (or fails them past the retry budget) without
losing or wedging anything; broken files give clear errors, never a hang.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from langswarm.core.memory import (
    MemoryManager,
    MemorySessionContext,
    create_openai_message,
    get_global_memory_manager,
    initialize_memory,
)
from langswarm.core.memory.exceptions import (
    MemoryBackendError,
    MemoryConnectionError,
    MemoryError,
)
from tests.helpers import hold_write_lock

pytestmark = pytest.mark.anyio

LOOPS = ("asyncio", "trio")
DURABILITIES = ("committed", "buffered")

# Every child script ends with this: argv[1] names the loop, and ``main`` simply returns.
_RUN_MAIN = """
if sys.argv[1] == "trio":
    import trio

    trio.run(main)
else:
    import asyncio

    asyncio.run(main())
"""

# argv: loop, db_path, durability. 100 sessions x 100 messages, written concurrently through
# the global API; then metadata updates and every third session archived. No close.
RESTART_WRITER = """
import sys

import anyio

from langswarm.core.memory import (
    create_openai_message, get_global_memory_manager, initialize_memory)

path, durability = sys.argv[2], sys.argv[3]


async def writer(i: int) -> None:
    memory = get_global_memory_manager()
    sid = f"s{i:03d}"
    session = await memory.create_session(f"user{i % 7}", sid, metadata={"index": i})
    for k in range(100):
        role = "user" if k % 2 == 0 else "assistant"
        await session.add_message(
            create_openai_message(role, f"{sid} message {k}", message_id=f"{sid}-{k:03d}")
        )
    await session.update_metadata({"stage": "done", "max_tokens": 4000 + i})
    if i % 3 == 0:
        await session.archive_session()


async def main() -> None:
    initialize_memory(
        memory={"backend": "sqlite", "config": {"db_path": path}, "durability": durability}
    )
    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(writer, i)
"""

# argv: loop, db_path. Prints, as JSON, every stored session as the global API sees it.
RESTART_READER = """
import json
import sys

from langswarm.core.memory import get_global_memory_manager, initialize_memory


async def main() -> None:
    initialize_memory(memory={"backend": "sqlite", "config": {"db_path": sys.argv[2]}})
    memory = get_global_memory_manager()
    found = {}
    for listed in await memory.backend.list_sessions(limit=None):
        session = await memory.get_session(listed.session_id)
        meta = session.metadata
        found[meta.session_id] = {
            "user_id": meta.user_id,
            "status": meta.status.value,
            "max_tokens": meta.max_tokens,
            "metadata": meta.metadata,
            "message_count": meta.message_count,
            "messages": [
                [m.message_id, m.role.value, m.content] for m in await session.get_messages()
            ],
        }
    archived = await memory.backend.list_sessions(status="archived", limit=None)
    stats = await memory.backend.get_usage_stats()
    print(json.dumps({
        "sessions": found,
        "archived": sorted(m.session_id for m in archived),
        "total_messages": stats["total_messages"],
    }))
"""

# argv: loop, db_path. Buffered writes, then a few checkpoints so that the flusher has taken
# them as a batch and is working on it when ``main`` returns.
IN_FLIGHT_WRITER = """
import sys

import anyio.lowlevel

from langswarm.core.memory import (
    create_openai_message, get_global_memory_manager, initialize_memory)


async def main() -> None:
    initialize_memory(
        memory={"backend": "sqlite", "config": {"db_path": sys.argv[2]}, "durability": "buffered"}
    )
    session = await get_global_memory_manager().create_session("u", "s")
    for k in range(5_000):
        await session.add_message(create_openai_message("user", f"message {k}"))
    for _ in range(3):
        await anyio.lowlevel.checkpoint()
"""

# argv: loop, db_path, durability, writers. Each writer appends to its own session forever
# and prints each message id once ``add_message`` has returned (acknowledged).
CRASH_WRITER = """
import itertools
import sys

import anyio

from langswarm.core.memory import (
    create_openai_message, get_global_memory_manager, initialize_memory)

path, durability, writers = sys.argv[2], sys.argv[3], int(sys.argv[4])
FILL = "x" * 170


async def writer(i: int) -> None:
    sid = f"w{i:02d}"
    session = await get_global_memory_manager().get_or_create_session("crash", sid)
    for k in itertools.count():
        message = create_openai_message("user", f"{sid}:{k:06d} {FILL}", message_id=f"{sid}:{k}")
        await session.add_message(message)
        print(message.message_id, flush=True)


async def main() -> None:
    initialize_memory(
        memory={"backend": "sqlite", "config": {"db_path": path}, "durability": durability}
    )
    async with anyio.create_task_group() as tg:
        for i in range(writers):
            tg.start_soon(writer, i)
"""


def write_script(directory: Path, name: str, body: str) -> Path:
    """Write a child script (``body`` plus the loop runner) into ``directory``."""
    path = directory / name
    path.write_text(textwrap.dedent(body) + _RUN_MAIN)
    return path


def sqlite_memory(path: Path | str, **options: Any) -> dict[str, Any]:
    """An ``initialize_memory(memory=...)`` dict for the SQLite file at ``path``."""
    config = {"db_path": os.fspath(path)}
    for key in ("busy_timeout", "enable_wal", "synchronous"):
        if key in options:
            config[key] = options.pop(key)
    return {"backend": "sqlite", "config": config, "shutdown_grace": 5, **options}


def integrity(path: Path | str) -> list[tuple[Any, ...]]:
    """``PRAGMA integrity_check`` with plain sqlite3, on the file as the crash left it."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()


def contents(messages: list[Any]) -> list[str]:
    return [m.content for m in messages]


async def stored_contents(path: Path, session_id: str) -> list[str]:
    """A session's message contents as a fresh manager on the file reads them."""
    async with MemoryManager.from_config(memory=sqlite_memory(path)) as memory:
        session = await memory.get_session(session_id)
        assert session is not None
        return contents(await session.get_messages())


async def let_the_flusher_start() -> None:
    """Yield, so the woken flusher takes what is pending as one batch and starts writing it
    (token counting in a worker thread, then the backend): the batch is then in flight."""
    for _ in range(3):
        await anyio.lowlevel.checkpoint()


def count_rows(path: Path) -> int:
    """Messages in the file, read with plain sqlite3 (what another process would see)."""
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute("SELECT COUNT(*) FROM messages").fetchone()
    finally:
        conn.close()
    return int(count)


# -- restart: process A writes and returns, process B finds everything -------------------------


def run_child(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, os.fspath(script), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done


def expected_session(i: int) -> dict[str, Any]:
    sid = f"s{i:03d}"
    return {
        "user_id": f"user{i % 7}",
        "status": "archived" if i % 3 == 0 else "active",
        "max_tokens": 4000 + i,
        "metadata": {"index": i, "stage": "done"},
        "message_count": 100,
        "messages": [
            [f"{sid}-{k:03d}", "user" if k % 2 == 0 else "assistant", f"{sid} message {k}"]
            for k in range(100)
        ],
    }


@pytest.mark.parametrize("durability", DURABILITIES)
@pytest.mark.parametrize("loop", LOOPS)
def test_restart_finds_everything_a_returning_script_wrote(
    tmp_path: Path, loop: str, durability: str
) -> None:
    db = tmp_path / "memory.db"
    run_child(write_script(tmp_path, "writer.py", RESTART_WRITER), loop, os.fspath(db), durability)
    reader = write_script(tmp_path, "reader.py", RESTART_READER)
    found = json.loads(run_child(reader, loop, os.fspath(db)).stdout)

    sessions = found["sessions"]
    assert sorted(sessions) == [f"s{i:03d}" for i in range(100)]
    for i in range(100):
        assert sessions[f"s{i:03d}"] == expected_session(i), f"session s{i:03d}"
    assert found["archived"] == [f"s{i:03d}" for i in range(0, 100, 3)]
    assert found["total_messages"] == 10_000


@pytest.mark.parametrize("loop", LOOPS)
def test_a_batch_in_flight_when_the_loop_ends_is_kept(tmp_path: Path, loop: str) -> None:
    """The batch the flusher is working on when ``main`` returns is stored, not dropped."""
    db = tmp_path / "memory.db"
    run_child(write_script(tmp_path, "writer.py", IN_FLIGHT_WRITER), loop, os.fspath(db))
    assert count_rows(db) == 5_000


# -- crash: SIGKILL at a random moment ------------------------------------------------------------


@dataclass
class CrashRun:
    """What one killed writer acknowledged, and what the reopened database holds."""

    acked: list[str]
    stored: dict[str, list[str]]  # session id -> stored message ids, in order
    counts: dict[str, int]  # session id -> stored metadata message_count
    integrity: list[tuple[Any, ...]]
    returncode: int | None
    write_seconds: float  # from the first acknowledgement to the kill
    acked_at_kill: int
    stderr: str = ""
    lost: list[str] = field(default_factory=list)  # acknowledged, not stored

    def problems(self) -> list[str]:
        """Everything wrong with the reopened database (lost writes aside)."""
        found = []
        if self.integrity != [("ok",)]:
            found.append(f"integrity_check: {self.integrity}")
        for sid, ids in self.stored.items():
            if ids != [f"{sid}:{k}" for k in range(len(ids))]:
                found.append(f"{sid}: stored ids are not a gap-free prefix in order")
            if self.counts[sid] != len(ids):
                found.append(f"{sid}: message_count {self.counts[sid]} but {len(ids)} stored")
        return found


async def stored_messages(path: Path) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Message ids and message counts per session, read through the library."""
    stored: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    async with MemoryManager.from_config(memory=sqlite_memory(path)) as memory:
        for listed in await memory.backend.list_sessions(user_id="crash", limit=None):
            session = await memory.get_session(listed.session_id)
            assert session is not None
            stored[listed.session_id] = [m.message_id for m in await session.get_messages()]
            counts[listed.session_id] = session.metadata.message_count
    return stored, counts


async def crash_once(
    directory: Path, *, loop: str, durability: str, kill_after: int, writers: int = 32
) -> CrashRun:
    """Run a crash writer in ``directory``, SIGKILL it once it has acknowledged
    ``kill_after`` messages, and inspect the database it leaves."""
    script = write_script(directory, "crash_writer.py", CRASH_WRITER)
    db = directory / "crash.db"
    args = [sys.executable, os.fspath(script), loop, os.fspath(db), durability, str(writers)]
    acked: list[str] = []
    errors = bytearray()
    first: float | None = None
    killed: float | None = None
    acked_at_kill = 0
    with anyio.fail_after(60):
        async with (
            await anyio.open_process(
                args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            ) as process,
            anyio.create_task_group() as tg,
        ):
            assert process.stdout is not None and process.stderr is not None

            async def collect_stderr(stream: anyio.abc.ByteReceiveStream) -> None:
                async for chunk in stream:
                    errors.extend(chunk)

            tg.start_soon(collect_stderr, process.stderr)
            partial = b""
            # Lines still in the pipe after the kill were printed before it: acknowledged.
            # An unfinished last line is not counted.
            async for chunk in process.stdout:
                *lines, partial = (partial + chunk).split(b"\n")
                acked.extend(line.decode() for line in lines)
                if first is None and acked:
                    first = time.monotonic()
                if killed is None and len(acked) >= kill_after:
                    process.kill()
                    killed, acked_at_kill = time.monotonic(), len(acked)
            await process.wait()
    run = CrashRun(
        acked=acked,
        stored={},
        counts={},
        integrity=await anyio.to_thread.run_sync(integrity, db),
        returncode=process.returncode,
        write_seconds=0.0 if killed is None or first is None else killed - first,
        acked_at_kill=acked_at_kill,
        stderr=errors.decode(errors="replace"),
    )
    if killed is None:
        return run  # the child ended on its own: its stderr says why
    run.stored, run.counts = await stored_messages(db)
    held = {i for ids in run.stored.values() for i in ids}
    run.lost = [i for i in acked if i not in held]
    return run


async def test_sigkill_never_loses_an_acknowledged_committed_write(
    tmp_path: Path, anyio_backend: str
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for attempt in range(20):
        directory = tmp_path / f"run{attempt}"
        directory.mkdir()
        kill_after = rng.randint(50, 2_000)
        run = await crash_once(
            directory, loop=anyio_backend, durability="committed", kill_after=kill_after
        )
        where = f"seed {seed}, run {attempt}, killed after {kill_after} acks"
        assert run.returncode == -9, f"{where}: child exited by itself:\n{run.stderr}"
        assert run.problems() == [], where
        assert run.lost == [], f"{where}: {len(run.lost)} acknowledged messages lost"
        assert len(run.acked) >= kill_after


# -- faults at the runtime level ------------------------------------------------------------------


async def test_a_held_lock_delays_committed_writes_within_the_retry_budget(
    tmp_path: Path,
) -> None:
    db = tmp_path / "memory.db"
    options = sqlite_memory(db, busy_timeout=0.1, retry_budget=8.0, durability="committed")
    with anyio.fail_after(30):
        async with MemoryManager.from_config(memory=options) as memory:
            sessions = [await memory.create_session("u", f"s{i}") for i in range(10)]
            for session in sessions:
                await session.add_message(create_openai_message("user", "before"))

            process = await hold_write_lock(db, 2.0)
            async with process:
                started = time.monotonic()
                async with anyio.create_task_group() as tg:
                    for session in sessions:
                        for k in range(5):
                            message = create_openai_message("user", f"during {k}")
                            tg.start_soon(session.add_message, message)
                waited = time.monotonic() - started
                await process.wait()
            assert process.returncode == 0
            assert waited > 1.5  # acknowledged only once the other writer let go

        for i in range(10):
            stored = await stored_contents(db, f"s{i}")
            assert stored[0] == "before"
            assert sorted(stored[1:]) == [f"during {k}" for k in range(5)]


async def test_a_lock_outlasting_the_retry_budget_fails_committed_callers_only(
    tmp_path: Path,
) -> None:
    db = tmp_path / "memory.db"
    options = sqlite_memory(db, busy_timeout=0.1, retry_budget=0.3, durability="committed")
    with anyio.fail_after(30):
        async with MemoryManager.from_config(memory=options) as memory:
            session = await memory.create_session("u", "s")
            other = await memory.create_session("u", "other")
            await session.add_message(create_openai_message("user", "before"))

            process = await hold_write_lock(db, 2.0)
            async with process:
                failures: list[BaseException] = []

                async def refused(text: str) -> None:
                    try:
                        await session.add_message(create_openai_message("user", text))
                    except MemoryError as exc:
                        failures.append(exc)

                started = time.monotonic()
                async with anyio.create_task_group() as tg:
                    for k in range(5):
                        tg.start_soon(refused, f"refused {k}")
                assert time.monotonic() - started < 1.8
                assert process.returncode is None  # the lock is still held
                await process.wait()
            assert len(failures) == 5
            assert all(isinstance(f, MemoryBackendError) for f in failures)
            assert "busy" in str(failures[0])

            await session.add_message(create_openai_message("user", "after"))
            await other.add_message(create_openai_message("user", "elsewhere"))
            assert contents(await session.get_messages()) == ["before", "after"]

        assert await stored_contents(db, "s") == ["before", "after"]
        assert await stored_contents(db, "other") == ["elsewhere"]


async def test_writes_right_after_a_refused_one_are_kept(tmp_path: Path) -> None:
    """One caller, in sequence: a write refused past the retry budget, then writes that are
    acknowledged while the session is being rebuilt from storage and after. All of those
    are in the session and in the file."""
    db = tmp_path / "memory.db"
    options = sqlite_memory(db, busy_timeout=0.05, retry_budget=1.0, durability="committed")
    with anyio.fail_after(30):
        async with MemoryManager.from_config(memory=options) as memory:
            session = await memory.create_session("u", "s")
            await session.add_message(create_openai_message("user", "before"))

            process = await hold_write_lock(db, 2.0)
            async with process:
                with pytest.raises(MemoryBackendError):
                    await session.add_message(create_openai_message("user", "refused"))
                # The session's actor starts rebuilding from storage; meanwhile the next
                # write waits for the lock (within its own retry budget) and is acknowledged.
                await anyio.wait_all_tasks_blocked()
                await session.add_message(create_openai_message("user", "next"))
                await process.wait()
            await session.add_message(create_openai_message("user", "later"))
            live = contents(await session.get_messages())
        stored = await stored_contents(db, "s")

    assert stored == ["before", "next", "later"]
    assert live == stored


async def test_writes_queued_behind_a_failed_batch_are_kept_exactly(tmp_path: Path) -> None:
    """A batch fails past the retry budget while the next one is already waiting: the session
    is rebuilt from storage, and that rebuild must include the next batch once it lands, or
    later writes are numbered over it and dropped although acknowledged."""
    db = tmp_path / "memory.db"
    options = sqlite_memory(db, busy_timeout=0.05, retry_budget=1.0, durability="committed")
    outcome: dict[str, str] = {}
    with anyio.fail_after(30):
        async with MemoryManager.from_config(memory=options) as memory:
            session = await memory.create_session("u", "s")
            await session.add_message(create_openai_message("user", "before"))

            async def add(text: str) -> None:
                try:
                    await session.add_message(create_openai_message("user", text))
                    outcome[text] = "acknowledged"
                except MemoryError:
                    outcome[text] = "refused"

            process = await hold_write_lock(db, 2.0)
            async with process, anyio.create_task_group() as tg:
                tg.start_soon(add, "first")
                await anyio.wait_all_tasks_blocked()  # the flusher is retrying the first batch
                tg.start_soon(add, "second")
            await add("after")
            live = contents(await session.get_messages())

        stored = await stored_contents(db, "s")

    assert outcome == {"first": "refused", "second": "acknowledged", "after": "acknowledged"}
    assert stored == ["before", "second", "after"]
    assert live == stored


async def test_a_vanished_database_directory_fails_writes_clearly(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    with anyio.fail_after(20):
        async with MemoryManager.from_config(memory=sqlite_memory(directory / "m.db")) as memory:
            session = await memory.create_session("u", "s")
            await session.add_message(create_openai_message("user", "stored"))
            shutil.rmtree(directory)

            with pytest.raises(MemoryBackendError, match="deleted or replaced"):
                await session.add_message(create_openai_message("user", "nowhere to go"))


async def test_a_missing_database_directory_fails_first_use_clearly(tmp_path: Path) -> None:
    initialize_memory(memory=sqlite_memory(tmp_path / "gone" / "m.db"))
    memory = get_global_memory_manager()
    with anyio.fail_after(10), pytest.raises(MemoryConnectionError, match="cannot open"):
        await memory.create_session("u")


async def test_a_read_only_database_fails_first_use_clearly(read_only_db: str) -> None:
    initialize_memory(memory=sqlite_memory(read_only_db))
    with anyio.fail_after(10), pytest.raises(MemoryConnectionError, match="read-only"):
        async with MemorySessionContext(user_id="u") as session:
            await session.add_message(create_openai_message("user", "never stored"))


# -- read-your-writes while a batch is in flight ---------------------------------------------------


async def test_backend_reads_wait_for_the_batch_in_flight(tmp_path: Path) -> None:
    """Read-your-writes: ``memory.backend`` reads see buffered writes that the flusher has
    already taken as a batch and is still writing."""
    options = sqlite_memory(tmp_path / "memory.db", durability="buffered")
    async with MemoryManager.from_config(memory=options) as memory:
        session = await memory.create_session("u", "s")
        for k in range(5_000):
            await session.add_message(create_openai_message("user", f"message {k}"))
        await let_the_flusher_start()
        stats = await memory.backend.get_usage_stats()
        assert (stats["total_sessions"], stats["total_messages"]) == (1, 5_000)


async def test_flush_waits_for_the_batch_in_flight(tmp_path: Path) -> None:
    """``session.flush()`` (and so leaving ``MemorySessionContext``) returns only once
    everything written before it is in the file."""
    db = tmp_path / "memory.db"
    async with MemoryManager.from_config(memory=sqlite_memory(db, durability="buffered")) as memory:
        session = await memory.create_session("u", "s")
        for k in range(5_000):
            await session.add_message(create_openai_message("user", f"message {k}"))
        await let_the_flusher_start()
        await session.flush()
        assert await anyio.to_thread.run_sync(count_rows, db) == 5_000


# -- the guide's SQLite profiles ------------------------------------------------------------------


async def converse(session_id: str) -> list[str]:
    """The guide's first example, on whatever ``initialize_memory`` configured."""
    async with MemorySessionContext(user_id="user123", session_id=session_id) as session:
        await session.add_message(create_openai_message("user", "Hello!"))
        await session.add_message(create_openai_message("assistant", "Hi there!"))
        return contents(await session.get_messages())


async def test_testing_profile_is_sqlite_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LANGSWARM_MEMORY_DB", os.fspath(tmp_path / "not-used.db"))
    memory = initialize_memory("testing")
    assert memory is get_global_memory_manager()
    try:
        assert await converse("chat") == ["Hello!", "Hi there!"]
        stats = await memory.get_system_stats()
        assert (stats["backend"], stats["total_messages"]) == ("sqlite", 2)
    finally:
        await memory.close()
    assert [p async for p in anyio.Path(tmp_path).iterdir()] == []  # nothing on disk


def test_testing_profile_defaults_to_buffered_as_documented() -> None:
    """README, "Backends and profiles": ``"testing"`` is SQLite ``:memory:``, ``buffered``
    (committed is the default only where data outlives the process)."""
    memory = initialize_memory("testing")
    assert memory.backend.name == "sqlite"
    assert memory.durability == "buffered"


async def test_production_profile_persists_to_the_configured_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "nested" / "memory.db"
    monkeypatch.setenv("LANGSWARM_MEMORY_DB", os.fspath(db))
    memory = initialize_memory("production")
    try:
        assert await converse("chat") == ["Hello!", "Hi there!"]
        assert memory.durability == "committed"
    finally:
        await memory.close()
    assert await anyio.Path(db).exists()

    again = initialize_memory("production")
    try:
        assert await converse("chat") == ["Hello!", "Hi there!", "Hello!", "Hi there!"]
        assert (await again.get_system_stats())["total_messages"] == 4
    finally:
        await again.close()
