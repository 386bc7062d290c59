"""Budgeted windows and cut points that never separate a tool call from its results.

Providers reject a request whose tool result has no preceding call, or whose assistant tool
call is not followed by its results (HTTP 400). Every trim, summary boundary and context
window in the runtime goes through these two functions.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._content import RESULT, call_ids, result_ids
from ._tokens import tokens_of
from .interfaces import Message

__all__ = ["safe_boundary", "window_start"]


def window_start(
    messages: Sequence[Message], lo: int, hi: int, budget: int
) -> tuple[int, int, bool]:
    """Walk back from ``hi`` and return ``(start, tokens, exhausted)``.

    ``messages[start:hi]`` is the longest suffix of ``messages[lo:hi]`` that fits ``budget``
    tokens and is made of whole units: a message, or an assistant tool call with the results
    that follow it. ``exhausted`` is true when the walk ran out of messages before the budget
    did (it reached ``lo``, or results at ``lo`` whose call lies before it): messages older
    than ``lo`` could extend the window. Cost is proportional to the messages returned.
    """
    total = 0
    j = hi
    while j > lo:
        m = messages[j - 1]
        if m.kind is not RESULT:
            cost = m.token_count
            if cost is None:
                cost = tokens_of(m)
            if total + cost > budget:
                return j, total, False
            total += cost
            j -= 1
            continue
        s = j - 1
        while s >= lo and messages[s].is_tool_result:
            s -= 1
        if s < lo or not messages[s].has_tool_calls:
            # Results whose call is not in range: they cannot be sent alone.
            return j, total, s < lo
        cost = 0
        for k in range(s, j):
            cost += tokens_of(messages[k])
        if total + cost > budget:
            return j, total, False
        total += cost
        j = s
    return j, total, True


def safe_boundary(messages: Sequence[Message], idx: int, lo: int = 0) -> int:
    """Move cut point ``idx`` back until it does not split a call from its results.

    Everything before the returned index can be dropped or summarised while everything from
    it on is kept, and no tool call ends up on one side with its results on the other.
    """
    while lo < idx < len(messages) and messages[idx].is_tool_result:
        idx -= 1
    if idx > lo and messages[idx - 1].has_tool_calls:
        return idx - 1
    call = idx - 1
    while call > lo and messages[call].is_tool_result:
        call -= 1
    if call < idx - 1 and messages[call].has_tool_calls:
        answered: set[str] = set()
        for result in messages[call + 1 : idx]:
            answered |= result_ids(result.content, result.tool_call_id)
        asked = messages[call]
        if not call_ids(asked.content, asked.tool_calls) <= answered:
            return call  # more results of that call are still to come
    return idx
