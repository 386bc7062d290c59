"""Redis storage: one hash-tagged key family per session, written by idempotent Lua scripts.

Layout, for prefix ``P`` and session ``S`` (the ``{S}`` hash tag keeps a session's keys on
one cluster slot)::

    P:{S}:meta     hash: m = pack_meta blob, u = user id, f = first stored sequence number
    P:{S}:msgs     list of pack_message blobs, sequence numbers f, f + 1, ...
    P:{S}:sums     hash: summary id -> pack_summary blob
    P:idx:all      sorted set of session ids scored by updated_at
    P:idx:user:U   the same, per user

A batch is one pipeline, so one round trip: a script call per group of sessions, then the
index updates (one ZADD per index). The script applies each session's write atomically and
appends only the messages not stored yet, so a batch re-sent after a dropped connection
duplicates nothing. Index entries whose session expired or was deleted are pruned when a read
meets them. The client talks to one server; grouping sessions per script call is what would
change (to one group per slot) to run against a cluster.

redis.asyncio only runs on asyncio, so the client lives on a private loop in a helper thread
and every protocol call is one hand-off to it, whatever loop the host runs. Commands are
packed by hiredis: redis-py's Python packer costs more than the server does here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import anyio
import hiredis
import redis
import redis.asyncio
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.typing import EncodableT

from .._tokens import count_missing
from ..exceptions import (
    MemoryBackendError,
    MemoryConfigurationError,
    MemoryConnectionError,
    MemoryCorruptionError,
    TransientBackendError,
)
from ..interfaces import ConversationSummary, Message, SessionMetadata, SessionStatus
from ._codec import (
    pack_message,
    pack_meta,
    pack_summary,
    unpack_message,
    unpack_meta,
    unpack_summary,
)
from ._loop_thread import LoopThread
from .base import SessionSnapshot, SessionWrite

__all__ = ["RedisBackend"]

log = logging.getLogger("langswarm.memory.redis")

T = TypeVar("T")

# Sessions per script call: bounds how long one call holds the server (a few ms at most).
_GROUP = 100

_APPLY_LUA = """
-- Applies the writes of several sessions, each one atomically and idempotently.
-- KEYS: meta, msgs, sums of each session in turn.  ARGV[1]: ttl (0: none); then per session:
-- delete, meta blob, user id, first_seq, trim_before, #messages, #summaries, the message
-- blobs, the summary id/blob pairs.  Returns per session: false; the former owner, when the
-- write deleted or re-owned the session; or an error, when the session's keys hold foreign
-- data (its write is then skipped whole).
local function push(cmd, key, from, to)
  -- Lua 5.1 unpack() is bounded by the C stack: send long runs in slices.
  for i = from, to, 4000 do
    redis.call(cmd, key, unpack(ARGV, i, math.min(i + 3999, to)))
  end
end

local function apply(meta, msgs, sums, a)
  local blob, user, seq, trim = ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3]), ARGV[a + 4]
  local n, s = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local previous = false
  if ARGV[a] == '1' then
    if redis.call('TYPE', meta).ok == 'hash' then previous = redis.call('HGET', meta, 'u') end
    redis.call('DEL', meta, msgs, sums)
  else
    local keys, want = {meta, msgs, sums}, {'hash', 'list', 'hash'}
    for i = 1, 3 do
      local t = redis.call('TYPE', keys[i]).ok
      if t ~= 'none' and t ~= want[i] then
        return redis.error_reply('CORRUPT ' .. keys[i] .. ' holds a ' .. t)
      end
    end
  end
  local first = redis.call('HGET', meta, 'f')
  if first then
    first = tonumber(first)
    if not first then return redis.error_reply('CORRUPT ' .. meta .. ' has a bad offset') end
  elseif redis.call('EXISTS', meta) == 1 then
    return redis.error_reply('CORRUPT ' .. meta .. ' has no offset')
  end
  if blob ~= '' then
    if first then
      local owner = redis.call('HGET', meta, 'u')
      if owner ~= user then previous = owner end
    else
      first = seq
    end
    redis.call('HSET', meta, 'm', blob, 'u', user, 'f', string.format('%d', first))
    if previous == user then previous = false end
  elseif not first then
    return previous  -- no such session: nothing to add to
  end
  if n > 0 then
    -- Append only what is not stored yet: a re-sent batch adds nothing twice.
    local skip = math.max(first + redis.call('LLEN', msgs) - seq, 0)
    push('RPUSH', msgs, a + 7 + skip, a + 6 + n)
  end
  if trim ~= '' then
    local drop = math.min(tonumber(trim), first + redis.call('LLEN', msgs)) - first
    if drop > 0 then
      redis.call('LTRIM', msgs, drop, -1)
      redis.call('HSET', meta, 'f', string.format('%d', first + drop))
    end
  end
  push('HSET', sums, a + 7 + n, a + 6 + n + 2 * s)
  local ttl = tonumber(ARGV[1])
  if ttl > 0 then
    redis.call('EXPIRE', meta, ttl)
    redis.call('EXPIRE', msgs, ttl)
    redis.call('EXPIRE', sums, ttl)
  end
  return previous
