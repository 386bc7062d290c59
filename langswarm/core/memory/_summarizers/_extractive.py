"""The offline extractive summarizer, and the greedy choice of sentences under a budget.

It splits the previous summary and the new messages into sentences, values each by what a
reader needs to carry on the conversation (the user's requests and questions, decisions and
commitments, tool calls and results, names, numbers, dates, amounts and identifiers), keeps the
most valuable ones that fit the budget, in their original order, and lists the facts of the
sentences it left out on a final ``Also noted:`` line.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Iterable, Sequence

import anyio.to_thread

from .._tokens import count_text_tokens
from ..interfaces import ConversationSummary, Message
from ._budget import check_budget, truncate
from ._candidates import NOTED, Collector, Unit

__all__ = ["ExtractiveSummarizer"]

# What a fact or name adds to a sentence's worth, new or already chosen elsewhere.
_FACT_VALUE = 3.0
_NAME_VALUE = 2.0
_REPEAT_VALUE = 0.25


class _Selection:
    """The units chosen so far, and the greedy step that adds more under a token budget."""

    def __init__(self, units: list[Unit]) -> None:
        self.units = units
        self.chosen: dict[int, Unit] = {}
        self.cost = 0
        self._groups: dict[int, int] = {}
        self._known: set[str] = set()
        self._tag_cost: dict[str, int] = {}

    def _cost(self, unit: Unit) -> int:
        """Tokens ``unit`` adds: its text, a space or newline, and its tag on a new line."""
        if unit.group in self._groups:
            return unit.tokens + 1
        if unit.tag not in self._tag_cost:
            self._tag_cost[unit.tag] = count_text_tokens(f"{unit.tag}: ") if unit.tag else 0
        return unit.tokens + 1 + self._tag_cost[unit.tag]

    def _score(self, unit: Unit) -> float:
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

    def _take(self, unit: Unit) -> None:
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
        groups: dict[int, list[Unit]] = {}
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
        candidate = f"{line}; {entry}" if line else f"{NOTED}{entry}"
        if count_text_tokens(candidate) > budget:
            break
        line = candidate
    return line


def _ranked_facts(carried: list[tuple[str, str]], units: list[Unit]) -> dict[str, str]:
    """Every fact and name once, as fact -> display: the most often mentioned first, then in
    order of first mention (``carried`` ones, from a previous ``Also noted:`` line, lead)."""
    facts: dict[str, str] = {}
    mentions: dict[str, int] = {}
    for fact, display in carried:
        facts.setdefault(fact, display)
    for unit in units:
        for fact, display in [*unit.facts, *((n, n) for n in unit.names)]:
            facts.setdefault(fact, display)
            mentions[fact] = mentions.get(fact, 0) + 1
    order = {fact: i for i, fact in enumerate(facts)}
    return dict(sorted(facts.items(), key=lambda f: (-mentions.get(f[0], 1), order[f[0]])))


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
        check_budget(max_tokens)
        collector = Collector()
        if previous is not None:
            collector.previous(previous.summary_text)
        for message in messages:
            collector.message(message)
        units = collector.finish()
        facts = _ranked_facts(collector.carried, units)

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
        return truncate(text, max_tokens)

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
