"""The writes that rebuild one exported session in a store, exactly: same ids, same sequence
numbers (gaps included), same summaries, status, metadata and times.

The store numbers appended messages itself, from its ``next_seq``, once per message id. A
gap (a message removed at the source) is rebuilt by appending a stand-in and removing it in
the same write, which leaves the same hole. A summary is stored by the write that brings
the messages it covers; one summary per write. The last write sets the status (an archived
session accepts no messages), the metadata, settings and update time, and holds the last
message, so a target whose ``next_seq`` matches the source holds every write before it.
"""

from __future__ import annotations

from collections import deque

from .._export import SessionRecord
from ..backends.base import SessionSnapshot, SessionWrite
from ..interfaces import ConversationSummary, Message, MessageRole

__all__ = ["WRITER", "SessionPlan"]

#: Who the target's session records as its last writer.
WRITER = "langswarm-memory-import"
#: Messages per write.
CHUNK = 500
#: A summary is stored only if made from messages read after the latest removal; stand-ins
#: are removals, and an imported summary was made from the source's messages.
_SEEN_EVERYTHING = 1 << 52


class SessionPlan:
    """Turns one session's messages, given in order, into writes: :meth:`opening` first,
    :meth:`add` for each message, :meth:`closing` last."""

    def __init__(self, record: SessionRecord, held: SessionSnapshot | None) -> None:
        self.record = record
        self.session_id = record.meta.session_id
        self._create = held is None
        #: The sequence number the target gives the next message it stores.
        self.next_seq = record.first_seq if held is None else held.next_seq
        stored = [] if held is None else sorted(held.summaries, key=lambda s: s.covers_through)
        self._base = stored[-1].summary_id if stored else ""
        covered = stored[-1].covers_through if stored else 0
        known = {s.summary_id for s in stored}
        self._summaries = deque(
            s
            for s in sorted(record.summaries, key=lambda s: s.covers_through)
            if s.covers_through > covered and s.summary_id not in known
        )
        self._messages: list[Message] = []
        self._holes: list[str] = []

    def opening(self) -> list[SessionWrite]:
        """Writes due before any message: summaries of messages the source trimmed."""
        return self._summaries_due()

    def add(self, seq: int, message: Message) -> list[SessionWrite]:
        """Writes due once ``message`` (at ``seq``) is in (messages the target holds are
        skipped)."""
        if seq < self.next_seq:
            return []
        while self.next_seq < seq:
            hole = f"{WRITER}:hole:{self.next_seq}"
            self._messages.append(Message(MessageRole.SYSTEM, "", message_id=hole, token_count=0))
            self._holes.append(hole)
            self.next_seq += 1
        self._messages.append(message)
        self.next_seq += 1
        due = self._summaries_due()
        if not due and len(self._messages) >= CHUNK:
            due.append(self._write())
        return due

    def closing(self) -> list[SessionWrite]:
        """The last writes: summaries left, then the session's own fields."""
        due = self._summaries_due(keep_last=True)
        summary = self._summaries.popleft() if self._summaries else None
        last = self._write(summary)
        meta = self.record.meta
        last.status = meta.status
        last.touched = meta.updated_at
        last.custom = dict(meta.metadata)
        last.settings = {
            "max_messages": meta.max_messages,
            "max_tokens": meta.max_tokens,
            "auto_summarize_threshold": meta.auto_summarize_threshold,
        }
        return [*due, last]

    def _summaries_due(self, *, keep_last: bool = False) -> list[SessionWrite]:
        """A write for each summary whose messages are all in (the last one kept back for
        :meth:`closing` with ``keep_last``)."""
        due: list[SessionWrite] = []
        while self._summaries and self._summaries[0].covers_through <= self.next_seq:
            if keep_last and len(self._summaries) == 1:
                break
            due.append(self._write(self._summaries.popleft()))
        return due

    def _write(self, summary: ConversationSummary | None = None) -> SessionWrite:
        """A write of the messages gathered so far (and ``summary``)."""
        record = self.record
        write = SessionWrite(
            self.session_id,
            incarnation=record.incarnation,
            writer=WRITER,
            messages=self._messages,
            remove=self._holes,
        )
        if self._create:
            write.create, write.start_seq = record.meta.copy(), record.first_seq
            self._create = False
        if summary is not None:
            write.summary, write.summary_base = summary, self._base
            write.summary_seen = _SEEN_EVERYTHING
            self._base = summary.summary_id
        self._messages, self._holes = [], []
        return write
