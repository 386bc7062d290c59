"""A stored session's own fields, and the rules that decide what one write does to them.

The in-memory and SQLite backends both hold a session as a :class:`Row` and apply writes by
the plan :func:`plan` draws up; the Redis backend applies the same rules in its script.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..exceptions import (
    MemoryCorruptionError,
    MemoryValidationError,
    SessionExistsError,
    SessionNotFoundError,
    SessionOwnershipError,
)
from ..interfaces import ConversationSummary, Message, SessionMetadata, SessionStatus
from .base import ABSENT, SessionState, SessionWrite, WriteResult

__all__ = ["Plan", "Row", "plan"]

_fromts = datetime.fromtimestamp

SETTINGS = ("max_messages", "max_tokens", "auto_summarize_threshold")


@dataclass(slots=True)
class Row:
    """Everything stored for a session but its messages and summaries, in stored form: times
    as seconds since the epoch, the application's metadata as a dict or its JSON text (each
    made from the other only when needed)."""

    session_id: str
    owner: str
    incarnation: str
    version: int
    status: SessionStatus
    created: float
    updated: float
    expires: float | None = None
    max_messages: int | None = None
    max_tokens: int | None = None
    auto_summarize_threshold: int | None = None
    custom: dict[str, Any] | None = None
    custom_text: str | None = None
    first_seq: int = 0
    next_seq: int = 0
    count: int = 0
    summary_id: str = ""  # the latest stored summary
    summary_end: int = 0  # and where it ends
    claim: int = 0  # trigger point of the automatic summary claimed, and until when
    claim_until: float = 0.0
    writer: str = ""  # who made the latest changes, since which version
    writer_since: int = 0

    @classmethod
    def new(cls, meta: SessionMetadata, incarnation: str, writer: str) -> Row:
        """A session as its creator (``writer``) stores it: version 1, no messages."""
        return cls(
            session_id=meta.session_id,
            owner=meta.user_id,
            incarnation=incarnation,
            version=1,
            status=SessionStatus.ACTIVE,
            created=meta.created_at.timestamp(),
            updated=meta.updated_at.timestamp(),
            expires=None if meta.expires_at is None else meta.expires_at.timestamp(),
            max_messages=meta.max_messages,
            max_tokens=meta.max_tokens,
            auto_summarize_threshold=meta.auto_summarize_threshold,
            custom=dict(meta.metadata),
            writer=writer,
        )

    def metadata(self) -> dict[str, Any]:
        """The application's metadata (decoded from its stored text on first use)."""
        if self.custom is None:
            try:
                custom = json.loads(self.custom_text or "{}")
            except ValueError as exc:
                raise MemoryCorruptionError(
                    f"stored metadata of session {self.session_id!r} cannot be read: {exc}"
                ) from exc
            if not isinstance(custom, dict):
                raise MemoryCorruptionError(
                    f"stored metadata of session {self.session_id!r} is not an object"
                )
            self.custom = custom
        return self.custom

    def metadata_text(self) -> str:
        """The application's metadata as stored (JSON)."""
        if self.custom_text is None:
            self.custom_text = json.dumps(self.custom or {}, ensure_ascii=False)
        return self.custom_text

    def meta(self) -> SessionMetadata:
        return SessionMetadata(
            session_id=self.session_id,
            user_id=self.owner,
            status=self.status,
            created_at=_fromts(self.created),
            updated_at=_fromts(self.updated),
            max_messages=self.max_messages,
            max_tokens=self.max_tokens,
            auto_summarize_threshold=self.auto_summarize_threshold,
            metadata=dict(self.metadata()),
            message_count=self.count,
            expires_at=None if self.expires is None else _fromts(self.expires),
        )

    def state(self) -> SessionState:
        return SessionState(
            self.incarnation, self.owner, self.version, self.first_seq, self.next_seq
        )


@dataclass(slots=True)
class Plan:
    """What to store for one write: ``row`` as it will be (``None``: gone, or unchanged when
    ``changed`` is false), the messages to add at their sequence numbers, the summary to add,
    and the first sequence number to keep (a trim)."""

    result: WriteResult
    row: Row | None
    delete: bool = False
    changed: bool = False
    messages: list[tuple[int, Message]] = field(default_factory=list)
    summary: ConversationSummary | None = None
    trim_to: int | None = None


def _wants_more(write: SessionWrite) -> bool:
    """Whether the write asks for anything beyond a delete, a create or a probe."""
    return bool(
        write.messages
        or write.settings
        or write.custom
        or write.status is not None
        or write.touched is not None
        or write.summary is not None
        or write.trim_before is not None
        or write.claim is not None
    )


