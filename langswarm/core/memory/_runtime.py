"""The runtime: backend, flusher and registry, living in one task group on the host loop.

It runs either inside a caller's ``async with`` (structured) or, for the global API, as a
background task started on first use in the running loop: an asyncio task, or a trio system
task. Either way, when it is cancelled (``async with`` exit, ``close()``, or the host loop
ending: ``asyncio.run`` cancels leftover tasks, trio cancels system tasks after ``main``
returns) the flusher drains under a shield before the backend closes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

import anyio
import sniffio
from anyio.abc import TaskStatus

from ._config import RuntimeSettings
from .actors.flusher import Flusher, RetryPolicy
from .actors.registry import Registry
from .backends.base import Backend
from .exceptions import MemoryConnectionError, MemoryError
from .interfaces import Durability, Summarizer

__all__ = ["Runtime", "loop_key"]

log = logging.getLogger("langswarm.memory")


def loop_key() -> object:
    """Identifies the running event loop (asyncio loop object or trio run token)."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_trio_token()
    return asyncio.get_running_loop()


def _default_summarizer() -> Summarizer:
    from ._summarizers import ExtractiveSummarizer

    return ExtractiveSummarizer()


class Runtime:
    """One running instance of the actor system for a backend."""

    def __init__(self, backend: Backend, settings: RuntimeSettings) -> None:
        self.backend = backend
        self.settings = settings
        self.durability = settings.durability or (
            Durability.COMMITTED if backend.persistent else Durability.BUFFERED
        )
        self.key: object = None
        self.ready = anyio.Event()
        self.finished = anyio.Event()
        self.error: BaseException | None = None
        self._scope: anyio.CancelScope | None = None
        self.flusher = Flusher(
            backend,
            capacity=settings.flush_capacity,
            retry=RetryPolicy(budget=settings.retry_budget),
            on_failure=self._on_flush_failure,
            shutdown_grace=settings.shutdown_grace,
        )
        self.registry: Registry | None = None

    @property
    def running(self) -> bool:
        return self.ready.is_set() and not self.finished.is_set() and self.error is None

    def _on_flush_failure(self, session_ids: Any, error: BaseException) -> None:
        """Rebuild sessions whose writes failed, so they show only what is stored."""
        if self.registry is None:
            return
        for sid in session_ids:
            actor = self.registry.live.get(sid)
            if actor is not None and actor.crash is None and not actor.stopped:
                actor._crash_from_outside(error)

    async def serve(self, *, task_status: TaskStatus[Runtime] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled or :meth:`stop` is called; drain and close on the way out."""
        self.key = loop_key()
        try:
            try:
                await self.backend.open()
            except MemoryError:
                raise
            except Exception as exc:  # pragma: no cover - backends map their own errors
                raise MemoryConnectionError(f"{self.backend.name} backend: {exc}") from exc
            summarizer = self.settings.summarizer or _default_summarizer()
            with anyio.CancelScope() as scope:
                self._scope = scope
                async with anyio.create_task_group() as tg:
                    await tg.start(self.flusher.run)
                    self.registry = Registry(
                        backend=self.backend,
                        flusher=self.flusher,
                        settings=replace(
                            self.settings.actor, ttl_seconds=self.settings.ttl_seconds
                        ),
                        summarizer=summarizer,
                        restart_policy=self.settings.restart_policy,
                        task_group=tg,
                        idle_timeout=self.settings.idle_timeout,
                        max_live_sessions=self.settings.max_live_sessions,
                        ttl_seconds=self.settings.ttl_seconds,
                        sweep_interval=self.settings.sweep_interval,
                    )
                    await tg.start(self.registry.run)
                    self.ready.set()
                    task_status.started(self)
                    await anyio.sleep_forever()
        except BaseException as exc:
            if not self.ready.is_set():
                self.error = exc
                self.ready.set()
            raise
        finally:
            if self.registry is not None:
                for actor in list(self.registry.live.values()):
                    actor.stop()
            with anyio.move_on_after(self.settings.shutdown_grace, shield=True):
                try:
                    await self.backend.close()
                except Exception as exc:
                    log.warning("closing the %s backend failed: %s", self.backend.name, exc)
            self.finished.set()

    async def serve_in_background(self) -> None:
        """Entry point for the lazily started runtime; never raises into the host loop."""
        try:
            await self.serve()
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                raise
            log.error("memory runtime stopped: %s", exc)

    def stop(self) -> None:
        """Ask the runtime to wind down (drain, close); await ``finished`` to wait for it."""
        if self._scope is not None:
            self._scope.cancel()


def start_in_background(runtime: Runtime) -> Any:
    """Start ``runtime`` outside any task group of the caller, on the running loop."""
    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(runtime.serve_in_background, name="langswarm-memory")
        return None
    return asyncio.get_running_loop().create_task(
        runtime.serve_in_background(), name="langswarm-memory"
    )
