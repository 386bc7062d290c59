"""Progress of long commands on stderr: a bar on a terminal, a plain line a second otherwise
(so logs stay readable), nothing with ``--no-progress``."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import click

__all__ = ["Progress"]

#: Seconds between lines when stderr is not a terminal.
LINE_INTERVAL = 1.0


class Progress:
    """Counts sessions (out of ``total`` when known) and messages as a command goes."""

    def __init__(
        self, label: str, total: int | None, *, enabled: bool, stream: TextIO | None = None
    ) -> None:
        self.label, self.total = label, total
        self.sessions = self.messages = 0
        self._stream = stream or sys.stderr
        self._enabled = enabled
        self._started = time.monotonic()
        self._last_line: float | None = None
        self._bar: Any = None
        self.start(total)

    def start(self, total: int | None) -> None:
        """Count to ``total`` sessions from now on (on a terminal: draw the bar)."""
        self.total = total
        if self._enabled and total and self._bar is None and self._stream.isatty():
            self._bar = click.progressbar(
                length=total,
                label=self.label,
                file=self._stream,
                show_pos=True,
                item_show_func=lambda _: f"{self.messages:,} messages",
            )
            self._bar.__enter__()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def advance(self, *, sessions: int = 0, messages: int = 0) -> None:
        self.sessions += sessions
        self.messages += messages
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.update(sessions, self.sessions)
            return
        now = time.monotonic()
        if self._last_line is None or now - self._last_line >= LINE_INTERVAL:
            self._last_line = now
            click.echo(self.line(), file=self._stream)

    def line(self) -> str:
        """Where the command is, as one line."""
        done = f"{self.sessions:,}" if self.total is None else f"{self.sessions:,}/{self.total:,}"
        rate = self.messages / self.elapsed if self.elapsed > 0 else 0.0
        return f"{self.label}: {done} sessions, {self.messages:,} messages ({rate:,.0f} messages/s)"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
