"""One walk over message content blocks, for every part of the runtime that looks inside them.

Content is a string, ``None`` or a list of content blocks (OpenAI parts or Anthropic blocks);
an Anthropic ``tool_result`` block holds a string or a list of blocks of its own. What a
message is for the tool-exchange rules (a plain message, a call, or a result) and which call
ids it asks for or answers are decided here too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from enum import IntEnum
from typing import Any

__all__ = [
    "CALL",
    "PLAIN",
    "RESULT",
    "Kind",
    "call_ids",
    "count_images",
    "iter_blocks",
    "kind_of",
    "result_ids",
    "text_of",
    "token_text",
]

Block = Mapping[str, Any]


class Kind(IntEnum):
    """The part a message plays in a tool exchange."""

    PLAIN = 0
    CALL = 1  # asks for tools: results must follow it
    RESULT = 2  # answers a call: the call must precede it


#: The members as module names: looking one up on the class costs ~120 ns on Python 3.11, which
#: the per-message walks (context windows, trims) pay once per message.
PLAIN, CALL, RESULT = Kind.PLAIN, Kind.CALL, Kind.RESULT


def iter_blocks(content: Sequence[Block]) -> Iterator[tuple[Block, bool]]:
    """Each block with ``False``; after a ``tool_result`` with a list, its blocks with ``True``."""
    for block in content:
        yield block, False
        if block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, list):
                for nested in inner:
                    yield nested, True


def kind_of(answers: bool, content: object, asks: bool) -> Kind:
    """``answers``: the role is ``tool`` or ``function``; ``asks``: it carries tool calls."""
    if answers:
        return RESULT
    if isinstance(content, list) and content:
        types = {block.get("type") for block in content if isinstance(block, dict)}
        if "tool_result" in types:
            return RESULT
        if "tool_use" in types:
            return CALL
    return CALL if asks else PLAIN


def text_of(content: str | Sequence[Block] | None) -> str:
    """What a reader sees: the text blocks (and tool results' text), one per line."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block, _ in iter_blocks(content):
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif kind == "tool_result":
            inner = block.get("content")
            if inner is not None and not isinstance(inner, list):
                parts.append(str(inner))
    return "\n".join(parts)


def token_text(content: Sequence[Block]) -> str:
    """The text a model is charged for: text, tool calls with their input, tool results."""
    parts: list[str] = []
    for block, nested in iter_blocks(content):
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input", {}), sort_keys=True)
            parts.append(f"{block.get('name', '')} {arguments}")
        elif kind == "tool_result":
            inner = block.get("content")
            if not isinstance(inner, list):
                parts.append("" if inner is None else str(inner))
            elif not any(b.get("type") != "image" for b in inner):
                parts.append("")
        elif not (nested and kind == "image"):
            parts.append("")
    return "\n".join(parts)


def count_images(content: Sequence[Block]) -> int:
    """Image blocks, including those inside tool results."""
    return sum(1 for block, _ in iter_blocks(content) if block.get("type") == "image")


def call_ids(content: object, tool_calls: Sequence[Block] | None) -> set[str]:
    """Ids of the tool calls a message asks for."""
    ids = {str(call.get("id")) for call in tool_calls or ()}
    if isinstance(content, list):
        ids |= {str(b.get("id")) for b in content if b.get("type") == "tool_use"}
    return ids


def result_ids(content: object, tool_call_id: str | None) -> set[str]:
    """Ids of the tool calls a message answers."""
    ids = {tool_call_id} if tool_call_id else set()
    if isinstance(content, list):
        ids |= {str(b.get("tool_use_id")) for b in content if b.get("type") == "tool_result"}
    return ids
