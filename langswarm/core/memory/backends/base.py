"""The storage backend interface.

A backend stores sessions, their messages (addressed by a per-session sequence number) and
their summaries. It never sees single appends: the flusher hands it batches of
:class:`SessionWrite`, one per session, and the backend applies each batch atomically.
Backends raise only :mod:`langswarm.core.memory.exceptions` errors: driver errors are
mapped at this boundary (those worth retrying to ``TransientBackendError``). Backends never
retry: the runtime does, with one policy (``RetryingBackend`` for reads, the flusher for
batches).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..interfaces import ConversationSummary, Message, SessionMetadata, SessionStatus

__all__ = ["Backend", "SessionSnapshot", "SessionWrite"]


@dataclass(slots=True)
class SessionWrite:
    """Everything one batch changes in one session.

    Applied in this order: when ``delete`` is set, everything stored for the session is removed
    first; then ``meta`` is upserted (``None`` leaves it unchanged); then ``messages`` are stored
    at sequence numbers ``first_seq, first_seq + 1, ...``; then messages with a sequence number
    below ``trim_before`` are removed; then ``summaries`` are stored (replacing any with the
    same ``summary_id``).
    """

    session_id: str
    meta: SessionMetadata | None = None
    messages: list[Message] = field(default_factory=list)
    first_seq: int = 0
    trim_before: int | None = None
    summaries: list[ConversationSummary] = field(default_factory=list)
    delete: bool = False


@dataclass(slots=True)
class SessionSnapshot:
    """A session as loaded from storage: metadata, the newest messages and all summaries.

    ``messages`` holds sequence numbers ``next_seq - len(messages)`` up to ``next_seq``;
    ``first_seq`` is the lowest sequence number still stored (older ones were trimmed).
    """

    meta: SessionMetadata
    messages: list[Message]
    first_seq: int
    next_seq: int
    summaries: list[ConversationSummary]


class Backend(Protocol):
    """What the runtime needs from storage."""

    #: Short name used in stats and errors ("memory", "sqlite", "redis").
    name: str
    #: Whether data outlives the process; decides the default durability mode.
    persistent: bool
    #: Seconds after which storage expires an untouched session by itself (``None``: never).
    ttl_seconds: float | None

    def preflight(self) -> None:
        """Check, synchronously and quickly, that storage is reachable (``initialize_memory``
        runs it so that a bad address fails at once); raise ``MemoryConnectionError``."""

    async def open(self) -> None:
        """Connect and prepare storage (create schema, check versions)."""

    async def close(self) -> None:
        """Release connections. Idempotent."""

    def apply(self, batch: Sequence[SessionWrite]) -> Awaitable[None]:
        """Apply ``batch`` atomically (all of it or, on error, none of it).

        Persistent backends store every message with its token count, counting (on their
        own thread) those that arrive without one.

        A backend that stores from another thread starts at the call, so the flusher can
        start one batch before it resumes the writers of the last; awaiting gives the outcome.
        """

    async def load_session(self, session_id: str, *, tail: int) -> SessionSnapshot | None:
        """Load a session with at most ``tail`` of its newest messages; ``None`` if absent."""

    async def load_messages(self, session_id: str, *, start: int, stop: int) -> list[Message]:
        """Stored messages with ``start <= seq < stop``, oldest first."""

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

    async def delete_sessions(self, session_ids: Sequence[str]) -> int:
        """Delete sessions with all their data; return how many existed."""
