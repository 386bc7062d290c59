"""The Redis backend's session indexes: listings and totals walk them, deletes and (on a
cluster) writes keep them. An index entry can outlive its session (Redis expired the keys,
or a write failed half-way on a cluster): readers prune such ghosts when they meet them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import redis.exceptions
from redis.typing import EncodableT

from ...exceptions import MemoryCorruptionError
from ...interfaces import SessionMetadata, SessionStatus
from ..base import SessionWrite, WriteResult
from ._connect import Client
from ._layout import Keys, row_of
from ._scripts import DELETE, PRUNE, run_scripts

__all__ = ["delete", "list_sessions", "reindex", "usage_stats"]

log = logging.getLogger("langswarm.memory.redis")


async def reindex(
    client: Client,
    keys: Keys,
    batch: Sequence[SessionWrite],
    results: Sequence[WriteResult],
    ttl: int,
) -> None:
    """Bring the indexes in line with what a batch did (on a cluster, where the write script
    cannot reach them)."""
    pipe = client.pipeline(transaction=False)
    for write, result in zip(batch, results, strict=True):
        state, sid = result.state, write.session_id
        if state.incarnation is None:
            if write.delete:
                pipe.zrem(keys.all, sid)
            continue
        if result.error is None and (result.created or write.touched is not None):
            score = (write.touched or (write.create and write.create.updated_at)).timestamp()  # type: ignore[union-attr]
            pipe.zadd(keys.all, {sid: score})
            pipe.zadd(keys.user(state.owner or ""), {sid: score})
            if ttl:
                # Outlives every session it lists: each expires ttl after its own write.
                pipe.expire(keys.user(state.owner or ""), ttl)
    if len(pipe):
        await pipe.execute(raise_on_error=False)


async def delete(
    client: Client, keys: Keys, session_ids: list[str], cutoff: str, width: int
) -> int:
    """Delete sessions (with a ``cutoff``, only those not updated since); return how many."""
    calls = [(keys.session(sid), [cutoff]) for sid in session_ids]
    replies = await run_scripts(client, DELETE, calls, width)
    deleted = 0
    unindex = client.pipeline(transaction=False)
    for sid, reply in zip(session_ids, replies, strict=True):
        if isinstance(reply, Exception):
            raise reply
        gone, owner = reply
        if gone or not owner:
            unindex.zrem(keys.all, sid)
            if owner:
                unindex.zrem(keys.user(owner.decode()), sid)
        deleted += gone
    if len(unindex):
        await unindex.execute(raise_on_error=False)
    return deleted


async def list_sessions(
    client: Client,
    keys: Keys,
    user_id: str | None,
    status: SessionStatus | None,
    limit: int | None,
    before: float | None,
) -> list[SessionMetadata]:
    """Walk the index newest first, one page per two round trips, pruning ghosts."""
    index = keys.all if user_id is None else keys.user(user_id)
    top = "+inf" if before is None else f"({before!r}"
    page = 200 if limit is None else min(max(2 * limit, 32), 1000)
    found: dict[str, SessionMetadata] = {}
    offset = 0
    while limit is None or len(found) < limit:
        rows = cast(
            list[tuple[bytes, float]],
            await client.zrevrangebyscore(
                index, top, "-inf", start=offset, num=page, withscores=True
            ),
        )
        if not rows:
            break
        metas = await _metas(client, keys, [member.decode() for member, _ in rows])
        ghosts: list[EncodableT] = []
        for (member, score), (meta, present) in zip(rows, metas, strict=True):
            if not present or (meta is not None and user_id not in (None, meta.user_id)):
                ghosts += (member, repr(score))
            elif meta is None:
                continue  # unreadable: kept indexed, so that stats count it and it can be deleted
            elif (status is None or meta.status == status) and (
                before is None or meta.updated_at.timestamp() < before
            ):
                found.setdefault(meta.session_id, meta)
        removed = await _prune(client, index, ghosts)
        if len(rows) < page:
            break
        offset += len(rows) - removed
    result = sorted(found.values(), key=lambda m: m.updated_at, reverse=True)
    return result if limit is None else result[:limit]


async def _metas(
    client: Client, keys: Keys, session_ids: list[str]
) -> list[tuple[SessionMetadata | None, bool]]:
    """Each session's metadata (``None`` when unreadable, logged) and whether it exists."""
    pipe = client.pipeline(transaction=False)
    for sid in session_ids:
        pipe.hgetall(keys.session(sid)[0])
    replies = await pipe.execute(raise_on_error=False)
    return [
        (_meta(sid, fields), isinstance(fields, Exception) or bool(fields))
        for sid, fields in zip(session_ids, replies, strict=True)
    ]


