"""The runtime on Redis: the public API over a real redis-server, on asyncio and trio.

Backend-level behaviour is in tests/backends/test_redis_backend.py; these tests go through
``MemoryManager`` and check the server with a plain client of their own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import anyio
import pytest
import redis

from langswarm.core.memory import (
    MemoryManager,
    MemorySession,
    Message,
    MessageRole,
    SessionStatus,
    create_openai_message,
    initialize_memory,
)
from langswarm.core.memory.exceptions import (
    MemoryConnectionError,
    MemoryCorruptionError,
    MemoryError,
    MemoryOutcomeUnknownError,
    MemoryValidationError,
    SessionExistsError,
    SessionNotFoundError,
    SessionOwnershipError,
)
from tests.conftest import RedisServer, free_port
from tests.helpers import backdate, passivate_all, user_message

pytestmark = pytest.mark.anyio

PREFIX = "langswarm"


def redis_memory(url: str, config: dict[str, Any] | None = None, **options: Any) -> MemoryManager:
    """A manager over the redis-server at ``url``, built the way the guide configures one."""
    options.setdefault("shutdown_grace", 5)
    return MemoryManager.from_config(
        memory={"backend": "redis", "config": {"url": url, **(config or {})}, **options}
    )


async def raw(url: str, *command: Any) -> Any:
    """One command through a plain client of the test's own, off the event loop."""

    def call() -> Any:
        with redis.Redis.from_url(url) as client:
            return client.execute_command(*command)

    return await anyio.to_thread.run_sync(call)


async def our_keys(url: str) -> list[str]:
    return sorted(k.decode() for k in await raw(url, "KEYS", f"{PREFIX}:*"))


def session_keys(session_id: str) -> list[str]:
    return [f"{PREFIX}:{{{session_id}}}:{part}" for part in ("meta", "msgs", "sums")]


async def contents(session: MemorySession, **filters: Any) -> list[object]:
    return [m.content for m in await session.get_messages(**filters)]


