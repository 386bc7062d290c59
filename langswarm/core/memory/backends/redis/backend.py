"""Redis storage (a server or a cluster): each session's write is one atomic script on the
server, so Redis decides sequence numbers, versions and ownership for every process.

A batch goes out in one pipeline: one script call per group of sessions (on a cluster, per
hash slot). On a single server the script keeps the session indexes too; on a cluster those
live on other slots and follow in a second pipeline (an index entry that points nowhere is
pruned when a reader meets it). Scripts skip messages already stored, so a batch re-sent after
a dropped connection stores nothing twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

import anyio
from redis.crc import key_slot

from ..._loop import on_asyncio
from ..._tokens import count_missing
from ...exceptions import (
    MemoryBackendError,
    MemoryConnectionError,
    MemoryCorruptionError,
    TransientBackendError,
)
from ...interfaces import Message, SessionMetadata, SessionStatus
from .._codec import unpack_summary
from .._loop_thread import LoopThread
from ..base import ABSENT, SessionSnapshot, SessionWrite, WriteResult
from . import _listing
from ._connect import Client, Clients, Target, map_error
from ._layout import Keys, control, decode_result, message_of, row_of
from ._scripts import APPLY, LOAD, RANGE, load_scripts, run_scripts

__all__ = ["RedisBackend"]

log = logging.getLogger("langswarm.memory.redis")

T = TypeVar("T")

# Sessions per script call on a single server: bounds how long one call holds the server.
_GROUP = 100
ABSENT_RESULT = WriteResult(ABSENT)


class RedisBackend:
    """Sessions in Redis, with optional native TTL (refreshed by every write)."""

    name = "redis"
    persistent = True
    shared = True

    def __init__(
        self,
        *,
        url: str | None = None,
        host: str = "localhost",
        port: int = 6379,
        db: int = 0,
        password: str | None = None,
        cluster: bool = False,
        pool_size: int = 10,
        ttl_seconds: int | None = None,
        key_prefix: str = "langswarm",
        connect_timeout: float = 2.0,
        socket_timeout: float = 5.0,
    ) -> None:
        from ...exceptions import MemoryConfigurationError

        if not isinstance(pool_size, int) or pool_size < 1:
            raise MemoryConfigurationError(f"pool_size must be a positive int, not {pool_size!r}")
        if ttl_seconds is not None and (not isinstance(ttl_seconds, int) or ttl_seconds < 1):
            raise MemoryConfigurationError(
                f"ttl_seconds must be a positive int or None, not {ttl_seconds!r}"
            )
        target = Target.parse(url, host, port, db, password)
        if cluster and not target.cluster:
            target = replace(target, cluster=True, db=0)
        self._target = target
        self.cluster = target.cluster
        self._where = target.where
        self._ttl = ttl_seconds or 0
        self.ttl_seconds: float | None = ttl_seconds
        self.keys = Keys(key_prefix)
        self._timeouts = (connect_timeout, socket_timeout)
        self._clients = Clients(target, pool_size, connect_timeout, socket_timeout)
        self._pool_size = pool_size
        self._thread = LoopThread("langswarm-redis")
        # Runtimes (one per event loop) that opened the backend and have not closed it; the
        # trio ones among them reach Redis through the private loop.
        self._users = 0
        self._private_users = 0
        self._count_lock = threading.Lock()
        self._closed = False  # every user closed it (calls then fail at once)

    # -- lifecycle -----------------------------------------------------------------------

    def preflight(self, timeout: float = 2.0) -> None:
        """Check, synchronously and within about ``timeout`` seconds, that the server answers.

        Runs a blocking PING (with AUTH and SELECT as configured) on a throwaway daemon
        thread so that a slow DNS lookup cannot hold the caller past ``timeout``.
        """
        outcome: list[BaseException | None] = []

        def probe() -> None:
            try:
                self._target.ping(timeout)
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

    async def open(self) -> None:
        """Open for the running event loop (each loop that uses the backend opens it)."""
        with self._count_lock:
            self._users += 1
            self._closed = False
            if not on_asyncio():
                self._private_users += 1
        try:
            await self._run(load_scripts)
        except BaseException as exc:
            with self._count_lock:
                self._users -= 1
                if not on_asyncio():
                    self._private_users -= 1
            if isinstance(exc, TransientBackendError):
                raise MemoryConnectionError(str(exc)) from exc
            raise
        log.info(
            "opened redis at %s (%s, %s)",
            self._where,
            "cluster" if self.cluster else "single server",
            "asyncio loop" if on_asyncio() else "private loop for trio",
            extra={"backend": self.name},
        )

    async def close(self) -> None:
        """Close for the running event loop; the other loops' users carry on."""
        asyncio_host = on_asyncio()
        with self._count_lock:  # runtimes on other threads open and close it meanwhile
            if self._users > 0:
                self._users -= 1
                if not asyncio_host:
                    self._private_users -= 1
            self._closed = self._users == 0
            # Only the last of the private loop's users stops it, once.
            last_private = not asyncio_host and self._private_users == 0
        with anyio.CancelScope(shield=True):
            if asyncio_host:
                await self._clients.close_current()
            elif last_private and self._thread.started:
                await self._thread.run(self._close_private)
                self._thread.stop()
        log.info("closed redis at %s", self._where, extra={"backend": self.name})

    async def _close_private(self) -> None:
        # Calls still running (say, retrying against a dead server) end now: once the loop
        # stops they could never report back to their callers.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._clients.close_current()

    # -- calls ---------------------------------------------------------------------------

    def _start(
        self, fn: Callable[..., Awaitable[T]], *args: Any, cancel: bool = False
    ) -> Awaitable[T]:
        """Start ``fn(client, *args)`` now: on the host's loop (asyncio) or the private one.
        It runs to completion even if whoever awaits it is cancelled, except on the private
        loop with ``cancel`` (see :meth:`_run` for asyncio)."""
        if self._closed:
            return _fail(MemoryBackendError(f"the redis backend ({self._where}) was closed"))
        if on_asyncio():
            return asyncio.ensure_future(self._call(fn, *args))
        return self._result(self._thread.submit(self._call, fn, *args), cancel=cancel)

    async def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``fn(client, *args)``; a cancelled caller stops waiting at once and cancels
        the call. The caller never waits on the driver's own handling of the cancel: redis-py
        sends through ``asyncio.wait_for``, which on Python 3.11 returns normally when the
        cancel lands just as the send completes, and the cancel would be lost."""
        call = self._start(fn, *args, cancel=True)
        if not isinstance(call, asyncio.Task):
            return await call
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            call.cancel()
            raise

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            return await fn(self._clients.current(), *args)
        except (MemoryBackendError, MemoryConnectionError):
            raise
        except Exception as exc:
            mapped = map_error(exc, self._where)
            if mapped is exc:
                raise
            raise mapped from exc

    async def _result(self, future: concurrent.futures.Future[T], *, cancel: bool = False) -> T:
        try:
            return await self._thread.wait(future, cancel=cancel)
        except concurrent.futures.CancelledError:
            raise MemoryBackendError(f"the redis backend ({self._where}) was closed") from None

    # -- writes --------------------------------------------------------------------------

    def apply(self, batch: Sequence[SessionWrite]) -> Awaitable[list[WriteResult]]:
        return self._start(self._apply_io, list(batch))

    async def _apply_io(self, client: Client, batch: list[SessionWrite]) -> list[WriteResult]:
        if any(m.token_count is None for w in batch for m in w.messages):
            # tiktoken releases the GIL: counting beside the event loop uses another core.
            await asyncio.to_thread(count_missing, batch)
        now = time.time()
        prefix = "" if self.cluster else self.keys.prefix
        results: list[WriteResult] = [ABSENT_RESULT] * len(batch)
        # One pipeline keeps the order on a server; a cluster runs calls side by side, so a
        # session that comes back waits for the calls before it (the next wave).
        waves = (
            [[g for wave in self._waves(batch) for g in wave]]
            if not self.cluster
            else (self._waves(batch))
        )
        for wave in waves:
            calls = [self._call_of(batch, group, prefix, now) for group in wave]
            replies = await run_scripts(client, APPLY, calls, self._pool_size)
            for group, reply in zip(wave, replies, strict=True):
                if isinstance(reply, Exception):
                    raise reply
                for i, answer in zip(group, reply, strict=True):
                    results[i] = decode_result(batch[i].session_id, answer)
        if self.cluster:
            await _listing.reindex(client, self.keys, batch, results, self._ttl)
        return results

    def _call_of(
        self, batch: list[SessionWrite], group: list[int], prefix: str, now: float
    ) -> tuple[list[str], list[Any]]:
        """One script call's keys and arguments for the writes at ``group``."""
        keys: list[str] = []
        args: list[Any] = [prefix, self._ttl, repr(now)]
        for i in group:
            write = batch[i]
            keys += self.keys.session(write.session_id)
            spec, extra = control(write, now)
            args += [spec, *extra]
        return keys, args

    def _waves(self, batch: list[SessionWrite]) -> list[list[list[int]]]:
        """Positions of the batch's writes: in waves of distinct sessions (a session that
        repeats starts the next wave), each in groups for one script call (on a cluster, one
        hash slot per group)."""
        waves: list[list[list[int]]] = [[]]
        groups: dict[int, list[int]] = {}
        seen: set[str] = set()
        for i, write in enumerate(batch):
            sid = write.session_id
            if sid in seen:
                waves.append([])
                groups.clear()
                seen.clear()
            slot = key_slot(self.keys.session(sid)[0].encode()) if self.cluster else 0
            group = groups.get(slot)
            if group is None or len(group) >= _GROUP:
                group = groups[slot] = []
                waves[-1].append(group)
            group.append(i)
            seen.add(sid)
        return waves

    async def delete_sessions(
        self, session_ids: Sequence[str], *, idle_before: datetime | None = None
    ) -> int:
        """Delete sessions with all their data; return how many were deleted."""
        if not session_ids:
            return 0
        ids = list(dict.fromkeys(session_ids))
        cutoff = "" if idle_before is None else repr(idle_before.timestamp())
        return await self._run(_listing.delete, self.keys, ids, cutoff, self._pool_size)

    # -- reads ---------------------------------------------------------------------------

    async def load_session(self, session_id: str, *, tail: int) -> SessionSnapshot | None:
        return await self._run(self._load_io, session_id, max(tail, 0))

    async def _load_io(self, client: Client, session_id: str, tail: int) -> SessionSnapshot | None:
        meta, msgs, _, sums = self.keys.session(session_id)
        [reply] = await run_scripts(client, LOAD, [([meta, msgs, sums], [tail])], 1)
        with _naming(session_id):
            if isinstance(reply, Exception):
                raise reply
            if not reply:
                return None
            flat, elements, summaries = reply
            row = row_of(session_id, dict(zip(flat[::2], flat[1::2], strict=True)))
            return SessionSnapshot(
                meta=row.meta(),
                messages=[message_of(e) for e in elements],
                first_seq=row.first_seq,
                next_seq=row.next_seq,
                summaries=sorted(map(unpack_summary, summaries), key=lambda s: s.covers_through),
                incarnation=row.incarnation,
                version=row.version,
            )

    async def load_messages(self, session_id: str, *, start: int, stop: int) -> list[Message]:
        if stop <= start:
            return []
        return await self._run(self._range_io, session_id, start, stop)

    async def _range_io(
        self, client: Client, session_id: str, start: int, stop: int
    ) -> list[Message]:
        meta, msgs, _, _ = self.keys.session(session_id)
        [elements] = await run_scripts(client, RANGE, [([meta, msgs], [start, stop])], 1)
        with _naming(session_id):
            if isinstance(elements, Exception):
                raise elements
            return [message_of(e) for e in elements]

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
        return await self._run(_listing.list_sessions, self.keys, user_id, status, limit, before)

    async def get_usage_stats(self) -> dict[str, Any]:
        """Counts over every indexed session; entries of expired sessions are pruned.

        ``storage_size_mb`` is what Redis reports (MEMORY USAGE) for the sessions' keys and
        the global index, or ``None`` if the server does not allow that command.
        """
        stats = await self._run(_listing.usage_stats, self.keys)
        return {"backend": self.name, **stats}


@contextmanager
def _naming(session_id: str) -> Iterator[None]:
    """Re-raise a corruption error naming the session it belongs to."""
    try:
        yield
    except MemoryCorruptionError as exc:
        raise MemoryCorruptionError(f"session {session_id!r}: {exc}") from exc


async def _fail(error: BaseException) -> Any:
    raise error
