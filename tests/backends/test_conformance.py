"""The Backend protocol, checked the same way against every storage backend on both loops."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from langswarm.core.memory._tokens import count_message_tokens
from langswarm.core.memory.backends.base import Backend, SessionWrite
from langswarm.core.memory.interfaces import (
    ConversationSummary,
    Message,
    MessageRole,
    SessionMetadata,
    SessionStatus,
    SummaryType,
)

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 5, 1, 12, 30, 15, 123456)


def meta(
    session_id: str,
    user_id: str = "alice",
    *,
    status: SessionStatus = SessionStatus.ACTIVE,
    updated: int = 0,
) -> SessionMetadata:
    """Metadata whose ``updated_at`` is ``updated`` minutes after T0."""
    return SessionMetadata(
        session_id=session_id,
        user_id=user_id,
        status=status,
        created_at=T0,
        updated_at=T0 + timedelta(minutes=updated),
    )


def texts(n: int, start: int = 0, prefix: str = "m") -> list[Message]:
    roles = (MessageRole.USER, MessageRole.ASSISTANT)
    return [
        Message(role=roles[i % 2], content=f"{prefix}{i}", timestamp=T0 + timedelta(seconds=i))
        for i in range(start, start + n)
    ]


def summary(
    session_id: str, summary_id: str, covers_through: int, text: str
) -> ConversationSummary:
    return ConversationSummary(
        summary_id=summary_id,
        session_id=session_id,
        summary_text=text,
        message_count=covers_through,
        token_count=len(text),
        created_at=T0,
        summary_type=SummaryType.AUTOMATIC,
        covers_through=covers_through,
        metadata={"model": "extractive"},
    )


def contents(messages: list[Message]) -> list[object]:
    return [m.content for m in messages]


async def test_metadata_round_trip(backend: Backend) -> None:
    original = SessionMetadata(
        session_id="s-1",
        user_id="alice",
        status=SessionStatus.ARCHIVED,
        created_at=T0,
        updated_at=T0 + timedelta(hours=1, microseconds=7),
        max_messages=50,
        max_tokens=4000,
        auto_summarize_threshold=20,
        metadata={"topic": "réservations ✈", "tags": ["a", "b"], "nested": {"n": 1, "x": None}},
        message_count=3,
        expires_at=T0 + timedelta(days=2),
    )
    await backend.apply([SessionWrite("s-1", meta=original, messages=texts(3))])

    snap = await backend.load_session("s-1", tail=10)

    assert snap is not None
    assert snap.meta == original
    assert (snap.first_seq, snap.next_seq, snap.summaries) == (0, 3, [])


async def test_message_count_is_what_storage_holds(backend: Backend) -> None:
    """A writer's count may be stale (a batch of its failed); the stored messages decide."""
    claimed = meta("s")
    claimed.message_count = 7
    await backend.apply([SessionWrite("s", meta=claimed, messages=texts(2))])
    snap = await backend.load_session("s", tail=10)
    assert snap is not None and snap.meta.message_count == 2


async def test_meta_update_replaces_and_keeps_messages(backend: Backend) -> None:
    await backend.apply([SessionWrite("s", meta=meta("s"), messages=texts(3))])
    changed = meta("s", status=SessionStatus.EXPIRED, updated=5)
    changed.metadata = {"k": "v"}
    changed.expires_at = None
    changed.message_count = 3

    await backend.apply([SessionWrite("s", meta=changed)])

    snap = await backend.load_session("s", tail=10)
    assert snap is not None
    assert snap.meta == changed
    assert contents(snap.messages) == ["m0", "m1", "m2"]


async def test_absent_session(backend: Backend) -> None:
    await backend.apply([SessionWrite("present", meta=meta("present"), messages=texts(2))])

    assert await backend.load_session("present", tail=5) is not None
    assert await backend.load_session("absent", tail=5) is None
    assert await backend.load_messages("absent", start=0, stop=10) == []


async def test_messages_without_metadata_for_absent_session_are_dropped(backend: Backend) -> None:
    await backend.apply([SessionWrite("ghost", messages=texts(3))])

    assert await backend.load_session("ghost", tail=5) is None
    assert (await backend.get_usage_stats())["total_messages"] == 0


async def test_append_and_tail(backend: Backend) -> None:
    await backend.apply([SessionWrite("s", meta=meta("s"), messages=texts(5))])
    await backend.apply([SessionWrite("s", messages=texts(5, start=5), first_seq=5)])
    await backend.apply([SessionWrite("s", messages=texts(5, start=10), first_seq=10)])

    tail = await backend.load_session("s", tail=4)
    everything = await backend.load_session("s", tail=100)
    none = await backend.load_session("s", tail=0)

    assert tail is not None and everything is not None and none is not None
    assert contents(tail.messages) == ["m11", "m12", "m13", "m14"]
    assert (tail.first_seq, tail.next_seq) == (0, 15)
    assert contents(everything.messages) == [f"m{i}" for i in range(15)]
    assert none.messages == []
    assert none.next_seq == 15


