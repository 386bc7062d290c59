"""What a benchmark run reports: the result, its one-second buckets, its errors, and the
progress snapshots shown while it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from .workload import Workload

__all__ = ["CREATE_SESSION", "BenchResult", "Bucket", "ErrorCount", "Snapshot"]

#: Timed during setup; reported apart from the measured operations.
CREATE_SESSION: Final = "create_session"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the progress display is told at each tick."""

    backend: str
    phase: str
    elapsed_s: float
    time_limit_s: float | None
    turns: int
    total_turns: int | None
    messages: int
    errors: int
    setup_done: int
    setup_total: int


@dataclass(slots=True)
class Bucket:
    """One second of the measured phase (the last one may be shorter)."""

    start_s: float
    duration_s: float
    turns: int
    messages: int
    reads: int
    errors: int
    turn_p50_ms: float | None
    turn_p99_ms: float | None
    rss_mb: float | None

    @property
    def turns_per_s(self) -> float:
        return self.turns / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.duration_s if self.duration_s > 0 else 0.0


@dataclass(slots=True)
class ErrorCount:
    """Failures of one kind: operation and exception type, with the first message seen."""

    op: str
    error: str
    count: int
    example: str


@dataclass(slots=True)
class BenchResult:
    """Everything a run measured; :mod:`.report` renders it."""

    workload: Workload
    backend: str
    durability: str
    loop: str
    started_at: str
    elapsed_s: float
    setup_s: float
    drain_s: float
    turns: int
    failed_turns: int
    messages: int
    reads: int
    histograms: dict[str, Any]
    timeline: list[Bucket]
    errors: list[ErrorCount]
    rss_start_mb: float | None
    peak_rss_mb: float | None
    storage: dict[str, Any] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(e.count for e in self.errors)

    @property
    def turns_per_s(self) -> float:
        return self.turns / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.elapsed_s if self.elapsed_s > 0 else 0.0