async def eventually(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``condition`` until it holds (callers bound it with ``anyio.fail_after``).

    For Redis key expiry, which happens on the server's clock with nothing to wait on.
    """
    while not await condition():  # noqa: ASYNC110 - no event exists to wait on
        await anyio.sleep(0.05)


async def write_concurrently(
    writes: list[tuple[MemorySession, Message]],
) -> dict[str, BaseException | None]:
    """Make the writes from concurrent tasks (so they share a batch); each one's outcome."""
    outcomes: dict[str, BaseException | None] = {}

    async def write(session: MemorySession, message: Message) -> None:
        try:
            await session.add_message(message)
        except MemoryError as exc:
            outcomes[session.session_id] = exc
        else:
            outcomes[session.session_id] = None

    async with anyio.create_task_group() as tg:
        for session, message in writes:
            tg.start_soon(write, session, message)
    return outcomes


@pytest.fixture
async def memory(redis_url: str) -> AsyncIterator[MemoryManager]:
    """A manager on the shared server; sessions passivate only when a test sweeps."""
    async with redis_memory(redis_url, idle_timeout=0, sweep_interval=3600) as manager:
        yield manager


# -- conformance through the runtime -------------------------------------------------------


async def test_sessions_are_created_found_and_owned(memory: MemoryManager, redis_url: str) -> None:
    created = await memory.create_session("alice", "s1", metadata={"topic": "billing"})
    assert await our_keys(redis_url) == sorted(
        [f"{PREFIX}:{{s1}}:meta", f"{PREFIX}:idx:all", f"{PREFIX}:idx:user:alice"]
    )
    with pytest.raises(SessionExistsError):
        await memory.create_session("bob", "s1")
    with pytest.raises(SessionOwnershipError):
        await memory.get_or_create_session("bob", "s1")
    with pytest.raises(SessionOwnershipError):
        await memory.get_session("s1", user_id="bob")
    assert await memory.get_session("absent") is None

    await passivate_all(memory)
    found = await memory.get_session("s1", user_id="alice")
    assert found is not None and found.metadata == created.metadata
    again = await memory.get_or_create_session("alice", "s1")
    assert again.metadata.metadata == {"topic": "billing"}
    with pytest.raises(SessionExistsError):
        await memory.create_session("alice", "s1")

    default = await memory.get_or_create_session("carol")
    assert default.session_id == "default:carol"
    generated = await memory.create_session("carol")
    assert generated.session_id != default.session_id
    listed = await memory.backend.list_sessions(user_id="carol")
    assert sorted(m.session_id for m in listed) == sorted(
        [default.session_id, generated.session_id]
    )


async def test_messages_persist_in_order_across_managers(redis_url: str) -> None:
    async with redis_memory(redis_url) as memory:
        sessions = [await memory.create_session(f"user{i % 5}", f"s{i}") for i in range(20)]

        async def writer(i: int) -> None:
            for k in range(30):
                await sessions[i].add_message(user_message(f"{i}:{k}"))

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(writer, i)
        for i in range(20):
            assert await raw(redis_url, "LLEN", f"{PREFIX}:{{s{i}}}:msgs") == 30

    async with redis_memory(redis_url) as memory:
        for i in range(20):
            session = await memory.get_session(f"s{i}", user_id=f"user{i % 5}")
            assert session is not None
            assert await contents(session) == [f"{i}:{k}" for k in range(30)]
            assert session.metadata.message_count == 30
        stats = await memory.backend.get_usage_stats()
        assert (stats["total_sessions"], stats["total_messages"]) == (20, 600)


async def test_backend_reads_see_every_earlier_buffered_write(redis_url: str) -> None:
    """``memory.backend.*`` reads are read-your-writes, also while a batch is in flight."""
    async with redis_memory(redis_url, durability="buffered") as memory:
        sessions = [await memory.create_session("u", f"s{i}") for i in range(100)]

        async def writer(session: MemorySession) -> None:
            for k in range(5):
                await session.add_message(user_message(f"{session.session_id}:{k}"))

        async with anyio.create_task_group() as tg:
            for session in sessions:
                tg.start_soon(writer, session)
        usage = await memory.backend.get_usage_stats()
        assert (usage["total_sessions"], usage["total_messages"]) == (100, 500)
        assert (await memory.get_system_stats())["total_messages"] == 500


async def test_get_messages_filters_page_from_redis(redis_url: str) -> None:
    async with redis_memory(redis_url, tail_size=4, idle_timeout=0, sweep_interval=3600) as memory:
        session = await memory.create_session("u", "s")
        start = datetime.now() - timedelta(minutes=20)
        for i in range(20):
            role = "user" if i % 2 == 0 else "assistant"
            message = create_openai_message(role, f"m{i}", timestamp=start + timedelta(minutes=i))
            await session.add_message(message)
        await passivate_all(memory)
        reloaded = await memory.get_session("s")
        assert reloaded is not None

        everything = [f"m{i}" for i in range(20)]
        assert await contents(reloaded) == everything
        assert await contents(reloaded, limit=3) == everything[-3:]
        assert await contents(reloaded, limit=12) == everything[-12:]
        assert await contents(reloaded, since=start + timedelta(minutes=5)) == everything[5:]
        assert await contents(reloaded, roles=["assistant"]) == everything[1::2]
        assert await contents(
            reloaded, roles=[MessageRole.USER], since=start + timedelta(minutes=9), limit=3
        ) == ["m14", "m16", "m18"]
        loaded = await reloaded.get_messages()
        assert all(m.token_count for m in loaded)
        assert [m.role for m in loaded[:2]] == [MessageRole.USER, MessageRole.ASSISTANT]


async def test_context_budget_pages_from_redis_and_keeps_tool_pairs(redis_url: str) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Lisbon"}'},
    }
    async with redis_memory(redis_url, tail_size=3, idle_timeout=0, sweep_interval=3600) as memory:
        session = await memory.create_session("u", "ctx")
        for i in range(12):
            await session.add_message(user_message(f"question {i} " + "word " * i))
        await session.add_message(create_openai_message("assistant", tool_calls=[call]))
        await session.add_message(create_openai_message("tool", "22 C", tool_call_id="call_1"))
        for i in range(3):
            await session.add_message(create_openai_message("assistant", f"answer {i}"))
        await passivate_all(memory)
        reloaded = await memory.get_session("ctx")
        assert reloaded is not None
        stored = await reloaded.get_messages()
        costs = [m.token_count or 0 for m in stored]

        for budget in (10, 60, 150, 400, sum(costs)):
            window = await reloaded.get_conversation_context(max_tokens=budget)
            assert window == stored[len(stored) - len(window) :]
            assert sum(m.token_count or 0 for m in window) <= budget
            assert not window or window[0].role is not MessageRole.TOOL
            if len(window) < len(stored):
                k = len(stored) - len(window) - 1
                while stored[k].role is MessageRole.TOOL:  # a result goes with its call
                    k -= 1
                assert sum(costs[k:]) > budget

        # A budget that would start at the tool result drops the pair rather than split it.
        result_at = next(i for i, m in enumerate(stored) if m.role is MessageRole.TOOL)
        window = await reloaded.get_conversation_context(max_tokens=sum(costs[result_at:]))
        assert window == stored[result_at + 1 :]
        window = await reloaded.get_conversation_context(max_tokens=sum(costs[result_at - 1 :]))
        assert window == stored[result_at - 1 :]
        assert await reloaded.get_recent_messages(sum(costs[-2:])) == stored[-2:]