end

local out, a = {}, 2
for k = 1, #KEYS, 3 do
  out[#out + 1] = apply(KEYS[k], KEYS[k + 1], KEYS[k + 2], a)
  a = a + 7 + tonumber(ARGV[a + 5]) + 2 * tonumber(ARGV[a + 6])
end
return out
"""

_RANGE_LUA = """
-- KEYS: meta, msgs.  ARGV: start, stop (sequence numbers).  Messages start <= seq < stop.
local f = redis.call('HGET', KEYS[1], 'f')
if not f then return {} end
f = tonumber(f)
if not f then return redis.error_reply('CORRUPT ' .. KEYS[1] .. ' has a bad offset') end
local lo = math.max(tonumber(ARGV[1]) - f, 0)
local hi = tonumber(ARGV[2]) - f
if hi <= lo then return {} end
return redis.call('LRANGE', KEYS[2], lo, hi - 1)
"""

_DELETE_LUA = """
-- KEYS: meta, msgs, sums.  Returns {existed, owner}.
local t = redis.call('TYPE', KEYS[1]).ok
local owner = false
if t == 'hash' then owner = redis.call('HGET', KEYS[1], 'u') end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return {t ~= 'none' and 1 or 0, owner}
"""

_PRUNE_LUA = """
-- KEYS: an index.  ARGV: member, score pairs seen pointing at no (or another user's)
-- session.  A member whose score changed since was re-indexed by a write: keep it.
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""


class _FastPack:
    """Packs commands with hiredis (C) instead of redis-py's Python packer."""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        name = args[0]
        if isinstance(name, str) and " " in name:
            args = (*name.split(), *args[1:])
        return [hiredis.pack_command(args)]  # type: ignore[arg-type]  # stub says 1-tuple


class _Connection(_FastPack, redis.asyncio.Connection):
    pass


class _SSLConnection(_FastPack, redis.asyncio.SSLConnection):
    pass


@dataclass(frozen=True, slots=True)
class _Script:
    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.text.encode()).hexdigest())


_APPLY, _RANGE, _DELETE, _PRUNE = _SCRIPTS = tuple(
    map(_Script, (_APPLY_LUA, _RANGE_LUA, _DELETE_LUA, _PRUNE_LUA))
)


@dataclass(slots=True)
class _Write:
    """A :class:`SessionWrite` encoded on the host, ready for the I/O loop."""

    session_id: str
    args: list[EncodableT]
    user_id: str | None
    score: float
    delete: bool


