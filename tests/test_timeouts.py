"""Every call returns or raises within ``call_timeout`` (+1 s) while storage is stalled: the
SQLite write lock held by another process, or Redis frozen with SIGSTOP. Nothing acknowledged
is lost, nothing reported as not stored is stored, and sending an unconfirmed write again
with the same message id stores it once.

The stall lasts ``LANGSWARM_STALL_SECONDS`` (default 12); ``tests/soak/stalls.sh`` runs the
40 s and 170 s lock holds and the 20 s Redis freeze.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from langswarm.core.memory import MemoryManager, create_openai_message
from langswarm.core.memory.exceptions import MemoryError, MemoryOutcomeUnknownError
from tests._servers import RedisServer
from tests.helpers import hold_write_lock

pytestmark = pytest.mark.anyio

STALL = float(os.environ.get("LANGSWARM_STALL_SECONDS", "12"))
CALL_TIMEOUT = 3.0
WRITERS = 8


class Ledger:
    """What each call was told, and how long it took."""

    def __init__(self) -> None:
        self.acked: list[str] = []
        self.not_stored: list[str] = []
        self.unknown: list[str] = []
        self.slowest = 0.0

    async def write(self, memory: MemoryManager, session_id: str, message_id: str) -> None:
        started = time.monotonic()
        try:
            session = await memory.get_session(session_id)
            assert session is not None
            await session.add_message(create_openai_message("user", "x", message_id=message_id))
        except MemoryOutcomeUnknownError:
            self.unknown.append(message_id)
        except MemoryError:
            self.not_stored.append(message_id)
        else:
            self.acked.append(message_id)
        self.slowest = max(self.slowest, time.monotonic() - started)


async def run_stall(
    memory: MemoryManager, stall: Callable[[], Awaitable[Any]], unstall: Callable[[], Any]
) -> Ledger:
    ledger = Ledger()
    for w in range(WRITERS):
        await memory.create_session(f"user{w}", f"s{w}")
    stop = anyio.Event()

    async def writer(w: int) -> None:
        n = 0
        while not stop.is_set():
            await ledger.write(memory, f"s{w}", f"s{w}-{n}")
            n += 1

    async with anyio.create_task_group() as tg:
        for w in range(WRITERS):
            tg.start_soon(writer, w)
        await stall()
        await anyio.sleep(STALL)  # the stall itself, not synchronisation
        unstall()
        stop.set()
    # Unconfirmed writes sent again with the same ids: stored once, whatever happened before.
    for message_id in ledger.unknown:
        await ledger.write(memory, message_id.split("-")[0], message_id)
    return ledger


async def check(memory: MemoryManager, ledger: Ledger) -> None:
    assert ledger.slowest <= CALL_TIMEOUT + 1, ledger.slowest
    assert ledger.not_stored or ledger.unknown, "the stall was never felt"
    stored: list[str] = []
    for w in range(WRITERS):
        session = await memory.get_session(f"s{w}")
        assert session is not None
        stored += [m.message_id for m in await session.get_messages()]
    assert len(stored) == len(set(stored)), "a message was stored twice"
    assert set(ledger.acked) <= set(stored), "an acknowledged write was lost"
    assert set(ledger.not_stored).isdisjoint(stored), "a write reported as not stored was"


async def test_the_sqlite_write_lock_held_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "stall.db"
    config = {
        "backend": "sqlite",
        "config": {"db_path": str(path), "busy_timeout": 1.0},
        "call_timeout": CALL_TIMEOUT,
        "retry_budget": 2.0,
        "shutdown_grace": 5,
    }
    holder: list[anyio.abc.Process] = []

    async def stall() -> None:
        holder.append(await hold_write_lock(path, STALL))

    async with MemoryManager.from_config(memory=config) as memory:
        ledger = await run_stall(memory, stall, lambda: None)
        async with holder[0]:
            await holder[0].wait()
        await check(memory, ledger)


async def test_redis_frozen(private_redis: RedisServer) -> None:
    config = {
        "backend": "redis",
        "config": {"url": private_redis.url, "socket_timeout": 1.0, "connect_timeout": 1.0},
        "call_timeout": CALL_TIMEOUT,
        "retry_budget": 2.0,
        "shutdown_grace": 5,
    }

    async def stall() -> None:
        private_redis.pause()

    async with MemoryManager.from_config(memory=config) as memory:
        ledger = await run_stall(memory, stall, private_redis.resume)
        await check(memory, ledger)
