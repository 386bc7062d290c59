"""The session actor: sole owner of one live session's state.

One task per live session handles commands from its mailbox in order. Commands whose work is
pure in-memory bookkeeping (appends, windows over the cached tail, metadata) are written as
synchronous handlers; when the actor is idle and its mailbox is empty, the caller runs such a
handler directly on the actor's behalf ("direct dispatch"). That is safe because the handler
never awaits, so nothing can interleave with it, and it skips two task switches per call.
Everything else (paging from the backend, summaries, backpressure) goes through the mailbox.

The actor keeps the newest messages (the tail) in memory and pages older ones from the
backend; a message leaves the tail only after the batch that holds it has committed.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import anyio

from .._tokens import count_text_tokens, ensure_counted
from .._windows import safe_boundary, window_start
from ..backends.base import Backend, SessionSnapshot
from ..exceptions import (
    MemoryValidationError,
    SessionFailedError,
    SessionNotFoundError,
    SummarizationError,
)
from ..interfaces import (
    ConversationSummary,
    Message,
    MessageRole,
    SessionMetadata,
    SessionStatus,
    Summarizer,
    SummaryType,
)
from . import commands as c
from .flusher import Flusher, Generation
from .mailbox import ActorStopped, Envelope, Mailbox, Reply

if TYPE_CHECKING:
    from .supervisor import RestartPolicy

__all__ = ["ActorSettings", "InvariantBroken", "SessionActor", "ASYNC"]

log = logging.getLogger("langswarm.memory")


class _Async:
    """Returned by a synchronous handler that needs the actor's task to finish the job."""


ASYNC: Final = _Async()

#: Messages kept before a pending summary's cut point, so it can be moved back safely.
EVICTION_MARGIN = 256
CONFIG_KEYS = frozenset({"max_messages", "max_tokens", "auto_summarize_threshold"})
PAGE = 512


class InvariantBroken(Exception):
    """The actor's state is inconsistent; the supervisor must rebuild it."""


@dataclass(frozen=True, slots=True)
class ActorSettings:
    """Per-runtime knobs every session actor reads."""

    mailbox_size: int = 256
    call_timeout: float | None = 30.0
    ttl_seconds: float | None = None
    tail_size: int = 2_000
    summary_max_tokens: int = 512
    count_inline_max: int = 64


class ActorHost:
    """What an actor needs from the runtime around it."""

    flusher: Flusher
    backend: Backend
    settings: ActorSettings
    summarizer: Summarizer
    restart_policy: RestartPolicy

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        raise NotImplementedError

    def on_stopped(self, actor: SessionActor) -> None:
        raise NotImplementedError


def _summary_message(summary: ConversationSummary) -> Message:
    return Message(
        role=MessageRole.SYSTEM,
        content=f"Summary of the earlier conversation:\n{summary.summary_text}",
        timestamp=summary.created_at,
        message_id=f"summary-{summary.summary_id}",
        metadata={"summary_id": summary.summary_id, "covers_through": summary.covers_through},
    )