def _meta(session_id: str, fields: Any) -> SessionMetadata | None:
    if isinstance(fields, Exception) or not fields:
        if isinstance(fields, Exception):
            log.warning("skipping session %r: %s", session_id, fields)
        return None
    try:
        return row_of(session_id, fields).meta()
    except MemoryCorruptionError as exc:
        log.warning("skipping session %r: %s", session_id, exc)
        return None


async def _prune(client: Client, index: str, ghosts: list[EncodableT]) -> int:
    if not ghosts:
        return 0
    try:
        return int(await client.evalsha(PRUNE.sha, 1, index, *ghosts))
    except redis.exceptions.NoScriptError:
        await client.script_load(PRUNE.text)
        return int(await client.evalsha(PRUNE.sha, 1, index, *ghosts))


async def usage_stats(client: Client, keys: Keys) -> dict[str, Any]:
    """Totals over every indexed session, pruning ghosts."""
    totals = {"sessions": 0, "messages": 0, "summaries": 0, "corrupt": 0}
    by_status: dict[str, int] = {}
    size: int | None = 0
    seen: set[bytes] = set()
    cursor = 0
    while True:
        cursor, scanned = cast(
            tuple[int, list[tuple[bytes, float]]], await client.zscan(keys.all, cursor, count=500)
        )
        rows = [(m, score) for m, score in scanned if m not in seen]
        seen.update(m for m, _ in rows)
        size = await _count(client, keys, rows, totals, by_status, size)
        if cursor == 0:
            break
    if size is not None:
        try:
            size += await client.memory_usage(keys.all) or 0
        except redis.exceptions.ResponseError:  # MEMORY disabled or renamed by the operator
            size = None
    return {
        "total_sessions": totals["sessions"],
        "total_messages": totals["messages"],
        "total_summaries": totals["summaries"],
        "sessions_by_status": by_status,
        "corrupt_sessions": totals["corrupt"],
        "storage_size_mb": None if size is None else size / (1024 * 1024),
    }


async def _count(
    client: Client,
    keys: Keys,
    rows: list[tuple[bytes, float]],
    totals: dict[str, int],
    by_status: dict[str, int],
    size: int | None,
) -> int | None:
    """Add one page of the index to the totals; return the size so far (``None``: unknown)."""
    if not rows:
        return size
    pipe = client.pipeline(transaction=False)
    for member, _ in rows:
        session = keys.session(member.decode())
        for key in session:
            pipe.memory_usage(key)
        pipe.hgetall(session[0])
        pipe.hlen(session[3])
    replies = await pipe.execute(raise_on_error=False)
    ghosts: list[EncodableT] = []
    for i, (member, score) in enumerate(rows):
        *usage, fields, n_summaries = replies[6 * i : 6 * i + 6]
        meta = _meta(member.decode(), fields)
        if not fields:
            ghosts += (member, repr(score))
            continue
        if meta is None:
            totals["corrupt"] += 1
            continue
        totals["sessions"] += 1
        totals["messages"] += meta.message_count
        totals["summaries"] += 0 if isinstance(n_summaries, Exception) else n_summaries
        by_status[meta.status.value] = by_status.get(meta.status.value, 0) + 1
        if size is not None:
            if any(isinstance(u, redis.exceptions.ResponseError) for u in usage):
                size = None
            else:
                size += sum(u or 0 for u in usage)
    await _prune(client, keys.all, ghosts)
    return size
