"""What a Responses-API item means for the rest of the runtime, and whether it converts.

A message built from an item keeps the item verbatim in ``Message.item`` and fills the
ordinary fields from it (see :func:`read_item`). Whether the item has a faithful chat
completions or Anthropic form is decided from the item alone, each time a converter meets it
(:func:`check_convertible`), so nothing but the item needs storing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import MemoryValidationError
from ..interfaces import ContentBlock, Message, MessageContent, MessageRole
from ._common import ASSISTANT, SYSTEM, TOOL, USER, located, str_field

__all__ = ["ItemFields", "check_convertible", "is_function_call_item", "item_type", "read_item"]

#: Items that ask the client for something, and the key holding the id their answer quotes.
_CALLS = {
    "function_call": "call_id",
    "computer_call": "call_id",
    "custom_tool_call": "call_id",
    "local_shell_call": "call_id",
    "shell_call": "call_id",
    "apply_patch_call": "call_id",
    "mcp_approval_request": "id",
}
#: Items that answer one of those, and the key holding the id of the call they answer.
_ANSWERS = {
    "function_call_output": "call_id",
    "computer_call_output": "call_id",
    "custom_tool_call_output": "call_id",
    "local_shell_call_output": "call_id",
    "shell_call_output": "call_id",
    "apply_patch_call_output": "call_id",
    "mcp_approval_response": "approval_request_id",
}
_ROLES = {"user": USER, "assistant": ASSISTANT, "system": SYSTEM, "developer": SYSTEM}
#: Keys that describe an item (its id, progress, display phase) rather than what it says.
_ITEM_KEYS = frozenset({"type", "id", "status", "phase"})
_MESSAGE_KEYS = _ITEM_KEYS | {"role", "content"}
_CALL_KEYS = _ITEM_KEYS | {"call_id", "name", "arguments"}
_OUTPUT_KEYS = _ITEM_KEYS | {"call_id", "output"}
_IMAGE_DETAILS = ("auto", "low", "high")


@dataclass(frozen=True, slots=True)
class ItemFields:
    """The ordinary message fields an item fills, and why it has no chat form (if it has none).

    ``problem`` is None when ``role``, ``content``, ``tool_calls`` and ``tool_call_id`` say all
    that the item says to a model, so converters may use them in its place.
    """

    role: MessageRole
    content: MessageContent = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    problem: str | None = None


def read_item(item: dict[str, Any]) -> ItemFields:
    """The fields of a message built from ``item``; malformed items of the kinds read here
    (messages, function calls and their outputs) raise :class:`MemoryValidationError`."""
    kind = item_type(item)
    if kind == "message":
        return _message(item)
    if kind == "function_call":
        call = {
            "id": str_field(item, "call_id", "function_call", nonempty=True),
            "type": "function",
            "function": {
                "name": str_field(item, "name", "function_call", nonempty=True),
                "arguments": str_field(item, "arguments", "function_call"),
            },
        }
        return ItemFields(ASSISTANT, tool_calls=[call], problem=_extra_keys(item, _CALL_KEYS))
    if kind == "function_call_output":
        call_id = str_field(item, "call_id", "function_call_output", nonempty=True)
        content, problem = _output(item.get("output"))
        problem = problem or _extra_keys(item, _OUTPUT_KEYS)
        return ItemFields(TOOL, content, tool_call_id=call_id, problem=problem)
    return _opaque(kind, item)


def item_type(item: Mapping[str, Any]) -> str:
    """An item's type; messages may leave it out (``{"role": ..., "content": ...}``)."""
    kind = item.get("type")
    if kind is None:
        if "role" in item:
            return "message"
        if "id" in item:
            return "item_reference"
    if not isinstance(kind, str) or not kind:
        raise MemoryValidationError("a Responses item needs a string 'type' (or a 'role')")
    return kind