class RedisBackend:
    """Sessions in Redis, with optional native TTL (refreshed by every write)."""

    name = "redis"
    persistent = True

    def __init__(
        self,
        *,
        url: str | None = None,
        host: str = "localhost",
        port: int = 6379,
        db: int = 0,
        password: str | None = None,
        pool_size: int = 10,
        ttl_seconds: int | None = None,
        key_prefix: str = "langswarm",
        connect_timeout: float = 2.0,
        socket_timeout: float = 5.0,
    ) -> None:
        if url is not None and urlsplit(url).scheme not in ("redis", "rediss"):
            raise MemoryConfigurationError(
                f"redis url must start with redis:// or rediss://, got {_redact(url)!r}"
            )
        if not isinstance(pool_size, int) or pool_size < 1:
            raise MemoryConfigurationError(f"pool_size must be a positive int, not {pool_size!r}")
        if ttl_seconds is not None and (not isinstance(ttl_seconds, int) or ttl_seconds < 1):
            raise MemoryConfigurationError(
                f"ttl_seconds must be a positive int or None, not {ttl_seconds!r}"
            )
        self._url = url
        self._host, self._port, self._db, self._password = host, port, db, password
        self._pool_size = pool_size
        self._ttl = ttl_seconds or 0
        self.ttl_seconds: float | None = ttl_seconds
        self._prefix = key_prefix
        self._connect_timeout = connect_timeout
        self._socket_timeout = socket_timeout
        self._where = _redact(url) if url is not None else f"{host}:{port}/{db}"
        self._idx_all = f"{key_prefix}:idx:all"
        self._thread = LoopThread("langswarm-redis")
        # Touched only on the private loop's thread.
        self._client: redis.asyncio.Redis | None = None
        self._closed = False

    # -- keys ----------------------------------------------------------------------------

    def _keys(self, session_id: str) -> tuple[str, str, str]:
        base = f"{self._prefix}:{{{session_id}}}"
        return f"{base}:meta", f"{base}:msgs", f"{base}:sums"

    def _idx_user(self, user_id: str) -> str:
        return f"{self._prefix}:idx:user:{user_id}"

    # -- lifecycle -----------------------------------------------------------------------

    def preflight(self, timeout: float = 2.0) -> None:
        """Check, synchronously and within about ``timeout`` seconds, that the server answers.

        Runs a blocking PING (with AUTH and SELECT as configured) on a throwaway daemon
        thread so that a slow DNS lookup cannot hold the caller past ``timeout``.
        """
        outcome: list[BaseException | None] = []

        def probe() -> None:
            try:
                client = self._sync_client(timeout)
                try:
                    client.ping()
                finally:
                    client.close()
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=probe, name="langswarm-redis-preflight", daemon=True)
        thread.start()
        thread.join(timeout)
        if not outcome:
            raise MemoryConnectionError(f"redis at {self._where} did not answer within {timeout} s")
        error = outcome[0]
        if error is not None:
            raise MemoryConnectionError(f"cannot reach redis at {self._where}: {error}") from error

    def _sync_client(self, timeout: float) -> redis.Redis:
        options: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
            "protocol": 2,
        }
        if self._url is not None:
            return redis.Redis.from_url(self._url, db=self._db, password=self._password, **options)
        return redis.Redis(
            host=self._host, port=self._port, db=self._db, password=self._password, **options
        )

    def _connect(self) -> redis.asyncio.Redis:
        """The client, created on first use on the private loop."""
        if self._client is None:
            options: dict[str, Any] = {
                "max_connections": self._pool_size,
                "timeout": None,  # wait for a free connection; each command is time-bounded
                "socket_connect_timeout": self._connect_timeout,
                "socket_timeout": self._socket_timeout,
                "retry": AsyncRetry(NoBackoff(), 0),  # retried here, within one budget
                "protocol": 2,
                "db": self._db,
                "password": self._password,
            }
            pool: redis.asyncio.BlockingConnectionPool
            if self._url is not None:
                url_options = redis.asyncio.connection.parse_url(self._url)
                ssl = url_options.pop("connection_class", None) is redis.asyncio.SSLConnection
                options.update(url_options)
                options["connection_class"] = _SSLConnection if ssl else _Connection
                pool = redis.asyncio.BlockingConnectionPool(**options)
            else:
                pool = redis.asyncio.BlockingConnectionPool(
                    host=self._host, port=self._port, connection_class=_Connection, **options
                )
            self._client = redis.asyncio.Redis(connection_pool=pool)
        return self._client

    async def open(self) -> None:
        self._closed = False
        try:
            await self._run(self._open_io)
        except TransientBackendError as exc:
            raise MemoryConnectionError(str(exc)) from exc

    async def _open_io(self, client: redis.asyncio.Redis) -> None:
        await client.ping()
        await _load_scripts(client)

    async def close(self) -> None:
        self._closed = True
        with anyio.CancelScope(shield=True):
            if self._client is not None:
                await self._thread.run(self._close_io)
            self._thread.stop()

    async def _close_io(self) -> None:
        # Calls still running (say, retrying against a dead server) end now: once the loop
        # stops they could never report back to their callers.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
            await client.connection_pool.disconnect()

    async def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(client, *args)`` on the private loop, with driver errors mapped."""
        if self._closed:
            raise MemoryBackendError(f"the redis backend ({self._where}) was closed")
        return await self._result(self._thread.submit(self._mapped, fn, *args))

    async def _result(self, future: concurrent.futures.Future[T]) -> T:
        try:
            return await self._thread.wait(future)
        except concurrent.futures.CancelledError:
            raise MemoryBackendError(f"the redis backend ({self._where}) was closed") from None

    async def _mapped(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(client, *args)`` on the private loop, mapping driver errors to ours.

        A dropped connection or a timeout is worth retrying (the runtime does, and every call
        here is idempotent); a refused login is not.
        """
        try:
            return await fn(self._connect(), *args)
        except (redis.AuthenticationError, redis.exceptions.AuthorizationError) as exc:
            raise MemoryConnectionError(f"redis at {self._where} refused us: {exc}") from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise TransientBackendError(
                f"redis at {self._where} is unreachable: {exc}", unreachable=True
            ) from exc
        except redis.RedisError as exc:
            raise MemoryBackendError(f"redis at {self._where} failed: {exc}") from exc

    # -- writes --------------------------------------------------------------------------

    def apply(self, batch: Sequence[SessionWrite]) -> Awaitable[None]:
        """Apply ``batch`` in one round trip.

        Each session's write is atomic and idempotent, so a batch re-applied after a
        connection error converges to the same state. A session whose keys hold foreign
        data is left untouched and reported with :class:`MemoryCorruptionError`; the other
        sessions of the batch are applied.
        """
        # Handed to the private loop now, not when the caller first awaits.
        return self._result(self._thread.submit(self._apply_batch, batch))

    async def _apply_batch(self, batch: Sequence[SessionWrite]) -> None:
        """Count and encode once on the private loop, then send, retrying as needed."""
        if batch:
            count_missing(batch)
            await self._mapped(self._apply_io, [self._encode(w) for w in batch])

    def _encode(self, w: SessionWrite) -> _Write:
        meta = w.meta
        args: list[EncodableT] = [
            b"1" if w.delete else b"0",
            b"" if meta is None else pack_meta(meta),
            b"" if meta is None else meta.user_id,
            w.first_seq,
            b"" if w.trim_before is None else w.trim_before,
            len(w.messages),
            len(w.summaries),
        ]
        args.extend(map(pack_message, w.messages))
        for s in w.summaries:
            args += (s.summary_id, pack_summary(s))
        return _Write(
            session_id=w.session_id,
            args=args,
            user_id=None if meta is None else meta.user_id,
            score=0.0 if meta is None else meta.updated_at.timestamp(),
            delete=w.delete,
        )

    async def _apply_io(self, client: redis.asyncio.Redis, writes: list[_Write]) -> None:
        groups = [writes[i : i + _GROUP] for i in range(0, len(writes), _GROUP)]
        # The index entry of a session follows the last write in the batch that touches it.
        last = {w.session_id: w for w in writes if w.user_id is not None or w.delete}
        by_user: dict[str, dict[str, float]] = {}
        for w in last.values():
            if w.user_id is not None:
                by_user.setdefault(w.user_id, {})[w.session_id] = w.score
        gone = [sid for sid, w in last.items() if w.user_id is None]

        def build(pipe: Pipeline) -> None:
            for group in groups:
                keys = [key for w in group for key in self._keys(w.session_id)]
                args: list[EncodableT] = [self._ttl]
                for w in group:
                    args += w.args
                pipe.evalsha(_APPLY.sha, len(keys), *keys, *args)
            if by_user:
                pipe.zadd(self._idx_all, {s: v for m in by_user.values() for s, v in m.items()})
            for user_id, scores in by_user.items():
                pipe.zadd(self._idx_user(user_id), scores)
                if self._ttl:
                    # Outlives every session it lists: each expires ttl after its own write.
                    pipe.expire(self._idx_user(user_id), self._ttl)
            if gone:
                pipe.zrem(self._idx_all, *gone)

        replies = await _execute(client, build)
        for reply in replies:
            if isinstance(reply, Exception):
                raise _index_error(reply)
        corrupt: dict[str, Exception] = {}
        former: dict[str, list[str]] = {}  # former owner -> sessions to drop from its index
        for group, outcomes in zip(groups, replies, strict=False):
            for w, outcome in zip(group, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    corrupt[w.session_id] = outcome
                elif outcome is not None:
                    owner = outcome.decode()
                    if owner != last[w.session_id].user_id:
                        former.setdefault(owner, []).append(w.session_id)
        if former:
            pipe = client.pipeline(transaction=False)
            for owner, session_ids in former.items():
                pipe.zrem(self._idx_user(owner), *session_ids)
            await pipe.execute(raise_on_error=False)
        if corrupt:
            raise MemoryCorruptionError(
                "stored data of session(s) "
                + ", ".join(f"{sid!r} ({_reason(e)})" for sid, e in corrupt.items())
                + " is not ours; those sessions were left unchanged, the rest of the batch "
                "was applied",
                session_ids=tuple(corrupt),
            )

    async def delete_sessions(self, session_ids: Sequence[str]) -> int:
        """Delete sessions with all their data; return how many existed.

        After a retried round trip, sessions the lost attempt already deleted are not counted.
        """
        if not session_ids:
            return 0
        return await self._run(self._delete_io, list(session_ids))

    async def _delete_io(self, client: redis.asyncio.Redis, session_ids: list[str]) -> int:
        def build(pipe: Pipeline) -> None:
            for sid in session_ids:
                pipe.evalsha(_DELETE.sha, 3, *self._keys(sid))
                pipe.zrem(self._idx_all, sid)

        replies = await _execute(client, build)
        for reply in replies:
            if isinstance(reply, Exception):
                raise _index_error(reply)
        existed = 0
        pipe = client.pipeline(transaction=False)
        for sid, (found, owner) in zip(session_ids, replies[::2], strict=True):
            existed += found
            if owner is not None:
                pipe.zrem(self._idx_user(owner.decode()), sid)
        await pipe.execute(raise_on_error=False)
        return existed

    # -- reads ---------------------------------------------------------------------------

    async def load_session(self, session_id: str, *, tail: int) -> SessionSnapshot | None:
        raw = await self._run(self._load_io, session_id, tail)
        if raw is None:
            return None
        meta_blob, first, length, blobs, summary_blobs = raw
        with _corruption_of(session_id):
            summaries = sorted(map(unpack_summary, summary_blobs), key=_covers)
            meta = unpack_meta(meta_blob)
            meta.message_count = first + length  # what storage holds decides
            return SessionSnapshot(
                meta=meta,
                messages=list(map(unpack_message, blobs)),
                first_seq=first,
                next_seq=first + length,
                summaries=summaries,
            )

    async def _load_io(
        self, client: redis.asyncio.Redis, session_id: str, tail: int
    ) -> tuple[bytes, int, int, list[bytes], list[bytes]] | None:
        meta, msgs, sums = self._keys(session_id)
        pipe = client.pipeline(transaction=True)
        pipe.hmget(meta, ["m", "f"])
        pipe.llen(msgs)
        if tail > 0:
            pipe.lrange(msgs, -tail, -1)
        pipe.hvals(sums)
        replies = await pipe.execute(raise_on_error=False)
        if not isinstance(replies[0], Exception) and replies[0][0] is None:
            return None  # no metadata, no session (whatever else its keys hold)
        for reply in replies:
            if isinstance(reply, Exception):
                raise MemoryCorruptionError(f"session {session_id!r}: {_reason(reply)}")
        (blob, first), length, *rest = replies
        blobs = rest[0] if tail > 0 else []
        try:
            offset = int(first)
        except (TypeError, ValueError):
            raise MemoryCorruptionError(f"session {session_id!r} has a bad offset") from None
        return blob, offset, length, blobs, rest[-1]

    async def load_messages(self, session_id: str, *, start: int, stop: int) -> list[Message]:
        if stop <= start:
            return []
        blobs = await self._run(self._range_io, session_id, start, stop)
        with _corruption_of(session_id):
            return list(map(unpack_message, blobs))

    async def _range_io(
        self, client: redis.asyncio.Redis, session_id: str, start: int, stop: int
    ) -> list[bytes]:
        meta, msgs, _ = self._keys(session_id)
        try:
            blobs: list[bytes] = await _evalsha(client, _RANGE, [meta, msgs], [start, stop])
        except redis.ResponseError as exc:
            raise MemoryCorruptionError(f"session {session_id!r}: {_reason(exc)}") from exc
        return blobs

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int | None = 100,
        updated_before: datetime | None = None,
    ) -> list[SessionMetadata]:
        if limit is not None and limit <= 0:
            return []
        before = None if updated_before is None else updated_before.timestamp()
        return await self._run(self._list_io, user_id, status, limit, before)

    async def _list_io(
        self,
        client: redis.asyncio.Redis,
        user_id: str | None,
        status: SessionStatus | None,
        limit: int | None,
        before: float | None,
    ) -> list[SessionMetadata]:
        """Walk the index newest first, one page per two round trips, pruning ghosts."""
        index = self._idx_all if user_id is None else self._idx_user(user_id)
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
            pipe = client.pipeline(transaction=False)
            for member, _ in rows:
                pipe.hget(self._keys(member.decode())[0], "m")
            blobs = await pipe.execute(raise_on_error=False)
            ghosts: list[EncodableT] = []
            for (member, score), blob in zip(rows, blobs, strict=True):
                sid = member.decode()
                meta = _decode_meta(sid, blob)
                if blob is None or (meta is not None and user_id not in (None, meta.user_id)):
                    ghosts += (member, repr(score))
                elif (
                    meta is not None
                    and (status is None or meta.status == status)
                    and (before is None or meta.updated_at.timestamp() < before)
                ):
                    found.setdefault(sid, meta)
            removed = await _evalsha(client, _PRUNE, [index], ghosts) if ghosts else 0
            if len(rows) < page:
                break
            offset += len(rows) - int(removed)
        result = sorted(found.values(), key=lambda m: m.updated_at, reverse=True)
        return result if limit is None else result[:limit]

    async def get_usage_stats(self) -> dict[str, Any]:
        """Counts over every indexed session; entries of expired sessions are pruned.

        ``storage_size_mb`` is what Redis reports (MEMORY USAGE) for the sessions' keys and
        the global index, or ``None`` if the server does not allow that command.
        """
        return await self._run(self._stats_io)

    async def _stats_io(self, client: redis.asyncio.Redis) -> dict[str, Any]:
        sessions = messages = summaries = corrupt = 0
        size: int | None = 0
        by_status: dict[str, int] = {}
        seen: set[bytes] = set()
        cursor = 0
        while True:
            cursor, scanned = cast(
                tuple[int, list[tuple[bytes, float]]],
                await client.zscan(self._idx_all, cursor, count=500),
            )
            rows = [(m, score) for m, score in scanned if m not in seen]
            seen.update(m for m, _ in rows)
            pipe = client.pipeline(transaction=False)
            for member, _ in rows:
                keys = self._keys(member.decode())
                for key in keys:
                    pipe.memory_usage(key)
                pipe.hget(keys[0], "m")
                pipe.llen(keys[1])
                pipe.hlen(keys[2])
            replies = await pipe.execute(raise_on_error=False) if rows else []
            ghosts: list[EncodableT] = []
            for i, (member, score) in enumerate(rows):
                *usage, blob, n_messages, n_summaries = replies[6 * i : 6 * i + 6]
                meta = _decode_meta(member.decode(), blob)
                if blob is None:
                    ghosts += (member, repr(score))
                    continue
                if meta is None or isinstance(n_messages, Exception):
                    corrupt += 1
                    continue
                sessions += 1
                messages += n_messages
                summaries += 0 if isinstance(n_summaries, Exception) else n_summaries
                by_status[meta.status.value] = by_status.get(meta.status.value, 0) + 1
                if size is not None:
                    if any(isinstance(u, redis.ResponseError) for u in usage):
                        size = None
                    else:
                        size += sum(u or 0 for u in usage)
            if ghosts:
                await _evalsha(client, _PRUNE, [self._idx_all], ghosts)
            if cursor == 0:
                break
        if size is not None:
            try:
                size += await client.memory_usage(self._idx_all) or 0
            except redis.ResponseError:  # MEMORY disabled or renamed by the operator
                size = None
        return {
            "backend": self.name,
            "total_sessions": sessions,
            "total_messages": messages,
            "total_summaries": summaries,
            "sessions_by_status": by_status,
            "corrupt_sessions": corrupt,
            "storage_size_mb": None if size is None else size / (1024 * 1024),
        }


