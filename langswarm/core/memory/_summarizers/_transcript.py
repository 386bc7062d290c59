"""Messages as a plain-text transcript, and the reading of tool results both summarizers share."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .._content import iter_blocks
from ..interfaces import Message, MessageRole

__all__ = ["render_transcript", "tool_result_text"]


def tool_result_text(block: Mapping[str, Any]) -> str:
    """The text of an Anthropic ``tool_result`` block, marked when it reports an error.

    Of a list of blocks only the text blocks directly inside count, one per line.
    """
    inner = block.get("content")
    if isinstance(inner, list):
        texts = [b for b, nested in iter_blocks([block]) if nested and b.get("type") == "text"]
        text = "\n".join(str(b.get("text", "")) for b in texts)
    else:
        text = "" if inner is None else str(inner)
    return f"error: {text}" if block.get("is_error") else text


def render_transcript(messages: Sequence[Message]) -> str:
    """``messages`` as a plain-text transcript, one ``[speaker] text`` entry per part.

    Tool calls show as ``[tool call] name {arguments}`` and results as ``[tool result name]``,
    so a model reads the conversation as data to summarize, not as turns to continue.
    """
    tool_names: dict[str, str] = {}
    entries: list[str] = []
    for message in messages:
        if message.role is MessageRole.TOOL or message.role is MessageRole.FUNCTION:
            name = message.name or tool_names.get(message.tool_call_id or "", "tool")
            entries.append(f"[tool result {name}] {message.text()}")
            continue
        speaker = f"[{message.role.value}{f' {message.name}' if message.name else ''}]"
        content = message.content
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        for block in blocks:
            entry = _block_entry(speaker, block, tool_names)
            if entry is not None:
                entries.append(entry)
        for call in message.tool_calls or ():
            fn = call.get("function", {})
            name = str(fn.get("name", "tool"))
            tool_names[str(call.get("id", ""))] = name
            entries.append(f"[tool call] {name} {fn.get('arguments', '')}")
        if message.function_call:
            fc = message.function_call
            entries.append(f"[tool call] {fc.get('name', 'tool')} {fc.get('arguments', '')}")
    return "\n\n".join(entries)


def _block_entry(speaker: str, block: Mapping[str, Any], tool_names: dict[str, str]) -> str | None:
    """The transcript entry for one content block (``None`` for an empty or unknown one).

    A ``tool_use`` block records its tool's name under its id, for the results that follow.
    """
    kind = block.get("type")
    if kind == "text" and str(block.get("text") or "").strip():
        return f"{speaker} {str(block['text']).strip()}"
    if kind == "image":
        return f"{speaker} (an image)"
    if kind == "tool_use":
        name = str(block.get("name", "tool"))
        tool_names[str(block.get("id", ""))] = name
        arguments = json.dumps(block.get("input", {}), ensure_ascii=False)
        return f"[tool call] {name} {arguments}"
    if kind == "tool_result":
        name = tool_names.get(str(block.get("tool_use_id", "")), "tool")
        return f"[tool result {name}] {tool_result_text(block)}"
    return None
