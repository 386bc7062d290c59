"""Runtime behaviour on the in-memory backend: scale, activation, passivation, lifecycle."""

from __future__ import annotations

import anyio
import pytest

from langswarm.core.memory import MemoryManager, SessionStatus, SummaryType
from langswarm.core.memory.backends.memory import InMemoryBackend
from langswarm.core.memory.exceptions import (
    MemoryConfigurationError,
    MemoryValidationError,
    SessionExistsError,
    SessionNotFoundError,
    SessionOwnershipError,
)
from langswarm.core.memory.interfaces import Message, MessageRole
from tests.helpers import manager_on, user_message

pytestmark = pytest.mark.anyio


async def test_thousand_sessions_hundred_messages_each_exactly_once_in_order() -> None:
    async with manager_on(InMemoryBackend()) as memory:
        sessions = [await memory.create_session(f"user{i % 50}") for i in range(1_000)]

        async def writer(i: int) -> None:
            for k in range(100):
                await sessions[i].add_message(user_message(f"{i}:{k}"))

        async with anyio.create_task_group() as tg:
            for i in range(1_000):
                tg.start_soon(writer, i)
        for i, session in enumerate(sessions):
            contents = [m.content for m in await session.get_messages()]
            assert contents == [f"{i}:{k}" for k in range(100)]
        stats = await memory.backend.get_usage_stats()
        assert stats["total_sessions"] == 1_000
        assert stats["total_messages"] == 100_000


async def test_concurrent_get_or_create_makes_one_session() -> None:
    async with manager_on(InMemoryBackend()) as memory:
        got = []

        async def open_it() -> None:
            got.append(await memory.get_or_create_session("alice", "shared"))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(open_it)
        assert {s.session_id for s in got} == {"shared"}
        await got[3].add_message(user_message("seen by all"))
        for session in got:
            assert [m.content for m in await session.get_messages()] == ["seen by all"]
        assert len(await memory.backend.list_sessions(user_id="alice")) == 1
        runtime = await memory._ensure()
        assert runtime.registry is not None and runtime.registry.activations == 1


async def test_passivation_and_reactivation_keep_everything() -> None:
    async with manager_on(InMemoryBackend(), idle_timeout=0, sweep_interval=3600) as memory:
        session = await memory.create_session(
            "bob", "kept", max_tokens=1234, metadata={"team": "blue"}
        )
        for i in range(10):
            await session.add_message(user_message(f"fact {i}: the code is {1000 + i}"))
        summary = await session.create_summary(summary_type=SummaryType.MANUAL)
        await session.update_metadata({"stage": "review"})
        await session.archive_session()
        before = session.metadata

        runtime = await memory._ensure()
        assert runtime.registry is not None
        await runtime.registry.sweep()
        assert "kept" not in runtime.registry.live
        assert runtime.registry.passivations == 1

        assert [m.content for m in await session.get_messages()] == [
            f"fact {i}: the code is {1000 + i}" for i in range(10)
        ]
        assert "kept" in runtime.registry.live
        assert await session.get_summaries() == [summary]
        after = session.metadata
        assert after == before
        assert after.status is SessionStatus.ARCHIVED
        assert after.metadata == {"team": "blue", "stage": "review"}
        again = await memory.get_session("kept")
        assert again is not None and again.metadata.max_tokens == 1234


async def test_live_session_cap_passivates_least_recently_used() -> None:
    async with manager_on(InMemoryBackend(), max_live_sessions=10, sweep_interval=3600) as memory:
        sessions = [await memory.create_session("u") for _ in range(25)]
        for i, s in enumerate(sessions):
            await s.add_message(user_message(f"only {i}"))
        runtime = await memory._ensure()
        assert runtime.registry is not None
        await runtime.registry.sweep()
        assert len(runtime.registry.live) == 10
        assert {s.session_id for s in sessions[-10:]} == set(runtime.registry.live)
        for i, s in enumerate(sessions):
            assert [m.content for m in await s.get_messages()] == [f"only {i}"]


async def test_session_ids_are_unique_and_owned() -> None:
    async with manager_on(InMemoryBackend()) as memory:
        await memory.create_session("alice", "s1")
        with pytest.raises(SessionExistsError):
            await memory.create_session("bob", "s1")
        with pytest.raises(SessionOwnershipError):
            await memory.get_or_create_session("bob", "s1")
        with pytest.raises(SessionOwnershipError):
            await memory.get_session("s1", user_id="bob")
        found = await memory.get_session("s1", user_id="alice")
        assert found is not None