# -- helpers -------------------------------------------------------------------------------


async def _load_scripts(client: redis.asyncio.Redis) -> None:
    pipe = client.pipeline(transaction=False)
    for script in _SCRIPTS:
        pipe.script_load(script.text)
    await pipe.execute()


async def _evalsha(
    client: redis.asyncio.Redis, script: _Script, keys: list[str], args: Sequence[EncodableT]
) -> Any:
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        await _load_scripts(client)  # the server restarted or flushed its script cache
        return await client.evalsha(script.sha, len(keys), *keys, *args)


async def _execute(client: redis.asyncio.Redis, build: Callable[[Pipeline], None]) -> list[Any]:
    """Run the pipeline ``build`` fills, once more after reloading scripts if needed."""
    for attempt in range(2):
        pipe = client.pipeline(transaction=False)
        build(pipe)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        if attempt or not any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            break
        await _load_scripts(client)
    return replies


def _decode_meta(session_id: str, blob: object) -> SessionMetadata | None:
    """Decode a meta blob read in bulk; log and skip a corrupt one."""
    try:
        if isinstance(blob, Exception):
            raise MemoryCorruptionError(_reason(blob))
        return None if blob is None else unpack_meta(cast(bytes, blob))
    except MemoryCorruptionError as exc:
        log.warning("skipping session %r: %s", session_id, exc)
        return None


@contextmanager
def _corruption_of(session_id: str) -> Iterator[None]:
    """Re-raise a decoding error naming the session it belongs to."""
    try:
        yield
    except MemoryCorruptionError as exc:
        raise MemoryCorruptionError(f"session {session_id!r}: {exc}") from exc


def _index_error(error: Exception) -> MemoryBackendError:
    if isinstance(error, redis.ResponseError) and "WRONGTYPE" in str(error):
        return MemoryCorruptionError(f"a session index key holds foreign data: {error}")
    return MemoryBackendError(f"redis failed: {error}")


def _reason(error: Exception) -> str:
    text = str(error)
    if "WRONGTYPE" in text or text.startswith("CORRUPT"):
        return text.removeprefix("CORRUPT ").split(" script:")[0]
    return text


def _covers(summary: ConversationSummary) -> int:
    return summary.covers_through


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:" if parts.username else ":"
    return parts._replace(netloc=f"{user}***@{netloc}").geturl()
