"""Exact comparison for the fuzz suites: what was written against what is read back."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from langswarm.core.memory import MemoryManager, Message, SessionMetadata, SessionStatus

__all__ = [
    "MESSAGE_FIELDS",
    "SETTING_KEYS",
    "Expected",
    "Wrote",
    "assert_messages",
    "message_problem",
    "meta_problem",
    "same",
    "same_instant",
]

SETTING_KEYS = ("max_messages", "max_tokens", "auto_summarize_threshold")
MESSAGE_FIELDS = (
    "role",
    "content",
    "message_id",
    "metadata",
    "name",
    "function_call",
    "tool_calls",
    "tool_call_id",
    "item",
)


def _kind(value: object) -> type:
    """The type that matters for exactness: any dict is a dict and any list a list (the
    library hands out read-only subclasses of both), every other type stands for itself."""
    if isinstance(value, dict):
        return dict
    if isinstance(value, list):
        return list
    return type(value)


def same(a: object, b: object) -> bool:
    """Equal and of the same kinds all the way down: ``True`` is not ``1``, ``1.0`` is not
    ``1``, ``-0.0`` is not ``0.0``, a tuple is not a list, a naive datetime is not an aware
    one."""
    if _kind(a) is not _kind(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        assert isinstance(b, list | tuple)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        assert isinstance(b, float)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, datetime):
        assert isinstance(b, datetime)
        return a == b and (a.tzinfo is None) == (b.tzinfo is None)
    return a == b


def same_instant(a: datetime, b: datetime) -> bool:
    """The same point in time; a naive datetime is local time."""
    if (a.tzinfo is None) == (b.tzinfo is None):
        return a == b
    try:
        return a.astimezone() == b.astimezone()
    except (OverflowError, ValueError):
        return False


@dataclass(frozen=True)
class Wrote:
    """A message as written, copied before the library could touch it."""

    fields: dict[str, Any]
    timestamp: datetime
    token_count: int | None

    @classmethod
    def of(cls, message: Message) -> Wrote:
        fields = {name: copy.deepcopy(getattr(message, name)) for name in MESSAGE_FIELDS}
        return cls(fields, message.timestamp, message.token_count)


def message_problem(read: Message, wrote: Wrote, *, instant: bool = False) -> str | None:
    """How ``read`` differs from ``wrote`` (``None`` if it does not). With ``instant``, a
    timestamp may come back in another form of the same instant. A count the library filled
    in may stand where none was written."""
    for name in MESSAGE_FIELDS:
        if not same(getattr(read, name), wrote.fields[name]):
            return f"{name}: wrote {wrote.fields[name]!r}, read {getattr(read, name)!r}"
    if not (same_instant if instant else same)(read.timestamp, wrote.timestamp):
        return f"timestamp: wrote {wrote.timestamp!r}, read {read.timestamp!r}"
    count = read.token_count
    if wrote.token_count is None:
        if count is not None and (type(count) is not int or count < 0):
            return f"token_count: none written, read {count!r}"
    elif not same(count, wrote.token_count):
        return f"token_count: wrote {wrote.token_count!r}, read {count!r}"
    return None


def assert_messages(
    read: Sequence[Message], wrote: Sequence[Wrote], where: str, *, instant: bool = False
) -> None:
    assert len(read) == len(wrote), f"{where}: wrote {len(wrote)} messages, read {len(read)}"
    for index, (got, want) in enumerate(zip(read, wrote, strict=True)):
        problem = message_problem(got, want, instant=instant)
        assert problem is None, f"{where}: message {index}: {problem}"


@dataclass
class Expected:
    """What one session must hold."""

    user_id: object
    settings: dict[str, object] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    messages: list[Wrote] = field(default_factory=list)
    status: SessionStatus = SessionStatus.ACTIVE


def meta_problem(meta: SessionMetadata, session_id: object, want: Expected) -> str | None:
    """How ``meta`` differs from what session ``session_id`` must be (``None`` if it does not)."""
    pairs = [
        ("session_id", meta.session_id, session_id),
        ("user_id", meta.user_id, want.user_id),
        ("status", meta.status, want.status),
        ("metadata", meta.metadata, want.metadata),
        ("message_count", meta.message_count, len(want.messages)),
        *((key, getattr(meta, key), want.settings.get(key)) for key in SETTING_KEYS),
    ]
    for name, got, wanted in pairs:
        if not same(got, wanted):
            return f"session {session_id!r}: {name} is {got!r}, expected {wanted!r}"
    return None


async def assert_reopened(memory: MemoryManager, sessions: Mapping[str, Expected]) -> None:
    """A manager opened anew on the store holds exactly ``sessions``: each one's metadata and
    messages, and no other session or message."""
    for session_id, want in sessions.items():
        session = await memory.get_session(session_id)
        assert session is not None, f"session {session_id!r} is gone after reopening"
        problem = meta_problem(session.metadata, session_id, want)
        assert problem is None, f"after reopening: {problem}"
        messages = await session.get_messages()
        assert_messages(messages, want.messages, f"{session_id!r} after reopening")
    stats = await memory.backend.get_usage_stats()
    assert stats["total_sessions"] == len(sessions), stats
    assert stats["total_messages"] == sum(len(w.messages) for w in sessions.values()), stats
