"""Candidate sentences: a previous summary and new messages cut into valued units.

Each unit is one sentence (or one tool call or result) with what it is worth before its facts,
by who wrote it and what it does; :mod:`._extractive` chooses among them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._tokens import count_text_tokens
from ..interfaces import ContentBlock, Message, MessageRole
from ._budget import truncate
from ._sentences import (
    DECISION,
    PLEASANTRY,
    QUESTION_START,
    SPACE,
    find_facts,
    find_names,
    split_sentences,
)
from ._transcript import tool_result_text

__all__ = ["BASE_TOOL", "NOTED", "Collector", "Unit"]


@dataclass(slots=True)
class Unit:
    """One candidate sentence; units of one ``group`` print on one line after ``tag``."""

    seq: int
    group: int
    tag: str
    text: str
    base: float
    facts: list[tuple[str, str]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    opener: str | None = None
    tokens: int = 0
    weight: float = 1.0


# What a sentence is worth before its facts, by who wrote it and what it does.
_BASE_QUESTION = 6.0
_BASE_DECISION = 5.0
BASE_TOOL = 5.0
_BASE_USER = 3.0
_BASE_EARLIER = 3.0
_BASE_ASSISTANT = 1.0
_BASE_SYSTEM = 0.5
# What the previous summary's sentences count for next to new ones: the older past gives way
# first, a little more at every roll, so new messages always get their share of the budget.
_EARLIER_WEIGHT = 0.7
_MAX_UNIT_TOKENS = 48
#: Opens the summary's last line, the facts of the sentences left out.
NOTED = "Also noted: "
_TAG_LINE = re.compile(r"^(User|Assistant|System|Tool call|Tool result)((?: \([^)]*\))?): (.*)$")


def _base(tag: str, sentence: str) -> float:
    if tag.startswith("Tool"):
        return BASE_TOOL
    if tag.startswith("System"):
        return _BASE_SYSTEM
    if tag.startswith("User"):
        if sentence.endswith("?") or QUESTION_START.match(sentence):
            return _BASE_QUESTION
        return _BASE_DECISION if DECISION.search(sentence) else _BASE_USER
    if tag.startswith("Assistant"):
        if not sentence.endswith("?") and DECISION.search(sentence):
            return _BASE_DECISION
        return _BASE_ASSISTANT
    return _BASE_EARLIER


def _compact(value: Any) -> str:
    """A short ``k=v, ...`` rendering of a JSON value (tool arguments and results)."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_compact(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + "; ".join(_compact(v) for v in value) + "]"
    return "null" if value is None else SPACE.sub(" ", str(value)).strip()


def _compact_json(raw: str) -> str:
    try:
        return _compact(json.loads(raw))
    except ValueError:
        return SPACE.sub(" ", raw).strip()


class Collector:
    """Turns a previous summary and new messages into units, in conversation order."""

    def __init__(self) -> None:
        self.units: list[Unit] = []
        self.carried: list[tuple[str, str]] = []  # entries of a previous "Also noted:" line
        self._group = 0
        self._tool_names: dict[str, str] = {}
        self._weight = 1.0

    def previous(self, summary_text: str) -> None:
        self._weight = _EARLIER_WEIGHT
        for line in summary_text.splitlines():
            line = line.strip()
            if line.startswith(NOTED):
                for entry in line[len(NOTED) :].split("; "):
                    facts = find_facts(entry)
                    self.carried.append((facts[-1][0] if facts else entry, entry))
            elif match := _TAG_LINE.match(line):
                self._text(match.group(1) + match.group(2), match.group(3))
            elif line:
                self._text("", line)
        self._weight = 1.0

    def message(self, message: Message) -> None:
        role = message.role
        if role is MessageRole.TOOL or role is MessageRole.FUNCTION:
            name = message.name or self._tool_names.get(message.tool_call_id or "", "tool")
            self._tool_result(name, message.text())
            return
        tag = role.value.capitalize() + (f" ({message.name})" if message.name else "")
        content = message.content
        if isinstance(content, list):
            self._blocks(tag, content)
        elif content:
            self._text(tag, content)
        for call in message.tool_calls or ():
            fn = call.get("function", {})
            name = str(fn.get("name", "tool"))
            self._tool_names[str(call.get("id", ""))] = name
            self._tool_call(name, _compact_json(str(fn.get("arguments", ""))))
        if message.function_call:
            fc = message.function_call
            arguments = _compact_json(str(fc.get("arguments", "")))
            self._tool_call(str(fc.get("name", "tool")), arguments)

    def finish(self) -> list[Unit]:
        """Drop sentence openers never seen mid-sentence from the names; count tokens."""
        seen_inside = {n for u in self.units for n in u.names if n != u.opener}
        for unit in self.units:
            if unit.opener is not None and unit.opener not in seen_inside:
                unit.names.remove(unit.opener)
            unit.tokens = count_text_tokens(unit.text)
            if unit.tokens > _MAX_UNIT_TOKENS:
                _shrink(unit)
        return self.units

    def _blocks(self, tag: str, content: Sequence[ContentBlock]) -> None:
        """Blocks stay in their order: text, then the tool call it announces."""
        texts: list[str] = []
        for block in content:
            kind = block.get("type")
            if kind == "text":
                texts.append(str(block.get("text", "")))
                continue
            if kind not in ("tool_use", "tool_result"):
                continue
            self._text(tag, "\n".join(texts))
            texts.clear()
            if kind == "tool_use":
                name = str(block.get("name", "tool"))
                self._tool_names[str(block.get("id", ""))] = name
                self._tool_call(name, _compact(block.get("input", {})))
            else:
                name = self._tool_names.get(str(block.get("tool_use_id", "")), "tool")
                self._tool_result(name, tool_result_text(block))
        self._text(tag, "\n".join(texts))

    def _text(self, tag: str, text: str) -> None:
        if not text.strip():
            return
        self._group += 1
        for sentence in split_sentences(text):
            self._add(tag, sentence, _base(tag, sentence))

    def _tool_call(self, name: str, arguments: str) -> None:
        self._group += 1
        self._add("Tool call", f"{name}({arguments})", BASE_TOOL)

    def _tool_result(self, name: str, result: str) -> None:
        self._group += 1
        self._add("Tool result", f"{name} → {_compact_json(result)}", BASE_TOOL)

    def _add(self, tag: str, text: str, base: float) -> None:
        facts = find_facts(text)
        names, opener = find_names(text)
        if not facts and names in ([], [opener]) and base < BASE_TOOL:
            words = len(text.split())
            if words < 4 or (words < 10 and PLEASANTRY.match(text)):
                return  # "Thanks!", "Perfect, see you then." and the like
            if words < 6:
                base /= 2  # "What happens next?" means little out of context
        unit = Unit(
            len(self.units), self._group, tag, text, base, facts, names, opener, weight=self._weight
        )
        self.units.append(unit)


def _shrink(unit: Unit) -> None:
    """Cut an overlong sentence down to the clauses that carry facts, names or decisions."""
    clauses = re.split(r"(?<=[,;:])\s+|\s+[\u2014\u2013-]\s+", unit.text)
    keep = [
        c
        for i, c in enumerate(clauses)
        if i == 0 or find_facts(c) or find_names(c)[0] or DECISION.search(c)
    ]
    unit.text = truncate(" ".join(keep), _MAX_UNIT_TOKENS, ellipsis=" …")
    unit.facts = find_facts(unit.text)
    unit.names = [n for n in unit.names if n in unit.text]
    unit.tokens = count_text_tokens(unit.text)
