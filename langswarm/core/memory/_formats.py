"""Provider message formats: OpenAI chat completions and Anthropic messages.

A :class:`Message` is provider-neutral. It carries OpenAI's fields (``name``, ``tool_calls``,
``tool_call_id``, legacy ``function_call``, the ``tool`` and ``function`` roles) and content
blocks of either provider, kept as given: OpenAI ``text``/``image_url``/``refusal`` parts and
Anthropic ``text``/``image``/``tool_use``/``tool_result`` blocks. One session can therefore hold
messages from both providers; the converters translate on the way out.

``create_openai_message`` and ``create_anthropic_message`` check a message against its
provider's rules and raise :class:`MemoryValidationError` before anything is stored.

``messages_to_openai_format``: ``tool_use`` blocks become ``tool_calls`` (input as JSON
arguments); each ``tool_result`` block becomes a ``tool`` message, and images inside tool
results, which tool messages cannot hold, go to a ``user`` message right after. Anthropic's
``is_error`` has no OpenAI field and is dropped, as are tool messages' ``name``.

``messages_to_anthropic_request``: system messages leave the list and are joined into the
separate system text. ``tool_calls`` and ``function_call`` become ``tool_use`` blocks;
``tool``/``function`` messages become ``tool_result`` blocks in a user turn. A legacy
``function_call`` has no id, so its ``tool_use`` id is ``call_<message_id>`` and the next
``function`` message with the same name answers it. Whitespace-only text is dropped (the API
rejects it) and so are turns left empty; consecutive same-role turns are merged, with
``tool_result`` blocks first in their user turn; a final assistant turn loses trailing
whitespace (the API rejects it). A list that would start with an assistant turn gets a user
turn reading :data:`ANTHROPIC_CONTINUATION_TEXT` first. Tool ids with characters Anthropic
does not allow are rewritten, identically wherever they appear. ``name`` has no Anthropic
counterpart and is dropped. Pairing calls with results is the caller's part: converters do not
invent or delete tool calls.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from .exceptions import MemoryValidationError
from .interfaces import ContentBlock, Message, MessageContent, MessageRole

__all__ = [
    "ANTHROPIC_CONTINUATION_TEXT",
    "create_anthropic_message",
    "create_openai_message",
    "messages_from_anthropic_format",
    "messages_from_openai_format",
    "messages_to_anthropic_format",
    "messages_to_anthropic_request",
    "messages_to_openai_format",
]

ANTHROPIC_CONTINUATION_TEXT = "(continued)"
"""Text of the user turn put before a conversation that would start with an assistant turn."""

_SYSTEM = MessageRole.SYSTEM
_USER = MessageRole.USER
_ASSISTANT = MessageRole.ASSISTANT
_TOOL = MessageRole.TOOL
_FUNCTION = MessageRole.FUNCTION

_OPENAI_ROLES = (_SYSTEM, _USER, _ASSISTANT, _TOOL, _FUNCTION)
_ANTHROPIC_ROLES = (_USER, _ASSISTANT, _SYSTEM)
_OPENAI_PARTS = {
    _SYSTEM: ("text",),
    _USER: ("text", "image_url"),
    _ASSISTANT: ("text", "refusal"),
    _TOOL: ("text",),
}
_ANTHROPIC_BLOCKS = {
    _USER: ("text", "image", "tool_result"),
    _ASSISTANT: ("text", "tool_use"),
    _SYSTEM: ("text",),
}
_OPENAI_MESSAGE_KEYS = frozenset(
    {"role", "content", "name", "function_call", "tool_calls", "tool_call_id"}
)
_ANTHROPIC_MESSAGE_KEYS = frozenset({"role", "content"})
_IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_ANTHROPIC_ID = re.compile(r"[A-Za-z0-9_-]+")
_NOT_ANTHROPIC_ID_CHAR = re.compile(r"[^A-Za-z0-9_-]")


# --- building messages -------------------------------------------------------------------


def create_openai_message(
    role: MessageRole | str,
    content: MessageContent = None,
    *,
    name: str | None = None,
    function_call: dict[str, Any] | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    tool_call_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    message_id: str | None = None,
    timestamp: datetime | None = None,
) -> Message:
    """A message from OpenAI chat fields, checked against OpenAI's rules.

    ``function_call`` and each of ``tool_calls`` must carry JSON-object ``arguments`` text, so
    the call can also be replayed to Anthropic. ``content`` may be None only for an assistant
    message that calls something, and for a function result.
    """
    parsed = _parse_role(role, _OPENAI_ROLES, "OpenAI")
    if name is not None and (not isinstance(name, str) or not name):
        raise MemoryValidationError("name must be a non-empty string")
    if parsed is _FUNCTION and name is None:
        raise MemoryValidationError("function messages need name (the function's name)")
    calls = function_call is not None or tool_calls is not None
    if calls and parsed is not _ASSISTANT:
        raise MemoryValidationError("only assistant messages carry function_call or tool_calls")
    if function_call is not None and tool_calls is not None:
        raise MemoryValidationError("use function_call or tool_calls, not both")
    if function_call is not None:
        _check_function_call(function_call, "function_call")
    if tool_calls is not None:
        _check_tool_calls(tool_calls)
    if parsed is _TOOL:
        if not isinstance(tool_call_id, str) or not tool_call_id:
            raise MemoryValidationError(
                "tool messages need tool_call_id (the id of the tool call they answer)"
            )
    elif tool_call_id is not None:
        raise MemoryValidationError("only tool messages carry tool_call_id")

    if content is None:
        if not (calls or parsed is _FUNCTION):
            raise MemoryValidationError(
                f"{parsed.value} messages need content; only an assistant message with "
                "function_call or tool_calls, or a function result, may have None"
            )
    elif isinstance(content, list):
        if parsed is _FUNCTION:
            raise MemoryValidationError("function message content must be a string or None")
        _check_openai_parts(parsed, content)
    elif not isinstance(content, str):
        raise MemoryValidationError(
            "content must be a string, a list of content parts or None, "
            f"not {type(content).__name__}"
        )
    return _build(
        parsed,
        content,
        name=name,
        function_call=function_call,
        tool_calls=tool_calls,
        tool_call_id=tool_call_id,
        metadata=metadata,
        message_id=message_id,
        timestamp=timestamp,
    )


def create_anthropic_message(
    role: MessageRole | str,
    content: str | list[ContentBlock],
    *,
    metadata: dict[str, Any] | None = None,
    message_id: str | None = None,
    timestamp: datetime | None = None,
) -> Message:
    """A message from Anthropic fields, checked against Anthropic's rules.

    A user message of ``tool_result`` blocks stays a user message; it answers the
    ``tool_use`` blocks of the assistant message before it.
    """
    parsed = _parse_role(role, _ANTHROPIC_ROLES, "Anthropic")
    if isinstance(content, list):
        _check_anthropic_blocks(parsed, content)
    elif not isinstance(content, str):
        raise MemoryValidationError(
            "Anthropic content must be a string or a non-empty list of content blocks, "
            f"not {type(content).__name__}"
        )
    return _build(parsed, content, metadata=metadata, message_id=message_id, timestamp=timestamp)


def messages_from_openai_format(messages: Iterable[Mapping[str, Any]]) -> list[Message]:
    """Messages from an OpenAI chat ``messages`` list, each checked as by
    :func:`create_openai_message`.

    Keys OpenAI responses add (``refusal``, ``audio``, ``annotations``) are ignored when empty;
    any other unknown key with a value is rejected rather than silently dropped.
    """
    out: list[Message] = []
    for index, item in enumerate(messages):
        try:
            fields = _message_fields(item, _OPENAI_MESSAGE_KEYS)
            out.append(
                create_openai_message(
                    fields["role"],
                    fields.get("content"),
                    name=fields.get("name"),
                    function_call=fields.get("function_call"),
                    tool_calls=fields.get("tool_calls"),
                    tool_call_id=fields.get("tool_call_id"),
                )
            )
        except MemoryValidationError as exc:
            raise MemoryValidationError(f"messages[{index}]: {exc}") from None
    return out


def messages_from_anthropic_format(
    messages: Iterable[Mapping[str, Any]],
    system: str | list[ContentBlock] | None = None,
) -> list[Message]:
    """Messages from an Anthropic ``messages`` list, each checked as by
    :func:`create_anthropic_message`; a non-empty ``system`` becomes a leading system message.
    """
    out: list[Message] = []
    if system is not None and system != "":
        try:
            out.append(create_anthropic_message(_SYSTEM, system))
        except MemoryValidationError as exc:
            raise MemoryValidationError(f"system: {exc}") from None
    for index, item in enumerate(messages):
        try:
            fields = _message_fields(item, _ANTHROPIC_MESSAGE_KEYS)
            if "content" not in fields:
                raise MemoryValidationError("Anthropic messages need content")
            out.append(create_anthropic_message(fields["role"], fields["content"]))
        except MemoryValidationError as exc:
            raise MemoryValidationError(f"messages[{index}]: {exc}") from None
    return out


# --- converting to OpenAI ----------------------------------------------------------------


def messages_to_openai_format(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """The messages as an OpenAI chat ``messages`` list (for ``chat.completions.create``)."""
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        try:
            out.extend(_to_openai(message))
        except MemoryValidationError as exc:
            raise MemoryValidationError(f"messages[{index}]: {exc}") from None
    return out


def _to_openai(message: Message) -> list[dict[str, Any]]:
    role = message.role
    content = message.content
    if role is _ASSISTANT:
        return [_assistant_to_openai(message)]
    if role is _TOOL:
        if not message.tool_call_id:
            raise MemoryValidationError("tool messages need tool_call_id")
        return [
            {
                "role": "tool",
                "tool_call_id": message.tool_call_id,
                "content": _text_content(content, role),
            }
        ]
    if role is _FUNCTION:
        if not message.name:
            raise MemoryValidationError("function messages need name")
        text = content if content is None or isinstance(content, str) else message.text()
        return [{"role": "function", "name": message.name, "content": text}]
    if role is _USER and isinstance(content, list):
        return _user_blocks_to_openai(message, content)
    out: dict[str, Any] = {"role": role.value, "content": _text_content(content, role)}
    if message.name:
        out["name"] = message.name
    return [out]


def _assistant_to_openai(message: Message) -> dict[str, Any]:
    content = message.content
    calls = [
        _openai_tool_call(*_tool_call_fields(call, f"tool_calls[{i}]"))
        for i, call in enumerate(message.tool_calls or ())
    ]
    body: str | list[dict[str, Any]] | None = None
    if isinstance(content, str):
        body = content
    elif content is not None:
        parts: list[dict[str, Any]] = []
        for i, block in enumerate(content):
            where = f"content[{i}]"
            kind = _block_type(block, where)
            if kind == "text" or kind == "refusal":
                # A text part keeps its text under "text", a refusal part under "refusal".
                parts.append({"type": kind, kind: _str(block, kind, where)})
            elif kind == "tool_use":
                tool_id, name, tool_input = _tool_use_fields(block, where)
                calls.append(_openai_tool_call(tool_id, name, json.dumps(tool_input)))
            else:
                raise MemoryValidationError(
                    f"{where}: {kind!r} blocks cannot be sent to OpenAI in assistant messages"
                )
        if parts:
            body = _collapse(parts)
    function_call = message.function_call
    if body is None and not calls and function_call is None:
        body = ""
    out: dict[str, Any] = {"role": "assistant", "content": body}
    if message.name:
        out["name"] = message.name
    if calls:
        out["tool_calls"] = calls
    if function_call is not None:
        name, arguments = _function_call_fields(function_call, "function_call")
        out["function_call"] = {"name": name, "arguments": arguments}
    return out


def _user_blocks_to_openai(message: Message, content: list[ContentBlock]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        where = f"content[{i}]"
        if _block_type(block, where) != "tool_result":
            parts.append(_openai_user_part(block, where))
            continue
        texts: list[dict[str, Any]] = []
        for j, item in enumerate(_result_items(block, where)):
            part = _openai_user_part(item, f"{where}.content[{j}]")
            # Tool messages hold text only; the result's images follow in the user message.
            (texts if part["type"] == "text" else parts).append(part)
        tool_id = _str(block, "tool_use_id", where, nonempty=True)
        out.append({"role": "tool", "tool_call_id": tool_id, "content": _collapse(texts)})
    if parts:
        user: dict[str, Any] = {"role": "user", "content": _collapse(parts)}
        if message.name:
            user["name"] = message.name
        out.append(user)
    return out


def _openai_user_part(block: ContentBlock, where: str) -> dict[str, Any]:
    kind = _block_type(block, where)
    if kind == "text":
        return {"type": "text", "text": _str(block, "text", where)}
    if kind == "image_url":
        image = _dict(block, "image_url", where)
        url_part: dict[str, Any] = {"url": _str(image, "url", f"{where}.image_url", nonempty=True)}
        if "detail" in image:
            url_part["detail"] = image["detail"]
        return {"type": "image_url", "image_url": url_part}
    if kind == "image":
        source = _image_source(block, where)
        if source["type"] == "url":
            return {"type": "image_url", "image_url": {"url": source["url"]}}
        url = f"data:{source['media_type']};base64,{source['data']}"
        return {"type": "image_url", "image_url": {"url": url}}
    raise MemoryValidationError(
        f"{where}: {kind!r} blocks cannot be sent to OpenAI in user messages"
    )


def _text_content(content: MessageContent, role: MessageRole) -> str | list[dict[str, Any]]:
    """Content of a message that may hold only text (system, tool), as OpenAI takes it."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for i, block in enumerate(content):
        where = f"content[{i}]"
        kind = _block_type(block, where)
        if kind != "text":
            raise MemoryValidationError(f"{where}: {role.value} messages hold text, not {kind!r}")
        parts.append({"type": "text", "text": _str(block, "text", where)})
    return _collapse(parts)


