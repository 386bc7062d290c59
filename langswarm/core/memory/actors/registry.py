"""The registry: one live actor per session id, activated on demand, passivated when idle.

Activation follows Orleans' rule of one activation per id: concurrent activations of the same
id wait on one placeholder while the session loads. A periodic sweep decides, in a plain
function, which actors to passivate (idle past the timeout, or least recently used beyond
the live-session cap) and which sessions expired; then it flushes and stops them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._config import RuntimeSettings
from .._loop import cancel_check, clock
from .._telemetry import ERRORS, RESTARTS, telemetry
from ..backends.base import Backend, SessionSnapshot, SessionWrite, WriteResult
from ..exceptions import MemoryError, SessionNotFoundError
from ..interfaces import SessionMetadata, Summarizer
from .commands import ForkSeed
from .consistency import confirm, validate
from .flusher import Commit, Flusher
from .session import Phase, SessionActor
from .supervisor import supervise

__all__ = ["Registry", "choose_passivations"]

log = logging.getLogger("langswarm.memory.registry")


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
        self.writer = flusher.writer
        self.shared = backend.shared
        self.clock = clock()
        self.check_cancelled = cancel_check()
        self._tg = task_group
        self.live: dict[str, SessionActor] = {}
        self._loading: dict[str, _Loading] = {}
        self._creating: dict[str, Commit] = {}  # creations storage has not confirmed yet
        self._wake = anyio.Event()
        self.activations = 0
        self.passivations = 0
        self.restarts = 0
        self.expired = 0
        #: Sessions failed past their restart limit: id -> why (they stay failed).
        self.failed: dict[str, str] = {}
        self._sweep_failing = False

    # -- ActorHost ------------------------------------------------------------------------

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        self._tg.start_soon(fn, *args)

    def serve(self, actor: SessionActor) -> None:
        settings = self.settings
        self._tg.start_soon(
            supervise,
            actor,
            settings.max_restarts,
            settings.restart_period,
            self._count_restart,
            self._count_failure,
        )

    def on_stopped(self, actor: SessionActor) -> None:
        if self.live.get(actor.session_id) is actor:
            del self.live[actor.session_id]

    def _count_restart(self) -> None:
        self.restarts += 1
        telemetry.count(RESTARTS, 1, (("backend", self.backend.name),))

    def _count_failure(self, actor: SessionActor, error: BaseException) -> None:
        self.failed[actor.session_id] = str(error)
        telemetry.count(ERRORS, 1, (("backend", self.backend.name), ("error.type", "session")))

    def mailbox_depth(self) -> int:
        """Commands queued in the live sessions' mailboxes, blocked senders included (read
        from any thread, so from a copy)."""
        depth = 0
        for actor in list(self.live.values()):
            stats = actor.mailbox_statistics()
            if stats is not None:
                depth += stats.buffered + stats.waiting_senders
        return depth

    def on_results(
        self, writes: Sequence[SessionWrite], results: Sequence[WriteResult] | None
    ) -> None:
        """Tell each live actor how its write went (the flusher calls this per batch;
        ``None``: the whole batch failed, and the actors' state may hold what it lost)."""
        live = self.live
        for i, write in enumerate(writes):
            if write.create is not None:
                self._creating.pop(write.session_id, None)
            actor = live.get(write.session_id)
            if (
                actor is not None
                and actor.incarnation == write.incarnation
                and actor.phase is Phase.ACTIVE
            ):
                if results is None:
                    actor.stale()
                else:
                    confirm(actor, write, results[i])

    # -- activation -----------------------------------------------------------------------

    def _start(self, snapshot: SessionSnapshot) -> SessionActor:
        actor = SessionActor(snapshot, self)
        self.live[actor.session_id] = actor
        self.activations += 1
        if len(self.live) > self.settings.max_live_sessions and not self._wake.is_set():
            self._wake.set()
        return actor

    def create(
        self, meta: SessionMetadata, *, exclusive: bool, seed: ForkSeed | None = None
    ) -> tuple[SessionActor, Commit]:
        """Start a session that storage does not hold yet (holding ``seed``'s history, for a
        fork), and queue its creation; the commit refuses it (``SessionExistsError``,
        ``SessionOwnershipError``) if another process created it first."""
        incarnation = os.urandom(8).hex()
        start, messages = (0, []) if seed is None else (seed.start_seq, list(seed.messages))
        summaries = [] if seed is None or seed.summary is None else [seed.summary]
        snapshot = SessionSnapshot(
            meta, messages, start, start + len(messages), summaries, incarnation, 0
        )
        actor = self._start(snapshot)
        write, commit = self.flusher.write(meta.session_id, incarnation, weight=len(messages) or 1)
        write.create = meta
        write.exclusive = exclusive
        write.start_seq = start
        write.messages.extend(messages)
        if summaries:
            write.summary = summaries[0]
        self._creating[meta.session_id] = commit
        return actor, commit

    async def lookup(self, session_id: str) -> SessionActor | None:
        """The live actor for ``session_id``, activating it from storage if needed."""
        while True:
            actor = self.live.get(session_id)
            if actor is not None and actor.phase is not Phase.STOPPED:
                creating = self._creating.get(session_id)
                if creating is not None:
                    # Storage may yet refuse this creation (another process took the id).
                    with contextlib.suppress(MemoryError):
                        await creating.wait()
                    continue
                if not self.shared or actor.phase is not Phase.ACTIVE:
                    return actor
                # Another process may have deleted it, or re-created it for someone else.
                with contextlib.suppress(SessionNotFoundError):
                    await validate(actor)
                    return actor
                continue
            loading = self._loading.get(session_id)
            if loading is None:
                break
            await loading.done.wait()
        loading = self._loading[session_id] = _Loading()
        try:
            snapshot = await self._load(session_id)
            return None if snapshot is None else self._start(snapshot)
        finally:
            del self._loading[session_id]
            loading.done.set()

    async def get_or_create(self, meta: SessionMetadata) -> SessionActor:
        """The session ``meta`` names, created from ``meta`` if storage does not hold it."""
        while True:
            actor = await self.lookup(meta.session_id)
            if actor is not None:
                return actor
            actor, commit = self.create(meta, exclusive=False)
            result = await commit.wait(actor.key)
            if result is not None and result.created:
                return actor
            # Another process created it first (for the same user): use theirs.

    async def _load(self, session_id: str) -> SessionSnapshot | None:
        if self.flusher.pending:
            await self.flusher.barrier()
        snapshot = await self.backend.load_session(session_id, tail=self.settings.tail_size)
        if snapshot is not None and self._expired(snapshot.meta, datetime.now()):
            cutoff = datetime.now() - timedelta(seconds=self.settings.ttl_seconds or 0)
            if await self.backend.delete_sessions([session_id], idle_before=cutoff):
                return None
            snapshot = await self.backend.load_session(session_id, tail=self.settings.tail_size)
        return snapshot

    def _expired(self, meta: SessionMetadata, now: datetime) -> bool:
        ttl = self.settings.ttl_seconds
        return ttl is not None and meta.updated_at + timedelta(seconds=ttl) <= now

    async def delete(
        self, session_ids: Sequence[str], *, idle_before: datetime | None = None
    ) -> int:
        """Delete sessions, live or stored (with ``idle_before``: only those storage finds
        untouched since then); return how many were deleted."""
        await self.flusher.barrier()
        deleted = await self.backend.delete_sessions(session_ids, idle_before=idle_before)
        for sid in session_ids:
            actor = self.live.get(sid)
            if actor is not None and actor.phase is Phase.ACTIVE:
                if idle_before is None:
                    actor.gone(SessionNotFoundError(f"session {sid} was deleted"))
                else:
                    actor.stale()  # deleted, or kept because it is in use: storage says
        return deleted

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
                self._sweep_failed(exc)
            else:
                self._sweep_failing = False

    def _sweep_failed(self, error: Exception) -> None:
        """Log the first of a run of failed sweeps as a WARNING, the rest at DEBUG."""
        name = self.backend.name
        telemetry.count(ERRORS, 1, (("backend", name), ("error.type", "sweep")))
        level = logging.DEBUG if self._sweep_failing else logging.WARNING
        self._sweep_failing = True
        log.log(level, "sweeping idle sessions failed: %s", error, extra={"backend": name})

    async def sweep(self) -> None:
        now = self.clock()
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
        passivated = 0
        for actor in chosen:
            # Skip actors that became active while the flusher drained.
            if actor.last_active <= now and actor.idle and actor.saved:
                actor.stop()
                passivated += 1
        self.passivations += passivated
        log.debug("passivated %d idle sessions", passivated, extra={"backend": self.backend.name})

    async def delete_idle_since(self, cutoff: datetime) -> int:
        """Delete every session, live or stored, that storage finds untouched since
        ``cutoff`` (a session another process still uses is kept); return how many went."""
        await self.flusher.barrier()  # stored times are then as recent as the live ones
        deleted = 0
        for actor in [a for a in self.live.values() if a.meta.updated_at <= cutoff]:
            if actor.phase is Phase.ACTIVE and await self._expire(actor, cutoff):
                deleted += 1
        while True:
            old = await self.backend.list_sessions(updated_before=cutoff, limit=1_000)
            if not old:
                return deleted
            gone = await self.delete([m.session_id for m in old], idle_before=cutoff)
            deleted += gone
            if not gone:
                return deleted  # all of them in use meanwhile

    async def _expire(self, actor: SessionActor, cutoff: datetime) -> bool:
        """End a live session idle since ``cutoff`` if storage agrees it is (or already
        dropped it: Redis expires keys itself); otherwise take in what storage holds."""
        sid = actor.session_id
        if not await self.backend.delete_sessions([sid], idle_before=cutoff):
            stored = await self.backend.load_session(sid, tail=0)
            if stored is not None and stored.incarnation == actor.incarnation:
                actor.stale()  # another process used it meanwhile
                return False
        actor.gone(SessionNotFoundError(f"session {sid} expired"))
        return True
