"""Messages converted to an Anthropic ``messages.create`` request: system text and turns."""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from .._frozen import thaw
from ..exceptions import MemoryValidationError
from ..interfaces import ContentBlock, Message, MessageContent, MessageRole
from ._common import (
    ASSISTANT,
    IMAGE_MEDIA_TYPES,
    SYSTEM,
    TOOL,
    USER,
    arguments_object,
    block_type,
    bool_field,
    collapse,
    dict_field,
    function_call_fields,
    image_source,
    list_or_none,
    located,
    str_field,
    tool_call_fields,
    tool_use_fields,
)
from ._items import check_convertible
from ._openai import text_content

if TYPE_CHECKING:
    from anthropic.types import MessageParam

__all__ = [
    "ANTHROPIC_CONTINUATION_TEXT",
    "AnthropicRequest",
    "messages_to_anthropic_format",
    "messages_to_anthropic_request",
]

ANTHROPIC_CONTINUATION_TEXT = "(continued)"
"""Text of the user turn put before a conversation that would start with an assistant turn."""

_ANTHROPIC_ID = re.compile(r"[A-Za-z0-9_-]+")
_NOT_ANTHROPIC_ID_CHAR = re.compile(r"[^A-Za-z0-9_-]")

#: Legacy ``function_call`` ids not yet answered, by function name, oldest first.
_Pending = dict[str, deque[str]]


class AnthropicRequest(NamedTuple):
    """``(system, messages)`` for ``messages.create``: unpack it, or read its fields."""

    #: The system messages' text joined by blank lines, or None if there is none (pass it as
    #: ``system=`` only when it is not None: the API takes no null there).
    system: str | None
    #: User and assistant turns, alternating, starting with a user turn.
    messages: list[MessageParam]


def messages_to_anthropic_format(messages: Iterable[Message]) -> list[MessageParam]:
    """The messages as an Anthropic ``messages`` list; system messages are left out
    (see :func:`messages_to_anthropic_request` for the system text).
    """
    return messages_to_anthropic_request(messages).messages


def messages_to_anthropic_request(messages: Iterable[Message]) -> AnthropicRequest:
    """``(system, messages)`` for Anthropic's ``messages.create``.

    ``system`` is the text of every system message, joined by blank lines, or None if there
    is none. ``messages`` alternates user and assistant turns, starting with a user turn.
    """
    system: list[str] = []
    turns: list[tuple[str, list[ContentBlock]]] = []
    pending: _Pending = {}
    for index, message in enumerate(messages):
        with located(f"messages[{index}]"):
            check_convertible(message, "Anthropic")
            if message.role is SYSTEM:
                text = _system_text(message.content)
                if text.strip():
                    system.append(text)
                continue
            role, blocks = _to_anthropic(message, pending)
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    _finish_turns(turns)
    out = [{"role": role, "content": collapse(blocks)} for role, blocks in turns]
    return AnthropicRequest(
        "\n\n".join(system) if system else None, cast("list[MessageParam]", thaw(out))
    )


def _finish_turns(turns: list[tuple[str, list[ContentBlock]]]) -> None:
    """Results first in user turns, no trailing whitespace at the end, a user turn first."""
    for role, blocks in turns:
        if role == "user":
            blocks.sort(key=lambda block: block["type"] != "tool_result")  # stable
    if turns and turns[-1][0] == "assistant" and turns[-1][1][-1]["type"] == "text":
        last = turns[-1][1]
        last[-1] = {"type": "text", "text": last[-1]["text"].rstrip()}
    if turns and turns[0][0] == "assistant":
        turns.insert(0, ("user", [{"type": "text", "text": ANTHROPIC_CONTINUATION_TEXT}]))


def _system_text(content: MessageContent) -> str:
    text = text_content(content, SYSTEM)
    return text if isinstance(text, str) else "\n".join(part["text"] for part in text)


def _to_anthropic(message: Message, pending: _Pending) -> tuple[str, list[ContentBlock]]:
    role = message.role
    if role is USER:
        return "user", _anthropic_blocks(message.content, USER)
    if role is ASSISTANT:
        return "assistant", _assistant_blocks(message, pending)
    if role is TOOL:
        if not message.tool_call_id:
            raise MemoryValidationError("tool messages need tool_call_id")
        return "user", [_tool_result(message.tool_call_id, message.content, "content")]
    if not message.name:
        raise MemoryValidationError("function messages need name")
    calls = pending.get(message.name)
    tool_id = calls.popleft() if calls else function_call_id(message)
    return "user", [_tool_result(tool_id, message.content, "content")]


def _assistant_blocks(message: Message, pending: _Pending) -> list[ContentBlock]:
    blocks = _anthropic_blocks(message.content, ASSISTANT)
    for i, call in enumerate(message.tool_calls or ()):
        where = f"tool_calls[{i}]"
        tool_id, name, arguments = tool_call_fields(call, where)
        blocks.append(_tool_use(tool_id, name, arguments_object(arguments, f"{where}.function")))
    if message.function_call is not None:
        name, arguments = function_call_fields(message.function_call, "function_call")
        tool_id = function_call_id(message)
        pending.setdefault(name, deque()).append(tool_id)
        blocks.append(_tool_use(tool_id, name, arguments_object(arguments, "function_call")))
    return blocks


def _anthropic_blocks(content: MessageContent, role: MessageRole) -> list[ContentBlock]:
    if content is None:
        return []
    if isinstance(content, str):
        return _text_block(content)
    out: list[ContentBlock] = []
    for i, block in enumerate(content):
        where = f"content[{i}]"
        kind = block_type(block, where)
        if kind == "text" or kind == "refusal":
            out.extend(_text_block(str_field(block, kind, where)))
        elif role is USER and (kind == "image" or kind == "image_url"):
            out.append(_anthropic_image(block, where))
        elif role is USER and kind == "tool_result":
            tool_id = str_field(block, "tool_use_id", where, nonempty=True)
            result = _tool_result(tool_id, block.get("content"), f"{where}.content")
            if "is_error" in block:
                result["is_error"] = bool_field(block, "is_error", where)
            out.append(result)
        elif role is ASSISTANT and kind == "tool_use":
            out.append(_tool_use(*tool_use_fields(block, where)))
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
    for i, item in enumerate(list_or_none(content, where)):
        item_where = f"{where}[{i}]"
        kind = block_type(item, item_where)
        if kind == "text":
            items.extend(_text_block(str_field(item, "text", item_where)))
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
        return {"type": "image", "source": image_source(block, where)}
    image = dict_field(block, "image_url", where)
    url = str_field(image, "url", f"{where}.image_url", nonempty=True)
    if not url.startswith("data:"):
        return {"type": "image", "source": {"type": "url", "url": url}}
    header, comma, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding != "base64" or media_type not in IMAGE_MEDIA_TYPES or not data:
        raise MemoryValidationError(
            f"{where}: Anthropic takes data URLs only as base64 "
            f"{', '.join(IMAGE_MEDIA_TYPES)} images"
        )
    source = {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "image", "source": source}


def function_call_id(message: Message) -> str:
    """The stable tool id given to a legacy ``function_call``, which has none."""
    return _anthropic_id(f"call_{message.message_id}")


def _anthropic_id(raw: str) -> str:
    """``raw`` made safe for Anthropic's ``[A-Za-z0-9_-]+`` ids, the same way every time."""
    if _ANTHROPIC_ID.fullmatch(raw):
        return raw
    digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
    return f"{_NOT_ANTHROPIC_ID_CHAR.sub('_', raw)}_{digest}"
