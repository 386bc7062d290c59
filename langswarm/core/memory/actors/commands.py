"""The closed set of commands a session actor understands, each typed by its result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, TypeVar

from ..interfaces import (
    ConversationSummary,
    Message,
    MessageRole,
    SessionMetadata,
    SummaryType,
)
from .flusher import Commit
from .mailbox import Reply

__all__ = [
    "LATER",
    "Append",
    "Read",
    "Refresh",
    "Archive",
    "Clear",
    "Command",
    "Context",
    "CreateSummary",
    "Delete",
    "DeleteMessage",
    "ForkPoint",
    "ForkSeed",
    "GetMessages",
    "Pop",
    "GetSummaries",
    "SummaryDone",
    "UpdateMeta",
]

R_co = TypeVar("R_co", covariant=True)


class Command(Generic[R_co]):
    """A request to a session actor whose answer is an ``R_co``."""

    __slots__ = ()


class Later:
    """What a synchronous handler answers when its command must wait for the actor's task."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LATER"


LATER: Final = Later()


class Read:
    """Marks a command that reads the session: on a store other processes share, the actor
    first checks that what it holds is current."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Append(Command[Commit]):
    """Add messages at the end, as one unit; answered with the batch that will store them.

    ``held``: the caller is acknowledged before the batch is stored (``buffered``).
    """

    messages: Sequence[Message]
    held: bool = False


@dataclass(frozen=True, slots=True)
class GetMessages(Read, Command[list[Message]]):
    """``settled``: only messages already stored (a ``committed`` reader does not see other
    callers' writes that may still fail)."""

    limit: int | None = None
    since: datetime | None = None
    roles: frozenset[MessageRole] | None = None
    settled: bool = False


@dataclass(frozen=True, slots=True)
class Context(Read, Command[list[Message]]):
    """A budgeted window: newest messages first, tool calls kept with their results."""

    max_tokens: int | None
    include_summaries: bool = False
    settled: bool = False


@dataclass(frozen=True, slots=True)
class UpdateMeta(Command[Commit]):
    """Change the session's settings and merge the rest into its application metadata."""

    config: dict[str, int | None]
    custom: dict[str, Any]
    held: bool = False


@dataclass(frozen=True, slots=True)
class Archive(Command[Commit]):
    held: bool = False


@dataclass(frozen=True, slots=True)
class Delete(Command[Commit]):
    pass


@dataclass(frozen=True, slots=True)
class GetSummaries(Read, Command[Reply[list[ConversationSummary]]]):
    """The summaries, once any summary being made has landed."""


@dataclass(frozen=True, slots=True)
class CreateSummary(Read, Command[Reply[ConversationSummary]]):
    """Summarise everything so far (after a summary in progress, if any); answered once the
    summary is stored."""

    summary_type: SummaryType = SummaryType.MANUAL


@dataclass(frozen=True, slots=True)
class Refresh(Command[None]):
    """Internal: reload the state from storage (another process changed the session, or a
    write of ours failed)."""


@dataclass(frozen=True, slots=True)
class SummaryDone(Command[None]):
    """Internal: a summary task finished; ``summary`` is what it stored (``None``: nothing,
    because it failed or another process summarised first). ``ours``: made here, rather
    than another process's that already covered the same messages."""

    summary: ConversationSummary | None
    error: BaseException | None
    ours: bool = True


@dataclass(frozen=True, slots=True)
class Pop(Command["Message | None"]):
    """Remove and return the newest message (if ``check`` passes it)."""

    check: Callable[[Message], Any] | None = None


@dataclass(frozen=True, slots=True)
class DeleteMessage(Command[list[Message]]):
    """Remove a message with the rest of its tool exchange; answered with what went."""

    message_id: str


@dataclass(frozen=True, slots=True)
class Clear(Command[None]):
    """Drop every message and summary; the session and its metadata stay."""


@dataclass(frozen=True, slots=True)
class ForkSeed:
    """What a fork starts from: the source's first sequence number, its messages up to the
    fork point, the latest summary within them, and its metadata."""

    start_seq: int
    messages: list[Message]
    summary: ConversationSummary | None
    meta: SessionMetadata


@dataclass(frozen=True, slots=True)
class ForkPoint(Read, Command[ForkSeed]):
    """The history up to message ``at`` (all of it for ``None``), for a fork."""

    at: str | None = None
