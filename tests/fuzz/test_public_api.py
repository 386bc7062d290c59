"""Generated input through the public API, each example beside another user's write.

Every example either round-trips exactly (what is read back, live, from storage, by a second
manager and after reopening, equals what was written) or raises ``MemoryValidationError`` and
stores nothing; the canary's write beside it always commits. Each test runs on every backend
and event loop; the budgets add up to more than 5,000 examples per run.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest

from langswarm.core.memory import (
    MemorySession,
    Message,
    MessageRole,
    SessionMetadata,
    create_openai_message,
)
from langswarm.core.memory.exceptions import (
    SessionExistsError,
    SessionOwnershipError,
)
from tests.fuzz._compare import (
    SETTING_KEYS,
    Expected,
    Wrote,
    assert_messages,
    message_problem,
)
from tests.fuzz._support import Store, World, run_examples
from tests.fuzz.strategies import (
    READ_SESSION,
    READ_USER,
    MessageSpec,
    ReadSpec,
    SessionSpec,
    UpdateSpec,
    message_batches,
    reads,
    session_specs,
    update_specs,
    victim,
)

pytestmark = pytest.mark.anyio

#: Examples per test case; each test has 6 cases (3 backends x 2 event loops).
BUDGET = {"messages": 300, "sessions": 200, "metadata": 150, "reads": 60}
BUFFERED_BUDGET = {"messages": 100, "metadata": 60}


# -- examples -----------------------------------------------------------------------------


async def add_example(world: World, specs: list[MessageSpec]) -> None:
    """``add_message`` (one spec) or ``add_messages`` (several) on a new user's new session."""
    n = world.number()
    user, sid = f"user~{n}", f"chat~{n}"
    session = await world.writer.create_session(user, sid)
    want = world.sessions[sid] = Expected(user)
    written: list[Wrote] = []

    async def call() -> list[Message]:
        built = [spec.build() for spec in specs]
        written.extend(Wrote.of(message) for message in built)
        if len(built) == 1:
            return [await session.add_message(built[0])]
        return await session.add_messages(built)

    outcome = await world.beside_canary(call)
    if not outcome.refused():
        returned = outcome.result()
        assert_messages(returned, written, "returned by add_message", instant=True)
        want.messages = [Wrote.of(message) for message in returned]
    await world.check_session(session, sid, want)


def _allowed_refusals(world: World, user: object, sid: object) -> list[type]:
    """Errors besides ``MemoryValidationError`` that may refuse this session call."""
    allowed: list[type] = []
    if isinstance(sid, str) and sid.startswith("default:") and sid != f"default:{user}":
        allowed.append(SessionOwnershipError)  # another user's default session id
    if isinstance(sid, str) and sid in world.sessions:
        allowed += [SessionExistsError, SessionOwnershipError]
    return allowed


async def session_example(world: World, spec: SessionSpec) -> None:
    """``create_session`` / ``get_or_create_session`` with generated ids, limits, metadata."""
    n = world.number()
    user = spec.user.render(n)
    sid = None if spec.session is None else spec.session.render(n, user)
    asked = copy.deepcopy(spec.options)
    manager, options = world.writer, spec.options
    make = manager.create_session if spec.op == "create" else manager.get_or_create_session
    allowed = _allowed_refusals(world, user, sid)
    existed = isinstance(sid, str) and sid in world.sessions
    outcome = await world.beside_canary(lambda: make(user, sid, **options))  # type: ignore[arg-type]
    if outcome.refused(*allowed):
        await world.check_nothing_stored(user, sid)
    else:
        assert not allowed or (existed and spec.op != "create"), (
            f"user {user!r} was given session {sid!r}, which is not theirs to take"
        )
        session = outcome.result()
        assert session.metadata.user_id == user, f"{user!r} got {session!r}"
        if sid is None and spec.op != "create":
            sid = f"default:{user}"
        assert sid is None or session.session_id == sid, (sid, session.session_id)
        if not existed:
            settings = {key: asked.get(key) for key in SETTING_KEYS}
            given = asked.get("metadata")
            want = Expected(user, settings, {} if given is None else given)
            world.sessions[session.session_id] = want
            await world.check_session(session, session.session_id, want)
    if spec.session is not None and spec.session.kind == "squat":
        await _victim_gets_default(world, victim(n))


async def _victim_gets_default(world: World, user: str) -> None:
    """After a try at taking it, the user's own default session is still theirs to create."""
    own = await world.writer.get_or_create_session(user)
    assert own.session_id == f"default:{user}" and own.metadata.user_id == user
    world.sessions[own.session_id] = Expected(user)


async def update_example(world: World, spec: UpdateSpec) -> None:
    """``update_metadata`` with generated settings and keys, on a session with metadata."""
    n = world.number()
    user, sid = f"user~{n}", f"meta~{n}"
    initial = copy.deepcopy(spec.initial)
    session = await world.writer.create_session(user, sid, metadata=spec.initial)
    want = world.sessions[sid] = Expected(user, metadata=initial)
    asked = copy.deepcopy(spec.update)
    outcome = await world.beside_canary(lambda: session.update_metadata(spec.update))  # type: ignore[arg-type]
    if not outcome.refused():
        assert isinstance(asked, dict), f"update_metadata accepted {asked!r}"
        want.settings = {key: asked[key] for key in SETTING_KEYS if key in asked}
        custom = {key: value for key, value in asked.items() if key not in SETTING_KEYS}
        want.metadata = {**initial, **custom}
    await world.check_session(session, sid, want)


