"""The closed set of commands a session actor understands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..interfaces import ConversationSummary, Message, MessageRole, SummaryType

__all__ = [
    "Append",
    "Archive",
    "Command",
    "Context",
    "CreateSummary",
    "Crash",
    "Delete",
    "GetMessages",
    "GetSummaries",
    "Snapshot",
    "Stop",
    "SummaryDone",
    "UpdateMeta",
]


@dataclass(frozen=True, slots=True)
class Append:
    messages: Sequence[Message]


@dataclass(frozen=True, slots=True)
class GetMessages:
    limit: int | None = None
    since: datetime | None = None
    roles: frozenset[MessageRole] | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """A budgeted window: newest messages first, tool calls kept with their results."""

    max_tokens: int | None
    include_summaries: bool = False


@dataclass(frozen=True, slots=True)
class UpdateMeta:
    updates: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Archive:
    pass


@dataclass(frozen=True, slots=True)
class Delete:
    pass


@dataclass(frozen=True, slots=True)
class GetSummaries:
    pass


@dataclass(frozen=True, slots=True)
class CreateSummary:
    summary_type: SummaryType = SummaryType.MANUAL


@dataclass(frozen=True, slots=True)
class Snapshot:
    pass


@dataclass(frozen=True, slots=True)
class Stop:
    """Passivate: finish queued commands, then stop."""


@dataclass(frozen=True, slots=True)
class Crash:
    """Break the actor's invariants on purpose (supervision tests and drills)."""


@dataclass(frozen=True, slots=True)
class SummaryDone:
    """Internal: a summary task finished (``summary`` is ``None`` when it failed)."""

    summary: ConversationSummary | None
    error: BaseException | None
    trigger_seq: int


Command = (
    Append
    | GetMessages
    | Context
    | UpdateMeta
    | Archive
    | Delete
    | GetSummaries
    | CreateSummary
    | Snapshot
    | Stop
    | Crash
    | SummaryDone
)
