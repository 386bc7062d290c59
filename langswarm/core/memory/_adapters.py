"""What the framework adapters (``agents_sdk``, ``langchain``) share: a session served on the
one event loop that hosts the manager's runtime, whatever loop or thread the framework calls
from.

Frameworks call their store from wherever they run: the application's loop, the loop of a
``Runner.run_sync`` or ``asyncio.run`` in a worker thread, a thread with no loop at all
(LangChain's sync API). A manager's runtime serves one loop, so every call goes to the
manager's *serving loop*: that of its ``async with manager:`` block while one runs, else the
adapters' home loop, an asyncio loop on a daemon thread started on first use, where the
runtime starts once and serves every later call (and is closed at exit, so that buffered
writes are stored). A call made on the serving loop runs there directly; one made elsewhere
is handed over and awaited, or waited for by a thread with no loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread  # noqa: F401  (its exit hook first: see _close_homed)
import contextlib
import contextvars
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar, cast

import anyio
import anyio.to_thread
import sniffio

from ._loop import loop_key, on_asyncio
from ._manager import MemoryManager, get_global_memory_manager
from ._session import MemorySession
from .backends._loop_thread import LoopThread
from .exceptions import SessionNotFoundError

__all__ = ["AdaptedSession", "plain_copy", "run_blocking"]

R = TypeVar("R")
#: Values ``plain_copy`` hands on as they are.
_LEAVES = frozenset({str, int, float, bool, type(None)})

_HOME = LoopThread("langswarm-adapters")
#: Managers served on the home loop; held so that their runtimes are closed at exit.
_homed: set[MemoryManager] = set()


def _running_loop() -> object | None:
    """The key of the loop running on this thread (see ``loop_key``), ``None`` if none."""
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None
    return loop_key()


def serving_loop(manager: MemoryManager) -> object:
    """The loop (asyncio) or run token (trio) where ``manager``'s calls run."""
    runtime = manager._runtime
    if manager._structured is not None and runtime is not None and runtime.running:
        return runtime.key
    _homed.add(manager)
    return _HOME.loop


async def _awaited(call: Callable[[], Awaitable[R]]) -> R:
    return await call()


def _on_loop(target: asyncio.AbstractEventLoop, call: Callable[[], Awaitable[R]]) -> Future[R]:
    """Start ``call()`` on ``target`` from another thread. In a fresh context: the caller's
    would tell the target's tasks they run under the caller's library (sniffio's variable)."""
    return contextvars.Context().run(asyncio.run_coroutine_threadsafe, _awaited(call), target)


def _submit(target: object, call: Callable[[], Awaitable[R]]) -> Callable[[], R]:
    """A blocking function that runs ``call()`` on ``target`` from another thread."""
    if isinstance(target, asyncio.AbstractEventLoop):
        return _on_loop(target, call).result
    import trio

    token = cast("trio.lowlevel.TrioToken", target)
    return lambda: trio.from_thread.run(_awaited, call, trio_token=token)


async def run_served(manager: MemoryManager, call: Callable[[], Awaitable[R]]) -> R:
    """``call()`` on ``manager``'s serving loop, awaited on the running one."""
    target = serving_loop(manager)
    if target is loop_key():
        return await call()
    if isinstance(target, asyncio.AbstractEventLoop) and on_asyncio():
        return await asyncio.wrap_future(_on_loop(target, call))
    return await anyio.to_thread.run_sync(_submit(target, call))


def run_blocking(manager: MemoryManager, call: Callable[[], Awaitable[R]], refusal: str) -> R:
    """``call()`` on ``manager``'s serving loop, waited for by this thread. On the serving
    loop itself, which would wait for itself forever: ``RuntimeError(refusal)``."""
    target = serving_loop(manager)
    if target is _running_loop():
        raise RuntimeError(refusal)
    return _submit(target, call)()


def _close_homed() -> None:
    """At exit, stop the runtimes started on the home loop: buffered writes get stored.

    Run as a ``threading`` exit hook: those run before the interpreter stops thread pools
    (which storage may need for the last writes), in reverse order of registration, and the
    pools registered theirs when ``concurrent.futures.thread`` was imported, above."""
    if _HOME.started:
        for manager in list(_homed):
            with contextlib.suppress(Exception):
                _HOME.submit(manager.close).result(timeout=30)
        _HOME.stop()


threading._register_atexit(_close_homed)  # type: ignore[attr-defined]


class AdaptedSession:
    """One session of a manager as an adapter uses it: opened (or created, for writes, owned
    by ``user_id`` or ``default_owner``) on the serving loop, its handle kept for that loop."""

    def __init__(
        self,
        manager: MemoryManager | None,
        session_id: str,
        user_id: str | None,
        default_owner: str,
    ) -> None:
        self._manager = manager
        self.session_id = session_id
        self.user_id = user_id
        self.default_owner = default_owner
        self._handle: tuple[object, MemorySession] | None = None

    @property
    def manager(self) -> MemoryManager:
        """The manager holding the session (the global one unless one was given)."""
        return self._manager or get_global_memory_manager()

    async def use(self, call: Callable[[MemorySession], Awaitable[R]], *, create: bool) -> R | None:
        """``call(session)`` on the serving loop; ``None`` when there is no session to read."""
        cached = self._handle
        if cached is not None and cached[0] is loop_key():  # the common case, made short
            try:
                return await call(cached[1])
            except SessionNotFoundError:
                self._handle = None
        manager = self.manager
        return await run_served(manager, lambda: self._use_here(manager, call, create))

    async def _use_here(
        self, manager: MemoryManager, call: Callable[[MemorySession], Awaitable[R]], create: bool
    ) -> R | None:
        """A handle on a session deleted meanwhile is dropped and the session found again."""
        for attempt in (1, 2):
            handle = await self._open(manager, create)
            if handle is None:
                return None
            try:
                return await call(handle)
            except SessionNotFoundError:
                self._handle = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _open(self, manager: MemoryManager, create: bool) -> MemorySession | None:
        key = loop_key()
        cached = self._handle
        if cached is not None and cached[0] is key:
            return cached[1]
        handle = await manager.get_session(self.session_id, self.user_id)
        if handle is None and create:
            owner = self.user_id or self.default_owner
            handle = await manager.get_or_create_session(owner, self.session_id)
        self._handle = None if handle is None else (key, handle)
        return handle


def plain_copy(value: Any) -> Any:
    """A plain, mutable deep copy of JSON-like data: stored messages hold read-only dicts and
    lists, and what a framework gets, it may change."""
    if value.__class__ in _LEAVES:
        return value
    if isinstance(value, dict):
        return {k: v if v.__class__ in _LEAVES else plain_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [v if v.__class__ in _LEAVES else plain_copy(v) for v in value]
    return value