async def test_load_messages_pages_by_seq(backend: Backend) -> None:
    await backend.apply([SessionWrite("s", meta=meta("s"), messages=texts(25))])

    pages = [await backend.load_messages("s", start=lo, stop=lo + 10) for lo in (0, 10, 20)]

    assert [len(p) for p in pages] == [10, 10, 5]
    assert contents([m for page in pages for m in page]) == [f"m{i}" for i in range(25)]
    assert contents(await backend.load_messages("s", start=7, stop=9)) == ["m7", "m8"]
    assert await backend.load_messages("s", start=25, stop=40) == []
    assert await backend.load_messages("s", start=9, stop=9) == []


async def test_trim_moves_first_seq(backend: Backend) -> None:
    await backend.apply([SessionWrite("s", meta=meta("s"), messages=texts(10))])

    await backend.apply([SessionWrite("s", trim_before=6)])

    snap = await backend.load_session("s", tail=10)
    assert snap is not None
    assert (snap.first_seq, snap.next_seq) == (6, 10)
    assert contents(snap.messages) == ["m6", "m7", "m8", "m9"]
    assert contents(await backend.load_messages("s", start=0, stop=10)) == contents(snap.messages)
    assert (await backend.get_usage_stats())["total_messages"] == 4


async def test_trim_with_new_messages_and_past_the_end(backend: Backend) -> None:
    await backend.apply([SessionWrite("s", meta=meta("s"), messages=texts(4))])
    # Appends 4..7, then drops everything below 6, in one write.
    await backend.apply([SessionWrite("s", messages=texts(4, start=4), first_seq=4, trim_before=6)])
    snap = await backend.load_session("s", tail=10)
    assert snap is not None
    assert (snap.first_seq, snap.next_seq) == (6, 8)
    assert contents(snap.messages) == ["m6", "m7"]

    await backend.apply([SessionWrite("s", trim_before=100)])
    await backend.apply([SessionWrite("s", messages=texts(1, start=8), first_seq=8)])

    snap = await backend.load_session("s", tail=10)
    assert snap is not None
    assert (snap.first_seq, snap.next_seq) == (8, 9)
    assert contents(snap.messages) == ["m8"]


async def test_delete_then_recreate_in_one_batch(backend: Backend) -> None:
    await backend.apply(
        [
            SessionWrite(
                "s",
                meta=meta("s", user_id="old"),
                messages=texts(5, prefix="old"),
                summaries=[summary("s", "sum-1", 3, "old summary")],
            )
        ]
    )
    fresh = meta("s", user_id="new", updated=9)
    fresh.message_count = 2

    await backend.apply(
        [SessionWrite("s", delete=True, meta=fresh, messages=texts(2, prefix="new"))]
    )

    snap = await backend.load_session("s", tail=10)
    assert snap is not None
    assert snap.meta == fresh
    assert contents(snap.messages) == ["new0", "new1"]
    assert (snap.first_seq, snap.next_seq) == (0, 2)
    assert snap.summaries == []
    assert [m.user_id for m in await backend.list_sessions(user_id="old")] == []


async def test_delete_without_metadata_removes_session(backend: Backend) -> None:
    await backend.apply([SessionWrite("s", meta=meta("s"), messages=texts(3))])

    await backend.apply([SessionWrite("s", delete=True)])

    assert await backend.load_session("s", tail=10) is None
    assert await backend.load_messages("s", start=0, stop=10) == []
    stats = await backend.get_usage_stats()
    assert (stats["total_sessions"], stats["total_messages"]) == (0, 0)


async def test_retried_batch_does_not_duplicate(backend: Backend) -> None:
    batch = [
        SessionWrite("s", meta=meta("s"), messages=texts(4)),
        SessionWrite("t", meta=meta("t"), messages=texts(2), summaries=[summary("t", "x", 1, "t")]),
    ]
    await backend.apply(batch)
    await backend.apply(batch)

    snap = await backend.load_session("s", tail=100)
    assert snap is not None
    assert contents(snap.messages) == ["m0", "m1", "m2", "m3"]
    assert snap.next_seq == 4
    stats = await backend.get_usage_stats()
    assert (stats["total_messages"], stats["total_summaries"]) == (6, 1)


async def test_overlapping_batch_keeps_stored_messages(backend: Backend) -> None:
    first = texts(5)
    await backend.apply([SessionWrite("s", meta=meta("s"), messages=first)])
    # A retry that starts inside what is already stored: 3 and 4 exist, 5..7 are new.
    await backend.apply([SessionWrite("s", messages=texts(5, start=3, prefix="r"), first_seq=3)])

    snap = await backend.load_session("s", tail=100)
    assert snap is not None
    assert contents(snap.messages) == ["m0", "m1", "m2", "m3", "m4", "r5", "r6", "r7"]
    assert [m.message_id for m in snap.messages[:5]] == [m.message_id for m in first]
    assert snap.next_seq == 8


