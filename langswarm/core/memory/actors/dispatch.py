"""Which function handles each command.

A synchronous handler runs without awaiting (directly in the caller, or in the actor's task)
and answers ``LATER`` when the command must wait; the command's asynchronous handler, run by
the actor's task, then does the whole job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import commands as c
from . import editing, reads, summarizing, writes
from .commands import LATER
from .consistency import refresh

if TYPE_CHECKING:
    from .session import SessionActor

__all__ = ["ASYNC_HANDLERS", "LATER", "SYNC_HANDLERS"]

SYNC_HANDLERS: dict[type, Callable[[SessionActor, Any], Any]] = {
    **writes.SYNC,
    **reads.SYNC,
    **summarizing.SYNC,
}
ASYNC_HANDLERS: dict[type, Callable[[SessionActor, Any], Awaitable[Any]]] = {
    **writes.ASYNC,
    **reads.ASYNC,
    **editing.ASYNC,
    c.Refresh: refresh,
}
