"""Summarizers: the offline extractive default and LLM summarizers for OpenAI and Anthropic.

Every summarizer is rolling: it folds ``previous.summary_text`` into the new summary, so one
summary always covers the session from its start, and its output fits ``max_tokens`` as
counted by :func:`count_text_tokens`.

The extractive summarizer splits the previous summary and the new messages into sentences,
values each by what a reader needs to carry on the conversation (the user's requests and
questions, decisions and commitments, tool calls and results, names, numbers, dates, amounts
and identifiers), keeps the most valuable ones that fit the budget, in their original order,
and lists the facts of the sentences it left out on a final ``Also noted:`` line.
"""

from __future__ import annotations

import functools
import heapq
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from ._tokens import count_text_tokens, get_encoding
from .exceptions import MemoryValidationError, SummarizationError
from .interfaces import ConversationSummary, Message, MessageRole

if TYPE_CHECKING:
    import anthropic
    import openai

__all__ = [
    "DEFAULT_PROMPT",
    "AnthropicSummarizer",
    "ExtractiveSummarizer",
    "OpenAISummarizer",
    "render_transcript",
]

DEFAULT_PROMPT = (
    "You keep a rolling summary of a conversation between a user and an assistant. Merge the "
    "previous summary (if any) and the new messages into one updated summary. Keep what a "
    "reader needs to continue the conversation: what the user asked for, decisions and "
    "commitments, names, and numbers, dates, amounts and identifiers copied exactly, and tool "
    "calls with their results. Drop greetings and repetition. Reply with the summary only, in "
    "plain text, at most {max_tokens} tokens."
)
"""The LLM summarizers' instructions; ``{max_tokens}`` is replaced by the token budget."""


def _check_budget(max_tokens: int) -> None:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise MemoryValidationError(f"max_tokens must be a positive int, not {max_tokens!r}")


def _truncate(text: str, max_tokens: int, *, ellipsis: str = "") -> str:
    """``text`` cut to ``max_tokens``, at a line, sentence or word end when one is near."""
    if count_text_tokens(text) <= max_tokens:
        return text
    encoding = get_encoding()
    tokens = encoding.encode_ordinary(text)
    keep = max_tokens - (count_text_tokens(ellipsis) if ellipsis else 0)
    while keep > 0:
        cut = encoding.decode(tokens[:keep])
        for mark in ("\n", ". ", "; ", ", ", " "):
            end = cut.rfind(mark)
            if end >= len(cut) // 2:
                cut = cut[: end + (1 if mark == ". " else 0)]
                break
        cut = cut.rstrip() + ellipsis if cut.strip() else ""
        if cut and count_text_tokens(cut) <= max_tokens:
            return cut
        keep -= 1
    return ""


# --------------------------------------------------------------------------------------------
# Text analysis