async def test_summaries_upsert_and_order(backend: Backend) -> None:
    late = summary("s", "late", 10, "covers ten")
    early = summary("s", "early", 5, "covers five")
    await backend.apply([SessionWrite("s", meta=meta("s"), messages=texts(12), summaries=[late])])
    await backend.apply([SessionWrite("s", summaries=[early])])

    snap = await backend.load_session("s", tail=1)
    assert snap is not None
    assert snap.summaries == [early, late]

    replaced = summary("s", "early", 12, "covers twelve")
    await backend.apply([SessionWrite("s", summaries=[replaced])])

    snap = await backend.load_session("s", tail=1)
    assert snap is not None
    assert snap.summaries == [late, replaced]
    assert (await backend.get_usage_stats())["total_summaries"] == 2


async def test_list_sessions_filters_and_order(backend: Backend) -> None:
    await backend.apply(
        [
            SessionWrite("a1", meta=meta("a1", "alice", updated=1)),
            SessionWrite("a2", meta=meta("a2", "alice", updated=5)),
            SessionWrite("a3", meta=meta("a3", "alice", status=SessionStatus.ARCHIVED, updated=3)),
            SessionWrite("b1", meta=meta("b1", "bob", updated=4)),
            SessionWrite("b2", meta=meta("b2", "bob", status=SessionStatus.EXPIRED, updated=2)),
        ]
    )

    async def ids(**filters: Any) -> list[str]:
        return [m.session_id for m in await backend.list_sessions(**filters)]

    assert await ids() == ["a2", "b1", "a3", "b2", "a1"]
    assert await ids(limit=None) == ["a2", "b1", "a3", "b2", "a1"]
    assert await ids(limit=2) == ["a2", "b1"]
    assert await ids(user_id="alice") == ["a2", "a3", "a1"]
    assert await ids(user_id="carol") == []
    assert await ids(status=SessionStatus.ACTIVE) == ["a2", "b1", "a1"]
    assert await ids(user_id="alice", status=SessionStatus.ACTIVE) == ["a2", "a1"]
    assert await ids(user_id="bob", status=SessionStatus.ARCHIVED) == []
    assert await ids(updated_before=T0 + timedelta(minutes=4)) == ["a3", "b2", "a1"]
    assert await ids(
        user_id="alice", status=SessionStatus.ACTIVE, updated_before=T0 + timedelta(minutes=4)
    ) == ["a1"]
    assert await ids(status=SessionStatus.EXPIRED, limit=1) == ["b2"]

    listed = await backend.list_sessions(user_id="bob", status=SessionStatus.EXPIRED)
    assert listed == [meta("b2", "bob", status=SessionStatus.EXPIRED, updated=2)]


async def test_list_sessions_sees_metadata_updates(backend: Backend) -> None:
    await backend.apply(
        [SessionWrite("x", meta=meta("x", updated=1)), SessionWrite("y", meta=meta("y", updated=2))]
    )
    await backend.apply(
        [SessionWrite("x", meta=meta("x", status=SessionStatus.ARCHIVED, updated=3))]
    )

    assert [m.session_id for m in await backend.list_sessions()] == ["x", "y"]
    archived = await backend.list_sessions(status=SessionStatus.ARCHIVED)
    assert [m.session_id for m in archived] == ["x"]
    assert [m.session_id for m in await backend.list_sessions(status=SessionStatus.ACTIVE)] == ["y"]


async def test_usage_stats(backend: Backend) -> None:
    await backend.apply(
        [
            SessionWrite("a", meta=meta("a"), messages=texts(3)),
            SessionWrite(
                "b",
                meta=meta("b", status=SessionStatus.ARCHIVED),
                messages=texts(4),
                summaries=[summary("b", "s1", 2, "x"), summary("b", "s2", 4, "y")],
            ),
            SessionWrite("c", meta=meta("c"), messages=texts(6)),
        ]
    )
    await backend.apply([SessionWrite("c", trim_before=2)])

    stats = await backend.get_usage_stats()

    assert stats["backend"] == backend.name
    assert stats["total_sessions"] == 3
    assert stats["total_messages"] == 3 + 4 + 4
    assert stats["total_summaries"] == 2
    assert stats["sessions_by_status"] == {"active": 2, "archived": 1}
    if backend.persistent and backend.name == "sqlite":
        assert stats["storage_size_mb"] > 0
    elif not backend.persistent:
        assert stats["storage_size_mb"] is None


