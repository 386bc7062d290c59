"""The public API behaves the same on every backend: memory, SQLite and Redis.

The protocol-level suite is tests/backends/test_conformance.py; this one goes through
``MemoryManager`` (actors, flusher, registry) so that sessions, messages, the summary slot,
listings, stats and cleanup are checked end to end on each storage.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from langswarm.core.memory import (
    MemoryManager,
    MessageRole,
    SessionStatus,
    SummaryType,
    create_openai_message,
)
from langswarm.core.memory.exceptions import (
    SessionExistsError,
    SessionNotFoundError,
    SessionOwnershipError,
)
from tests.helpers import backdate, passivate_all
from tests.store_fixtures import Factory

pytestmark = pytest.mark.anyio


async def test_sessions_are_unique_owned_and_found(memory: MemoryManager) -> None:
    created = await memory.create_session("alice", "s1", max_tokens=900, metadata={"app": "x"})
    with pytest.raises(SessionExistsError):
        await memory.create_session("bob", "s1")
    with pytest.raises(SessionOwnershipError):
        await memory.get_or_create_session("bob", "s1")
    await passivate_all(memory)
    found = await memory.get_session("s1", user_id="alice")
    assert found is not None
    assert found.metadata.max_tokens == 900 and found.metadata.metadata == {"app": "x"}
    assert found.metadata.created_at == created.metadata.created_at
    assert await memory.get_session("nope") is None


async def test_messages_keep_order_and_filters_after_reload(make_memory: Factory) -> None:
    async with make_memory() as memory:
        session = await memory.create_session("u", "chat")
        for i in range(30):
            role = "user" if i % 3 else "assistant"
            await session.add_message(create_openai_message(role, f"m{i}"))
        await session.add_messages(
            [create_openai_message("user", "b1"), create_openai_message("assistant", "b2")]
        )
    async with make_memory() as memory:
        session = await memory.get_session("chat")
        assert session is not None
        everything = await session.get_messages()
        assert [m.content for m in everything] == [f"m{i}" for i in range(30)] + ["b1", "b2"]
        assert all(m.token_count for m in everything)
        users = await session.get_messages(roles=[MessageRole.USER], limit=5)
        assert [m.content for m in users] == [
            m.content for m in everything if m.role is MessageRole.USER
        ][-5:]
        later = await session.get_messages(since=everything[10].timestamp)
        assert later[0].timestamp >= everything[10].timestamp
        context = await session.get_conversation_context(max_tokens=60)
        assert sum(m.token_count or 0 for m in context) <= 60
        assert context == everything[len(everything) - len(context) :]


async def test_metadata_archive_and_delete(memory: MemoryManager) -> None:
    session = await memory.create_session("u", "life")
    await session.add_message(create_openai_message("user", "hello"))
    await session.update_metadata({"max_messages": 50, "stage": "triage"})
    await session.archive_session()
    await passivate_all(memory)
    reloaded = await memory.get_session("life")
    assert reloaded is not None
    meta = reloaded.metadata
    assert meta.status is SessionStatus.ARCHIVED
    assert meta.max_messages == 50 and meta.metadata == {"stage": "triage"}
    assert meta.message_count == 1
    await reloaded.delete_session()
    assert await memory.get_session("life") is None
    with pytest.raises(SessionNotFoundError):
        await reloaded.get_messages()
    assert await memory.backend.list_sessions() == []


async def test_listings_and_stats_agree(memory: MemoryManager) -> None:
    for i in range(6):
        session = await memory.create_session("ann" if i < 4 else "ben", f"s{i}")
        for k in range(i):
            await session.add_message(create_openai_message("user", f"{i}.{k}"))
        if i == 1:
            await session.archive_session()
    ann = await memory.backend.list_sessions(user_id="ann")
    assert {m.session_id for m in ann} == {"s0", "s1", "s2", "s3"}
    assert [m.updated_at for m in ann] == sorted((m.updated_at for m in ann), reverse=True)
    active = await memory.backend.list_sessions(user_id="ann", status=SessionStatus.ACTIVE)
    assert {m.session_id for m in active} == {"s0", "s2", "s3"}
    assert len(await memory.backend.list_sessions(limit=2)) == 2
    usage = await memory.backend.get_usage_stats()
    system = await memory.get_system_stats()
    assert usage["total_sessions"] == system["total_sessions"] == 6
    assert usage["total_messages"] == system["total_messages"] == 15
    assert system["active_sessions"] == 5 and system["archived_sessions"] == 1
    assert system["avg_messages_per_session"] == 2.5


async def test_cleanup_deletes_only_old_sessions(memory: MemoryManager) -> None:
    await memory.create_session("u", "fresh")
    await memory.create_session("u", "old")
    await backdate(memory, "old", days=40)
    assert await memory.cleanup_all_sessions(max_age_days=30) == 1
    remaining = await memory.backend.list_sessions()
    assert [m.session_id for m in remaining] == ["fresh"]
    cutoff = datetime.now() - timedelta(days=30)
    assert all(m.updated_at > cutoff for m in remaining)


async def test_summary_slot_survives_reload(make_memory: Factory) -> None:
    async with make_memory() as memory:
        session = await memory.create_session("u", "sum", auto_summarize_threshold=10)
        for i in range(25):
            await session.add_message(create_openai_message("user", f"Order {1000 + i} for Ada"))
        summaries = await session.get_summaries()
        manual = await session.create_summary(summary_type=SummaryType.MANUAL)
    assert [s.covers_through for s in summaries] == [10, 20]
    async with make_memory() as memory:
        session = await memory.get_session("sum")
        assert session is not None
        assert await session.get_summaries() == [*summaries, manual]
        context = await session.get_conversation_context(max_tokens=4000, include_summaries=True)
        assert context[0].role is MessageRole.SYSTEM and manual.summary_text in str(
            context[0].content
        )
        assert context[1:] == []  # the manual summary covers everything
