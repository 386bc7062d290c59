"""Checks and helpers shared by every provider format: field access with located errors, SDK
objects turned into plain data, and the construction of a :class:`Message`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol, TypeAlias

from .._validate import member_of
from ..exceptions import MemoryValidationError
from ..interfaces import Message, MessageContent, MessageRole

__all__ = [
    "ASSISTANT",
    "BlockInput",
    "ContentInput",
    "FUNCTION",
    "IMAGE_MEDIA_TYPES",
    "SYSTEM",
    "TOOL",
    "USER",
    "SupportsModelDump",
    "arguments_object",
    "block_type",
    "bool_field",
    "build",
    "collapse",
    "dict_field",
    "function_call_fields",
    "image_source",
    "list_or_none",
    "located",
    "parse_role",
    "plain",
    "reject_unknown_keys",
    "result_items",
    "str_field",
    "to_fields",
    "tool_call_fields",
    "tool_use_fields",
]

SYSTEM = MessageRole.SYSTEM
USER = MessageRole.USER
ASSISTANT = MessageRole.ASSISTANT
TOOL = MessageRole.TOOL
FUNCTION = MessageRole.FUNCTION

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


class SupportsModelDump(Protocol):
    """An SDK response object (a pydantic model of the ``openai`` or ``anthropic`` package)."""

    def model_dump(self, *, mode: str = ..., exclude_unset: bool = ...) -> dict[str, Any]: ...


#: A content block, message or item as accepted: a dict, or the SDK object it was read from.
BlockInput: TypeAlias = Mapping[str, Any] | SupportsModelDump
#: Message content as accepted: text, a list of blocks (dicts or SDK objects), or None.
ContentInput: TypeAlias = str | Sequence[BlockInput] | None


def plain(value: object) -> Any:
    """``value`` as fresh plain data: dicts and lists copied, SDK objects dumped.

    An SDK object becomes the JSON of the fields it was given (``exclude_unset``), which is
    what the SDKs themselves send when handed one of their objects as request data. A copy,
    so that a caller changing its value later cannot change a stored message.
    """
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [plain(item) for item in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_unset=True)
    return value


def to_fields(item: object, what: str = "a message") -> dict[str, Any]:
    """A message or item (a dict or an SDK object) as a fresh plain dict."""
    fields = plain(item)
    if not isinstance(fields, dict):
        raise MemoryValidationError(f"{what} must be a dict, not {type(item).__name__}")
    return fields


@contextmanager
def located(where: str) -> Iterator[None]:
    """Prefix the message of a :class:`MemoryValidationError` raised inside with ``where``."""
    try:
        yield
    except MemoryValidationError as exc:
        raise MemoryValidationError(f"{where}: {exc}") from None


def parse_role(
    role: MessageRole | str, allowed: tuple[MessageRole, ...], provider: str
) -> MessageRole:
    parsed = member_of(MessageRole, role)
    if parsed is None or parsed not in allowed:
        names = ", ".join(r.value for r in allowed)
        raise MemoryValidationError(f"unknown {provider} role {role!r}; expected one of {names}")
    return parsed


def reject_unknown_keys(mapping: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Reject keys we would otherwise drop; empty values (None, [], "") carry nothing."""
    known = set(allowed)
    unknown = sorted(str(key) for key, value in mapping.items() if key not in known and value)
    if unknown:
        raise MemoryValidationError(f"{where} has unsupported keys: {', '.join(unknown)}")


def block_type(block: object, where: str) -> str:
    if not isinstance(block, dict):
        raise MemoryValidationError(
            f"{where} must be a dict content block, not {type(block).__name__}"
        )
    kind = block.get("type")
    if not isinstance(kind, str):
        raise MemoryValidationError(f"{where} needs a string 'type'")
    return kind