async def test_usage_stats_empty(backend: Backend) -> None:
    stats = await backend.get_usage_stats()

    assert (stats["total_sessions"], stats["total_messages"], stats["total_summaries"]) == (0, 0, 0)


async def test_delete_sessions(backend: Backend) -> None:
    await backend.apply(
        [
            SessionWrite(
                "a", meta=meta("a"), messages=texts(2), summaries=[summary("a", "s", 1, "x")]
            ),
            SessionWrite("b", meta=meta("b"), messages=texts(3)),
            SessionWrite("keep", meta=meta("keep"), messages=texts(1)),
        ]
    )

    assert await backend.delete_sessions(["a", "b", "missing", "a"]) == 2
    assert await backend.delete_sessions(["a"]) == 0
    assert await backend.delete_sessions([]) == 0

    assert await backend.load_session("a", tail=5) is None
    assert await backend.load_messages("b", start=0, stop=10) == []
    assert [m.session_id for m in await backend.list_sessions()] == ["keep"]
    stats = await backend.get_usage_stats()
    assert (stats["total_sessions"], stats["total_messages"], stats["total_summaries"]) == (1, 1, 0)


async def test_many_sessions_and_a_repeated_session_in_one_batch(backend: Backend) -> None:
    await backend.apply(
        [
            SessionWrite("s1", meta=meta("s1", updated=1), messages=texts(3, prefix="a")),
            SessionWrite("s2", meta=meta("s2", "bob", updated=2), messages=texts(2, prefix="b")),
            SessionWrite("s1", messages=texts(2, start=3, prefix="a"), first_seq=3, trim_before=1),
            SessionWrite("s3", meta=meta("s3", updated=3)),
            SessionWrite("s2", meta=meta("s2", "bob", updated=4)),
        ]
    )

    s1 = await backend.load_session("s1", tail=10)
    s2 = await backend.load_session("s2", tail=10)
    s3 = await backend.load_session("s3", tail=10)
    assert s1 is not None and s2 is not None and s3 is not None
    assert contents(s1.messages) == ["a1", "a2", "a3", "a4"]
    assert (s1.first_seq, s1.next_seq) == (1, 5)
    assert contents(s2.messages) == ["b0", "b1"]
    assert s2.meta.updated_at == T0 + timedelta(minutes=4)
    assert s3.messages == []
    assert [m.session_id for m in await backend.list_sessions()] == ["s2", "s3", "s1"]


async def test_message_fields_round_trip(backend: Backend) -> None:
    ts = datetime(2023, 12, 31, 23, 59, 59, 999999)
    messages = [
        Message(
            role=MessageRole.SYSTEM,
            content="Réponds en français. 日本語も OK. مرحبا 👋🏽 \u0000 end",
            timestamp=ts,
            token_count=17,
            metadata={"source": "ünïcode", "score": 0.5, "flags": [True, None]},
        ),
        Message(
            role=MessageRole.USER,
            content=[
                {"type": "text", "text": "What is in this image?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
            ],
            timestamp=ts,
            token_count=0,
        ),
        Message(
            role=MessageRole.ASSISTANT,
            content=None,
            timestamp=ts,
            tool_calls=[
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Zürich"}'},
                }
            ],
        ),
        Message(
            role=MessageRole.TOOL,
            content='{"temp_c": 21.5}',
            timestamp=ts,
            tool_call_id="call_1",
            name="get_weather",
            token_count=9,
        ),
        Message(
            role=MessageRole.ASSISTANT,
            content=[
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "tu_1", "name": "lookup", "input": {"q": "été", "n": 3}},
            ],
            timestamp=ts,
        ),
        Message(
            role=MessageRole.USER,
            content=[
                {
                    "type": "tool_result",
                    "tool_use_id": "tu_1",
                    "content": [{"type": "text", "text": "found 3"}],
                    "is_error": False,
                }
            ],
            timestamp=ts,
        ),
        Message(
            role=MessageRole.ASSISTANT,
            content=None,
            timestamp=ts,
            function_call={"name": "legacy_fn", "arguments": "{}"},
        ),
        Message(role=MessageRole.FUNCTION, content="legacy result", name="legacy_fn", timestamp=ts),
    ]
    await backend.apply([SessionWrite("s", meta=meta("s"), messages=messages)])

    snap = await backend.load_session("s", tail=100)
    paged = await backend.load_messages("s", start=0, stop=100)

    assert snap is not None
    assert snap.messages == messages
    assert paged == messages
    given = [17, 0, None, 9, None, None, None, None]
    if backend.persistent:  # stored messages carry their count, computed where missing
        given = [
            n if n is not None else count_message_tokens(m)
            for n, m in zip(given, messages, strict=True)
        ]
    assert [m.token_count for m in snap.messages] == given
    assert snap.messages[2].has_tool_calls and snap.messages[5].is_tool_result
