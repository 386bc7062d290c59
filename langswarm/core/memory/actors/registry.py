"""The registry: one live actor per session id, activated on demand, passivated when idle.

Activation follows Orleans' rule of one activation per id: concurrent activations of the same
id wait on one placeholder while the session loads. A periodic sweep decides, in a plain
function, which actors to passivate (idle past the timeout, or least recently used beyond
the live-session cap) and which sessions expired; then it flushes and stops them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._config import RuntimeSettings
from ..backends.base import Backend, SessionSnapshot
from ..exceptions import SessionExistsError
from ..interfaces import SessionMetadata, Summarizer
from . import commands as c
from .flusher import Commit, Flusher
from .session import Phase, SessionActor
from .supervisor import supervise

__all__ = ["Registry", "choose_passivations"]

log = logging.getLogger("langswarm.memory")


class _Loading:
    """Placeholder for a session being activated."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = anyio.Event()


def choose_passivations(
    actors: Sequence[SessionActor], now: float, idle_timeout: float, max_live: int
) -> list[SessionActor]:
    """Which actors to passivate: idle ones, then the least recently used beyond the cap.

    Actors with queued commands or a summary in progress stay.
    """
    quiet = [a for a in actors if a.idle]
    chosen = {id(a): a for a in quiet if now - a.last_active >= idle_timeout}
    excess = len(actors) - len(chosen) - max_live
    if excess > 0:
        for actor in sorted(quiet, key=lambda a: a.last_active):
            if excess <= 0:
                break
            if id(actor) not in chosen:
                chosen[id(actor)] = actor
                excess -= 1
    return list(chosen.values())


class Registry:
    """Owns the live session actors of one runtime (and is their ``ActorHost``)."""

    def __init__(
        self,
        backend: Backend,
        flusher: Flusher,
        settings: RuntimeSettings,
        summarizer: Summarizer,
        task_group: TaskGroup,
    ) -> None:
        self.backend = backend
        self.flusher = flusher
        self.settings = settings
        self.summarizer = summarizer
        self._tg = task_group
        self.live: dict[str, SessionActor] = {}
        self._loading: dict[str, _Loading] = {}
        self._wake = anyio.Event()
        self.activations = 0
        self.passivations = 0
        self.restarts = 0
        self.expired = 0

    # -- ActorHost ------------------------------------------------------------------------

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        self._tg.start_soon(fn, *args)

    def serve(self, actor: SessionActor) -> None:
        settings = self.settings
        self._tg.start_soon(
            supervise, actor, settings.max_restarts, settings.restart_period, self._count_restart
        )

    def on_stopped(self, actor: SessionActor) -> None:
        if self.live.get(actor.session_id) is actor:
            del self.live[actor.session_id]

    def _count_restart(self) -> None:
        self.restarts += 1

    # -- activation -----------------------------------------------------------------------

    def _start(self, snapshot: SessionSnapshot) -> SessionActor:
        actor = SessionActor(snapshot, self)
        self.live[actor.session_id] = actor
        self.activations += 1
        if len(self.live) > self.settings.max_live_sessions and not self._wake.is_set():
            self._wake.set()
        return actor

    def new(self, meta: SessionMetadata) -> tuple[SessionActor, Commit]:
        """Start a brand-new session known not to exist (a fresh random id)."""
        actor = self._start(SessionSnapshot(meta, [], 0, 0, []))
        return actor, self.flusher.touch(meta.session_id, actor)

    async def lookup(
        self, session_id: str, create: SessionMetadata | None = None, exclusive: bool = False
    ) -> tuple[SessionActor | None, Commit | None]:
        """The live actor for ``session_id``, activating it from storage if needed.

        With ``create``, a missing session is created from that metadata (and the creating
        batch returned); with ``exclusive`` too, an existing one raises ``SessionExistsError``.
        """
        while True:
            actor = self.live.get(session_id)
            if actor is not None and actor.phase is not Phase.STOPPED:
                if exclusive:
                    raise SessionExistsError(f"session {session_id} already exists")
                return actor, None
            loading = self._loading.get(session_id)
            if loading is None:
                break
            await loading.done.wait()
        loading = self._loading[session_id] = _Loading()
        try:
            return await self._activate(session_id, create, exclusive)
        finally:
            del self._loading[session_id]
            loading.done.set()

    async def _activate(
        self, session_id: str, create: SessionMetadata | None, exclusive: bool
    ) -> tuple[SessionActor | None, Commit | None]:
        if self.flusher.pending:
            await self.flusher.barrier()
        snapshot = await self.backend.load_session(session_id, tail=self.settings.tail_size)
        if snapshot is not None and self._expired(snapshot.meta, datetime.now()):
            await self.backend.delete_sessions([session_id])
            snapshot = None
        if snapshot is not None:
            if exclusive:
                raise SessionExistsError(f"session {session_id} already exists")
            return self._start(snapshot), None
        if create is not None:
            return self.new(create)
        return None, None

    def _expired(self, meta: SessionMetadata, now: datetime) -> bool:
        ttl = self.settings.ttl_seconds
        return ttl is not None and meta.updated_at + timedelta(seconds=ttl) <= now

    async def delete(self, session_ids: Sequence[str]) -> int:
        """Delete sessions, live or stored; return how many existed."""
        await self.flusher.barrier()
        existed = 0
        for sid in session_ids:
            actor = self.live.get(sid)
            if actor is not None and actor.phase is Phase.ACTIVE:
                await actor.ask(c.Delete())
                existed += 1
        await self.flusher.barrier()
        stored = [sid for sid in session_ids if sid not in self.live]
        existed += await self.backend.delete_sessions(stored) if stored else 0
        return existed

    # -- sweeping -------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Passivate idle and excess actors and expire sessions, until cancelled."""
        task_status.started()
        while True:
            with anyio.move_on_after(self.settings.sweep_interval):
                await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self.sweep()
            except Exception as exc:  # keep sweeping; a backend hiccup is not fatal
                log.warning("registry sweep failed: %s", exc)

    async def sweep(self) -> None:
        now = anyio.current_time()
        settings = self.settings
        chosen = choose_passivations(
            list(self.live.values()), now, settings.idle_timeout, settings.max_live_sessions
        )
        if settings.ttl_seconds is not None:
            cutoff = datetime.now() - timedelta(seconds=settings.ttl_seconds)
            self.expired += await self.delete_idle_since(cutoff)
        if not chosen:
            return
        await self.flusher.barrier()
        for actor in chosen:
            # Skip actors that became active while the flusher drained.
            if actor.last_active <= now and actor.idle and actor.saved:
                actor.stop()
                self.passivations += 1

    async def delete_idle_since(self, cutoff: datetime) -> int:
        """Delete every session (live or stored) not updated since ``cutoff``.

        Live sessions are judged by their own metadata: storage may already have dropped
        them (Redis expires keys itself) and then lists nothing for them.
        """
        idle = [sid for sid, actor in self.live.items() if actor.meta.updated_at <= cutoff]
        deleted = await self.delete(idle) if idle else 0
        await self.flusher.barrier()  # stored metadata is then as recent as the live one
        while True:
            old = await self.backend.list_sessions(updated_before=cutoff, limit=1_000)
            if not old:
                return deleted
            deleted += await self.delete([m.session_id for m in old])
