"""When a session is summarised, what each summary covers, and who waits for it. No I/O.

At most one summary of a session is made at a time, beside the actor. An automatic summary is
due each time ``auto_summarize_threshold`` messages have arrived since the last trigger point,
or when ``max_messages`` needs more of the session covered; triggers that fire while one runs
fold into the next. A manual summary asked for during another runs right after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._tokens import ensure_counted
from ..interfaces import ConversationSummary, Message, MessageRole, SummaryType
from .mailbox import Reply

__all__ = ["SummaryJob", "SummaryScheduler", "summary_message"]

Made = ConversationSummary


@dataclass(frozen=True, slots=True)
class SummaryJob:
    """One summary to make: the stored messages from ``start`` up to ``end`` (moved back, if
    needed, so that no tool exchange is split), folded into ``previous``."""

    summary_type: SummaryType
    previous: ConversationSummary | None
    start: int
    end: int


def summary_message(summary: ConversationSummary) -> Message:
    """The system message that stands for ``summary`` at the head of a context window."""
    return Message(
        role=MessageRole.SYSTEM,
        content=f"Summary of the earlier conversation:\n{summary.summary_text}",
        timestamp=summary.created_at,
        message_id=f"summary-{summary.summary_id}",
        metadata={"summary_id": summary.summary_id, "covers_through": summary.covers_through},
    )


def _last_trigger(summaries: list[ConversationSummary]) -> int:
    """The trigger point of the latest automatic summary (0 without one)."""
    return max(
        (
            int(s.metadata.get("trigger_seq", s.covers_through))
            for s in summaries
            if s.summary_type is SummaryType.AUTOMATIC
        ),
        default=0,
    )


class SummaryScheduler:
    """A session's summaries and the bookkeeping of the next ones."""

    __slots__ = (
        "_due_end",
        "_head",
        "_last_trigger",
        "_listing",
        "_queued",
        "_waiting",
        "due",
        "running",
        "summaries",
    )

    def __init__(self, summaries: list[ConversationSummary]) -> None:
        self.summaries = summaries
        self.running = False
        self.due = False
        self._due_end = 0
        self._last_trigger = _last_trigger(summaries)
        self._waiting: list[Reply[Made]] = []  # callers of the summary being made
        self._queued: list[Reply[Made]] = []  # manual summaries asked for meanwhile
        self._listing: list[Reply[list[ConversationSummary]]] = []
        self._head: Message | None = None

    @property
    def latest(self) -> ConversationSummary | None:
        return self.summaries[-1] if self.summaries else None

    def covered(self, first: int) -> int:
        """Where the latest summary ends (``first`` without one)."""
        latest = self.latest
        return latest.covers_through if latest else first

    # -- triggers --------------------------------------------------------------------------

    def on_append(self, next_seq: int, threshold: int | None) -> None:
        if threshold and next_seq - self._last_trigger >= threshold:
            self._last_trigger = self._due_end = next_seq
            self.due = True

    def on_trim(self, covered: int, wanted: int, next_seq: int) -> None:
        """``max_messages`` wanted the session covered up to ``wanted``."""
        if covered < wanted and not self.due:
            self.due = True
            self._due_end = next_seq

    def floor(self, evict_margin: int) -> int | None:
        """Messages from here on stay in memory for a due summary to check its cut against."""
        return self._due_end - evict_margin if self.due else None

    def due_job(self, first: int, next_seq: int) -> SummaryJob | None:
        """The automatic summary to start now, if one is due and none runs."""
        if not self.due or self.running:
            return None
        return self.plan(SummaryType.AUTOMATIC, first, next_seq, self._due_end)

    def plan(
        self, summary_type: SummaryType, first: int, next_seq: int, end: int | None = None
    ) -> SummaryJob | None:
        """Mark a summary of ``[latest end, end)`` (default: everything so far) as running."""
        previous = self.latest
        start = max(previous.covers_through if previous else first, first)
        end = next_seq if end is None else max(min(end, next_seq), start)
        if end <= start and summary_type is SummaryType.AUTOMATIC:
            self.due = False  # nothing new to cover
            return None
        self.running = True
        self.due = False
        return SummaryJob(summary_type, previous, start, end)

    def adopt(self, summaries: list[ConversationSummary]) -> None:
        """Take the summaries storage holds (another process may have added some)."""
        self.summaries = summaries
        self._last_trigger = max(self._last_trigger, _last_trigger(summaries))

    # -- waiting ---------------------------------------------------------------------------

    def ask(self) -> tuple[Reply[Made], bool]:
        """A manual summary's reply, and whether it should start now (none running)."""
        reply: Reply[Made] = Reply()
        (self._queued if self.running else self._waiting).append(reply)
        return reply, not self.running

    def listing(self) -> Reply[list[ConversationSummary]]:
        """The summaries, once any summary being made has landed."""
        if not self.running:
            return Reply.of(list(self.summaries))
        reply: Reply[list[ConversationSummary]] = Reply()
        self._listing.append(reply)
        return reply

    def finish(self, summary: ConversationSummary | None) -> None:
        """Record a finished summary (``None``: it failed or was not stored)."""
        self.running = False
        latest = self.latest
        if summary is None:
            return
        # A summary that covers no message (an empty or cleared session) is not stored, so
        # not kept either.
        if summary.message_count > 0 and (
            latest is None or summary.covers_through > latest.covers_through
        ):
            self.summaries.append(summary)

    def settle(self, made: Made | None, error: BaseException) -> bool:
        """Answer the callers of the finished summary; return whether queued manual ones want
        another summary now."""
        waiting, self._waiting = self._waiting, []
        for reply in waiting:
            if made is None:
                reply.set_error(error)
            else:
                reply.set_result(made)
        if self._queued:
            self._waiting, self._queued = self._queued, []
            return True
        return False

    def release_listing(self) -> None:
        if self.running:
            return
        listing, self._listing = self._listing, []
        for reply in listing:
            reply.set_result(list(self.summaries))

    def fail_all(self, error: BaseException) -> None:
        replies: list[Reply[Any]] = [*self._waiting, *self._queued, *self._listing]
        for reply in replies:
            reply.set_error(error)
        self._waiting.clear()
        self._queued.clear()
        self._listing.clear()

    # -- context ---------------------------------------------------------------------------

    def head(self, include: bool, budget: int, first: int) -> tuple[list[Message], int, int]:
        """The summary message to lead a window with, the budget left, and the first sequence
        number the window may use."""
        summary = self.latest if include else None
        if summary is None:
            return [], budget, first
        message = self._head
        if message is None or message.metadata.get("summary_id") != summary.summary_id:
            message = self._head = summary_message(summary)
            ensure_counted([message])
        cost = message.token_count or 0
        if cost > budget:
            return [], budget, first
        return [message], budget - cost, max(first, summary.covers_through)
