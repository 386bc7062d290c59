"""A private asyncio event loop on a helper thread, for asyncio-only drivers.

aiosqlite creates asyncio futures and redis.asyncio opens asyncio sockets, so neither works
under ``trio.run``. Backends run their driver on this loop instead and the host loop (asyncio
or trio) awaits the result: one hand-off per call, which batching keeps rare. The host is
woken with its own thread-safe primitive (``call_soon_threadsafe`` / ``TrioToken``), so the
helper thread never blocks on the host.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from .._loop import host_waker
from ..exceptions import MemoryBackendError

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """Owns one asyncio loop running forever on a daemon thread."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        """Whether the loop has been started (and not stopped since)."""
        return self._loop is not None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The private loop, started on first use."""
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                self._start()
            assert self._loop is not None
            return self._loop

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                loop.close()

        thread = threading.Thread(target=main, name=self._name, daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread = loop, thread

    def submit(self, fn: Callable[..., Awaitable[T]], *args: Any) -> concurrent.futures.Future[T]:
        """Schedule ``fn(*args)`` on the private loop; return a thread-safe future."""

        async def runner() -> T:
            return await fn(*args)

        return asyncio.run_coroutine_threadsafe(runner(), self.loop)

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``fn(*args)`` on the private loop from the host loop.

        If the caller is cancelled, the call still runs to completion on the private loop:
        interrupting a driver mid-command can leave a shared connection in a broken state.
        """
        return await self.wait(self.submit(fn, *args))

    async def wait(self, future: concurrent.futures.Future[T], *, cancel: bool = False) -> T:
        """Await a future from :meth:`submit` on the host loop; with ``cancel``, a cancelled
        caller cancels the call too (for reads: nobody is left to use the answer)."""
        if not future.done():
            done = anyio.Event()
            wake = host_waker(done)
            future.add_done_callback(lambda _: wake())
            try:
                await done.wait()
            except anyio.get_cancelled_exc_class():
                if cancel:
                    future.cancel()
                raise
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise MemoryBackendError(f"{self._name}: the backend was closed") from None

    def stop(self) -> None:
        """Stop the loop and join the thread. Idempotent."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None and thread.is_alive():

            def shutdown() -> None:
                # Calls still pending fail (their callers see MemoryBackendError) instead
                # of waiting forever on a loop that no longer runs.
                for task in asyncio.all_tasks(loop):
                    task.cancel()
                loop.call_soon(loop.stop)

            loop.call_soon_threadsafe(shutdown)
            if thread is not threading.current_thread():
                thread.join(timeout=5)
