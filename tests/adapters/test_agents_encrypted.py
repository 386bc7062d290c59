"""The SDK's ``EncryptedSession`` over ``LangswarmSession``, on every backend.

``EncryptedSession`` stores Fernet envelopes (JSON objects that are no Responses items) in
the session it wraps and skips what it cannot read or what has expired. These tests check
that our session carries those envelopes faithfully: round trips, pops through expired and
unreadable envelopes, limits that count readable items, settings delegated to our session,
and the validated pop that leaves an envelope in place when it does not authenticate.
EncryptedSession is plain async code, so it runs under asyncio and trio; the Runner test is
pinned to asyncio, the only loop the Runner supports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from agents import Agent, RunConfig, Runner, SessionSettings
from agents.extensions.memory.encrypt_session import EncryptedSession
from agents.memory import SessionABC
from agents.testing import ScriptedModel, assistant_message
from cryptography.fernet import Fernet, InvalidToken

from langswarm.core.memory import MemoryManager
from langswarm.core.memory.agents_sdk import LangswarmSession

pytestmark = pytest.mark.anyio

KEY = Fernet.generate_key().decode()
ITEMS: list[Any] = [
    {"role": "user", "content": "first"},
    {"role": "assistant", "content": "second"},
    {"role": "user", "content": "third: 你好 👋 Grüße"},
]


def encrypted(store: LangswarmSession, key: str = KEY, ttl: int = 600) -> EncryptedSession:
    # EncryptedSession is annotated with the SDK's SessionABC, though any Session works.
    underlying = cast(SessionABC, store)
    return EncryptedSession(
        session_id=store.session_id, underlying_session=underlying, encryption_key=key, ttl=ttl
    )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Set the time Fernet stamps and checks tokens with (seconds)."""
    now = [1_000]
    monkeypatch.setattr("cryptography.fernet.time.time", lambda: now[0])

    def set_time(value: int) -> None:
        now[0] = value

    return set_time


async def test_items_are_stored_encrypted_and_read_back_plain(memory: MemoryManager) -> None:
    store = LangswarmSession("secret", manager=memory)
    session = encrypted(store)
    await session.add_items(ITEMS)
    assert await session.get_items() == ITEMS
    assert await session.get_items(limit=2) == ITEMS[-2:]
    raw = await store.get_items()
    assert len(raw) == 3 and all(item.get("__enc__") == 1 for item in raw)
    assert "first" not in str(raw)
    # Another object with the same key and id reads it (a restart, say).
    assert await encrypted(LangswarmSession("secret", manager=memory)).get_items() == ITEMS


async def test_pop_and_clear_go_through_the_envelopes(memory: MemoryManager) -> None:
    session = encrypted(LangswarmSession("popped", manager=memory))
    await session.add_items(ITEMS)
    assert await session.pop_item() == ITEMS[2]
    assert await session.get_items() == ITEMS[:2]
    await session.clear_session()
    assert await session.get_items() == []
    assert await session.pop_item() is None


async def test_expired_items_are_skipped_and_drained(
    memory: MemoryManager, clock: Callable[[int], None]
) -> None:
    store = LangswarmSession("expiring", manager=memory)
    session = encrypted(store, ttl=60)
    await session.add_items(ITEMS[:2])
    clock(1_050)
    await session.add_items(ITEMS[2:])
    clock(1_100)  # the first two are 100 s old, the third 50 s
    assert await session.get_items() == ITEMS[2:]
    assert await session.pop_item() == ITEMS[2]
    assert await session.pop_item() is None  # the expired ones are popped and dropped
    assert await store.get_items() == []


async def test_a_raw_string_key_works_too(memory: MemoryManager) -> None:
    session = encrypted(LangswarmSession("raw-key", manager=memory), key="not a fernet key")
    await session.add_items(ITEMS)
    assert await session.get_items() == ITEMS


async def test_limits_count_readable_items_only(memory: MemoryManager) -> None:
    store = LangswarmSession("mixed", manager=memory)
    session = encrypted(store)
    await session.add_items(ITEMS)
    forged: Any = {"__enc__": 1, "v": 1, "kid": "hkdf-v1", "payload": "not-a-token"}
    await store.add_items([forged, forged])
    assert await session.get_items(limit=2) == ITEMS[-2:]
    store.session_settings = SessionSettings(limit=1)
    assert await session.get_items() == ITEMS[-1:]


async def test_settings_and_attributes_come_from_our_session(memory: MemoryManager) -> None:
    store = LangswarmSession("delegated", manager=memory, session_settings={"limit": 2})
    session = encrypted(store)
    assert session.session_settings is store.session_settings
    session.session_settings = SessionSettings(limit=5)
    assert store.session_settings == SessionSettings(limit=5)
    assert session.manager is memory  # EncryptedSession hands unknown attributes on
    await session.add_items(ITEMS)
    assert await session.get_items(limit=1) == ITEMS[-1:]


async def test_an_envelope_that_does_not_authenticate_stays_in_place(
    memory: MemoryManager,
) -> None:
    store = LangswarmSession("wrong-key", manager=memory)
    await encrypted(store).add_items(ITEMS)
    stranger = encrypted(LangswarmSession("wrong-key", manager=memory), key="another key")

    def authenticate(item: Any) -> None:
        stranger.cipher.extract_timestamp(item["payload"].encode())

    # What EncryptedSession asks of the SDK's own SQLite store, on ours.
    with pytest.raises(InvalidToken):
        await store._pop_item_with_validation(authenticate)
    owner = encrypted(store)
    assert await owner.get_items() == ITEMS

    def authentic(item: Any) -> None:
        owner.cipher.extract_timestamp(item["payload"].encode())

    popped = await store._pop_item_with_validation(authentic)
    assert popped is not None and popped.get("__enc__") == 1
    assert await owner.get_items() == ITEMS[:2]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the Runner is asyncio-only
async def test_a_runner_keeps_an_encrypted_conversation(memory: MemoryManager) -> None:
    store = LangswarmSession("runner", manager=memory)
    session = encrypted(store)
    model = ScriptedModel([[assistant_message("Hi!")], [assistant_message("You said hello.")]])
    agent = Agent(name="a", model=model)
    config = RunConfig(tracing_disabled=True)
    await Runner.run(agent, "hello", session=session, run_config=config)
    result = await Runner.run(agent, "what did I say?", session=session, run_config=config)
    assert result.final_output == "You said hello."
    assert model.calls[-1].input[0] == {"role": "user", "content": "hello"}
    assert len(await session.get_items()) == 4
    assert all(item.get("__enc__") == 1 for item in await store.get_items())
