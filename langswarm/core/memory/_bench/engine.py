"""Runs a :class:`~.workload.Workload` against the memory runtime and measures it.

Phases: *setup* loads the tokenizer and creates the sessions (with ``prefill`` history),
*run* is the measured phase, *drain* waits until every write is stored and reads the storage
totals. Only *run* counts towards throughput; setup and drain are timed separately.

Measuring must cost the measured code little. A timed call appends one integer (its duration
in nanoseconds) to a list; a ticker task, five times a second, folds those lists into HDR
histograms (value counts first, so each distinct microsecond value is one ``record_value``)
and closes one-second throughput buckets. Drivers yield to the loop once per step, as an
application waiting on a model would, so a backend whose calls never block (the in-memory
one, buffered) still lets every session and the ticker run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Final

import anyio
import anyio.lowlevel
import sniffio
from hdrh.histogram import HdrHistogram

from .._formats import create_openai_message
from .._manager import MemoryManager
from .._session import MemorySession
from .._tokens import get_encoding
from .workload import (
    GET_CONTEXT,
    GET_MESSAGES,
    HISTORY_LIMIT,
    OPERATIONS,
    TURN,
    SessionPlan,
    Step,
    Workload,
    WorkloadGenerator,
)

__all__ = [
    "CREATE_SESSION",
    "BenchResult",
    "Bucket",
    "ErrorCount",
    "Snapshot",
    "new_histogram",
    "run",
    "run_workload",
]

#: Timed during setup; reported apart from the measured operations.
CREATE_SESSION: Final = "create_session"
TICK: Final = 0.2
TICKS_PER_BUCKET: Final = 5
#: Histogram range in microseconds: 1 µs to 10 minutes, 3 significant digits.
HIGHEST_US: Final = 600_000_000
SETUP_PARALLELISM: Final = 256

SETUP: Final = "setup"
RUN: Final = "run"
DRAIN: Final = "drain"


def new_histogram() -> Any:
    """An empty latency histogram in microseconds."""
    return HdrHistogram(1, HIGHEST_US, 3)


def record_batch(samples_ns: list[int], *histograms: Any) -> None:
    """Record nanosecond samples into ``histograms`` (microseconds).

    Each value is first cut to its top 11 bits, the resolution of a 3-digit HDR histogram,
    so values the histogram cannot tell apart collapse into one ``record_value`` call.
    """
    micros = (ns // 1000 for ns in samples_ns)
    cut = Counter([u >> s << s if (s := u.bit_length() - 11) > 0 else u for u in micros])
    for value, count in cut.items():
        us = 1 if value < 1 else min(value, HIGHEST_US)
        for histogram in histograms:
            histogram.record_value(us, count)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the progress display is told at each tick."""

    backend: str
    phase: str
    elapsed_s: float
    time_limit_s: float | None
    turns: int
    total_turns: int | None
    messages: int
    errors: int
    setup_done: int
    setup_total: int


@dataclass(slots=True)
class Bucket:
    """One second of the measured phase (the last one may be shorter)."""

    start_s: float
    duration_s: float
    turns: int
    messages: int
    reads: int
    errors: int
    turn_p50_ms: float | None
    turn_p99_ms: float | None
    rss_mb: float | None

    @property
    def turns_per_s(self) -> float:
        return self.turns / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.duration_s if self.duration_s > 0 else 0.0


@dataclass(slots=True)
class ErrorCount:
    """Failures of one kind: operation and exception type, with the first message seen."""

    op: str
    error: str
    count: int
    example: str


@dataclass(slots=True)
class BenchResult:
    """Everything a run measured; :mod:`.report` renders it."""

    workload: Workload
    backend: str
    durability: str
    loop: str
    started_at: str
    elapsed_s: float
    setup_s: float
    drain_s: float
    turns: int
    failed_turns: int
    messages: int
    reads: int
    histograms: dict[str, Any]
    timeline: list[Bucket]
    errors: list[ErrorCount]
    rss_start_mb: float | None
    peak_rss_mb: float | None
    storage: dict[str, Any] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(e.count for e in self.errors)

    @property
    def turns_per_s(self) -> float:
        return self.turns / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.elapsed_s if self.elapsed_s > 0 else 0.0


