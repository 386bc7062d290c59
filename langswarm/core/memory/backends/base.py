"""The storage backend interface.

Storage, not any process's cache, decides a session's order, ownership and lifecycle, so that
several processes can share one store. Each session has an *incarnation* (a token drawn when
it is created: a deleted and re-created session is another incarnation) and a *version*, which
every change increments. Writes name the incarnation they were built on and are refused for
any other; readers compare versions to know whether what they hold is current.

The flusher hands a backend batches of :class:`SessionWrite`, one per session; a backend
applies each session's write atomically and reports a :class:`WriteResult` for each. One
session's refusal or failure never fails the others of its batch. Backends raise only
:mod:`langswarm.core.memory.exceptions` errors (those worth retrying as
``TransientBackendError``) and never retry: the runtime does, with one policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from ..exceptions import MemoryError
from ..interfaces import (
    ConversationSummary,
    Message,
    MessageRole,
    SessionMetadata,
    SessionStatus,
)

__all__ = [
    "REMOVED",
    "Backend",
    "SessionSnapshot",
    "SessionState",
    "SessionWrite",
    "WriteResult",
    "live",
]


@dataclass(slots=True)
class SessionWrite:
    """What one batch changes in one session. The store applies it in this order:

    1. ``delete``: remove the session if it is ``incarnation`` (``"*"``: whatever is stored;
       another incarnation is refused, as its session is gone already);
    2. ``create``: store ``create`` (its ``incarnation``) if the session is absent; if present,
       refuse an ``exclusive`` create (unless the stored one is this incarnation: a retry of
       it), or one by another owner;
    3. the rest applies only to ``incarnation`` (refused for any other, or none) and, with
       ``expect_version``, only while the version is that one (else ``conflict``):
       ``clear`` drops every message and summary (numbering carries on);
       ``messages`` are appended at the end, each at most once per session (an id already
       stored is skipped); ``remove`` takes out the messages with those ids (each must be
       stored), leaving a hole in the numbering, except at the end, where the numbering
       shrinks back to the newest message left; summaries covering a removed message go
       (refused if that would leave trimmed messages in no summary); messages, removals and
       clears are refused while the session is archived; ``settings`` (the
       ``max_*``/``auto_summarize_threshold`` fields), ``custom`` (merged key by key),
       ``status`` and ``touched`` (the new ``updated_at``) are set; ``summary`` is stored if
       it folds in the latest stored summary (``summary_base``, ``""`` for none), covers more,
       and was made from messages read at version ``summary_seen`` or later than the latest
       removal or clear;
       messages below ``trim_before`` go, but never one the latest summary does not cover,
       and only if every change since version ``trim_base`` came from this ``writer`` (whose
       view of the session the cut was checked against); ``claim`` claims the automatic
       summary of that trigger point for ``claim_seconds``.

    A created session numbers its messages from ``start_seq`` (a fork keeps its source's
    numbers). A write with nothing but an incarnation only reports the session's state (a
    probe).
    """

    session_id: str
    incarnation: str = ""
    writer: str = ""
    delete: bool = False
    create: SessionMetadata | None = None
    exclusive: bool = False
    start_seq: int = 0
    expect_version: int | None = None
    clear: bool = False
    messages: list[Message] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    settings: dict[str, int | None] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    status: SessionStatus | None = None
    touched: datetime | None = None
    summary: ConversationSummary | None = None
    summary_base: str = ""
    summary_seen: int = 0
    trim_before: int | None = None
    trim_base: int = 0
    claim: int | None = None
    claim_seconds: float = 300.0

    def drop_changes(self) -> None:
        """Forget every change but a delete or create (when the session goes anyway)."""
        self.messages, self.remove, self.clear = [], [], False
        self.settings, self.custom = {}, {}
        self.status = self.touched = self.summary = None
        self.trim_before = self.claim = None


#: Stands in, in loaded message lists, for a removed message (a hole in the numbering), so
#: that position still gives sequence number; readers leave it out (see :func:`live`).
REMOVED: Final = Message(MessageRole.SYSTEM, "", message_id="removed", token_count=0)
# An id no caller can give (ids with NUL are refused), so no stored message is taken for it.
object.__setattr__(REMOVED, "message_id", "\0removed")


def live(messages: Sequence[Message]) -> list[Message]:
    """``messages`` without the holes of removed ones."""
    return [m for m in messages if m is not REMOVED]


@dataclass(frozen=True, slots=True)
class SessionState:
    """What the store holds for a session, as of one operation."""

    incarnation: str | None  # None: no such session
    owner: str | None
    version: int
    first_seq: int
    next_seq: int


ABSENT = SessionState(None, None, 0, 0, 0)


@dataclass(slots=True)
class WriteResult:
    """How a :class:`SessionWrite` went; ``state`` is the session after it.

    ``error`` says why the write was refused or failed (nothing of it was stored);
    ``conflict`` that ``expect_version`` did not hold (nothing stored, no error).
    """

    state: SessionState
    version_before: int = 0
    appended_at: int | None = None  # sequence number of the first message stored
    created: bool = False
    summary_stored: bool = False
    claimed: bool = False
    conflict: bool = False
    error: MemoryError | None = None


@dataclass(slots=True)
class SessionSnapshot:
    """A session as loaded from storage: metadata, the newest messages and all summaries.

    ``messages`` are the newest stored ones, oldest first, the last of them at
    ``next_seq - 1`` (holes of removed messages as :data:`REMOVED`); ``first_seq`` is the
    lowest sequence number still stored.
    """

    meta: SessionMetadata
    messages: list[Message]
    first_seq: int
    next_seq: int
    summaries: list[ConversationSummary]
    incarnation: str = ""
    version: int = 0


class Backend(Protocol):
    """What the runtime needs from storage."""

    #: Short name used in stats and errors ("memory", "sqlite", "redis").
    name: str
    #: Whether data outlives the process; decides the default durability mode.
    persistent: bool
    #: Whether other processes can reach the same data (then reads check what they hold).
    shared: bool
    #: Seconds after which storage expires an untouched session by itself (``None``: never).
    ttl_seconds: float | None

    def preflight(self) -> None:
        """Check, synchronously and quickly, that storage is reachable (``initialize_memory``
        runs it so that a bad address fails at once); raise ``MemoryConnectionError``."""

    async def open(self) -> None:
        """Connect and prepare storage (create schema, check versions)."""

    async def close(self) -> None:
        """Release connections. Idempotent."""

    def apply(self, batch: Sequence[SessionWrite]) -> Awaitable[list[WriteResult]]:
        """Apply each write of ``batch`` atomically; one result per write, in order.

        Persistent backends store every message with its token count, counting (on their
        own thread) those that arrive without one. A backend that stores from another thread
        starts at the call, so the flusher can start one batch before it resumes the writers
        of the last; awaiting gives the outcome.
        """

    async def load_session(self, session_id: str, *, tail: int) -> SessionSnapshot | None:
        """Load a session with at most ``tail`` of its newest messages; ``None`` if absent."""

    async def load_messages(self, session_id: str, *, start: int, stop: int) -> list[Message]:
        """Stored messages with ``start <= seq < stop``, oldest first: from ``start`` (at
        least the first stored) to the newest found, holes as :data:`REMOVED`."""

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int | None = 100,
        updated_before: datetime | None = None,
    ) -> list[SessionMetadata]:
        """Sessions matching every given filter, most recently updated first."""

    async def get_usage_stats(self) -> dict[str, Any]:
        """At least ``total_sessions``, ``total_messages``, ``total_summaries`` and
        ``storage_size_mb`` (``None`` where the backend cannot tell)."""

    async def delete_sessions(
        self, session_ids: Sequence[str], *, idle_before: datetime | None = None
    ) -> int:
        """Delete sessions with all their data; return how many were deleted. With
        ``idle_before``, only those not updated since then (checked as each is deleted)."""
