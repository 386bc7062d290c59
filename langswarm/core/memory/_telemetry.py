"""Metrics and traces through OpenTelemetry, when ``opentelemetry-api`` is installed.

The runtime reports through the one :data:`telemetry` object. It is off until a runtime
starts; the first runtime imports ``opentelemetry`` and, if that fails, reporting stays off:
each report then returns at once and nothing else changes. Instruments come from the global
meter and tracer providers (no-ops until the application installs the SDK), or from those
given to :func:`configure`.

Reports are made per batch and per storage call, never per message or per session call.
Counts are kept as plain integers and read, like the gauges (live sessions, mailbox and
flusher depth), when a metric reader collects; only the histograms and spans record as they
go. docs/observability.md lists every instrument.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .backends.base import SessionSnapshot, SessionWrite
from .backends.retrying import RetryingBackend
from .interfaces import Message, SessionMetadata, SessionStatus

if TYPE_CHECKING:
    from opentelemetry.metrics import (
        CallbackOptions,
        Histogram,
        Meter,
        MeterProvider,
        Observation,
    )
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = [
    "BATCHES",
    "ERRORS",
    "MESSAGES",
    "RESTARTS",
    "RETRIES",
    "InstrumentedBackend",
    "Observed",
    "Telemetry",
    "configure",
    "telemetry",
]

T = TypeVar("T")

#: Instrumentation scope of every instrument and span.
SCOPE = "langswarm.memory"
MESSAGES = "langswarm.memory.messages"
BATCHES = "langswarm.memory.batches"
RETRIES = "langswarm.memory.retries"
RESTARTS = "langswarm.memory.restarts"
ERRORS = "langswarm.memory.errors"
#: Counters: name -> (unit, description).
COUNTERS = {
    MESSAGES: ("{message}", "Messages stored"),
    BATCHES: ("{batch}", "Batches the flusher applied; outcome: stored or failed"),
    RETRIES: ("{retry}", "Storage operations retried after a transient failure"),
    RESTARTS: ("{restart}", "Session actors rebuilt after a crash"),
    ERRORS: ("{error}", "Failures that reached callers or lost work; error.type says which"),
}
#: Gauges: name -> (unit, description, the figure of one runtime).
GAUGES: dict[str, tuple[str, str, Callable[[Observed], float]]] = {
    "langswarm.memory.sessions.live": (
        "{session}",
        "Sessions held in memory",
        lambda runtime: runtime.live_sessions(),
    ),
    "langswarm.memory.mailbox.depth": (
        "{command}",
        "Commands queued in session mailboxes, callers blocked on a full one included",
        lambda runtime: runtime.mailbox_depth(),
    ),
    "langswarm.memory.flusher.depth": (
        "{write}",
        "Session writes queued or being stored",
        lambda runtime: runtime.flusher_depth(),
    ),
    "langswarm.memory.flusher.lag": (
        "s",
        "Seconds the oldest write not yet stored has waited",
        lambda runtime: runtime.flusher_lag(),
    ),
}
SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SIZES = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

#: Attributes of a count, as a hashable key.
Attributes = tuple[tuple[str, str], ...]


class Observed(Protocol):
    """A running runtime, as the gauges read it."""

    @property
    def backend_name(self) -> str: ...

    def live_sessions(self) -> int: ...

    def mailbox_depth(self) -> int: ...

    def flusher_depth(self) -> int: ...

    def flusher_lag(self) -> float: ...


class _Instruments:
    """The instruments of one meter and the tracer, made when reporting turns on."""

    def __init__(self, meter: Meter, tracer: Tracer, owner: Telemetry) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.tracer = tracer
        self.client, self.error = SpanKind.CLIENT, Status(StatusCode.ERROR)
        self.commit_duration = _histogram(
            meter,
            "langswarm.memory.commit.duration",
            "s",
            "From a batch's first write to its commit (stored or failed)",
            SECONDS,
        )
        self.batch_size = _histogram(
            meter, "langswarm.memory.batch.size", "{write}", "Session writes per batch", SIZES
        )
        self.call_duration = _histogram(
            meter,
            "langswarm.memory.call.duration",
            "s",
            "Storage calls by operation, retries included",
            SECONDS,
        )
        for name, (unit, text) in COUNTERS.items():
            meter.create_observable_counter(
                name, [owner.counts_of(name)], unit=unit, description=text
            )
        for name, (unit, text, figure) in GAUGES.items():
            meter.create_observable_gauge(
                name, [owner.gauge_of(figure)], unit=unit, description=text
            )


def _histogram(
    meter: Meter, name: str, unit: str, description: str, buckets: Sequence[float]
) -> Histogram:
    """A histogram advising ``buckets`` (opentelemetry-api 1.30 and later; older APIs take
    no advice, and the SDK's default buckets apply)."""
    try:
        return meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets
        )
    except TypeError:
        return meter.create_histogram(name, unit=unit, description=description)