def plan(
    write: SessionWrite,
    stored: Row | None,
    known_ids: Callable[[list[str]], Collection[str]],
    now: float,
) -> Plan:
    """Decide what ``write`` does to the session stored as ``stored`` (``None``: absent).

    ``known_ids`` says which of the given message ids the session already holds; ``now`` is
    the time in seconds since the epoch (for summary claims). A refused write changes nothing.
    """
    # Changed in place: every refusal is decided before anything changes.
    row = stored
    result = WriteResult(ABSENT, version_before=0 if row is None else row.version)
    outcome = Plan(result, None)
    if write.delete and row is not None:
        if write.incarnation not in ("*", row.incarnation):
            # That session is gone already; this one is someone else's.
            result.error = SessionNotFoundError(f"session {write.session_id} was deleted")
            result.state = row.state()
            return Plan(result, None)
        outcome.delete, row = True, None
        known_ids = _none_known  # what the deleted session held is gone with it
    if write.create is not None:
        row = _create(write, row, result)
    if result.error is None:
        _apply(write, row, outcome, known_ids, now)
    if result.error is not None:
        result.state = stored.state() if stored is not None else ABSENT
        return Plan(result, None)
    outcome.changed = outcome.changed or result.created
    outcome.row = row if outcome.changed else None
    result.state = ABSENT if row is None else row.state()
    return outcome


def _none_known(ids: list[str]) -> Collection[str]:
    return ()


def _apply(
    write: SessionWrite,
    row: Row | None,
    outcome: Plan,
    known_ids: Callable[[list[str]], Collection[str]],
    now: float,
) -> None:
    """The changes, to the incarnation the write names (and at the version it expects)."""
    result = outcome.result
    if row is None or row.incarnation != write.incarnation:
        if _wants_more(write):
            result.error = SessionNotFoundError(f"session {write.session_id} was deleted")
        return
    expected = write.expect_version
    if expected is not None and not result.created and row.version != expected:
        result.conflict = True
        return
    _change(write, row, outcome, known_ids, now)
    if outcome.changed and not result.created:
        row.version += 1
        if row.writer != write.writer:
            row.writer, row.writer_since = write.writer, result.version_before


def _create(write: SessionWrite, row: Row | None, result: WriteResult) -> Row | None:
    meta = write.create
    assert meta is not None
    if row is None:
        result.created = True
        return Row.new(meta, write.incarnation, write.writer)
    if write.exclusive:
        result.error = SessionExistsError(f"session {write.session_id} already exists")
    elif row.owner != meta.user_id:
        result.error = SessionOwnershipError(f"session {write.session_id} belongs to another user")
    return row


def _change(
    write: SessionWrite,
    row: Row,
    outcome: Plan,
    known_ids: Callable[[list[str]], Collection[str]],
    now: float,
) -> None:
    if write.messages:
        if row.status is not SessionStatus.ACTIVE:
            outcome.result.error = MemoryValidationError(
                f"session {write.session_id} is {row.status.value}; it accepts no messages"
            )
            return
        _append(write.messages, row, outcome, known_ids)
    _set_fields(write, row, outcome)
    if write.summary is not None:
        _add_summary(write, row, outcome)
    if write.trim_before is not None and _mine_since(row, write, outcome.result):
        target = min(write.trim_before, row.summary_end, row.next_seq)
        if target > row.first_seq:
            outcome.trim_to = row.first_seq = target
            outcome.changed = True
    if write.claim is not None:
        if row.claim >= write.claim and row.claim_until > now:
            return
        row.claim, row.claim_until = write.claim, now + write.claim_seconds
        outcome.result.claimed = outcome.changed = True


def _mine_since(row: Row, write: SessionWrite, result: WriteResult) -> bool:
    """Whether every change after version ``write.trim_base`` came from ``write.writer``."""
    base = write.trim_base
    return result.version_before == base or (
        row.writer == write.writer and row.writer_since <= base
    )


def _append(
    messages: list[Message],
    row: Row,
    outcome: Plan,
    known_ids: Callable[[list[str]], Collection[str]],
) -> None:
    """Number the messages not stored yet from the end of the session."""
    seen = set(known_ids([m.message_id for m in messages]))
    seq = row.next_seq
    for message in messages:
        if message.message_id in seen:
            continue
        seen.add(message.message_id)
        outcome.messages.append((seq, message))
        seq += 1
    if outcome.messages:
        outcome.result.appended_at = row.next_seq
        row.count += seq - row.next_seq
        row.next_seq = seq
        outcome.changed = True


def _set_fields(write: SessionWrite, row: Row, outcome: Plan) -> None:
    for key, value in write.settings.items():
        if key in SETTINGS and getattr(row, key) != value:
            setattr(row, key, value)
            outcome.changed = True
    if write.custom:
        custom = row.metadata()
        for key, value in write.custom.items():
            if custom.get(key, _MISSING) != value:
                custom[key] = value
                row.custom_text = None
                outcome.changed = True
    if write.status is not None and row.status is not write.status:
        row.status = write.status
        outcome.changed = True
    if write.touched is not None:
        touched = write.touched.timestamp()
        if touched != row.updated:
            row.updated = touched
            outcome.changed = True


def _add_summary(write: SessionWrite, row: Row, outcome: Plan) -> None:
    summary = write.summary
    assert summary is not None
    if (
        row.summary_id == write.summary_base
        and row.summary_end < summary.covers_through <= row.next_seq
    ):
        outcome.summary = summary
        row.summary_id, row.summary_end = summary.summary_id, summary.covers_through
        outcome.result.summary_stored = outcome.changed = True


_MISSING = object()
