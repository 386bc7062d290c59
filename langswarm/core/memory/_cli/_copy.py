"""Reading sessions out of a store through the backend protocol, in pages: the listing
newest update first, a page at a time, then each session's messages a page at a time, so
memory stays bounded whatever the size of a store or of a session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from .._export import SessionRecord
from ..backends.base import REMOVED, Backend, SessionSnapshot
from ..interfaces import Message, SessionMetadata
from ._common import Selection

__all__ = ["listing", "message_pages", "read_pages", "read_session", "record_of"]

#: Sessions per listing page, and messages per read.
LIST_PAGE = 500
READ_PAGE = 1_000
#: Pages read ahead of the one being written out, and sessions read at the same time.
READ_AHEAD = 8
PREFETCH = 8


async def listing(backend: Backend, selection: Selection) -> AsyncIterator[SessionMetadata]:
    """The metadata of every session ``selection`` names, each once, newest update first
    (given ids: in the order given)."""
    if selection.sessions:
        for session_id in dict.fromkeys(selection.sessions):
            snapshot = await backend.load_session(session_id, tail=0)
            if snapshot is not None and _matches(snapshot.meta, selection):
                yield snapshot.meta
        return
    for user in selection.users or (None,):
        async for meta in _pages(backend, selection, user):
            yield meta


def _matches(meta: SessionMetadata, selection: Selection) -> bool:
    before, after = selection.updated_before, selection.updated_after
    updated = meta.updated_at.timestamp()
    return (
        (not selection.users or meta.user_id in selection.users)
        and (selection.status is None or meta.status == selection.status)
        and (before is None or updated < before.timestamp())
        and (after is None or updated >= after.timestamp())
    )


def _time(meta: SessionMetadata) -> float:
    return meta.updated_at.timestamp()


async def _pages(
    backend: Backend, selection: Selection, user: str | None
) -> AsyncIterator[SessionMetadata]:
    """One user's (or every) matching session, in pages of the backend's listing.

    The listing only pages by ``updated_before``, and sessions can share an update time: a
    page holds back the sessions of its oldest time, which the next page (reaching 1 µs
    past that time) lists again, and gives them out then. A page all of one time is asked
    again, twice as long.
    """
    before = selection.updated_before
    after = None if selection.updated_after is None else selection.updated_after.timestamp()
    floor, limit = float("inf"), LIST_PAGE
    while True:
        page = await backend.list_sessions(
            user_id=user, status=selection.status, limit=limit, updated_before=before
        )
        full = len(page) >= limit
        page.sort(key=lambda m: (_time(m), m.session_id), reverse=True)
        page = [m for m in page if _time(m) <= floor]  # the rest went out with the last page
        if not page:
            return
        oldest = _time(page[-1])
        for meta in page:
            if after is not None and _time(meta) < after:
                return
            if full and _time(meta) == oldest:
                break
            yield meta
        if not full:
            return
        if _time(page[0]) == oldest:
            limit *= 2
            continue
        before = page[-1].updated_at + timedelta(microseconds=1)
        floor, limit = oldest, LIST_PAGE


async def read_session(backend: Backend, session_id: str) -> SessionRecord | None:
    """A session's metadata, numbering and summaries (``None`` if it is gone)."""
    snapshot = await backend.load_session(session_id, tail=0)
    return None if snapshot is None else record_of(snapshot)


def record_of(snapshot: SessionSnapshot) -> SessionRecord:
    summaries = sorted(snapshot.summaries, key=lambda s: s.covers_through)
    return SessionRecord(
        snapshot.meta, snapshot.incarnation, snapshot.first_seq, snapshot.next_seq, summaries
    )


async def message_pages(
    backend: Backend, record: SessionRecord, start: int
) -> AsyncIterator[list[tuple[int, Message]]]:
    """The session's stored messages from ``start`` up to its ``next_seq``, each with its
    sequence number, a page at a time (removed ones leave gaps)."""
    start = max(start, record.first_seq)
    while start < record.next_seq:
        page = await _page(backend, record, start)
        if page:
            yield page
        start += READ_PAGE


async def _page(backend: Backend, record: SessionRecord, start: int) -> list[tuple[int, Message]]:
    stop = min(start + READ_PAGE, record.next_seq)
    loaded = await backend.load_messages(record.meta.session_id, start=start, stop=stop)
    return [(start + i, m) for i, m in enumerate(loaded) if m is not REMOVED]


Item = SessionRecord | list[tuple[int, Message]]


async def read_pages(
    store: Backend, selection: Selection, send: MemoryObjectSendStream[Item]
) -> None:
    """Send each selected session, then its pages of messages, to ``send``. Run as a task, so
    that reading overlaps with whatever the receiver does; sessions are read ``PREFETCH`` at a
    time (each with its first page), so that round trips to the store overlap too."""
    async with send:
        group: list[str] = []
        async for meta in listing(store, selection):
            group.append(meta.session_id)
            if len(group) == PREFETCH:
                await _send_group(store, group, send)
                group = []
        await _send_group(store, group, send)


async def _send_group(store: Backend, ids: list[str], send: MemoryObjectSendStream[Item]) -> None:
    heads: list[tuple[SessionRecord, list[tuple[int, Message]]] | None] = [None] * len(ids)

    async def head(i: int) -> None:
        record = await read_session(store, ids[i])
        if record is not None:  # else deleted meanwhile
            heads[i] = record, await _page(store, record, record.first_seq)

    async with anyio.create_task_group() as tasks:
        for i in range(len(ids)):
            tasks.start_soon(head, i)
    for found in heads:
        if found is None:
            continue
        record, first = found
        await send.send(record)
        if first:
            await send.send(first)
        async for page in message_pages(store, record, record.first_seq + READ_PAGE):
            await send.send(page)