async def test_metadata_archive_and_delete(memory: MemoryManager, redis_url: str) -> None:
    session = await memory.create_session("u", "life", max_tokens=100)
    await session.add_message(user_message("hello"))
    await session.update_metadata({"stage": "review", "max_tokens": 2000})
    await session.archive_session()
    with pytest.raises(MemoryValidationError):
        await session.add_message(user_message("too late"))

    await passivate_all(memory)
    stored = await memory.get_session("life")
    assert stored is not None
    meta = stored.metadata
    assert (meta.status, meta.max_tokens, meta.metadata) == (
        SessionStatus.ARCHIVED,
        2000,
        {"stage": "review"},
    )
    assert await contents(stored) == ["hello"]
    archived = await memory.backend.list_sessions(status="archived")
    assert [m.session_id for m in archived] == ["life"]
    assert await memory.backend.list_sessions(status="active") == []

    await stored.delete_session()
    assert await our_keys(redis_url) == []
    with pytest.raises(SessionNotFoundError):
        await session.get_messages()
    assert await memory.get_session("life") is None
    other = await memory.create_session("u", "other")
    await other.add_message(user_message("x"))
    assert await memory.backend.delete_session("other") is True
    assert await memory.backend.delete_session("other") is False
    assert await our_keys(redis_url) == []


async def test_listings_and_stats_agree(memory: MemoryManager) -> None:
    for i in range(6):
        session = await memory.create_session(f"user{i % 2}", f"s{i}")
        await session.add_messages([user_message(f"{i}-{k}") for k in range(i + 1)])
        if i == 5:
            await session.archive_session()
    await passivate_all(memory)
    await (await memory.get_or_create_session("user0", "s0")).add_message(user_message("late"))

    listed = await memory.backend.list_sessions(limit=None)
    assert listed[0].session_id == "s0"  # most recently updated first
    assert sorted(m.session_id for m in listed) == [f"s{i}" for i in range(6)]
    assert [m.session_id for m in await memory.backend.list_sessions(limit=2)] == ["s0", "s5"]
    user1 = await memory.backend.list_sessions(user_id="user1")
    assert sorted(m.session_id for m in user1) == ["s1", "s3", "s5"]
    assert await memory.backend.list_sessions(user_id="nobody") == []

    usage = await memory.backend.get_usage_stats()
    assert (usage["total_sessions"], usage["total_messages"]) == (6, 22)
    assert usage["storage_size_mb"] > 0
    system = await memory.get_system_stats()
    assert system["backend"] == "redis"
    assert system["durability"] == "committed"
    assert (system["total_sessions"], system["total_messages"]) == (6, 22)
    assert (system["active_sessions"], system["archived_sessions"]) == (5, 1)
    assert system["live_sessions"] == 1
    assert system["flusher"]["pending"] == 0 and system["flusher"]["last_error"] is None


