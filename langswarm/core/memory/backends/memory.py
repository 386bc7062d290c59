"""In-process storage: fastest, nothing outlives the process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..interfaces import ConversationSummary, Message, SessionMetadata, SessionStatus
from .base import SessionSnapshot, SessionWrite

__all__ = ["InMemoryBackend"]


@dataclass(slots=True)
class _Stored:
    meta: SessionMetadata
    messages: list[Message] = field(default_factory=list)
    first_seq: int = 0
    summaries: dict[str, ConversationSummary] = field(default_factory=dict)

    @property
    def next_seq(self) -> int:
        return self.first_seq + len(self.messages)


class InMemoryBackend:
    """Keeps sessions in dicts. Batches are applied synchronously, hence atomically."""

    name = "memory"
    persistent = False
    ttl_seconds = None

    def __init__(self) -> None:
        self._sessions: dict[str, _Stored] = {}

    def preflight(self) -> None:
        return None

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def apply(self, batch: Sequence[SessionWrite]) -> None:
        sessions = self._sessions
        for write in batch:
            sid = write.session_id
            if write.delete:
                sessions.pop(sid, None)
            stored = sessions.get(sid)
            if write.meta is not None:
                if stored is None:
                    stored = sessions[sid] = _Stored(
                        meta=write.meta.copy(), first_seq=write.first_seq
                    )
                else:
                    stored.meta = write.meta.copy()
            if stored is None:
                continue
            if write.messages:
                if write.first_seq != stored.next_seq:
                    # Re-applied after a retry: keep what is already stored.
                    skip = stored.next_seq - write.first_seq
                    stored.messages.extend(write.messages[max(skip, 0) :])
                else:
                    stored.messages.extend(write.messages)
            if write.trim_before is not None and write.trim_before > stored.first_seq:
                drop = min(write.trim_before, stored.next_seq) - stored.first_seq
                del stored.messages[:drop]
                stored.first_seq += drop
            for summary in write.summaries:
                stored.summaries[summary.summary_id] = summary

    async def load_session(self, session_id: str, *, tail: int) -> SessionSnapshot | None:
        stored = self._sessions.get(session_id)
        if stored is None:
            return None
        messages = stored.messages[-tail:] if tail > 0 else []
        meta = stored.meta.copy()
        meta.message_count = stored.next_seq  # what storage holds decides
        return SessionSnapshot(
            meta=meta,
            messages=list(messages),
            first_seq=stored.first_seq,
            next_seq=stored.next_seq,
            summaries=sorted(stored.summaries.values(), key=lambda s: s.covers_through),
        )

    async def load_messages(self, session_id: str, *, start: int, stop: int) -> list[Message]:
        stored = self._sessions.get(session_id)
        if stored is None:
            return []
        lo = max(start - stored.first_seq, 0)
        hi = max(stop - stored.first_seq, 0)
        return stored.messages[lo:hi]

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int | None = 100,
        updated_before: datetime | None = None,
    ) -> list[SessionMetadata]:
        found = [
            s.meta
            for s in self._sessions.values()
            if (user_id is None or s.meta.user_id == user_id)
            and (status is None or s.meta.status == status)
            and (updated_before is None or s.meta.updated_at < updated_before)
        ]
        found.sort(key=lambda m: m.updated_at, reverse=True)
        if limit is not None:
            found = found[:limit]
        return [m.copy() for m in found]

    async def get_usage_stats(self) -> dict[str, Any]:
        sessions = self._sessions.values()
        by_status: dict[str, int] = {}
        for s in sessions:
            by_status[s.meta.status.value] = by_status.get(s.meta.status.value, 0) + 1
        return {
            "backend": self.name,
            "total_sessions": len(self._sessions),
            "total_messages": sum(len(s.messages) for s in sessions),
            "total_summaries": sum(len(s.summaries) for s in sessions),
            "sessions_by_status": by_status,
            "storage_size_mb": None,
        }

    async def delete_sessions(self, session_ids: Sequence[str]) -> int:
        return sum(self._sessions.pop(sid, None) is not None for sid in session_ids)
