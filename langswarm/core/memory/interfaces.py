"""The data model of langswarm memory: messages, sessions, summaries."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from ._content import CALL, PLAIN, RESULT, Kind, kind_of, text_of
from ._frozen import EMPTY, freeze
from ._validate import check_text, member_of
from .exceptions import MemoryValidationError

__all__ = [
    "ContentBlock",
    "ConversationSummary",
    "Durability",
    "Message",
    "MessageContent",
    "MessageRole",
    "SessionMetadata",
    "SessionStatus",
    "Summarizer",
    "SummaryType",
]

ContentBlock = dict[str, Any]
MessageContent = str | list[ContentBlock] | None


class MessageRole(StrEnum):
    """Who wrote a message, in OpenAI chat terms."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    FUNCTION = "function"
    TOOL = "tool"


class SessionStatus(StrEnum):
    """Lifecycle state of a session."""

    ACTIVE = "active"
    ARCHIVED = "archived"
    EXPIRED = "expired"


class SummaryType(StrEnum):
    """What caused a summary to be made."""

    AUTOMATIC = "automatic"
    MANUAL = "manual"


class Durability(StrEnum):
    """When a write is acknowledged.

    ``BUFFERED``: once the session actor has accepted it; the flusher persists it shortly after.
    ``COMMITTED``: once the batch holding it has been committed by the backend.
    """

    BUFFERED = "buffered"
    COMMITTED = "committed"


def _new_id() -> str:
    return os.urandom(12).hex()


#: Roles whose messages answer a tool call (bound once: enum member lookups are slow).
_ANSWERING = frozenset((MessageRole.TOOL, MessageRole.FUNCTION))


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message.

    Messages are immutable once built, down to their content blocks, metadata and tool calls
    (read-only copies of what was passed in), so the runtime shares them between the
    session, the flusher and callers without copying, and what a caller holds is what is
    stored. ``token_count`` is filled in by the runtime the first time a count is needed
    (and then stored with the message).
    """

    role: MessageRole
    content: MessageContent = None
    timestamp: datetime = field(default_factory=datetime.now)
    message_id: str = field(default_factory=_new_id)
    metadata: dict[str, Any] = field(default_factory=dict)
    token_count: int | None = None
    name: str | None = None
    function_call: dict[str, Any] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    #: The Responses-API item this message was built from, kept verbatim so it round-trips
    #: exactly (``None`` for messages built from the chat or Anthropic formats).
    item: dict[str, Any] | None = None
    #: Its part in a tool exchange (derived from the fields above).
    kind: Kind = field(default=PLAIN, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.role.__class__ is not MessageRole:
            object.__setattr__(self, "role", _role(self.role))
        _check_fields(self)
        _freeze_structured(self)
        answers = self.role in _ANSWERING
        asks = bool(self.tool_calls or self.function_call)
        object.__setattr__(self, "kind", kind_of(answers, self.content, asks))

    @property
    def has_tool_calls(self) -> bool:
        """True when this assistant message asks for tools (OpenAI or Anthropic style)."""
        return self.kind is CALL

    @property
    def is_tool_result(self) -> bool:
        """True when this message answers a tool call (OpenAI or Anthropic style)."""
        return self.kind is RESULT

    def text(self) -> str:
        """The message's text, with content blocks flattened."""
        return text_of(self.content)


def _role(value: object) -> MessageRole:
    role = member_of(MessageRole, value)
    if role is None:
        raise MemoryValidationError(
            f"unknown message role {value!r}; expected one of "
            f"{', '.join(r.value for r in MessageRole)}"
        )
    return role


#: Timestamps every store keeps to the microsecond (they are stored as seconds, a double).
EARLIEST, LATEST = datetime(1900, 1, 1), datetime(2200, 1, 1)
#: Largest token count every store keeps exactly.
MAX_TOKENS = 2**53 - 1


def _check_fields(message: Message) -> None:
    """Types and ranges of the scalar fields, and the outer shape of the structured ones."""
    content = message.content
    if content.__class__ is str:
        check_text("message content", content)
    elif isinstance(content, list):
        for i, block in enumerate(content):
            if not isinstance(block, dict):
                raise MemoryValidationError(
                    f"message content[{i}] must be a dict content block, not {type(block).__name__}"
                )
    elif content is not None:
        raise MemoryValidationError(
            f"message content must be a string, a list of content blocks or None, "
            f"not {type(content).__name__}"
        )
    _check_optional_text(message)
    _check_calls(message)
    local = _local_timestamp(message.timestamp)
    if local is not message.timestamp:
        # Kept as naive local time, as every timestamp the store hands back.
        object.__setattr__(message, "timestamp", local)
    if not isinstance(message.message_id, str) or not message.message_id:
        raise MemoryValidationError("message_id must be a non-empty string")
    check_text("message_id", message.message_id, key=True)
    if not isinstance(message.metadata, dict):
        raise MemoryValidationError("message metadata must be a dict")
    count = message.token_count
    if count is not None and (
        not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_TOKENS
    ):
        raise MemoryValidationError(f"token_count must be an int in [0, {MAX_TOKENS}] or None")
    if message.item is not None and not isinstance(message.item, dict):
        raise MemoryValidationError("message item must be a dict or None")