class SessionActor:
    """State and behaviour of one live session. See the module docstring."""

    def __init__(self, snapshot: SessionSnapshot, host: ActorHost) -> None:
        self.host = host
        self.session_id = snapshot.meta.session_id
        self.mailbox: Mailbox[c.Command] = Mailbox(host.settings.mailbox_size)
        self.busy = False
        self.stopped = False
        self.failed: BaseException | None = None
        self.deleted = False
        self.crash: BaseException | None = None
        self.last_active = anyio.current_time()
        self._held: Envelope[c.Command] | None = None  # received, to serve after a restart
        self._summarizing = False
        self._summary_waiters: list[Reply] = []  # callers of the summary being made
        self._queued_waiters: list[Reply] = []  # manual summaries asked for meanwhile
        self._list_waiters: list[Reply] = []
        self._summary_message: Message | None = None
        self._load(snapshot)

    # -- state ---------------------------------------------------------------------------

    def _load(self, snapshot: SessionSnapshot) -> None:
        self.meta: SessionMetadata = snapshot.meta
        self.tail: list[Message] = snapshot.messages
        self.next_seq = snapshot.next_seq
        self.tail_start = snapshot.next_seq - len(snapshot.messages)
        self.first_seq = snapshot.first_seq
        self.summaries: list[ConversationSummary] = snapshot.summaries
        # (first seq, batch) of writes not yet known to be committed, oldest first.
        self._unpersisted: deque[tuple[int, Generation]] = deque()
        self._last_auto_seq = max(
            (
                int(s.metadata.get("trigger_seq", s.covers_through))
                for s in self.summaries
                if s.summary_type is SummaryType.AUTOMATIC
            ),
            default=0,
        )
        self._summary_due = False
        self._due_end = self.next_seq

    def meta_snapshot(self) -> SessionMetadata:
        return self.meta.copy()

    def _check_invariants(self) -> None:
        if self.tail_start + len(self.tail) != self.next_seq or self.tail_start < self.first_seq:
            raise InvariantBroken(
                f"session {self.session_id}: tail [{self.tail_start}, +{len(self.tail)}) "
                f"does not end at {self.next_seq} or starts before {self.first_seq}"
            )

    @property
    def latest_summary(self) -> ConversationSummary | None:
        return self.summaries[-1] if self.summaries else None

    def _summary_head(self, command: c.Context, budget: int) -> tuple[list[Message], int, int]:
        """The summary message to lead a window with, the budget left, and the first seq
        the window may use."""
        summary = self.latest_summary if command.include_summaries else None
        if summary is None:
            return [], budget, self.first_seq
        message = self._summary_message
        if message is None or message.metadata.get("summary_id") != summary.summary_id:
            message = self._summary_message = _summary_message(summary)
            ensure_counted([message])
        cost = message.token_count or 0
        if cost > budget:
            return [], budget, self.first_seq
        return [message], budget - cost, max(self.first_seq, summary.covers_through)

    # -- calling in ----------------------------------------------------------------------

    def try_direct(self, command: c.Command) -> Any:
        """Run ``command`` now if the actor is idle and can do it without awaiting."""
        if self.busy or self.crash is not None or not self.mailbox.empty:
            return ASYNC
        handler = _SYNC.get(type(command))
        if handler is None or self.stopped or self.failed is not None:
            return ASYNC
        self.busy = True
        try:
            result = handler(self, command)
            if result is not ASYNC:
                self.last_active = anyio.current_time()
            return result
        except InvariantBroken as exc:
            self._crash_from_outside(exc)
            raise SessionFailedError(f"session {self.session_id} crashed: {exc}") from exc
        finally:
            self.busy = False

    def _crash_from_outside(self, exc: BaseException) -> None:
        self.crash = exc
        # Wake the actor's task so the supervisor sees the crash and restarts it.
        self.mailbox.cast_nowait(c.Snapshot())

    async def call(self, command: c.Command) -> Any:
        """Handle ``command`` and return its result (direct dispatch when possible)."""
        result = self.try_direct(command)
        if result is not ASYNC:
            return result
        self._raise_if_gone()
        try:
            return await self.mailbox.call(command, self.host.settings.call_timeout)
        except ActorStopped:
            self._raise_if_gone()
            raise

    def _raise_if_gone(self) -> None:
        if self.failed is not None:
            raise SessionFailedError(
                f"session {self.session_id} crashed more often than its restart limit allows: "
                f"{self.failed}"
            ) from self.failed
        if self.deleted:
            raise SessionNotFoundError(f"session {self.session_id} was deleted")
        if self.stopped:
            raise ActorStopped

    # -- the actor's task ----------------------------------------------------------------

    async def run(self) -> None:
        """Serve the mailbox until stopped; raise on a broken invariant (supervisor restarts)."""
        receive = self.mailbox.receive
        while not self.stopped:
            envelope, self._held = self._held, None
            if envelope is None:
                try:
                    envelope = await receive.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    break
            if self.crash is not None:
                # Crashed from outside (a failed flush): rebuild before serving this one.
                self._held = envelope
                exc, self.crash = self.crash, None
                raise InvariantBroken(str(exc)) from exc
            command, reply = envelope.command, envelope.reply
            self.busy = True
            try:
                result = await self._handle(command)
            except InvariantBroken as exc:
                if reply is not None:
                    reply.set_error(SessionFailedError(f"session {self.session_id} crashed: {exc}"))
                raise
            except Exception as exc:
                if reply is not None:
                    reply.set_error(exc)
            else:
                if reply is not None:
                    reply.set_result(result)
            finally:
                self.busy = False
                self.last_active = anyio.current_time()

    async def _handle(self, command: c.Command) -> Any:
        handler = _SYNC.get(type(command))
        if handler is not None:
            result = handler(self, command)
            if result is not ASYNC:
                return result
        return await _ASYNC_HANDLERS[type(command)](self, command)

    async def recover(self) -> None:
        """Rebuild state from the backend after a crash (the flusher drains first).

        The actor counts as busy meanwhile, so no caller is served from the stale state.
        """
        self.busy = True
        try:
            await self.host.flusher.barrier()
            snapshot = await self.host.backend.load_session(
                self.session_id, tail=self.host.settings.tail_size
            )
        finally:
            self.busy = False
        if snapshot is None:
            self.deleted = True
            self.stopped = True
            return
        self._load(snapshot)

    def fail(self, exc: BaseException) -> None:
        """Past the restart limit: every queued and future call raises."""
        self.failed = exc
        self._drain(SessionFailedError(f"session {self.session_id} failed permanently: {exc}"))

    def stop(self, error: BaseException | None = None) -> None:
        self.stopped = True
        self._drain(error)

    def _drain(self, error: BaseException | None) -> None:
        held, self._held = self._held, None
        if held is not None and held.reply is not None:
            held.reply.set_error(error or ActorStopped())
        self.mailbox.close()
        while True:
            try:
                envelope = self.mailbox.receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if envelope.reply is not None:
                envelope.reply.set_error(error or ActorStopped())
        self.mailbox.receive.close()
        for waiter in self._summary_waiters + self._queued_waiters + self._list_waiters:
            waiter.set_error(error or ActorStopped())
        self._summary_waiters.clear()
        self._queued_waiters.clear()
        self._list_waiters.clear()

    # -- writes --------------------------------------------------------------------------

    def _check_expiry(self, now: datetime) -> None:
        """An idle session past its TTL is gone, even before the registry sweeps it."""
        ttl = self.host.settings.ttl_seconds
        if ttl is None or (now - self.meta.updated_at).total_seconds() < ttl:
            return
        error = SessionNotFoundError(f"session {self.session_id} expired")
        self.host.flusher.delete(self.session_id)
        self.deleted = self.stopped = True
        self.host.on_stopped(self)
        self._drain(error)
        raise error

    def _check_writable(self) -> None:
        if self.meta.status is not SessionStatus.ACTIVE:
            raise MemoryValidationError(
                f"session {self.session_id} is {self.meta.status.value}; it accepts no messages"
            )

    def _append(self, command: c.Append) -> Any:
        messages = command.messages
        n = len(messages)
        now = datetime.now()
        self._check_expiry(now)
        self._check_writable()
        flusher = self.host.flusher
        if not flusher.has_space(n):
            return ASYNC
        first = self.next_seq
        self.tail.extend(messages)
        self.next_seq = first + n
        meta = self.meta
        meta.message_count += n
        meta.updated_at = now
        generation = flusher.append(self.session_id, first, list(messages), self)
        pending = self._unpersisted
        while pending and pending[0][1].committed_for(self.session_id):
            pending.popleft()
        if not pending or pending[-1][1] is not generation:
            pending.append((first, generation))
        self._after_append()
        return generation

    async def _append_async(self, command: c.Append) -> Generation:
        while True:
            await self.host.flusher.wait_for_space(len(command.messages))
            result = self._append(command)
            if result is not ASYNC:
                assert isinstance(result, Generation)
                return result

    def _after_append(self) -> None:
        self._evict_tail()
        threshold = self.meta.auto_summarize_threshold
        if threshold and self.next_seq - self._last_auto_seq >= threshold:
            self._last_auto_seq = self._due_end = self.next_seq
            self._summary_due = True
        if self.meta.max_messages is not None:
            self._trim()
        if self._summary_due and not self._summarizing:
            self._start_summary(SummaryType.AUTOMATIC, self._due_end)
        self._check_invariants()

    def _evict_tail(self) -> None:
        # A session with max_messages keeps that many in memory: trims are then always cut
        # at a boundary checked against the messages themselves.
        keep = max(self.host.settings.tail_size, self.meta.max_messages or 0)
        if len(self.tail) <= 2 * keep:
            return
        pending = self._unpersisted
        while pending and pending[0][1].committed_for(self.session_id):
            pending.popleft()
        persisted = pending[0][0] if pending else self.next_seq
        # A summary waiting to start will check its cut point against these messages.
        floor = self._due_end - EVICTION_MARGIN if self._summary_due else persisted
        drop = min(len(self.tail) - keep, persisted - self.tail_start, floor - self.tail_start)
        if drop > 0:
            del self.tail[:drop]
            self.tail_start += drop

    def _trim(self) -> None:
        """Enforce ``max_messages``, dropping only what the latest summary covers."""
        limit = self.meta.max_messages
        assert limit is not None
        if self.next_seq - self.first_seq <= limit:
            return
        summary = self.latest_summary
        covered = summary.covers_through if summary else self.first_seq
        target = min(self.next_seq - limit, covered)
        if target <= self.tail_start:
            # Only cut where the messages around the cut can be checked (in the tail).
            target = self.tail_start if self.tail and not self.tail[0].is_tool_result else 0
        else:
            target = self.tail_start + safe_boundary(self.tail, target - self.tail_start)
        if target > self.first_seq:
            self.first_seq = target
            if target > self.tail_start:
                del self.tail[: target - self.tail_start]
                self.tail_start = target
            self.host.flusher.trim(self.session_id, target)
            self.host.flusher.touch(self.session_id, self)
        if covered < self.next_seq - limit and not self._summary_due:
            self._summary_due = True
            self._due_end = self.next_seq

    def _update_meta(self, command: c.UpdateMeta) -> Generation:
        updates = command.updates
        if not isinstance(updates, dict):
            raise MemoryValidationError("update_metadata expects a dict")
        config: dict[str, Any] = {}
        for key in CONFIG_KEYS & updates.keys():
            value = updates[key]
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value <= 0
            ):
                raise MemoryValidationError(f"{key} must be a positive int or None")
            config[key] = value
        custom = {k: v for k, v in updates.items() if k not in CONFIG_KEYS}
        _check_serialisable(custom)
        self._check_expiry(datetime.now())
        meta = self.meta
        for key, value in config.items():
            setattr(meta, key, value)
        meta.metadata.update(custom)
        meta.updated_at = datetime.now()
        return self.host.flusher.touch(self.session_id, self)

    def _archive(self, command: c.Archive) -> Generation:
        self.meta.status = SessionStatus.ARCHIVED
        self.meta.updated_at = datetime.now()
        return self.host.flusher.touch(self.session_id, self)

    def _delete(self, command: c.Delete) -> Generation:
        generation = self.host.flusher.delete(self.session_id)
        self.deleted = True
        self.stopped = True
        self.host.on_stopped(self)
        self._drain(SessionNotFoundError(f"session {self.session_id} was deleted"))
        return generation

    def _stop(self, command: c.Stop) -> None:
        self.stopped = True
        self.host.on_stopped(self)
        self._drain(None)

    def _crash(self, command: c.Crash) -> None:
        self.next_seq += 1  # deliberately inconsistent
        self._check_invariants()

    # -- reads ---------------------------------------------------------------------------

    def _snapshot(self, command: c.Snapshot) -> SessionMetadata:
        return self.meta.copy()

    def _get_summaries(self, command: c.GetSummaries) -> list[ConversationSummary] | Reply:
        """The summaries; once a summary being made has landed, if one is (read-your-writes
        for triggered summaries)."""
        if not self._summarizing:
            return list(self.summaries)
        reply = Reply()
        self._list_waiters.append(reply)
        return reply

    def _get_messages(self, command: c.GetMessages) -> Any:
        if self.host.settings.ttl_seconds is not None:
            self._check_expiry(datetime.now())
        limit = command.limit
        if limit is not None and limit <= 0:
            return []
        filtered = command.since is not None or command.roles is not None
        if filtered or limit is None:
            if self.tail_start > self.first_seq:
                return ASYNC
            found = _filter(self.tail, command)
        else:
            if limit > len(self.tail) and self.tail_start > self.first_seq:
                return ASYNC
            found = self.tail[-limit:]
        uncounted = sum(1 for m in found if m.token_count is None)
        if uncounted > self.host.settings.count_inline_max:
            return ASYNC
        if uncounted:
            ensure_counted(found)
        return found

    async def _get_messages_async(self, command: c.GetMessages) -> list[Message]:
        older = await self._load_older(self.first_seq)
        found = _filter(older + self.tail, command)
        uncounted = [m for m in found if m.token_count is None]
        if uncounted:
            await anyio.to_thread.run_sync(ensure_counted, uncounted)
        return found

    async def _load_older(self, start: int) -> list[Message]:
        if start >= self.tail_start:
            return []
        return await self.host.backend.load_messages(
            self.session_id, start=start, stop=self.tail_start
        )

    def _budget(self, command: c.Context) -> int:
        budget = command.max_tokens
        if budget is None:
            budget = self.meta.max_tokens
        if budget is None:
            return sys.maxsize
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
            raise MemoryValidationError("max_tokens must be a non-negative int")
        return budget

    def _context(self, command: c.Context) -> Any:
        if self.host.settings.ttl_seconds is not None:
            self._check_expiry(datetime.now())
        head, budget, floor = self._summary_head(command, self._budget(command))
        lo = self.tail_start
        tail = self.tail
        start, _, exhausted = window_start(tail, max(floor - lo, 0), len(tail), budget)
        if exhausted and lo > floor:
            return ASYNC
        return head + tail[start:] if head else tail[start:]

    async def _context_async(self, command: c.Context) -> list[Message]:
        head, budget, floor = self._summary_head(command, self._budget(command))
        lo = self.tail_start
        messages = self.tail[max(floor - lo, 0) :]
        lo = max(lo, floor)
        while True:
            start, _, exhausted = window_start(messages, 0, len(messages), budget)
            if not exhausted or lo <= floor:
                return head + messages[start:]
            page_start = max(floor, lo - PAGE)
            older = await self.host.backend.load_messages(
                self.session_id, start=page_start, stop=lo
            )
            messages = older + messages
            lo = page_start

    # -- summaries -----------------------------------------------------------------------

    def _create_summary(self, command: c.CreateSummary) -> Reply:
        """Start a summary of everything so far; asked during another, it runs right after."""
        reply = Reply()
        if self._summarizing:
            self._queued_waiters.append(reply)
        else:
            self._summary_waiters.append(reply)
            self._start_summary(command.summary_type)
        return reply

    def _start_summary(self, summary_type: SummaryType, end: int | None = None) -> None:
        """Summarise from the latest summary up to ``end`` (default: everything so far)."""
        previous = self.latest_summary
        start = previous.covers_through if previous else self.first_seq
        start = max(start, self.first_seq)
        trigger = self.next_seq if end is None else end
        end = self.next_seq if end is None else max(min(end, self.next_seq), start)
        if end > self.tail_start:
            end = self.tail_start + safe_boundary(self.tail, end - self.tail_start)
        elif self.tail and self.tail[0].is_tool_result:
            end = start  # the cut cannot be checked here; a later trigger will cover it
        else:
            end = max(end, min(self.tail_start, self.next_seq))
        if end <= start and summary_type is SummaryType.AUTOMATIC:
            self._summary_due = False  # nothing new to cover (the cut moved back)
            return
        recent = self.tail[max(start - self.tail_start, 0) : max(end - self.tail_start, 0)]
        older = (start, min(end, self.tail_start)) if start < self.tail_start else None
        self._summarizing = True
        self._summary_due = False
        self.host.spawn(self._summarize, summary_type, previous, older, recent, end, trigger)

    async def _summarize(
        self,
        summary_type: SummaryType,
        previous: ConversationSummary | None,
        older: tuple[int, int] | None,
        recent: list[Message],
        end: int,
        trigger_seq: int,
    ) -> None:
        """Runs beside the actor on a copy of what it covers; reports back with SummaryDone.

        Messages appended meanwhile are not touched: the summary covers ``[start, end)``
        only, and the actor splices it in when it arrives.
        """
        summary: ConversationSummary | None = None
        error: BaseException | None = None
        try:
            messages: list[Message] = []
            if older is not None:
                messages = await self.host.backend.load_messages(
                    self.session_id, start=older[0], stop=older[1]
                )
            messages += recent
            budget = self.host.settings.summary_max_tokens
            text = await self.host.summarizer.summarize(
                messages, previous=previous, max_tokens=budget
            )
            tokens = await anyio.to_thread.run_sync(count_text_tokens, text)
            covered = (previous.message_count if previous else 0) + len(messages)
            summary = ConversationSummary(
                summary_id=f"{self.session_id}:{end}:{summary_type.value}",
                session_id=self.session_id,
                summary_text=text,
                message_count=covered,
                token_count=tokens,
                created_at=datetime.now(),
                summary_type=summary_type,
                covers_through=end,
                metadata={"trigger_seq": trigger_seq},
            )
        except Exception as exc:
            log.warning("summary of session %s failed: %s", self.session_id, exc)
            error = exc
        with anyio.CancelScope(shield=True), contextlib.suppress(ActorStopped):
            await self.mailbox.cast(c.SummaryDone(summary, error, trigger_seq))

    def _summary_done(self, command: c.SummaryDone) -> None:
        self._summarizing = False
        waiters, self._summary_waiters = self._summary_waiters, []
        summary = command.summary
        if summary is None:
            error = SummarizationError(f"summary failed: {command.error}")
            for waiter in waiters:
                waiter.set_error(error)
            # Retried at the next trigger; appends never see this failure.
        else:
            latest = self.latest_summary
            generation = None
            if latest is None or summary.covers_through > latest.covers_through:
                self.summaries.append(summary)
                generation = self.host.flusher.summary(self.session_id, summary)
            for waiter in waiters:
                waiter.set_result((summary, generation))
            if self.meta.max_messages is not None:
                self._trim()
        if self._queued_waiters:
            self._summary_waiters, self._queued_waiters = self._queued_waiters, []
            self._start_summary(SummaryType.MANUAL)
        elif self._summary_due and summary is not None:
            self._start_summary(SummaryType.AUTOMATIC, self._due_end)
        if not self._summarizing:
            listing, self._list_waiters = self._list_waiters, []
            for waiter in listing:
                waiter.set_result(list(self.summaries))