def _collapse(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone text part as a plain string; no parts as an empty string."""
    if not parts:
        return ""
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    return parts


def _openai_tool_call(tool_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": tool_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# --- converting to Anthropic -------------------------------------------------------------


def messages_to_anthropic_format(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """The messages as an Anthropic ``messages`` list; system messages are left out
    (see :func:`messages_to_anthropic_request` for the system text).
    """
    return messages_to_anthropic_request(messages)[1]


def messages_to_anthropic_request(
    messages: Iterable[Message],
) -> tuple[str | None, list[dict[str, Any]]]:
    """``(system, messages)`` for Anthropic's ``messages.create``.

    ``system`` is the text of every system message, joined by blank lines, or None if there
    is none. ``messages`` alternates user and assistant turns, starting with a user turn.
    """
    system: list[str] = []
    turns: list[tuple[str, list[ContentBlock]]] = []
    pending_functions: dict[str, deque[str]] = {}
    for index, message in enumerate(messages):
        try:
            if message.role is _SYSTEM:
                text = _system_text(message.content)
                if text.strip():
                    system.append(text)
                continue
            role, blocks = _to_anthropic(message, pending_functions)
        except MemoryValidationError as exc:
            raise MemoryValidationError(f"messages[{index}]: {exc}") from None
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))

    for role, blocks in turns:
        if role == "user":
            blocks.sort(key=lambda block: block["type"] != "tool_result")  # stable
    if turns and turns[-1][0] == "assistant" and turns[-1][1][-1]["type"] == "text":
        last = turns[-1][1]
        last[-1] = {"type": "text", "text": last[-1]["text"].rstrip()}
    if turns and turns[0][0] == "assistant":
        turns.insert(0, ("user", [{"type": "text", "text": ANTHROPIC_CONTINUATION_TEXT}]))

    out = [{"role": role, "content": _collapse(blocks)} for role, blocks in turns]
    return ("\n\n".join(system) if system else None), out


def _system_text(content: MessageContent) -> str:
    text = _text_content(content, _SYSTEM)
    return text if isinstance(text, str) else "\n".join(part["text"] for part in text)


def _to_anthropic(
    message: Message, pending_functions: dict[str, deque[str]]
) -> tuple[str, list[ContentBlock]]:
    role = message.role
    if role is _USER:
        return "user", _anthropic_blocks(message.content, _USER)
    if role is _ASSISTANT:
        blocks = _anthropic_blocks(message.content, _ASSISTANT)
        for i, call in enumerate(message.tool_calls or ()):
            where = f"tool_calls[{i}]"
            tool_id, name, arguments = _tool_call_fields(call, where)
            blocks.append(_tool_use(tool_id, name, _arguments(arguments, f"{where}.function")))
        if message.function_call is not None:
            name, arguments = _function_call_fields(message.function_call, "function_call")
            tool_id = _function_call_id(message)
            pending_functions.setdefault(name, deque()).append(tool_id)
            blocks.append(_tool_use(tool_id, name, _arguments(arguments, "function_call")))
        return "assistant", blocks
    if role is _TOOL:
        if not message.tool_call_id:
            raise MemoryValidationError("tool messages need tool_call_id")
        return "user", [_tool_result(message.tool_call_id, message.content, "content")]
    if not message.name:
        raise MemoryValidationError("function messages need name")
    calls = pending_functions.get(message.name)
    tool_id = calls.popleft() if calls else _function_call_id(message)
    return "user", [_tool_result(tool_id, message.content, "content")]


def _anthropic_blocks(content: MessageContent, role: MessageRole) -> list[ContentBlock]:
    if content is None:
        return []
    if isinstance(content, str):
        return _text_block(content)
    out: list[ContentBlock] = []
    for i, block in enumerate(content):
        where = f"content[{i}]"
        kind = _block_type(block, where)
        if kind == "text" or kind == "refusal":
            out.extend(_text_block(_str(block, kind, where)))
        elif role is _USER and (kind == "image" or kind == "image_url"):
            out.append(_anthropic_image(block, where))
        elif role is _USER and kind == "tool_result":
            tool_id = _str(block, "tool_use_id", where, nonempty=True)
            result = _tool_result(tool_id, block.get("content"), f"{where}.content")
            if "is_error" in block:
                result["is_error"] = _bool(block, "is_error", where)
            out.append(result)
        elif role is _ASSISTANT and kind == "tool_use":
            out.append(_tool_use(*_tool_use_fields(block, where)))
        else:
            raise MemoryValidationError(
                f"{where}: {kind!r} blocks cannot be sent to Anthropic in {role.value} messages"
            )
    return out


def _tool_result(tool_id: str, content: object, where: str) -> ContentBlock:
    """A ``tool_result`` block; empty result content is left out, which the API allows."""
    block: ContentBlock = {"type": "tool_result", "tool_use_id": _anthropic_id(tool_id)}
    if isinstance(content, str):
        if content.strip():
            block["content"] = content
        return block
    items: list[ContentBlock] = []
    for i, item in enumerate(_list_or_none(content, where)):
        item_where = f"{where}[{i}]"
        kind = _block_type(item, item_where)
        if kind == "text":
            items.extend(_text_block(_str(item, "text", item_where)))
        elif kind == "image" or kind == "image_url":
            items.append(_anthropic_image(item, item_where))
        else:
            raise MemoryValidationError(
                f"{item_where}: tool results hold text and image blocks, not {kind!r}"
            )
    if items:
        block["content"] = items
    return block


def _tool_use(tool_id: str, name: str, tool_input: dict[str, Any]) -> ContentBlock:
    return {"type": "tool_use", "id": _anthropic_id(tool_id), "name": name, "input": tool_input}


def _text_block(text: str) -> list[ContentBlock]:
    return [{"type": "text", "text": text}] if text.strip() else []


def _anthropic_image(block: ContentBlock, where: str) -> ContentBlock:
    if block["type"] == "image":
        return {"type": "image", "source": _image_source(block, where)}
    url = _str(_dict(block, "image_url", where), "url", f"{where}.image_url", nonempty=True)
    if not url.startswith("data:"):
        return {"type": "image", "source": {"type": "url", "url": url}}
    header, comma, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding != "base64" or media_type not in _IMAGE_MEDIA_TYPES or not data:
        raise MemoryValidationError(
            f"{where}: Anthropic takes data URLs only as base64 "
            f"{', '.join(_IMAGE_MEDIA_TYPES)} images"
        )
    source = {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "image", "source": source}


def _function_call_id(message: Message) -> str:
    """The stable ``tool_use`` id given to a legacy ``function_call``, which has none."""
    return _anthropic_id(f"call_{message.message_id}")


def _anthropic_id(raw: str) -> str:
    """``raw`` made safe for Anthropic's ``[A-Za-z0-9_-]+`` ids, the same way every time."""
    if _ANTHROPIC_ID.fullmatch(raw):
        return raw
    digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
    return f"{_NOT_ANTHROPIC_ID_CHAR.sub('_', raw)}_{digest}"


# --- checks ------------------------------------------------------------------------------


def _parse_role(
    role: MessageRole | str, allowed: tuple[MessageRole, ...], provider: str
) -> MessageRole:
    try:
        parsed: MessageRole | None = MessageRole(role)
    except (ValueError, TypeError):
        parsed = None
    if parsed is None or parsed not in allowed:
        names = ", ".join(r.value for r in allowed)
        raise MemoryValidationError(f"unknown {provider} role {role!r}; expected one of {names}")
    return parsed


def _check_openai_parts(role: MessageRole, content: list[Any]) -> None:
    if not content:
        raise MemoryValidationError("content must not be an empty list")
    allowed = _OPENAI_PARTS[role]
    for i, part in enumerate(content):
        where = f"content[{i}]"
        kind = _block_type(part, where)
        if kind not in allowed:
            raise MemoryValidationError(
                f"{where}: {kind!r} parts are not allowed in OpenAI {role.value} messages "
                f"(allowed: {', '.join(allowed)})"
            )
        if kind == "image_url":
            image = _dict(part, "image_url", where)
            _str(image, "url", f"{where}.image_url", nonempty=True)
        else:
            _str(part, kind, where)  # "text" holds its text under "text", "refusal" likewise


def _check_function_call(function_call: object, where: str) -> None:
    _, arguments = _function_call_fields(function_call, where)
    assert isinstance(function_call, dict)  # checked by _function_call_fields
    _reject_unknown_keys(function_call, ("name", "arguments"), where)
    _arguments(arguments, where)


def _check_tool_calls(tool_calls: object) -> None:
    if not isinstance(tool_calls, list) or not tool_calls:
        raise MemoryValidationError("tool_calls must be a non-empty list of tool calls")
    seen: set[str] = set()
    for i, call in enumerate(tool_calls):
        where = f"tool_calls[{i}]"
        tool_id, _, arguments = _tool_call_fields(call, where)
        if tool_id in seen:
            raise MemoryValidationError(f"{where}: duplicate tool call id {tool_id!r}")
        seen.add(tool_id)
        _reject_unknown_keys(call, ("id", "type", "function"), where)
        _reject_unknown_keys(call["function"], ("name", "arguments"), f"{where}.function")
        _arguments(arguments, f"{where}.function")


def _check_anthropic_blocks(role: MessageRole, blocks: list[Any]) -> None:
    if not blocks:
        raise MemoryValidationError("content must not be an empty list")
    allowed = _ANTHROPIC_BLOCKS[role]
    ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"content[{i}]"
        kind = _block_type(block, where)
        if kind not in allowed:
            raise MemoryValidationError(
                f"{where}: {kind!r} blocks are not allowed in Anthropic {role.value} messages "
                f"(allowed: {', '.join(allowed)})"
            )
        tool_id: str | None = None
        if kind == "text":
            _str(block, "text", where)
        elif kind == "image":
            _image_source(block, where)
        elif kind == "tool_use":
            tool_id = _tool_use_fields(block, where)[0]
        else:
            tool_id = _str(block, "tool_use_id", where, nonempty=True)
            for j, item in enumerate(_result_items(block, where)):
                item_where = f"{where}.content[{j}]"
                item_kind = _block_type(item, item_where)
                if item_kind == "text":
                    _str(item, "text", item_where)
                elif item_kind == "image":
                    _image_source(item, item_where)
                else:
                    raise MemoryValidationError(
                        f"{item_where}: tool results hold text and image blocks, not {item_kind!r}"
                    )
            if "is_error" in block:
                _bool(block, "is_error", where)
        if tool_id is not None:
            if tool_id in ids:
                raise MemoryValidationError(f"{where}: duplicate tool id {tool_id!r}")
            ids.add(tool_id)


def _image_source(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The checked ``source`` of an Anthropic image block, rebuilt from its known fields."""
    source = _dict(block, "source", where)
    where = f"{where}.source"
    kind = source.get("type")
    if kind == "base64":
        media_type = source.get("media_type")
        if media_type not in _IMAGE_MEDIA_TYPES:
            raise MemoryValidationError(
                f"{where}.media_type must be one of {', '.join(_IMAGE_MEDIA_TYPES)}, "
                f"not {media_type!r}"
            )
        data = _str(source, "data", where, nonempty=True)
        return {"type": "base64", "media_type": media_type, "data": data}
    if kind == "url":
        return {"type": "url", "url": _str(source, "url", where, nonempty=True)}
    raise MemoryValidationError(f"{where}.type must be 'base64' or 'url', not {kind!r}")


def _function_call_fields(function_call: object, where: str) -> tuple[str, str]:
    """``(name, arguments)`` of an OpenAI function call."""
    if not isinstance(function_call, dict):
        raise MemoryValidationError(
            f"{where} must be a dict with 'name' and 'arguments', "
            f"not {type(function_call).__name__}"
        )
    return (
        _str(function_call, "name", where, nonempty=True),
        _str(function_call, "arguments", where),
    )


def _tool_call_fields(call: object, where: str) -> tuple[str, str, str]:
    """``(id, name, arguments)`` of an OpenAI tool call."""
    if not isinstance(call, dict):
        raise MemoryValidationError(
            f"{where} must be a dict with 'id', 'type' and 'function', not {type(call).__name__}"
        )
    tool_id = _str(call, "id", where, nonempty=True)
    if call.get("type") != "function":
        raise MemoryValidationError(f"{where}.type must be 'function', not {call.get('type')!r}")
    name, arguments = _function_call_fields(call.get("function"), f"{where}.function")
    return tool_id, name, arguments


def _tool_use_fields(block: Mapping[str, Any], where: str) -> tuple[str, str, dict[str, Any]]:
    """``(id, name, input)`` of an Anthropic ``tool_use`` block."""
    return (
        _str(block, "id", where, nonempty=True),
        _str(block, "name", where, nonempty=True),
        _dict(block, "input", where),
    )


def _arguments(text: str, where: str) -> dict[str, Any]:
    """Function-call arguments parsed: they must be the JSON text of an object."""
    try:
        value = json.loads(text)
    except ValueError:
        raise MemoryValidationError(
            f"{where}.arguments must be JSON text, got {_preview(text)}"
        ) from None
    if not isinstance(value, dict):
        raise MemoryValidationError(
            f"{where}.arguments must be a JSON object, got {_preview(text)}"
        )
    return value


def _result_items(block: Mapping[str, Any], where: str) -> list[Any]:
    """A ``tool_result``'s content as a list of blocks (a string becomes one text block)."""
    content = block.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return _list_or_none(content, f"{where}.content")


def _list_or_none(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MemoryValidationError(
            f"{where} must be a string or a list of content blocks, not {type(value).__name__}"
        )
    return value


def _message_fields(item: object, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise MemoryValidationError(f"a message must be a dict, not {type(item).__name__}")
    if "role" not in item:
        raise MemoryValidationError("a message needs a role")
    _reject_unknown_keys(item, allowed, "message")
    return item


def _reject_unknown_keys(mapping: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Reject keys we would otherwise drop; empty values (None, [], "") carry nothing."""
    known = set(allowed)
    unknown = sorted(str(key) for key, value in mapping.items() if key not in known and value)
    if unknown:
        raise MemoryValidationError(f"{where} has unsupported keys: {', '.join(unknown)}")


def _block_type(block: object, where: str) -> str:
    if not isinstance(block, dict):
        raise MemoryValidationError(
            f"{where} must be a dict content block, not {type(block).__name__}"
        )
    kind = block.get("type")
    if not isinstance(kind, str):
        raise MemoryValidationError(f"{where} needs a string 'type'")
    return kind


def _str(mapping: Mapping[str, Any], key: str, where: str, *, nonempty: bool = False) -> str:
    value = mapping.get(key)
    if isinstance(value, str) and (value or not nonempty):
        return value
    need = "a non-empty string" if nonempty else "a string"
    raise MemoryValidationError(f"{where}.{key} must be {need}, not {_describe(mapping, key)}")


def _dict(mapping: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = mapping.get(key)
    if isinstance(value, dict):
        return value
    raise MemoryValidationError(f"{where}.{key} must be a dict, not {_describe(mapping, key)}")


def _bool(mapping: Mapping[str, Any], key: str, where: str) -> bool:
    value = mapping.get(key)
    if isinstance(value, bool):
        return value
    raise MemoryValidationError(f"{where}.{key} must be a bool, not {_describe(mapping, key)}")


def _describe(mapping: Mapping[str, Any], key: str) -> str:
    if key not in mapping:
        return "missing"
    value = mapping[key]
    return "an empty string" if value == "" else type(value).__name__


def _preview(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


# --- construction ------------------------------------------------------------------------


def _build(
    role: MessageRole,
    content: MessageContent,
    *,
    metadata: dict[str, Any] | None,
    message_id: str | None,
    timestamp: datetime | None,
    name: str | None = None,
    function_call: dict[str, Any] | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    tool_call_id: str | None = None,
) -> Message:
    if metadata is not None and not isinstance(metadata, dict):
        raise MemoryValidationError("metadata must be a dict")
    optional: dict[str, Any] = {}
    if message_id is not None:
        optional["message_id"] = message_id
    if timestamp is not None:
        optional["timestamp"] = timestamp
    # Copies, so that a caller changing its lists later cannot change a stored message.
    return Message(
        role=role,
        content=_copy(content),
        metadata=dict(metadata) if metadata else {},
        name=name,
        function_call=_copy(function_call),
        tool_calls=_copy(tool_calls),
        tool_call_id=tool_call_id,
        **optional,
    )


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value
