"""The session actor: sole owner of one live session's state.

Commands to a session are handled one at a time, in order. Most are pure bookkeeping on the
state in memory and never await; when the actor has nothing queued, the caller runs such a
command itself, on the actor's behalf ("direct dispatch"): nothing can interleave with a
handler that never awaits, and it spares two task switches per call. A command that must wait
(for storage to page in older messages, for room in the flusher), or that arrives while
others are queued, goes through the actor's mailbox instead. The mailbox and the task that
serves it exist only while there is queued work, so an idle session costs its state alone.

Lifecycle: an actor is ``ACTIVE`` until it is passivated or the runtime closes (``STOPPED``:
callers find the session again), its session is deleted or expires (``DELETED``), or it
crashes more often than its restart limit (``FAILED``). A crash (``CRASHED``) is repaired by
the supervisor, which rebuilds the state from storage. Every end goes through
:meth:`SessionActor.terminate`, which answers everything still waiting.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, cast

from .._loop import schedule_point
from ..backends.base import Backend, SessionSnapshot
from ..exceptions import MemoryError, SessionFailedError, SessionNotFoundError
from ..interfaces import SessionMetadata, Summarizer
from . import commands as c
from .consistency import validate
from .dispatch import ASYNC_HANDLERS, LATER, SYNC_HANDLERS
from .mailbox import ActorStopped, Envelope, Mailbox, MailboxStatistics
from .summaries import SummaryScheduler
from .tail import InvariantBroken, MessageTail

if TYPE_CHECKING:
    from .._config import RuntimeSettings
    from .flusher import Flusher

__all__ = ["ActorHost", "Phase", "SessionActor"]

log = logging.getLogger("langswarm.memory")

R = TypeVar("R")


class Phase(Enum):
    ACTIVE = "active"
    CRASHED = "crashed"  # to be rebuilt from storage by the supervisor
    STOPPED = "stopped"  # passivated or shut down: callers find the session again
    DELETED = "deleted"  # the session is gone
    FAILED = "failed"  # crashed past the restart limit


class ActorHost(Protocol):
    """What an actor needs from the runtime around it."""

    flusher: Flusher
    backend: Backend
    settings: RuntimeSettings
    summarizer: Summarizer
    #: This runtime's name in storage (who made a change).
    writer: str
    #: Whether other processes may change the sessions (reads then check what is held).
    shared: bool
    #: The event loop's clock (``anyio.current_time``).
    clock: Callable[[], float]
    #: The event loop's check for a cancelled scope (:func:`.._loop.cancel_check`).
    check_cancelled: Callable[[], Awaitable[None]]

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None: ...

    def serve(self, actor: SessionActor) -> None:
        """Start the task that serves ``actor``'s mailbox (under supervision)."""

    def on_stopped(self, actor: SessionActor) -> None: ...


_GONE: Final = (Phase.STOPPED, Phase.DELETED, Phase.FAILED)