def _check_optional_text(message: Message) -> None:
    for name in ("name", "tool_call_id"):
        value = getattr(message, name)
        if value is not None:
            if not isinstance(value, str):
                raise MemoryValidationError(
                    f"message {name} must be a string or None, not {type(value).__name__}"
                )
            check_text(f"message {name}", value)


def _check_calls(message: Message) -> None:
    call, calls = message.function_call, message.tool_calls
    if call is not None and not isinstance(call, dict):
        raise MemoryValidationError(
            f"message function_call must be a dict or None, not {type(call).__name__}"
        )
    if calls is None:
        return
    if not isinstance(calls, list):
        raise MemoryValidationError(
            f"message tool_calls must be a list or None, not {type(calls).__name__}"
        )
    for i, one in enumerate(calls):
        if not isinstance(one, dict):
            raise MemoryValidationError(
                f"message tool_calls[{i}] must be a dict, not {type(one).__name__}"
            )


def _local_timestamp(timestamp: object) -> datetime:
    """``timestamp`` as naive local time, checked to be in the range every store keeps."""
    if not isinstance(timestamp, datetime):
        raise MemoryValidationError("message timestamp must be a datetime")
    local = timestamp if timestamp.tzinfo is None else timestamp.astimezone().replace(tzinfo=None)
    if not EARLIEST <= local < LATEST:
        raise MemoryValidationError(
            f"message timestamp must be from {EARLIEST.year} to {LATEST.year - 1}, not {timestamp}"
        )
    return local


def _freeze_structured(message: Message) -> None:
    """Structured parts must be plain data that every backend stores and reads back; the
    message keeps read-only copies of them."""
    setattr_ = object.__setattr__
    metadata = message.metadata
    setattr_(message, "metadata", freeze(metadata, "message metadata") if metadata else EMPTY)
    if message.content.__class__ is not str and message.content is not None:
        setattr_(message, "content", freeze(message.content, "message content blocks"))
    for name in ("function_call", "tool_calls", "item"):
        value = getattr(message, name)
        if value is not None:
            setattr_(message, name, freeze(value, f"message {name}"))


@dataclass(slots=True)
class SessionMetadata:
    """A session's identity, owner, lifecycle state and configuration.

    ``metadata`` holds the application's own keys; the named fields are the runtime's.
    """

    session_id: str
    user_id: str
    status: SessionStatus = SessionStatus.ACTIVE
    created_at: datetime = field(default_factory=datetime.now)
    updated_at: datetime = field(default_factory=datetime.now)
    max_messages: int | None = None
    max_tokens: int | None = None
    auto_summarize_threshold: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    message_count: int = 0
    expires_at: datetime | None = None

    def copy(self) -> SessionMetadata:
        """A snapshot that does not share the mutable ``metadata`` dict."""
        return SessionMetadata(
            self.session_id,
            self.user_id,
            self.status,
            self.created_at,
            self.updated_at,
            self.max_messages,
            self.max_tokens,
            self.auto_summarize_threshold,
            dict(self.metadata),
            self.message_count,
            self.expires_at,
        )


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """A rolling summary of a session's messages from the start up to ``covers_through``.

    ``message_count`` is how many messages it covers; ``covers_through`` is the sequence
    number (0-based position in the session) of the first message it does not cover.
    """

    summary_id: str
    session_id: str
    summary_text: str
    message_count: int
    token_count: int
    created_at: datetime
    summary_type: SummaryType
    covers_through: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        metadata = self.metadata
        if not isinstance(metadata, dict):
            raise MemoryValidationError("summary metadata must be a dict")
        object.__setattr__(
            self, "metadata", freeze(metadata, "summary metadata") if metadata else EMPTY
        )


@runtime_checkable
class Summarizer(Protocol):
    """Turns messages (and the previous summary, if any) into a new rolling summary text."""

    async def summarize(
        self,
        messages: Sequence[Message],
        *,
        previous: ConversationSummary | None,
        max_tokens: int,
    ) -> str:
        """Return a summary of ``previous`` plus ``messages`` in at most ``max_tokens`` tokens."""
        ...