_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_WEEKDAY = r"(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day"
_UNIT = (
    r"(?:(?:business |working |calendar )?(?:second|minute|hour|day|night|week|month|year)s?"
    r"|guests?|people|persons?|seats?|rooms?|items?|rows?|pods?|users?|kg|km|miles?|GB|MB|TB)"
)
_FACT = re.compile(
    "|".join(
        [
            r"`[^`\n]{1,80}`",  # inline code
            r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",  # e-mail address
            rf"\b(?:{_WEEKDAY},? )?{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?\b(?:,? \d{{4}})?",
            rf"\b(?:{_WEEKDAY},? )?\d{{1,2}}(?:st|nd|rd|th)? {_MONTH}\b(?: \d{{4}})?",
            rf"\b{_WEEKDAY}\b",
            # amounts, ids, versions, times, percentages: any token holding a digit, with the
            # unit after it ("48 hours")
            r"[#$€£¥+]?\b[\w-]*\d(?:[\w.,:/+-]*[\w%])?(?: ?(?:%|am|pm|AM|PM|UTC)\b)?%?"
            rf"(?: {_UNIT}\b)?",
        ]
    )
)
_DATE_WORD = re.compile(rf"(?:{_WEEKDAY}|{_MONTH})$")
# A run of capitalised words, joined by a few lowercase particles: "Dr. Okafor", "Bank of Ireland".
_PARTICLES = frozenset(["and", "of", "de", "van", "von", "da", "del", "la", "le"])
_NAME = re.compile(
    r"\b(?:(?:Dr|Mr|Mrs|Ms|Prof|St)\. )?[A-Z][\w'\u2019-]*[A-Za-z0-9]"
    r"(?:(?: (?:and|of|de|van|von|da|del|la|le))? [A-Z][\w'\u2019-]*[A-Za-z0-9])*"
)
# Capitalised words that open sentences without naming anything.
_NOT_NAMES = frozenset(
    """
    A About Actually After Again All Also Alright Although An And Any Anything Are As At Be
    Because Before Best But By Can Could Dear Did Do Does Done Each Either Even Every First For
    From Glad Good Got Great Happy Has Have He Hello Her Here Hey Hi His How However I I'd I'll
    I'm I've If In Is It It's Its Just Let Let's Lovely Many May Maybe Might More Most My No
    Not Nothing Now OK Of Oh Ok Okay On Once One Only Or Other Our Perfect Please Same See She
    Should Since So Some Sorry Sounds Still Sure That That's The Their Then There There's These
    They This Those Thanks Thank To Today Tomorrow Unfortunately Until Very Was We We'll We're
    Well Were What When Where Whether Which While Who Why Will With Would Yes Yesterday Yet You
    You'd You'll You're You've Your
    """.split()  # noqa: SIM905 - a word list reads better as words
)
_QUESTION_START = re.compile(
    r"^(?:how|what|when|where|why|which|who|whom|whose|can|could|would|will|is|are|am|do|"
    r"does|did|should|may|might|have|has)\b",
    re.IGNORECASE,
)
# Words that mark a decision, commitment or change of state.
_DECISION = re.compile(
    r"\b(?:I'll|I will|we'll|we will|I've|let's|let us|decided?|agreed?|confirm(?:ed|s)?|"
    r"book(?:ed)?|schedul(?:e|ed)|reserv(?:e|ed)|cancel(?:l?ed)?|refund(?:ed)?|issued|"
    r"approv(?:e|ed)|applied|credited|charged|switch(?:ed)?|upgraded?|downgraded?|updated?|"
    r"changed?|moved?|rebooked|registered|set up|created|opened|sent|assigned|escalat\w+|"
    r"will be|is now|has been|have been|going to|plan(?:ned)?|recommend\w*|suggest\w*|"
    r"should|must|needs? to|go with|prefer|deadline|due|done|owns?|fix(?:ed)?)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9$€£#])")
_ABBREVIATION = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Prof|St|vs|No|approx|e\.g|i\.e|etc|Inc|Ltd)\.$")
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+")
_CODE_BLOCK = re.compile(r"```[^\n]*\n?(.*?)```", re.DOTALL)
_ERROR_LINE = re.compile(r"\w+(?:Error|Exception)\b")
_CONTEXT_SKIP = frozenset(
    """
    about after almost another around before between each every exactly first from into just
    last least more most nearly next only over roughly than that their there these this those
    under until upon what when which with within your
    """.split()  # noqa: SIM905 - a word list reads better as words
)
_PLEASANTRY = re.compile(
    r"^(?:hi|hello|hey|thanks|thank you|great|perfect|ok|okay|sure|wonderful|awesome|cool|"
    r"lovely|no problem|you're welcome|welcome|bye|goodbye|cheers|sounds good|got it)\b",
    re.IGNORECASE,
)
_SPACE = re.compile(r"\s+")


