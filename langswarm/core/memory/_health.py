"""Storage outages as the runtime sees them, and the readiness report of
``MemoryManager.health``.

An outage starts when a storage call fails and is retried, or when a batch has waited longer
than :data:`STALL_AFTER` for an answer (a frozen server answers nothing and fails nothing);
it ends with the next call that succeeds. It is logged once when it starts (WARNING), at
most once a minute while it lasts (WARNING), and once when it ends, with its duration
(INFO); each retry is logged at DEBUG only.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import anyio

from ._telemetry import ERRORS, RETRIES, telemetry
from .exceptions import MemoryError

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ["PROBE_TIMEOUT", "STALL_AFTER", "StorageWatch", "report"]

log = logging.getLogger("langswarm.memory.storage")

#: Seconds a batch may wait for storage to answer before an outage is declared.
STALL_AFTER = 2.0
#: Seconds between reminders that an outage goes on.
REMIND_EVERY = 60.0
#: Seconds the readiness probe waits for storage.
PROBE_TIMEOUT = 2.0
#: Failed sessions named in a health report, at most.
FAILED_LISTED = 100


class StorageWatch:
    """Whether one runtime's store is answering: see the module docstring."""

    __slots__ = ("_reminded", "backend", "failures", "since")

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.since: float | None = None  # when the outage began (monotonic), while one lasts
        self.failures = 0  # failed attempts during the outage
        self._reminded = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException, attempt: int, started: float) -> None:
        """A call first tried at ``started`` failed for the ``attempt``-th time; it will be
        retried."""
        telemetry.count(RETRIES, 1, (("backend", self.backend),))
        self.failures += 1
        fields = {"backend": self.backend, "attempt": attempt}
        if self.since is None:
            self._begin(started)
            log.warning(
                "the %s store is failing; retrying, writes wait meanwhile: %s",
                self.backend,
                error,
                extra=fields,
            )
        elif not self._remind(error, fields):
            log.debug("retrying the %s store: %s", self.backend, error, extra=fields)

    def stalled(self, started: float) -> None:
        """A batch sent at ``started`` has had no answer for longer than ``STALL_AFTER``."""
        if self.since is None:
            self._begin(started)
            log.warning(
                "the %s store has not answered for %.1f s; writes wait meanwhile",
                self.backend,
                time.monotonic() - started,
                extra={"backend": self.backend},
            )

    def answered(self) -> None:
        """A call succeeded: an outage, if one was on, is over."""
        since = self.since
        if since is None:
            return
        duration = time.monotonic() - since
        log.info(
            "the %s store is answering again after an outage of %.1f s (%d failed attempts)",
            self.backend,
            duration,
            self.failures,
            extra={"backend": self.backend, "duration": duration, "attempt": self.failures},
        )
        self.since, self.failures = None, 0

    def gave_up(self, kind: str) -> None:
        """An operation failed past its retry budget (``kind``: what it was)."""
        telemetry.count(ERRORS, 1, (("backend", self.backend), ("error.type", kind)))

    def outage(self) -> float | None:
        """Seconds the current outage has lasted, or ``None``."""
        return None if self.since is None else time.monotonic() - self.since

    def _begin(self, started: float) -> None:
        self.since, self._reminded = started, time.monotonic()

    def _remind(self, error: BaseException, fields: dict[str, Any]) -> bool:
        now = time.monotonic()
        if self.since is None or now - self._reminded < REMIND_EVERY:
            return False
        self._reminded = now
        log.warning(
            "the %s store is still failing after %.0f s (%d failed attempts): %s",
            self.backend,
            now - self.since,
            self.failures,
            error,
            extra={**fields, "duration": now - self.since},
        )
        return True


async def report(runtime: Runtime) -> dict[str, Any]:
    """The readiness report of a running runtime (see ``MemoryManager.health``)."""
    reachable, error, probe = await _probe(runtime)
    flusher, registry, watch = runtime.flusher, runtime.registry, runtime.watch
    outage = watch.outage()
    failed = list(registry.failed)
    return {
        "ready": reachable and outage is None and flusher.pending < flusher.capacity,
        "backend": runtime.backend.name,
        "reachable": reachable,
        "error": error,
        "probe_seconds": probe,
        "outage_seconds": outage,
        "flusher_pending": flusher.pending,
        "flusher_capacity": flusher.capacity,
        "flusher_lag_seconds": flusher.lag(),
        "live_sessions": len(registry.live),
        "failed_session_count": len(failed),
        "failed_sessions": failed[:FAILED_LISTED],
    }


async def _probe(runtime: Runtime) -> tuple[bool, str | None, float | None]:
    """Whether storage answers a one-row listing within ``PROBE_TIMEOUT`` (not retried), the
    error if not, and how long it took."""
    started = time.monotonic()
    try:
        with anyio.fail_after(PROBE_TIMEOUT):
            await runtime.store.list_sessions(limit=1)
    except TimeoutError:
        return False, f"no answer within {PROBE_TIMEOUT:g} s", None
    except MemoryError as exc:
        return False, str(exc), None
    runtime.watch.answered()
    return True, None, time.monotonic() - started
