"""``manager.backend``: queries on storage itself, made after every earlier write is stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ._runtime import Runtime
from ._validate import check_id, check_limit, parse_choice
from .backends.base import Backend
from .interfaces import SessionMetadata, SessionStatus

__all__ = ["BackendView"]


class BackendView:
    """``manager.backend``: storage queries that see every write made before them."""

    def __init__(self, name: str, runtime: Callable[[], Awaitable[Runtime]]) -> None:
        self._name = name
        self._runtime = runtime

    @property
    def name(self) -> str:
        return self._name

    async def _synced(self) -> Backend:
        runtime = await self._runtime()
        await runtime.flusher.barrier()
        return runtime.backend

    async def list_sessions(
        self,
        user_id: str | None = None,
        status: SessionStatus | str | None = None,
        limit: int | None = 100,
    ) -> list[SessionMetadata]:
        """Sessions, most recently updated first, optionally for one user and status."""
        check_limit("limit", limit)
        if user_id is not None:
            check_id("user_id", user_id)
        if status is not None:
            status = parse_choice(SessionStatus, status, "status")
        backend = await self._synced()
        return await backend.list_sessions(user_id=user_id, status=status, limit=limit)

    async def get_usage_stats(self) -> dict[str, Any]:
        """Totals from storage: sessions, messages, summaries, size."""
        backend = await self._synced()
        return await backend.get_usage_stats()

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session (live or stored) with all its data; False if it did not exist."""
        runtime = await self._runtime()
        return await runtime.registry.delete([check_id("session_id", session_id)]) > 0
