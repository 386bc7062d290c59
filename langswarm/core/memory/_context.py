"""``MemorySessionContext``: a session for the length of an ``async with`` block."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import anyio

from ._manager import MemoryManager, get_global_memory_manager
from ._session import MemorySession

__all__ = ["MemorySessionContext"]


class MemorySessionContext:
    """``async with`` a session: opens (or creates) it, and on exit makes sure every write
    made inside the block is stored.

    Without ``session_id`` a new session is created; with one, it is reused if it exists.
    """

    def __init__(
        self,
        user_id: str,
        session_id: str | None = None,
        *,
        manager: MemoryManager | None = None,
        **options: Any,
    ) -> None:
        self.user_id = user_id
        self.session_id = session_id
        self._manager = manager
        self._options = options
        self.session: MemorySession | None = None

    async def __aenter__(self) -> MemorySession:
        manager = self._manager or get_global_memory_manager()
        if self.session_id is None:
            self.session = await manager.create_session(self.user_id, **self._options)
        else:
            self.session = await manager.get_or_create_session(
                self.user_id, self.session_id, **self._options
            )
        return self.session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.session is not None:
            with anyio.CancelScope(shield=exc_type is not None):
                await self.session.flush()
