"""Small helpers shared by tests."""

from __future__ import annotations

from datetime import datetime, timedelta

from langswarm.core.memory import MemoryManager
from langswarm.core.memory.backends.base import SessionWrite


async def backdate(manager: MemoryManager, session_id: str, *, days: float) -> None:
    """Make a stored session look ``days`` older, through the backend's own write path."""
    await manager.backend.list_sessions(limit=1)  # drain pending writes first
    runtime = await manager._ensure()
    assert runtime.registry is not None
    actor = runtime.registry.live.get(session_id)
    if actor is not None:
        actor.stop()
        runtime.registry.on_stopped(actor)
    stored = await runtime.backend.load_session(session_id, tail=0)
    assert stored is not None
    meta = stored.meta
    meta.updated_at = datetime.now() - timedelta(days=days)
    meta.created_at = min(meta.created_at, meta.updated_at)
    await runtime.backend.apply([SessionWrite(session_id=session_id, meta=meta)])
