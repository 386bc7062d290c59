"""A one-line live progress display on stderr, fed by the engine's ticker (about 5 Hz).

On a terminal the line is redrawn in place; into a file or pipe it writes one plain line per
second instead, so logs stay readable. Rendering is a string format and one ``write`` per
tick, on the ticker the engine runs anyway.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import TextIO

from .engine import DRAIN, RUN, SETUP, Snapshot

__all__ = ["Progress"]

BAR_WIDTH = 24
#: Seconds of history the live rate is computed over.
RATE_WINDOW = 2.0


class Progress:
    """Call with each :class:`Snapshot`; call :meth:`close` when the run is over."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._recent: deque[tuple[float, int]] = deque()
        self._ticks = 0
        self._width = 0
        self._drawn = False

    def __call__(self, snapshot: Snapshot) -> None:
        self._ticks += 1
        if snapshot.phase == RUN:
            self._observe(snapshot)
        if not self._tty and self._ticks % 5:
            return
        self._write(self.render(snapshot))

    def render(self, s: Snapshot) -> str:
        """The line for ``s``, without control characters (rates from what was observed)."""
        if s.phase == SETUP:
            return f"{s.backend}  setting up sessions {s.setup_done:,}/{s.setup_total:,}"
        if s.phase == DRAIN:
            return f"{s.backend}  run over, waiting for pending writes to be stored"
        assert s.phase == RUN
        now = self._rate()
        fraction = _fraction(s)
        filled = round(fraction * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        limit = f"/{s.time_limit_s:.0f}" if s.time_limit_s is not None else ""
        average = s.turns / s.elapsed_s if s.elapsed_s > 0 else 0.0
        messages = s.messages / s.elapsed_s if s.elapsed_s > 0 else 0.0
        return (
            f"{s.backend}  [{bar}] {fraction:4.0%}  {s.elapsed_s:5.1f}{limit} s  "
            f"{s.turns:,} turns  {average:,.0f} turns/s (last {RATE_WINDOW:g} s: {now:,.0f})  "
            f"{messages:,.0f} msg/s  {s.errors:,} errors"
        )

    def close(self) -> None:
        """End the live line so later output starts on a fresh one."""
        if self._tty and self._drawn:
            self._stream.write("\n")
            self._stream.flush()

    def _observe(self, s: Snapshot) -> None:
        recent = self._recent
        recent.append((s.elapsed_s, s.turns))
        while len(recent) > 2 and s.elapsed_s - recent[1][0] >= RATE_WINDOW:
            recent.popleft()

    def _rate(self) -> float:
        """Turns per second over the last ``RATE_WINDOW`` seconds observed."""
        if len(self._recent) < 2:
            return 0.0
        (t0, turns0), (t1, turns1) = self._recent[0], self._recent[-1]
        return (turns1 - turns0) / (t1 - t0) if t1 > t0 else 0.0

    def _write(self, line: str) -> None:
        if self._tty:
            pad = max(self._width - len(line), 0)
            self._stream.write("\r" + line + " " * pad)
            self._width = len(line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
        self._drawn = True


def _fraction(s: Snapshot) -> float:
    done = 0.0
    if s.time_limit_s:
        done = s.elapsed_s / s.time_limit_s
    if s.total_turns:
        done = max(done, s.turns / s.total_turns)
    return min(done, 1.0)
