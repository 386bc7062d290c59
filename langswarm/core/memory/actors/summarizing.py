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


def get_summaries(
    actor: SessionActor, command: c.GetSummaries
) -> Reply[list[ConversationSummary]]:
    return actor.summaries.listing()


def create_summary(actor: SessionActor, command: c.CreateSummary) -> Reply[Made]:
    """Summarise everything so far; asked during another summary, it runs right after."""
    reply, now = actor.summaries.ask()
    if now:
        job = actor.summaries.plan(command.summary_type, actor.tail)
        if job is not None:
            start_summary(actor, job)
    return reply


def summary_done(actor: SessionActor, command: c.SummaryDone) -> None:
    """Splice in a finished summary, answer its callers and start what waits for it."""
    summaries = actor.summaries
    summary = command.summary
    made: Made | None = None
    if summary is not None:
        commit = None
        if summaries.finish(summary, None):
            commit = actor.host.flusher.summary(actor.session_id, summary)
        made = (summary, commit)
    else:
        summaries.finish(None, command.error)
        # Retried at the next trigger; appends never see this failure.
    again = summaries.settle(made, SummarizationError(f"summary failed: {command.error}"))
    if summary is not None and actor.meta.max_messages is not None:
        trim(actor)
    job = summaries.plan(SummaryType.MANUAL, actor.tail) if again else None
    if job is None and summary is not None:
        job = summaries.due_job(actor.tail)
    if job is not None:
        start_summary(actor, job)
    summaries.release_listing()


SYNC: dict[type, Callable[[SessionActor, Any], Any]] = {
    c.GetSummaries: get_summaries,
    c.CreateSummary: create_summary,
    c.SummaryDone: summary_done,
}
