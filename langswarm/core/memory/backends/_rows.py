"""A stored session's own fields, and the rules that decide what one write does to them.

The in-memory and SQLite backends both hold a session as a :class:`Row` and apply writes by
the plan :func:`plan` draws up; the Redis backend applies the same rules in its script.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from ..exceptions import (
    MemoryCorruptionError,
    MemoryError,
    MemoryValidationError,
    MessageNotFoundError,
    SessionExistsError,
    SessionNotFoundError,
    SessionOwnershipError,
)
from ..interfaces import ConversationSummary, Message, SessionMetadata, SessionStatus
from .base import ABSENT, SessionState, SessionWrite, WriteResult

__all__ = ["NOTHING_STORED", "Plan", "Row", "Stored", "plan"]

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
    cleared_at: int = 0  # where the latest clear cut: nothing below needs a summary
    edited: int = 0  # the version the latest removal or clear made

    @classmethod
    def new(
        cls,
        meta: SessionMetadata,
        incarnation: str,
        writer: str,
        start: int = 0,
        *,
        summarized: bool = False,
    ) -> Row:
        """A session as its creator (``writer``) stores it: version 1, no messages, numbered
        from ``start`` (what lies below is in the summary stored with it, if ``summarized``)."""
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
            first_seq=start,
            next_seq=start,
            writer=writer,
            cleared_at=0 if summarized else start,
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
    ``changed`` is false), whether to drop every message and summary first (``clear``), the
    messages to add at their sequence numbers, those to remove, the summaries to drop (those
    ending after ``drop_summaries_after``), the summary to add, and the first sequence number
    to keep (a trim)."""

    result: WriteResult
    row: Row | None
    delete: bool = False
    changed: bool = False
    clear: bool = False
    messages: list[tuple[int, Message]] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    drop_summaries_after: int | None = None
    summary: ConversationSummary | None = None
    trim_to: int | None = None


class Stored(Protocol):
    """What :func:`plan` may ask about a session's stored messages and summaries."""

    def known(self, ids: list[str]) -> Collection[str]:
        """Which of ``ids`` the session holds."""

    def locate(self, ids: list[str]) -> dict[str, int]:
        """The sequence number of each of ``ids`` the session holds."""

    def newest_below(self, limit: int, skip: Collection[int]) -> int:
        """The highest stored sequence number below ``limit`` not in ``skip`` (-1: none)."""

    def summary_before(self, end: int) -> tuple[str, int]:
        """Id and end of the latest summary ending at or before ``end`` (``("", 0)``: none)."""


class _Nothing:
    """A session of which nothing is stored (absent, or just deleted or cleared)."""

    def known(self, ids: list[str]) -> Collection[str]:
        return ()

    def locate(self, ids: list[str]) -> dict[str, int]:
        return {}

    def newest_below(self, limit: int, skip: Collection[int]) -> int:
        return -1

    def summary_before(self, end: int) -> tuple[str, int]:
        return "", 0


NOTHING_STORED: Stored = _Nothing()


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
        or write.remove
        or write.clear
    )