def _facts(text: str) -> list[tuple[str, str]]:
    """Numbers, dates, amounts, ids, e-mails and code in ``text``, as (fact, display) pairs.

    For a bare number ``display`` adds the word before it when that says what the number is
    ("order 88231"); it is what the ``Also noted:`` line shows.
    """
    found: list[tuple[str, str]] = []
    for match in _FACT.finditer(text):
        fact = match.group().rstrip(".,:;-/")
        if not fact:
            continue
        display = fact
        if not any(c.isalpha() for c in fact):
            before = text[: match.start()].rstrip()
            word = before.rsplit(None, 1)[-1] if before else ""
            if word.isalpha() and word.islower() and len(word) > 3 and word not in _CONTEXT_SKIP:
                display = f"{word} {fact}"
            elif len(fact) <= 2:
                display = ""  # a bare small number says nothing on its own
        found.append((fact, display))
    return found


def _names(text: str) -> tuple[list[str], str | None]:
    """Proper nouns in ``text``, and the one-word name opening it (if any).

    A capitalised word that opens a sentence may be an ordinary word ("Replacement of ..."):
    the caller keeps such an opener only if it also appears capitalised mid-sentence.
    """
    names: list[str] = []
    opener = None
    for match in _NAME.finditer(text):
        words = match.group().split(" ")
        dropped = False
        while words and (
            words[0] in _NOT_NAMES or words[0] in _PARTICLES or _DATE_WORD.match(words[0])
        ):
            words.pop(0)
            dropped = True
        while words and words[-1] in _PARTICLES:
            words.pop()
        if not words:
            continue
        name = " ".join(words)
        if match.start() == 0 and not dropped and len(words) == 1:
            opener = name
        names.append(name)
    return names, opener


def _split_sentences(text: str) -> list[str]:
    """Sentences of ``text``; list items and lines count as sentences of their own."""
    text = _CODE_BLOCK.sub(_code_gist, text)
    sentences: list[str] = []
    for line in text.splitlines():
        line = _SPACE.sub(" ", _LIST_MARKER.sub("", line)).strip()
        start = 0
        for match in _SENTENCE_END.finditer(line):
            if not _ABBREVIATION.search(line, 0, match.start()):
                sentences.append(line[start : match.start()].strip())
                start = match.end()
        sentences.append(line[start:].strip())
    return [s for s in sentences if s]


def _code_gist(match: re.Match[str]) -> str:
    """A fenced code block shrinks to its error line, or else its first line, as code."""
    lines = [line.strip() for line in match.group(1).splitlines() if line.strip()]
    if not lines:
        return ""
    errors = [line for line in lines if _ERROR_LINE.search(line)]
    gist = (errors[-1] if errors else lines[0])[:80].replace("`", "'")
    return f"\n`{gist}`\n"


