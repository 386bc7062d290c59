"""``erase_user``: everything stored for one user goes, on every backend, including sessions
live in another manager on the same store; other users keep theirs."""

from __future__ import annotations

import pytest

from langswarm.core.memory import create_openai_message
from langswarm.core.memory.exceptions import SessionNotFoundError
from tests.store_fixtures import Factory

pytestmark = pytest.mark.anyio


async def test_erase_user_removes_everything_of_that_user_only(make_memory: Factory) -> None:
    async with make_memory() as memory, make_memory() as other:
        for i in range(3):
            session = await memory.create_session("alice", f"a{i}", metadata={"k": i})
            await session.add_messages(
                [create_openai_message("user", f"secret {i}.{j}") for j in range(4)]
            )
            await session.create_summary()
        await memory.get_or_create_session("alice")
        keep = await memory.create_session("bob", "b0")
        await keep.add_message(create_openai_message("user", "bob's"))
        live_elsewhere = await other.get_session("a0")
        assert live_elsewhere is not None

        erased = await memory.erase_user("alice")

        assert erased == {"sessions": 4, "messages": 12}
        assert await memory.backend.list_sessions("alice") == []
        assert await other.backend.list_sessions("alice") == []
        for sid in ("a0", "a1", "a2", "default:alice"):
            assert await memory.get_session(sid) is None
        # A handle live in another manager cannot bring an erased session back: a committed
        # write is refused, a buffered one is dropped with its session and the next refused.
        with pytest.raises(SessionNotFoundError):
            for _ in range(2):
                await live_elsewhere.add_message(create_openai_message("user", "late"))
                await live_elsewhere.flush()
        assert await memory.get_session("a0") is None
        stats = await memory.backend.get_usage_stats()
        assert (stats["total_sessions"], stats["total_messages"]) == (1, 1)
        assert stats["total_summaries"] == 0
        assert await memory.erase_user("alice") == {"sessions": 0, "messages": 0}
        bob = await other.get_session("b0", user_id="bob")
        assert bob is not None
        assert [m.content for m in await bob.get_messages()] == ["bob's"]
