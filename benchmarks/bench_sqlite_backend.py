"""Rows per second that SQLiteBackend.apply sustains, on an asyncio host and on a trio host.

Each batch holds ``batch`` messages of 200 characters spread over ``--sessions`` sessions (one
SessionWrite per session, metadata included, as the flusher sends them) and is one
transaction. Messages are built before timing; the figure is the backend alone: encoding,
the hand-off to the private loop, aiosqlite and SQLite's commit (fsync with FULL).

    .venv/bin/python benchmarks/bench_sqlite_backend.py [--rows 65536] [--sessions 16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Literal

import anyio

from langswarm.core.memory.backends.base import SessionWrite
from langswarm.core.memory.backends.sqlite import SQLiteBackend
from langswarm.core.memory.interfaces import Message, MessageRole, SessionMetadata

SYNC_MODES: tuple[Literal["FULL", "NORMAL"], ...] = ("FULL", "NORMAL")
TEXT = ("lorem ipsum dolor sit amet " * 8)[:200]


def make_batches(rows: int, batch: int, sessions: int) -> list[list[SessionWrite]]:
    per_session = batch // sessions
    now = datetime.now()
    metas = [SessionMetadata(session_id=f"s{i}", user_id=f"u{i % 4}") for i in range(sessions)]
    batches = []
    for n in range(rows // batch):
        batches.append(
            [
                SessionWrite(
                    m.session_id,
                    meta=m,
                    messages=[
                        Message(role=MessageRole.USER, content=TEXT, timestamp=now)
                        for _ in range(per_session)
                    ],
                    first_seq=n * per_session,
                )
                for m in metas
            ]
        )
    return batches


async def run_writes(
    path: str, batches: list[list[SessionWrite]], synchronous: Literal["FULL", "NORMAL"]
) -> tuple[float, list[float]]:
    backend = SQLiteBackend(path, synchronous=synchronous)
    await backend.open()
    try:
        for warm in batches[:3]:
            await backend.apply(warm)
        latencies = []
        started = time.perf_counter()
        for batch in batches[3:]:
            t = time.perf_counter()
            await backend.apply(batch)
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - started
    finally:
        await backend.close()
    rows = sum(len(w.messages) for b in batches[3:] for w in b)
    return rows / elapsed, latencies


async def run_handoff(calls: int) -> float:
    """Mean microseconds of one protocol call that does almost nothing (absent session)."""
    backend = SQLiteBackend()
    await backend.open()
    try:
        started = time.perf_counter()
        for _ in range(calls):
            await backend.load_session("absent", tail=10)
        return (time.perf_counter() - started) / calls * 1e6
    finally:
        await backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=65536, help="messages per configuration")
    parser.add_argument("--sessions", type=int, default=16, help="sessions per batch")
    args = parser.parse_args()

    print(f"{'host':<8} {'batch':>6} {'sync':<7} {'rows/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for batch in (256, 1024):
        batches = make_batches(args.rows, batch, args.sessions)
        for synchronous in SYNC_MODES:
            for host in ("asyncio", "trio"):
                with tempfile.TemporaryDirectory() as directory:
                    path = str(Path(directory) / "bench.db")
                    rate, lat = anyio.run(run_writes, path, batches, synchronous, backend=host)
                q = statistics.quantiles(lat, n=100)
                print(
                    f"{host:<8} {batch:>6} {synchronous:<7} {rate:>10,.0f} "
                    f"{q[49] * 1e3:>8.2f} {q[98] * 1e3:>8.2f}"
                )
    for host in ("asyncio", "trio"):
        us = anyio.run(run_handoff, 2000, backend=host)
        print(f"{host:<8} one near-empty call (load of an absent session): {us:.0f} µs")


if __name__ == "__main__":
    main()
