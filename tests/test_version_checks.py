"""Reads on a shared store check the stored version beside the write path
(``actors/versions.py``): a read waits for no other session's write, and still sees what
another writer stored before it began.

Two managers with backends of their own on one SQLite file or one Redis play two processes;
the first one's batches wait at a gate the test holds shut.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from langswarm.core.memory import MemorySession
from langswarm.core.memory.backends.base import Backend
from langswarm.core.memory.backends.redis import RedisBackend
from langswarm.core.memory.backends.sqlite import SQLiteBackend
from langswarm.core.memory.exceptions import SessionNotFoundError
from tests.helpers import GatedBackend, manager_on, user_message

pytestmark = pytest.mark.anyio

#: Longest any wait in these tests may take before the test fails.
SETTLE = 10


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Backend]:
    """Makes a new backend on the test's one store."""
    if request.param == "sqlite":
        path = os.fspath(tmp_path / "memory.db")
        return lambda: SQLiteBackend(path)
    url = request.getfixturevalue("redis_url")
    return lambda: RedisBackend(url=url)


async def texts(session: MemorySession) -> list[str]:
    return [m.text() for m in await session.get_messages()]


async def test_a_read_waits_for_no_other_write_and_sees_another_writers_change(
    store: Callable[[], Backend],
) -> None:
    gated = GatedBackend(store())
    async with (
        manager_on(gated, durability="committed") as mine,
        manager_on(store(), durability="committed") as other,
    ):
        held = await mine.create_session("u", "held")
        read = await mine.create_session("u", "read")
        await read.add_message(user_message("mine"))
        assert await texts(read) == ["mine"]

        gated.close_gate()
        async with anyio.create_task_group() as tg:
            tg.start_soon(held.add_message, user_message("stuck"))
            try:
                with anyio.fail_after(SETTLE):
                    await gated.waiting.wait()  # a batch of this manager waits at the gate
                    assert await texts(read) == ["mine"]

                    theirs = await other.get_session("read")
                    assert theirs is not None
                    await theirs.add_message(user_message("theirs"))
                    assert await texts(read) == ["mine", "theirs"]
                    context = await read.get_conversation_context(max_tokens=1_000)
                    assert [m.text() for m in context] == ["mine", "theirs"]
            finally:
                gated.gate.set()
        assert await texts(held) == ["stuck"]
        await read.add_message(user_message("mine again"))
    async with manager_on(store()) as fresh:
        again = await fresh.get_session("read")
        assert again is not None
        assert await texts(again) == ["mine", "theirs", "mine again"]


async def test_a_read_sees_a_session_another_writer_deleted_as_gone(
    store: Callable[[], Backend],
) -> None:
    async with (
        manager_on(store(), durability="committed") as mine,
        manager_on(store(), durability="committed") as other,
    ):
        read = await mine.create_session("u", "read")
        await read.add_message(user_message("mine"))
        assert await texts(read) == ["mine"]
        theirs = await other.get_session("read")
        assert theirs is not None
        await theirs.delete_session()
        with pytest.raises(SessionNotFoundError):
            await read.get_messages()


async def test_a_backend_reads_versions_beside_its_writes(store: Callable[[], Backend]) -> None:
    """The protocol call itself: the stored incarnation and version, ``None`` when absent."""
    async with manager_on(store(), durability="committed") as memory:
        session = await memory.create_session("u", "s")
        runtime = await memory._ensure()
        backend = runtime.backend
        [first] = await backend.read_versions(["s"])
        assert first is not None
        await session.add_message(user_message("one"))
        assert await backend.read_versions(["missing", "s"]) == [None, (first[0], first[1] + 1)]
