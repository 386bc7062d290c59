"""Runs a :class:`~.workload.Workload` against the memory runtime and measures it.

Phases: *setup* loads the tokenizer and creates the sessions (with ``prefill`` history),
*run* is the measured phase, *drain* waits until every write is stored and reads the storage
totals. Only *run* counts towards throughput; setup and drain are timed separately.

Measuring must cost the measured code little. A timed call appends one integer (its duration
in nanoseconds) to a list; a ticker task, five times a second, folds those lists into HDR
histograms (value counts first, so each distinct microsecond value is one ``record_value``)
and closes one-second throughput buckets (both in :mod:`.recording`). Drivers yield to the
loop once per step, as an application waiting on a model would, so a backend whose calls
never block (the in-memory one, buffered) still lets every session and the ticker run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Final

import anyio
import anyio.lowlevel
import sniffio

from .._formats import create_openai_message
from .._manager import MemoryManager
from .._session import MemorySession
from .._tokens import get_encoding
from .recording import Counts, Timeline, peak_rss_mb, rss_mb
from .recording import new_histogram as new_histogram
from .recording import record_batch as record_batch
from .results import CREATE_SESSION as CREATE_SESSION
from .results import BenchResult as BenchResult
from .results import Bucket as Bucket
from .results import ErrorCount as ErrorCount
from .results import Snapshot as Snapshot
from .scratch import scratch_config
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
    "record_batch",
    "run",
    "run_workload",
]

TICK: Final = 0.2
TICKS_PER_BUCKET: Final = 5
SETUP_PARALLELISM: Final = 256

SETUP: Final = "setup"
RUN: Final = "run"
DRAIN: Final = "drain"


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
        self.timeline = Timeline()
        self._include_summaries = workload.summarize_every > 0

    # -- phases ---------------------------------------------------------------------------

    async def main(self) -> BenchResult:
        w = self.workload
        started_at = datetime.now().isoformat(timespec="seconds")
        rss_start = rss_mb()
        async with scratch_config(w) as extra:
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
            timeline=self.timeline.buckets,
            errors=sorted(self.errors.values(), key=lambda e: -e.count),
            rss_start_mb=rss_start,
            peak_rss_mb=peak_rss_mb(),
            storage=storage,
        )

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
        self._fold()
        self.timeline.finish(elapsed_ns / 1e9, self._counts())
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
                end_s = (time.perf_counter_ns() - self.started_ns) / 1e9
                self.timeline.close_bucket(end_s, self._counts())
            if self.on_tick is not None:
                self.on_tick(self.snapshot())

    def _fold(self) -> None:
        histograms = self.histograms
        for op, pending in self.samples.items():
            if pending:
                batch = pending.copy()
                pending.clear()
                if op == TURN:
                    record_batch(batch, histograms[op], self.timeline.histogram)
                else:
                    record_batch(batch, histograms[op])

    def _counts(self) -> Counts:
        """The running totals a timeline bucket takes its differences from."""
        return (self.turns, self.messages, self.reads, self.error_total)

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
