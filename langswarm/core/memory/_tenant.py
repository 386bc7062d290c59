"""A manager seen through one tenant's namespace.

``memory.tenant("acme")`` gives a view whose calls take and return the tenant's own user and
session ids; underneath, both are stored as ``acme/<id>``, so one tenant's ids never collide
with another's and nothing reached through the view belongs to another tenant. Sessions are
the manager's own ``MemorySession`` handles (their ``session_id`` and ``metadata.user_id``
carry the prefix). Unscoped use of the manager stays as it is and sees every tenant.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ._validate import check_id, check_limit, parse_choice
from .exceptions import MemoryValidationError
from .interfaces import SessionMetadata, SessionStatus

if TYPE_CHECKING:
    from ._manager import MemoryManager
    from ._session import MemorySession

__all__ = ["SEPARATOR", "TenantView"]

SEPARATOR = "/"
"""Between the tenant and an id in stored ids; a tenant name cannot contain it."""


class TenantView:
    """The sessions of one tenant, through the same calls as :class:`MemoryManager`."""

    def __init__(self, manager: MemoryManager, tenant: str) -> None:
        check_id("tenant", tenant)
        if SEPARATOR in tenant:
            raise MemoryValidationError(f"a tenant name cannot contain {SEPARATOR!r}")
        self._manager = manager
        self.tenant = tenant
        self._prefix = tenant + SEPARATOR

    def __repr__(self) -> str:
        return f"TenantView({self.tenant!r})"

    def _id(self, name: str, value: str) -> str:
        return self._prefix + check_id(name, value)

    def _mine(self, meta: SessionMetadata) -> bool:
        return meta.user_id.startswith(self._prefix) and meta.session_id.startswith(self._prefix)

    def local(self, stored_id: str) -> str:
        """The tenant's own id for an id as stored (``acme/s1`` -> ``s1``)."""
        if not stored_id.startswith(self._prefix):
            raise MemoryValidationError(f"{stored_id!r} is not an id of tenant {self.tenant!r}")
        return stored_id[len(self._prefix) :]

    async def create_session(
        self, user_id: str, session_id: str | None = None, **options: Any
    ) -> MemorySession:
        """As :meth:`MemoryManager.create_session`, inside the tenant."""
        sid = session_id if session_id is not None else f"session_{os.urandom(12).hex()}"
        return await self._manager.create_session(
            self._id("user_id", user_id), self._id("session_id", sid), **options
        )

    async def get_or_create_session(
        self, user_id: str, session_id: str | None = None, **options: Any
    ) -> MemorySession:
        """As :meth:`MemoryManager.get_or_create_session`, inside the tenant; without an id,
        the user's default session in this tenant."""
        uid = self._id("user_id", user_id)
        sid = None if session_id is None else self._id("session_id", session_id)
        return await self._manager.get_or_create_session(uid, sid, **options)

    async def get_session(
        self, session_id: str, user_id: str | None = None
    ) -> MemorySession | None:
        """The tenant's session ``session_id`` (``None`` if it has none by that id)."""
        uid = None if user_id is None else self._id("user_id", user_id)
        session = await self._manager.get_session(self._id("session_id", session_id), uid)
        if session is None or not self._mine(session.metadata):
            return None
        return session

    async def fork_session(
        self, session_id: str, new_session_id: str, *, at: str | None = None
    ) -> MemorySession:
        """As :meth:`MemoryManager.fork_session`, both ids inside the tenant."""
        return await self._manager.fork_session(
            self._id("session_id", session_id), self._id("session_id", new_session_id), at=at
        )

    async def list_sessions(
        self,
        user_id: str | None = None,
        status: SessionStatus | str | None = None,
        limit: int | None = 100,
    ) -> list[SessionMetadata]:
        """The tenant's sessions, most recently updated first. Without ``user_id`` this reads
        every stored session's metadata and keeps the tenant's."""
        check_limit("limit", limit)
        if status is not None:
            status = parse_choice(SessionStatus, status, "status")
        view = self._manager.backend
        if user_id is not None:
            found = await view.list_sessions(self._id("user_id", user_id), status, limit)
            return [m for m in found if self._mine(m)]
        everyone = await view.list_sessions(None, status, None)
        return [m for m in everyone if self._mine(m)][:limit]

    async def delete_session(self, session_id: str) -> bool:
        """Delete the tenant's session ``session_id``; False if the tenant has none."""
        session = await self.get_session(session_id)
        if session is None:
            return False
        return await self._manager.backend.delete_session(session.session_id)

    async def erase_user(self, user_id: str) -> dict[str, int]:
        """As :meth:`MemoryManager.erase_user`, for the tenant's user."""
        return await self._manager.erase_user(self._id("user_id", user_id))

    async def get_usage_stats(self) -> dict[str, int]:
        """The tenant's totals: sessions and messages."""
        mine = await self.list_sessions(limit=None)
        return {
            "total_sessions": len(mine),
            "total_messages": sum(m.message_count for m in mine),
        }
