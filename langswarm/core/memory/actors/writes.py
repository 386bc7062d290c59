"""Handlers of the commands that change a session: append, metadata, archive, delete.

Each changes the state in memory, folds the change into the session's pending write, and
returns the :class:`Commit` that stores it, or ``LATER`` when it must wait (for room in the
flusher, or to find out whether a session past its TTL is really gone).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from ..exceptions import MemoryValidationError, SessionNotFoundError
from ..interfaces import SessionStatus
from . import commands as c
from .commands import LATER, Later
from .upkeep import after_append

if TYPE_CHECKING:
    from .flusher import Commit
    from .session import SessionActor

__all__ = ["ASYNC", "SYNC", "expired", "settle_expiry"]


def expired(actor: SessionActor, now: datetime) -> bool:
    """Past its TTL by what the actor knows (storage, or another process, may know better)."""
    ttl = actor.host.settings.ttl_seconds
    return ttl is not None and (now - actor.meta.updated_at).total_seconds() >= ttl


async def settle_expiry(actor: SessionActor) -> None:
    """An idle session past its TTL is gone, even before the registry sweeps it; but only if
    storage agrees (another process may have used it): deleted, or reloaded."""
    ttl = actor.host.settings.ttl_seconds
    assert ttl is not None
    cutoff = datetime.now() - timedelta(seconds=ttl)
    await actor.host.flusher.barrier()
    deleted = await actor.host.backend.delete_sessions([actor.session_id], idle_before=cutoff)
    if deleted:
        actor.gone(SessionNotFoundError(f"session {actor.session_id} expired"))
    else:
        snapshot = await actor.fetch()
        if snapshot is not None:
            actor.reload(snapshot)
            if expired(actor, datetime.now()):  # storage expired it by itself
                actor.gone(SessionNotFoundError(f"session {actor.session_id} expired"))
    actor.raise_if_gone()


def _check_writable(actor: SessionActor) -> None:
    status = actor.meta.status
    if status is not SessionStatus.ACTIVE:
        raise MemoryValidationError(
            f"session {actor.session_id} is {status.value}; it accepts no messages"
        )


def append(actor: SessionActor, command: c.Append) -> Commit | Later:
    tail = actor.tail
    tail.check()
    now = datetime.now()
    if expired(actor, now):
        return LATER
    _check_writable(actor)
    messages = command.messages
    flusher = actor.host.flusher
    if not flusher.has_space(len(messages)):
        return LATER
    write, commit = flusher.write(*actor.key, weight=len(messages), held=command.held)
    write.messages.extend(messages)
    write.touched = now
    tail.append(messages, commit)
    meta = actor.meta
    meta.message_count += len(messages)
    meta.updated_at = now
    after_append(actor)
    return commit


async def append_later(actor: SessionActor, command: c.Append) -> Commit:
    while True:
        if expired(actor, datetime.now()):
            await settle_expiry(actor)
        await actor.host.flusher.wait_for_space(len(command.messages))
        result = append(actor, command)
        if not isinstance(result, Later):
            return result


def update_meta(actor: SessionActor, command: c.UpdateMeta) -> Commit | Later:
    now = datetime.now()
    if expired(actor, now):
        return LATER
    meta = actor.meta
    for key, value in command.config.items():
        setattr(meta, key, value)
    meta.metadata.update(command.custom)
    meta.updated_at = now
    write, commit = actor.host.flusher.write(*actor.key, held=command.held)
    write.settings.update(command.config)
    write.custom.update(command.custom)
    write.touched = now
    return commit


def archive(actor: SessionActor, command: c.Archive) -> Commit:
    now = datetime.now()
    actor.meta.status = SessionStatus.ARCHIVED
    actor.meta.updated_at = now
    write, commit = actor.host.flusher.write(*actor.key, held=command.held)
    write.status = SessionStatus.ARCHIVED
    write.touched = now
    return commit


def delete(actor: SessionActor, command: c.Delete) -> Commit:
    write, commit = actor.host.flusher.write(*actor.key)
    write.drop_changes()  # moot once the session is gone
    write.create = None  # a session never stored is simply not created
    write.delete = True
    actor.gone(SessionNotFoundError(f"session {actor.session_id} was deleted"))
    return commit


async def update_meta_later(actor: SessionActor, command: c.UpdateMeta) -> Commit:
    if expired(actor, datetime.now()):
        await settle_expiry(actor)
    return cast("Commit", update_meta(actor, command))


SYNC: dict[type, Callable[[SessionActor, Any], Any]] = {
    c.Append: append,
    c.UpdateMeta: update_meta,
    c.Archive: archive,
    c.Delete: delete,
}
ASYNC: dict[type, Callable[[SessionActor, Any], Awaitable[Any]]] = {
    c.Append: append_later,
    c.UpdateMeta: update_meta_later,
}
