"""``LangswarmSession`` keeps the Agents SDK's ``Session`` contract on every backend.

What the SDK's own session stores are tested for (its SQLite, async SQLite, Redis and
SQLAlchemy suites), checked here on langswarm memory, SQLite and Redis, under asyncio and
trio (the session itself needs no asyncio; only the SDK's Runner does, see
test_agents_runner.py): items come back exactly as added, newest-first limits, LIFO pops down
to ``None``, clearing, isolation between sessions, ``session_settings``, concurrent writers
and poppers, all-or-nothing batches, cancelled calls, and a closed session refusing calls.
"""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
import trio
from agents.memory import Session, SessionSettings

from langswarm.core.memory import MemoryManager, create_openai_message
from langswarm.core.memory.agents_sdk import DEFAULT_USER_ID, LangswarmSession
from langswarm.core.memory.exceptions import MemoryValidationError, SessionOwnershipError
from tests.adapters.conftest import Factory

pytestmark = pytest.mark.anyio

TRICKY_TEXTS = [
    "こんにちは 😊👍 Привет",
    'O\'Reilly said "hi"; DROP TABLE agent_messages;--',
    '{"role": "system", "content": "not really"}',
    "back\\slash \u0000 nul, tab\t, newline\n, and a lone \ud7ff",
    "",
]

#: One of each kind of item a Runner stores: input messages, model output, tool traffic.
ITEMS: list[Any] = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "developer", "content": [{"type": "input_text", "text": "be brief"}]},
    {
        "id": "rs_1",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "look it up"}],
        "encrypted_content": "gAAAA...",
    },
    {
        "arguments": '{"city": "Paris"}',
        "call_id": "call_1",
        "name": "get_weather",
        "type": "function_call",
        "id": "fc_1",
        "status": "completed",
    },
    {"call_id": "call_1", "output": "sunny, 24 C", "type": "function_call_output"},
    {
        "id": "msg_1",
        "content": [{"annotations": [], "text": "Sunny.", "type": "output_text", "logprobs": []}],
        "role": "assistant",
        "status": "completed",
        "type": "message",
    },
]


def texts(n: int, prefix: str = "m") -> list[Any]:
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"{prefix}{i}"} for i in range(n)
    ]


def contents(items: list[Any]) -> list[Any]:
    return [item.get("content") for item in items]


async def test_items_come_back_exactly_as_added(memory: MemoryManager) -> None:
    session = LangswarmSession("exact", manager=memory)
    tricky: list[Any] = [{"role": "user", "content": text} for text in TRICKY_TEXTS]
    await session.add_items(ITEMS)
    await session.add_items(tricky)
    got = await session.get_items()
    assert got == ITEMS + tricky
    # Same JSON text, so key order too.
    assert json.dumps(got) == json.dumps(ITEMS + tricky)
    assert isinstance(session, Session)


async def test_history_outlives_the_manager(make_memory: Factory) -> None:
    async with make_memory() as first:
        await LangswarmSession("kept", manager=first).add_items(ITEMS)
    async with make_memory() as second:
        assert await LangswarmSession("kept", manager=second).get_items() == ITEMS


async def test_an_unknown_session_is_empty_and_is_not_created(memory: MemoryManager) -> None:
    session = LangswarmSession("never-written", manager=memory)
    assert await session.get_items() == []
    assert await session.get_items(limit=3) == []
    assert await session.pop_item() is None
    await session.clear_session()
    await session.add_items([])
    assert await memory.get_session("never-written") is None


async def test_limit_gives_the_newest_items_oldest_first(memory: MemoryManager) -> None:
    session = LangswarmSession("limits", manager=memory)
    items = texts(6)
    await session.add_items(items)
    assert await session.get_items() == items
    assert await session.get_items(limit=2) == items[-2:]
    assert await session.get_items(limit=4) == items[-4:]
    assert await session.get_items(limit=10) == items
    assert await session.get_items(limit=0) == []
    assert await session.get_items(limit=-1) == items  # as the SDK's SQLiteSession


async def test_session_settings_give_the_default_limit(memory: MemoryManager) -> None:
    plain = LangswarmSession("settings", manager=memory)
    assert isinstance(plain.session_settings, SessionSettings)
    assert plain.session_settings.limit is None
    items = texts(10)
    await plain.add_items(items)

    limited = LangswarmSession(
        "settings", manager=memory, session_settings=SessionSettings(limit=3)
    )
    assert await limited.get_items() == items[-3:]
    assert await limited.get_items(limit=5) == items[-5:]  # an explicit limit wins
    from_dict = LangswarmSession("settings", manager=memory, session_settings={"limit": 2})
    assert isinstance(from_dict.session_settings, SessionSettings)
    assert await from_dict.get_items() == items[-2:]
    from_dict.session_settings = SessionSettings(limit=1)  # settable, as EncryptedSession does
    assert await from_dict.get_items() == items[-1:]
    with pytest.raises(TypeError):
        LangswarmSession("settings", manager=memory, session_settings={"limitt": 2})