class Telemetry:
    """What the runtime reports: see the module docstring."""

    def __init__(self) -> None:
        self._looked = False  # whether opentelemetry was looked for
        self._instruments: _Instruments | None = None
        self._counts: dict[tuple[str, Attributes], int] = {}
        self._observed: weakref.WeakSet[Observed] = weakref.WeakSet()
        self._lock = threading.Lock()  # readers collect from their own threads

    @property
    def on(self) -> bool:
        return self._instruments is not None

    def start(self) -> bool:
        """Look for OpenTelemetry the first time a runtime starts; say whether reporting is on."""
        if not self._looked:
            try:
                self.use(None, None)
            except ImportError:
                self._looked = True
        return self._instruments is not None

    def use(
        self, meter_provider: MeterProvider | None, tracer_provider: TracerProvider | None
    ) -> None:
        """Report to these providers (``None``: the global ones), counting from zero."""
        from opentelemetry import metrics, trace

        meter = (meter_provider or metrics.get_meter_provider()).get_meter(SCOPE)
        tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(SCOPE)
        with self._lock:
            self._counts = {}
        self._instruments = _Instruments(meter, tracer, self)
        self._looked = True

    def stop(self) -> None:
        """Report nothing from now on, as if OpenTelemetry were not installed."""
        self._instruments = None
        self._looked = True

    # -- what the runtime reports --------------------------------------------------------

    def observe(self, runtime: Observed) -> None:
        """Read ``runtime``'s gauges from now on; its backend's main counts show from zero."""
        where = (("backend", runtime.backend_name),)
        with self._lock:
            self._observed.add(runtime)
            if self._instruments is None:
                return
            for key in ((MESSAGES, where), (RETRIES, where), (RESTARTS, where)):
                self._counts.setdefault(key, 0)
            self._counts.setdefault((BATCHES, (*where, ("outcome", "stored"))), 0)

    def forget(self, runtime: Observed) -> None:
        with self._lock:
            self._observed.discard(runtime)

    def count(self, metric: str, amount: int, attributes: Attributes) -> None:
        if self._instruments is not None:
            key = (metric, attributes)
            with self._lock:
                self._counts[key] = self._counts.get(key, 0) + amount

    def committed(
        self,
        backend: str,
        writes: Sequence[SessionWrite],
        born: float | None,
        started: float,
        error: BaseException | None,
    ) -> None:
        """A batch cut at ``started`` (its first write queued at ``born``) was stored, or
        failed with ``error`` (monotonic seconds)."""
        instruments = self._instruments
        if instruments is None:
            return
        now = time.monotonic()
        where = (("backend", backend),)
        messages = sum(len(write.messages) for write in writes)
        self.count(BATCHES, 1, (*where, ("outcome", "stored" if error is None else "failed")))
        if error is None:
            self.count(MESSAGES, messages, where)
        else:
            self.count(ERRORS, 1, (*where, ("error.type", "batch")))
        labels = {"backend": backend}
        instruments.batch_size.record(len(writes), labels)
        instruments.commit_duration.record(now - (started if born is None else born), labels)
        ended = time.time_ns()
        span = instruments.tracer.start_span(
            "langswarm.memory commit",
            start_time=ended - int((now - started) * 1e9),
            attributes={
                "db.system.name": backend,
                "langswarm.memory.batch.writes": len(writes),
                "langswarm.memory.batch.messages": messages,
            },
        )
        if error is not None:
            span.record_exception(error)
            span.set_status(instruments.error)
        span.end(end_time=ended)

    async def timed(self, backend: str, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, timed and traced as storage ``operation``."""
        instruments = self._instruments
        if instruments is None:
            return await call()
        labels = {"backend": backend, "operation": operation}
        with instruments.tracer.start_as_current_span(
            f"langswarm.memory {operation}",
            kind=instruments.client,
            attributes={"db.system.name": backend, "db.operation.name": operation},
        ):
            started = time.perf_counter()
            try:
                return await call()
            except BaseException as exc:
                labels["error.type"] = type(exc).__qualname__
                raise
            finally:
                instruments.call_duration.record(time.perf_counter() - started, labels)

    # -- what readers collect ------------------------------------------------------------

    def counts_of(self, metric: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        from opentelemetry.metrics import Observation

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                found = [(a, n) for (m, a), n in self._counts.items() if m == metric]
            return [Observation(n, dict(attributes)) for attributes, n in found]

        return observe

    def gauge_of(
        self, figure: Callable[[Observed], float]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        from opentelemetry.metrics import Observation

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                runtimes = list(self._observed)
            totals: dict[str, float] = {}
            for runtime in runtimes:
                name = runtime.backend_name
                totals[name] = totals.get(name, 0) + figure(runtime)
            return [Observation(value, {"backend": name}) for name, value in totals.items()]

        return observe


#: The one reporter of this process.
telemetry = Telemetry()


def configure(
    *,
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
    enabled: bool = True,
) -> None:
    """Report to these providers (default: the global ones), counting from zero; with
    ``enabled=False``, report nothing, exactly as when OpenTelemetry is not installed."""
    if enabled:
        telemetry.use(meter_provider, tracer_provider)
    else:
        telemetry.stop()


class InstrumentedBackend(RetryingBackend):
    """A :class:`RetryingBackend` whose reads and deletes are timed and traced (the runtime
    uses it only while reporting is on)."""

    async def load_session(self, session_id: str, *, tail: int) -> SessionSnapshot | None:
        call = super().load_session
        return await telemetry.timed(self.name, "load_session", lambda: call(session_id, tail=tail))

    async def load_messages(self, session_id: str, *, start: int, stop: int) -> list[Message]:
        call = super().load_messages
        return await telemetry.timed(
            self.name, "load_messages", lambda: call(session_id, start=start, stop=stop)
        )

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int | None = 100,
        updated_before: datetime | None = None,
    ) -> list[SessionMetadata]:
        call = super().list_sessions
        return await telemetry.timed(
            self.name,
            "list_sessions",
            lambda: call(
                user_id=user_id, status=status, limit=limit, updated_before=updated_before
            ),
        )

    async def get_usage_stats(self) -> dict[str, Any]:
        return await telemetry.timed(self.name, "get_usage_stats", super().get_usage_stats)

    async def delete_sessions(
        self, session_ids: Sequence[str], *, idle_before: datetime | None = None
    ) -> int:
        call = super().delete_sessions
        return await telemetry.timed(
            self.name, "delete_sessions", lambda: call(session_ids, idle_before=idle_before)
        )