def _compact(value: Any) -> str:
    """A short ``k=v, ...`` rendering of a JSON value (tool arguments and results)."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_compact(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + "; ".join(_compact(v) for v in value) + "]"
    return "null" if value is None else _SPACE.sub(" ", str(value)).strip()


def _tool_result_text(block: dict[str, Any]) -> str:
    """The text of an Anthropic ``tool_result`` block, marked when it reports an error."""
    inner = block.get("content")
    if isinstance(inner, list):
        text = "\n".join(str(b.get("text", "")) for b in inner if b.get("type") == "text")
    else:
        text = "" if inner is None else str(inner)
    return f"error: {text}" if block.get("is_error") else text


def _compact_json(raw: str) -> str:
    try:
        return _compact(json.loads(raw))
    except ValueError:
        return _SPACE.sub(" ", raw).strip()


# --------------------------------------------------------------------------------------------
# Extractive summarizer


@dataclass(slots=True)
class _Unit:
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
_BASE_TOOL = 5.0
_BASE_USER = 3.0
_BASE_EARLIER = 3.0
_BASE_ASSISTANT = 1.0
_BASE_SYSTEM = 0.5
_FACT_VALUE = 3.0
_NAME_VALUE = 2.0
_REPEAT_VALUE = 0.25
# What the previous summary's sentences count for next to new ones: the older past gives way
# first, a little more at every roll, so new messages always get their share of the budget.
_EARLIER_WEIGHT = 0.7
_MAX_UNIT_TOKENS = 48
_NOTED = "Also noted: "
_TAG_LINE = re.compile(r"^(User|Assistant|System|Tool call|Tool result)((?: \([^)]*\))?): (.*)$")


def _base(tag: str, sentence: str) -> float:
    if tag.startswith("Tool"):
        return _BASE_TOOL
    if tag.startswith("System"):
        return _BASE_SYSTEM
    if tag.startswith("User"):
        if sentence.endswith("?") or _QUESTION_START.match(sentence):
            return _BASE_QUESTION
        return _BASE_DECISION if _DECISION.search(sentence) else _BASE_USER
    if tag.startswith("Assistant"):
        if not sentence.endswith("?") and _DECISION.search(sentence):
            return _BASE_DECISION
        return _BASE_ASSISTANT
    return _BASE_EARLIER


class _Collector:
    """Turns a previous summary and new messages into units, in conversation order."""

    def __init__(self) -> None:
        self.units: list[_Unit] = []
        self.carried: list[tuple[str, str]] = []  # entries of a previous "Also noted:" line
        self._group = 0
        self._tool_names: dict[str, str] = {}
        self._weight = 1.0

    def previous(self, summary_text: str) -> None:
        self._weight = _EARLIER_WEIGHT
        for line in summary_text.splitlines():
            line = line.strip()
            if line.startswith(_NOTED):
                for entry in line[len(_NOTED) :].split("; "):
                    facts = _facts(entry)
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
            # Blocks stay in their order: text, then the tool call it announces.
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
                    self._tool_result(name, _tool_result_text(block))
            self._text(tag, "\n".join(texts))
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

    def finish(self) -> list[_Unit]:
        """Drop sentence openers never seen mid-sentence from the names; count tokens."""
        seen_inside = {n for u in self.units for n in u.names if n != u.opener}
        for unit in self.units:
            if unit.opener is not None and unit.opener not in seen_inside:
                unit.names.remove(unit.opener)
            unit.tokens = count_text_tokens(unit.text)
            if unit.tokens > _MAX_UNIT_TOKENS:
                _shrink(unit)
        return self.units

    def _text(self, tag: str, text: str) -> None:
        if not text.strip():
            return
        self._group += 1
        for sentence in _split_sentences(text):
            self._add(tag, sentence, _base(tag, sentence))

    def _tool_call(self, name: str, arguments: str) -> None:
        self._group += 1
        self._add("Tool call", f"{name}({arguments})", _BASE_TOOL)

    def _tool_result(self, name: str, result: str) -> None:
        self._group += 1
        self._add("Tool result", f"{name} → {_compact_json(result)}", _BASE_TOOL)

    def _add(self, tag: str, text: str, base: float) -> None:
        facts = _facts(text)
        names, opener = _names(text)
        if not facts and names in ([], [opener]) and base < _BASE_TOOL:
            words = len(text.split())
            if words < 4 or (words < 10 and _PLEASANTRY.match(text)):
                return  # "Thanks!", "Perfect, see you then." and the like
            if words < 6:
                base /= 2  # "What happens next?" means little out of context
        unit = _Unit(
            len(self.units), self._group, tag, text, base, facts, names, opener, weight=self._weight
        )
        self.units.append(unit)


def _shrink(unit: _Unit) -> None:
    """Cut an overlong sentence down to the clauses that carry facts, names or decisions."""
    clauses = re.split(r"(?<=[,;:])\s+|\s+[\u2014\u2013-]\s+", unit.text)
    keep = [
        c
        for i, c in enumerate(clauses)
        if i == 0 or _facts(c) or _names(c)[0] or _DECISION.search(c)
    ]
    unit.text = _truncate(" ".join(keep), _MAX_UNIT_TOKENS, ellipsis=" …")
    unit.facts = _facts(unit.text)
    unit.names = [n for n in unit.names if n in unit.text]
    unit.tokens = count_text_tokens(unit.text)


class _Selection:
    """The units chosen so far, and the greedy step that adds more under a token budget."""

    def __init__(self, units: list[_Unit]) -> None:
        self.units = units
        self.chosen: dict[int, _Unit] = {}
        self.cost = 0
        self._groups: dict[int, int] = {}
        self._known: set[str] = set()
        self._tag_cost: dict[str, int] = {}

    def _cost(self, unit: _Unit) -> int:
        """Tokens ``unit`` adds: its text, a space or newline, and its tag on a new line."""
        if unit.group in self._groups:
            return unit.tokens + 1
        if unit.tag not in self._tag_cost:
            self._tag_cost[unit.tag] = count_text_tokens(f"{unit.tag}: ") if unit.tag else 0
        return unit.tokens + 1 + self._tag_cost[unit.tag]

    def _score(self, unit: _Unit) -> float:
        """Value per token, softened so that long sentences rich in facts can still win."""
        facts = {f for f, _ in unit.facts}
        new_facts = len(facts - self._known)
        new_names = len(set(unit.names) - self._known)
        repeats = len(facts) + len(set(unit.names)) - new_facts - new_names
        value = (
            unit.base + _FACT_VALUE * new_facts + _NAME_VALUE * new_names + _REPEAT_VALUE * repeats
        )
        return unit.weight * value / math.sqrt(self._cost(unit) + 8)

    def fill(self, budget: int) -> None:
        """Add units while they fit ``budget``, best score first (lazy greedy).

        Scores only fall as more facts become known, so a popped unit whose fresh score still
        beats the next stored score is the true best. Ties go to the later sentence, the
        likelier one to hold a final decision.
        """
        heap = [(-self._score(u), -u.seq) for u in self.units if u.seq not in self.chosen]
        heapq.heapify(heap)
        while heap:
            _, neg_seq = heapq.heappop(heap)
            unit = self.units[-neg_seq]
            if self.cost + self._cost(unit) > budget:
                continue
            score = self._score(unit)
            if heap and (-score, neg_seq) > heap[0]:
                heapq.heappush(heap, (-score, neg_seq))
                continue
            self._take(unit)

    def _take(self, unit: _Unit) -> None:
        self.cost += self._cost(unit)
        self._groups[unit.group] = self._groups.get(unit.group, 0) + 1
        self.chosen[unit.seq] = unit
        self._known.update(f for f, _ in unit.facts)
        self._known.update(unit.names)

    def drop_worst(self) -> bool:
        """Remove the least valuable chosen unit; False when none is left."""
        if not self.chosen:
            return False
        worst = min(self.chosen.values(), key=lambda u: (u.base + len(u.facts), u.seq))
        chosen = [u for u in self.chosen.values() if u is not worst]
        self.chosen, self.cost, self._groups, self._known = {}, 0, {}, set()
        for unit in chosen:
            self._take(unit)
        return True

    def lines(self) -> list[str]:
        """The chosen units in conversation order, one line per group."""
        groups: dict[int, list[_Unit]] = {}
        for seq in sorted(self.chosen):
            groups.setdefault(self.chosen[seq].group, []).append(self.chosen[seq])
        lines = []
        for units in groups.values():
            text = " ".join(u.text for u in units)
            lines.append(f"{units[0].tag}: {text}" if units[0].tag else text)
        return lines


def _noted_line(entries: Iterable[str], budget: int) -> str:
    """As many ``entries`` as fit in ``budget`` tokens, on one ``Also noted:`` line."""
    line = ""
    for entry in entries:
        candidate = f"{line}; {entry}" if line else f"{_NOTED}{entry}"
        if count_text_tokens(candidate) > budget:
            break
        line = candidate
    return line


class ExtractiveSummarizer:
    """The default summarizer: offline, deterministic, rolling and cheap.

    The work is plain CPU in :meth:`summarize_sync`; :meth:`summarize` runs it in a worker
    thread so the event loop never waits on it.
    """

    async def summarize(
        self,
        messages: Sequence[Message],
        *,
        previous: ConversationSummary | None,
        max_tokens: int,
    ) -> str:
        """Return a summary of ``previous`` plus ``messages`` in at most ``max_tokens`` tokens."""
        work = functools.partial(
            self.summarize_sync, tuple(messages), previous=previous, max_tokens=max_tokens
        )
        return await anyio.to_thread.run_sync(work)

    def summarize_sync(
        self,
        messages: Sequence[Message],
        *,
        previous: ConversationSummary | None,
        max_tokens: int,
    ) -> str:
        """The same summary as :meth:`summarize`, computed in the calling thread."""
        _check_budget(max_tokens)
        collector = _Collector()
        if previous is not None:
            collector.previous(previous.summary_text)
        for message in messages:
            collector.message(message)
        units = collector.finish()

        # Every fact once, the most often mentioned first, then in order of first mention.
        facts: dict[str, str] = {}
        mentions: dict[str, int] = {}
        for fact, display in collector.carried:
            facts.setdefault(fact, display)
        for unit in units:
            for fact, display in [*unit.facts, *((n, n) for n in unit.names)]:
                facts.setdefault(fact, display)
                mentions[fact] = mentions.get(fact, 0) + 1
        order = {fact: i for i, fact in enumerate(facts)}
        facts = dict(sorted(facts.items(), key=lambda f: (-mentions.get(f[0], 1), order[f[0]])))

        selection = _Selection(units)
        selection.fill(max_tokens - (min(max_tokens // 5, 60) if facts else 0))
        text = self._compose(selection, facts, max_tokens)
        spare = max_tokens - count_text_tokens(text)
        if spare > 8:
            selection.fill(selection.cost + spare - 4)
            text = self._compose(selection, facts, max_tokens)
        while count_text_tokens(text) > max_tokens and selection.drop_worst():
            text = self._compose(selection, facts, max_tokens)
        if not text and units:
            best = max(units, key=lambda u: (u.base + len(u.facts) + len(u.names), -u.seq))
            text = f"{best.tag}: {best.text}" if best.tag else best.text
        return _truncate(text, max_tokens)

    @staticmethod
    def _compose(selection: _Selection, facts: dict[str, str], max_tokens: int) -> str:
        """The chosen lines, then the facts none of them mentions, as room allows."""
        lines = selection.lines()
        body = "\n".join(lines)
        missing = [display for fact, display in facts.items() if display and fact not in body]
        # "Marcus" adds nothing next to "Marcus Feld".
        missing = [d for d in missing if not any(d in other and d != other for other in missing)]
        room = max_tokens - count_text_tokens(body) - (1 if body else 0)
        noted = _noted_line(missing, room)
        return "\n".join([*lines, noted]) if noted else body


# --------------------------------------------------------------------------------------------
# LLM summarizers


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
            kind = block.get("type")
            if kind == "text" and str(block.get("text") or "").strip():
                entries.append(f"{speaker} {str(block['text']).strip()}")
            elif kind == "image":
                entries.append(f"{speaker} (an image)")
            elif kind == "tool_use":
                name = str(block.get("name", "tool"))
                tool_names[str(block.get("id", ""))] = name
                arguments = json.dumps(block.get("input", {}), ensure_ascii=False)
                entries.append(f"[tool call] {name} {arguments}")
            elif kind == "tool_result":
                name = tool_names.get(str(block.get("tool_use_id", "")), "tool")
                entries.append(f"[tool result {name}] {_tool_result_text(block)}")
        for call in message.tool_calls or ():
            fn = call.get("function", {})
            name = str(fn.get("name", "tool"))
            tool_names[str(call.get("id", ""))] = name
            entries.append(f"[tool call] {name} {fn.get('arguments', '')}")
        if message.function_call:
            fc = message.function_call
            entries.append(f"[tool call] {fc.get('name', 'tool')} {fc.get('arguments', '')}")
    return "\n\n".join(entries)


def _request_text(messages: Sequence[Message], previous: ConversationSummary | None) -> str:
    earlier = previous.summary_text.strip() if previous and previous.summary_text else "(none)"
    return (
        f"<previous_summary>\n{earlier}\n</previous_summary>\n\n"
        f"<new_messages>\n{render_transcript(messages)}\n</new_messages>"
    )


def _instructions(prompt: str, max_tokens: int) -> str:
    # str.replace, not str.format: a custom prompt may hold other braces (JSON examples).
    return prompt.replace("{max_tokens}", str(max_tokens))


def _no_call_needed(
    messages: Sequence[Message], previous: ConversationSummary | None, max_tokens: int
) -> str | None:
    """The answer when there is nothing new to summarize, else ``None``."""
    if messages:
        return None
    return _truncate(previous.summary_text if previous else "", max_tokens)


class _LLMSummarizer:
    """What the provider summarizers share: settings, budget checks, the final trim.

    ``max_output_tokens`` caps the model's reply (default: the summary budget); the reply is
    trimmed to the budget as counted here, since the provider's tokenizer may differ.
    """

    def __init__(self, client: Any, model: str, prompt: str, max_output_tokens: int | None) -> None:
        self.client = client
        self.model = model
        self.prompt = prompt
        self.max_output_tokens = max_output_tokens

    async def summarize(
        self,
        messages: Sequence[Message],
        *,
        previous: ConversationSummary | None,
        max_tokens: int,
    ) -> str:
        """Return a summary of ``previous`` plus ``messages`` in at most ``max_tokens`` tokens."""
        _check_budget(max_tokens)
        if (done := _no_call_needed(messages, previous, max_tokens)) is not None:
            return done
        text = await self._complete(
            _instructions(self.prompt, max_tokens),
            _request_text(messages, previous),
            self.max_output_tokens or max_tokens,
        )
        return _truncate(text.strip(), max_tokens)

    async def _complete(self, instructions: str, request: str, max_output: int) -> str:
        """One model call; the reply's text, or ``SummarizationError``."""
        raise NotImplementedError


