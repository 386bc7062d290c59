"""Version checks for reads on a shared store, beside the write path.

Before a read, a live session on a store other processes share makes sure it holds what
storage holds. When none of its writes is queued or being stored, a plain read of the stored
version answers that: gathered with every other session's check of the moment into one
backend call, it waits for no write batch (the batch would have it wait for the one under way
and then its own). A change it finds makes the session reload; a check that cannot be made
sends the caller the long way, through the write batch.
"""

from __future__ import annotations

import logging

import anyio
from anyio.abc import TaskStatus

from .._loop import suspending
from ..backends.base import Backend

__all__ = ["VersionChecks"]

log = logging.getLogger("langswarm.memory.versions")


class _Round:
    """The sessions asked about together, and what storage answered (``None``: no answer)."""

    __slots__ = ("done", "found", "ids")

    def __init__(self) -> None:
        self.ids: dict[str, None] = {}
        self.found: dict[str, tuple[str, int] | None] | None = None
        self.done = anyio.Event()


class VersionChecks:
    """Asks storage for sessions' versions, many sessions per call, one call at a time."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._next = _Round()
        self._asking: _Round | None = None
        self._wake = anyio.Event()

    async def same(self, session_id: str, incarnation: str, version: int) -> bool | None:
        """Whether storage holds the session at exactly ``incarnation`` and ``version`` now
        (``False``: changed or gone); ``None`` when that could not be found out."""
        round_ = self._next
        round_.ids[session_id] = None
        if not self._wake.is_set():
            self._wake.set()
        suspending()
        await round_.done.wait()
        found = round_.found
        return None if found is None else found.get(session_id) == (incarnation, version)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Answer rounds until cancelled; then release whoever still waits (unanswered)."""
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                while self._next.ids:
                    round_ = self._asking = self._next
                    self._next = _Round()
                    await self._ask(round_)
                    self._asking = None
        finally:
            if self._asking is not None:
                self._asking.done.set()
            self._next.done.set()

    async def _ask(self, round_: _Round) -> None:
        ids = list(round_.ids)
        try:
            states = await self.backend.read_versions(ids)
        except Exception as exc:  # answered through the write path instead
            log.debug("version check of %d sessions failed: %s", len(ids), exc)
        else:
            round_.found = dict(zip(ids, states, strict=True))
        round_.done.set()
