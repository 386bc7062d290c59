"""The SQLite table layout, its version (``PRAGMA user_version``) and upgrades from older ones.

``sessions`` has one row per session: every field the runtime and its readers use, as
columns (the application's metadata as a JSON object), so the file reads plainly with any
SQLite client. ``messages`` keeps rows in arrival order, found through a ``(session_id, seq)``
index (a batch over many sessions appends to the table instead of dirtying a page per
session) and a ``(session_id, message_id)`` index (a message is stored once per session).
"""

from __future__ import annotations

import json
import os
import sqlite3

import msgpack

from ..exceptions import MemoryBackendError
from ._codec import unpack_meta

__all__ = ["SCHEMA_VERSION", "SESSION_COLUMNS", "prepare"]

SCHEMA_VERSION = 4
#: WAL pages between automatic checkpoints (SQLite's default is 1,000). Concurrent sessions
#: dirty many index pages per batch; checkpointing less often writes each page back once
#: for several batches.
WAL_AUTOCHECKPOINT = 4000

SESSION_COLUMNS = (
    "session_id, user_id, incarnation, version, status, created_at, updated_at, expires_at, "
    "max_messages, max_tokens, auto_summarize_threshold, custom, first_seq, next_seq, "
    "message_count, summary_id, summary_end, claim, claim_until, writer, writer_since, "
    "cleared_at, edited"
)

_SESSIONS = """CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    incarnation TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    expires_at REAL,
    max_messages INTEGER,
    max_tokens INTEGER,
    auto_summarize_threshold INTEGER,
    custom TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,
    message_count INTEGER NOT NULL,
    summary_id TEXT NOT NULL,
    summary_end INTEGER NOT NULL,
    claim INTEGER NOT NULL,
    claim_until REAL NOT NULL,
    writer TEXT NOT NULL,
    writer_since INTEGER NOT NULL,
    cleared_at INTEGER NOT NULL DEFAULT 0,
    edited INTEGER NOT NULL DEFAULT 0
)"""

_SCHEMA = (
    _SESSIONS,
    "CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id, updated_at)",
    "CREATE INDEX IF NOT EXISTS sessions_status ON sessions (status)",
    "CREATE INDEX IF NOT EXISTS sessions_updated ON sessions (updated_at)",
    "CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires_at)",
    """CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        payload BLOB NOT NULL
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_session ON messages (session_id, seq)",
    "CREATE INDEX IF NOT EXISTS messages_id ON messages (session_id, message_id)",
    """CREATE TABLE IF NOT EXISTS summaries (
        session_id TEXT NOT NULL,
        summary_id TEXT NOT NULL,
        covers_through INTEGER NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (session_id, summary_id)
    )""",
)

# Version 1 kept messages in a WITHOUT ROWID table keyed by (session_id, seq).
_FROM_1 = (
    "ALTER TABLE messages RENAME TO messages_v1",
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, seq INTEGER NOT NULL,
        payload BLOB NOT NULL
    )""",
    "INSERT INTO messages (session_id, seq, payload)"
    " SELECT session_id, seq, payload FROM messages_v1 ORDER BY session_id, seq",
    "DROP TABLE messages_v1",
    "DROP INDEX IF EXISTS messages_session",
)


def prepare(db: sqlite3.Connection, path: str, persistent: bool, pragmas: dict[str, str]) -> None:
    """Set pragmas, then create or upgrade the schema in one transaction, which also proves
    the file is writable."""
    if persistent:
        for name, value in pragmas.items():
            db.execute(f"PRAGMA {name} = {value}")
        db.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
    db.execute("BEGIN IMMEDIATE")
    try:
        ((version,),) = db.execute("PRAGMA user_version").fetchall()
        if version > SCHEMA_VERSION:
            raise MemoryBackendError(
                f"SQLite database {path} has schema version {version}; this release reads "
                f"version {SCHEMA_VERSION} at most"
            )
        if version == 1:
            for statement in _FROM_1:
                db.execute(statement)
        if version in (1, 2):
            _from_2(db)
        if version == 3:  # version 3 had no cleared_at and edited
            db.execute("ALTER TABLE sessions ADD COLUMN cleared_at INTEGER NOT NULL DEFAULT 0")
            db.execute("ALTER TABLE sessions ADD COLUMN edited INTEGER NOT NULL DEFAULT 0")
        for statement in _SCHEMA:
            db.execute(statement)
        # Written even when unchanged: a read-only file fails here, not at the first batch.
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _from_2(db: sqlite3.Connection) -> None:
    """Version 2 packed session metadata in a msgpack blob, and messages had no id column."""
    db.execute("ALTER TABLE sessions RENAME TO sessions_v2")
    db.execute("DROP INDEX IF EXISTS sessions_user")
    db.execute("DROP INDEX IF EXISTS sessions_status")
    db.execute("DROP INDEX IF EXISTS sessions_updated")
    db.execute("DROP INDEX IF EXISTS sessions_expires")
    db.execute(_SESSIONS)
    latest = dict(
        db.execute(
            "SELECT session_id, MAX(covers_through) FROM summaries GROUP BY session_id"
        ).fetchall()
    )
    for sid, first, nxt, blob in db.execute(
        "SELECT session_id, first_seq, next_seq, meta FROM sessions_v2"
    ).fetchall():
        meta = unpack_meta(blob)
        end = latest.get(sid)
        summary = db.execute(
            "SELECT summary_id FROM summaries WHERE session_id = ? AND covers_through = ?",
            (sid, end),
        ).fetchone()
        db.execute(
            f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES "
            "(?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, '', 0, 0, 0)",
            (
                sid,
                meta.user_id,
                os.urandom(8).hex(),
                meta.status.value,
                meta.created_at.timestamp(),
                meta.updated_at.timestamp(),
                None if meta.expires_at is None else meta.expires_at.timestamp(),
                meta.max_messages,
                meta.max_tokens,
                meta.auto_summarize_threshold,
                json.dumps(meta.metadata),
                first,
                nxt,
                nxt - first,
                "" if summary is None else summary[0],
                end or 0,
            ),
        )
    db.execute("DROP TABLE sessions_v2")
    db.execute("ALTER TABLE messages ADD COLUMN message_id TEXT NOT NULL DEFAULT ''")
    rows = db.execute("SELECT id, payload FROM messages").fetchall()
    db.executemany(
        "UPDATE messages SET message_id = ? WHERE id = ?",
        [(str(msgpack.unpackb(payload, raw=False)[4]), rowid) for rowid, payload in rows],
    )
