"""The newest messages of a session, kept in memory: sequence numbers, appends, eviction,
``max_messages`` trims and token-budgeted windows. Pure bookkeeping, no I/O.

Sequence numbers count a session's messages from 0. Storage holds ``[first, next)`` (older
ones were trimmed); memory holds ``[start, next)``, a suffix of that, with ``REMOVED`` where a
message was removed (``holes`` of them), so that position still gives sequence number; reads
leave the holes out. A message leaves memory only once the batch that stores it has
committed, so the backend can always serve what memory no longer holds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from .._windows import safe_boundary, window_start
from ..backends.base import REMOVED
from ..interfaces import Message, MessageRole

__all__ = ["InvariantBroken", "MessageTail", "Saving"]


class InvariantBroken(Exception):
    """A session's in-memory state is inconsistent; its actor must be rebuilt."""


class Saving(Protocol):
    """The commit a write rides on."""

    def committed_for(self, session_id: str, incarnation: str) -> bool: ...


class MessageTail:
    """See the module docstring."""

    __slots__ = ("_key", "_unsaved", "first", "holes", "messages", "next", "start")

    def __init__(
        self, key: tuple[str, str], messages: list[Message], first: int, next_seq: int
    ) -> None:
        self._key = key  # (session id, incarnation): what the commits are asked about
        self.messages = messages
        self.first = first
        self.next = next_seq
        self.start = next_seq - len(messages)
        self.holes = _holes(messages)
        # (first seq, commit) of writes not yet known to be stored, oldest first.
        self._unsaved: deque[tuple[int, Saving]] | None = None

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def complete(self) -> bool:
        """Whether memory holds every stored message (nothing to page in)."""
        return self.start <= self.first

    def check(self) -> None:
        if self.start + len(self.messages) != self.next or self.start < self.first:
            raise InvariantBroken(
                f"session {self._key[0]}: tail [{self.start}, +{len(self.messages)}) does not end "
                f"at {self.next} or starts before {self.first}"
            )

    # -- writes ----------------------------------------------------------------------------

    def append(self, messages: Sequence[Message], commit: Saving) -> int:
        """Add ``messages`` (stored by ``commit``); return the first one's sequence number."""
        first = self.next
        self.messages.extend(messages)
        self.next = first + len(messages)
        unsaved = self._unsaved
        if unsaved is None:
            unsaved = self._unsaved = deque()
        else:
            self._forget_saved()
        if not unsaved or unsaved[-1][1] is not commit:
            unsaved.append((first, commit))
        return first

    def _forget_saved(self) -> None:
        unsaved = self._unsaved
        while unsaved and unsaved[0][1].committed_for(*self._key):
            unsaved.popleft()

    def saved_before(self) -> int:
        """Every message below the returned sequence number is stored."""
        self._forget_saved()
        return self._unsaved[0][0] if self._unsaved else self.next

    def all_saved(self) -> bool:
        return self.saved_before() == self.next

    def evict(self, keep: int, floor: int) -> None:
        """Past twice ``keep`` messages, drop the oldest down to ``keep``, never one that is
        not stored yet nor one at or after ``floor``."""
        if len(self.messages) <= 2 * keep:
            return
        stored = self.saved_before()
        drop = min(len(self.messages) - keep, stored - self.start, floor - self.start)
        if drop > 0:
            self._drop(drop)

    def trim_point(self, limit: int, covered: int) -> int | None:
        """Where ``max_messages=limit`` cuts, dropping only what a summary ``covered``; the
        new first sequence number, or ``None`` when nothing can go. Never splits a tool
        exchange: the cut is checked against the messages around it, so it must lie in memory
        (or at its very start)."""
        if self.next - self.first <= limit:
            return None
        target = min(self.next - limit, covered)
        if target <= self.start:
            target = self.start if self.messages and not self.messages[0].is_tool_result else 0
        else:
            target = self.start + safe_boundary(self.messages, target - self.start)
        return target if target > self.first else None

    def drop_before(self, seq: int) -> None:
        """Forget messages below ``seq`` (a trim)."""
        self.first = seq
        if seq > self.start:
            self._drop(seq - self.start)

    def _drop(self, count: int) -> None:
        if self.holes:
            self.holes -= _holes(self.messages[:count])
        del self.messages[:count]
        self.start += count

    def remove(self, seqs: set[int], next_seq: int) -> bool:
        """Mirror a removal storage made (``seqs`` gone, the numbering now ending at
        ``next_seq``); ``False`` if memory does not hold enough to (reload instead)."""
        if next_seq < self.start or any(seq < self.start for seq in seqs):
            return False
        messages = self.messages
        for seq in seqs:
            if seq < self.next:
                messages[seq - self.start] = REMOVED
        del messages[next_seq - self.start :]
        self.next = next_seq
        self.holes = _holes(messages)
        return True

    # -- reads -----------------------------------------------------------------------------

    def visible(self, settled: bool) -> int:
        """How many of the messages in memory a reader sees: all of them, or (``settled``)
        only those stored, leaving out writes still on their way to storage."""
        if not settled:
            return len(self.messages)
        return self.saved_before() - self.start

    def window(self, budget: int, floor: int, end: int) -> list[Message] | None:
        """The newest of ``messages[:end]`` from ``floor`` on that fit ``budget``; ``None``
        when older messages, not in memory, could extend it."""
        messages = self.messages
        start, _, exhausted = window_start(messages, max(floor - self.start, 0), end, budget)
        if exhausted and self.start > floor:
            return None
        if self.holes:
            return [m for m in messages[start:end] if m is not REMOVED]
        return messages[start:end]

    def newest(self, limit: int | None, end: int) -> list[Message] | None:
        """The newest ``limit`` of ``messages[:end]`` (all, for ``None``); ``None`` if memory
        does not hold them."""
        messages = self.messages
        if self.holes:
            messages = [m for m in messages[:end] if m is not REMOVED]
            end = len(messages)
        if limit is None:
            return messages[:end] if self.complete else None
        if limit > end and not self.complete:
            return None
        return messages[max(end - limit, 0) : end]


def _holes(messages: Sequence[Message]) -> int:
    return sum(1 for m in messages if m is REMOVED)


def select(
    messages: Sequence[Message],
    limit: int | None,
    since: datetime | None,
    roles: frozenset[MessageRole] | None,
) -> list[Message]:
    """The newest ``limit`` of ``messages`` at or after ``since`` with one of ``roles``."""
    found = [
        m
        for m in messages
        if m is not REMOVED
        and (since is None or m.timestamp >= since)
        and (roles is None or m.role in roles)
    ]
    return found if limit is None else found[-limit:]