def str_field(mapping: Mapping[str, Any], key: str, where: str, *, nonempty: bool = False) -> str:
    value = mapping.get(key)
    if isinstance(value, str) and (value or not nonempty):
        return value
    need = "a non-empty string" if nonempty else "a string"
    raise MemoryValidationError(f"{where}.{key} must be {need}, not {_describe(mapping, key)}")


def dict_field(mapping: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = mapping.get(key)
    if isinstance(value, dict):
        return value
    raise MemoryValidationError(f"{where}.{key} must be a dict, not {_describe(mapping, key)}")


def bool_field(mapping: Mapping[str, Any], key: str, where: str) -> bool:
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


def function_call_fields(function_call: object, where: str) -> tuple[str, str]:
    """``(name, arguments)`` of an OpenAI function call."""
    if not isinstance(function_call, dict):
        raise MemoryValidationError(
            f"{where} must be a dict with 'name' and 'arguments', "
            f"not {type(function_call).__name__}"
        )
    return (
        str_field(function_call, "name", where, nonempty=True),
        str_field(function_call, "arguments", where),
    )


def tool_call_fields(call: object, where: str) -> tuple[str, str, str]:
    """``(id, name, arguments)`` of an OpenAI tool call."""
    if not isinstance(call, dict):
        raise MemoryValidationError(
            f"{where} must be a dict with 'id', 'type' and 'function', not {type(call).__name__}"
        )
    tool_id = str_field(call, "id", where, nonempty=True)
    if call.get("type") != "function":
        raise MemoryValidationError(f"{where}.type must be 'function', not {call.get('type')!r}")
    name, arguments = function_call_fields(call.get("function"), f"{where}.function")
    return tool_id, name, arguments


def tool_use_fields(block: Mapping[str, Any], where: str) -> tuple[str, str, dict[str, Any]]:
    """``(id, name, input)`` of an Anthropic ``tool_use`` block."""
    return (
        str_field(block, "id", where, nonempty=True),
        str_field(block, "name", where, nonempty=True),
        dict_field(block, "input", where),
    )


def arguments_object(text: str, where: str) -> dict[str, Any]:
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


def image_source(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The checked ``source`` of an Anthropic image block, rebuilt from its known fields."""
    source = dict_field(block, "source", where)
    where = f"{where}.source"
    kind = source.get("type")
    if kind == "base64":
        media_type = source.get("media_type")
        if media_type not in IMAGE_MEDIA_TYPES:
            raise MemoryValidationError(
                f"{where}.media_type must be one of {', '.join(IMAGE_MEDIA_TYPES)}, "
                f"not {media_type!r}"
            )
        data = str_field(source, "data", where, nonempty=True)
        return {"type": "base64", "media_type": media_type, "data": data}
    if kind == "url":
        return {"type": "url", "url": str_field(source, "url", where, nonempty=True)}
    raise MemoryValidationError(f"{where}.type must be 'base64' or 'url', not {kind!r}")


def result_items(block: Mapping[str, Any], where: str) -> list[Any]:
    """A ``tool_result``'s content as a list of blocks (a string becomes one text block)."""
    content = block.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list_or_none(content, f"{where}.content")


def list_or_none(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MemoryValidationError(
            f"{where} must be a string or a list of content blocks, not {type(value).__name__}"
        )
    return value


def collapse(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone text part as a plain string; no parts as an empty string."""
    if not parts:
        return ""
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    return parts


def build(
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
    item: dict[str, Any] | None = None,
) -> Message:
    """A :class:`Message` from checked fields, which the caller no longer shares."""
    if metadata is not None and not isinstance(metadata, dict):
        raise MemoryValidationError("metadata must be a dict")
    optional: dict[str, Any] = {}
    if message_id is not None:
        optional["message_id"] = message_id
    if timestamp is not None:
        optional["timestamp"] = timestamp
    return Message(
        role=role,
        content=content,
        metadata=dict(metadata) if metadata else {},
        name=name,
        function_call=function_call,
        tool_calls=tool_calls,
        tool_call_id=tool_call_id,
        item=item,
        **optional,
    )
