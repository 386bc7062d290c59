"""One retry policy for every place that retries storage: exponential backoff with jitter,
bounded by a budget of wall-clock time (time spent blocked in a driver counts too). The
runtime's policy tells a :class:`~._health.StorageWatch` of failures and recoveries, which
logs each outage once rather than each retry."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import anyio

from .exceptions import (
    MemoryBackendError,
    MemoryConnectionError,
    MemoryError,
    TransientBackendError,
)

if TYPE_CHECKING:
    from ._health import StorageWatch

__all__ = ["Backoff", "RetryPolicy"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry transient failures after ``base``, doubling up to ``cap`` seconds (each delay drawn
    from its upper half), until ``budget`` seconds have passed since the first attempt.

    ``budget=None`` retries for as long as it takes. ``watch``, if given, hears of every
    failure and of the success that follows.
    """

    budget: float | None = 10.0
    base: float = 0.01
    cap: float = 0.5
    watch: StorageWatch | None = field(default=None, compare=False, repr=False)

    def start(self) -> Backoff:
        """The delays of one operation's retries, its clock starting now."""
        return Backoff(self)

    async def run(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        """Await ``attempt()`` until it does not raise ``TransientBackendError``; past the budget
        raise ``MemoryBackendError`` naming ``what``."""
        backoff = self.start()
        while True:
            try:
                result = await attempt()
            except TransientBackendError as exc:
                delay = backoff.failed(exc)
                if delay is None:
                    if self.watch is not None:
                        self.watch.gave_up("storage")
                    raise backoff.exhausted(what, exc) from exc
                await anyio.sleep(delay)
            else:
                backoff.succeeded()
                return result


class Backoff:
    """The retry state of one operation."""

    __slots__ = ("_delay", "_policy", "_started", "failures")

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._started = time.monotonic()
        self._delay = policy.base
        self.failures = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def failed(self, error: BaseException) -> float | None:
        """Note a failed attempt; the delay before the next one, or ``None`` to give up."""
        self.failures += 1
        delay = self.next_delay()
        watch = self._policy.watch
        if watch is not None and delay is not None:
            watch.failed(error, self.failures, self._started)
        return delay

    def succeeded(self) -> None:
        """Note that the operation succeeded (ending an outage, if one was on)."""
        watch = self._policy.watch
        if watch is not None and watch.since is not None:
            watch.answered()

    def next_delay(self) -> float | None:
        """How long to wait before the next attempt, or ``None`` once the budget is spent."""
        budget = self._policy.budget
        left = float("inf") if budget is None else budget - self.elapsed
        if left <= 0:
            return None
        delay = self._delay * random.uniform(0.5, 1.0)
        self._delay = min(self._delay * 2, self._policy.cap)
        return min(delay, left)

    def exhausted(self, what: str, last: BaseException) -> MemoryError:
        """The error to raise once the budget is spent, after ``last`` failed."""
        text = f"{what} kept failing for {self.elapsed:.1f} s: {last}"
        if isinstance(last, TransientBackendError) and last.unreachable:
            return MemoryConnectionError(text)
        return MemoryBackendError(text)
