"""Buffered writes survive a Redis outage longer than the retry budget: 500 writers keep
going while the server is frozen (SIGSTOP) for 15 s, meet backpressure when the flusher is
full, and every message acknowledged to them is stored once the server answers again."""

from __future__ import annotations

import os

import anyio
import psutil
import pytest

from langswarm.core.memory import MemoryManager, create_openai_message
from tests._servers import RedisServer

pytestmark = pytest.mark.anyio

WRITERS = 500
OUTAGE = float(os.environ.get("LANGSWARM_OUTAGE_SECONDS", "15"))


def memory(url: str) -> MemoryManager:
    config = {
        "backend": "redis",
        "config": {"url": url, "socket_timeout": 0.5, "connect_timeout": 0.5},
        "durability": "buffered",
        "retry_budget": 1.0,  # far shorter than the outage: held writes outlive it
        "flush_capacity": 2_000,
        "shutdown_grace": 60,
    }
    return MemoryManager.from_config(memory=config)


async def test_a_long_outage_loses_no_acknowledged_write(private_redis: RedisServer) -> None:
    acknowledged: dict[str, list[str]] = {f"w{i}": [] for i in range(WRITERS)}
    process = psutil.Process()
    rss_before = process.memory_info().rss
    rss_peak = rss_before
    during = 0

    async def writer(memory: MemoryManager, name: str, stop: anyio.Event) -> None:
        session = await memory.create_session(name, name)
        n = 0
        while not stop.is_set():
            message_id = f"{name}-{n}"
            await session.add_message(
                create_openai_message("user", "x" * 40, message_id=message_id)
            )
            acknowledged[name].append(message_id)
            n += 1
            await anyio.sleep(0.2)  # offered load below what the store takes, until it stops

    async with memory(private_redis.url) as manager:
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            for name in acknowledged:
                tg.start_soon(writer, manager, name, stop)
            await anyio.sleep(1)
            private_redis.pause()
            before = sum(map(len, acknowledged.values()))
            with anyio.move_on_after(OUTAGE):
                while True:
                    rss_peak = max(rss_peak, process.memory_info().rss)
                    await anyio.sleep(0.25)
            during = sum(map(len, acknowledged.values())) - before
            private_redis.resume()
            await anyio.sleep(1)
            stop.set()
    total = sum(map(len, acknowledged.values()))
    print(
        f"\nacknowledged {total} ({during} during the {OUTAGE:.0f} s outage); "
        f"RSS +{(rss_peak - rss_before) / 2**20:.1f} MiB at peak"
    )
    # Writes were acknowledged into the outage until the flusher was full, then held back.
    assert 0 < during <= 2 * 2_000 + WRITERS
    assert rss_peak - rss_before < 256 * 2**20

    async with memory(private_redis.url) as fresh:
        for name, ids in acknowledged.items():
            session = await fresh.get_session(name)
            assert session is not None
            stored = [m.message_id for m in await session.get_messages(limit=len(ids) + 10)]
            assert stored == ids, name
