"""Write-behind persistence: one flusher per backend, batching every session's writes.

Session actors hand the flusher small write operations and carry on. The flusher runs as
soon as it is free: it cuts everything pending into one batch (one :class:`SessionWrite` per
session, in order), applies it in one backend call, and resolves the batch's
:class:`Generation`, which callers in ``committed`` mode are waiting on. A lone writer thus
waits for one commit and many concurrent writers share each commit (group commit), with no
timer on the critical path.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from anyio.abc import TaskStatus

from ..backends.base import Backend, SessionWrite, TransientBackendError
from ..exceptions import MemoryBackendError, MemoryCorruptionError, MemoryError
from ..interfaces import ConversationSummary, Message, SessionMetadata

__all__ = ["Flusher", "Generation", "MetaSource", "RetryPolicy"]

log = logging.getLogger("langswarm.memory")


class MetaSource(Protocol):
    """Whoever owns a session's metadata; read when a batch is cut."""

    def meta_snapshot(self) -> SessionMetadata: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff for transient backend errors, within a total time budget."""

    budget: float = 10.0
    base: float = 0.01
    cap: float = 0.5

    def delays(self) -> list[float]:
        delays: list[float] = []
        delay, total = self.base, 0.0
        while total + delay <= self.budget:
            delays.append(delay)
            total += delay
            delay = min(delay * 2, self.cap)
        if total < self.budget:
            delays.append(self.budget - total)
        return delays


class Generation:
    """One batch's outcome, shared by every write that went into it.

    A batch fails as a whole, or (when the backend names them) for some sessions only.
    """

    __slots__ = ("_done", "error", "failed")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self.error: BaseException | None = None
        self.failed: frozenset[str] | None = None  # None: the error, if any, hit everyone

    def committed_for(self, session_id: str) -> bool:
        if not self._done.is_set():
            return False
        return self.error is None or (self.failed is not None and session_id not in self.failed)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def resolve(
        self, error: BaseException | None = None, failed: frozenset[str] | None = None
    ) -> None:
        self.error, self.failed = error, failed
        self._done.set()

    async def wait(self, session_id: str | None = None) -> None:
        """Return once the batch committed (for ``session_id``); raise its error if not."""
        await self._done.wait()
        if self.error is not None and (
            self.failed is None or session_id is None or session_id in self.failed
        ):
            raise self.error


# Operation tags; an op is a tuple (tag, session_id, payload).
APPEND, TOUCH, TRIM, SUMMARY, DELETE = range(5)
Op = tuple[int, str, Any]


def coalesce(ops: Sequence[Op], metas: dict[str, MetaSource]) -> list[SessionWrite]:
    """Fold an ordered op list into one :class:`SessionWrite` per session."""
    writes: dict[str, SessionWrite] = {}
    for tag, sid, payload in ops:
        write = writes.get(sid)
        if write is None or tag == DELETE:
            write = writes[sid] = SessionWrite(session_id=sid, delete=tag == DELETE)
            if tag == DELETE:
                continue
        if tag == APPEND:
            first_seq, messages = payload
            if not write.messages:
                write.first_seq = first_seq
            write.messages.extend(messages)
        elif tag == TOUCH:
            write.meta = payload  # placeholder; replaced by the owner's snapshot below
        elif tag == TRIM:
            write.trim_before = max(write.trim_before or 0, payload)
        elif tag == SUMMARY:
            write.summaries.append(payload)
    for sid, write in writes.items():
        if write.meta is not None or write.messages:
            source = metas.get(sid)
            if source is not None:
                write.meta = source.meta_snapshot()
    return list(writes.values())


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
        self._ops: list[Op] = []
        self._metas: dict[str, MetaSource] = {}
        self._queued = 0  # messages (and other ops) not yet cut into a batch
        self._generation = Generation()
        self._inflight_batch: _Batch | None = None  # the batch being written, if any
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
        """Block until ``n`` more items fit (backpressure)."""
        while not self.has_space(n):
            if self._space.is_set():
                self._space = anyio.Event()
            await self._space.wait()

    def push(self, op: Op, weight: int = 1, meta: MetaSource | None = None) -> Generation:
        """Queue ``op``; callers check :meth:`has_space` first. Returns its batch."""
        self._ops.append(op)
        if meta is not None:
            self._metas[op[1]] = meta
        self._queued += weight
        if not self._wake.is_set():
            self._wake.set()
        return self._generation

    def append(
        self, sid: str, first_seq: int, messages: list[Message], meta: MetaSource
    ) -> Generation:
        return self.push((APPEND, sid, (first_seq, messages)), len(messages), meta)

    def touch(self, sid: str, meta: MetaSource) -> Generation:
        return self.push((TOUCH, sid, True), 1, meta)

    def trim(self, sid: str, before: int) -> Generation:
        return self.push((TRIM, sid, before))

    def summary(self, sid: str, summary: ConversationSummary) -> Generation:
        return self.push((SUMMARY, sid, summary))

    def delete(self, sid: str) -> Generation:
        return self.push((DELETE, sid, None))

    @property
    def pending(self) -> int:
        """Messages (and other ops) queued or being stored, for backpressure."""
        batch = self._inflight_batch
        return self._queued + (batch.weight if batch is not None else 0)

    async def barrier(self) -> None:
        """Return once everything queued before this call is applied (errors included)."""
        if self._ops:
            generation = self._generation
        elif self._inflight_batch is not None:
            generation = self._inflight_batch.generation
        else:
            return
        with contextlib.suppress(MemoryError):
            await generation.wait()

    def statistics(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "capacity": self.capacity,
            "batches": self.batches,
            "persisted_ops": self.persisted_ops,
            "last_error": None if self.last_error is None else str(self.last_error),
        }

    # -- consumer side -------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Flush until cancelled, then drain what is left (shielded, bounded)."""
        try:
            task_status.started()
            while True:
                if not self._ops:
                    await self._wake.wait()
                    self._wake = anyio.Event()
                await self.flush_once()
        finally:
            with anyio.move_on_after(self.shutdown_grace, shield=True):
                # asyncio.run() ends with a native Task.cancel(), which anyio's shield does
                # not hold off: a batch interrupted that way is finished here first (applying
                # is idempotent), then whatever was queued after it.
                interrupted = self._inflight_batch
                if interrupted is not None:
                    self._finish(interrupted, await self._apply_with_retry(interrupted))
                while self._ops:
                    await self.flush_once()

    async def flush_once(self) -> None:
        """Apply everything pending, batch after batch, until nothing is left.

        The next batch is cut and handed to the backend before the writers of the batch just
        stored resume, so a backend that stores from its own thread is busy with it while the
        event loop runs them. After a failure, the failed sessions are dealt with first.
        """
        batch = self._start()
        while batch is not None:
            error = await self._apply_with_retry(batch)
            following = self._start() if error is None else None
            self._finish(batch, error)
            batch = following or self._start()

    def _start(self) -> _Batch | None:
        """Cut everything pending into a batch and start storing it."""
        if not self._ops:
            return None
        ops, metas, self._ops, self._metas = self._ops, self._metas, [], {}
        batch = _Batch(ops, coalesce(ops, metas), self._queued, self._generation)
        self._generation = Generation()
        self._queued = 0
        try:
            batch.attempt = self.backend.apply(batch.writes)
        except Exception as exc:  # surfaces from the retry loop like any failed attempt
            batch.attempt = _raise(exc)
        self._inflight_batch = batch
        return batch

    def _finish(self, batch: _Batch, error: BaseException | None) -> None:
        """Resolve a stored (or failed) batch: its writers resume, space frees up."""
        self.batches += 1
        failed: frozenset[str] | None = None
        if error is None:
            self.persisted_ops += len(batch.ops)
        else:
            self.last_error = error
            if isinstance(error, MemoryCorruptionError) and error.session_ids:
                failed = frozenset(error.session_ids)
            affected = sorted(failed) if failed else [w.session_id for w in batch.writes]
            log.error("memory flush failed for %d sessions: %s", len(affected), error)
            if self.on_failure is not None:
                self.on_failure(affected, error)
        batch.generation.resolve(error, failed)
        if self._inflight_batch is batch:
            self._inflight_batch = None
        if not self._space.is_set() and self.has_space():
            self._space.set()

    async def _apply_with_retry(self, batch: _Batch) -> BaseException | None:
        """Await the batch's first attempt, retrying transient failures; shielded."""
        with anyio.CancelScope(shield=True):
            error = await self._store(batch)
        return error

    async def _store(self, batch: _Batch) -> BaseException | None:
        delays = iter(self.retry.delays())
        while True:
            attempt, batch.attempt = batch.attempt, None
            try:
                await (attempt if attempt is not None else self.backend.apply(batch.writes))
                return None
            except TransientBackendError as exc:
                delay = next(delays, None)
                if delay is None:
                    return MemoryBackendError(
                        f"{self.backend.name} backend kept failing for "
                        f"{self.retry.budget:g} s: {exc}"
                    )
                await anyio.sleep(delay)
            except MemoryError as exc:
                return exc
            except Exception as exc:  # a backend bug: fail the batch, keep the runtime
                return MemoryBackendError(f"{self.backend.name} backend error: {exc!r}")


@dataclass(slots=True)
class _Batch:
    """A cut batch: its ops, the writes they fold into, and the attempt under way."""

    ops: list[Op]
    writes: list[SessionWrite]
    weight: int
    generation: Generation
    attempt: Awaitable[None] | None = None


async def _raise(exc: BaseException) -> None:
    raise exc