def plan(write: SessionWrite, stored: Row | None, held: Stored, now: float) -> Plan:
    """Decide what ``write`` does to the session stored as ``stored`` (``None``: absent).

    ``held`` answers what the session's stored messages and summaries are; ``now`` is the
    time in seconds since the epoch (for summary claims). A refused write changes nothing.
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
        held = NOTHING_STORED  # what the deleted session held is gone with it
    if write.create is not None:
        row = _create(write, row, result)
    if result.error is None:
        _apply(write, row, outcome, held, now)
    if result.error is not None:
        result.state = stored.state() if stored is not None else ABSENT
        return Plan(result, None)
    outcome.changed = outcome.changed or result.created
    outcome.row = row if outcome.changed else None
    result.state = ABSENT if row is None else row.state()
    return outcome


def _apply(write: SessionWrite, row: Row | None, outcome: Plan, held: Stored, now: float) -> None:
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
    _change(write, row, outcome, held, now)
    if outcome.changed and not result.created:
        row.version += 1
        if row.writer != write.writer:
            row.writer, row.writer_since = write.writer, result.version_before


def _create(write: SessionWrite, row: Row | None, result: WriteResult) -> Row | None:
    meta = write.create
    assert meta is not None
    if row is None:
        result.created = True
        return Row.new(
            meta,
            write.incarnation,
            write.writer,
            write.start_seq,
            summarized=write.summary is not None,
        )
    if write.exclusive and row.incarnation != write.incarnation:  # not a retry of this create
        result.error = SessionExistsError(f"session {write.session_id} already exists")
    elif row.owner != meta.user_id:
        result.error = SessionOwnershipError(f"session {write.session_id} belongs to another user")
    return row


def _change(write: SessionWrite, row: Row, outcome: Plan, held: Stored, now: float) -> None:
    if (write.messages or write.remove or write.clear) and not _edit(write, row, outcome, held):
        return
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


def _edit(write: SessionWrite, row: Row, outcome: Plan, held: Stored) -> bool:
    """Clear, append, then remove messages; every refusal is decided before ``row`` changes.
    ``False`` (and an error) if refused."""
    error: MemoryError | None = None
    if row.status is not SessionStatus.ACTIVE:
        error = MemoryValidationError(
            f"session {write.session_id} is {row.status.value}; it accepts no messages"
        )
    if write.clear:
        held = NOTHING_STORED
        before = replace(row, first_seq=row.next_seq, summary_end=row.next_seq, summary_id="")
        before.cleared_at = row.next_seq
    else:
        before = row
    numbered = _number(write.messages, row.next_seq, held)
    removal: _Removal | None = None
    if write.remove and error is None:
        found = _removal(write, before, numbered, held)
        if isinstance(found, MemoryError):
            error = found
        else:
            removal = found
    if error is not None:
        outcome.result.error = error
        return False
    if write.clear or removal is not None:
        row.edited = outcome.result.version_before + 1
    if write.clear:
        row.first_seq = row.summary_end = row.cleared_at = row.next_seq
        row.count, row.summary_id = 0, ""
        outcome.clear = outcome.changed = True
    if numbered:
        outcome.messages = numbered
        outcome.result.appended_at = row.next_seq
        row.count += len(numbered)
        row.next_seq += len(numbered)
        outcome.changed = True
    if removal is not None:
        _take_out(removal, row, outcome)
    return True


def _number(messages: list[Message], start: int, held: Stored) -> list[tuple[int, Message]]:
    """Sequence numbers, from ``start``, for the messages not stored yet."""
    if not messages:
        return []
    seen = set(held.known([m.message_id for m in messages]))
    numbered: list[tuple[int, Message]] = []
    for message in messages:
        if message.message_id not in seen:
            seen.add(message.message_id)
            numbered.append((start + len(numbered), message))
    return numbered


@dataclass(frozen=True, slots=True)
class _Removal:
    gone: set[int]  # sequence numbers removed
    next_seq: int  # the numbering after
    summary: tuple[str, int] | None  # the latest summary left, when summaries go
    cut: int  # summaries ending after this go


def _removal(
    write: SessionWrite, row: Row, numbered: list[tuple[int, Message]], held: Stored
) -> _Removal | MemoryError:
    """What removing ``write.remove`` takes out of ``row`` once ``numbered`` is appended."""
    fresh = {m.message_id: seq for seq, m in numbered}
    where = {i: fresh[i] for i in write.remove if i in fresh}
    where.update(held.locate([i for i in write.remove if i not in fresh]))
    missing = [i for i in write.remove if i not in where]
    if missing:
        return MessageNotFoundError(f"session {write.session_id} holds no message {missing[0]!r}")
    gone = set(where.values())
    appended_from = row.next_seq
    seq = appended_from + len(numbered) - 1
    while seq >= appended_from and seq in gone:
        seq -= 1
    if seq < appended_from:
        seq = held.newest_below(seq + 1, gone)
    next_seq = max(seq + 1, row.first_seq)
    cut = min(min(gone), next_seq)
    if cut >= row.summary_end:
        return _Removal(gone, next_seq, None, cut)
    summary_id, end = held.summary_before(cut)
    if not summary_id:
        end = row.cleared_at
    if end < row.first_seq:
        return MemoryValidationError(
            f"session {write.session_id}: a message to remove is part of the summary that "
            "holds trimmed messages; removing it would lose them"
        )
    return _Removal(gone, next_seq, (summary_id, end), cut)


def _take_out(removal: _Removal, row: Row, outcome: Plan) -> None:
    gone = removal.gone
    stored_before = row.next_seq - len(outcome.messages)
    outcome.messages = [(s, m) for s, m in outcome.messages if s not in gone]
    outcome.removed = sorted(s for s in gone if s < stored_before)
    if removal.summary is not None:
        row.summary_id, row.summary_end = removal.summary
        outcome.drop_summaries_after = removal.cut
    row.count -= len(gone)
    row.next_seq = removal.next_seq
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
        and write.summary_seen >= row.edited
    ):
        outcome.summary = summary
        row.summary_id, row.summary_end = summary.summary_id, summary.covers_through
        outcome.result.summary_stored = outcome.changed = True


_MISSING = object()
