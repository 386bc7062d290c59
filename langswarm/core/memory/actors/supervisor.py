"""One-for-one supervision with an OTP-style restart intensity."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import anyio

from ..exceptions import MemoryConnectionError, TransientBackendError
from .session import SessionActor
from .tail import InvariantBroken

__all__ = ["supervise"]

log = logging.getLogger("langswarm.memory.supervisor")


async def supervise(
    actor: SessionActor,
    max_restarts: int,
    period: float,
    on_restart: Callable[[], None],
    on_failure: Callable[[SessionActor, BaseException], None],
) -> None:
    """Serve ``actor``'s mailbox until it is idle or ends; rebuild it after crashes.

    A restart rebuilds the actor's state from storage once the flusher has drained, so
    everything acknowledged survives; queued commands stay in the mailbox and are served by
    the rebuilt actor. More than ``max_restarts`` crashes within ``period`` seconds fail the
    session: its callers get ``SessionFailedError`` while every other session carries on;
    ``on_restart`` and ``on_failure`` are told of each restart and of the failure.
    """
    while True:
        try:
            await actor.run()
            return
        except InvariantBroken as exc:
            if not _may_restart(actor, max_restarts, period):
                actor.fail(exc)
                on_failure(actor, exc)
                return
            on_restart()
            log.warning(
                "session %s crashed (%s); restarting it from storage",
                actor.session_id,
                exc,
                extra={
                    "session_id": actor.session_id,
                    "user_id": actor.meta.user_id,
                    "attempt": len(actor.restarts or ()),
                },
            )
        try:
            await actor.recover()
        except (MemoryConnectionError, TransientBackendError) as outage:
            # Storage is unreachable, not the session broken: deactivate; the next call
            # activates it afresh (and sees the outage, if it lasts).
            actor.stop(outage)
            return
        except Exception as reload_error:
            actor.fail(reload_error)
            on_failure(actor, reload_error)
            return


def _may_restart(actor: SessionActor, max_restarts: int, period: float) -> bool:
    now = anyio.current_time()
    recent = actor.restarts
    if recent is None:
        recent = actor.restarts = deque()
    recent.append(now)
    while recent and now - recent[0] > period:
        recent.popleft()
    return len(recent) <= max_restarts