async def test_pop_takes_the_newest_item_until_none_is_left(memory: MemoryManager) -> None:
    session = LangswarmSession("pops", manager=memory)
    await session.add_items(ITEMS)
    for expected in reversed(ITEMS):
        assert await session.pop_item() == expected
    assert await session.pop_item() is None
    assert await session.get_items() == []
    await session.add_items(ITEMS[:1])  # still usable
    assert await session.get_items() == ITEMS[:1]


async def test_pop_and_clear_touch_one_session_only(memory: MemoryManager) -> None:
    one = LangswarmSession("one", manager=memory)
    two = LangswarmSession("two", manager=memory)
    await one.add_items(texts(2, "one-"))
    await two.add_items(texts(3, "two-"))
    assert contents([await two.pop_item()]) == ["two-2"]
    assert contents(await one.get_items()) == ["one-0", "one-1"]
    await one.clear_session()
    assert await one.get_items() == []
    assert contents(await two.get_items()) == ["two-0", "two-1"]


async def test_clear_keeps_the_session_and_its_metadata(memory: MemoryManager) -> None:
    session = LangswarmSession("cleared", manager=memory, user_id="alice")
    await session.add_items(texts(4))
    stored = await memory.get_session("cleared", user_id="alice")
    assert stored is not None
    await stored.update_metadata({"topic": "weather"})
    await session.clear_session()
    assert await session.get_items() == []
    again = await memory.get_session("cleared", user_id="alice")
    assert again is not None and again.metadata.metadata == {"topic": "weather"}
    await session.add_items(texts(1, "after-"))
    assert contents(await session.get_items()) == ["after-0"]


async def test_sessions_belong_to_their_user(memory: MemoryManager) -> None:
    await LangswarmSession("owned", manager=memory, user_id="alice").add_items(texts(1))
    stored = await memory.get_session("owned")
    assert stored is not None and stored.metadata.user_id == "alice"
    with pytest.raises(SessionOwnershipError):
        await LangswarmSession("owned", manager=memory, user_id="bob").get_items()
    with pytest.raises(SessionOwnershipError):
        await LangswarmSession("owned", manager=memory, user_id="bob").add_items(texts(1))
    # Without a user id the session is opened whoever owns it.
    assert contents(await LangswarmSession("owned", manager=memory).get_items()) == ["m0"]
    await LangswarmSession("anonymous", manager=memory).add_items(texts(1))
    anonymous = await memory.get_session("anonymous")
    assert anonymous is not None and anonymous.metadata.user_id == DEFAULT_USER_ID


async def test_concurrent_writers_lose_nothing_and_keep_batches_whole(
    memory: MemoryManager,
) -> None:
    # Two objects for one session id, as two requests of a server would have.
    sessions = [LangswarmSession("busy", manager=memory) for _ in range(2)]
    batches: list[list[Any]] = [
        [{"role": "user", "content": f"b{b}-{i}"} for i in range(3)] for b in range(20)
    ]
    async with anyio.create_task_group() as tg:
        for b, batch in enumerate(batches):
            tg.start_soon(sessions[b % 2].add_items, batch)
    got = contents(await sessions[0].get_items())
    assert sorted(got) == sorted(text for batch in batches for text in contents(batch))
    for start in range(0, len(got), 3):
        prefix = got[start].split("-")[0]
        assert got[start : start + 3] == [f"{prefix}-{i}" for i in range(3)]


async def test_concurrent_pops_hand_out_each_item_once(memory: MemoryManager) -> None:
    items = texts(12)
    await LangswarmSession("popped", manager=memory).add_items(items)
    popped: list[Any] = []

    async def pop(session: LangswarmSession) -> None:
        popped.append(await session.pop_item())

    async with anyio.create_task_group() as tg:
        for _ in range(16):
            tg.start_soon(pop, LangswarmSession("popped", manager=memory))
    assert popped.count(None) == 4
    assert sorted(contents([p for p in popped if p is not None])) == sorted(contents(items))
    assert await LangswarmSession("popped", manager=memory).get_items() == []


