"""Write-behind persistence: one flusher per backend, batching every session's writes.

Session actors fold their changes, as they make them, into one pending :class:`SessionWrite`
per session and carry on. The flusher runs as soon as it is free: it cuts everything pending
into one batch, applies it in one backend call, and resolves the batch's :class:`Commit`,
which callers in ``committed`` mode wait on. A lone writer thus waits for one commit and
many concurrent writers share each commit (group commit), with no timer on the critical path.

Transient storage failures are retried with the runtime's policy. A batch holding writes
already acknowledged (``buffered`` mode) is never given up while the runtime runs: writers
meet backpressure instead, and only closing with storage still down abandons them, loudly.
The policy's watch hears of each failure and success, and the watchdog tells it of a batch
storage has not answered for a while, so that an outage is logged once, not per retry.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import anyio
from anyio.abc import TaskStatus

from .._health import STALL_AFTER
from .._loop import suspending
from .._retry import RetryPolicy
from .._telemetry import telemetry
from ..backends.base import Backend, SessionWrite, WriteResult
from ..exceptions import (
    MemoryBackendError,
    MemoryError,
    MemoryOutcomeUnknownError,
    TransientBackendError,
)

__all__ = ["Commit", "Flusher", "FlusherStatistics", "Key"]

log = logging.getLogger("langswarm.memory.flusher")

Key = tuple[str, str]  # (session id, incarnation)


class Commit:
    """The outcome of storing one batch, shared by every write that went into it: an error
    that hit the whole batch, or each session's own :class:`WriteResult`.

    Its writers stop waiting once it is ``settled``, or when the flusher's watchdog finds it
    older than the call timeout (``late``): the batch may still be stored after that.
    """

    __slots__ = ("_done", "born", "error", "late", "results", "settled")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self.born: float | None = None  # when its first write arrived (monotonic seconds)
        self.settled = False
        self.late: BaseException | None = None
        self.error: BaseException | None = None
        self.results: dict[Key, WriteResult] = {}

    def committed_for(self, session_id: str, incarnation: str) -> bool:
        if not self.settled or self.error is not None:
            return False
        result = self.results.get((session_id, incarnation))
        return result is None or result.error is None

    def resolve(self, error: BaseException | None, results: dict[Key, WriteResult]) -> None:
        self.error, self.results, self.settled = error, results, True
        self._done.set()

    def expire(self, error: BaseException) -> None:
        """Release the writers still waiting with ``error`` (the batch carries on)."""
        if not self.settled:
            self.late = error
            self._done.set()

    async def wait(self, key: Key | None = None) -> WriteResult | None:
        """The result for ``key`` once the batch is stored; raise its error (or the batch's,
        or the watchdog's)."""
        suspending()
        await self._done.wait()
        if not self.settled:
            assert self.late is not None
            raise self.late
        if self.error is not None:
            raise self.error
        result = None if key is None else self.results.get(key)
        if result is not None and result.error is not None:
            raise result.error
        return result


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
        writer: str = "",
        capacity: int = 16_384,
        call_timeout: float | None = None,
        retry: RetryPolicy | None = None,
        on_results: Callable[[Sequence[SessionWrite], Sequence[WriteResult] | None], None]
        | None = None,
        shutdown_grace: float = 30.0,
    ) -> None:
        self.backend = backend
        self.writer = writer
        self.capacity = capacity
        self.call_timeout = call_timeout
        self.retry = retry or RetryPolicy()
        self.on_results = on_results
        self.shutdown_grace = shutdown_grace
        self._writes: dict[Key, SessionWrite] = {}  # pending, in arrival order
        self._held: set[Key] = set()  # pending writes already acknowledged
        self._queued = 0  # weight of the pending writes
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

    def write(
        self, session_id: str, incarnation: str, *, weight: int = 1, held: bool = False
    ) -> tuple[SessionWrite, Commit]:
        """The pending write of this session (incarnation) to fold a change into, and the
        commit that will store it. ``held``: the change is acknowledged already."""
        key = (session_id, incarnation)
        if not self._writes:
            self._commit.born = time.monotonic()
        write = self._writes.get(key)
        if write is None:
            write = self._writes[key] = SessionWrite(session_id, incarnation, self.writer)
        if held:
            self._held.add(key)
        self._queued += weight
        if not self._wake.is_set():
            self._wake.set()
        return write, self._commit

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

    async def watch(self) -> None:
        """Until cancelled: tell the retry policy's watch of a batch storage has not answered
        for ``STALL_AFTER`` seconds, and release writers waiting longer than the call
        timeout."""
        timeout = self.call_timeout
        while True:
            await anyio.sleep(min(timeout / 4, 0.5) if timeout is not None else 0.5)
            now = time.monotonic()
            inflight = self._inflight
            sent = None if inflight is None else inflight.sent
            if sent is not None and now - sent > STALL_AFTER and self.retry.watch is not None:
                self.retry.watch.stalled(sent)
            if timeout is None:
                continue
            for commit in (inflight.commit if inflight else None, self._commit):
                if commit is not None and commit.born is not None and now - commit.born > timeout:
                    commit.expire(
                        MemoryOutcomeUnknownError(
                            f"the write was not confirmed within {timeout:g} s; storage is slow "
                            "or unreachable and may still store it (sending it again with the "
                            "same message ids stores nothing twice)"
                        )
                    )

    def lag(self) -> float:
        """Seconds the oldest write not yet stored has waited (0 when none is pending)."""
        inflight = self._inflight
        born = inflight.commit.born if inflight is not None else self._commit.born
        if born is None or (inflight is None and not self._writes):
            return 0.0
        return max(time.monotonic() - born, 0.0)

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
            await self._drain()

    async def _drain(self) -> None:
        with anyio.move_on_after(self.shutdown_grace, shield=True):
            # asyncio.run() ends with a native Task.cancel(), which anyio's shield does not
            # hold off: a batch interrupted that way is finished here first (applying is
            # idempotent), then whatever was queued after it.
            interrupted = self._inflight
            if interrupted is not None:
                self._finish(interrupted, await self._store(interrupted))
            while self._writes:
                await self.flush_once()
        unsaved = self._inflight.held if self._inflight is not None else 0
        unsaved += len(self._held)
        if unsaved:
            log.error(
                "closing with storage unavailable: %d sessions' acknowledged writes were not "
                "stored within %.0f s and are given up",
                unsaved,
                self.shutdown_grace,
                extra={"backend": self.backend.name, "sessions": unsaved},
            )

    async def flush_once(self) -> None:
        """Apply everything pending, batch after batch, until nothing is left.

        The next batch is cut and handed to the backend before the writers of the batch just
        stored resume, so a backend that stores from its own thread is busy with it while the
        event loop runs them.
        """
        batch = self._start()
        while batch is not None:
            outcome = await self._store(batch)
            following = self._start() if not isinstance(outcome, BaseException) else None
            self._finish(batch, outcome)
            batch = following or self._start()

    def _start(self) -> _Batch | None:
        """Cut everything pending into a batch and start storing it."""
        if not self._writes:
            return None
        writes, held = list(self._writes.values()), len(self._held)
        self._writes, self._held = {}, set()
        batch = _Batch(writes, self._queued, self._commit, held, time.monotonic())
        self._commit = Commit()
        self._queued = 0
        try:
            batch.attempt = self.backend.apply(writes)
        except Exception as exc:  # surfaces from the retry loop like any failed attempt
            batch.attempt = _raise(exc)
        self._inflight = batch
        return batch

    def _finish(self, batch: _Batch, outcome: list[WriteResult] | BaseException) -> None:
        """Resolve a stored (or failed) batch: its writers resume, space frees up."""
        self.batches += 1
        results: dict[Key, WriteResult] = {}
        failed = outcome if isinstance(outcome, BaseException) else None
        telemetry.committed(
            self.backend.name, batch.writes, batch.commit.born, batch.started, failed
        )
        if isinstance(outcome, BaseException):
            self.last_error = outcome
            log.error(
                "storing a batch failed for %d sessions: %s",
                len(batch.writes),
                outcome,
                extra={"backend": self.backend.name, "sessions": len(batch.writes)},
            )
            error: BaseException | None = outcome
            if self.on_results is not None:
                self.on_results(batch.writes, None)
        else:
            error = None
            self.persisted_ops += batch.weight
            for write, result in zip(batch.writes, outcome, strict=True):
                results[(write.session_id, write.incarnation)] = result
            if self.on_results is not None:
                self.on_results(batch.writes, outcome)
        batch.commit.resolve(error, results)
        if self._inflight is batch:
            self._inflight = None
        if not self._space.is_set() and self.has_space():
            self._space.set()

    async def _store(self, batch: _Batch) -> list[WriteResult] | BaseException:
        """Await the batch's first attempt, retrying transient failures; shielded."""
        with anyio.CancelScope(shield=True):
            return await self._attempts(batch)
        raise AssertionError("unreachable: a shielded scope is not cancelled")

    async def _attempts(self, batch: _Batch) -> list[WriteResult] | BaseException:
        """The batch's results, or the error that ended its retries. A batch holding
        acknowledged writes is retried for as long as it takes."""
        backoff = (replace(self.retry, budget=None) if batch.held else self.retry).start()
        maybe_stored = False
        while True:
            attempt, batch.attempt = batch.attempt, None
            batch.sent = batch.started if attempt is not None else time.monotonic()
            try:
                results = await (
                    attempt if attempt is not None else self.backend.apply(batch.writes)
                )
            except TransientBackendError as exc:
                maybe_stored = maybe_stored or exc.maybe_applied
                delay = backoff.failed(exc)
                if delay is None:
                    what = f"the {self.backend.name} backend"
                    if maybe_stored:
                        return MemoryOutcomeUnknownError(
                            f"{what} kept failing for {backoff.elapsed:.1f} s and may have "
                            f"stored some of these writes: {exc}"
                        )
                    return backoff.exhausted(what, exc)
                batch.sent = None
                await anyio.sleep(delay)
            except MemoryError as exc:
                return exc
            except Exception as exc:  # a backend bug: fail the batch, keep the runtime
                return MemoryBackendError(f"{self.backend.name} backend error: {exc!r}")
            else:
                backoff.succeeded()
                return results


@dataclass(slots=True)
class _Batch:
    """A cut batch: the writes it stores, their weight, its commit, how many of its writes
    were acknowledged already, when it was cut, the attempt under way and when that attempt
    was sent (``None`` between attempts), in monotonic seconds."""

    writes: list[SessionWrite]
    weight: int
    commit: Commit
    held: int
    started: float
    attempt: Awaitable[list[WriteResult]] | None = None
    sent: float | None = None


async def _raise(exc: BaseException) -> list[WriteResult]:
    raise exc
