"""Persisted messages per second through the runtime on Redis, beside LangChain's Redis history.

Starts its own redis-server (no persistence) on a free loopback port. ``--sessions`` sessions
(default 1,000) are written concurrently, one task per session, each awaiting ``add_message``
``--per-session`` times with a 200-character message (with ``--batch N``, one
``add_messages`` call per N messages, and likewise for the peer). Sessions are created and messages built
before timing. The clock stops once every message is stored in Redis: after the writers
return, one more ``committed`` write on a separate session, which commits only after every
batch before it. Each figure is the median of ``--repeat`` runs on a flushed server, checked
against the server's message count.

The peer is langchain-community's ``RedisChatMessageHistory`` (langchain-redis needs Redis
Stack) through its async API, ``aadd_messages``, on asyncio only: no peer runs on trio.

    .venv/bin/python benchmarks/bench_redis_persist.py [--sessions 1000] [--per-session 10]
        [--batch 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import redis
from _redis_server import start_server

from langswarm.core.memory import MemoryManager, MemorySession, Message, MessageRole

T = TypeVar("T")

TEXT = (
    "The agent checked the order status, confirmed the shipping address in Lisbon and "
    "scheduled delivery for Thursday; the customer asked whether the invoice could list "
    "the VAT number."
)[:200]

Run = Callable[[str, int, int, int], Awaitable[float]]


def chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def ours(durability: str) -> Run:
    async def run(url: str, sessions: int, per_session: int, batch: int) -> float:
        config = {"backend": "redis", "config": {"url": url}, "durability": durability}
        async with MemoryManager.from_config(memory=config) as memory:
            handles: dict[int, MemorySession] = {}

            async def create(i: int) -> None:
                handles[i] = await memory.create_session(f"user{i % 100}", f"s{i}")

            async with anyio.create_task_group() as tg:
                for i in range(sessions):
                    tg.start_soon(create, i)
            roles = (MessageRole.USER, MessageRole.ASSISTANT)
            payloads = [
                [Message(role=roles[k % 2], content=TEXT) for k in range(per_session)]
                for _ in range(sessions)
            ]

            async def writer(session: MemorySession, messages: list[Message]) -> None:
                if batch == 1:
                    for message in messages:
                        await session.add_message(message)
                else:
                    for chunk in chunks(messages, batch):
                        await session.add_messages(chunk)

            marker = await memory.create_session("bench", "barrier", durability="committed")
            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for i in range(sessions):
                    tg.start_soon(writer, handles[i], payloads[i])
            # Batches commit in order, so once this committed write returns every earlier
            # buffered one is stored too (memory.backend reads can miss a batch in flight).
            await marker.add_message(Message(role=MessageRole.USER, content="barrier"))
            elapsed = time.perf_counter() - started
            stored = (await memory.backend.get_usage_stats())["total_messages"] - 1
        if stored != sessions * per_session:
            raise SystemExit(f"expected {sessions * per_session} stored messages, found {stored}")
        return elapsed

    return run


async def langchain(url: str, sessions: int, per_session: int, batch: int) -> float:
    from langchain_community.chat_message_histories import RedisChatMessageHistory
    from langchain_core.messages import AIMessage, HumanMessage

    histories = [RedisChatMessageHistory(f"s{i}", url=url) for i in range(sessions)]
    kinds = (HumanMessage, AIMessage)
    payloads = [[kinds[k % 2](content=TEXT) for k in range(per_session)] for _ in histories]

    async def writer(i: int) -> None:
        for chunk in chunks(payloads[i], batch):
            await histories[i].aadd_messages(chunk)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(sessions):
            tg.start_soon(writer, i)
    elapsed = time.perf_counter() - started
    with redis.Redis.from_url(url) as client:
        stored = sum(client.llen(f"message_store:s{i}") for i in range(sessions))
    if stored != sessions * per_session:
        raise SystemExit(f"expected {sessions * per_session} stored messages, found {stored}")
    return elapsed


def langchain_available() -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # langchain-community announces its sunset on import
        try:
            import langchain_community.chat_message_histories  # noqa: F401
        except ImportError:
            return False
    return True


def measure(url: str, run: Run, loop: str, args: argparse.Namespace) -> float:
    """Median messages/s over ``args.repeat`` runs, each on a flushed server."""
    rates: list[float] = []
    for _ in range(args.repeat):
        with redis.Redis.from_url(url) as client:
            client.flushall()
        elapsed = anyio.run(run, url, args.sessions, args.per_session, args.batch, backend=loop)
        rates.append(args.sessions * args.per_session / elapsed)
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--per-session", type=int, default=10, help="messages per session")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (median)")
    parser.add_argument("--batch", type=int, default=1, help="messages per call (default 1)")
    args = parser.parse_args()
    args.per_session = -(-args.per_session // args.batch) * args.batch  # whole calls only

    rows: list[tuple[str, str, Run]] = [
        ("langswarm, committed", "asyncio", ours("committed")),
        ("langswarm, committed", "trio", ours("committed")),
        ("langswarm, buffered", "asyncio", ours("buffered")),
        ("langswarm, buffered", "trio", ours("buffered")),
    ]
    peer = langchain_available()
    if peer:
        rows.append(("langchain RedisChatMessageHistory", "asyncio", langchain))

    total = args.sessions * args.per_session
    print(
        f"{args.sessions:,} concurrent sessions x {args.per_session} messages of 200 chars "
        f"({total:,} per run, {args.batch} per call), persisted in redis-server, "
        f"median of {args.repeat} runs"
    )
    with tempfile.TemporaryDirectory() as directory:
        process, url = start_server(directory)
        try:
            rates = [(label, loop, measure(url, run, loop, args)) for label, loop, run in rows]
        finally:
            process.terminate()
            process.wait()

    baseline = rates[-1][2] if peer else None
    print(f"{'writer':<36} {'loop':<8} {'messages/s':>12} {'vs langchain':>13}")
    for label, loop, rate in rates:
        ratio = f"{rate / baseline:.1f}x" if baseline else "-"
        print(f"{label:<36} {loop:<8} {rate:>12,.0f} {ratio:>13}")
    if not peer:
        print(f"{'langchain RedisChatMessageHistory':<36} {'asyncio':<8} {'not installed':>12}")


if __name__ == "__main__":
    main()
