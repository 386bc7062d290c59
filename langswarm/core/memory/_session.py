"""``MemorySession``: the caller's handle on one session, and ``MemorySessionContext``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from .actors import commands as c
from .actors.flusher import Generation
from .actors.mailbox import ActorStopped, Reply
from .actors.session import SessionActor
from .exceptions import MemoryValidationError, SessionNotFoundError
from .interfaces import (
    ConversationSummary,
    Durability,
    Message,
    MessageRole,
    SessionMetadata,
    SummaryType,
)

if TYPE_CHECKING:
    from ._manager import MemoryManager

__all__ = ["MemorySession", "MemorySessionContext"]

_checkpoint = anyio.lowlevel.checkpoint_if_cancelled


def _local(value: datetime) -> datetime:
    """Stored timestamps are naive local time; compare aware inputs in that frame."""
    if value.tzinfo is not None:
        return value.astimezone().replace(tzinfo=None)
    return value


class MemorySession:
    """A handle on one session. Cheap to hold; every call goes to the session's actor.

    Writes are acknowledged per the session's durability: ``committed`` returns once the
    write is stored, ``buffered`` once the actor has it. A caller cancelled while waiting
    for a commit does not undo the write.
    """

    __slots__ = ("_actor", "_durability", "_manager", "_meta", "_session_id")

    def __init__(
        self,
        manager: MemoryManager,
        actor: SessionActor,
        durability: Durability,
    ) -> None:
        self._manager = manager
        self._actor = actor
        self._session_id = actor.session_id
        self._durability = durability
        self._meta = actor.meta

    def __repr__(self) -> str:
        return f"<MemorySession {self._session_id!r} user={self._meta.user_id!r}>"

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def metadata(self) -> SessionMetadata:
        """A snapshot of the session's metadata as of the latest call."""
        actor = self._actor
        if not actor.stopped:
            self._meta = actor.meta
        return self._meta.copy()

    @property
    def durability(self) -> Durability:
        return self._durability

    # -- plumbing -------------------------------------------------------------------------

    async def _call(self, command: c.Command) -> Any:
        actor = self._actor
        if actor.stopped:
            actor = await self._reactivate()
        try:
            return await actor.call(command)
        except ActorStopped:
            actor = await self._reactivate()
            return await actor.call(command)

    async def _reactivate(self) -> SessionActor:
        if self._actor.deleted:
            raise SessionNotFoundError(f"session {self._session_id} was deleted")
        actor = await self._manager._activate(self._session_id)
        if actor is None:
            raise SessionNotFoundError(f"session {self._session_id} no longer exists")
        self._actor = actor
        return actor

    async def _settle(self, generation: Generation | None) -> None:
        """Acknowledge per durability: wait for the commit, or just let cancellation in."""
        if generation is not None and self._durability is Durability.COMMITTED:
            await generation.wait(self._session_id)
        else:
            await _checkpoint()

    # -- writes ---------------------------------------------------------------------------

    async def add_message(self, message: Message) -> Message:
        """Append one message; returns it (with its id and timestamp)."""
        if message.__class__ is not Message:
            raise MemoryValidationError(
                f"add_message expects a Message (see create_openai_message), "
                f"not {type(message).__name__}"
            )
        actor = self._actor
        generation = actor.try_direct(c.Append((message,)))
        if generation.__class__ is not Generation:
            generation = await self._call(c.Append((message,)))
        await self._settle(generation)
        return message

    async def add_messages(self, messages: Iterable[Message]) -> list[Message]:
        """Append several messages as one unit: all stored, in order, or none."""
        batch = list(messages)
        for message in batch:
            if message.__class__ is not Message:
                raise MemoryValidationError(
                    f"add_messages expects Message objects, not {type(message).__name__}"
                )
        if not batch:
            return batch
        await self._settle(await self._call(c.Append(batch)))
        return batch

    async def update_metadata(self, updates: dict[str, Any]) -> None:
        """Change settings (``max_messages``, ``max_tokens``, ``auto_summarize_threshold``)
        and merge every other key into the application's ``metadata``."""
        await self._settle(await self._call(c.UpdateMeta(dict(updates))))

    async def archive_session(self) -> None:
        """Mark the conversation finished: it stays readable and accepts no new messages."""
        await self._settle(await self._call(c.Archive()))

    async def delete_session(self) -> None:
        """Delete the session and everything in it, permanently."""
        generation = await self._call(c.Delete())
        if self._durability is Durability.COMMITTED:
            await generation.wait(self._session_id)

    # -- reads ----------------------------------------------------------------------------

    async def get_messages(
        self,
        limit: int | None = None,
        since: datetime | None = None,
        roles: Sequence[MessageRole | str] | None = None,
    ) -> list[Message]:
        """Messages in order, optionally only the newest ``limit``, those at or after
        ``since``, and those with one of ``roles``."""
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise MemoryValidationError("limit must be an int or None")
        if since is not None:
            if not isinstance(since, datetime):
                raise MemoryValidationError("since must be a datetime")
            since = _local(since)
        role_set: frozenset[MessageRole] | None = None
        if roles is not None:
            if isinstance(roles, str | MessageRole):
                roles = [roles]
            try:
                role_set = frozenset(MessageRole(r) for r in roles)
            except ValueError as exc:
                raise MemoryValidationError(f"unknown role in roles: {exc}") from None
        result: list[Message] = await self._call(c.GetMessages(limit, since, role_set))
        return result

    async def get_conversation_context(
        self, max_tokens: int | None = None, include_summaries: bool = False
    ) -> list[Message]:
        """The newest messages that fit ``max_tokens`` (default: the session's ``max_tokens``),
        oldest first; tool calls stay with their results. With ``include_summaries``, the
        latest summary leads as a system message and only messages after it follow."""
        actor = self._actor
        command = c.Context(max_tokens, include_summaries)
        result = actor.try_direct(command)
        if result.__class__ is not list:
            result = await self._call(command)
        else:
            await _checkpoint()
        return result  # type: ignore[no-any-return]

    async def get_recent_messages(self, token_limit: int) -> list[Message]:
        """The newest messages within ``token_limit`` tokens, oldest first."""
        return await self.get_conversation_context(max_tokens=token_limit)

    async def get_summaries(self) -> list[ConversationSummary]:
        """Every summary of this session, oldest first (after any summary in progress)."""
        result = await self._call(c.GetSummaries())
        if isinstance(result, Reply):
            result = await result.wait()
        assert isinstance(result, list)
        return result

    async def create_summary(
        self, summary_type: SummaryType = SummaryType.MANUAL
    ) -> ConversationSummary:
        """Summarise everything not yet summarised, now, and return the summary."""
        reply: Reply = await self._call(c.CreateSummary(SummaryType(summary_type)))
        summary, generation = await reply.wait()
        await self._settle(generation)
        assert isinstance(summary, ConversationSummary)
        return summary

    async def flush(self) -> None:
        """Wait until everything written so far is stored."""
        await self._manager._flush()


class MemorySessionContext:
    """``async with`` a session: opens (or creates) it, and on exit makes sure every write
    made inside the block is stored.

    Without ``session_id`` a new session is created; with one, it is reused if it exists.
    """

    def __init__(
        self,
        user_id: str,
        session_id: str | None = None,
        *,
        manager: MemoryManager | None = None,
        **options: Any,
    ) -> None:
        self.user_id = user_id
        self.session_id = session_id
        self._manager = manager
        self._options = options
        self.session: MemorySession | None = None

    async def __aenter__(self) -> MemorySession:
        from ._manager import get_global_memory_manager

        manager = self._manager or get_global_memory_manager()
        if self.session_id is None:
            self.session = await manager.create_session(self.user_id, **self._options)
        else:
            self.session = await manager.get_or_create_session(
                self.user_id, self.session_id, **self._options
            )
        return self.session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.session is not None:
            with anyio.CancelScope(shield=exc_type is not None):
                await self.session.flush()