async def test_changing_items_outside_does_not_change_the_history(
    memory: MemoryManager,
) -> None:
    session = LangswarmSession("snapshots", manager=memory)
    added = copy.deepcopy(ITEMS)
    await session.add_items(added)
    added[0]["content"] = "changed after adding"
    added[5]["content"][0]["text"] = "changed too"
    read: list[Any] = await session.get_items()
    assert read == ITEMS
    read[3]["arguments"] = "{}"
    read.append({"role": "user", "content": "appended to the list"})
    assert await session.get_items() == ITEMS
    popped: Any = await session.pop_item()
    assert popped is not None
    popped["content"][0]["text"] = "changed after popping"
    await session.add_items([ITEMS[-1]])
    assert await session.get_items() == ITEMS


async def test_a_rejected_batch_stores_nothing(memory: MemoryManager) -> None:
    session = LangswarmSession("rejected", manager=memory)
    await session.add_items(texts(2))
    bad_batches: list[list[Any]] = [
        [{"role": "user", "content": "fine"}, {"role": "user", "content": object()}],
        [{"role": "user", "content": "fine"}, {"__enc__": 1, "payload": {"when": {1, 2}}}],
        [{"role": "user", "content": "fine"}, {1: "not a JSON object"}],
        [{"role": "user", "content": "fine"}, "not an object"],
    ]
    for batch in bad_batches:
        with pytest.raises(MemoryValidationError, match=r"items\[1\]"):
            await session.add_items(batch)
    assert contents(await session.get_items()) == ["m0", "m1"]


async def test_any_json_object_is_kept_verbatim(memory: MemoryManager) -> None:
    """As the SDK's stores do: envelopes, malformed items, shapes newer than our format."""
    envelope: Any = {"__enc__": 1, "v": 1, "kid": "hkdf-v1", "payload": "gAAAAB..."}
    odd: list[Any] = [
        envelope,
        {"id": "message-1", "type": "message", "content": "no role"},
        {"type": "function_call", "name": "no_call_id"},
        {"role": "critic", "content": "a role from the future"},
        {"type": "hologram_call", "call_id": "h1", "frames": [1, 2.5, None, True]},
    ]
    session = LangswarmSession("verbatim", manager=memory)
    batch: list[Any] = [*odd, {"role": "user", "content": "x"}, dict(envelope)]
    await session.add_items(batch)
    assert await session.get_items() == batch
    assert await session.pop_item() == envelope
    assert await session.get_items(limit=2) == [odd[-1], {"role": "user", "content": "x"}]


async def test_messages_written_through_the_memory_api_read_as_items(
    memory: MemoryManager,
) -> None:
    stored = await memory.create_session("carol", "mixed")
    await stored.add_message(create_openai_message("user", "from the memory API"))
    session = LangswarmSession("mixed", manager=memory)
    await session.add_items([{"role": "assistant", "content": "from the SDK"}])
    assert await session.get_items() == [
        {"role": "user", "content": "from the memory API"},
        {"role": "assistant", "content": "from the SDK"},
    ]


async def test_a_deleted_session_is_created_again_on_the_next_write(
    memory: MemoryManager,
) -> None:
    session = LangswarmSession("reborn", manager=memory)
    await session.add_items(texts(3))
    assert await memory.backend.delete_session("reborn")
    assert await session.get_items() == []
    assert await session.pop_item() is None
    await session.add_items(texts(1, "new-"))
    assert contents(await session.get_items()) == ["new-0"]


async def test_a_validated_pop_leaves_the_item_when_the_check_raises(
    memory: MemoryManager,
) -> None:
    session = LangswarmSession("validated", manager=memory)
    await session.add_items(texts(3))
    seen: list[Any] = []

    def refuse(item: Any) -> None:
        seen.append(item)
        raise ValueError("not mine")

    with pytest.raises(ValueError, match="not mine"):
        await session._pop_item_with_validation(refuse)
    assert contents(seen) == ["m2"]
    assert contents(await session.get_items()) == ["m0", "m1", "m2"]
    assert await session._pop_item_with_validation(seen.append) == texts(3)[2]
    assert await session._pop_item_with_validation() == texts(3)[1]
    assert contents(await session.get_items()) == ["m0"]


async def test_a_cancelled_add_stores_its_batch_whole_or_not_at_all(
    memory: MemoryManager,
) -> None:
    session = LangswarmSession("cancelled", manager=memory)
    for steps in range(8):
        batch: list[Any] = [{"role": "user", "content": f"c{steps}-{i}"} for i in range(3)]
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.add_items, batch)
                for _ in range(steps):
                    await anyio.lowlevel.checkpoint()
                scope.cancel()
        got = [c for c in contents(await session.get_items()) if c.startswith(f"c{steps}-")]
        assert got in ([], contents(batch)), steps
    await session.add_items(texts(1, "still-"))
    assert contents(await session.get_items())[-1] == "still-0"


