"""A plain-list model of one session's history, for the editing property tests.

The builder records, for every message it makes, which tool-call ids the message asks for
and which it answers. The model decides from those records (not by reading message content
as the runtime does) what an edit removes, and the test reads returned messages' content
with its own small walk to check that no tool result is left without its call.

Positions follow the documented numbering: messages are numbered from 0 in the order they
were added; a removal leaves a hole, except at the end, where the numbering shrinks back to
the newest message left; a clear keeps counting from where it was. A summary covers every
message numbered below its ``covers_through`` and goes when one of them is removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langswarm.core.memory import Message, MessageRole, create_anthropic_message

__all__ = [
    "Builder",
    "Covered",
    "Entry",
    "History",
    "answered",
    "asked",
    "orphans",
    "shape",
]


@dataclass(frozen=True)
class Entry:
    """A message as built, with the tool-call ids it asks for and answers."""

    message: Message
    asks: frozenset[str] = frozenset()
    answers: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        return self.message.message_id


@dataclass
class Builder:
    """Makes messages with ids and tool-call ids unique within one example."""

    prefix: str
    made: int = 0

    def _next(self, kind: str) -> str:
        self.made += 1
        return f"{self.prefix}{kind}{self.made}"

    def text(self, role: MessageRole) -> Entry:
        message_id = self._next("m")
        content = f"{role.value} says {message_id}"
        return Entry(Message(role=role, content=content, message_id=message_id))

    def openai_call(self, calls: int) -> Entry:
        ids = [self._next("call_") for _ in range(calls)]
        tool_calls = [
            {"id": i, "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
            for i in ids
        ]
        message = Message(
            role=MessageRole.ASSISTANT, tool_calls=tool_calls, message_id=self._next("m")
        )
        return Entry(message, asks=frozenset(ids))

    def openai_result(self, call_id: str) -> Entry:
        message = Message(
            role=MessageRole.TOOL,
            content=f"result of {call_id}",
            tool_call_id=call_id,
            message_id=self._next("m"),
        )
        return Entry(message, answers=frozenset({call_id}))

    def anthropic_call(self, calls: int) -> Entry:
        ids = [self._next("toolu_") for _ in range(calls)]
        blocks: list[dict[str, Any]] = [{"type": "text", "text": "let me look"}]
        blocks += [{"type": "tool_use", "id": i, "name": "lookup", "input": {}} for i in ids]
        message = create_anthropic_message("assistant", blocks, message_id=self._next("m"))
        return Entry(message, asks=frozenset(ids))

    def anthropic_result(self, call_ids: Sequence[str]) -> Entry:
        blocks = [
            {"type": "tool_result", "tool_use_id": i, "content": f"result of {i}"} for i in call_ids
        ]
        message = create_anthropic_message("user", blocks, message_id=self._next("m"))
        return Entry(message, answers=frozenset(call_ids))

    def exchange(self, style: str, calls: int, answer_groups: int) -> list[Entry]:
        """A call asking for ``calls`` tools and its results: one message per result
        (OpenAI), or the results spread over up to ``answer_groups`` messages (Anthropic)."""
        if style == "openai":
            call = self.openai_call(calls)
            return [call, *(self.openai_result(i) for i in sorted(call.asks))]
        call = self.anthropic_call(calls)
        ids = sorted(call.asks)
        groups = max(1, min(answer_groups, len(ids)))
        return [call, *(self.anthropic_result(ids[g::groups]) for g in range(groups))]


@dataclass(frozen=True)
class Covered:
    """A summary as the model sees it: where its coverage ends and how many messages it
    covers."""

    covers_through: int
    message_count: int


@dataclass
class History:
    """The live messages of one session with their positions, its summaries, and the edits'
    rules over them."""

    first: int = 0  # the lowest position in use (a clear moves it up to ``next``)
    next: int = 0  # the position the next message gets
    slots: list[tuple[int, Entry]] = field(default_factory=list)  # live, in order
    summaries: list[Covered] = field(default_factory=list)

    @property
    def entries(self) -> list[Entry]:
        return [entry for _, entry in self.slots]

    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def holds(self, message_id: str) -> bool:
        return any(e.id == message_id for e in self.entries)

    def append(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.slots.append((self.next, entry))
            self.next += 1

    def pop(self) -> Entry | None:
        if not self.slots:
            return None
        entry = self.slots[-1][1]
        self.remove([entry.id])
        return entry

    def exchange(self, message_id: str) -> list[Entry]:
        """The message with every live message linked to it through a shared call id
        (transitively), in history order."""
        members = {message_id}
        grown = True
        while grown:
            linked = {i for e in self.entries if e.id in members for i in e.asks | e.answers}
            grown = False
            for e in self.entries:
                if e.id not in members and (e.asks | e.answers) & linked:
                    members.add(e.id)
                    grown = True
        return [e for e in self.entries if e.id in members]

    def remove(self, ids: Iterable[str]) -> None:
        """Take out live messages: a hole where each was, the numbering shrunk back to the
        newest one left, and every summary covering a removed one dropped."""
        gone = set(ids)
        seqs = [seq for seq, e in self.slots if e.id in gone]
        self.slots = [(seq, e) for seq, e in self.slots if e.id not in gone]
        self.next = max(self.slots[-1][0] + 1, self.first) if self.slots else self.first
        cut = min(min(seqs), self.next)
        self.summaries = [s for s in self.summaries if s.covers_through <= cut]

    def clear(self) -> None:
        self.first = self.next
        self.slots, self.summaries = [], []

    def fork_refused(self, at: str) -> bool:
        """Whether the message right after ``at`` answers a call at or before ``at``."""
        entries = self.entries
        index = self.ids().index(at)
        if index + 1 == len(entries):
            return False
        before = {i for e in entries[: index + 1] for i in e.asks}
        return bool(entries[index + 1].answers & before)

    def fork(self, at: str | None) -> History:
        """The history a fork at ``at`` (everything, for ``None``) starts with: the messages
        up to it renumbered without holes, and the latest summary within them."""
        kept = self.slots if at is None else self.slots[: self.ids().index(at) + 1]
        end = kept[-1][0] + 1 if at is not None else self.next
        fork = History(self.first, self.first)
        fork.append(e for _, e in kept)
        within = [s for s in self.summaries if s.covers_through <= end]
        if within:
            latest = within[-1]
            covered = sum(1 for seq, _ in kept if seq < latest.covers_through)
            fork.summaries = [Covered(self.first + covered, latest.message_count)]
        return fork

    def covered(self) -> int:
        """Where the latest summary ends (the first position, without one)."""
        return self.summaries[-1].covers_through if self.summaries else self.first

    def summarize(self) -> Covered | None:
        """Summarise what no summary covers yet, up to the end, but leaving out a trailing call
        still waiting for results (and the results it has so far); ``None`` if that leaves
        nothing to cover."""
        start = self.covered()
        by_seq = dict(self.slots)
        segment = [by_seq.get(seq) for seq in range(start, self.next)]
        cut = _open_call(segment)
        if cut == 0:
            return None
        end = start + cut
        summary = Covered(end, sum(1 for seq, _ in self.slots if seq < end))
        self.summaries.append(summary)
        return summary

    def after_summary(self) -> list[Entry]:
        """What a context window holds after the latest summary's message."""
        end = self.covered()
        return [e for seq, e in self.slots if seq >= end]


