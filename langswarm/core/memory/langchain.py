"""``LangswarmChatMessageHistory``: langswarm memory as a LangChain chat message history.

    from langchain_core.runnables.history import RunnableWithMessageHistory
    from langswarm.core.memory.langchain import LangswarmChatMessageHistory

    chain = RunnableWithMessageHistory(
        model, lambda session_id: LangswarmChatMessageHistory(session_id, manager=manager)
    )

A ``BaseChatMessageHistory`` on any backend of a :class:`MemoryManager` (the global one unless
``manager`` is given). Needs the ``langchain`` extra (``langchain-core``); importing
``langswarm.core.memory`` alone never imports LangChain.

The async methods (``aget_messages``, ``aadd_messages``, ``aclear``) are native and run under
asyncio and trio. The sync ones (``messages``, ``add_messages``, ``clear``) block the calling
thread until done. Both run on one loop, whatever thread they are called from: that of the
manager's ``async with`` block while one runs, else a loop of the adapters on a daemon thread
(see ``_adapters``), where the runtime starts once and serves every later call. The sync
methods, called on the ``async with`` block's own loop, raise ``RuntimeError`` rather than
wait for that loop forever.

Each LangChain message is stored as one message: human, AI, system, tool and function
messages keep their role, content, ``name``, ``tool_calls`` (as OpenAI tool calls, unless
the content already holds them as ``tool_use`` blocks) and ``tool_call_id``, so summaries,
token budgets and the OpenAI and Anthropic converters understand them. Whatever else a
message carries (its ``id``, ``additional_kwargs``, ``response_metadata``, usage, its exact
class, a chat message's role...) is kept in the message's ``metadata["langchain"]``, only
where it differs from what those fields give back. Reading returns messages equal to what
was added, as LangChain's in-memory history does. Values must be JSON-compatible data (a
``ToolMessage`` artifact that is not is refused). Messages stored through other APIs are read
as the LangChain message of their role.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

try:
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.exceptions import OutputParserException
    from langchain_core.messages import BaseMessage, messages_from_dict
    from langchain_core.output_parsers.openai_tools import (
        make_invalid_tool_call,
        parse_tool_call,
    )
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "langswarm.core.memory.langchain needs langchain-core: "
        "pip install 'langswarm-memory-runtime[langchain]'"
    ) from exc

from ._adapters import AdaptedSession, plain_copy, run_blocking
from ._manager import MemoryManager
from ._validate import check_id
from .exceptions import MemoryValidationError
from .interfaces import Message, MessageRole

__all__ = [
    "DEFAULT_USER_ID",
    "LangswarmChatMessageHistory",
    "from_langchain",
    "to_langchain",
]

#: The owner of sessions created without a ``user_id``.
DEFAULT_USER_ID = "langchain"
#: The message metadata key holding what the message fields do not say.
EXTRAS_KEY = "langchain"

R = TypeVar("R")

_ROLES = {
    "human": MessageRole.USER,
    "ai": MessageRole.ASSISTANT,
    "system": MessageRole.SYSTEM,
    "tool": MessageRole.TOOL,
    "function": MessageRole.FUNCTION,
}
_CHUNKS = {
    "HumanMessageChunk": "human",
    "AIMessageChunk": "ai",
    "SystemMessageChunk": "system",
    "ToolMessageChunk": "tool",
    "FunctionMessageChunk": "function",
}
_CHAT_ROLES = {"user": "human", "assistant": "ai", "system": "system", "developer": "system"}
_TYPES = {role: kind for kind, role in _ROLES.items()}


class LangswarmChatMessageHistory(BaseChatMessageHistory):
    """A LangChain chat history whose messages live in a langswarm session.

    The session is created on the first write, for ``user_id`` (``"langchain"`` when none is
    given); until then the history reads as empty. ``clear`` drops the messages and
    summaries and keeps the session with its metadata.
    """

    def __init__(
        self,
        session_id: str,
        *,
        manager: MemoryManager | None = None,
        user_id: str | None = None,
    ) -> None:
        self.session_id = check_id("session_id", session_id)
        self.user_id = None if user_id is None else check_id("user_id", user_id)
        self._session = AdaptedSession(manager, self.session_id, self.user_id, DEFAULT_USER_ID)

    def __repr__(self) -> str:
        return f"<LangswarmChatMessageHistory {self.session_id!r} user={self.user_id!r}>"

    @property
    def manager(self) -> MemoryManager:
        """The manager holding the history (the global one unless one was given)."""
        return self._session.manager

    # -- async (native) ------------------------------------------------------------------

    async def aget_messages(self) -> list[BaseMessage]:
        """Every message, oldest first."""
        messages = await self._session.use(lambda s: s.get_messages(), create=False)
        return [to_langchain(message) for message in messages or ()]

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append ``messages`` as one unit: all are stored, in order, or none is."""
        batch = [from_langchain(message) for message in messages]
        if batch:
            await self._session.use(lambda s: s.add_messages(batch), create=True)

    async def aclear(self) -> None:
        """Drop every message (and summary); the session and its metadata stay."""
        await self._session.use(lambda s: s.clear(), create=False)

    # -- sync ----------------------------------------------------------------------------

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """Every message, oldest first (blocks; see the module docstring)."""
        return self._run(self.aget_messages)

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append ``messages`` as one unit (blocks; see the module docstring)."""
        batch = list(messages)
        self._run(lambda: self.aadd_messages(batch))

    def clear(self) -> None:
        """Drop every message (blocks; see the module docstring)."""
        self._run(self.aclear)

    # -- plumbing ------------------------------------------------------------------------

    def _run(self, call: Callable[[], Awaitable[R]]) -> R:
        return run_blocking(self.manager, call, _REFUSAL)


_REFUSAL = (
    "LangswarmChatMessageHistory: the sync methods block, so they cannot run on the event loop "
    "of the manager's 'async with' block; use aget_messages, aadd_messages, aclear there"
)


# -- LangChain messages <-> messages -------------------------------------------------------


def from_langchain(message: BaseMessage) -> Message:
    """The message to store for a LangChain message (see the module docstring)."""
    if not isinstance(message, BaseMessage):
        raise MemoryValidationError(f"expected a LangChain message, not {type(message).__name__}")
    fields = message.model_dump()
    kind = _CHUNKS.get(message.type, message.type)
    if kind == "chat":
        kind = _CHAT_ROLES.get(str(fields.get("role")), "human")
    role = _ROLES.get(kind)
    if role is None:
        raise MemoryValidationError(f"{message.type!r} messages cannot be stored")
    asks = role is MessageRole.ASSISTANT
    own: dict[str, Any] = {
        "name": fields.get("name"),
        "tool_calls": _calls_in(fields) if asks else None,
        "tool_call_id": fields.get("tool_call_id") if role is MessageRole.TOOL else None,
        "function_call": _function_call_in(fields) if asks else None,
    }
    try:
        base = Message(role, _content_in(fields["content"]), **own)
        default = _build(_fields_of(base)).model_dump()
        extras = {k: v for k, v in fields.items() if k not in default or default[k] != v}
        if not extras:
            return base
        metadata = {EXTRAS_KEY: plain_copy(extras)}
        return Message(role, base.content, metadata=metadata, **own)
    except MemoryValidationError as exc:
        raise MemoryValidationError(f"{message.type} message: {exc}") from None


def to_langchain(message: Message) -> BaseMessage:
    """The LangChain message a stored message reads as."""
    fields = _fields_of(message)
    extras = message.metadata.get(EXTRAS_KEY)
    if isinstance(extras, dict):
        fields.update(plain_copy(extras))
    return _build(fields)


def _build(fields: dict[str, Any]) -> BaseMessage:
    (built,) = messages_from_dict([{"type": fields["type"], "data": fields}])
    return built


def _fields_of(message: Message) -> dict[str, Any]:
    """The fields of the LangChain message for ``message``'s own fields."""
    content = message.content
    fields: dict[str, Any] = {
        "type": _TYPES[message.role],
        "content": "" if content is None else plain_copy(content),
        "name": message.name,
    }
    if message.role is MessageRole.ASSISTANT:
        calls, invalid = _calls_out(message)
        fields["tool_calls"], fields["invalid_tool_calls"] = calls, invalid
        if message.function_call is not None:
            fields["additional_kwargs"] = {"function_call": plain_copy(message.function_call)}
    elif message.role is MessageRole.TOOL:
        fields["tool_call_id"] = message.tool_call_id or ""
    return fields


