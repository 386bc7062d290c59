"""What keeps a live session within its limits after it changes: memory eviction,
``max_messages`` trims, and summaries, which run beside the actor and report back.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

import anyio

from .._tokens import count_text_tokens
from ..interfaces import ConversationSummary, Message
from . import commands as c
from .summaries import SummaryJob

if TYPE_CHECKING:
    from .session import SessionActor

__all__ = ["EVICTION_MARGIN", "after_append", "start_summary", "trim"]

log = logging.getLogger("langswarm.memory")

#: Messages kept before a pending summary's cut point, so it can be moved back safely.
EVICTION_MARGIN = 256


def after_append(actor: SessionActor) -> None:
    """Evict, trigger and trim after messages were added."""
    tail, summaries, meta = actor.tail, actor.summaries, actor.meta
    # A session with max_messages keeps that many in memory: trims are then always cut at a
    # boundary checked against the messages themselves.
    keep = max(actor.host.settings.tail_size, meta.max_messages or 0)
    floor = summaries.floor(EVICTION_MARGIN)
    tail.evict(keep, tail.next if floor is None else floor, actor.session_id)
    summaries.on_append(tail.next, meta.auto_summarize_threshold)
    if meta.max_messages is not None:
        trim(actor)
    job = summaries.due_job(tail)
    if job is not None:
        start_summary(actor, job)
    tail.check(actor.session_id)


def trim(actor: SessionActor) -> None:
    """Enforce ``max_messages``, dropping only what the latest summary covers; ask for a
    summary when too little is covered."""
    limit = actor.meta.max_messages
    tail = actor.tail
    if limit is None or tail.next - tail.first <= limit:
        return
    covered = actor.summaries.covered(tail.first)
    target = tail.trim_point(limit, covered)
    if target is not None:
        tail.drop_before(target)
        flusher = actor.host.flusher
        flusher.trim(actor.session_id, target)
        flusher.touch(actor.session_id, actor)
    actor.summaries.on_trim(covered, tail.next - limit, tail.next)


def start_summary(actor: SessionActor, job: SummaryJob) -> None:
    actor.host.spawn(_make_summary, actor, job)


async def _make_summary(actor: SessionActor, job: SummaryJob) -> None:
    """Runs beside the actor on a copy of what it covers; reports back with ``SummaryDone``.

    Messages appended meanwhile are not touched: the summary covers ``[start, end)`` only,
    and the actor splices it in when it arrives.
    """
    summary: ConversationSummary | None = None
    error: BaseException | None = None
    try:
        summary = await _summarize(actor, job)
    except Exception as exc:
        log.warning("summary of session %s failed: %s", actor.session_id, exc)
        error = exc
    actor.tell(c.SummaryDone(summary, error))


async def _summarize(actor: SessionActor, job: SummaryJob) -> ConversationSummary:
    host = actor.host
    messages: list[Message] = []
    if job.older is not None:
        messages = await host.backend.load_messages(
            actor.session_id, start=job.older[0], stop=job.older[1]
        )
    messages += job.recent
    text = await host.summarizer.summarize(
        messages, previous=job.previous, max_tokens=host.settings.summary_max_tokens
    )
    tokens = await anyio.to_thread.run_sync(count_text_tokens, text)
    previous = job.previous
    return ConversationSummary(
        summary_id=f"{actor.session_id}:{job.end}:{job.summary_type.value}",
        session_id=actor.session_id,
        summary_text=text,
        message_count=(previous.message_count if previous else 0) + len(messages),
        token_count=tokens,
        created_at=datetime.now(),
        summary_type=job.summary_type,
        covers_through=job.end,
        metadata={"trigger_seq": job.trigger},
    )
