"""``MemoryManager``, the global manager, and ``initialize_memory``."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import anyio

from ._backend_view import BackendView
from ._config import RuntimeSettings, build
from ._loop import loop_key
from ._runtime import Runtime, start_in_background
from ._session import MemorySession
from ._session_meta import DEFAULT_PREFIX, new_meta
from ._tenant import TenantView
from ._validate import check_id, parse_choice
from .actors.commands import ForkSeed
from .actors.session import SessionActor
from .backends.base import Backend
from .exceptions import (
    MemoryConfigurationError,
    MemoryError,
    MemoryValidationError,
    SessionExistsError,
    SessionNotFoundError,
    SessionOwnershipError,
)
from .interfaces import Durability, SessionStatus

__all__ = [
    "BackendView",
    "MemoryManager",
    "get_global_memory_manager",
    "initialize_memory",
]


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
        self._runtime: Runtime | None = None  # the ``async with`` block's
        # The global API's: one runtime per event loop that used the manager (threads that
        # each run their own loop share the backend), started on first use in that loop.
        self._runtimes: dict[object, Runtime] = {}
        self._starting: dict[object, anyio.Event] = {}
        self._background: dict[object, Any] = {}
        self._structured: anyio.abc.TaskGroup | None = None
        self._directory = _Directory(self)
        self.backend = BackendView(backend.name, self._ensure)

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
        if (self._runtime is not None and self._runtime.running) or self._here() is not None:
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
        # The runtime drains even when the body failed or was cancelled; the body's own
        # exception then leaves the block as itself, not inside an exception group.
        with anyio.CancelScope(shield=True):
            await runtime.finished.wait()
        try:
            await tg.__aexit__(None, None, None)
        except BaseExceptionGroup as group:
            if exc is None and len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            if exc is None:
                raise

    def _here(self) -> Runtime | None:
        """The running background runtime of the running loop, if there is one."""
        runtime = self._runtimes.get(loop_key())
        return runtime if runtime is not None and runtime.running else None

    async def _ensure(self) -> Runtime:
        """The runtime for the running loop, started in the background if needed."""
        key = loop_key()
        runtime = self._runtime
        if runtime is not None and runtime.running and runtime.key is key:
            return runtime
        while (runtime := self._here()) is None and (starting := self._starting.get(key)):
            await starting.wait()
        if runtime is not None:
            return runtime
        if self._structured is not None:
            raise MemoryError("the manager's runtime belongs to an 'async with' block that ended")
        self._starting[key] = starting = anyio.Event()
        try:
            for old in [k for k, r in self._runtimes.items() if r.finished.is_set()]:
                self._runtimes.pop(old, None)  # their loops ended
                self._background.pop(old, None)
            runtime = Runtime(self._backend, self._settings)
            self._background[key] = start_in_background(runtime)
            await runtime.ready.wait()
            if runtime.error is not None:
                raise runtime.error
            self._runtimes[key] = runtime
            return runtime
        finally:
            del self._starting[key]
            starting.set()

    def _retire(self, runtime: Runtime) -> None:
        """Make handles bound to ``runtime``'s actors re-resolve instead of using it."""
        if runtime.running:
            for actor in list(runtime.registry.live.values()):
                actor.stop()

    async def close(self) -> None:
        """Drain every pending write and stop the running loop's runtime. The manager can be
        used again."""
        if self._structured is not None:
            raise MemoryError("leave the manager's 'async with' block to close it")
        runtime = self._here()
        if runtime is None:
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
        meta = new_meta(
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

    async def fork_session(
        self,
        session_id: str,
        new_session_id: str,
        *,
        at: str | None = None,
        user_id: str | None = None,
    ) -> MemorySession:
        """Fork ``session_id`` into ``new_session_id`` (see :meth:`MemorySession.fork`);
        ``SessionNotFoundError`` if there is no such session."""
        source = await self.get_session(session_id)
        if source is None:
            raise SessionNotFoundError(f"session {session_id} does not exist")
        return await source.fork(new_session_id, at=at, user_id=user_id)

    async def _fork(
        self, source: MemorySession, seed: ForkSeed, new_session_id: str, user_id: str | None
    ) -> MemorySession:
        meta = seed.meta
        fork = new_meta(
            meta.user_id if user_id is None else user_id,
            new_session_id,
            meta.max_messages,
            meta.max_tokens,
            meta.auto_summarize_threshold,
            meta.metadata,
        )
        fork.message_count = len(seed.messages)
        summary = seed.summary
        if summary is not None:
            summary = replace(
                summary,
                summary_id=f"{new_session_id}:{summary.covers_through}:fork",
                session_id=new_session_id,
            )
        runtime = await self._ensure()
        registry = runtime.registry
        if await registry.lookup(new_session_id) is not None:
            raise SessionExistsError(f"session {new_session_id} already exists")
        actor, commit = registry.create(
            fork, exclusive=True, seed=replace(seed, summary=summary, meta=fork)
        )
        await commit.wait(actor.key)
        return MemorySession(self._directory, actor, source.durability)

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

        Without ``session_id`` this is the user's default session (id ``default:<user_id>``;
        that prefix is reserved: no user can take another's default session id).
        Concurrent calls for one id all get the same session. The options apply only when the
        session is created.
        """
        check_id("user_id", user_id)
        sid = session_id if session_id is not None else DEFAULT_PREFIX + user_id
        meta = new_meta(user_id, sid, max_messages, max_tokens, auto_summarize_threshold, metadata)
        mode = self._mode(durability)
        runtime = await self._ensure()
        actor = await runtime.registry.get_or_create(meta)
        if actor.meta.user_id != user_id:
            raise SessionOwnershipError(f"session {sid} belongs to another user")
        return MemorySession(self._directory, actor, mode)

    def tenant(self, name: str) -> TenantView:
        """This manager seen through tenant ``name``'s namespace: every call of the view
        takes, finds, lists and counts only that tenant's users and sessions."""
        return TenantView(self, name)

    async def erase_user(self, user_id: str) -> dict[str, int]:
        """Delete everything stored for ``user_id``: each session with its messages,
        summaries, metadata and index entries, live or not, and return the counts. Repeats
        until storage lists nothing for the user, so a session another process creates
        meanwhile goes too."""
        check_id("user_id", user_id)
        runtime = await self._ensure()
        erased = {"sessions": 0, "messages": 0}
        while found := await self.backend.list_sessions(user_id, limit=500):
            erased["sessions"] += await runtime.registry.delete([m.session_id for m in found])
            erased["messages"] += sum(m.message_count for m in found)
        return erased

    async def cleanup_all_sessions(self, max_age_days: float = 30) -> int:
        """Delete every session not updated for ``max_age_days``; return how many."""
        if not isinstance(max_age_days, int | float) or isinstance(max_age_days, bool):
            raise MemoryValidationError("max_age_days must be a number")
        if max_age_days < 0:
            raise MemoryValidationError("max_age_days must not be negative")
        runtime = await self._ensure()
        cutoff = datetime.now() - timedelta(days=max_age_days)
        return await runtime.registry.delete_idle_since(cutoff)

    async def health(self) -> dict[str, Any]:
        """A readiness report: whether storage answers now (a probe bounded to 2 s, not
        retried), how long an outage has lasted, how far the flusher lags, which sessions
        failed past their restart limit. Never raises for an unreachable store: ``ready`` is
        then False and ``error`` says why. Keys are listed in docs/observability.md."""
        from ._health import report

        try:
            runtime = await self._ensure()
        except MemoryError as exc:
            name = self._backend.name
            return {"ready": False, "backend": name, "reachable": False, "error": str(exc)}
        return await report(runtime)

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

    async def fork(
        self, source: MemorySession, seed: ForkSeed, new_session_id: str, user_id: str | None
    ) -> MemorySession:
        return await self._manager._fork(source, seed, new_session_id, user_id)


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
