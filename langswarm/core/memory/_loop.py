"""Everything that depends on which event loop hosts the runtime (asyncio or trio).

The rest of the package is written on anyio; the few places that need the host library's own
primitives (identifying the running loop, starting a task outside the caller's task group,
waking the host from another thread, cheap checkpoints) live here, and nowhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import anyio.lowlevel
import sniffio

__all__ = [
    "YIELD_EVERY",
    "cancel_check",
    "clock",
    "host_waker",
    "loop_key",
    "on_asyncio",
    "schedule_point",
    "start_system_task",
    "suspending",
]

#: Calls served without suspending (the fast path) yield to the event loop once in this many.
#: A yield costs an event-loop iteration (3-6 µs on asyncio, more than the call itself), so
#: paying it on every call would halve single-task throughput. Like tokio's cooperative
#: budget, the count starts over whenever a call suspends anyway (see :func:`suspending`), so
#: only a run of fast calls with no suspension in between pays the yield, and a task in such a
#: run still lets every other task in within ``YIELD_EVERY`` calls.
YIELD_EVERY = 32

_fast_calls = 0


def on_asyncio() -> bool:
    """Whether the running loop is asyncio's."""
    return sniffio.current_async_library() == "asyncio"


def clock() -> Callable[[], float]:
    """The running loop's clock (what ``anyio.current_time`` reads), without looking up the
    loop on every reading."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.current_time
    return asyncio.get_running_loop().time


def cancel_check() -> Callable[[], Awaitable[None]]:
    """The running loop's "raise if the current scope is cancelled", looked up once: trio's
    own costs 0.26 µs, anyio's dispatch to it 0.77 µs, on every fast-path call."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.checkpoint_if_cancelled
    return anyio.lowlevel.checkpoint_if_cancelled


def loop_key() -> object:
    """Identifies the running event loop (the asyncio loop object or the trio run token)."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_trio_token()
    return asyncio.get_running_loop()


async def schedule_point(check_cancelled: Callable[[], Awaitable[None]]) -> None:
    """Start of every fast-path call: raise if the caller's scope is already cancelled (so a
    cancelled call changes nothing), and yield to other tasks once every ``YIELD_EVERY``.
    ``check_cancelled`` is the running loop's :func:`cancel_check`."""
    global _fast_calls
    _fast_calls += 1
    if _fast_calls >= YIELD_EVERY:
        _fast_calls = 0
        await anyio.lowlevel.checkpoint()
    else:
        await check_cancelled()


def suspending() -> None:
    """A call is about to suspend (waiting for a commit or a reply): other tasks will run, so
    the fast-path yield budget starts over.

    Without this, writers released together by one commit would take their budgeted yield at
    arbitrary points of their next call, behind the flusher the first of them woke: it would cut
    a batch without them, and the split would recur every round, doubling the commits.
    """
    global _fast_calls
    _fast_calls = 0


def start_system_task(fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> object:
    """Run ``fn()`` on the running loop outside any task group of the caller.

    asyncio: a plain task (returned, so the caller can keep a reference). trio: a system task,
    which trio cancels after ``main`` returns.
    """
    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(fn, name=name)
        return None
    return asyncio.get_running_loop().create_task(fn(), name=name)


def host_waker(event: anyio.Event) -> Callable[[], None]:
    """A callable, safe to call from any thread, that sets ``event`` on the running loop."""
    if sniffio.current_async_library() == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()

        def wake_trio() -> None:
            token.run_sync_soon(event.set)

        return wake_trio
    loop = asyncio.get_running_loop()

    def wake_asyncio() -> None:
        loop.call_soon_threadsafe(event.set)

    return wake_asyncio
