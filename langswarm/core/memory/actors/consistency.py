"""Keeping a live session current with a store that other processes may change too.

A session actor's state is a cache of what storage holds, tagged with the stored version it
reflects. Each of its writes comes back with the version before and after: when the version
before is the one the actor knew, nobody else changed the session in between and the cache
stays current; otherwise the actor marks itself stale and reloads. A read on a shared store
first asks storage for the session's version (a probe, batched with every other write and
probe of the moment, so one round trip serves them all) and reloads if it moved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backends.base import SessionWrite, WriteResult
from ..exceptions import SessionNotFoundError
from . import commands as c

if TYPE_CHECKING:
    from .session import SessionActor

__all__ = ["confirm", "refresh", "validate"]


def confirm(actor: SessionActor, write: SessionWrite, result: WriteResult) -> None:
    """Take in how one of the actor's writes (or probes) went."""
    state = result.state
    if state.incarnation != actor.incarnation:
        # Deleted, and maybe re-created for someone else, by another process (or by us).
        actor.gone(SessionNotFoundError(f"session {actor.session_id} was deleted"))
        return
    if result.error is None and not result.conflict and result.version_before == actor.version:
        actor.version = state.version
    else:
        actor.stale()


async def validate(actor: SessionActor) -> None:
    """Make sure the actor holds what storage holds as of now (one round trip)."""
    flusher = actor.host.flusher
    _, commit = flusher.write(actor.session_id, actor.incarnation, weight=0)
    await commit.wait()
    actor.raise_if_gone()
    if actor.version is None:
        await actor.post(c.Refresh())


async def refresh(actor: SessionActor, command: c.Refresh) -> None:
    """Reload the state from storage, unless a refresh before this one already did."""
    if actor.version is not None:
        return
    snapshot = await actor.fetch()
    if snapshot is not None:
        actor.reload(snapshot)
    actor.raise_if_gone()
