"""``MemoryManager``, the global manager, and ``initialize_memory``."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import anyio

from ._config import RuntimeSettings, build
from ._loop import loop_key
from ._runtime import Runtime, start_in_background
from ._session import MemorySession
from ._validate import check_id, check_limit, check_plain, parse_choice
from .actors.session import SessionActor
from .backends.base import Backend
from .exceptions import (
    MemoryConfigurationError,
    MemoryError,
    MemoryValidationError,
    SessionExistsError,
    SessionOwnershipError,
)
from .interfaces import Durability, SessionMetadata, SessionStatus

__all__ = [
    "BackendView",
    "MemoryManager",
    "get_global_memory_manager",
    "initialize_memory",
]

class BackendView:
    """``manager.backend``: storage queries that see every write made before them."""

    def __init__(self, manager: MemoryManager) -> None:
        self._manager = manager

    @property
    def name(self) -> str:
        return self._manager._backend.name

    async def _synced(self) -> Backend:
        runtime = await self._manager._ensure()
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
        runtime = await self._manager._ensure()
        return await runtime.registry.delete([check_id("session_id", session_id)]) > 0


class MemoryManager:
    """Creates, finds and cleans up sessions on one backend.

    Use it either through the global API (``initialize_memory`` then
    ``get_global_memory_manager``), where the runtime starts on first use in the running
    event loop and drains when that loop ends, or as ``async with MemoryManager(...)``,
    where the runtime lives exactly as long as the block.
    """

    def __init__(self, backend: Backend, settings: RuntimeSettings | None = None) -> None:
        self._backend = backend
        self._settings = settings or RuntimeSettings()
        self._runtime: Runtime | None = None
        self._starting: anyio.Event | None = None
        self._background: Any = None
        self._structured: anyio.abc.TaskGroup | None = None
        self._directory = _Directory(self)
        self.backend = BackendView(self)

    @classmethod
    def from_config(
        cls, profile: str | None = None, *, memory: dict[str, Any] | None = None, **options: Any
    ) -> MemoryManager:
        """Build a manager the way ``initialize_memory`` does, without making it global."""
        backend, settings = build(profile, memory, options)
        backend.preflight()
        return cls(backend, settings)

    @property
    def durability(self) -> Durability:
        return self._settings.durability or (
            Durability.COMMITTED if self._backend.persistent else Durability.BUFFERED
        )

    # -- runtime lifecycle ----------------------------------------------------------------

    async def __aenter__(self) -> MemoryManager:
        if self._runtime is not None and self._runtime.running:
            raise MemoryError("this manager's runtime is already running")
        runtime = Runtime(self._backend, self._settings)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            await tg.start(runtime.serve)
        except BaseException:
            await tg.__aexit__(None, None, None)
            raise
        self._structured, self._runtime = tg, runtime
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg, self._structured = self._structured, None
        runtime = self._runtime
        if tg is None or runtime is None:
            return
        self._retire(runtime)
        runtime.stop()
        await tg.__aexit__(exc_type, exc, tb)

    async def _ensure(self) -> Runtime:
        """The runtime for the running loop, started in the background if needed."""
        runtime = self._runtime
        if runtime is not None and runtime.running and runtime.key is loop_key():
            return runtime
        while self._starting is not None:
            await self._starting.wait()
            runtime = self._runtime
            if runtime is not None and runtime.running and runtime.key is loop_key():
                return runtime
        if self._structured is not None:
            raise MemoryError("the manager's runtime belongs to an 'async with' block that ended")
        self._starting = anyio.Event()
        try:
            runtime = Runtime(self._backend, self._settings)
            self._background = start_in_background(runtime)
            await runtime.ready.wait()
            if runtime.error is not None:
                raise runtime.error
            self._runtime = runtime
            return runtime
        finally:
            starting, self._starting = self._starting, None
            starting.set()

    def _retire(self, runtime: Runtime) -> None:
        """Make handles bound to ``runtime``'s actors re-resolve instead of using it."""
        if runtime.running:
            for actor in list(runtime.registry.live.values()):
                actor.stop()

    async def close(self) -> None:
        """Drain every pending write and stop the runtime. The manager can be used again."""
        runtime = self._runtime
        if self._structured is not None:
            raise MemoryError("leave the manager's 'async with' block to close it")
        if runtime is None or not runtime.running or runtime.key is not loop_key():
            return
        self._retire(runtime)
        runtime.stop()
        with anyio.CancelScope(shield=True):
            await runtime.finished.wait()

    async def _flush(self) -> None:
        runtime = await self._ensure()
        await runtime.flusher.barrier()

    async def _activate(self, session_id: str) -> SessionActor | None:
        runtime = await self._ensure()
        return await runtime.registry.lookup(session_id)

    # -- sessions -------------------------------------------------------------------------

    def _new_meta(
        self,
        user_id: str,
        session_id: str | None,
        max_messages: int | None,
        max_tokens: int | None,
        auto_summarize_threshold: int | None,
        metadata: dict[str, Any] | None,
    ) -> SessionMetadata:
        check_id("user_id", user_id)
        if session_id is not None:
            check_id("session_id", session_id)
        check_limit("max_messages", max_messages)
        check_limit("max_tokens", max_tokens)
        check_limit("auto_summarize_threshold", auto_summarize_threshold)
        if metadata is not None and not isinstance(metadata, dict):
            raise MemoryValidationError("metadata must be a dict")
        custom = dict(metadata or {})
        check_plain(custom, "metadata")
        now = datetime.now()
        return SessionMetadata(
            session_id=session_id or f"session_{os.urandom(12).hex()}",
            user_id=user_id,
            created_at=now,
            updated_at=now,
            max_messages=max_messages,
            max_tokens=max_tokens,
            auto_summarize_threshold=auto_summarize_threshold,
            metadata=custom,
        )

    def _mode(self, durability: Durability | str | None) -> Durability:
        """The acknowledgement mode asked for (checked before anything is created)."""
        if durability is None:
            return self.durability
        return parse_choice(Durability, durability, "durability")

    async def create_session(
        self,
        user_id: str,
        session_id: str | None = None,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        auto_summarize_threshold: int | None = None,
        metadata: dict[str, Any] | None = None,
        durability: Durability | str | None = None,
    ) -> MemorySession:
        """Create a session for ``user_id``; raises ``SessionExistsError`` if the id is taken."""
        meta = self._new_meta(
            user_id, session_id, max_messages, max_tokens, auto_summarize_threshold, metadata
        )
        mode = self._mode(durability)
        runtime = await self._ensure()
        registry = runtime.registry
        if session_id is not None and await registry.lookup(session_id) is not None:
            raise SessionExistsError(f"session {session_id} already exists")
        actor, commit = registry.create(meta, exclusive=True)
        if registry.shared or mode is Durability.COMMITTED:
            # On a shared store another process may take the id first: wait for storage.
            await commit.wait(actor.key)
        return MemorySession(self._directory, actor, mode)

    async def get_session(
        self, session_id: str, user_id: str | None = None
    ) -> MemorySession | None:
        """The session with this id, or ``None``. With ``user_id``, it must be theirs."""
        check_id("session_id", session_id)
        actor = await self._activate(session_id)
        if actor is None:
            return None
        if user_id is not None and actor.meta.user_id != user_id:
            raise SessionOwnershipError(f"session {session_id} belongs to another user")
        return MemorySession(self._directory, actor, self.durability)

    async def get_or_create_session(
        self,
        user_id: str,
        session_id: str | None = None,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        auto_summarize_threshold: int | None = None,
        metadata: dict[str, Any] | None = None,
        durability: Durability | str | None = None,
    ) -> MemorySession:
        """The session with this id, created for ``user_id`` if missing.

        Without ``session_id`` this is the user's default session (id ``default:<user_id>``).
        Concurrent calls for one id all get the same session. The options apply only when the
        session is created.
        """
        check_id("user_id", user_id)
        sid = session_id if session_id is not None else f"default:{user_id}"
        meta = self._new_meta(
            user_id, sid, max_messages, max_tokens, auto_summarize_threshold, metadata
        )
        mode = self._mode(durability)
        runtime = await self._ensure()
        actor = await runtime.registry.get_or_create(meta)
        if actor.meta.user_id != user_id:
            raise SessionOwnershipError(f"session {sid} belongs to another user")
        return MemorySession(self._directory, actor, mode)

    async def cleanup_all_sessions(self, max_age_days: float = 30) -> int:
        """Delete every session not updated for ``max_age_days``; return how many."""
        if not isinstance(max_age_days, int | float) or isinstance(max_age_days, bool):
            raise MemoryValidationError("max_age_days must be a number")
        if max_age_days < 0:
            raise MemoryValidationError("max_age_days must not be negative")
        runtime = await self._ensure()
        cutoff = datetime.now() - timedelta(days=max_age_days)
        return await runtime.registry.delete_idle_since(cutoff)

    async def get_system_stats(self) -> dict[str, Any]:
        """Storage totals plus what the runtime is doing right now."""
        runtime = await self._ensure()
        await runtime.flusher.barrier()
        usage = await runtime.backend.get_usage_stats()
        total_sessions = int(usage.get("total_sessions", 0))
        total_messages = int(usage.get("total_messages", 0))
        by_status = usage.get("sessions_by_status", {})
        registry = runtime.registry
        return {
            "backend": runtime.backend.name,
            "durability": runtime.durability.value,
            "total_sessions": total_sessions,
            "active_sessions": int(by_status.get(SessionStatus.ACTIVE.value, 0)),
            "archived_sessions": int(by_status.get(SessionStatus.ARCHIVED.value, 0)),
            "live_sessions": len(registry.live),
            "total_messages": total_messages,
            "avg_messages_per_session": (
                round(total_messages / total_sessions, 2) if total_sessions else 0.0
            ),
            "storage_size_mb": usage.get("storage_size_mb"),
            "activations": registry.activations,
            "passivations": registry.passivations,
            "restarts": registry.restarts,
            "expired_sessions": registry.expired,
            "flusher": runtime.flusher.statistics()._asdict(),
        }


class _Directory:
    """How a manager's session handles find their actors again."""

    __slots__ = ("_manager",)

    def __init__(self, manager: MemoryManager) -> None:
        self._manager = manager

    async def activate(self, session_id: str) -> SessionActor | None:
        return await self._manager._activate(session_id)

    async def flush(self) -> None:
        await self._manager._flush()


_global_manager: MemoryManager | None = None


def initialize_memory(
    profile: str | None = None, *, memory: dict[str, Any] | None = None, **options: Any
) -> MemoryManager:
    """Configure the global memory manager and return it.

    ``profile`` is "development" (in memory), "testing" (SQLite in memory) or "production"
    (SQLite file); ``memory`` is a dict ``{"backend": ..., "config": {...}}`` plus runtime
    options. Synchronous and starts no task: the runtime starts on first use. An unreachable
    backend raises ``MemoryConnectionError`` here.
    """
    global _global_manager
    manager = MemoryManager.from_config(profile, memory=memory, **options)
    _global_manager = manager
    return manager


def get_global_memory_manager() -> MemoryManager:
    """The manager configured by :func:`initialize_memory`."""
    if _global_manager is None:
        raise MemoryConfigurationError(
            "memory is not initialised; call initialize_memory(...) first"
        )
    return _global_manager
