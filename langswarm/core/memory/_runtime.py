"""The runtime: backend, flusher and registry, living in one task group on the host loop.

It runs either inside a caller's ``async with`` (structured) or, for the global API, as a
background task started on first use in the running loop: an asyncio task, or a trio system
task. Either way, when it is cancelled (``async with`` exit, ``close()``, or the host loop
ending: ``asyncio.run`` cancels leftover tasks, trio cancels system tasks after ``main``
returns) the flusher drains under a shield before the backend closes.

Starting and stopping are logged at INFO; while it runs, the runtime is observed by the
telemetry gauges and its store is watched for outages (see ``_health``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace

import anyio
from anyio.abc import TaskStatus

from ._config import RuntimeSettings
from ._health import StorageWatch
from ._loop import loop_key, start_system_task
from ._retry import RetryPolicy
from ._telemetry import ERRORS, InstrumentedBackend, telemetry
from .actors.flusher import Flusher
from .actors.registry import Registry
from .backends.base import Backend
from .backends.retrying import RetryingBackend
from .exceptions import MemoryConnectionError, MemoryError
from .interfaces import Durability, Summarizer

__all__ = ["Runtime", "start_in_background"]

log = logging.getLogger("langswarm.memory.runtime")


def _default_summarizer() -> Summarizer:
    from ._summarizers import ExtractiveSummarizer

    return ExtractiveSummarizer()


class Runtime:
    """One running instance of the actor system for a backend."""

    def __init__(self, backend: Backend, settings: RuntimeSettings) -> None:
        self.watch = StorageWatch(backend.name)
        retry = RetryPolicy(budget=settings.retry_budget, watch=self.watch)
        #: The backend itself, for calls that must not be retried (the readiness probe).
        self.store = backend
        wrapper = InstrumentedBackend if telemetry.start() else RetryingBackend
        self.backend: Backend = wrapper(backend, retry)
        if settings.ttl_seconds is None and backend.ttl_seconds is not None:
            # Storage that expires sessions itself: live sessions expire with it.
            settings = replace(settings, ttl_seconds=backend.ttl_seconds)
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
            self.backend,
            writer=os.urandom(6).hex(),
            capacity=settings.flush_capacity,
            call_timeout=settings.call_timeout,
            retry=retry,
            shutdown_grace=settings.shutdown_grace,
        )
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        """The live sessions; there is one once the runtime is ready."""
        if self._registry is None:
            raise MemoryError("the memory runtime is not running")
        return self._registry

    @property
    def running(self) -> bool:
        return self.ready.is_set() and not self.finished.is_set() and self.error is None

    # -- figures for the telemetry gauges (read from the collecting thread) --------------

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def live_sessions(self) -> int:
        registry = self._registry
        return 0 if registry is None else len(registry.live)

    def mailbox_depth(self) -> int:
        registry = self._registry
        return 0 if registry is None else registry.mailbox_depth()

    def flusher_depth(self) -> int:
        return self.flusher.pending

    def flusher_lag(self) -> float:
        return self.flusher.lag()

    async def serve(self, *, task_status: TaskStatus[Runtime] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled or :meth:`stop` is called; drain and close on the way out."""
        self.key = loop_key()
        started, opened = time.monotonic(), False
        try:
            try:
                await self.backend.open()
            except MemoryError:
                raise
            except Exception as exc:  # pragma: no cover - backends map their own errors
                raise MemoryConnectionError(f"{self.backend.name} backend: {exc}") from exc
            self._opened()
            opened = True
            summarizer = self.settings.summarizer or _default_summarizer()
            with anyio.CancelScope() as scope:
                self._scope = scope
                async with anyio.create_task_group() as tg:
                    await tg.start(self.flusher.run)
                    tg.start_soon(self.flusher.watch)
                    self._registry = Registry(
                        self.backend, self.flusher, self.settings, summarizer, tg
                    )
                    self.flusher.on_results = self._registry.on_results
                    await tg.start(self._registry.run)
                    self.ready.set()
                    task_status.started(self)
                    await anyio.sleep_forever()
        except BaseException as exc:
            if not self.ready.is_set():
                self.error = exc
                self.ready.set()
            raise
        finally:
            telemetry.forget(self)
            if self._registry is not None:
                for actor in list(self._registry.live.values()):
                    actor.stop()
            with anyio.move_on_after(self.settings.shutdown_grace, shield=True):
                await self._close()
            if opened:
                self._closed(time.monotonic() - started)
            self.finished.set()

    def _opened(self) -> None:
        telemetry.observe(self)
        name = self.backend.name
        log.info(
            "memory runtime started on the %s backend (durability: %s)",
            name,
            self.durability.value,
            extra={"backend": name},
        )

    async def _close(self) -> None:
        try:
            await self.backend.close()
        except Exception as exc:
            name = self.backend.name
            telemetry.count(ERRORS, 1, (("backend", name), ("error.type", "close")))
            log.warning("closing the %s backend failed: %s", name, exc, extra={"backend": name})

    def _closed(self, seconds: float) -> None:
        flusher, name = self.flusher, self.backend.name
        log.info(
            "memory runtime stopped after %.1f s: %d writes stored in %d batches",
            seconds,
            flusher.persisted_ops,
            flusher.batches,
            extra={"backend": name, "duration": seconds},
        )

    async def serve_in_background(self) -> None:
        """Entry point for the lazily started runtime; never raises into the host loop."""
        try:
            await self.serve()
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                raise
            name = self.backend.name
            telemetry.count(ERRORS, 1, (("backend", name), ("error.type", "runtime")))
            log.error("memory runtime stopped: %s", exc, extra={"backend": name})

    def stop(self) -> None:
        """Ask the runtime to wind down (drain, close); await ``finished`` to wait for it."""
        if self._scope is not None:
            self._scope.cancel()


def start_in_background(runtime: Runtime) -> object:
    """Start ``runtime`` outside any task group of the caller, on the running loop."""
    return start_system_task(runtime.serve_in_background, "langswarm-memory")