def check_convertible(message: Message, target: str) -> None:
    """Raise if ``message`` was built from a Responses item with no faithful ``target`` form."""
    item = message.item
    if item is None:
        return
    problem = read_item(item).problem
    if problem is not None:
        name = f"{item_type(item)!r} item"
        if isinstance(item.get("id"), str):
            name += f" {item['id']!r}"
        raise MemoryValidationError(f"the Responses {name} cannot be sent to {target}: {problem}")


def is_function_call_item(message: Message) -> bool:
    """True for a message built from a ``function_call`` item."""
    return message.item is not None and message.item.get("type") == "function_call"


def _message(item: dict[str, Any]) -> ItemFields:
    name = item.get("role")
    role = _ROLES.get(name) if isinstance(name, str) else None
    if role is None:
        raise MemoryValidationError(
            f"message.role must be one of {', '.join(_ROLES)}, not {name!r}"
        )
    content = item.get("content")
    if isinstance(content, str):
        return ItemFields(role, content, problem=_extra_keys(item, _MESSAGE_KEYS))
    if not isinstance(content, list):
        raise MemoryValidationError(
            f"message.content must be a string or a list, not {type(content).__name__}"
        )
    with located("message"):
        blocks, problem = _parts(content, "content")
    return ItemFields(role, blocks, problem=problem or _extra_keys(item, _MESSAGE_KEYS))


def _output(output: object) -> tuple[MessageContent, str | None]:
    if isinstance(output, str):
        return output, None
    if not isinstance(output, list):
        raise MemoryValidationError(
            f"function_call_output.output must be a string or a list, not {type(output).__name__}"
        )
    with located("function_call_output"):
        return _parts(output, "output")


def _parts(parts: list[Any], where: str) -> tuple[list[ContentBlock], str | None]:
    """Content parts as the runtime's blocks; the first part with no such block, if any."""
    blocks: list[ContentBlock] = []
    problem: str | None = None
    for i, part in enumerate(parts):
        part_where = f"{where}[{i}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise MemoryValidationError(f"{part_where} must be a dict with a string 'type'")
        block = _block(part, part_where)
        if block is not None:
            blocks.append(block)
        elif problem is None:
            problem = f"{part_where} is an {part['type']!r} part, which has no equivalent"
    return blocks, problem


def _block(part: dict[str, Any], where: str) -> ContentBlock | None:
    kind = part["type"]
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": str_field(part, "text", where)}
    if kind == "refusal":
        return {"type": "refusal", "refusal": str_field(part, "refusal", where)}
    if kind == "input_image" and isinstance(part.get("image_url"), str) and part["image_url"]:
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail") in _IMAGE_DETAILS:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    return None


def _opaque(kind: str, item: dict[str, Any]) -> ItemFields:
    """An item with no chat form: reasoning, hosted tool calls, client calls other than
    functions and their outputs. Calls and answers keep their ids, so the runtime never
    separates one from the other."""
    problem = f"{kind!r} items have no equivalent"
    call_key = _CALLS.get(kind)
    if call_key is not None and _nonempty_str(item.get(call_key)):
        call = {"id": item[call_key], "type": kind}
        return ItemFields(ASSISTANT, tool_calls=[call], problem=problem)
    answer_key = _ANSWERS.get(kind)
    if answer_key is not None and _nonempty_str(item.get(answer_key)):
        return ItemFields(TOOL, tool_call_id=item[answer_key], problem=problem)
    return ItemFields(ASSISTANT, problem=problem)


def _extra_keys(item: dict[str, Any], known: frozenset[str]) -> str | None:
    """Keys with a value that the chat form has no place for (a direct caller is the default)."""
    extra = [key for key, value in item.items() if value and key not in known]
    if item.get("caller") == {"type": "direct"}:
        extra.remove("caller")
    if not extra:
        return None
    return f"its {', '.join(map(repr, extra))} {'has' if len(extra) == 1 else 'have'} no equivalent"


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value)
