"""``MemorySession``: the caller's handle on one session."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from ._validate import check_id, check_limit, check_plain
from .actors import commands as c
from .actors.flusher import Commit
from .actors.mailbox import ActorStopped
from .actors.session import Phase, SessionActor
from .exceptions import MemoryValidationError, SessionNotFoundError
from .interfaces import (
    ConversationSummary,
    Durability,
    Message,
    MessageRole,
    SessionMetadata,
    SummaryType,
)

__all__ = ["MemorySession", "SessionDirectory"]

R = TypeVar("R")

#: Metadata keys that are session settings rather than the application's own.
CONFIG_KEYS = frozenset({"max_messages", "max_tokens", "auto_summarize_threshold"})


class SessionDirectory(Protocol):
    """Where a handle finds its session's actor again (after passivation, say)."""

    async def activate(self, session_id: str) -> SessionActor | None:
        """The live actor of ``session_id``, or ``None`` if the session does not exist."""

    async def flush(self) -> None:
        """Return once every write made so far is stored."""

    async def fork(
        self, source: MemorySession, seed: c.ForkSeed, new_session_id: str, user_id: str | None
    ) -> MemorySession:
        """Create ``new_session_id`` from ``seed`` (read from ``source``)."""


def _local(value: datetime) -> datetime:
    """Stored timestamps are naive local time; compare aware inputs in that frame."""
    if value.tzinfo is not None:
        return value.astimezone().replace(tzinfo=None)
    return value


def _messages(messages: Iterable[object], call: str) -> list[Message]:
    batch = list(messages)
    for message in batch:
        if message.__class__ is not Message:
            raise MemoryValidationError(
                f"{call} expects Message objects (see create_openai_message), "
                f"not {type(message).__name__}"
            )
    return batch  # type: ignore[return-value]


