"""add_message latency while summaries are being made, on asyncio and trio.

    python benchmarks/bench_summary_latency.py [--loops asyncio,trio] [--seconds 3]
        [--rate 10000] [--sessions 100] [--backend memory|sqlite] [--repeat 3] [--in-step]

Writers add 200-character messages at a steady total ``--rate`` (adds per second) for
``--seconds``, on one session and then spread over ``--sessions`` sessions, and every
``add_message`` call is timed. Three summarizer settings are compared:

  * none        -- no ``auto_summarize_threshold``: no summaries at all;
  * sleep 500ms -- a summarizer that takes 500 ms (``anyio.sleep(0.5)``);
  * extractive  -- the default ``ExtractiveSummarizer`` (CPU work in a worker thread).

The threshold is set so each session gets a new trigger about every 50 ms (one session)
or 500 ms (many sessions): a summary is always in progress once the first one starts.
Sessions start at different points of the threshold, so their triggers do not coincide
(``--in-step``: they all trigger together, the worst case).
The table gives p50, p99 and p99.9 per call (each the median over ``--repeat`` runs,
interleaved) and the p99 ratio against "none" (target: <= 2x). A short warm-up before
each run is not timed. Prints a table; never asserts a time.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from langswarm.core.memory import MemoryManager, Message, MessageRole
from langswarm.core.memory._config import build
from langswarm.core.memory._session import MemorySession
from langswarm.core.memory._summarizers import ExtractiveSummarizer
from langswarm.core.memory.interfaces import ConversationSummary, Summarizer

TEXT = (
    "The agent checked the order status, confirmed the shipping address in Lisbon and "
    "scheduled delivery for Thursday; the customer asked whether the invoice could list "
    "the VAT number."
)[:200]
WARMUP = 0.3  # seconds of untimed adds before each run


class SleepingSummarizer:
    """Takes 500 ms per summary without using the CPU, like a remote model."""

    async def summarize(
        self,
        messages: Sequence[Message],
        *,
        previous: ConversationSummary | None,
        max_tokens: int,
    ) -> str:
        await anyio.sleep(0.5)
        return f"{len(messages)} more messages about an order shipped to Lisbon."


SUMMARIZERS: dict[str, type[Summarizer] | None] = {
    "none": None,
    "sleep 500ms": SleepingSummarizer,
    "extractive": ExtractiveSummarizer,
}


@dataclass
class Result:
    p50_us: float
    p99_us: float
    p999_us: float
    adds: int
    summaries: int


def median(results: list[Result]) -> Result:
    """Each figure's median over repeated runs."""
    return Result(
        *(
            statistics.median(getattr(r, name) for r in results)
            for name in ("p50_us", "p99_us", "p999_us", "adds", "summaries")
        )
    )


def messages(n: int) -> list[Message]:
    roles = (MessageRole.USER, MessageRole.ASSISTANT)
    return [Message(role=roles[i % 2], content=TEXT) for i in range(n)]


def manager(backend: str, directory: Path, summarizer: Summarizer | None) -> MemoryManager:
    memory: dict[str, Any] = {"backend": "memory"}
    if backend == "sqlite":
        path = directory / f"bench-{time.monotonic_ns()}.db"
        memory = {"backend": "sqlite", "config": {"db_path": str(path)}}
    backend_, settings = build(None, memory, {"summarizer": summarizer})
    return MemoryManager(backend_, settings)


async def writer(
    session: MemorySession,
    batch: list[Message],
    rate: float,
    start: float,
    samples: list[int] | None,
) -> None:
    """Add ``batch`` at ``rate`` per second from ``start``; time each call into ``samples``."""
    add = session.add_message
    clock = time.perf_counter
    for i, message in enumerate(batch):
        delay = start + i / rate - clock()
        if delay > 0:
            await anyio.sleep(delay)
        t0 = time.perf_counter_ns()
        await add(message)
        if samples is not None:
            samples.append(time.perf_counter_ns() - t0)


async def run(
    backend: str,
    directory: Path,
    kind: str,
    sessions: int,
    seconds: float,
    rate: float,
    in_step: bool = False,
) -> Result:
    factory = SUMMARIZERS[kind]
    per_session_rate = rate / sessions
    # A trigger about every 50 ms on one session, every 500 ms on each of many.
    threshold = max(1, round(per_session_rate * (0.05 if sessions == 1 else 0.5)))
    async with manager(backend, directory, factory() if factory else None) as memory:
        handles = [
            await memory.create_session(
                f"user{i}", auto_summarize_threshold=threshold if factory else None
            )
            for i in range(sessions)
        ]
        # Unsynchronised conversations: spread the trigger points over one threshold.
        for i, session in enumerate(handles):
            if not in_step and (offset := i * threshold // sessions):
                await session.add_messages(messages(offset))
        warm = int(per_session_rate * WARMUP)
        timed = int(per_session_rate * seconds)
        payloads = [messages(warm + timed) for _ in range(sessions)]
        samples: list[list[int]] = [[] for _ in range(sessions)]
        gc.collect()
        for phase, (lo, hi) in enumerate(((0, warm), (warm, warm + timed))):
            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for i in range(sessions):
                    target = samples[i] if phase else None
                    tg.start_soon(
                        writer, handles[i], payloads[i][lo:hi], per_session_rate, start, target
                    )
        made = 0
        for session in handles:
            made += len(await session.get_summaries())
    flat = sorted(s for per in samples for s in per)

    def pct(q: float) -> float:
        return flat[min(len(flat) - 1, int(len(flat) * q))] / 1e3

    return Result(statistics.median(flat) / 1e3, pct(0.99), pct(0.999), len(flat), made)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", default="asyncio,trio")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per run")
    parser.add_argument("--rate", type=float, default=10_000, help="adds per second, in all")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--backend", choices=["memory", "sqlite"], default="memory")
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting (median)")
    parser.add_argument(
        "--in-step", action="store_true", help="all sessions reach their triggers together"
    )
    args = parser.parse_args()
    print(
        f"backend={args.backend}  {args.rate:,.0f} adds/s for {args.seconds:g} s per run "
        f"(+{WARMUP:g} s warm-up), triggers {'in step' if args.in_step else 'spread'}, "
        f"median of {args.repeat} runs"
    )
    header = (
        f"{'loop':8} {'sessions':>8} {'summarizer':12} {'adds':>7} {'summaries':>9} "
        f"{'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9} {'p99 ratio':>9}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for loop in args.loops.split(","):
            for sessions in (1, args.sessions):
                runs: dict[str, list[Result]] = {kind: [] for kind in SUMMARIZERS}
                for _ in range(args.repeat):  # interleaved, so drift hits every setting alike
                    for kind, results in runs.items():
                        options = (kind, sessions, args.seconds, args.rate, args.in_step)
                        results.append(
                            anyio.run(run, args.backend, Path(tmp), *options, backend=loop)
                        )
                base = median(runs["none"])
                for kind, results in runs.items():
                    result = median(results)
                    print(
                        f"{loop:8} {sessions:>8} {kind:12} {result.adds:>7} "
                        f"{result.summaries:>9} {result.p50_us:>8.1f} {result.p99_us:>8.1f} "
                        f"{result.p999_us:>9.1f} {result.p99_us / base.p99_us:>8.2f}x",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
