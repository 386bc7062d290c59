"""Messages converted to an OpenAI chat completions ``messages`` list."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from .._frozen import thaw
from ..exceptions import MemoryValidationError
from ..interfaces import ContentBlock, Message, MessageContent, MessageRole
from ._common import (
    ASSISTANT,
    FUNCTION,
    TOOL,
    USER,
    block_type,
    collapse,
    dict_field,
    function_call_fields,
    image_source,
    located,
    result_items,
    str_field,
    tool_call_fields,
    tool_use_fields,
)
from ._items import check_convertible, is_function_call_item

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

__all__ = ["messages_to_openai_format", "text_content"]


def messages_to_openai_format(messages: Iterable[Message]) -> list[ChatCompletionMessageParam]:
    """The messages as an OpenAI chat ``messages`` list (for ``chat.completions.create``).

    Messages read from Responses items convert where chat has an equivalent; consecutive
    ``function_call`` items become one assistant message with several ``tool_calls``.
    """
    out: list[dict[str, Any]] = []
    merging = False  # the last message out holds tool calls of function_call items
    for index, message in enumerate(messages):
        with located(f"messages[{index}]"):
            check_convertible(message, "OpenAI chat completions")
            converted = _to_openai(message)
        calls = is_function_call_item(message)
        if calls and merging:
            out[-1]["tool_calls"].extend(converted[0]["tool_calls"])
        else:
            out.extend(converted)
        merging = calls
    return cast("list[ChatCompletionMessageParam]", thaw(out))


def _to_openai(message: Message) -> list[dict[str, Any]]:
    role = message.role
    content = message.content
    if role is ASSISTANT:
        return [_assistant_to_openai(message)]
    if role is TOOL:
        if not message.tool_call_id:
            raise MemoryValidationError("tool messages need tool_call_id")
        return [
            {
                "role": "tool",
                "tool_call_id": message.tool_call_id,
                "content": text_content(content, role),
            }
        ]
    if role is FUNCTION:
        if not message.name:
            raise MemoryValidationError("function messages need name")
        text = content if content is None or isinstance(content, str) else message.text()
        return [{"role": "function", "name": message.name, "content": text}]
    if role is USER and isinstance(content, list):
        return _user_blocks_to_openai(message, content)
    out: dict[str, Any] = {"role": role.value, "content": text_content(content, role)}
    if message.name:
        out["name"] = message.name
    return [out]


def _assistant_to_openai(message: Message) -> dict[str, Any]:
    calls = [
        _openai_tool_call(*tool_call_fields(call, f"tool_calls[{i}]"))
        for i, call in enumerate(message.tool_calls or ())
    ]
    content = message.content
    body: str | list[dict[str, Any]] | None = content if isinstance(content, str) else None
    if isinstance(content, list):
        parts = _assistant_parts(content, calls)
        if parts:
            body = collapse(parts)
    function_call = message.function_call
    if body is None and not calls and function_call is None:
        body = ""
    out: dict[str, Any] = {"role": "assistant", "content": body}
    if message.name:
        out["name"] = message.name
    if calls:
        out["tool_calls"] = calls
    if function_call is not None:
        name, arguments = function_call_fields(function_call, "function_call")
        out["function_call"] = {"name": name, "arguments": arguments}
    return out


def _assistant_parts(content: list[ContentBlock], calls: list[dict[str, Any]]) -> list[Any]:
    """Text and refusal parts of assistant blocks; ``tool_use`` blocks go to ``calls``."""
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        where = f"content[{i}]"
        kind = block_type(block, where)
        if kind == "text" or kind == "refusal":
            # A text part keeps its text under "text", a refusal part under "refusal".
            parts.append({"type": kind, kind: str_field(block, kind, where)})
        elif kind == "tool_use":
            tool_id, name, tool_input = tool_use_fields(block, where)
            calls.append(_openai_tool_call(tool_id, name, json.dumps(tool_input)))
        else:
            raise MemoryValidationError(
                f"{where}: {kind!r} blocks cannot be sent to OpenAI in assistant messages"
            )
    return parts


def _user_blocks_to_openai(message: Message, content: list[ContentBlock]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        where = f"content[{i}]"
        if block_type(block, where) != "tool_result":
            parts.append(_openai_user_part(block, where))
            continue
        texts: list[dict[str, Any]] = []
        for j, item in enumerate(result_items(block, where)):
            part = _openai_user_part(item, f"{where}.content[{j}]")
            # Tool messages hold text only; the result's images follow in the user message.
            (texts if part["type"] == "text" else parts).append(part)
        tool_id = str_field(block, "tool_use_id", where, nonempty=True)
        out.append({"role": "tool", "tool_call_id": tool_id, "content": collapse(texts)})
    if parts:
        user: dict[str, Any] = {"role": "user", "content": collapse(parts)}
        if message.name:
            user["name"] = message.name
        out.append(user)
    return out


def _openai_user_part(block: ContentBlock, where: str) -> dict[str, Any]:
    kind = block_type(block, where)
    if kind == "text":
        return {"type": "text", "text": str_field(block, "text", where)}
    if kind == "image_url":
        image = dict_field(block, "image_url", where)
        url = str_field(image, "url", f"{where}.image_url", nonempty=True)
        url_part: dict[str, Any] = {"url": url}
        if "detail" in image:
            url_part["detail"] = image["detail"]
        return {"type": "image_url", "image_url": url_part}
    if kind == "image":
        source = image_source(block, where)
        if source["type"] == "url":
            return {"type": "image_url", "image_url": {"url": source["url"]}}
        url = f"data:{source['media_type']};base64,{source['data']}"
        return {"type": "image_url", "image_url": {"url": url}}
    raise MemoryValidationError(
        f"{where}: {kind!r} blocks cannot be sent to OpenAI in user messages"
    )


def text_content(content: MessageContent, role: MessageRole) -> str | list[dict[str, Any]]:
    """Content of a message that may hold only text (system, tool), as OpenAI takes it."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for i, block in enumerate(content):
        where = f"content[{i}]"
        kind = block_type(block, where)
        if kind != "text":
            raise MemoryValidationError(f"{where}: {role.value} messages hold text, not {kind!r}")
        parts.append({"type": "text", "text": str_field(block, "text", where)})
    return collapse(parts)


def _openai_tool_call(tool_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": tool_id, "type": "function", "function": {"name": name, "arguments": arguments}}
