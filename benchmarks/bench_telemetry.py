"""Cost of OpenTelemetry reporting in the agent-turn workload: off, metrics on, metrics and
traces on, in one run.

    python benchmarks/bench_telemetry.py [--sessions 1000] [--turns 10] [--rounds 7]
                                         [--backends memory,sqlite] [--loops asyncio,trio]

Each of ``--sessions`` sessions runs ``--turns`` agent turns concurrently with the others:

    add user message -> get context (max_tokens=2000) -> add assistant message

"off" is the path taken when OpenTelemetry is not installed (reporting disabled); "metrics"
reports to an SDK MeterProvider (read once at the end, as a periodic reader would) with the
API's no-op tracer; "traces" adds an SDK TracerProvider whose batch span processor exports to
nowhere. Modes alternate within every round, each run on a fresh runtime (sessions created
beforehand, not timed), after one untimed warm-up run. The table shows each mode's median
wall time and median CPU time of the process (every thread: the event loop and the storage
threads); overheads are against "off" of the same backend and loop. CPU time is the steadier
figure on a shared machine, where other processes stretch wall time. Below each table, the
cost of reporting one batch is measured alone (without the workload's noise) and multiplied
by the batches of a run: a bound on what reporting adds, since it reports per batch only
(storage reads, which it also reports, do not happen in this workload: sessions stay live).
Prints a table; never asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from langswarm.core.memory import MemoryManager, Message, MessageRole, _telemetry
from langswarm.core.memory.backends.base import SessionWrite

MODES = ("off", "metrics", "traces")
USER = "Where is order 4471? It was due on Thursday and the tracking page says nothing."
REPLY = "Order 4471 left the Lisbon warehouse on Tuesday; DHL expects to deliver it Friday."


class Nowhere(SpanExporter):
    """Drops every span (the SDK's cost without an exporter's)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def report_to(mode: str) -> tuple[InMemoryMetricReader | None, TracerProvider | None]:
    if mode == "off":
        _telemetry.configure(enabled=False)
        return None, None
    reader = InMemoryMetricReader()
    tracers = None
    if mode == "traces":
        tracers = TracerProvider()
        tracers.add_span_processor(BatchSpanProcessor(Nowhere()))
    meters = MeterProvider(metric_readers=[reader])
    _telemetry.configure(meter_provider=meters, tracer_provider=tracers)
    return reader, tracers


def manager(backend: str, directory: Path) -> MemoryManager:
    if backend == "sqlite":
        path = directory / f"bench-{time.monotonic_ns()}.db"
        config = {"db_path": str(path)}
        return MemoryManager.from_config(memory={"backend": "sqlite", "config": config})
    return MemoryManager.from_config("development")


async def turns(backend: str, directory: Path, sessions: int, per: int) -> tuple[float, float, int]:
    """Wall and CPU seconds for every session's turns, and the batches stored."""
    async with manager(backend, directory) as memory:
        handles = [await memory.create_session(f"user{i}", f"s{i}") for i in range(sessions)]
        await memory.backend.list_sessions(limit=1)  # everything created is stored

        async def agent(i: int) -> None:
            session = handles[i]
            for _ in range(per):
                await session.add_message(Message(MessageRole.USER, USER))
                await session.get_conversation_context(max_tokens=2000)
                await session.add_message(Message(MessageRole.ASSISTANT, REPLY))

        runtime = await memory._ensure()
        before = runtime.flusher.batches
        started, cpu = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as tg:
            for i in range(sessions):
                tg.start_soon(agent, i)
        await runtime.flusher.barrier()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        return elapsed, cpu, runtime.flusher.batches - before


def measure(
    loop: str, backend: str, mode: str, args: argparse.Namespace, directory: Path
) -> tuple[float, float, int]:
    """Wall and CPU seconds the turns took, and batches stored, in ``mode``."""
    reader, tracers = report_to(mode)
    elapsed, cpu, batches = anyio.run(
        turns, backend, directory, args.sessions, args.turns, backend=loop
    )
    if reader is not None:
        data = reader.get_metrics_data()
        assert data is not None
        counted = sum(
            getattr(point, "value", 0)
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "langswarm.memory.messages"
            for point in metric.data.data_points
        )
        assert counted == 2 * args.sessions * args.turns, counted  # the reports were made
    if tracers is not None:
        tracers.shutdown()
    return elapsed, cpu, batches


def per_batch(mode: str, writes: int = 20, rounds: int = 2000) -> float:
    """CPU µs the runtime's report of one batch (``writes`` sessions, two messages each)
    costs in ``mode``: the whole of what reporting adds to a batch."""
    _, tracers = report_to(mode)
    message = Message(MessageRole.USER, USER)
    batch = [SessionWrite(f"s{i}", "i", messages=[message, message]) for i in range(writes)]
    started = time.process_time()
    for _ in range(rounds):
        now = time.monotonic()
        _telemetry.telemetry.committed("sqlite", batch, now - 0.002, now - 0.001, None)
    cost = (time.process_time() - started) / rounds * 1e6
    if tracers is not None:
        tracers.shutdown()
    return cost


def row(name: str, wall: list[float], cpu: list[float], base: tuple[float, float], n: int) -> str:
    """One line of the table: a mode's medians and overheads against ``base``."""
    median_wall, median_cpu = statistics.median(wall), statistics.median(cpu)
    extra = f"{'':>9} {'':>9}"
    if name != "off":
        extra = f"{(median_wall / base[0] - 1) * 100:>+8.1f}% "
        extra += f"{(median_cpu / base[1] - 1) * 100:>+8.1f}%"
    return (
        f"{name:8} {n / median_wall:>9,.0f} {median_wall:>7.3f} {median_cpu:>7.3f} "
        f"{median_cpu / n * 1e6:>9.1f} {extra}"
    )


def compare(loop: str, backend: str, args: argparse.Namespace, directory: Path) -> None:
    """Run every mode ``args.rounds`` times, alternating, and print the table."""
    measure(loop, backend, "off", args, directory)  # warm-up: imports, caches
    wall: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    batches: list[int] = []
    for round_ in range(args.rounds):
        for mode in MODES[round_ % 3 :] + MODES[: round_ % 3]:
            took, used, stored = measure(loop, backend, mode, args, directory)
            wall[mode].append(took)
            cpu[mode].append(used)
            batches.append(stored)
    print(f"\n{loop} / {backend}: {statistics.median(batches):,.0f} batches per run")
    print(
        f"{'mode':8} {'turns/s':>9} {'wall s':>7} {'cpu s':>7} {'cpu µs/turn':>9} "
        f"{'wall +':>9} {'cpu +':>9}"
    )
    base = (statistics.median(wall["off"]), statistics.median(cpu["off"]))
    for mode in MODES:
        print(row(mode, wall[mode], cpu[mode], base, args.sessions * args.turns))
    per_run = statistics.median(batches)
    for mode in MODES[1:]:
        cost = per_batch(mode)
        share = cost * per_run / 1e6 / base[1] * 100
        print(
            f"{mode}: {cost:.1f} µs per batch measured alone; x {per_run:,.0f} batches = "
            f"{share:.3f}% of the run's CPU"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backends", default="memory,sqlite")
    parser.add_argument("--loops", default="asyncio,trio")
    args = parser.parse_args()
    print(
        f"{args.sessions} sessions x {args.turns} turns (add, context, add), {args.rounds} rounds"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for loop in args.loops.split(","):
            for backend in args.backends.split(","):
                compare(loop, backend, args, Path(tmp))
    _telemetry.configure()


if __name__ == "__main__":
    main()
