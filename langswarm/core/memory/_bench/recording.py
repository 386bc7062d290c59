"""How a run records what it measures: latency histograms, one-second buckets, memory use."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any, Final

from hdrh.histogram import HdrHistogram

from .results import Bucket

__all__ = [
    "HIGHEST_US",
    "Counts",
    "Timeline",
    "new_histogram",
    "peak_rss_mb",
    "record_batch",
    "rss_mb",
]

#: Histogram range in microseconds: 1 µs to 10 minutes, 3 significant digits.
HIGHEST_US: Final = 600_000_000
#: A timeline's last bucket absorbs a final sliver shorter than this (seconds).
_MIN_LAST_BUCKET_S: Final = 0.25

#: Turns, messages, reads and errors counted so far in the run.
Counts = tuple[int, int, int, int]


def new_histogram() -> Any:
    """An empty latency histogram in microseconds."""
    return HdrHistogram(1, HIGHEST_US, 3)


def record_batch(samples_ns: list[int], *histograms: Any) -> None:
    """Record nanosecond samples into ``histograms`` (microseconds).

    Each value is first cut to its top 11 bits, the resolution of a 3-digit HDR histogram,
    so values the histogram cannot tell apart collapse into one ``record_value`` call.
    """
    micros = (ns // 1000 for ns in samples_ns)
    cut = Counter([u >> s << s if (s := u.bit_length() - 11) > 0 else u for u in micros])
    for value, count in cut.items():
        us = 1 if value < 1 else min(value, HIGHEST_US)
        for histogram in histograms:
            histogram.record_value(us, count)


def rss_mb() -> float | None:
    """Resident set size of this process now, in MiB (``None`` if unknown)."""
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20
    except ImportError:
        return None


def peak_rss_mb() -> float | None:
    """Highest resident set size this process has had, in MiB."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return float(peak) / (2**20 if sys.platform == "darwin" else 2**10)


class Timeline:
    """The measured phase in one-second buckets: counts and turn latency of each.

    ``histogram`` collects the turn latencies of the open bucket; the run's counters are
    handed in as running totals, and each bucket holds their difference over its span.
    """

    def __init__(self) -> None:
        self.buckets: list[Bucket] = []
        self.histogram = new_histogram()
        self._base: Counts = (0, 0, 0, 0)
        self._start_s = 0.0
        self._previous: tuple[Counts, Any] | None = None

    def close_bucket(self, end_s: float, counts: Counts) -> None:
        """End the open bucket at ``end_s``: measured, since a late tick makes it longer."""
        h = self.histogram
        start_s = self._start_s
        base = self._base
        counted = h.get_total_count() > 0
        self.buckets.append(
            Bucket(
                start_s=start_s,
                duration_s=end_s - start_s,
                turns=counts[0] - base[0],
                messages=counts[1] - base[1],
                reads=counts[2] - base[2],
                errors=counts[3] - base[3],
                turn_p50_ms=h.get_value_at_percentile(50) / 1000 if counted else None,
                turn_p99_ms=h.get_value_at_percentile(99) / 1000 if counted else None,
                rss_mb=rss_mb(),
            )
        )
        self._previous = (base, h)
        self._start_s = end_s
        self._base = counts
        self.histogram = new_histogram()

    def finish(self, elapsed_s: float, counts: Counts) -> None:
        """Close the last, partial bucket; a sliver under 0.25 s joins the one before, so
        the last point of the timeline is not a rate measured over a few milliseconds."""
        if elapsed_s <= self._start_s:
            return
        if elapsed_s - self._start_s < _MIN_LAST_BUCKET_S and self._previous is not None:
            last = self.buckets.pop()
            base, histogram = self._previous
            histogram.add(self.histogram)
            self._base, self.histogram = base, histogram
            self._start_s = last.start_s
        self.close_bucket(elapsed_s, counts)
