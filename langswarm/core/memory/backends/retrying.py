"""A backend whose reads are retried by the runtime's policy.

Batches are not wrapped: the flusher retries them itself, holding the writers meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Any

from .._retry import RetryPolicy
from ..interfaces import Message, SessionMetadata, SessionStatus
from .base import Backend, SessionSnapshot, SessionWrite, WriteResult

__all__ = ["RetryingBackend"]


class RetryingBackend:
    """``inner`` with every read and delete retried under ``policy``."""

    def __init__(self, inner: Backend, policy: RetryPolicy) -> None:
        self.inner = inner
        self.policy = policy
        self.name = inner.name
        self.persistent = inner.persistent
        self.shared = inner.shared
        self.ttl_seconds = inner.ttl_seconds
        self._what = f"the {inner.name} backend"

    def preflight(self) -> None:
        self.inner.preflight()

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    def apply(self, batch: Sequence[SessionWrite]) -> Awaitable[list[WriteResult]]:
        return self.inner.apply(batch)

    async def load_session(self, session_id: str, *, tail: int) -> SessionSnapshot | None:
        return await self.policy.run(
            lambda: self.inner.load_session(session_id, tail=tail), self._what
        )

    async def load_messages(self, session_id: str, *, start: int, stop: int) -> list[Message]:
        return await self.policy.run(
            lambda: self.inner.load_messages(session_id, start=start, stop=stop), self._what
        )

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int | None = 100,
        updated_before: datetime | None = None,
    ) -> list[SessionMetadata]:
        return await self.policy.run(
            lambda: self.inner.list_sessions(
                user_id=user_id, status=status, limit=limit, updated_before=updated_before
            ),
            self._what,
        )

    async def get_usage_stats(self) -> dict[str, Any]:
        return await self.policy.run(self.inner.get_usage_stats, self._what)

    async def delete_sessions(
        self, session_ids: Sequence[str], *, idle_before: datetime | None = None
    ) -> int:
        return await self.policy.run(
            lambda: self.inner.delete_sessions(session_ids, idle_before=idle_before), self._what
        )
