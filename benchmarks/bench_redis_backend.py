"""Messages per second that RedisBackend.apply sustains, on an asyncio host and on a trio host.

Starts its own redis-server (no persistence) on a free loopback port. Each batch holds one
SessionWrite per session for ``--sessions`` sessions (metadata included, as the flusher sends
them), each with ``--per-session`` messages of 200 characters. Messages are built before
timing; the figure covers encoding, the hand-off to the private loop and the pipelined
scripts. The baseline is the same blobs sent raw from asyncio: one pipeline holding one
multi-value RPUSH per session, i.e. what the wire and the server alone cost.

    .venv/bin/python benchmarks/bench_redis_backend.py [--sessions 1000] [--batches 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import anyio
import redis.asyncio
from _redis_server import start_server

from langswarm.core.memory.backends._codec import pack_message
from langswarm.core.memory.backends.base import SessionWrite
from langswarm.core.memory.backends.redis import RedisBackend
from langswarm.core.memory.interfaces import Message, MessageRole, SessionMetadata

TEXT = ("lorem ipsum dolor sit amet " * 8)[:200]


def make_batches(batches: int, sessions: int, per_session: int) -> list[list[SessionWrite]]:
    roles = (MessageRole.USER, MessageRole.ASSISTANT)
    now = datetime.now()
    return [
        [
            SessionWrite(
                f"s{s}",
                meta=SessionMetadata(session_id=f"s{s}", user_id=f"u{s % 50}", updated_at=now),
                messages=[Message(role=roles[i % 2], content=TEXT) for i in range(per_session)],
                first_seq=b * per_session,
            )
            for s in range(sessions)
        ]
        for b in range(batches)
    ]


async def flush(url: str) -> None:
    async with redis.asyncio.Redis.from_url(url) as client:
        await client.flushall()


async def run_apply(url: str, batches: list[list[SessionWrite]]) -> tuple[float, list[float]]:
    backend = RedisBackend(url=url)
    await backend.open()
    try:
        await backend.apply(batches[0])  # warm-up
        latencies = []
        started = time.perf_counter()
        for batch in batches[1:]:
            t = time.perf_counter()
            await backend.apply(batch)
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - started
    finally:
        await backend.close()
    values = sum(len(w.messages) for b in batches[1:] for w in b)
    return values / elapsed, latencies


async def run_raw(url: str, batches: list[list[SessionWrite]]) -> tuple[float, list[float]]:
    """One multi-value RPUSH per session per batch, pre-encoded, straight from asyncio."""
    encoded = [
        [(f"raw:{{{w.session_id}}}:msgs", [pack_message(m) for m in w.messages]) for w in b]
        for b in batches
    ]
    async with redis.asyncio.Redis.from_url(url) as client:
        latencies = []
        started = time.perf_counter()
        for batch in encoded[1:]:
            t = time.perf_counter()
            pipe = client.pipeline(transaction=False)
            for key, blobs in batch:
                pipe.rpush(key, *blobs)
            await pipe.execute()
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - started
    values = sum(len(blobs) for b in encoded[1:] for _, blobs in b)
    return values / elapsed, latencies


async def run_handoff(url: str, calls: int) -> float:
    """Mean microseconds of one protocol call that does almost nothing (absent session)."""
    backend = RedisBackend(url=url)
    await backend.open()
    try:
        started = time.perf_counter()
        for _ in range(calls):
            await backend.load_session("absent", tail=10)
        return (time.perf_counter() - started) / calls * 1e6
    finally:
        await backend.close()


Run = Callable[[str, list[list[SessionWrite]]], Awaitable[tuple[float, list[float]]]]


def measure(
    repeat: int, url: str, run: Run, batches: list[list[SessionWrite]], host: str
) -> tuple[float, list[float]]:
    """Median rate over ``repeat`` runs on a flushed server, with every run's latencies."""
    rates, latencies = [], []
    for _ in range(repeat):
        anyio.run(flush, url)
        rate, lat = anyio.run(run, url, batches, backend=host)
        rates.append(rate)
        latencies += lat
    return statistics.median(rates), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000, help="sessions per batch")
    parser.add_argument("--batches", type=int, default=20, help="batches per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration")
    parser.add_argument(
        "--per-session", type=int, nargs="+", default=[1, 10], help="messages per session per batch"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        process, url = start_server(directory)
        try:
            print(
                f"{args.sessions} sessions per batch, {args.batches - 1} timed batches per run, median of {args.repeat} runs, 200-char messages"
            )
            print(f"{'':<28} {'msgs':>5} {'values/s':>12} {'p50 ms':>9} {'p99 ms':>9}")
            configurations: list[tuple[str, Run, str]] = [
                ("apply(), asyncio host", run_apply, "asyncio"),
                ("apply(), trio host", run_apply, "trio"),
                ("raw RPUSH pipeline, asyncio", run_raw, "asyncio"),
            ]
            for per_session in args.per_session:
                batches = make_batches(args.batches, args.sessions, per_session)
                for label, run, host in configurations:
                    rate, lat = measure(args.repeat, url, run, batches, host)
                    q = statistics.quantiles(lat, n=100)
                    print(
                        f"{label:<28} {per_session:>5} {rate:>12,.0f} {q[49] * 1e3:>9.1f} {q[98] * 1e3:>9.1f}"
                    )
            for host in ("asyncio", "trio"):
                us = anyio.run(run_handoff, url, 2000, backend=host)
                print(f"{host:<8} one near-empty call (load of an absent session): {us:.0f} µs")
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