async def test_cleanup_all_sessions(memory: MemoryManager, redis_url: str) -> None:
    for name in ("old1", "old2", "fresh"):
        session = await memory.create_session("u", name)
        await session.add_message(user_message(name))
    await backdate(memory, "old1", days=40)
    await backdate(memory, "old2", days=31)

    assert await memory.cleanup_all_sessions(max_age_days=30) == 2
    assert [m.session_id for m in await memory.backend.list_sessions()] == ["fresh"]
    assert await raw(redis_url, "EXISTS", *session_keys("old1"), *session_keys("old2")) == 0
    assert await memory.cleanup_all_sessions(max_age_days=30) == 0
    assert (await memory.get_system_stats())["total_sessions"] == 1


async def test_summaries_survive_passivation(memory: MemoryManager, redis_url: str) -> None:
    session = await memory.create_session("u", "sum")
    for i in range(8):
        await session.add_message(user_message(f"fact {i}: the locker code is {4000 + i}"))
    summary = await session.create_summary()
    assert summary.covers_through == 8
    assert await raw(redis_url, "HLEN", f"{PREFIX}:{{sum}}:sums") == 1
    await session.add_message(user_message("after the summary"))

    await passivate_all(memory)
    assert await session.get_summaries() == [summary]  # the old handle reactivates it
    context = await session.get_conversation_context(include_summaries=True)
    assert context[0].role is MessageRole.SYSTEM
    assert summary.summary_text in str(context[0].content)
    assert [m.content for m in context[1:]] == ["after the summary"]
    assert (await memory.backend.get_usage_stats())["total_summaries"] == 1


# -- TTL -------------------------------------------------------------------------------------


async def test_ttl_expires_the_session_and_every_key(redis_url: str) -> None:
    async with redis_memory(redis_url, {"ttl_seconds": 1}, sweep_interval=0.05) as memory:
        session = await memory.create_session("u", "brief")
        await session.add_messages([user_message(f"m{i}") for i in range(5)])
        await session.create_summary()
        assert len(await our_keys(redis_url)) == 6  # meta, msgs, ids, sums and both indexes
        for key in session_keys("brief"):
            assert 0 < await raw(redis_url, "PTTL", key) <= 1000

        async def expired() -> bool:
            if await raw(redis_url, "EXISTS", *session_keys("brief")):
                return False
            return bool((await memory.get_system_stats())["live_sessions"] == 0)

        with anyio.fail_after(5):
            await eventually(expired)

        assert await memory.backend.list_sessions() == []
        assert await memory.backend.list_sessions(user_id="u") == []
        usage = await memory.backend.get_usage_stats()
        assert (usage["total_sessions"], usage["total_messages"], usage["total_summaries"]) == (
            0,
            0,
            0,
        )
        system = await memory.get_system_stats()
        assert (system["total_sessions"], system["total_messages"]) == (0, 0)
        assert (system["live_sessions"], system["expired_sessions"]) == (0, 1)
        assert await our_keys(redis_url) == []  # no ghost index entries either
        assert await memory.get_session("brief") is None
        with pytest.raises(SessionNotFoundError):
            await session.get_messages()
        with pytest.raises(SessionNotFoundError):
            await session.add_message(user_message("back from the dead?"))
        assert await our_keys(redis_url) == []


async def test_a_write_after_redis_expired_the_keys_does_not_resurrect_the_session(
    redis_url: str,
) -> None:
    """Redis may drop a session's keys before the runtime's sweep sees it expire (here the
    sweep never runs, to hold that window open): a write in between must not store a
    session whose metadata counts messages that are gone."""
    async with redis_memory(redis_url, {"ttl_seconds": 1}, sweep_interval=3600) as memory:
        session = await memory.create_session("u", "brief")
        await session.add_messages([user_message(f"m{i}") for i in range(5)])

        async def keys_gone() -> bool:
            return bool(await raw(redis_url, "EXISTS", *session_keys("brief")) == 0)

        with anyio.fail_after(5):
            await eventually(keys_gone)

        with pytest.raises(SessionNotFoundError):
            await session.add_message(user_message("late"))
        assert await raw(redis_url, "EXISTS", *session_keys("brief")) == 0
        assert await memory.get_session("brief") is None


