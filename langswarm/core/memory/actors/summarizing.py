"""Handlers of the summary commands: list, create, and the report of a finished summary."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..exceptions import SummarizationError
from ..interfaces import ConversationSummary, SummaryType
from . import commands as c
from .mailbox import Reply
from .summaries import Made
from .upkeep import start_summary, trim

if TYPE_CHECKING:
    from .session import SessionActor

__all__ = ["SYNC"]


def get_summaries(actor: SessionActor, command: c.GetSummaries) -> Reply[list[ConversationSummary]]:
    return actor.summaries.listing()


def create_summary(actor: SessionActor, command: c.CreateSummary) -> Reply[Made]:
    """Summarise everything so far; asked during another summary, it runs right after."""
    reply, now = actor.summaries.ask()
    if now:
        tail = actor.tail
        job = actor.summaries.plan(command.summary_type, tail.first, tail.next)
        if job is not None:
            start_summary(actor, job)
    return reply


def summary_done(actor: SessionActor, command: c.SummaryDone) -> None:
    """Splice in a finished summary, answer its callers and start what waits for it."""
    summaries, tail = actor.summaries, actor.tail
    summary = command.summary
    summaries.finish(summary)
    failure = SummarizationError(
        f"summary failed: {command.error}"
        if command.error is not None
        else "another process summarised this session meanwhile; ask again"
    )
    again = summaries.settle(summary, failure)
    if not command.ours:
        actor.stale()  # take in what other processes stored meanwhile
    elif summary is not None and actor.meta.max_messages is not None:
        trim(actor)
    job = summaries.plan(SummaryType.MANUAL, tail.first, tail.next) if again else None
    if job is None and summary is not None:
        job = summaries.due_job(tail.first, tail.next)
    if job is not None:
        start_summary(actor, job)
    summaries.release_listing()


SYNC: dict[type, Callable[[SessionActor, Any], Any]] = {
    c.GetSummaries: get_summaries,
    c.CreateSummary: create_summary,
    c.SummaryDone: summary_done,
}
