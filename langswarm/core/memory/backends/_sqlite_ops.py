"""What the SQLite backend runs on the driver's thread: one function per protocol call.

A batch is one ``BEGIN IMMEDIATE … COMMIT``: it reads the rows of the sessions it touches,
lets :func:`._rows.plan` decide each write, and stores the outcome with one statement per
kind of change over all sessions. Reads run in one deferred transaction, so they see one
consistent state even while other processes write.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._tokens import count_missing
from ..exceptions import MemoryBackendError, MemoryCorruptionError
from ..interfaces import Message, SessionMetadata, SessionStatus
from ._codec import pack_message, pack_summary, unpack_message, unpack_summary
from ._rows import Plan, Row, plan
from ._sqlite_schema import SESSION_COLUMNS
from .base import ABSENT, REMOVED, SessionSnapshot, SessionWrite, WriteResult

__all__ = [
    "apply_batch",
    "delete_sessions",
    "list_sessions",
    "load_messages",
    "load_session",
    "usage_stats",
]

_IN_BATCH = "(SELECT value FROM json_each(?))"
# Statuses to and from their stored text by dict: SessionStatus(text) and .value cost about
# 0.5 and 0.3 µs on Python 3.11, once per session row of every batch.
_STATUS = {s.value: s for s in SessionStatus}
_STATUS_TEXT = {s: s.value for s in SessionStatus}
_COLUMNS = SESSION_COLUMNS.split(", ")
# An update in place rewrites only the index entries whose columns changed.
_UPSERT = (
    f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({', '.join('?' * len(_COLUMNS))})"
    " ON CONFLICT (session_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
)
_KNOWN_IDS = """
    SELECT j.value ->> '$[0]', j.value ->> '$[1]' FROM json_each(?) AS j
    WHERE EXISTS (SELECT 1 FROM messages AS m
                  WHERE m.session_id = j.value ->> '$[0]' AND m.message_id = j.value ->> '$[1]')"""
_INSERT_MESSAGE = "INSERT INTO messages (session_id, seq, message_id, payload) VALUES (?, ?, ?, ?)"
# DO UPDATE rather than OR REPLACE keeps the rowid, which orders summaries that tie.
_UPSERT_SUMMARY = """
    INSERT INTO summaries (session_id, summary_id, covers_through, payload) VALUES (?, ?, ?, ?)
    ON CONFLICT (session_id, summary_id) DO UPDATE SET
        covers_through = excluded.covers_through, payload = excluded.payload"""
_TRIM = "DELETE FROM messages WHERE session_id = ? AND seq < ?"
_REMOVE = "DELETE FROM messages WHERE session_id = ? AND seq = ?"
_DROP_SUMMARIES = "DELETE FROM summaries WHERE session_id = ? AND covers_through > ?"
_TAIL = "SELECT seq, payload FROM messages WHERE session_id = ? ORDER BY seq DESC LIMIT ?"
_SUMMARIES = "SELECT payload FROM summaries WHERE session_id = ? ORDER BY covers_through, rowid"
_RANGE = (
    "SELECT seq, payload FROM messages WHERE session_id = ? AND seq >= ? AND seq < ? ORDER BY seq"
)
_LOCATE = f"""
    SELECT message_id, seq FROM messages
    WHERE session_id = ? AND message_id IN {_IN_BATCH}"""
_NEWEST_BELOW = f"""
    SELECT seq FROM messages WHERE session_id = ? AND seq < ? AND seq NOT IN {_IN_BATCH}
    ORDER BY seq DESC LIMIT 1"""
_SUMMARY_BEFORE = """
    SELECT summary_id, covers_through FROM summaries
    WHERE session_id = ? AND covers_through <= ? ORDER BY covers_through DESC, rowid DESC LIMIT 1"""
# Per status: sessions and stored messages; the summary count rides along on every row.
_USAGE = """
    SELECT status, COUNT(*), TOTAL(message_count), (SELECT COUNT(*) FROM summaries)
    FROM sessions GROUP BY status"""


def _row(values: Sequence[Any]) -> Row:
    """A session row as stored; ``MemoryCorruptionError`` if it cannot be read."""
    try:
        return _decoded(values)
    except (ValueError, TypeError, KeyError) as exc:
        raise MemoryCorruptionError(
            f"stored row of session {values[0]!r} cannot be read: {exc!r}"
        ) from exc


def _decoded(values: Sequence[Any]) -> Row:
    return Row(
        session_id=values[0],
        owner=values[1],
        incarnation=values[2],
        version=values[3],
        status=_STATUS[values[4]],
        created=values[5],
        updated=values[6],
        expires=values[7],
        max_messages=values[8],
        max_tokens=values[9],
        auto_summarize_threshold=values[10],
        custom_text=values[11],
        first_seq=values[12],
        next_seq=values[13],
        count=values[14],
        summary_id=values[15],
        summary_end=values[16],
        claim=values[17],
        claim_until=values[18],
        writer=values[19],
        writer_since=values[20],
        cleared_at=values[21],
        edited=values[22],
    )


def _values(row: Row) -> tuple[Any, ...]:
    return (
        row.session_id,
        row.owner,
        row.incarnation,
        row.version,
        _STATUS_TEXT[row.status],
        row.created,
        row.updated,
        row.expires,
        row.max_messages,
        row.max_tokens,
        row.auto_summarize_threshold,
        row.metadata_text(),
        row.first_seq,
        row.next_seq,
        row.count,
        row.summary_id,
        row.summary_end,
        row.claim,
        row.claim_until,
        row.writer,
        row.writer_since,
        row.cleared_at,
        row.edited,
    )


@dataclass(slots=True)
class _Changes:
    """What writes to distinct sessions store, gathered so that each kind of change is one
    statement over all of them (statement order is free between distinct sessions)."""

    sessions: dict[str, None] = field(default_factory=dict)  # rows to store, in order
    deletes: list[tuple[str]] = field(default_factory=list)
    clears: list[tuple[str]] = field(default_factory=list)
    trims: list[tuple[str, int]] = field(default_factory=list)
    messages: list[tuple[str, int, str, bytes]] = field(default_factory=list)
    removed: list[tuple[str, int]] = field(default_factory=list)
    dropped: list[tuple[str, int]] = field(default_factory=list)  # summaries after a seq
    summaries: list[tuple[str, str, int, bytes]] = field(default_factory=list)

    def touches(self, sid: str) -> bool:
        return sid in self.sessions or (sid,) in self.deletes

    def add(self, sid: str, outcome: Plan) -> None:
        if outcome.delete:
            self.deletes.append((sid,))
        if outcome.row is not None:
            self.sessions[sid] = None
        if outcome.clear:
            self.clears.append((sid,))
        if outcome.trim_to is not None:
            self.trims.append((sid, outcome.trim_to))
        self.messages.extend(
            (sid, seq, m.message_id, pack_message(m)) for seq, m in outcome.messages
        )
        self.removed.extend((sid, seq) for seq in outcome.removed)
        if outcome.drop_summaries_after is not None:
            self.dropped.append((sid, outcome.drop_summaries_after))
        if outcome.summary is not None:
            s = outcome.summary
            self.summaries.append((sid, s.summary_id, s.covers_through, pack_summary(s)))

    def write(self, db: sqlite3.Connection, rows: dict[str, Row]) -> None:
        if self.deletes:
            _delete_rows(db, self.deletes)
        if self.clears:
            db.executemany("DELETE FROM messages WHERE session_id = ?", self.clears)
            db.executemany("DELETE FROM summaries WHERE session_id = ?", self.clears)
        if self.removed:
            db.executemany(_REMOVE, self.removed)
        if self.messages:
            db.executemany(_INSERT_MESSAGE, self.messages)
        if self.dropped:
            db.executemany(_DROP_SUMMARIES, self.dropped)
        for sid, before in self.trims:
            gone = db.execute(_TRIM, (sid, before)).rowcount
            rows[sid].count = max(rows[sid].count - gone, 0)
        if self.sessions:
            db.executemany(_UPSERT, [_values(rows[sid]) for sid in self.sessions])
        if self.summaries:
            db.executemany(_UPSERT_SUMMARY, self.summaries)


Transaction = Callable[[sqlite3.Connection], AbstractContextManager[None]]


def apply_batch(
    db: sqlite3.Connection, batch: Sequence[SessionWrite], transaction: Transaction
) -> list[WriteResult]:
    """Apply ``batch`` in one write transaction; one result per write."""
    count_missing(batch)
    now = time.time()
    results: list[WriteResult] = []
    with transaction(db):
        rows, known, unreadable = _read_batch(db, batch)
        changes = _Changes()
        for write in batch:
            sid = write.session_id
            if sid in unreadable:  # fails this session alone
                results.append(WriteResult(ABSENT, error=unreadable[sid]))
                continue
            if changes.touches(sid):  # a session twice in one batch: keep the order
                changes.write(db, rows)
                changes = _Changes()
            ids = known.setdefault(sid, set())
            outcome = plan(write, rows.get(sid), _Held(db, sid, ids), now)
            results.append(outcome.result)
            changes.add(sid, outcome)
            if outcome.row is not None:
                rows[sid] = outcome.row
            elif outcome.delete:
                rows.pop(sid, None)
            if outcome.delete or outcome.clear:
                ids.clear()
            if write.remove and outcome.changed:
                ids.difference_update(write.remove)
            ids.update(m.message_id for _, m in outcome.messages)
        changes.write(db, rows)
    return results


class _Held:
    """What :func:`._rows.plan` asks of one session's stored messages and summaries: the
    batch's message ids it holds were read up front; the rest (for removals) is asked here."""

    __slots__ = ("_db", "_ids", "_sid")

    def __init__(self, db: sqlite3.Connection, sid: str, ids: set[str]) -> None:
        self._db, self._sid, self._ids = db, sid, ids

    def known(self, ids: list[str]) -> Collection[str]:
        return self._ids

    def locate(self, ids: list[str]) -> dict[str, int]:
        return dict(self._db.execute(_LOCATE, (self._sid, json.dumps(ids))).fetchall())

    def newest_below(self, limit: int, skip: Collection[int]) -> int:
        found = self._db.execute(_NEWEST_BELOW, (self._sid, limit, json.dumps(list(skip))))
        row = found.fetchone()
        return -1 if row is None else int(row[0])

    def summary_before(self, end: int) -> tuple[str, int]:
        row = self._db.execute(_SUMMARY_BEFORE, (self._sid, end)).fetchone()
        return ("", 0) if row is None else (row[0], int(row[1]))


