"""Append throughput and context latency of the in-memory runtime, on asyncio and trio.

    python benchmarks/bench_append.py [--loops asyncio,trio] [--sessions 1000] [--per-session 100]

Workloads (200-character messages, about 41 tokens each):
  * one session, one ``await add_message`` per message;
  * 1,000 sessions written concurrently, one ``await add_message`` per message;
  * 1,000 sessions written concurrently with ``add_messages`` batches;
  * ``get_conversation_context(max_tokens=4000)`` on a 10,000-message session.
Prints a table; never asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import anyio

from langswarm.core.memory import MemoryManager, Message, MessageRole
from langswarm.core.memory._config import build

TEXT = (
    "The agent checked order 4471: it shipped with DHL and arrives on 3 December. The "
    "customer asked whether the invoice can also show their VAT number and purchase order; "
    "finance will confirm it by Friday."
)[:200]


def make_messages(n: int) -> list[Message]:
    roles = (MessageRole.USER, MessageRole.ASSISTANT)
    return [Message(role=roles[i % 2], content=TEXT) for i in range(n)]


def manager() -> MemoryManager:
    backend, settings = build("development", None, {})
    return MemoryManager(backend, settings)


async def one_session(n: int) -> float:
    messages = make_messages(n)
    async with manager() as memory:
        session = await memory.create_session("bench")
        start = time.perf_counter()
        for m in messages:
            await session.add_message(m)
        elapsed = time.perf_counter() - start
    return n / elapsed


async def many_sessions(sessions: int, per: int, batch: int | None) -> float:
    async with manager() as memory:
        handles = [await memory.create_session(f"user{i}") for i in range(sessions)]
        payloads = [make_messages(per) for _ in range(sessions)]

        async def writer(i: int) -> None:
            session, messages = handles[i], payloads[i]
            if batch is None:
                for m in messages:
                    await session.add_message(m)
            else:
                for k in range(0, per, batch):
                    await session.add_messages(messages[k : k + batch])

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(sessions):
                tg.start_soon(writer, i)
        elapsed = time.perf_counter() - start
    return sessions * per / elapsed


async def context_latency(history: int, budget: int, rounds: int) -> tuple[float, float, int]:
    async with manager() as memory:
        session = await memory.create_session("bench")
        for k in range(0, history, 1000):
            await session.add_messages(make_messages(min(1000, history - k)))
        window = await session.get_conversation_context(max_tokens=budget)  # counts once
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            window = await session.get_conversation_context(max_tokens=budget)
            samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(len(samples) * 0.99)] * 1e6, len(window)


def run(loop: str, fn: Callable[..., Any], *args: Any) -> Any:
    return anyio.run(fn, *args, backend=loop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", default="asyncio,trio")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--per-session", type=int, default=100)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2_000)
    args = parser.parse_args()
    total = args.sessions * args.per_session
    print(f"{'loop':8} {'workload':52} {'result':>22}")
    for loop in args.loops.split(","):
        rate = run(loop, one_session, total)
        print(f"{loop:8} {'1 session, await add_message each':52} {rate:>16,.0f} msg/s")
        rate = run(loop, many_sessions, args.sessions, args.per_session, None)
        label = f"{args.sessions} sessions, await add_message each"
        print(f"{loop:8} {label:52} {rate:>16,.0f} msg/s")
        rate = run(loop, many_sessions, args.sessions, args.per_session, args.batch)
        label = f"{args.sessions} sessions, add_messages batches of {args.batch}"
        print(f"{loop:8} {label:52} {rate:>16,.0f} msg/s")
        p50, p99, size = run(loop, context_latency, args.history, 4000, args.rounds)
        label = f"context(max_tokens=4000), {args.history:,}-message session"
        print(f"{loop:8} {label:52} {p50:>9.1f} µs p50 {p99:6.1f} p99  ({size} msgs)")


if __name__ == "__main__":
    main()
