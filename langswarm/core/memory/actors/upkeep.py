"""What keeps a live session within its limits after it changes: memory eviction,
``max_messages`` trims, and summaries, which run beside the actor and report back.

A summary is made from what storage holds (so it covers exactly the messages it saw, whoever
wrote them), and stored only if it folds in the latest stored summary; on a store other
processes share, an automatic summary is first claimed there, so that only one process makes
it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

import anyio

from .._tokens import count_text_tokens
from .._windows import safe_boundary
from ..backends.base import live
from ..interfaces import ConversationSummary, SummaryType
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
    tail.evict(keep, tail.next if floor is None else floor)
    summaries.on_append(tail.next, meta.auto_summarize_threshold)
    if meta.max_messages is not None:
        trim(actor)
    job = summaries.due_job(tail.first, tail.next)
    if job is not None:
        start_summary(actor, job)
    tail.check()


def trim(actor: SessionActor) -> None:
    """Enforce ``max_messages``, dropping only what the latest summary covers; ask for a
    summary when too little is covered. A trim is cut against the messages this actor holds,
    so it is stored only if nobody else changed the session since they were current."""
    limit = actor.meta.max_messages
    tail = actor.tail
    if limit is None or tail.next - tail.first <= limit:
        return
    covered = actor.summaries.covered(tail.first)
    target = tail.trim_point(limit, covered)
    if target is not None and actor.version is not None:
        tail.drop_before(target)
        write, _ = actor.host.flusher.write(*actor.key)
        write.trim_before = max(write.trim_before or 0, target)
        write.trim_base = actor.version
    actor.summaries.on_trim(covered, tail.next - limit, tail.next)


def start_summary(actor: SessionActor, job: SummaryJob) -> None:
    actor.host.spawn(_make_summary, actor, job)


async def _make_summary(actor: SessionActor, job: SummaryJob) -> None:
    """Runs beside the actor; reports back with ``SummaryDone``.

    Messages appended meanwhile are not touched: the summary covers ``[start, end)`` only,
    and the actor splices it in when it arrives.
    """
    summary: ConversationSummary | None = None
    error: BaseException | None = None
    ours = False
    try:
        if await _claimed(actor, job):
            summary, ours = await _stored_summary(actor, job)
    except Exception as exc:
        log.warning("summary of session %s failed: %s", actor.session_id, exc)
        error = exc
    actor.tell(c.SummaryDone(summary, error, ours))


async def _claimed(actor: SessionActor, job: SummaryJob) -> bool:
    """Claim an automatic summary on a shared store; ``False``: another process makes it."""
    if not actor.host.shared or job.summary_type is not SummaryType.AUTOMATIC:
        return True
    write, commit = actor.host.flusher.write(*actor.key)
    write.claim = job.end
    result = await commit.wait(actor.key)
    return result is not None and result.claimed


async def _stored_summary(
    actor: SessionActor, job: SummaryJob
) -> tuple[ConversationSummary | None, bool]:
    """Make and store the summary of ``job``; say whether it is ours. If another process
    stored a summary first, fold that one in and try again: the answer is a stored summary
    reaching ``job.end`` (theirs, if it does)."""
    for _ in range(3):
        made = await _summarize(actor, job)
        if made is None:
            return None, True
        summary, stored = made
        if stored or summary.covers_through <= job.start:
            return summary, True
        snapshot = await actor.host.backend.load_session(actor.session_id, tail=0)
        latest = snapshot.summaries[-1] if snapshot and snapshot.summaries else None
        if latest is None:
            break
        if latest.covers_through >= job.end:
            return latest, False
        job = replace(job, previous=latest, start=latest.covers_through)
    return None, False


async def _summarize(
    actor: SessionActor, job: SummaryJob
) -> tuple[ConversationSummary, bool] | None:
    """Summarise what storage holds of ``[start, end)``, cut where no tool exchange splits,
    and store it; say whether it was stored (not when another summary came first). ``None``:
    an automatic summary found nothing new once the cut moved back."""
    host = actor.host
    await host.flusher.barrier()  # what this actor wrote up to ``end`` is stored
    # The version first: a removal after it makes storage refuse the summary, which might
    # hold the removed message.
    seen = await host.backend.load_session(actor.session_id, tail=0)
    loaded = await host.backend.load_messages(actor.session_id, start=job.start, stop=job.end + 1)
    cut = safe_boundary(loaded, min(job.end - job.start, len(loaded)))
    messages = live(loaded[:cut])
    if not messages and job.summary_type is SummaryType.AUTOMATIC:
        return None
    text = await host.summarizer.summarize(
        messages, previous=job.previous, max_tokens=host.settings.summary_max_tokens
    )
    tokens = await anyio.to_thread.run_sync(count_text_tokens, text)
    previous = job.previous
    end = job.start + cut
    summary = ConversationSummary(
        summary_id=f"{actor.session_id}:{end}:{job.summary_type.value}",
        session_id=actor.session_id,
        summary_text=text,
        message_count=(previous.message_count if previous else 0) + len(messages),
        token_count=tokens,
        created_at=datetime.now(),
        summary_type=job.summary_type,
        covers_through=end,
        metadata={"trigger_seq": job.end},
    )
    write, commit = host.flusher.write(*actor.key)
    write.summary = summary
    write.summary_base = previous.summary_id if previous else ""
    write.summary_seen = 0 if seen is None else seen.version
    result = await commit.wait(actor.key)
    return summary, result is not None and result.summary_stored
