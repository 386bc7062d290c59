"""Responses-API items (what the OpenAI Agents SDK keeps in a session) in and out.

An item is stored verbatim in ``Message.item``, so ``messages_to_responses_format(
messages_from_responses_format(items)) == items``: same JSON, same key order. The message's
ordinary fields are filled from it as well, so the rest of the runtime understands it: a
``message`` item keeps its role (``developer`` reads as ``system``) and its text and image
parts; a ``function_call`` becomes an assistant ``tool_calls`` message and a
``function_call_output`` a ``tool`` message answering it. Items with no chat form (reasoning,
hosted tool calls, computer, shell and custom tool calls and their outputs, MCP approvals...)
become assistant messages with no content; calls and their outputs keep their ids in
``tool_calls`` / ``tool_call_id`` (the ``type`` of such a call is the item's), so trimming and
windows keep each with its answer. The chat and Anthropic converters refuse these items, and
parts or keys of other items that they have no place for, naming the item.

Messages not built from items (chat and Anthropic ones) become items: text and images as a
message (an assistant's text as one string; ``refusal`` parts as text), each tool call as a
``function_call`` item (``tool_use`` input as JSON arguments; a legacy ``function_call`` gets
the id ``call_<message_id>``, which the next ``function`` message of that name answers), each
tool result as a ``function_call_output`` item before the rest of its user turn. ``name`` and
``is_error`` have no Responses counterpart and are dropped.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from .._frozen import thaw
from ..exceptions import MemoryValidationError
from ..interfaces import ContentBlock, Message, MessageContent
from ._anthropic import function_call_id
from ._common import (
    ASSISTANT,
    SYSTEM,
    TOOL,
    USER,
    BlockInput,
    block_type,
    build,
    dict_field,
    function_call_fields,
    image_source,
    list_or_none,
    located,
    plain,
    str_field,
    to_fields,
    tool_call_fields,
    tool_use_fields,
)
from ._items import read_item

if TYPE_CHECKING:
    from openai.types.responses import ResponseInputItemParam

__all__ = ["messages_from_responses_format", "messages_to_responses_format"]

Item = dict[str, Any]
#: Legacy ``function_call`` ids not yet answered, by function name, oldest first.
_Pending = dict[str, deque[str]]


def messages_from_responses_format(items: Iterable[BlockInput]) -> list[Message]:
    """Messages from Responses-API items (``input`` items, or ``response.output`` objects).

    A dict is kept exactly as given. An SDK output object is kept as the input item it
    stands for: its set fields, without ``created_by`` (set by the server on output items
    and not taken back as input), as the Agents SDK stores it.
    """
    out: list[Message] = []
    for index, raw in enumerate(items):
        with located(f"items[{index}]"):
            item = _item(raw)
            fields = read_item(item)
            out.append(
                build(
                    fields.role,
                    fields.content,
                    tool_calls=fields.tool_calls,
                    tool_call_id=fields.tool_call_id,
                    item=item,
                    metadata=None,
                    message_id=None,
                    timestamp=None,
                )
            )
    return out


def messages_to_responses_format(messages: Iterable[Message]) -> list[ResponseInputItemParam]:
    """The messages as Responses-API ``input`` items (for ``responses.create`` or an Agents
    SDK session): a message built from an item gives a copy of that item."""
    out: list[Item] = []
    pending: _Pending = {}
    for index, message in enumerate(messages):
        with located(f"messages[{index}]"):
            if message.item is not None:
                out.append(plain(message.item))
            else:
                out.extend(_to_items(message, pending))
    return cast("list[ResponseInputItemParam]", thaw(out))


def _item(raw: object) -> Item:
    if isinstance(raw, Mapping):
        return to_fields(raw, "a Responses item")
    item = to_fields(raw, "a Responses item")
    item.pop("created_by", None)
    output = item.get("output")
    if isinstance(output, list):
        for chunk in output:
            if isinstance(chunk, dict):
                chunk.pop("created_by", None)
    return item


def _to_items(message: Message, pending: _Pending) -> list[Item]:
    role = message.role
    if role is USER:
        return _user_items(message.content)
    if role is ASSISTANT:
        return _assistant_items(message, pending)
    if role is SYSTEM:
        return [{"role": "system", "content": _input_content(message.content, "content")}]
    if role is TOOL:
        if not message.tool_call_id:
            raise MemoryValidationError("tool messages need tool_call_id")
        return [_output_item(message.tool_call_id, message.content, "content")]
    if not message.name:
        raise MemoryValidationError("function messages need name")
    calls = pending.get(message.name)
    call_id = calls.popleft() if calls else function_call_id(message)
    return [_output_item(call_id, message.content, "content")]


def _user_items(content: MessageContent) -> list[Item]:
    if not isinstance(content, list):
        return [{"role": "user", "content": _input_content(content, "content")}]
    out: list[Item] = []
    parts: list[Item] = []
    for i, block in enumerate(content):
        where = f"content[{i}]"
        if block_type(block, where) == "tool_result":
            tool_id = str_field(block, "tool_use_id", where, nonempty=True)
            result = block.get("content")
            if result is not None and not isinstance(result, str):
                result = list_or_none(result, f"{where}.content")
            out.append(_output_item(tool_id, result, f"{where}.content"))
        else:
            parts.append(_input_part(block, where))
    if parts or not out:
        out.append({"role": "user", "content": parts})
    return out


def _assistant_items(message: Message, pending: _Pending) -> list[Item]:
    texts: list[str] = []
    calls: list[Item] = []
    for i, call in enumerate(message.tool_calls or ()):
        calls.append(_call_item(*tool_call_fields(call, f"tool_calls[{i}]")))
    content = message.content
    for i, block in enumerate(content if isinstance(content, list) else ()):
        where = f"content[{i}]"
        kind = block_type(block, where)
        if kind == "text" or kind == "refusal":
            texts.append(str_field(block, kind, where))
        elif kind == "tool_use":
            tool_id, name, tool_input = tool_use_fields(block, where)
            calls.append(_call_item(tool_id, name, json.dumps(tool_input)))
        else:
            raise MemoryValidationError(
                f"{where}: {kind!r} blocks have no Responses form in assistant messages"
            )
    if message.function_call is not None:
        name, arguments = function_call_fields(message.function_call, "function_call")
        call_id = function_call_id(message)
        pending.setdefault(name, deque()).append(call_id)
        calls.append(_call_item(call_id, name, arguments))
    text = content if isinstance(content, str) else "\n".join(texts)
    if text or not calls:
        return [{"role": "assistant", "content": text}, *calls]
    return calls


def _call_item(call_id: str, name: str, arguments: str) -> Item:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def _output_item(call_id: str, content: MessageContent, where: str) -> Item:
    output = "" if content is None else _input_content(content, where)
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def _input_content(content: MessageContent, where: str) -> str | list[Item]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return _input_parts(content, where)


def _input_parts(blocks: list[ContentBlock], where: str) -> list[Item]:
    return [_input_part(block, f"{where}[{i}]") for i, block in enumerate(blocks)]


def _input_part(block: ContentBlock, where: str) -> Item:
    kind = block_type(block, where)
    if kind == "text" or kind == "refusal":
        return {"type": "input_text", "text": str_field(block, kind, where)}
    if kind == "image_url":
        image = dict_field(block, "image_url", where)
        url = str_field(image, "url", f"{where}.image_url", nonempty=True)
        return _image_part(url, image.get("detail"))
    if kind == "image":
        source = image_source(block, where)
        url = source.get("url") or f"data:{source['media_type']};base64,{source['data']}"
        return _image_part(url, None)
    raise MemoryValidationError(f"{where}: {kind!r} blocks have no Responses form")


def _image_part(url: str, detail: object) -> Item:
    chosen = detail if detail in ("auto", "low", "high") else "auto"
    return {"type": "input_image", "image_url": url, "detail": chosen}
