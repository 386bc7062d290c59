"""Writing sessions into a store, idempotently and resumably.

The target numbers a message once per id, so sending a message twice stores it once. Before
a session is written, its state in the target decides what is left to do: everything (it is
absent), the messages past those it holds and the fields that differ (it holds this session
in part, or whole), or nothing (it holds another session under that id: reported, skipped).
Writes of many sessions go out together, one batch being stored while the next is gathered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import anyio.abc

from .._export import SessionRecord
from ..backends.base import Backend, SessionSnapshot, SessionWrite, WriteResult
from ..interfaces import Message
from ._common import RETRY
from ._plan import SessionPlan

__all__ = ["ImportReport", "Importer"]

#: A batch holds about this many messages (or this many writes).
BATCH_MESSAGES = 2_000
BATCH_WRITES = 500


@dataclass(slots=True)
class ImportReport:
    """What an import did, session by session."""

    created: int = 0  # sessions new in the target
    updated: int = 0  # sessions the target held in part (or with other fields)
    unchanged: int = 0  # sessions the target held already
    messages: int = 0  # messages stored
    summaries: int = 0  # summaries stored
    failed: dict[str, str] = field(default_factory=dict)  # session id -> why it was skipped

    @property
    def sessions(self) -> int:
        return self.created + self.updated + self.unchanged + len(self.failed)


@dataclass(slots=True)
class _Pending:
    """A session whose writes are under way."""

    plan: SessionPlan
    existed: bool
    changed: bool = False
    writes_left: int = 0
    finished: bool = False


Queued = list[tuple[_Pending, SessionWrite]]


@dataclass(slots=True)
class _Batch:
    """A batch being stored in the background."""

    writes: Queued
    done: anyio.Event = field(default_factory=anyio.Event)
    results: list[WriteResult] | None = None


class Importer:
    """Writes sessions into ``target``: :meth:`begin` a session, :meth:`add` its messages in
    order, :meth:`end` it; :meth:`close` stores what is left. Batches are stored by tasks of
    ``tasks``, one at a time, while the caller carries on."""

    def __init__(self, target: Backend, tasks: anyio.abc.TaskGroup) -> None:
        self._target = target
        self._tasks = tasks
        self._outbox: Queued = []
        self._outbox_messages = 0
        self._storing: _Batch | None = None
        self._current: _Pending | None = None
        self.report = ImportReport()

    async def begin(self, record: SessionRecord) -> int | None:
        """Start importing ``record``; returns the first sequence number still to send, or
        ``None`` when the session is skipped (the target holds another one by its id)."""
        sid = record.meta.session_id
        if any(p.plan.session_id == sid for p, _ in self._outbox):
            await self.flush()
        if self._storing is not None and any(
            p.plan.session_id == sid for p, _ in self._storing.writes
        ):
            await self._settle()
        held = await self._target.load_session(sid, tail=0)
        problem = _conflict(record, held)
        if problem is not None:
            self.report.failed[sid] = problem
            self._current = None
            return None
        plan = SessionPlan(record, held)
        self._current = _Pending(plan, existed=held is not None)
        await self._queue(self._current, plan.opening())
        return plan.next_seq

    async def add(self, seq: int, message: Message) -> None:
        """The next message of the session begun last (in order; those held are skipped)."""
        if self._current is not None:
            await self._queue(self._current, self._current.plan.add(seq, message))

    async def end(self) -> None:
        """The session begun last is complete: queue its last write."""
        pending, self._current = self._current, None
        if pending is not None:
            pending.finished = True
            await self._queue(pending, pending.plan.closing())

    async def close(self) -> ImportReport:
        """Store everything queued (the session begun last included) and wait for it."""
        await self.end()
        await self.flush()
        await self.close_batches()
        return self.report

    async def close_batches(self) -> None:
        """Wait until the batch being stored is stored."""
        await self._settle()

    async def _queue(self, pending: _Pending, writes: list[SessionWrite]) -> None:
        if pending.plan.session_id in self.report.failed:
            return
        for write in writes:
            pending.writes_left += 1
            self._outbox.append((pending, write))
            self._outbox_messages += len(write.messages)
        if self._outbox_messages >= BATCH_MESSAGES or len(self._outbox) >= BATCH_WRITES:
            await self.flush()

    async def flush(self) -> None:
        """Start storing what is queued (after the batch before it is stored)."""
        await self._settle()
        if not self._outbox:
            return
        batch = _Batch(self._outbox)
        self._outbox, self._outbox_messages = [], 0
        self._storing = batch
        self._tasks.start_soon(self._store, batch)

    async def _store(self, batch: _Batch) -> None:
        writes = [write for _, write in batch.writes]
        try:
            # Retried whole: every write in it is idempotent.
            batch.results = await RETRY.run(lambda: self._target.apply(writes), "the target")
        finally:
            batch.done.set()

    async def _settle(self) -> None:
        """Wait for the batch being stored, and account for it."""
        batch, self._storing = self._storing, None
        if batch is None:
            return
        await batch.done.wait()
        if batch.results is None:  # its task failed, and the task group with it
            return
        for (pending, write), result in zip(batch.writes, batch.results, strict=True):
            self._account(pending, write, result)

    def _account(self, pending: _Pending, write: SessionWrite, result: WriteResult) -> None:
        pending.writes_left -= 1
        sid = pending.plan.session_id
        if result.error is not None:
            self.report.failed.setdefault(sid, str(result.error))
        elif sid not in self.report.failed:
            stored = len(write.messages) - len(write.remove)
            self.report.messages += stored
            self.report.summaries += result.summary_stored
            if stored or result.created or result.version_before != result.state.version:
                pending.changed = True
        if pending.finished and pending.writes_left == 0 and sid not in self.report.failed:
            if not pending.existed:
                self.report.created += 1
            elif pending.changed:
                self.report.updated += 1
            else:
                self.report.unchanged += 1


def _conflict(record: SessionRecord, held: SessionSnapshot | None) -> str | None:
    """Why the target's session ``held`` cannot take ``record`` (``None``: it can)."""
    if held is None:
        return None
    if held.incarnation != record.incarnation or held.meta.user_id != record.meta.user_id:
        return "the target holds another session with this id"
    if held.first_seq != record.first_seq or held.next_seq > record.next_seq:
        return "the target's copy of this session has changed since it was imported"
    return None
