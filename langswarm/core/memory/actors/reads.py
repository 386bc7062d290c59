"""Handlers of the commands that read a session: messages and budgeted context windows.

Served from memory when it holds what is asked; otherwise (``LATER``) the actor's task pages
older messages in from storage, a page at a time, so a window costs what it returns.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio

from .._tokens import ensure_counted
from .._windows import window_start
from ..backends.base import live
from ..exceptions import MemoryValidationError
from ..interfaces import Message
from . import commands as c
from .commands import LATER, Later
from .tail import select
from .writes import expired, settle_expiry

if TYPE_CHECKING:
    from .session import SessionActor

__all__ = ["ASYNC", "PAGE", "SYNC"]

#: Older messages loaded per round trip when a window reaches past memory.
PAGE = 512
#: Messages without a token count that a read counts on the event loop; more go to a thread.
COUNT_INLINE_MAX = 64


def get_messages(actor: SessionActor, command: c.GetMessages) -> list[Message] | Later:
    if expired(actor, datetime.now()):
        return LATER
    limit = command.limit
    if limit is not None and limit <= 0:
        return []
    tail = actor.tail
    end = tail.visible(command.settled)
    if command.since is not None or command.roles is not None:
        if not tail.complete:
            return LATER
        found = select(tail.messages[:end], limit, command.since, command.roles)
    else:
        newest = tail.newest(limit, end)
        if newest is None:
            return LATER
        found = newest
    uncounted = sum(1 for m in found if m.token_count is None)
    if uncounted > COUNT_INLINE_MAX:
        return LATER
    if uncounted:
        ensure_counted(found)
    return found


async def get_messages_later(actor: SessionActor, command: c.GetMessages) -> list[Message]:
    if expired(actor, datetime.now()):
        await settle_expiry(actor)
    limit = command.limit
    if limit is not None and limit <= 0:
        return []
    tail = actor.tail
    older: list[Message] = []
    if tail.first < tail.start:
        older = await actor.host.backend.load_messages(
            actor.session_id, start=tail.first, stop=tail.start
        )
    end = tail.visible(command.settled)
    found = select(older + tail.messages[:end], command.limit, command.since, command.roles)
    uncounted = [m for m in found if m.token_count is None]
    if uncounted:
        await anyio.to_thread.run_sync(ensure_counted, uncounted)
    return found


def _budget(actor: SessionActor, command: c.Context) -> int:
    budget = command.max_tokens
    if budget is None:
        budget = actor.meta.max_tokens
    if budget is None:
        return sys.maxsize
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
        raise MemoryValidationError("max_tokens must be a non-negative int")
    return budget


def context(actor: SessionActor, command: c.Context) -> list[Message] | Later:
    if expired(actor, datetime.now()):
        return LATER
    tail = actor.tail
    head, budget, floor = actor.summaries.head(
        command.include_summaries, _budget(actor, command), tail.first
    )
    window = tail.window(budget, floor, tail.visible(command.settled))
    if window is None:
        return LATER
    return head + window if head else window


async def context_later(actor: SessionActor, command: c.Context) -> list[Message]:
    if expired(actor, datetime.now()):
        await settle_expiry(actor)
    tail = actor.tail
    head, budget, floor = actor.summaries.head(
        command.include_summaries, _budget(actor, command), tail.first
    )
    lo = max(tail.start, floor)
    messages = tail.messages[lo - tail.start : tail.visible(command.settled)]
    while True:
        start, _, exhausted = window_start(messages, 0, len(messages), budget)
        if not exhausted or lo <= floor:
            return head + live(messages[start:])
        page_start = max(floor, lo - PAGE)
        older = await actor.host.backend.load_messages(actor.session_id, start=page_start, stop=lo)
        messages = older + messages
        lo = page_start


SYNC: dict[type, Callable[[SessionActor, Any], Any]] = {
    c.GetMessages: get_messages,
    c.Context: context,
}
ASYNC: dict[type, Callable[[SessionActor, Any], Awaitable[Any]]] = {
    c.GetMessages: get_messages_later,
    c.Context: context_later,
}