async def test_bad_input_is_rejected_and_stores_nothing() -> None:
    async with manager_on(InMemoryBackend()) as memory:
        session = await memory.create_session("u")
        with pytest.raises(MemoryValidationError):
            await session.add_message({"role": "user", "content": "hi"})  # type: ignore[arg-type]
        with pytest.raises(MemoryValidationError):
            await session.add_messages([user_message("ok"), "not a message"])  # type: ignore[list-item]
        with pytest.raises(MemoryValidationError):
            Message(role="wizard", content="x")  # type: ignore[arg-type]
        with pytest.raises(MemoryValidationError):
            Message(role=MessageRole.USER, content=42)  # type: ignore[arg-type]
        with pytest.raises(MemoryValidationError):
            await session.update_metadata({"opaque": object()})
        with pytest.raises(MemoryValidationError):
            await session.get_messages(roles=["wizard"])
        with pytest.raises(MemoryValidationError):
            await session.get_conversation_context(max_tokens=-1)
        with pytest.raises(MemoryValidationError):
            await memory.create_session("")
        with pytest.raises(MemoryValidationError):
            await memory.create_session("u", max_messages=0)
        with pytest.raises(MemoryValidationError):
            await memory.create_session("u", "odd-mode", durability="eventually")
        with pytest.raises(MemoryValidationError):
            await memory.get_or_create_session("u", "odd-mode", durability="eventually")
        assert await memory.get_session("odd-mode") is None
        assert await session.get_messages() == []
        assert session.metadata.metadata == {}
        assert (await memory.backend.get_usage_stats())["total_messages"] == 0


async def test_archived_sessions_refuse_writes_and_deleted_ones_are_gone() -> None:
    async with manager_on(InMemoryBackend()) as memory:
        session = await memory.create_session("u")
        await session.add_message(user_message("before"))
        await session.archive_session()
        with pytest.raises(MemoryValidationError):
            await session.add_message(user_message("after"))
        assert [m.content for m in await session.get_messages()] == ["before"]
        await session.delete_session()
        with pytest.raises(SessionNotFoundError):
            await session.get_messages()
        assert await memory.get_session(session.session_id) is None
        assert await memory.backend.list_sessions() == []


async def test_add_messages_is_one_ordered_unit() -> None:
    async with manager_on(InMemoryBackend()) as memory:
        session = await memory.create_session("u")
        batch = [user_message(f"b{i}") for i in range(50)]
        stored = await session.add_messages(batch)
        assert stored == batch
        assert [m.content for m in await session.get_messages()] == [f"b{i}" for i in range(50)]


async def test_the_global_runtime_restarts_with_each_event_loop() -> None:
    """The global manager serves one loop, then another after the first has ended."""
    from langswarm.core.memory import get_global_memory_manager, initialize_memory

    initialize_memory("development")
    memory = get_global_memory_manager()
    session = await memory.create_session("u", "carried")
    await session.add_message(user_message("kept across loops"))
    await memory.close()  # as if the loop ended
    again = await memory.get_session("carried")
    assert again is not None
    assert [m.content for m in await again.get_messages()] == ["kept across loops"]
    await session.add_message(user_message("old handle still works"))
    assert len(await again.get_messages()) == 2


def test_configuration_errors_are_clear() -> None:
    from langswarm.core.memory import initialize_memory

    with pytest.raises(MemoryConfigurationError, match="unknown memory profile"):
        initialize_memory("staging")
    with pytest.raises(MemoryConfigurationError, match="unknown memory backend"):
        initialize_memory(memory={"backend": "postgres"})
    with pytest.raises(MemoryConfigurationError, match="unknown memory option"):
        initialize_memory(memory={"backend": "memory", "turbo": True})
    with pytest.raises(MemoryConfigurationError):
        initialize_memory(memory="memory")  # type: ignore[arg-type]
    with pytest.raises(MemoryConfigurationError, match="durability"):
        initialize_memory(memory={"backend": "memory", "durability": "eventually"})


def test_initialize_memory_starts_no_task() -> None:
    from langswarm.core.memory import initialize_memory

    manager = initialize_memory("development")
    assert isinstance(manager, MemoryManager)
    assert manager._runtime is None
