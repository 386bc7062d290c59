"""In-process storage: fastest, nothing outlives the process, nothing shared with another."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..interfaces import ConversationSummary, Message, SessionMetadata, SessionStatus
from ._rows import NOTHING_STORED, Row, plan
from .base import REMOVED, SessionSnapshot, SessionWrite, WriteResult

__all__ = ["InMemoryBackend"]


@dataclass(slots=True)
class _Stored:
    row: Row
    messages: dict[int, Message] = field(default_factory=dict)  # by sequence number
    ids: dict[str, int] = field(default_factory=dict)  # message id -> sequence number
    summaries: dict[str, ConversationSummary] = field(default_factory=dict)

    def known(self, ids: list[str]) -> Collection[str]:
        return [i for i in ids if i in self.ids]

    def locate(self, ids: list[str]) -> dict[str, int]:
        return {i: self.ids[i] for i in ids if i in self.ids}

    def newest_below(self, limit: int, skip: Collection[int]) -> int:
        seq = limit - 1
        while seq >= self.row.first_seq and (seq in skip or seq not in self.messages):
            seq -= 1
        return seq if seq >= self.row.first_seq else -1

    def summary_before(self, end: int) -> tuple[str, int]:
        found = [s for s in self.summaries.values() if s.covers_through <= end]
        if not found:
            return "", 0
        latest = max(found, key=lambda s: s.covers_through)
        return latest.summary_id, latest.covers_through

    def sequence(self, start: int, stop: int) -> list[Message]:
        """Slots ``start <= seq < stop``, holes as ``REMOVED``."""
        get = self.messages.get
        return [get(seq, REMOVED) for seq in range(start, stop)]


class InMemoryBackend:
    """Keeps sessions in dicts. Writes are applied synchronously, hence atomically."""

    name = "memory"
    persistent = False
    shared = False
    ttl_seconds: float | None = None

    def __init__(self) -> None:
        self._sessions: dict[str, _Stored] = {}
        # Runtimes on several threads' event loops may share the backend; a batch is applied
        # whole before another thread's.
        self._lock = threading.Lock()

    def preflight(self) -> None:
        return None

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def apply(self, batch: Sequence[SessionWrite]) -> list[WriteResult]:
        with self._lock:
            return [self._apply(write) for write in batch]

    def _apply(self, write: SessionWrite) -> WriteResult:
        sid = write.session_id
        stored = self._sessions.get(sid)
        first = 0 if stored is None else stored.row.first_seq
        outcome = plan(
            write,
            None if stored is None else stored.row,
            NOTHING_STORED if stored is None else stored,
            time.time(),
        )
        if outcome.delete:
            self._sessions.pop(sid, None)
            stored = None
        if outcome.row is not None:
            if stored is None:
                stored = self._sessions[sid] = _Stored(outcome.row)
            stored.row = outcome.row
        if stored is None:
            return outcome.result
        if outcome.clear:
            stored.messages.clear()
            stored.ids.clear()
            stored.summaries.clear()
        for seq, message in outcome.messages:
            stored.messages[seq] = message
            stored.ids[message.message_id] = seq
        for seq in outcome.removed:
            del stored.ids[stored.messages.pop(seq).message_id]
        cut = outcome.drop_summaries_after
        if cut is not None:
            stored.summaries = {
                k: s for k, s in stored.summaries.items() if s.covers_through <= cut
            }
        if outcome.summary is not None:
            stored.summaries[outcome.summary.summary_id] = outcome.summary
        if outcome.trim_to is not None:
            for seq in range(first, outcome.trim_to):
                if seq in stored.messages:
                    del stored.ids[stored.messages.pop(seq).message_id]
            stored.row.count = len(stored.messages)
        return outcome.result

    async def load_session(self, session_id: str, *, tail: int) -> SessionSnapshot | None:
        stored = self._sessions.get(session_id)
        if stored is None:
            return None
        row = stored.row
        start = row.next_seq
        found = 0
        while found < tail and start > row.first_seq:
            start -= 1
            found += start in stored.messages
        return SessionSnapshot(
            meta=row.meta(),
            messages=stored.sequence(start, row.next_seq),
            first_seq=row.first_seq,
            next_seq=row.next_seq,
            summaries=sorted(stored.summaries.values(), key=lambda s: s.covers_through),
            incarnation=row.incarnation,
            version=row.version,
        )

    async def load_messages(self, session_id: str, *, start: int, stop: int) -> list[Message]:
        stored = self._sessions.get(session_id)
        if stored is None:
            return []
        row = stored.row
        return stored.sequence(max(start, row.first_seq), min(stop, row.next_seq))

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int | None = 100,
        updated_before: datetime | None = None,
    ) -> list[SessionMetadata]:
        rows = [
            s.row
            for s in self._sessions.values()
            if (user_id is None or s.row.owner == user_id)
            and (status is None or s.row.status == status)
            and (updated_before is None or s.row.updated < updated_before.timestamp())
        ]
        rows.sort(key=lambda r: r.updated, reverse=True)
        return [r.meta() for r in (rows if limit is None else rows[:limit])]

    async def get_usage_stats(self) -> dict[str, Any]:
        sessions = self._sessions.values()
        by_status: dict[str, int] = {}
        for s in sessions:
            by_status[s.row.status.value] = by_status.get(s.row.status.value, 0) + 1
        return {
            "backend": self.name,
            "total_sessions": len(self._sessions),
            "total_messages": sum(len(s.messages) for s in sessions),
            "total_summaries": sum(len(s.summaries) for s in sessions),
            "sessions_by_status": by_status,
            "storage_size_mb": None,
        }

    async def delete_sessions(
        self, session_ids: Sequence[str], *, idle_before: datetime | None = None
    ) -> int:
        deleted = 0
        cutoff = None if idle_before is None else idle_before.timestamp()
        for sid in dict.fromkeys(session_ids):
            stored = self._sessions.get(sid)
            if stored is None or (cutoff is not None and stored.row.updated >= cutoff):
                continue
            del self._sessions[sid]
            deleted += 1
        return deleted