def _open_call(segment: Sequence[Entry | None]) -> int:
    """Where ``segment`` ends once a trailing open exchange is left out: a call at the end,
    or a call followed only by some of its results (``None`` stands for a hole)."""
    end = len(segment)
    if end and segment[-1] is not None and segment[-1].asks:
        return end - 1
    call = end - 1
    while call > 0 and segment[call] is not None and segment[call].answers:  # type: ignore[union-attr]
        call -= 1
    head = segment[call] if 0 <= call < end - 1 else None
    if head is not None and head.asks:
        answered_ids = {i for e in segment[call + 1 :] if e is not None for i in e.answers}
        if not head.asks <= answered_ids:
            return call
    return end


def asked(message: Message) -> set[str]:
    """Call ids a returned message asks for, read from its fields."""
    ids = {str(call["id"]) for call in message.tool_calls or ()}
    if isinstance(message.content, list):
        ids |= {str(b["id"]) for b in message.content if b.get("type") == "tool_use"}
    return ids


def answered(message: Message) -> set[str]:
    """Call ids a returned message answers, read from its fields."""
    ids = {message.tool_call_id} if message.tool_call_id else set()
    if isinstance(message.content, list):
        ids |= {str(b["tool_use_id"]) for b in message.content if b.get("type") == "tool_result"}
    return ids


def orphans(messages: Sequence[Message]) -> list[str]:
    """Ids of messages that answer a call no earlier message in ``messages`` asks for."""
    seen: set[str] = set()
    found: list[str] = []
    for message in messages:
        if answered(message) - seen:
            found.append(message.message_id)
        seen |= asked(message)
    return found


def shape(message: Message) -> tuple[object, ...]:
    """What storage must give back unchanged: everything but the runtime's token count."""
    return (
        message.message_id,
        message.role,
        message.content,
        message.tool_calls,
        message.tool_call_id,
        dict(message.metadata),
        message.timestamp,
    )