class MemorySession:
    """A handle on one session. Cheap to hold; every call goes to the session's actor.

    Writes are acknowledged per the session's durability: ``committed`` returns once the
    write is stored, ``buffered`` once the actor has it. A caller cancelled while waiting
    for a commit does not undo the write.
    """

    __slots__ = ("_actor", "_directory", "_durability", "_meta", "_session_id")

    def __init__(
        self, directory: SessionDirectory, actor: SessionActor, durability: Durability
    ) -> None:
        self._directory = directory
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
        if actor.phase is not Phase.STOPPED:
            self._meta = actor.meta
        return self._meta.copy()

    @property
    def durability(self) -> Durability:
        return self._durability

    # -- plumbing -------------------------------------------------------------------------

    async def _ask(self, command: c.Command[R]) -> R:
        actor = self._actor
        if actor.phase is Phase.STOPPED:
            actor = await self._reactivate()
        try:
            return await actor.ask(command)
        except ActorStopped:
            return await (await self._reactivate()).ask(command)

    async def _reactivate(self) -> SessionActor:
        if self._actor.phase is Phase.DELETED:
            raise SessionNotFoundError(f"session {self._session_id} was deleted")
        actor = await self._directory.activate(self._session_id)
        if actor is None:
            raise SessionNotFoundError(f"session {self._session_id} no longer exists")
        self._actor = actor
        return actor

    @property
    def _held(self) -> bool:
        """Whether writes are acknowledged before they are stored (``buffered``)."""
        return self._durability is Durability.BUFFERED

    async def _settle(self, commit: Commit) -> None:
        """Acknowledge per durability: in ``committed`` mode, wait for the commit."""
        if self._durability is Durability.COMMITTED:
            actor = self._actor
            await commit.wait(actor.key)

    # -- writes ---------------------------------------------------------------------------

    async def add_message(self, message: Message) -> Message:
        """Append one message; returns it (with its id and timestamp)."""
        if message.__class__ is not Message:
            raise MemoryValidationError(
                f"add_message expects a Message (see create_openai_message), "
                f"not {type(message).__name__}"
            )
        await self._settle(await self._ask(c.Append((message,), self._held)))
        return message

    async def add_messages(self, messages: Iterable[Message]) -> list[Message]:
        """Append several messages as one unit: all stored, in order, or none."""
        batch = _messages(messages, "add_messages")
        if batch:
            await self._settle(await self._ask(c.Append(batch, self._held)))
        return batch

    async def update_metadata(self, updates: dict[str, Any]) -> None:
        """Change settings (``max_messages``, ``max_tokens``, ``auto_summarize_threshold``)
        and merge every other key into the application's ``metadata``."""
        if not isinstance(updates, dict):
            raise MemoryValidationError(
                f"update_metadata expects a dict, not {type(updates).__name__}"
            )
        config = {key: check_limit(key, updates[key]) for key in CONFIG_KEYS & updates.keys()}
        custom = {k: v for k, v in updates.items() if k not in CONFIG_KEYS}
        check_plain(custom, "metadata")
        await self._settle(await self._ask(c.UpdateMeta(config, custom, self._held)))

    async def archive_session(self) -> None:
        """Mark the conversation finished: it stays readable and accepts no new messages."""
        await self._settle(await self._ask(c.Archive(self._held)))

    async def delete_session(self) -> None:
        """Delete the session and everything in it, permanently."""
        await self._settle(await self._ask(c.Delete()))

    # -- editing --------------------------------------------------------------------------
    # Edits are decided against what storage holds and return once stored, whatever the
    # session's durability: each is one write, refused and decided again if another process
    # changed the session in between.

    async def pop_message(
        self, *, check: Callable[[Message], bool | Awaitable[bool]] | None = None
    ) -> Message | None:
        """Remove and return the newest message (``None`` if there is none). With ``check``,
        only if ``check(message)`` is true (else ``None``, and nothing changes): decided and
        removed as one step, so no other writer's message is removed by mistake.

        The newest message goes alone: popping a tool result leaves its call waiting for
        one, as it was before the result came."""
        if check is not None and not callable(check):
            raise MemoryValidationError("check must be callable")
        return await self._ask(c.Pop(check))

    async def delete_message(self, message_id: str) -> list[Message]:
        """Remove one message, anywhere in the history, with the rest of its tool exchange (a
        call goes with all its results, a result with its call and the call's other
        results); return what was removed, oldest first. ``MessageNotFoundError`` if the
        session holds no such message. Summaries that cover a removed message are dropped
        (later summaries are made without it)."""
        check_id("message_id", message_id)
        return await self._ask(c.DeleteMessage(message_id))

    async def clear(self) -> None:
        """Drop every message and summary; the session, its settings and metadata stay."""
        await self._ask(c.Clear())

    async def fork(
        self, new_session_id: str, *, at: str | None = None, user_id: str | None = None
    ) -> MemorySession:
        """A new session holding this one's history up to message ``at`` (all of it for
        ``None``), with its settings, metadata and latest summary, owned by ``user_id``
        (default: this session's owner). Refused if ``at`` would separate a tool call from
        its result."""
        check_id("session_id", new_session_id)
        if at is not None:
            check_id("at", at)
        seed = await self._ask(c.ForkPoint(at))
        return await self._directory.fork(self, seed, new_session_id, user_id)

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
        settled = self._durability is Durability.COMMITTED
        return await self._ask(c.GetMessages(limit, since, role_set, settled))

    async def get_conversation_context(
        self, max_tokens: int | None = None, include_summaries: bool = False
    ) -> list[Message]:
        """The newest messages that fit ``max_tokens`` (default: the session's ``max_tokens``),
        oldest first; tool calls stay with their results. With ``include_summaries``, the
        latest summary leads as a system message and only messages after it follow."""
        settled = self._durability is Durability.COMMITTED
        return await self._ask(c.Context(max_tokens, include_summaries, settled))

    async def get_recent_messages(self, token_limit: int) -> list[Message]:
        """The newest messages within ``token_limit`` tokens, oldest first."""
        return await self.get_conversation_context(max_tokens=token_limit)

    async def get_summaries(self) -> list[ConversationSummary]:
        """Every summary of this session, oldest first (after any summary in progress)."""
        reply = await self._ask(c.GetSummaries())
        summaries: list[ConversationSummary] = await reply.wait(
            self._actor.host.settings.call_timeout
        )
        return summaries

    async def create_summary(
        self, summary_type: SummaryType = SummaryType.MANUAL
    ) -> ConversationSummary:
        """Summarise everything not yet summarised, now, and return the summary."""
        reply = await self._ask(c.CreateSummary(SummaryType(summary_type)))
        summary: ConversationSummary = await reply.wait(self._actor.host.settings.call_timeout)
        return summary

    async def flush(self) -> None:
        """Wait until everything written so far is stored."""
        await self._directory.flush()
