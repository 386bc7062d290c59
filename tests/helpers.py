"""Small helpers shared by tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio

from langswarm.core.memory import MemoryManager, Message, MessageRole
from langswarm.core.memory.backends.base import Backend, SessionWrite, WriteResult
from tests.children import script


async def backdate(manager: MemoryManager, session_id: str, *, days: float) -> None:
    """Make a stored session look ``days`` older, through the backend's own write path."""
    await manager.backend.list_sessions(limit=1)  # drain pending writes first
    runtime = await manager._ensure()
    actor = runtime.registry.live.get(session_id)
    if actor is not None:
        actor.stop()
    stored = await runtime.backend.load_session(session_id, tail=0)
    assert stored is not None
    then = datetime.now() - timedelta(days=days)
    write = SessionWrite(session_id, stored.incarnation, touched=then)
    [result] = await runtime.backend.apply([write])
    assert result.error is None and result.state.version == stored.version + 1


class GatedBackend:
    """A real backend whose batch writes wait at a gate the test opens.

    Not a mock: every call reaches the wrapped backend. It only lets a test hold the flusher
    still, to look at the runtime while writes pile up.
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.persistent = inner.persistent
        self.gate = anyio.Event()
        self.gate.set()
        self.waiting = anyio.Event()
        self.applied_batches = 0

    def close_gate(self) -> None:
        self.gate = anyio.Event()
        self.waiting = anyio.Event()

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def apply(self, batch: Sequence[SessionWrite]) -> list[WriteResult]:
        if not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
        results = await self.inner.apply(batch)
        self.applied_batches += 1
        return results

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def manager_on(backend: Backend, **options: Any) -> MemoryManager:
    """A manager over ``backend`` with runtime ``options`` (see ``initialize_memory``)."""
    from langswarm.core.memory._config import settings_from_options

    options.setdefault("shutdown_grace", 5)
    return MemoryManager(backend, settings_from_options(options))


async def passivate_all(manager: MemoryManager) -> None:
    """Passivate every idle session (for managers made with ``idle_timeout=0``)."""
    runtime = await manager._ensure()
    await runtime.registry.sweep()
    assert not runtime.registry.live


def user_message(text: str) -> Message:
    return Message(role=MessageRole.USER, content=text)


async def hold_write_lock(path: str | os.PathLike[str], seconds: float) -> anyio.abc.Process:
    """Start a process holding the database's write lock; return once it holds it."""
    process = await anyio.open_process(
        [sys.executable, script("lock_holder"), os.fspath(path), str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    seen = b""
    while b"locked\n" not in seen:
        seen += await process.stdout.receive()
    return process
