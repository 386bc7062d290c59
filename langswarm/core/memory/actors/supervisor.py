"""One-for-one supervision with an OTP-style restart intensity."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from ..backends.base import TransientBackendError
from ..exceptions import MemoryConnectionError
from .session import SessionActor

__all__ = ["RestartPolicy", "supervise"]

log = logging.getLogger("langswarm.memory")


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """At most ``max_restarts`` restarts within ``period`` seconds, then the session fails."""

    max_restarts: int = 3
    period: float = 5.0


async def supervise(
    actor: SessionActor, policy: RestartPolicy, on_restart: Callable[[], None]
) -> None:
    """Run ``actor`` until it stops; restart it after crashes (calling ``on_restart``).

    A restart rebuilds the actor's state from the backend once the flusher has drained, so
    everything acknowledged survives; the mailbox is kept, so queued commands are served by
    the restarted actor. Past the limit the actor fails: its callers get
    ``SessionFailedError`` while every other session carries on.
    """
    recent: deque[float] = deque()
    while True:
        try:
            await actor.run()
            return
        except Exception as exc:
            now = anyio.current_time()
            recent.append(now)
            while recent and now - recent[0] > policy.period:
                recent.popleft()
            if len(recent) > policy.max_restarts:
                log.error("session %s failed permanently: %s", actor.session_id, exc)
                actor.fail(exc)
                return
            on_restart()
            log.warning("session %s crashed (%s); restarting", actor.session_id, exc)
            try:
                await actor.recover()
            except (MemoryConnectionError, TransientBackendError) as outage:
                # Storage is unreachable, not the session broken: deactivate; the next call
                # activates it afresh (and sees the outage, if it lasts).
                actor.stop(outage)
                return
            except Exception as reload_error:
                actor.fail(reload_error)
                return