# -- reads --------------------------------------------------------------------------------


async def fill_reads(world: World) -> None:
    """The session read examples query: a short conversation with a tool exchange."""
    start = datetime(2024, 3, 1, 9, 0)
    turns: list[tuple[str, dict[str, Any]]] = [
        ("system", {"content": "You are terse."}),
        ("user", {"content": "Weather in Oslo?"}),
        ("assistant", {"tool_calls": [_call("c1", "weather", '{"city": "Oslo"}')]}),
        ("tool", {"content": "4 C, rain", "tool_call_id": "c1"}),
        ("assistant", {"content": "4 C and rain."}),
        ("user", {"content": "Thanks!"}),
    ]
    messages = [
        create_openai_message(role, timestamp=start + timedelta(minutes=i), **fields)
        for i, (role, fields) in enumerate(turns)
    ]
    session = await world.writer.create_session(READ_USER, READ_SESSION)
    await session.add_messages(messages)
    world.sessions[READ_SESSION] = Expected(READ_USER, messages=[Wrote.of(m) for m in messages])


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


async def _perform(world: World, session: MemorySession, spec: ReadSpec) -> object:
    kwargs: Any = spec.kwargs
    if spec.op == "messages":
        return await session.get_messages(**kwargs)
    if spec.op == "context":
        return await session.get_conversation_context(**kwargs)
    if spec.op == "recent":
        return await session.get_recent_messages(**kwargs)
    if spec.op == "list":
        return await world.writer.backend.list_sessions(**kwargs)
    return await world.writer.get_session(**kwargs)


def _expected_messages(spec: ReadSpec, written: list[Wrote]) -> list[Wrote] | None:
    """What ``get_messages`` must return for plain arguments (``None``: only a subsequence)."""
    limit, since, roles = (spec.kwargs.get(k) for k in ("limit", "since", "roles"))
    if limit is not None and (type(limit) is not int or limit < 0):
        return None
    if since is not None and (not isinstance(since, datetime) or since.tzinfo is not None):
        return None
    values = {role.value for role in MessageRole}
    if isinstance(roles, str):
        roles = [roles]
    if roles is not None and not all(isinstance(r, str) and r in values for r in roles):
        return None
    chosen = [
        w
        for w in written
        if (since is None or w.timestamp >= since) and (roles is None or w.fields["role"] in roles)
    ]
    return chosen if limit is None else chosen[len(chosen) - min(limit, len(chosen)) :]


def check_read(spec: ReadSpec, result: object, written: list[Wrote]) -> None:
    if spec.op == "get":
        assert result is None or isinstance(result, MemorySession)
        if isinstance(result, MemorySession):
            assert result.session_id == spec.kwargs["session_id"]
            user = spec.kwargs.get("user_id")
            assert user is None or result.metadata.user_id == user, (user, result)
        return
    assert isinstance(result, list)
    if spec.op == "list":
        limit, user = spec.kwargs.get("limit", 100), spec.kwargs.get("user_id")
        assert limit is None or (type(limit) is int and limit > 0), f"accepted limit={limit!r}"
        assert all(isinstance(meta, SessionMetadata) for meta in result)
        assert limit is None or len(result) <= limit, (limit, len(result))
        assert user is None or all(meta.user_id == user for meta in result)
        return
    want = _expected_messages(spec, written) if spec.op == "messages" else None
    if want is not None:
        assert_messages(result, want, f"get_messages({spec.kwargs})")
        return
    remaining = iter(written)  # the result must be a subsequence of the conversation
    for message in result:
        assert any(message_problem(message, w) is None for w in remaining), (spec, message)


async def read_example(world: World, spec: ReadSpec) -> None:
    """A read with generated arguments of the conversation ``fill_reads`` stored."""
    session = await world.writer.get_session(READ_SESSION)
    assert session is not None
    outcome = await world.beside_canary(partial(_perform, world, session, spec))
    if not outcome.refused(*([SessionOwnershipError] if spec.op == "get" else [])):
        check_read(spec, outcome.result(), world.sessions[READ_SESSION].messages)


# -- the tests ----------------------------------------------------------------------------


async def test_messages_round_trip_or_are_refused(store: Store) -> None:
    await run_examples("messages", store, message_batches(), add_example, BUDGET["messages"])


async def test_sessions_round_trip_or_are_refused(store: Store) -> None:
    await run_examples("sessions", store, session_specs(), session_example, BUDGET["sessions"])


async def test_metadata_updates_round_trip_or_are_refused(store: Store) -> None:
    await run_examples("metadata", store, update_specs(), update_example, BUDGET["metadata"])


async def test_reads_answer_or_refuse(store: Store) -> None:
    budget = BUDGET["reads"]
    await run_examples("reads", store, reads(), read_example, budget, setup=fill_reads)


async def test_buffered_messages_are_never_dropped(store: Store) -> None:
    budget = BUFFERED_BUDGET["messages"]
    await run_examples(
        "buffered-messages", store, message_batches(), add_example, budget, durability="buffered"
    )


async def test_buffered_metadata_updates_are_never_dropped(store: Store) -> None:
    budget = BUFFERED_BUDGET["metadata"]
    await run_examples(
        "buffered-metadata", store, update_specs(), update_example, budget, durability="buffered"
    )