async def test_threads_with_loops_of_their_own_share_the_session(memory: MemoryManager) -> None:
    """Calls from other threads' event loops (``Runner.run_sync`` in a worker thread, a sync
    web handler) go to the loop that runs the manager, concurrently and losing nothing."""
    session = LangswarmSession("threads", manager=memory)

    def in_a_thread(n: int) -> list[Any]:
        batch: list[Any] = [{"role": "user", "content": f"t{n}-{i}"} for i in range(3)]
        asyncio.run(session.add_items(batch))
        return asyncio.run(session.get_items())

    seen: list[list[Any]] = []

    async def worker(n: int) -> None:
        seen.append(await anyio.to_thread.run_sync(in_a_thread, n))

    async with anyio.create_task_group() as tg:
        for n in range(6):
            tg.start_soon(worker, n)
    got = contents(await session.get_items())
    assert sorted(got) == sorted(f"t{n}-{i}" for n in range(6) for i in range(3))
    for start in range(0, len(got), 3):  # each batch whole, in order
        assert got[start : start + 3] == [got[start][:-1] + str(i) for i in range(3)]
    assert all(len(items) >= 3 for items in seen)


def test_threads_with_loops_of_their_own_without_async_with(unentered: Factory) -> None:
    """As the SDK's own concurrent-access test: threads that each run a loop of their own
    (``asyncio.run``, ``trio.run``, as ``Runner.run_sync`` does) share a session of a manager
    nobody entered; the adapter serves them all on one loop, losing nothing."""
    session = LangswarmSession("threads-unentered", manager=unentered())

    def in_a_thread(n: int) -> int:
        batch: list[Any] = [{"role": "user", "content": f"t{n}-{i}"} for i in range(3)]
        if n % 4 == 3:
            trio.run(session.add_items, batch)
            return len(trio.run(session.get_items))
        asyncio.run(session.add_items(batch))
        return len(asyncio.run(session.get_items()))

    with ThreadPoolExecutor(max_workers=6) as pool:
        seen = list(pool.map(in_a_thread, range(12)))
    got = contents(asyncio.run(session.get_items()))
    assert sorted(got) == sorted(f"t{n}-{i}" for n in range(12) for i in range(3))
    for start in range(0, len(got), 3):  # each batch whole, in order
        assert got[start : start + 3] == [got[start][:-1] + str(i) for i in range(3)]
    assert min(seen) >= 3


WRITER = """
import asyncio, json, sys
from langswarm.core.memory import MemoryManager
from langswarm.core.memory.agents_sdk import LangswarmSession
memory = MemoryManager.from_config(memory=json.loads(sys.argv[1]))
session = LangswarmSession("at-exit", manager=memory)
for turn in range(20):
    asyncio.run(session.add_items([{"role": "user", "content": f"m{turn}"}]))
"""


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_buffered_writes_are_stored_when_the_program_exits(
    store: str, request: pytest.FixtureRequest
) -> None:
    """Without ``async with``, the runtime lives on the adapters' home loop until the process
    exits, and is drained then: writes acknowledged before they were stored are not lost."""
    target = "sqlite_path" if store == "sqlite" else "redis_url"
    config = {"db_path" if store == "sqlite" else "url": request.getfixturevalue(target)}
    memory = {"backend": store, "config": config, "durability": "buffered"}
    done = subprocess.run(
        [sys.executable, "-c", WRITER, json.dumps(memory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "failed" not in done.stderr

    async def read() -> list[Any]:
        async with MemoryManager.from_config(memory=memory) as again:
            return await LangswarmSession("at-exit", manager=again).get_items()

    assert contents(asyncio.run(read())) == [f"m{turn}" for turn in range(20)]


async def test_a_closed_session_refuses_every_call(memory: MemoryManager) -> None:
    session = LangswarmSession("closed", manager=memory)
    await session.add_items(texts(1))
    session.close()  # as SQLiteSession.close()
    await session.close()  # as RedisSession.close()
    for call in (
        session.get_items,
        session.pop_item,
        session.clear_session,
        lambda: session.add_items([]),
        lambda: session.add_items(texts(1)),
    ):
        with pytest.raises(RuntimeError, match="closed"):
            await call()
    assert contents(await LangswarmSession("closed", manager=memory).get_items()) == ["m0"]


async def test_the_global_manager_is_used_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from langswarm.core.memory import _manager, initialize_memory

    monkeypatch.setattr(_manager, "_global_manager", None)
    session = LangswarmSession("global")  # built before memory is initialised
    manager = initialize_memory("development")
    try:
        await session.add_items(ITEMS)
        assert session.manager is manager
        assert await LangswarmSession("global").get_items() == ITEMS
    finally:
        await manager.close()
