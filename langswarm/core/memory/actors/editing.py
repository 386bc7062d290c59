"""Handlers of the commands that edit a session's history: pop, delete, clear, and reading
the point a fork starts from.

An edit is decided against what storage holds: the actor first lets its own writes land and
reloads if anyone else changed the session, then sends one write that names the version it
was decided at. If another process changed the session in between, storage refuses it
(``conflict``); the actor reloads and decides again. A tool call and its results are removed
together.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from .._content import call_ids, result_ids
from ..backends.base import REMOVED, live
from ..exceptions import MemoryOverloadError, MemoryValidationError, MessageNotFoundError
from ..interfaces import ConversationSummary, Message, MessageRole
from . import commands as c
from .consistency import refresh
from .reads import PAGE

if TYPE_CHECKING:
    from .session import SessionActor

__all__ = ["ASYNC", "EXCHANGE_SPAN"]

#: How far (in messages) from a tool call its results are looked for, and back.
EXCHANGE_SPAN = 256
#: Times an edit is decided again after meeting another process's change, at most.
MAX_ATTEMPTS = 64

R = TypeVar("R")


async def _current(actor: SessionActor) -> None:
    """Let the actor's own writes land, and reload if its state is not current."""
    await actor.host.flusher.barrier()
    actor.raise_if_gone()
    if actor.version is None or not actor.tail.all_saved():
        actor.version = None
        await refresh(actor, c.Refresh())


async def _span(actor: SessionActor, start: int, stop: int) -> list[Message]:
    """Slots ``start <= seq < stop`` (clamped to what storage holds), holes included."""
    tail = actor.tail
    start, stop = max(start, tail.first), min(stop, tail.next)
    if start >= stop:
        return []
    if start >= tail.start:
        return tail.messages[start - tail.start : stop - tail.start]
    older = await actor.host.backend.load_messages(
        actor.session_id, start=start, stop=min(stop, tail.start)
    )
    older += [REMOVED] * (min(stop, tail.start) - start - len(older))
    return older + tail.messages[: max(stop - tail.start, 0)]


async def _newest_where(
    actor: SessionActor, wanted: Callable[[Message], bool]
) -> tuple[int, Message] | None:
    """The newest stored message that ``wanted`` accepts, with its sequence number, paging
    back from the newest (``None``: there is none)."""
    tail = actor.tail
    stop = tail.next
    while stop > tail.first:
        start = max(tail.first, stop - PAGE)
        messages = await _span(actor, start, stop)
        for offset in range(len(messages) - 1, -1, -1):
            if messages[offset] is not REMOVED and wanted(messages[offset]):
                return start + offset, messages[offset]
        stop = start
    return None


async def _newest(actor: SessionActor) -> tuple[int, Message] | None:
    """The newest message and its sequence number (``None``: the session holds none)."""
    return await _newest_where(actor, lambda _: True)


async def _find(actor: SessionActor, message_id: str) -> tuple[int, Message]:
    """The message with this id and its sequence number, searched newest first."""
    found = await _newest_where(actor, lambda m: m.message_id == message_id)
    if found is None:
        raise MessageNotFoundError(f"session {actor.session_id} holds no message {message_id!r}")
    return found


async def _exchange(actor: SessionActor, seq: int, message: Message) -> dict[int, Message]:
    """The message with every part of the tool exchanges it belongs to, by sequence number:
    calls with all their results, results with their calls."""
    lo = seq - EXCHANGE_SPAN
    around = await _span(actor, lo, seq + EXCHANGE_SPAN)
    lo = max(lo, actor.tail.first)
    members = {seq: message}
    frontier = [message]
    while frontier:
        current = frontier.pop()
        asked = call_ids(current.content, current.tool_calls)
        answered = result_ids(current.content, current.tool_call_id)
        for offset, other in enumerate(around):
            other_seq = lo + offset
            if other is REMOVED or other_seq in members:
                continue
            if (asked and answered_by(other, asked)) or (answered and asked_by(other, answered)):
                members[other_seq] = other
                frontier.append(other)
        legacy = _legacy_partner(around, lo, members, current)
        if legacy is not None:
            members[legacy[0]] = legacy[1]
    return dict(sorted(members.items()))


def answered_by(message: Message, ids: set[str]) -> bool:
    return bool(result_ids(message.content, message.tool_call_id) & ids)


def asked_by(message: Message, ids: set[str]) -> bool:
    return bool(call_ids(message.content, message.tool_calls) & ids)


def _legacy_partner(
    around: list[Message], lo: int, members: dict[int, Message], message: Message
) -> tuple[int, Message] | None:
    """A legacy ``function_call`` (which has no id) pairs with the next live message when
    that is a ``function`` result, and the other way round."""
    seq = next(s for s, m in members.items() if m is message)
    step = 1 if message.function_call is not None else -1
    if message.function_call is None and message.role is not MessageRole.FUNCTION:
        return None
    index = seq - lo + step
    while 0 <= index < len(around) and around[index] is REMOVED:
        index += step
    if not 0 <= index < len(around) or lo + index in members:
        return None
    other = around[index]
    if step == 1 and other.role is MessageRole.FUNCTION:
        return lo + index, other
    if step == -1 and other.function_call is not None:
        return lo + index, other
    return None