def _read_batch(
    db: sqlite3.Connection, batch: Sequence[SessionWrite]
) -> tuple[dict[str, Row], dict[str, set[str]], dict[str, MemoryCorruptionError]]:
    """The stored rows of the batch's sessions, which of its message ids they hold, and the
    rows that cannot be read."""
    sids = json.dumps([w.session_id for w in batch])
    rows: dict[str, Row] = {}
    unreadable: dict[str, MemoryCorruptionError] = {}
    merging = {w.session_id for w in batch if w.custom}
    for values in db.execute(
        f"SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id IN {_IN_BATCH}", (sids,)
    ):
        try:
            row = rows[values[0]] = _row(values)
            if row.session_id in merging:
                row.metadata()  # read now, so that a bad one fails this session alone
        except MemoryCorruptionError as exc:
            rows.pop(values[0], None)
            unreadable[values[0]] = exc
    known: dict[str, set[str]] = {}
    pairs = [(w.session_id, m.message_id) for w in batch for m in w.messages]
    if pairs:
        for sid, message_id in db.execute(_KNOWN_IDS, (json.dumps(pairs),)):
            known.setdefault(sid, set()).add(message_id)
    return rows, known, unreadable


def load_session(db: sqlite3.Connection, session_id: str, tail: int) -> SessionSnapshot | None:
    db.execute("BEGIN")
    try:
        found = db.execute(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        if found is None:
            return None
        row = _row(found)
        newest = db.execute(_TAIL, (session_id, tail)).fetchall() if tail > 0 else []
        summaries = db.execute(_SUMMARIES, (session_id,)).fetchall()
    finally:
        db.execute("COMMIT")
    newest.reverse()
    return SessionSnapshot(
        meta=row.meta(),
        messages=_sequence(newest, newest[0][0] if newest else row.next_seq),
        first_seq=row.first_seq,
        next_seq=row.next_seq,
        summaries=[unpack_summary(payload) for (payload,) in summaries],
        incarnation=row.incarnation,
        version=row.version,
    )


def load_messages(db: sqlite3.Connection, session_id: str, start: int, stop: int) -> list[Message]:
    db.execute("BEGIN")
    try:
        found = db.execute(
            "SELECT first_seq FROM sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        rows = db.execute(_RANGE, (session_id, start, stop)).fetchall() if found else []
    finally:
        db.execute("COMMIT")
    return _sequence(rows, max(start, found[0])) if found else []


def _sequence(rows: list[tuple[int, bytes]], start: int) -> list[Message]:
    """Messages from ``(seq, payload)`` rows in order, from ``start``: holes as ``REMOVED``."""
    out: list[Message] = []
    for seq, payload in rows:
        if seq - start > len(out):
            out.extend([REMOVED] * (seq - start - len(out)))
        out.append(unpack_message(payload))
    return out


def list_sessions(
    db: sqlite3.Connection,
    user_id: str | None,
    status: SessionStatus | None,
    limit: int | None,
    updated_before: datetime | None,
) -> list[SessionMetadata]:
    where: list[str] = []
    params: list[Any] = []
    if user_id is not None:
        where.append("user_id = ?")
        params.append(user_id)
    if status is not None:
        # With a user given, "+" keeps the planner on the per-user index.
        where.append("+status = ?" if user_id is not None else "status = ?")
        params.append(SessionStatus(status).value)
    if updated_before is not None:
        where.append("updated_at < ?")
        params.append(updated_before.timestamp())
    sql = f"SELECT {SESSION_COLUMNS} FROM sessions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY updated_at DESC, rowid DESC LIMIT ?"
    params.append(-1 if limit is None else limit)
    return [_row(values).meta() for values in db.execute(sql, params).fetchall()]


def usage_stats(db: sqlite3.Connection) -> dict[str, Any]:
    rows = db.execute(_USAGE).fetchall()
    return {
        "total_sessions": sum(row[1] for row in rows),
        "total_messages": int(sum(row[2] for row in rows)),
        "total_summaries": rows[0][3] if rows else 0,
        "sessions_by_status": {row[0]: row[1] for row in rows},
    }


def delete_sessions(
    db: sqlite3.Connection,
    session_ids: list[str],
    idle_before: datetime | None,
    transaction: Transaction,
) -> int:
    with transaction(db):
        if idle_before is None:
            gone = [(sid,) for sid in session_ids]
        else:
            cutoff = idle_before.timestamp()
            gone = [
                (sid,)
                for (sid,) in db.execute(
                    f"SELECT session_id FROM sessions WHERE session_id IN {_IN_BATCH}"
                    " AND updated_at < ?",
                    (json.dumps(session_ids), cutoff),
                )
            ]
        return _delete_rows(db, gone) if gone else 0


def _delete_rows(db: sqlite3.Connection, rows: list[tuple[str]]) -> int:
    """Delete the given sessions with their messages and summaries; return sessions deleted."""
    db.executemany("DELETE FROM messages WHERE session_id = ?", rows)
    db.executemany("DELETE FROM summaries WHERE session_id = ?", rows)
    deleted = db.executemany("DELETE FROM sessions WHERE session_id = ?", rows).rowcount
    if deleted < 0:
        raise MemoryBackendError("SQLite did not report how many sessions it deleted")
    return int(deleted)