# -- restarts --------------------------------------------------------------------------------


class Load:
    """Committed writers on many sessions, recording what was acknowledged and what failed."""

    def __init__(self, sessions: list[MemorySession], writers_per_session: int) -> None:
        self.sessions = sessions
        self.names = [f"{s.session_id}/w{w}" for s in sessions for w in range(writers_per_session)]
        self.acked: dict[str, list[str]] = {name: [] for name in self.names}
        self.errors: list[BaseException] = []
        self.acks = 0
        self.warm = anyio.Event()
        self.restarted = anyio.Event()

    async def writer(self, session: MemorySession, name: str, warm_after: int) -> None:
        after_restart = 0
        k = 0
        while after_restart < 5:
            text = f"{name}:{k}"
            k += 1
            try:
                await session.add_message(user_message(text))
            except MemoryError as exc:
                self.errors.append(exc)
                if not isinstance(exc, MemoryConnectionError | MemoryOutcomeUnknownError):
                    return
            else:
                self.acked[name].append(text)
                self.acks += 1
                if self.acks == warm_after:
                    self.warm.set()
            if self.restarted.is_set():
                after_restart += 1

    async def run(self, server: RedisServer, warm_after: int) -> None:
        """Write until ``warm_after`` acks, SIGKILL the server, restart it 1 s later."""
        per_session = len(self.names) // len(self.sessions)
        async with anyio.create_task_group() as tg:
            for i, name in enumerate(self.names):
                tg.start_soon(self.writer, self.sessions[i // per_session], name, warm_after)
            await self.warm.wait()
            await anyio.to_thread.run_sync(server.kill)
            await anyio.sleep(1)  # the outage itself, not synchronisation
            await anyio.to_thread.run_sync(server.start)
            self.restarted.set()

    def check_stored(self, session_id: str, stored: list[object]) -> None:
        """Every acknowledged message exactly once, each writer's in its order."""
        assert len(stored) == len(set(stored)), f"{session_id}: duplicates"
        position = {text: i for i, text in enumerate(stored)}
        for name in self.names:
            if name.startswith(f"{session_id}/"):
                acked = self.acked[name]
                lost = [text for text in acked if text not in position]
                assert not lost, f"acknowledged, not stored: {lost}; stored: {stored}"
                assert [position[t] for t in acked] == sorted(position[t] for t in acked)


async def survive_restart(server: RedisServer, budget: float, *, callers_fail: bool) -> None:
    """50 sessions under committed load through a SIGKILL and restart of their server."""
    with anyio.fail_after(90):
        async with redis_memory(server.url, retry_budget=budget) as memory:
            sessions = [await memory.create_session(f"u{i % 7}", f"s{i}") for i in range(50)]
            load = Load(sessions, writers_per_session=2)
            await load.run(server, warm_after=1_000)

            # Callers waiting through the outage succeeded, or were told their write was not
            # stored (the server was unreachable) or may have been (it died under it).
            kinds = {type(e).__name__ for e in load.errors}
            if callers_fail:
                assert kinds and kinds <= {"MemoryConnectionError", "MemoryOutcomeUnknownError"}
            else:
                assert kinds == set()

            # The runtime keeps working: every session takes new writes and reads back what
            # was acknowledged.
            for session in sessions:
                await session.add_message(user_message(f"{session.session_id}:after"))
                stored = await contents(session)
                load.check_stored(session.session_id, stored)
                assert stored[-1] == f"{session.session_id}:after"

        async with redis_memory(server.url) as memory:
            total = 0
            for i in range(50):
                reopened = await memory.get_session(f"s{i}")
                assert reopened is not None
                stored = await contents(reopened)
                load.check_stored(f"s{i}", stored)
                assert reopened.metadata.message_count == len(stored)
                total += len(stored)
            assert (await memory.get_system_stats())["total_messages"] == total


async def test_restart_within_the_retry_budget_loses_nothing(
    durable_server: RedisServer,
) -> None:
    await survive_restart(durable_server, budget=15, callers_fail=False)


@pytest.mark.parametrize("budget", [0.3, 0.8])
async def test_restart_beyond_the_retry_budget_fails_callers_cleanly(
    durable_server: RedisServer, budget: float
) -> None:
    """0.3 s runs out while the server is still down; 0.8 s fails the batch in flight at
    the kill, and the retries after it meet the restarted server."""
    await survive_restart(durable_server, budget=budget, callers_fail=True)


async def test_a_session_works_again_once_its_server_is_back(
    durable_server: RedisServer,
) -> None:
    async with redis_memory(durable_server.url, retry_budget=0.5) as memory:
        session = await memory.create_session("u", "s")
        await session.add_message(user_message("before"))
        await anyio.to_thread.run_sync(durable_server.kill)
        started = time.monotonic()
        with pytest.raises(MemoryConnectionError):
            await session.add_message(user_message("during"))
        with pytest.raises(MemoryConnectionError):
            await memory.backend.list_sessions()
        assert time.monotonic() - started < 5
        await anyio.to_thread.run_sync(durable_server.start)

        await session.add_message(user_message("after"))
        assert await contents(session) == ["before", "after"]


async def test_the_runtime_retry_budget_bounds_a_redis_outage(
    durable_server: RedisServer,
) -> None:
    """``retry_budget`` is a documented runtime option; on Redis it must bound the wait too."""
    async with redis_memory(durable_server.url, retry_budget=0.5) as memory:
        session = await memory.create_session("u", "s")
        await anyio.to_thread.run_sync(durable_server.kill)
        started = time.monotonic()
        with anyio.fail_after(30), pytest.raises(MemoryConnectionError):
            await session.add_message(user_message("during"))
        waited = time.monotonic() - started
        await anyio.to_thread.run_sync(durable_server.start)
    assert waited < 3, f"a 0.5 s retry budget waited {waited:.1f} s"


# -- bad data --------------------------------------------------------------------------------


async def test_wrong_key_type_fails_that_session_only(
    memory: MemoryManager, redis_url: str
) -> None:
    for name in ("good", "bad", "live"):
        session = await memory.create_session("u", name)
        await session.add_message(user_message(f"{name} 0"))
    await passivate_all(memory)
    await raw(redis_url, "DEL", f"{PREFIX}:{{bad}}:msgs")
    await raw(redis_url, "SADD", f"{PREFIX}:{{bad}}:msgs", "not a list")

    with pytest.raises(MemoryCorruptionError, match="bad"):
        await memory.get_session("bad")
    with pytest.raises(MemoryCorruptionError, match="bad"):
        await memory.get_or_create_session("u", "bad")

    # A live session whose keys get clobbered: its next write fails, alone.
    live = await memory.get_session("live")
    good = await memory.get_session("good")
    assert live is not None and good is not None
    await raw(redis_url, "DEL", f"{PREFIX}:{{live}}:sums")
    await raw(redis_url, "SET", f"{PREFIX}:{{live}}:sums", "foreign")
    outcomes = await write_concurrently(
        [(live, user_message("live 1")), (good, user_message("good 1"))]
    )
    assert outcomes["good"] is None
    assert isinstance(outcomes["live"], MemoryCorruptionError)
    assert "live" in str(outcomes["live"])
    assert await contents(good) == ["good 0", "good 1"]

    fresh = await memory.create_session("u", "fresh")
    await fresh.add_message(user_message("fine"))
    assert await contents(fresh) == ["fine"]
    listed = sorted(m.session_id for m in await memory.backend.list_sessions())
    assert listed == ["bad", "fresh", "good", "live"]
    stats = await memory.get_system_stats()
    assert stats["total_sessions"] == 4  # counted from the metadata, which is intact


async def test_corrupt_msgpack_fails_that_session_only(redis_url: str) -> None:
    async with redis_memory(redis_url, tail_size=2, idle_timeout=0, sweep_interval=3600) as memory:
        for name in ("good", "torn", "garbled"):
            session = await memory.create_session("u", name)
            for i in range(6):  # one commit each, so the live tail keeps only the newest
                await session.add_message(user_message(f"{name} {i}"))
        torn = await memory.get_session("torn")
        assert torn is not None
        await raw(redis_url, "LSET", f"{PREFIX}:{{torn}}:msgs", 1, b"\xc1junk")

        # Live, the newest messages come from memory; older ones are paged from Redis.
        assert await contents(torn, limit=2) == ["torn 4", "torn 5"]
        with pytest.raises(MemoryCorruptionError, match="torn"):
            await torn.get_messages()
        with pytest.raises(MemoryCorruptionError, match="torn"):
            await torn.get_conversation_context(max_tokens=10_000)

        await passivate_all(memory)
        await raw(redis_url, "LSET", f"{PREFIX}:{{torn}}:msgs", -1, b"\x92\x01")
        await raw(redis_url, "HSET", f"{PREFIX}:{{garbled}}:meta", "st", b"\x93\xa3bad")
        for name in ("torn", "garbled"):
            with pytest.raises(MemoryCorruptionError, match=name):
                await memory.get_session(name)
            with pytest.raises(MemoryCorruptionError, match=name):
                await memory.get_or_create_session("u", name)

        good = await memory.get_session("good")
        assert good is not None
        await good.add_message(user_message("good 6"))
        assert await contents(good) == [f"good {i}" for i in range(7)]
        usage = await memory.backend.get_usage_stats()
        assert (usage["total_sessions"], usage["corrupt_sessions"]) == (2, 1)
        listed = [m.session_id for m in await memory.backend.list_sessions()]
        assert sorted(listed) == ["good", "torn"]

        # Deleting is how an operator clears a corrupt session; its id is usable again.
        assert await memory.backend.delete_session("garbled") is True
        renewed = await memory.create_session("u", "garbled")
        await renewed.add_message(user_message("new life"))
        assert await contents(renewed) == ["new life"]


async def test_a_failed_write_is_never_read_back(memory: MemoryManager, redis_url: str) -> None:
    """A reader after a failed write sees what is stored, or an error; never the message
    whose writer was told it failed."""
    session = await memory.create_session("u", "s")
    other = await memory.create_session("u", "other")
    await session.add_message(user_message("stored"))
    await raw(redis_url, "SET", f"{PREFIX}:{{s}}:sums", "foreign")

    outcomes = await write_concurrently(
        [(session, user_message("refused")), (other, user_message("accepted"))]
    )
    assert isinstance(outcomes["s"], MemoryCorruptionError) and outcomes["other"] is None
    try:
        seen = await contents(session)
    except MemoryError:
        return
    assert "refused" not in seen


async def test_a_message_that_cannot_be_stored_fails_alone(memory: MemoryManager) -> None:
    """Data msgpack cannot store is refused when the message is built, before any batch."""
    odd = await memory.create_session("u", "odd")
    fine = await memory.create_session("u", "fine")
    with pytest.raises(MemoryValidationError):
        Message(role=MessageRole.USER, content="hi", metadata={"handle": object()})
    with pytest.raises(MemoryValidationError):
        Message(role=MessageRole.USER, content=[{"type": "text", "text": object()}])

    outcomes = await write_concurrently([(odd, user_message("odd")), (fine, user_message("fine"))])
    assert outcomes == {"odd": None, "fine": None}
    assert await contents(fine) == ["fine"]
    assert await contents(odd) == ["odd"]


# -- connection issues -----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["unresolvable", "refusing"])
async def test_unreachable_redis_fails_fast_and_the_guide_fallback_works(where: str) -> None:
    config: dict[str, Any] = (
        {"host": "unreachable-host"}
        if where == "unresolvable"
        else {"host": "127.0.0.1", "port": free_port()}
    )
    started = time.monotonic()
    fell_back = False
    try:
        initialize_memory(memory={"backend": "redis", "config": config})
    except MemoryConnectionError:
        initialize_memory("development")
        fell_back = True
    assert fell_back
    assert time.monotonic() - started <= 2.5

    from langswarm.core.memory import MemorySessionContext

    async with MemorySessionContext(user_id="user123") as session:
        await session.add_message(create_openai_message("user", "Hello"))
        assert await contents(session) == ["Hello"]