async def _remove(actor: SessionActor, gone: dict[int, Message], *, clear: bool = False) -> bool:
    """Store the removal of ``gone`` (by sequence number; or a clear) at the version the actor
    holds, and mirror it; ``False`` if another process changed the session first (the actor
    has reloaded by then)."""
    now = datetime.now()
    write, commit = actor.host.flusher.write(*actor.key)
    write.remove.extend(m.message_id for m in gone.values())
    write.clear = write.clear or clear
    write.expect_version = actor.version
    write.touched = now
    result = await commit.wait(actor.key)
    if result is None or result.conflict:
        return False  # the actor is stale now, and reloads before deciding again
    latest = actor.summaries.latest
    covered = latest is not None and min(gone, default=0) < latest.covers_through
    if clear or covered or not actor.tail.remove(set(gone), result.state.next_seq):
        actor.stale()  # reloaded before the next command
    else:
        actor.meta.message_count -= len(gone)
        actor.meta.updated_at = now
    return True


async def _until_stored(actor: SessionActor, attempt: Callable[[], Awaitable[R | None]]) -> R:
    """Run ``attempt`` until storage takes its edit (``None``: it met another process's
    change, and the actor reloaded), a bounded number of times."""
    for _ in range(MAX_ATTEMPTS):
        await _current(actor)
        outcome = await attempt()
        if outcome is not None:
            return outcome
    raise MemoryOverloadError(
        f"session {actor.session_id} changed {MAX_ATTEMPTS} times while an edit was decided; "
        "try again"
    )


_NOTHING: Final = object()


async def pop(actor: SessionActor, command: c.Pop) -> Message | None:
    async def attempt() -> Message | object | None:
        found = await _newest(actor)
        if found is None:
            return _NOTHING
        seq, message = found
        if command.check is not None and not await _passes(command.check, message):
            return _NOTHING
        return message if await _remove(actor, {seq: message}) else None

    popped = await _until_stored(actor, attempt)
    return None if popped is _NOTHING else cast(Message, popped)


async def _passes(check: Callable[[Message], Any], message: Message) -> bool:
    verdict = check(message)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return bool(verdict)


async def delete_message(actor: SessionActor, command: c.DeleteMessage) -> list[Message]:
    async def attempt() -> list[Message] | None:
        seq, message = await _find(actor, command.message_id)
        exchange = await _exchange(actor, seq, message)
        return list(exchange.values()) if await _remove(actor, exchange) else None

    return await _until_stored(actor, attempt)


async def clear(actor: SessionActor, command: c.Clear) -> None:
    async def attempt() -> bool | None:
        return True if await _remove(actor, {}, clear=True) else None

    await _until_stored(actor, attempt)


async def fork_point(actor: SessionActor, command: c.ForkPoint) -> c.ForkSeed:
    await _current(actor)
    tail = actor.tail
    messages = await _span(actor, tail.first, tail.next)
    end = len(messages)
    if command.at is not None:
        seq, _ = await _find(actor, command.at)
        end = seq - tail.first + 1
        following = live(messages[end:])
        if (
            following
            and following[0].is_tool_result
            and _answers_before(following[0], messages[:end])
        ):
            raise MemoryValidationError(
                f"a fork at message {command.at!r} would separate a tool call from its "
                "result; fork at the exchange's last result instead"
            )
    kept = messages[:end]
    summary = _summary_for(actor.summaries.summaries, tail.first, kept)
    return c.ForkSeed(tail.first, live(kept), summary, actor.meta.copy())


def _answers_before(result: Message, before: list[Message]) -> bool:
    ids = result_ids(result.content, result.tool_call_id)
    return not ids or any(asked_by(m, ids) for m in before if m is not REMOVED)


def _summary_for(
    summaries: list[ConversationSummary], first: int, kept: list[Message]
) -> ConversationSummary | None:
    """The latest summary within what a fork keeps, its end counted without the holes of
    removed messages (a fork numbers only the messages it copies)."""
    end = first + len(kept)
    within = [s for s in summaries if s.covers_through <= end]
    if not within:
        return None
    latest = within[-1]
    holes = sum(1 for m in kept[: max(latest.covers_through - first, 0)] if m is REMOVED)
    return replace(latest, covers_through=latest.covers_through - holes) if holes else latest


ASYNC: dict[type, Callable[[SessionActor, Any], Awaitable[Any]]] = {
    c.Pop: pop,
    c.DeleteMessage: delete_message,
    c.Clear: clear,
    c.ForkPoint: fork_point,
}