def _content_in(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    return [
        {"type": "text", "text": part} if isinstance(part, str) else plain_copy(part)
        for part in content
    ]


def _tool_use_ids(content: Any) -> set[Any]:
    if not isinstance(content, list):
        return set()
    return {b.get("id") for b in content if isinstance(b, dict) and b.get("type") == "tool_use"}


def _calls_in(fields: dict[str, Any]) -> list[dict[str, Any]] | None:
    """OpenAI tool calls for the LangChain tool calls that the content does not hold."""
    in_content = _tool_use_ids(fields["content"])
    calls = []
    for call in fields.get("tool_calls") or ():
        if isinstance(call.get("id"), str) and call["id"] not in in_content:
            try:
                arguments = json.dumps(call["args"])
            except (TypeError, ValueError):
                continue  # kept verbatim with the rest of what the fields do not say
            function = {"name": call["name"], "arguments": arguments}
            calls.append({"id": call["id"], "type": "function", "function": function})
    return calls or None


def _function_call_in(fields: dict[str, Any]) -> dict[str, Any] | None:
    call = (fields.get("additional_kwargs") or {}).get("function_call")
    if isinstance(call, dict) and isinstance(call.get("name"), str):
        copied: dict[str, Any] = plain_copy(call)
        return copied
    return None


def _calls_out(message: Message) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """LangChain tool calls (and invalid ones) from OpenAI calls and ``tool_use`` blocks."""
    calls: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    for raw in message.tool_calls or ():
        if raw.get("type") != "function":
            continue  # Responses calls other than functions have no LangChain form
        try:
            parsed = parse_tool_call(plain_copy(raw), return_id=True)
        except OutputParserException as exc:
            invalid.append(dict(make_invalid_tool_call(raw, str(exc))))
        else:
            if parsed is not None:
                calls.append(parsed)
    content = message.content
    for block in content if isinstance(content, list) else ():
        if block.get("type") == "tool_use":
            args = plain_copy(block.get("input", {}))
            calls.append({"name": block.get("name"), "args": args, "id": block.get("id")})
            calls[-1]["type"] = "tool_call"
    return calls, invalid