def rss_mb() -> float | None:
    """Resident set size of this process now, in MiB (``None`` if unknown)."""
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20
    except ImportError:
        return None


def peak_rss_mb() -> float | None:
    """Highest resident set size this process has had, in MiB."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return float(peak) / (2**20 if sys.platform == "darwin" else 2**10)


@dataclass(slots=True)
class _Slot:
    """A session as one driver sees it: handle, step stream, turns still to do."""

    session: MemorySession
    plan: SessionPlan
    left: int


class _Run:
    """State of one benchmark run; ``main`` runs it on the current event loop."""

    def __init__(self, workload: Workload, on_tick: Callable[[Snapshot], None] | None) -> None:
        self.workload = workload
        self.generator = WorkloadGenerator(workload)
        self.on_tick = on_tick
        self.samples: dict[str, list[int]] = {op: [] for op in (*OPERATIONS, CREATE_SESSION)}
        self.histograms: dict[str, Any] = {op: new_histogram() for op in self.samples}
        self.errors: dict[tuple[str, str], ErrorCount] = {}
        self.turns = self.failed = self.messages = self.reads = self.error_total = 0
        self.phase = SETUP
        self.setup_done = 0
        self.started_ns = 0
        self.deadline_ns = 0
        self.timeline: list[Bucket] = []
        self._bucket_histogram = new_histogram()
        self._bucket_base = (0, 0, 0, 0)
        self._bucket_start = 0.0
        self._previous: tuple[tuple[int, int, int, int], Any] | None = None
        self._include_summaries = workload.summarize_every > 0

    # -- phases ---------------------------------------------------------------------------

    async def main(self) -> BenchResult:
        w = self.workload
        started_at = datetime.now().isoformat(timespec="seconds")
        rss_start = rss_mb()
        async with self._scratch() as extra:
            manager = MemoryManager.from_config(memory=w.memory_config(**extra))
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._phase_ticker)
                t = time.perf_counter()
                async with manager:
                    sessions = await self._setup(manager)
                    setup_s = time.perf_counter() - t
                    elapsed = await self._measure(sessions)
                    self.phase = DRAIN
                    t = time.perf_counter()
                    storage = await manager.backend.get_usage_stats()
                drain_s = time.perf_counter() - t
                outer.cancel_scope.cancel()
        return BenchResult(
            workload=w,
            backend=w.backend,
            durability=manager.durability.value,
            loop=sniffio.current_async_library(),
            started_at=started_at,
            elapsed_s=elapsed,
            setup_s=setup_s,
            drain_s=drain_s,
            turns=self.turns,
            failed_turns=self.failed,
            messages=self.messages,
            reads=self.reads,
            histograms=self.histograms,
            timeline=self.timeline,
            errors=sorted(self.errors.values(), key=lambda e: -e.count),
            rss_start_mb=rss_start,
            peak_rss_mb=peak_rss_mb(),
            storage=storage,
        )

    @contextlib.asynccontextmanager
    async def _scratch(self) -> AsyncIterator[dict[str, Any]]:
        """Backend config the run adds, removed afterwards even if the run fails: a
        throwaway SQLite file, or a private Redis key prefix."""
        w = self.workload
        if w.backend == "redis":
            prefix = f"lsbench-{os.urandom(6).hex()}"
            try:
                yield {"key_prefix": prefix}
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(_delete_redis_keys, w.redis_url, prefix)
        elif w.backend == "sqlite" and w.sqlite_path is None:
            directory = tempfile.mkdtemp(prefix="langswarm-bench-")
            try:
                yield {"db_path": os.path.join(directory, "bench.db")}
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(partial(shutil.rmtree, directory, True))
        else:
            yield {}

    async def _setup(self, manager: MemoryManager) -> list[MemorySession]:
        w = self.workload
        limiter = anyio.Semaphore(SETUP_PARALLELISM)
        sessions: list[MemorySession | None] = [None] * w.sessions
        threshold = w.summarize_every or None
        samples = self.samples[CREATE_SESSION]
        # Load the tokenizer now: its one-off start-up cost is not part of steady state.
        await anyio.to_thread.run_sync(get_encoding)

        async def create(index: int) -> None:
            async with limiter:
                t = time.perf_counter_ns()
                session = await manager.create_session(
                    self.generator.user_id(index), auto_summarize_threshold=threshold
                )
                samples.append(time.perf_counter_ns() - t)
                prefill = self.generator.prefill(index)
                if prefill:
                    await session.add_messages(
                        [create_openai_message(**a.openai_fields()) for a in prefill]
                    )
                sessions[index] = session
                self.setup_done += 1

        async with anyio.create_task_group() as tg:
            for index in range(w.sessions):
                tg.start_soon(create, index)
        record_batch(samples, self.histograms[CREATE_SESSION])
        samples.clear()
        return [s for s in sessions if s is not None]

    async def _measure(self, sessions: list[MemorySession]) -> float:
        """Drive every session until the time limit or turn count; return elapsed seconds."""
        w = self.workload
        drivers = w.drivers
        shares: list[list[_Slot]] = [[] for _ in range(drivers)]
        for index, session in enumerate(sessions):
            slot = _Slot(session, self.generator.plan(index), w.turns or -1)
            shares[index % drivers].append(slot)
        limit = w.time_limit
        self.phase = RUN
        self.started_ns = time.perf_counter_ns()
        self.deadline_ns = self.started_ns + int(limit * 1e9) if limit is not None else 2**63 - 1
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._run_ticker, anyio.current_time())
            async with anyio.create_task_group() as workers:
                for share in shares:
                    workers.start_soon(self._drive, share)
            elapsed_ns = time.perf_counter_ns() - self.started_ns
            tg.cancel_scope.cancel()
        self._finish_timeline(elapsed_ns / 1e9)
        return elapsed_ns / 1e9

    # -- drivers --------------------------------------------------------------------------

    async def _drive(self, slots: list[_Slot]) -> None:
        now = time.perf_counter_ns
        deadline = self.deadline_ns
        checkpoint = anyio.lowlevel.checkpoint
        i = 0
        while slots:
            if now() >= deadline:
                return
            if i >= len(slots):
                i = 0
            slot = slots[i]
            step = next(slot.plan)
            if step.kind == "read":
                await self._read(slot.session)
            else:
                await self._turn(slot.session, step)
                slot.left -= 1
                if slot.left == 0:
                    del slots[i]
                    i -= 1
            i += 1
            if step.think_s:
                remaining = (deadline - now()) / 1e9
                await anyio.sleep(min(step.think_s, max(remaining, 0.0)))
            else:
                await checkpoint()

    async def _turn(self, session: MemorySession, step: Step) -> None:
        now = time.perf_counter_ns
        samples = self.samples
        budget = self.workload.context_tokens
        summaries = self._include_summaries
        op = TURN
        started = now()
        try:
            for action in step.actions:
                op = action.op
                if op == GET_CONTEXT:
                    t = now()
                    await session.get_conversation_context(
                        max_tokens=budget, include_summaries=summaries
                    )
                else:
                    message = create_openai_message(**action.openai_fields())
                    t = now()
                    await session.add_message(message)
                    self.messages += 1
                samples[op].append(now() - t)
        except Exception as exc:
            self._error(op, exc)
            return
        samples[TURN].append(now() - started)
        self.turns += 1

    async def _read(self, session: MemorySession) -> None:
        t = time.perf_counter_ns()
        try:
            await session.get_messages(limit=HISTORY_LIMIT)
        except Exception as exc:
            self._error(GET_MESSAGES, exc)
            return
        self.samples[GET_MESSAGES].append(time.perf_counter_ns() - t)
        self.reads += 1

    def _error(self, op: str, exc: Exception) -> None:
        self.error_total += 1
        if op != GET_MESSAGES:
            self.failed += 1
        key = (op, type(exc).__name__)
        entry = self.errors.get(key)
        if entry is None:
            self.errors[key] = ErrorCount(op, key[1], 1, str(exc)[:300])
        else:
            entry.count += 1

    # -- ticking --------------------------------------------------------------------------

    async def _phase_ticker(self) -> None:
        """Progress outside the measured phase (setup, drain)."""
        while True:
            if self.phase != RUN and self.on_tick is not None:
                self.on_tick(self.snapshot())
            await anyio.sleep(TICK)

    async def _run_ticker(self, start: float) -> None:
        """Fold samples and close one-second buckets on a fixed schedule from ``start``.

        When the loop is too busy to tick on time, missed ticks are skipped, not replayed.
        """
        tick = bucket = 0
        while True:
            tick += 1
            await anyio.sleep_until(start + tick * TICK)
            tick = max(tick, int((anyio.current_time() - start) / TICK))
            self._fold()
            if tick // TICKS_PER_BUCKET > bucket:
                bucket = tick // TICKS_PER_BUCKET
                self._close_bucket((time.perf_counter_ns() - self.started_ns) / 1e9)
            if self.on_tick is not None:
                self.on_tick(self.snapshot())

    def _fold(self) -> None:
        histograms = self.histograms
        for op, pending in self.samples.items():
            if pending:
                batch = pending.copy()
                pending.clear()
                if op == TURN:
                    record_batch(batch, histograms[op], self._bucket_histogram)
                else:
                    record_batch(batch, histograms[op])

    def _close_bucket(self, end_s: float) -> None:
        """End the current bucket at ``end_s``: measured, since a late tick makes it longer."""
        h = self._bucket_histogram
        start_s = self._bucket_start
        counts = (self.turns, self.messages, self.reads, self.error_total)
        base = self._bucket_base
        counted = h.get_total_count() > 0
        self.timeline.append(
            Bucket(
                start_s=start_s,
                duration_s=end_s - start_s,
                turns=counts[0] - base[0],
                messages=counts[1] - base[1],
                reads=counts[2] - base[2],
                errors=counts[3] - base[3],
                turn_p50_ms=h.get_value_at_percentile(50) / 1000 if counted else None,
                turn_p99_ms=h.get_value_at_percentile(99) / 1000 if counted else None,
                rss_mb=rss_mb(),
            )
        )
        self._previous = (base, h)
        self._bucket_start = end_s
        self._bucket_base = counts
        self._bucket_histogram = new_histogram()

    def _finish_timeline(self, elapsed_s: float) -> None:
        """Close the last, partial bucket; a sliver under 0.25 s joins the one before, so
        the last point of the timeline is not a rate measured over a few milliseconds."""
        self._fold()
        if elapsed_s <= self._bucket_start:
            return
        if elapsed_s - self._bucket_start < 0.25 and self._previous is not None:
            last = self.timeline.pop()
            base, histogram = self._previous
            histogram.add(self._bucket_histogram)
            self._bucket_base, self._bucket_histogram = base, histogram
            self._bucket_start = last.start_s
        self._close_bucket(elapsed_s)

    def snapshot(self) -> Snapshot:
        w = self.workload
        started = self.started_ns
        elapsed = (time.perf_counter_ns() - started) / 1e9 if started else 0.0
        return Snapshot(
            backend=w.backend,
            phase=self.phase,
            elapsed_s=elapsed,
            time_limit_s=w.time_limit,
            turns=self.turns,
            total_turns=w.total_turns,
            messages=self.messages,
            errors=self.error_total,
            setup_done=self.setup_done,
            setup_total=w.sessions,
        )


def _delete_redis_keys(url: str, prefix: str) -> None:
    """Remove every key a run wrote under its private prefix; best effort, since it also
    runs after a failed run, when the server may be unreachable."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1_000):
            batch.append(key)
            if len(batch) >= 1_000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    except redis.RedisError:
        pass
    finally:
        client.close()


async def run_workload(
    workload: Workload, *, on_tick: Callable[[Snapshot], None] | None = None
) -> BenchResult:
    """Run ``workload`` on the running event loop (its ``loop`` field is not consulted)."""
    return await _Run(workload, on_tick).main()


def run(workload: Workload, *, on_tick: Callable[[Snapshot], None] | None = None) -> BenchResult:
    """Run ``workload`` on a new event loop of the kind ``workload.loop`` names."""
    result: BenchResult = anyio.run(
        partial(run_workload, workload, on_tick=on_tick), backend=workload.loop
    )
    return result