class SessionActor:
    """State and behaviour of one live session. See the module docstring."""

    __slots__ = (
        "_inbox",
        "_reason",
        "host",
        "incarnation",
        "last_active",
        "meta",
        "phase",
        "restarts",
        "session_id",
        "summaries",
        "tail",
        "version",
    )

    def __init__(self, snapshot: SessionSnapshot, host: ActorHost) -> None:
        self.host = host
        self.session_id = snapshot.meta.session_id
        self.phase = Phase.ACTIVE
        self.last_active = self.host.clock()
        self.restarts: deque[float] | None = None  # crash times, kept by the supervisor
        self._inbox: Mailbox[c.Command[Any]] | None = None
        self._reason: BaseException | None = None  # why it crashed, failed or was deleted
        self.load(snapshot)

    def load(self, snapshot: SessionSnapshot) -> None:
        """Build the state from storage."""
        self.summaries = SummaryScheduler(snapshot.summaries)
        self.reload(snapshot)

    def reload(self, snapshot: SessionSnapshot) -> None:
        """Take what storage holds now (summaries in progress and their callers carry on)."""
        self.incarnation = snapshot.incarnation
        #: The stored version the state reflects; ``None`` once it may be out of date.
        self.version: int | None = snapshot.version
        self.meta: SessionMetadata = snapshot.meta
        self.tail = MessageTail(
            (self.session_id, self.incarnation),
            snapshot.messages,
            snapshot.first_seq,
            snapshot.next_seq,
        )
        self.summaries.adopt(snapshot.summaries)

    @property
    def key(self) -> tuple[str, str]:
        """How the flusher knows this session: its id and incarnation."""
        return (self.session_id, self.incarnation)

    def stale(self) -> None:
        """Storage may hold changes this state lacks: rebuild it before it is read again."""
        if self.version is not None and self.phase is Phase.ACTIVE:
            self.version = None
            self.tell(c.Refresh())

    @property
    def idle(self) -> bool:
        """Nothing queued or running: the actor can be passivated once its writes are saved."""
        return self.phase is Phase.ACTIVE and self._inbox is None and not self.summaries.running

    @property
    def saved(self) -> bool:
        """Every write the actor accepted is stored."""
        return self.tail.all_saved()

    def mailbox_statistics(self) -> MailboxStatistics | None:
        """The mailbox's figures while the actor has queued work (``None`` when idle)."""
        return None if self._inbox is None else self._inbox.statistics()

    # -- calling in ----------------------------------------------------------------------

    async def ask(self, command: c.Command[R]) -> R:
        """Handle ``command`` and return its result: directly when the actor is idle and the
        command needs no waiting, through the mailbox otherwise."""
        await schedule_point(self.host.check_cancelled)
        if isinstance(command, c.Read) and self.host.shared:
            await validate(self)
        if self._inbox is None and self.phase is Phase.ACTIVE:
            result = self._now(command)
            if result is not LATER:
                return cast(R, result)
        return await self.post(command)

    def tell(self, command: c.Command[None]) -> None:
        """Hand over ``command`` without waiting for it (used from beside the actor)."""
        idle = self._inbox is None and self.phase is Phase.ACTIVE
        if idle and self._now(command) is not LATER:
            return
        if self.phase not in _GONE:
            inbox = self._inbox or self._open_inbox()
            inbox.cast_nowait(command)

    def _now(self, command: c.Command[Any]) -> Any:
        handler = SYNC_HANDLERS.get(type(command))
        if handler is None:
            return LATER
        try:
            result = handler(self, command)
        except InvariantBroken as exc:
            self.crash(exc)
            raise SessionFailedError(f"session {self.session_id} crashed: {exc}") from exc
        if result is not LATER:
            self.last_active = self.host.clock()
        return result

    async def post(self, command: c.Command[R]) -> R:
        self.raise_if_gone()
        inbox = self._inbox or self._open_inbox()
        try:
            result: R = await inbox.call(command, self.host.settings.call_timeout)
        except ActorStopped:
            self.raise_if_gone()
            raise
        return result

    def _open_inbox(self) -> Mailbox[c.Command[Any]]:
        inbox: Mailbox[c.Command[Any]] = Mailbox(self.host.settings.mailbox_size)
        self._inbox = inbox
        self.host.serve(self)
        return inbox

    def raise_if_gone(self) -> None:
        if self.phase is Phase.FAILED:
            raise SessionFailedError(
                f"session {self.session_id} crashed more often than its restart limit allows: "
                f"{self._reason}"
            ) from self._reason
        if self.phase is Phase.DELETED:
            if isinstance(self._reason, MemoryError):
                raise self._reason
            raise SessionNotFoundError(f"session {self.session_id} was deleted")
        if self.phase is Phase.STOPPED:
            raise ActorStopped

    # -- the mailbox's task --------------------------------------------------------------

    async def run(self) -> None:
        """Serve queued commands until none is left, then retire the mailbox; raise
        ``InvariantBroken`` on a crash (the supervisor rebuilds and calls again)."""
        while True:
            if self.phase is Phase.CRASHED:
                raise InvariantBroken(str(self._reason))
            inbox = self._inbox
            if self.phase is not Phase.ACTIVE or inbox is None:
                return
            envelope = inbox.take_nowait()
            if envelope is None:
                self._inbox = None  # idle again: callers dispatch directly
                inbox.close()
                return
            await self._serve(envelope)

    async def _serve(self, envelope: Envelope[c.Command[Any]]) -> None:
        command, reply = envelope.command, envelope.reply
        try:
            handler = ASYNC_HANDLERS.get(type(command))
            if handler is not None:
                result = await handler(self, command)
            else:
                result = SYNC_HANDLERS[type(command)](self, command)
        except InvariantBroken as exc:
            if reply is not None:
                reply.set_error(SessionFailedError(f"session {self.session_id} crashed: {exc}"))
            self.crash(exc)
            raise
        except Exception as exc:
            if reply is not None:
                reply.set_error(exc)
        else:
            if reply is not None:
                reply.set_result(result)
        finally:
            self.last_active = self.host.clock()

    # -- lifecycle -----------------------------------------------------------------------

    def crash(self, error: BaseException) -> None:
        """The state can no longer be trusted: rebuild it from storage before serving more."""
        if self.phase is not Phase.ACTIVE:
            return
        self.phase, self._reason = Phase.CRASHED, error
        if self._inbox is None:
            self._open_inbox()

    async def recover(self) -> None:
        """Rebuild the state from storage once pending writes have been applied."""
        snapshot = await self.fetch()
        if snapshot is not None:
            self.load(snapshot)
            self.phase = Phase.ACTIVE

    async def fetch(self) -> SessionSnapshot | None:
        """What storage holds for this session once our pending writes are applied;
        ``None`` (and the actor ends) when the session is gone or is another incarnation."""
        await self.host.flusher.barrier()
        snapshot = await self.host.backend.load_session(
            self.session_id, tail=self.host.settings.tail_size
        )
        if snapshot is None or snapshot.incarnation != self.incarnation:
            self.gone(SessionNotFoundError(f"session {self.session_id} was deleted"))
            return None
        return snapshot

    def terminate(self, phase: Phase, error: BaseException | None = None) -> None:
        """End the actor: every queued and waiting caller gets ``error`` (``ActorStopped``,
        which makes a caller find the session again, by default)."""
        if self.phase in _GONE:
            return
        self.phase, self._reason = phase, error
        if phase is not Phase.FAILED:
            self.host.on_stopped(self)
        answer = error or ActorStopped()
        inbox, self._inbox = self._inbox, None
        for envelope in inbox.close() if inbox is not None else []:
            if envelope.reply is not None:
                envelope.reply.set_error(answer)
        self.summaries.fail_all(answer)

    def gone(self, error: SessionNotFoundError) -> None:
        """The session was deleted or expired: callers get ``error``."""
        self.terminate(Phase.DELETED, error)

    def stop(self, error: BaseException | None = None) -> None:
        """Passivate, or shut down with the runtime: callers will find the session again
        (those already waiting get ``error``, if given)."""
        self.terminate(Phase.STOPPED, error)

    def fail(self, error: BaseException) -> None:
        """Past the restart limit: every queued and future call raises."""
        log.error("session %s failed permanently: %s", self.session_id, error)
        self.terminate(
            Phase.FAILED,
            SessionFailedError(f"session {self.session_id} failed permanently: {error}"),
        )
