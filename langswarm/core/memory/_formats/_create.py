"""Messages built from OpenAI chat and Anthropic fields, checked against each provider's rules."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from ..exceptions import MemoryValidationError
from ..interfaces import ContentBlock, Message, MessageContent, MessageRole
from ._common import (
    ASSISTANT,
    FUNCTION,
    SYSTEM,
    TOOL,
    USER,
    BlockInput,
    ContentInput,
    arguments_object,
    block_type,
    bool_field,
    build,
    dict_field,
    function_call_fields,
    image_source,
    located,
    parse_role,
    plain,
    reject_unknown_keys,
    result_items,
    str_field,
    to_fields,
    tool_call_fields,
    tool_use_fields,
)

__all__ = [
    "create_anthropic_message",
    "create_openai_message",
    "messages_from_anthropic_format",
    "messages_from_openai_format",
]

_OPENAI_ROLES = (SYSTEM, USER, ASSISTANT, TOOL, FUNCTION)
_ANTHROPIC_ROLES = (USER, ASSISTANT, SYSTEM)
_OPENAI_PARTS = {
    SYSTEM: ("text",),
    USER: ("text", "image_url"),
    ASSISTANT: ("text", "refusal"),
    TOOL: ("text",),
}
_ANTHROPIC_BLOCKS = {
    USER: ("text", "image", "tool_result"),
    ASSISTANT: ("text", "tool_use"),
    SYSTEM: ("text",),
}
_OPENAI_MESSAGE_KEYS = frozenset(
    {"role", "content", "name", "function_call", "tool_calls", "tool_call_id"}
)
_ANTHROPIC_MESSAGE_KEYS = frozenset({"role", "content"})


def create_openai_message(
    role: MessageRole | str,
    content: ContentInput = None,
    *,
    name: str | None = None,
    function_call: BlockInput | None = None,
    tool_calls: Iterable[BlockInput] | None = None,
    tool_call_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    message_id: str | None = None,
    timestamp: datetime | None = None,
) -> Message:
    """A message from OpenAI chat fields, checked against OpenAI's rules.

    ``function_call`` and each of ``tool_calls`` must carry JSON-object ``arguments`` text, so
    the call can also be replayed to Anthropic. ``content`` may be None only for an assistant
    message that calls something, and for a function result. Content parts, the function
    call and tool calls may be the SDK's objects (``ChatCompletionMessageFunctionToolCall``...).
    """
    parsed = parse_role(role, _OPENAI_ROLES, "OpenAI")
    call = None if function_call is None else plain(function_call)
    calls = None if tool_calls is None else plain(tool_calls)
    _check_openai_fields(parsed, name, call, calls, tool_call_id)
    body = _openai_content(parsed, content, asks=call is not None or calls is not None)
    return build(
        parsed,
        body,
        name=name,
        function_call=call,
        tool_calls=calls,
        tool_call_id=tool_call_id,
        metadata=metadata,
        message_id=message_id,
        timestamp=timestamp,
    )


def create_anthropic_message(
    role: MessageRole | str,
    content: str | Sequence[BlockInput],
    *,
    metadata: dict[str, Any] | None = None,
    message_id: str | None = None,
    timestamp: datetime | None = None,
) -> Message:
    """A message from Anthropic fields, checked against Anthropic's rules.

    ``content`` may be a response's ``content`` list of SDK blocks as it is. A user message
    of ``tool_result`` blocks stays a user message; it answers the ``tool_use`` blocks of the
    assistant message before it.
    """
    parsed = parse_role(role, _ANTHROPIC_ROLES, "Anthropic")
    body: MessageContent
    if isinstance(content, str):
        body = content
    elif isinstance(content, list | tuple):
        blocks: list[ContentBlock] = plain(content)
        _check_anthropic_blocks(parsed, blocks)
        body = blocks
    else:
        raise MemoryValidationError(
            "Anthropic content must be a string or a non-empty list of content blocks, "
            f"not {type(content).__name__}"
        )
    return build(parsed, body, metadata=metadata, message_id=message_id, timestamp=timestamp)


def messages_from_openai_format(
    messages: Iterable[BlockInput],
) -> list[Message]:
    """Messages from an OpenAI chat ``messages`` list, each checked as by
    :func:`create_openai_message`.

    A message may be the SDK's ``ChatCompletionMessage`` (``completion.choices[0].message``).
    Its ``refusal`` text becomes a ``refusal`` content part; its ``annotations`` (citations of
    the response) are ignored; any other unknown key with a value is rejected rather than
    silently dropped.
    """
    out: list[Message] = []
    for index, item in enumerate(messages):
        with located(f"messages[{index}]"):
            fields = _openai_fields(item)
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
    return out


def messages_from_anthropic_format(
    messages: Iterable[BlockInput],
    system: ContentInput = None,
) -> list[Message]:
    """Messages from an Anthropic ``messages`` list, each checked as by
    :func:`create_anthropic_message`; a non-empty ``system`` becomes a leading system message.

    A message may be a response, as the SDK's ``Message`` or its ``model_dump()``: it counts
    as its ``role`` and ``content``, as ``Message.to_param()`` does; the keys that describe
    the response (``id``, ``model``, ``stop_reason``, ``usage``...) are ignored.
    """
    out: list[Message] = []
    if system is not None and system != "":
        with located("system"):
            out.append(create_anthropic_message(SYSTEM, system))
    for index, item in enumerate(messages):
        with located(f"messages[{index}]"):
            fields = _anthropic_fields(item)
            if "content" not in fields:
                raise MemoryValidationError("Anthropic messages need content")
            out.append(create_anthropic_message(fields["role"], fields["content"]))
    return out


def _openai_fields(item: object) -> dict[str, Any]:
    fields = _message_fields(item)
    fields.pop("annotations", None)  # citations in a response; a request has no such key
    refusal = fields.pop("refusal", None)
    if refusal:
        part = {"type": "refusal", "refusal": refusal}
        content = fields.get("content")
        if content is None or content == "":
            fields["content"] = [part]
        elif isinstance(content, str):
            fields["content"] = [{"type": "text", "text": content}, part]
        elif isinstance(content, list):
            fields["content"] = [*content, part]
    reject_unknown_keys(fields, _OPENAI_MESSAGE_KEYS, "message")
    return fields


def _anthropic_fields(item: object) -> dict[str, Any]:
    fields = _message_fields(item)
    if fields.get("type") == "message":
        return {key: fields[key] for key in ("role", "content") if key in fields}
    reject_unknown_keys(fields, _ANTHROPIC_MESSAGE_KEYS, "message")
    return fields


def _message_fields(item: object) -> dict[str, Any]:
    fields = to_fields(item)
    if "role" not in fields:
        raise MemoryValidationError("a message needs a role")
    return fields


# --- checks ------------------------------------------------------------------------------


def _check_openai_fields(
    role: MessageRole,
    name: object,
    function_call: object,
    tool_calls: object,
    tool_call_id: object,
) -> None:
    if name is not None and (not isinstance(name, str) or not name):
        raise MemoryValidationError("name must be a non-empty string")
    if role is FUNCTION and name is None:
        raise MemoryValidationError("function messages need name (the function's name)")
    if (function_call is not None or tool_calls is not None) and role is not ASSISTANT:
        raise MemoryValidationError("only assistant messages carry function_call or tool_calls")
    if function_call is not None and tool_calls is not None:
        raise MemoryValidationError("use function_call or tool_calls, not both")
    if function_call is not None:
        _check_function_call(function_call, "function_call")
    if tool_calls is not None:
        _check_tool_calls(tool_calls)
    if role is TOOL:
        if not isinstance(tool_call_id, str) or not tool_call_id:
            raise MemoryValidationError(
                "tool messages need tool_call_id (the id of the tool call they answer)"
            )
    elif tool_call_id is not None:
        raise MemoryValidationError("only tool messages carry tool_call_id")


def _openai_content(role: MessageRole, content: ContentInput, *, asks: bool) -> MessageContent:
    """``content`` checked, as plain data; ``asks``: the message carries a call."""
    if isinstance(content, str):
        return content
    if content is None:
        if not (asks or role is FUNCTION):
            raise MemoryValidationError(
                f"{role.value} messages need content; only an assistant message with "
                "function_call or tool_calls, or a function result, may have None"
            )
        return None
    if not isinstance(content, list | tuple):
        raise MemoryValidationError(
            "content must be a string, a list of content parts or None, "
            f"not {type(content).__name__}"
        )
    if role is FUNCTION:
        raise MemoryValidationError("function message content must be a string or None")
    parts: list[ContentBlock] = plain(content)
    _check_openai_parts(role, parts)
    return parts


def _check_openai_parts(role: MessageRole, content: list[Any]) -> None:
    if not content:
        raise MemoryValidationError("content must not be an empty list")
    allowed = _OPENAI_PARTS[role]
    for i, part in enumerate(content):
        where = f"content[{i}]"
        kind = block_type(part, where)
        if kind not in allowed:
            raise MemoryValidationError(
                f"{where}: {kind!r} parts are not allowed in OpenAI {role.value} messages "
                f"(allowed: {', '.join(allowed)})"
            )
        if kind == "image_url":
            image = dict_field(part, "image_url", where)
            str_field(image, "url", f"{where}.image_url", nonempty=True)
        else:
            str_field(part, kind, where)  # "text" holds its text under "text", "refusal" likewise


def _check_function_call(function_call: object, where: str) -> None:
    _, arguments = function_call_fields(function_call, where)
    assert isinstance(function_call, dict)  # checked by function_call_fields
    reject_unknown_keys(function_call, ("name", "arguments"), where)
    arguments_object(arguments, where)


def _check_tool_calls(tool_calls: object) -> None:
    if not isinstance(tool_calls, list) or not tool_calls:
        raise MemoryValidationError("tool_calls must be a non-empty list of tool calls")
    seen: set[str] = set()
    for i, call in enumerate(tool_calls):
        where = f"tool_calls[{i}]"
        tool_id, _, arguments = tool_call_fields(call, where)
        if tool_id in seen:
            raise MemoryValidationError(f"{where}: duplicate tool call id {tool_id!r}")
        seen.add(tool_id)
        reject_unknown_keys(call, ("id", "type", "function"), where)
        reject_unknown_keys(call["function"], ("name", "arguments"), f"{where}.function")
        arguments_object(arguments, f"{where}.function")


def _check_anthropic_blocks(role: MessageRole, blocks: list[Any]) -> None:
    if not blocks:
        raise MemoryValidationError("content must not be an empty list")
    allowed = _ANTHROPIC_BLOCKS[role]
    ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"content[{i}]"
        kind = block_type(block, where)
        if kind not in allowed:
            raise MemoryValidationError(
                f"{where}: {kind!r} blocks are not allowed in Anthropic {role.value} messages "
                f"(allowed: {', '.join(allowed)})"
            )
        tool_id = _check_anthropic_block(kind, block, where)
        if tool_id is not None:
            if tool_id in ids:
                raise MemoryValidationError(f"{where}: duplicate tool id {tool_id!r}")
            ids.add(tool_id)


def _check_anthropic_block(kind: str, block: ContentBlock, where: str) -> str | None:
    """Check one block of an allowed kind; the tool id it uses or answers, if any."""
    if kind == "text":
        str_field(block, "text", where)
        return None
    if kind == "image":
        image_source(block, where)
        return None
    if kind == "tool_use":
        return tool_use_fields(block, where)[0]
    tool_id = str_field(block, "tool_use_id", where, nonempty=True)
    for j, item in enumerate(result_items(block, where)):
        item_where = f"{where}.content[{j}]"
        item_kind = block_type(item, item_where)
        if item_kind == "text":
            str_field(item, "text", item_where)
        elif item_kind == "image":
            image_source(item, item_where)
        else:
            raise MemoryValidationError(
                f"{item_where}: tool results hold text and image blocks, not {item_kind!r}"
            )
    if "is_error" in block:
        bool_field(block, "is_error", where)
    return tool_id