def _filter(messages: Sequence[Message], command: c.GetMessages) -> list[Message]:
    since, roles, limit = command.since, command.roles, command.limit
    found: list[Message] = [
        m
        for m in messages
        if (since is None or m.timestamp >= since) and (roles is None or m.role in roles)
    ]
    if limit is not None:
        found = found[-limit:]
    return found


def _check_serialisable(values: dict[str, Any]) -> None:
    import msgpack

    try:
        msgpack.packb(values, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MemoryValidationError(
            f"metadata values must be plain data (str, numbers, lists, dicts): {exc}"
        ) from exc


_SYNC: dict[type, Callable[[SessionActor, Any], Any]] = {
    c.Append: SessionActor._append,
    c.GetMessages: SessionActor._get_messages,
    c.Context: SessionActor._context,
    c.UpdateMeta: SessionActor._update_meta,
    c.Archive: SessionActor._archive,
    c.Delete: SessionActor._delete,
    c.GetSummaries: SessionActor._get_summaries,
    c.CreateSummary: SessionActor._create_summary,
    c.Snapshot: SessionActor._snapshot,
    c.Stop: SessionActor._stop,
    c.Crash: SessionActor._crash,
    c.SummaryDone: SessionActor._summary_done,
}

_ASYNC_HANDLERS: dict[type, Callable[[SessionActor, Any], Awaitable[Any]]] = {
    c.Append: SessionActor._append_async,
    c.GetMessages: SessionActor._get_messages_async,
    c.Context: SessionActor._context_async,
}
