"""Write-behind persistence: one flusher per backend, batching every session's writes.

Session actors hand the flusher their writes and carry on; the flusher folds them, as they
arrive, into one :class:`SessionWrite` per session. It runs as soon as it is free: it cuts
everything pending into one batch, applies it in one backend call, and resolves the batch's
:class:`Commit`, which callers in ``committed`` mode are waiting on. A lone writer thus waits
for one commit and many concurrent writers share each commit (group commit), with no timer
on the critical path.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import anyio
from anyio.abc import TaskStatus

from .._retry import RetryPolicy
from ..backends.base import Backend, SessionWrite
from ..exceptions import (
    MemoryBackendError,
    MemoryCorruptionError,
    MemoryError,
    MemoryOverloadError,
    TransientBackendError,
)
from ..interfaces import ConversationSummary, Message, SessionMetadata

__all__ = ["Commit", "Flusher", "FlusherStatistics", "MetaSource"]

log = logging.getLogger("langswarm.memory")


class MetaSource(Protocol):
    """Whoever owns a session's metadata; read when a batch is cut."""

    def meta_snapshot(self) -> SessionMetadata: ...


class Commit:
    """The outcome of storing one batch, shared by every write that went into it.

    A batch fails as a whole, or (when the backend names them) for some sessions only.
    """

    __slots__ = ("_done", "error", "failed")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self.error: BaseException | None = None
        self.failed: frozenset[str] | None = None  # None: the error, if any, hit everyone

    def _error_for(self, session_id: str | None) -> BaseException | None:
        if self.error is not None and (
            self.failed is None or session_id is None or session_id in self.failed
        ):
            return self.error
        return None

    def committed_for(self, session_id: str) -> bool:
        return self._done.is_set() and self._error_for(session_id) is None

    def resolve(
        self, error: BaseException | None = None, failed: frozenset[str] | None = None
    ) -> None:
        self.error, self.failed = error, failed
        self._done.set()

    async def wait(self, session_id: str | None = None, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Return once the batch committed (for ``session_id``); raise its error if not, or
        ``MemoryOverloadError`` after ``timeout`` seconds (the write may still be stored)."""
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            await self._done.wait()
        if not self._done.is_set():
            raise MemoryOverloadError(
                f"the write was not confirmed within {timeout} s; storage is stalled (it may "
                "still be stored)"
            )
        error = self._error_for(session_id)
        if error is not None:
            raise error


class FlusherStatistics(NamedTuple):
    pending: int  # writes queued or being stored
    capacity: int  # writes held before writers wait
    batches: int  # batches applied (or failed) so far
    persisted_ops: int  # writes stored so far
    last_error: str | None  # the latest batch failure, if any


class Flusher:
    """Batches writes for one backend; bounded, retrying, draining on shutdown."""

    def __init__(
        self,
        backend: Backend,
        *,
        capacity: int = 16_384,
        retry: RetryPolicy | None = None,
        on_failure: Callable[[Sequence[str], BaseException], None] | None = None,
        shutdown_grace: float = 30.0,
    ) -> None:
        self.backend = backend
        self.capacity = capacity
        self.retry = retry or RetryPolicy()
        self.on_failure = on_failure
        self.shutdown_grace = shutdown_grace
        self._writes: dict[str, SessionWrite] = {}  # per session, in arrival order
        self._sources: dict[str, MetaSource] = {}  # sessions whose metadata the batch stores
        self._queued = 0  # writes not yet cut into a batch
        self._commit = Commit()
        self._inflight: _Batch | None = None
        self._wake = anyio.Event()
        self._space = anyio.Event()
        self._space.set()
        self.batches = 0
        self.persisted_ops = 0
        self.last_error: BaseException | None = None

    # -- producer side -------------------------------------------------------------------

    def has_space(self, n: int = 1) -> bool:
        pending = self.pending
        return pending + n <= self.capacity or pending == 0

    async def wait_for_space(self, n: int = 1) -> None:
        """Block until ``n`` more writes fit (backpressure)."""
        while not self.has_space(n):
            if self._space.is_set():
                self._space = anyio.Event()
            await self._space.wait()

    def _write(self, sid: str, weight: int) -> SessionWrite:
        write = self._writes.get(sid)
        if write is None:
            write = self._writes[sid] = SessionWrite(session_id=sid)
        self._queued += weight
        if not self._wake.is_set():
            self._wake.set()
        return write

    def append(
        self, sid: str, first_seq: int, messages: Sequence[Message], meta: MetaSource
    ) -> Commit:
        """Queue messages stored from ``first_seq`` on (callers check :meth:`has_space`)."""
        write = self._write(sid, len(messages))
        if not write.messages:
            write.first_seq = first_seq
        write.messages.extend(messages)
        self._sources[sid] = meta
        return self._commit

    def touch(self, sid: str, meta: MetaSource) -> Commit:
        """Queue storing the session's metadata as it is when the batch is cut."""
        self._write(sid, 1)
        self._sources[sid] = meta
        return self._commit

    def trim(self, sid: str, before: int) -> Commit:
        write = self._write(sid, 1)
        write.trim_before = max(write.trim_before or 0, before)
        return self._commit

    def summary(self, sid: str, summary: ConversationSummary) -> Commit:
        self._write(sid, 1).summaries.append(summary)
        return self._commit

    def delete(self, sid: str) -> Commit:
        """Queue deleting the session: earlier queued writes to it are moot."""
        self._write(sid, 1)
        self._writes[sid] = SessionWrite(session_id=sid, delete=True)
        self._sources.pop(sid, None)
        return self._commit

    @property
    def pending(self) -> int:
        """Writes queued or being stored, for backpressure."""
        batch = self._inflight
        return self._queued + (batch.weight if batch is not None else 0)

    async def barrier(self) -> None:
        """Return once everything queued before this call is applied (errors included)."""
        if self._writes:
            commit = self._commit
        elif self._inflight is not None:
            commit = self._inflight.commit
        else:
            return
        with contextlib.suppress(MemoryError):
            await commit.wait()

    def statistics(self) -> FlusherStatistics:
        error = None if self.last_error is None else str(self.last_error)
        return FlusherStatistics(
            self.pending, self.capacity, self.batches, self.persisted_ops, error
        )

    # -- consumer side -------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Flush until cancelled, then drain what is left (shielded, bounded)."""
        try:
            task_status.started()
            while True:
                if not self._writes:
                    await self._wake.wait()
                    self._wake = anyio.Event()
                await self.flush_once()
        finally:
            with anyio.move_on_after(self.shutdown_grace, shield=True):
                # asyncio.run() ends with a native Task.cancel(), which anyio's shield does
                # not hold off: a batch interrupted that way is finished here first (applying
                # is idempotent), then whatever was queued after it.
                interrupted = self._inflight
                if interrupted is not None:
                    self._finish(interrupted, await self._store(interrupted))
                while self._writes:
                    await self.flush_once()

    async def flush_once(self) -> None:
        """Apply everything pending, batch after batch, until nothing is left.

        The next batch is cut and handed to the backend before the writers of the batch just
        stored resume, so a backend that stores from its own thread is busy with it while the
        event loop runs them. After a failure, the failed sessions are dealt with first.
        """
        batch = self._start()
        while batch is not None:
            error = await self._store(batch)
            following = self._start() if error is None else None
            self._finish(batch, error)
            batch = following or self._start()

    def _start(self) -> _Batch | None:
        """Cut everything pending into a batch and start storing it."""
        if not self._writes:
            return None
        writes, sources = self._writes, self._sources
        self._writes, self._sources = {}, {}
        for sid, write in writes.items():
            source = sources.get(sid)
            if source is not None:
                write.meta = source.meta_snapshot()
        batch = _Batch(list(writes.values()), self._queued, self._commit)
        self._commit = Commit()
        self._queued = 0
        try:
            batch.attempt = self.backend.apply(batch.writes)
        except Exception as exc:  # surfaces from the retry loop like any failed attempt
            batch.attempt = _raise(exc)
        self._inflight = batch
        return batch

    def _finish(self, batch: _Batch, error: BaseException | None) -> None:
        """Resolve a stored (or failed) batch: its writers resume, space frees up."""
        self.batches += 1
        failed: frozenset[str] | None = None
        if error is None:
            self.persisted_ops += batch.weight
        else:
            self.last_error = error
            if isinstance(error, MemoryCorruptionError) and error.session_ids:
                failed = frozenset(error.session_ids)
            affected = sorted(failed) if failed else [w.session_id for w in batch.writes]
            log.error("memory flush failed for %d sessions: %s", len(affected), error)
            if self.on_failure is not None:
                self.on_failure(affected, error)
        batch.commit.resolve(error, failed)
        if self._inflight is batch:
            self._inflight = None
        if not self._space.is_set() and self.has_space():
            self._space.set()

    async def _store(self, batch: _Batch) -> BaseException | None:
        """Await the batch's first attempt, retrying transient failures; shielded."""
        with anyio.CancelScope(shield=True):
            return await self._attempts(batch)
        raise AssertionError("unreachable: a shielded scope is not cancelled")

    async def _attempts(self, batch: _Batch) -> BaseException | None:
        """The batch's outcome: ``None`` once stored, else the error that ended the retries."""
        backoff = self.retry.start()
        while True:
            attempt, batch.attempt = batch.attempt, None
            try:
                await (attempt if attempt is not None else self.backend.apply(batch.writes))
                return None
            except TransientBackendError as exc:
                delay = backoff.next_delay()
                if delay is None:
                    return backoff.exhausted(f"the {self.backend.name} backend", exc)
                await anyio.sleep(delay)
            except MemoryError as exc:
                return exc
            except Exception as exc:  # a backend bug: fail the batch, keep the runtime
                return MemoryBackendError(f"{self.backend.name} backend error: {exc!r}")


@dataclass(slots=True)
class _Batch:
    """A cut batch: the writes it stores, their weight, its commit and the attempt under way."""

    writes: list[SessionWrite]
    weight: int
    commit: Commit
    attempt: Awaitable[None] | None = None


async def _raise(exc: BaseException) -> None:
    raise exc
