"""The bad inputs issue 13 reported, each on every backend, event loop and durability mode.

Each passed ``Message`` (or the manager's own checks) and then broke a backend: the batch
failed, so another user's write in it failed too, the caller got a backend error rather than
a validation error, a buffered write was acknowledged and then dropped, or the session could
no longer be read. Now each must be refused with ``MemoryValidationError`` naming the field
(or, for timestamps, stored and read back exactly), beside a canary write of another user
that commits, storing nothing; every session reads back after reopening.

The end of the module holds bugs the property suites found.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

import pytest

from langswarm.core.memory import MemorySession, Message, MessageRole
from langswarm.core.memory.exceptions import SessionOwnershipError
from tests.fuzz._compare import SETTING_KEYS, Expected, Wrote, assert_messages
from tests.fuzz._support import Outcome, Store, World, attempt

pytestmark = pytest.mark.anyio

LONE = "\ud800"
TIMESTAMPS = {
    "year-1": datetime(1, 1, 1),
    "end-of-9999": datetime(9999, 12, 31, 23, 59, 59, 999999),
    "microsecond-in-2300": datetime(2300, 1, 1, 0, 0, 0, 1),
    "aware": datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=5))),
}
BAD_KEYS: dict[str, dict[Any, Any]] = {
    "tuple-key": {(1, 2): "x"},
    "none-key": {None: "x"},
    "nested-int-key": {"ok": {1: "x"}},
    "nested-tuple-key": {"ok": [{("a",): "x"}]},
}


@pytest.fixture(params=["committed", "buffered"])
async def world(request: pytest.FixtureRequest, store: Store) -> AsyncIterator[World]:
    """A writer (and a reader) on ``store`` with a canary of its own user."""
    opened = World(store, str(request.param))
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


async def fresh_session(world: World) -> tuple[str, str, MemorySession]:
    n = world.number()
    user, sid = f"user~{n}", f"chat~{n}"
    session = await world.writer.create_session(user, sid)
    world.sessions[sid] = Expected(user)
    return user, sid, session


def assert_refused(outcome: Outcome[Any], field: str) -> None:
    """Refused with ``MemoryValidationError``, and the error says which field is wrong."""
    assert outcome.refused(), f"accepted: {outcome.value!r}"
    assert field in str(outcome.error), f"the error does not name {field!r}: {outcome.error}"


async def refuse_message(world: World, field: str, **fields: Any) -> None:
    """``Message(**fields)`` added beside the canary is refused naming ``field``; the session
    stays empty and readable, here and after reopening."""
    _, sid, session = await fresh_session(world)

    async def add() -> Message:
        return await session.add_message(Message(**fields))

    assert_refused(await world.beside_canary(add), field)
    await world.check_session(session, sid, world.sessions[sid])
    await world.verify_reopened()


async def refuse_beside_canary(
    world: World, field: str, call: Callable[[], Awaitable[object]], *, user: str, sid: str
) -> None:
    """``call`` is refused naming ``field`` and leaves nothing behind for ``user``/``sid``."""
    assert_refused(await world.beside_canary(call), field)
    await world.check_nothing_stored(user, sid)
    await world.verify_reopened()


# -- message shapes that passed Message() and broke a backend ------------------------------


async def test_content_list_of_ints_is_refused(world: World) -> None:
    await refuse_message(world, "content", role="user", content=[1, 2, 3])


async def test_name_that_is_no_string_is_refused(world: World) -> None:
    await refuse_message(world, "name", role="function", content="42", name=1)


async def test_tool_call_id_that_is_no_string_is_refused(world: World) -> None:
    await refuse_message(world, "tool_call_id", role="tool", content="42", tool_call_id=1)


async def test_function_call_that_is_no_dict_is_refused(world: World) -> None:
    await refuse_message(world, "function_call", role="assistant", function_call="x")


async def test_tool_calls_of_no_dicts_are_refused(world: World) -> None:
    await refuse_message(world, "tool_calls", role="assistant", tool_calls=[1])


async def test_lone_surrogate_in_content_is_refused(world: World) -> None:
    await refuse_message(world, "content", role="user", content=f"hi {LONE}")


async def test_token_count_past_64_bits_is_refused(world: World) -> None:
    await refuse_message(world, "token_count", role="user", content="hi", token_count=2**70)


async def kept_exactly_or_refused(world: World, field: str, **fields: Any) -> None:
    """``Message(**fields)`` added beside the canary is stored and read back as the handle
    returned it (another form of the same instant is fine, if live and stored views agree),
    or refused naming ``field``; every session reads back after reopening."""
    _, sid, session = await fresh_session(world)
    wrote: list[Wrote] = []

    async def add() -> Message:
        message = Message(**fields)
        wrote.append(Wrote.of(message))
        return await session.add_message(message)

    outcome = await world.beside_canary(add)
    if outcome.refused():
        assert field in str(outcome.error), outcome.error
    else:
        assert_messages([outcome.result()], wrote, "returned", instant=True)
        world.sessions[sid].messages.append(Wrote.of(outcome.result()))
    await world.check_session(session, sid, world.sessions[sid])
    await world.verify_reopened()


@pytest.mark.parametrize("stamp", TIMESTAMPS.values(), ids=TIMESTAMPS.keys())
async def test_timestamps_round_trip_or_are_refused(world: World, stamp: datetime) -> None:
    await kept_exactly_or_refused(world, "timestamp", role="user", content="hi", timestamp=stamp)


# -- metadata with keys that are no strings -------------------------------------------------


@pytest.mark.parametrize("bad", BAD_KEYS.values(), ids=BAD_KEYS.keys())
async def test_session_metadata_with_bad_keys_is_refused(world: World, bad: dict[Any, Any]) -> None:
    n = world.number()
    user, sid = f"user~{n}", f"chat~{n}"
    call = partial(world.writer.create_session, user, sid, metadata=bad)
    await refuse_beside_canary(world, "metadata", call, user=user, sid=sid)


@pytest.mark.parametrize("bad", BAD_KEYS.values(), ids=BAD_KEYS.keys())
async def test_message_metadata_with_bad_keys_is_refused(world: World, bad: dict[Any, Any]) -> None:
    await refuse_message(world, "metadata", role="user", content="hi", metadata=bad)


@pytest.mark.parametrize("bad", BAD_KEYS.values(), ids=BAD_KEYS.keys())
async def test_metadata_update_with_bad_keys_is_refused(world: World, bad: dict[Any, Any]) -> None:
    _, sid, session = await fresh_session(world)
    assert_refused(await world.beside_canary(lambda: session.update_metadata(bad)), "metadata")
    await world.check_session(session, sid, world.sessions[sid])
    await world.verify_reopened()


@pytest.mark.parametrize("argument", ["x", [1]], ids=["str", "list"])
async def test_metadata_update_that_is_no_dict_is_refused(world: World, argument: object) -> None:
    _, sid, session = await fresh_session(world)
    outcome = await world.beside_canary(lambda: session.update_metadata(argument))  # type: ignore[arg-type]
    assert_refused(outcome, "metadata")
    await world.check_session(session, sid, world.sessions[sid])
    await world.verify_reopened()


# -- limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [2**53 + 1, 2**63 - 1, 2**63], ids=["2^53+1", "2^63-1", "2^63"])
async def test_huge_limits_round_trip_or_are_refused(world: World, value: int) -> None:
    """Limits past what a store keeps exactly: SQLite overflowed at 2**63 (failing the other
    user's write), Redis scripts rounded them to doubles, and at 2**63 - 1 stored a float
    that made the session unreadable."""
    for key in SETTING_KEYS:
        n = world.number()
        user, sid = f"user~{n}", f"chat~{n}"
        limits: dict[str, Any] = {key: value}
        create = partial(world.writer.create_session, user, sid, **limits)
        made = await world.beside_canary(create)
        if made.refused():
            assert key in str(made.error), made.error
            await world.check_nothing_stored(user, sid)
        else:
            world.sessions[sid] = Expected(user, {key: value})
            await world.check_session(made.result(), sid, world.sessions[sid])
        _, sid, session = await fresh_session(world)
        update = partial(session.update_metadata, {key: value})
        outcome = await world.beside_canary(update)
        if outcome.refused():
            assert key in str(outcome.error), outcome.error
        else:
            world.sessions[sid].settings = {key: value}
        await world.check_session(session, sid, world.sessions[sid])
    await world.verify_reopened()


# -- ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["create", "get_or_create"])
async def test_user_id_with_a_lone_surrogate_is_refused(world: World, how: str) -> None:
    n = world.number()
    user, sid = f"user{LONE}~{n}", f"chat~{n}"
    manager = world.writer
    make = manager.create_session if how == "create" else manager.get_or_create_session
    await refuse_beside_canary(world, "user_id", lambda: make(user, sid), user=user, sid=sid)


@pytest.mark.parametrize("how", ["create", "get_or_create"])
async def test_another_users_default_session_id_cannot_be_taken(world: World, how: str) -> None:
    n = world.number()
    owner, squatter = f"alice~{n}", f"bob~{n}"
    taken = f"default:{owner}"
    manager = world.writer
    make = manager.create_session if how == "create" else manager.get_or_create_session
    outcome = await world.beside_canary(lambda: make(squatter, taken))
    assert outcome.refused(SessionOwnershipError), f"{squatter} took {taken}"
    await world.check_nothing_stored(squatter, taken)
    own = await world.beside_canary(lambda: manager.get_or_create_session(owner))
    session = own.result()
    assert (session.session_id, session.metadata.user_id) == (taken, owner)
    world.sessions[taken] = Expected(owner)
    await world.check_session(session, taken, world.sessions[taken])
    await world.verify_reopened()


# -- found by the property suites -----------------------------------------------------------


async def test_listing_by_a_user_id_no_store_can_encode_is_refused_or_empty(store: Store) -> None:
    manager = store.manager()
    try:
        await manager.create_session("someone", "s1")
        outcome = await attempt(lambda: manager.backend.list_sessions(user_id=f"u{LONE}"))
        assert outcome.refused() or outcome.result() == [], outcome
    finally:
        await manager.close()


@pytest.mark.parametrize("held", ["nothing", "an-open-call"])
async def test_a_summary_of_nothing_is_not_kept_in_memory_alone(store: Store, held: str) -> None:
    manager = store.manager()
    try:
        session = await manager.create_session("someone", "s1")
        if held == "an-open-call":
            call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            await session.add_message(Message(role=MessageRole.ASSISTANT, tool_calls=[call]))
        await session.create_summary()
        assert await session.get_summaries() == [], "a summary of nothing is listed"
        await session.add_message(Message(role=MessageRole.USER, content="now something"))
        made = await session.create_summary()
        held_now = len(await session.get_messages())
        assert (made.covers_through, made.message_count) == (held_now, held_now)
        assert await session.get_summaries() == [made]
    finally:
        await manager.close()
    reopened = store.manager()
    try:
        found = await reopened.get_session("s1")
        assert found is not None
        assert [s.summary_id for s in await found.get_summaries()] == [made.summary_id]
    finally:
        await reopened.close()


@pytest.mark.parametrize("message_id", ["\x00", "a\x00b"], ids=["nul", "nul-inside"])
async def test_message_ids_holding_nul_are_kept_or_refused(world: World, message_id: str) -> None:
    await kept_exactly_or_refused(world, "message_id", role="user", message_id=message_id)