class OpenAISummarizer(_LLMSummarizer):
    """Summarizes with an OpenAI chat model through the official async client."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str = "gpt-4o-mini",
        prompt: str = DEFAULT_PROMPT,
        max_output_tokens: int | None = None,
    ) -> None:
        super().__init__(client, model, prompt, max_output_tokens)

    async def _complete(self, instructions: str, request: str, max_output: int) -> str:
        import openai

        try:
            response = await self.client.chat.completions.create(
                model=self.model,
                messages=[
                    {"role": "system", "content": instructions},
                    {"role": "user", "content": request},
                ],
                max_completion_tokens=max_output,
            )
        except openai.OpenAIError as exc:
            raise SummarizationError(f"OpenAI summarization failed: {exc}") from exc
        choice = response.choices[0] if response.choices else None
        text = choice.message.content if choice else None
        if not text or not text.strip():
            refusal = choice.message.refusal if choice else None
            raise SummarizationError(
                f"OpenAI returned no summary text (model {self.model!r}"
                + (f", refusal: {refusal!r})" if refusal else ")")
            )
        return str(text)


class AnthropicSummarizer(_LLMSummarizer):
    """Summarizes with a Claude model through the official async Anthropic client."""

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        model: str = "claude-haiku-4-5",
        prompt: str = DEFAULT_PROMPT,
        max_output_tokens: int | None = None,
    ) -> None:
        super().__init__(client, model, prompt, max_output_tokens)

    async def _complete(self, instructions: str, request: str, max_output: int) -> str:
        import anthropic

        try:
            response = await self.client.messages.create(
                model=self.model,
                system=instructions,
                messages=[{"role": "user", "content": request}],
                max_tokens=max_output,
            )
        except anthropic.AnthropicError as exc:
            raise SummarizationError(f"Anthropic summarization failed: {exc}") from exc
        text = "".join(block.text for block in response.content if block.type == "text")
        if not text.strip():
            raise SummarizationError(
                f"Anthropic returned no summary text (model {self.model!r}, "
                f"stop reason {response.stop_reason!r})"
            )
        return text
