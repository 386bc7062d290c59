"""An exception raised in the body of ``async with MemoryManager...`` (or of a session
context) leaves the block as itself, never wrapped in an exception group; the runtime still
drains what the body wrote."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from langswarm.core.memory import MemoryManager, MemorySessionContext, create_openai_message
from langswarm.core.memory.exceptions import SessionOwnershipError

pytestmark = pytest.mark.anyio


def sqlite_memory(path: Path) -> MemoryManager:
    config = {"backend": "sqlite", "config": {"db_path": str(path)}, "durability": "buffered"}
    return MemoryManager.from_config(memory=config)


async def test_the_bodys_own_error_is_caught_as_itself(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="app") as caught:
        async with sqlite_memory(tmp_path / "m.db") as memory:
            session = await memory.create_session("u", "s")
            await session.add_message(create_openai_message("user", "kept"))
            raise ValueError("app")
    assert type(caught.value) is ValueError
    async with sqlite_memory(tmp_path / "m.db") as memory:
        session = await memory.get_session("s")
        assert session is not None
        assert [m.content for m in await session.get_messages()] == ["kept"]


async def test_a_library_error_is_caught_as_itself(tmp_path: Path) -> None:
    try:
        async with sqlite_memory(tmp_path / "m.db") as memory:
            await memory.create_session("alice", "s")
            await memory.get_or_create_session("bob", "s")
    except SessionOwnershipError as error:
        assert "s" in str(error)
    else:
        pytest.fail("SessionOwnershipError was not raised")


async def test_a_session_context_passes_errors_through(tmp_path: Path) -> None:
    memory = sqlite_memory(tmp_path / "m.db")
    with pytest.raises(KeyError):
        async with MemorySessionContext("u", "s", manager=memory) as session:
            await session.add_message(create_openai_message("user", "hi"))
            raise KeyError("x")
    await memory.close()


async def test_cancelling_the_body_still_drains(tmp_path: Path) -> None:
    with anyio.CancelScope() as scope:
        async with sqlite_memory(tmp_path / "m.db") as memory:
            session = await memory.create_session("u", "s")
            await session.add_message(create_openai_message("user", "kept"))
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    async with sqlite_memory(tmp_path / "m.db") as memory:
        session = await memory.get_session("s")
        assert session is not None
        assert [m.content for m in await session.get_messages()] == ["kept"]
