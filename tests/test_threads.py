"""The global API from several threads at once, each request its own event loop (as sync web
frameworks run async code): four threads on ``asyncio.run`` and one on ``trio.run``, sharing
one manager and one store. Every request completes and everything is stored."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from langswarm.core.memory import (
    create_openai_message,
    get_global_memory_manager,
    initialize_memory,
)

THREADS, REQUESTS = 5, 40


async def request(thread: int, i: int) -> None:
    memory = get_global_memory_manager()
    session = await memory.get_or_create_session(f"user{thread}", f"chat{thread}")
    await session.add_message(create_openai_message("user", f"{thread}.{i}", message_id=f"{i}"))
    context = await session.get_conversation_context(max_tokens=2_000)
    assert context[-1].message_id == f"{i}"


def serve(thread: int, failures: list[BaseException], finished: list[int]) -> None:
    for i in range(REQUESTS):
        try:
            if thread == THREADS - 1:
                trio.run(request, thread, i)
            else:
                asyncio.run(request(thread, i))
        except BaseException as exc:
            failures.append(exc)
            return
    finished.append(thread)


async def stored() -> dict[int, list[str]]:
    memory = get_global_memory_manager()
    found = {}
    for thread in range(THREADS):
        session = await memory.get_session(f"chat{thread}", user_id=f"user{thread}")
        assert session is not None
        found[thread] = [m.message_id for m in await session.get_messages()]
    await memory.close()
    return found


@pytest.mark.parametrize("store", ["memory", "sqlite", "redis"])
def test_threads_each_running_their_own_loops(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config: dict[str, Any] = {"backend": store}
    if store == "sqlite":
        config["config"] = {"db_path": str(tmp_path / "threads.db")}
    elif store == "redis":
        config["config"] = {"url": request.getfixturevalue("redis_url")}
    initialize_memory(memory=config)
    failures: list[BaseException] = []
    finished: list[int] = []
    threads = [
        threading.Thread(target=serve, args=(t, failures, finished), daemon=True)
        for t in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert failures == []
    assert sorted(finished) == list(range(THREADS))
    assert asyncio.run(stored()) == {t: [str(i) for i in range(REQUESTS)] for t in range(THREADS)}


def test_loops_opening_one_sqlite_backend_at_once_share_one_connection(tmp_path: Path) -> None:
    """Loops on several threads open one backend at the same moment: it connects once, and
    once each has closed it no thread of it is left (a second connection would leave its
    driver thread running)."""
    from langswarm.core.memory.backends.sqlite import SQLiteBackend

    backend = SQLiteBackend(db_path=str(tmp_path / "shared.db"))
    before = set(threading.enumerate())
    opened, closing = threading.Barrier(4), threading.Event()
    failures: list[BaseException] = []

    async def use() -> None:
        await backend.open()
        opened.wait(timeout=10)  # every loop holds it open together
        assert await backend.load_session("absent", tail=1) is None
        closing.wait(timeout=10)
        await backend.close()

    def run(i: int) -> None:
        try:
            trio.run(use) if i % 2 else asyncio.run(use())
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    opened.wait(timeout=10)
    during = set(threading.enumerate()) - before - set(threads)
    closing.set()
    for t in threads:
        t.join(timeout=10)
    assert not failures, failures
    # The private loop's thread and one driver thread.
    assert len(during) == 2, sorted(t.name for t in during)
    for t in during:
        t.join(timeout=10)
    assert not [t.name for t in during if t.is_alive()]
