"""Handlers of the commands that change a session: append, metadata, archive, delete.

Each returns the :class:`Commit` that stores the change, or ``LATER`` when it must wait for
room in the flusher (the actor's task then runs the waiting variant).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..exceptions import MemoryValidationError, SessionNotFoundError
from ..interfaces import SessionStatus
from . import commands as c
from .commands import LATER, Later
from .upkeep import after_append

if TYPE_CHECKING:
    from .flusher import Commit
    from .session import SessionActor

__all__ = ["ASYNC", "SYNC", "check_expiry"]


def check_expiry(actor: SessionActor, now: datetime) -> None:
    """An idle session past its TTL is gone, even before the registry sweeps it."""
    ttl = actor.host.settings.ttl_seconds
    if ttl is None or (now - actor.meta.updated_at).total_seconds() < ttl:
        return
    error = SessionNotFoundError(f"session {actor.session_id} expired")
    actor.host.flusher.delete(actor.session_id)
    actor.gone(error)
    raise error


def _check_writable(actor: SessionActor) -> None:
    status = actor.meta.status
    if status is not SessionStatus.ACTIVE:
        raise MemoryValidationError(
            f"session {actor.session_id} is {status.value}; it accepts no messages"
        )


def append(actor: SessionActor, command: c.Append) -> Commit | Later:
    tail = actor.tail
    tail.check(actor.session_id)
    now = datetime.now()
    check_expiry(actor, now)
    _check_writable(actor)
    messages = command.messages
    flusher = actor.host.flusher
    if not flusher.has_space(len(messages)):
        return LATER
    commit = flusher.append(actor.session_id, tail.next, messages, actor)
    tail.append(messages, commit, actor.session_id)
    meta = actor.meta
    meta.message_count += len(messages)
    meta.updated_at = now
    after_append(actor)
    return commit


async def append_later(actor: SessionActor, command: c.Append) -> Commit:
    while True:
        await actor.host.flusher.wait_for_space(len(command.messages))
        result = append(actor, command)
        if not isinstance(result, Later):
            return result


def update_meta(actor: SessionActor, command: c.UpdateMeta) -> Commit:
    check_expiry(actor, datetime.now())
    meta = actor.meta
    for key, value in command.config.items():
        setattr(meta, key, value)
    meta.metadata.update(command.custom)
    meta.updated_at = datetime.now()
    return actor.host.flusher.touch(actor.session_id, actor)


def archive(actor: SessionActor, command: c.Archive) -> Commit:
    actor.meta.status = SessionStatus.ARCHIVED
    actor.meta.updated_at = datetime.now()
    return actor.host.flusher.touch(actor.session_id, actor)


def delete(actor: SessionActor, command: c.Delete) -> Commit:
    commit = actor.host.flusher.delete(actor.session_id)
    actor.gone(SessionNotFoundError(f"session {actor.session_id} was deleted"))
    return commit


SYNC: dict[type, Callable[[SessionActor, Any], Any]] = {
    c.Append: append,
    c.UpdateMeta: update_meta,
    c.Archive: archive,
    c.Delete: delete,
}
ASYNC: dict[type, Callable[[SessionActor, Any], Awaitable[Any]]] = {c.Append: append_later}
