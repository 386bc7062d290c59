"""Backend fixtures (the same protocol tests run against every storage backend, and Redis as a
single server, a three-master cluster, over TLS and as an ACL-limited user), and builders for
the sessions, messages and summaries those tests store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from langswarm.core.memory.backends.base import (
    Backend,
    SessionSnapshot,
    SessionWrite,
    WriteResult,
)
from langswarm.core.memory.interfaces import (
    ConversationSummary,
    Message,
    MessageRole,
    SessionMetadata,
    SummaryType,
)
from tests._servers import APP_PASSWORD, APP_USER, RedisServer, RedisTLSServer

T0 = datetime(2024, 5, 1, 12, 30, 15, 123456)

KINDS = ["memory", "sqlite", "redis", "redis-cluster", "redis-tls", "redis-acl"]


@pytest.fixture(params=KINDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def redis_url_of(kind: str, request: pytest.FixtureRequest) -> str:
    """The URL of an emptied redis deployment of ``kind``: a plain server, the three-master
    cluster, a TLS-only server (trusting its CA by the ``ssl_ca_certs`` option) or a plain
    server logged into as the ACL user limited to the backend's key prefix."""
    if kind == "redis":
        return str(request.getfixturevalue("redis_url"))
    if kind == "redis-cluster":
        return str(request.getfixturevalue("redis_cluster_url"))
    if kind == "redis-tls":
        tls: RedisTLSServer = request.getfixturevalue("redis_tls")
        tls.flushall()
        return f"{tls.url}?{urlencode({'ssl_ca_certs': tls.ca_file})}"
    if kind == "redis-acl":
        acl: RedisServer = request.getfixturevalue("redis_acl")
        acl.flushall()
        return acl.acl_url(APP_USER, APP_PASSWORD)
    raise ValueError(f"not a redis kind: {kind!r}")


@pytest.fixture
async def backend(
    backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Backend]:
    """An opened, empty backend of each kind."""
    store: Backend
    if backend_kind == "memory":
        from langswarm.core.memory.backends.memory import InMemoryBackend

        store = InMemoryBackend()
    elif backend_kind == "sqlite":
        from langswarm.core.memory.backends.sqlite import SQLiteBackend

        store = SQLiteBackend(db_path=str(tmp_path / "conformance.db"))
    else:
        from langswarm.core.memory.backends.redis import RedisBackend

        store = RedisBackend(url=redis_url_of(backend_kind, request))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def meta(
    session_id: str, user_id: str = "alice", *, updated: int = 0, **fields: Any
) -> SessionMetadata:
    """Metadata created at T0 and updated ``updated`` minutes after it."""
    return SessionMetadata(
        session_id=session_id,
        user_id=user_id,
        created_at=T0,
        updated_at=T0 + timedelta(minutes=updated),
        **fields,
    )


def texts(n: int, start: int = 0, prefix: str = "m") -> list[Message]:
    """``n`` messages whose content and id are both ``{prefix}{i}``: the same call twice
    builds the same messages, as a retry re-sends them."""
    roles = (MessageRole.USER, MessageRole.ASSISTANT)
    return [
        Message(
            role=roles[i % 2],
            content=f"{prefix}{i}",
            timestamp=T0 + timedelta(seconds=i),
            message_id=f"{prefix}{i}",
        )
        for i in range(start, start + n)
    ]


def summary(session_id: str, summary_id: str, covers_through: int) -> ConversationSummary:
    return ConversationSummary(
        summary_id=summary_id,
        session_id=session_id,
        summary_text=f"up to {covers_through}",
        message_count=covers_through,
        token_count=3,
        created_at=T0,
        summary_type=SummaryType.AUTOMATIC,
        covers_through=covers_through,
        metadata={"model": "extractive"},
    )


def contents(messages: list[Message]) -> list[object]:
    return [m.content for m in messages]


async def apply1(backend: Backend, write: SessionWrite) -> WriteResult:
    """Apply a batch of one write; its result."""
    [result] = await backend.apply([write])
    return result


async def create(
    backend: Backend, session_id: str, n: int = 0, *, incarnation: str = "i1"
) -> WriteResult:
    """Create ``session_id`` for alice (writer w1) holding ``texts(n)``; fail the test unless
    it was created."""
    write = SessionWrite(session_id, incarnation, "w1", create=meta(session_id), messages=texts(n))
    result = await apply1(backend, write)
    assert result.error is None and result.created, result
    return result


async def load(backend: Backend, session_id: str, tail: int = 100) -> SessionSnapshot:
    """The stored session; fail the test if it is absent."""
    snapshot = await backend.load_session(session_id, tail=tail)
    assert snapshot is not None, f"session {session_id} is not stored"
    return snapshot
