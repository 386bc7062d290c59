"""Summaries in the runtime: automatic triggers, splicing while appends continue,
summary-aware context, ``max_messages`` trims, failing summarizers, passivation, SQLite.

Summarizers written here are user plugins (the ``Summarizer`` protocol) around the default
extractive one: they record what they were asked, fail on request, or hold each call until
the test releases it. ``get_summaries()`` returns once every summary in progress has landed,
so it is how these tests wait for summaries (bounded by ``anyio.fail_after``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langswarm.core.memory import Message, MessageRole
from langswarm.core.memory._session import MemorySession
from langswarm.core.memory._summarizers import ExtractiveSummarizer
from langswarm.core.memory._windows import window_start
from langswarm.core.memory.backends.base import Backend
from langswarm.core.memory.backends.memory import InMemoryBackend
from langswarm.core.memory.backends.sqlite import SQLiteBackend
from langswarm.core.memory.exceptions import MemoryError, SummarizationError
from langswarm.core.memory.interfaces import ConversationSummary, SummaryType
from tests.helpers import manager_on, passivate_all, user_message
from tests.test_context import assert_pairs_intact, conversations

pytestmark = pytest.mark.anyio

#: Longest any wait for summaries may take before the test fails.
SETTLE = 10
BIG = 10**9


# -- summarizers written for these tests -----------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request a summarizer received."""

    previous: ConversationSummary | None
    message_ids: list[str]


class RecordingSummarizer:
    """The default summarizer, recording each request.

    Calls numbered in ``failing`` (from 1) raise, like an unreachable model. A request with
    no new messages also raises: the runtime should never make one, and refusing it stops a
    summarizing loop so the test can report it instead of spinning.
    """

    def __init__(self, *, failing: Collection[int] = ()) -> None:
        self.inner = ExtractiveSummarizer()
        self.calls: list[Call] = []
        self.failing = set(failing)

    @property
    def empty_calls(self) -> int:
        return sum(1 for call in self.calls if not call.message_ids)

    async def summarize(
        self,
        messages: Sequence[Message],
        *,
        previous: ConversationSummary | None,
        max_tokens: int,
    ) -> str:
        self.calls.append(Call(previous, ids(messages)))
        await self.before(len(self.calls))
        if len(self.calls) in self.failing:
            raise RuntimeError("summary model unavailable")
        if not messages:
            raise RuntimeError("asked to summarise no new messages")
        return await self.inner.summarize(messages, previous=previous, max_tokens=max_tokens)

    async def before(self, number: int) -> None:
        """Runs as call ``number`` starts; subclasses hold it here."""


class HeldSummarizer(RecordingSummarizer):
    """Holds each of its first ``hold`` calls until the test sets that call's gate.

    ``gate = await held.next_call()`` waits until the next held call has started.
    """

    def __init__(self, hold: int) -> None:
        super().__init__()
        self.hold = hold
        self._gates: list[anyio.Event] = []
        self._taken = 0
        self._arrived = anyio.Event()

    async def before(self, number: int) -> None:
        if number <= self.hold:
            gate = anyio.Event()
            self._gates.append(gate)
            self._arrived.set()
            await gate.wait()

    async def next_call(self) -> anyio.Event:
        with anyio.fail_after(SETTLE):
            while self._taken == len(self._gates):
                self._arrived = anyio.Event()
                await self._arrived.wait()
        self._taken += 1
        return self._gates[self._taken - 1]


# -- helpers -----------------------------------------------------------------------------------


def ids(messages: Sequence[Message]) -> list[str]:
    return [m.message_id for m in messages]


def chat(n: int) -> list[Message]:
    """``n`` alternating user/assistant messages; the first holds facts a summary keeps."""
    first = user_message("I am Ada Lovelace and my account number is 55501. Please keep it.")
    roles = (MessageRole.USER, MessageRole.ASSISTANT)
    return [first] + [
        Message(role=roles[i % 2], content=f"Message {i}: noted.") for i in range(1, n)
    ]


def exchange(tag: str, results: int) -> list[Message]:
    """An assistant message calling ``results`` tools, then one result per call."""
    call_ids = [f"{tag}_{k}" for k in range(results)]
    calls = [
        {"id": i, "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
        for i in call_ids
    ]
    return [Message(role=MessageRole.ASSISTANT, content=None, tool_calls=calls)] + [
        Message(role=MessageRole.TOOL, content=f"result {i}", tool_call_id=i) for i in call_ids
    ]


def assert_safe_cut(messages: Sequence[Message], cut: int) -> None:
    """Nothing before ``cut`` is a call whose result lies after it, or the reverse."""
    assert_pairs_intact(list(messages[:cut]), list(messages))
    assert_pairs_intact(list(messages[cut:]), list(messages))


async def settled(session: MemorySession) -> list[ConversationSummary]:
    """The summaries, once every summary in progress has landed."""
    with anyio.fail_after(SETTLE):
        return await session.get_summaries()


async def add_all(session: MemorySession, messages: Sequence[Message]) -> None:
    for message in messages:
        await session.add_message(message)


def key(summary: ConversationSummary) -> tuple[object, ...]:
    return (
        summary.summary_id,
        summary.summary_text,
        summary.message_count,
        summary.token_count,
        summary.summary_type,
        summary.covers_through,
        summary.created_at,
    )


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "memory":
        return InMemoryBackend()
    return SQLiteBackend(db_path=str(tmp_path / "x.db"))


# -- automatic triggers ------------------------------------------------------------------------


async def _fill_120(session: MemorySession, summarizer: HeldSummarizer) -> None:
    """Add ``chat(120)``. A summarizer holding its first call is released after the last
    message, so that summary is still being computed when message 100 arrives; otherwise
    each summary lands before the next message."""
    messages = chat(120)
    if summarizer.hold:
        await add_all(session, messages)
        (await summarizer.next_call()).set()
    else:
        for message in messages:
            await session.add_message(message)
            await settled(session)


@pytest.mark.parametrize("running", [False, True], ids=["summary-lands-first", "still-running"])
async def test_threshold_50_makes_exactly_two_summaries_of_120_messages(
    backend: Backend, running: bool
) -> None:
    summarizer = HeldSummarizer(hold=int(running))
    async with manager_on(backend, summarizer=summarizer) as memory:
        session = await memory.create_session("u", auto_summarize_threshold=50)
        await _fill_120(session, summarizer)
        messages = await session.get_messages()
        summaries = await settled(session)
    assert [s.summary_type for s in summaries] == [SummaryType.AUTOMATIC] * 2
    assert [s.covers_through for s in summaries] == [50, 100]
    assert [s.message_count for s in summaries] == [50, 100]
    first, second = summarizer.calls
    assert (first.previous, first.message_ids) == (None, ids(messages[:50]))
    # The second summary folds in the first and reads only what came after it.
    assert second.previous is not None and key(second.previous) == key(summaries[0])
    assert second.message_ids == ids(messages[50:100])
    assert "55501" in summaries[1].summary_text


# -- appends while a summary is computed ---------------------------------------------------------


@pytest.mark.parametrize("trigger", ["automatic", "manual"])
async def test_messages_added_while_summarizing_are_kept_in_order_and_not_covered(
    backend: Backend, trigger: str
) -> None:
    automatic = trigger == "automatic"
    summarizer = HeldSummarizer(hold=2 if automatic else 1)
    messages = chat(150)
    async with (
        manager_on(backend, summarizer=summarizer) as memory,
        anyio.create_task_group() as tg,
    ):
        session = await memory.create_session(
            "u", auto_summarize_threshold=50 if automatic else None
        )
        await add_all(session, messages[:50])
        if not automatic:
            tg.start_soon(session.create_summary)
        gate = await summarizer.next_call()
        await add_all(session, messages[50:])  # 100 messages arrive meanwhile
        assert ids(await session.get_messages()) == ids(messages)
        gate.set()
        if automatic:
            # Triggers at 100 and 150 came while the first summary ran: a second one starts
            # only after the first has landed, which is the state checked below.
            gate = await summarizer.next_call()
        else:
            await settled(session)

        context = await session.get_conversation_context(max_tokens=BIG, include_summaries=True)
        head, body = context[0], context[1:]
        assert head.role is MessageRole.SYSTEM and head.metadata["covers_through"] == 50
        assert ids(body) == ids(messages[50:])
        assert ids(await session.get_messages()) == ids(messages)
        gate.set()
        summaries = await settled(session)

    assert summaries[0].covers_through == 50 and summaries[0].message_count == 50
    assert summarizer.calls[0].message_ids == ids(messages[:50])
    if automatic:
        second = summarizer.calls[1]
        assert second.previous is not None and second.previous.covers_through == 50
        assert second.message_ids == ids(messages[50 : summaries[1].covers_through])
        assert summaries[1].message_count == summaries[1].covers_through
    assert len(summarizer.calls) == len(summaries)


async def test_manual_summary_requested_while_an_automatic_one_runs_covers_everything() -> None:
    """``create_summary`` summarises everything added before the call, as a manual summary,
    even when an automatic summary of fewer messages is being computed at that moment."""
    summarizer = HeldSummarizer(hold=1)
    messages = chat(60)
    made: list[ConversationSummary] = []

    async def create() -> None:
        made.append(await session.create_summary(summary_type=SummaryType.MANUAL))

    async with manager_on(InMemoryBackend(), summarizer=summarizer) as memory:
        session = await memory.create_session("u", auto_summarize_threshold=50)
        await add_all(session, messages)
        gate = await summarizer.next_call()  # the automatic summary of 50 messages
        async with anyio.create_task_group() as tg:
            tg.start_soon(create)
            await anyio.wait_all_tasks_blocked()  # the request is with the actor
            gate.set()
        summaries = await settled(session)
    [manual] = made
    assert manual.summary_type is SummaryType.MANUAL
    assert manual.covers_through == 60 and manual.message_count == 60
    assert [s.covers_through for s in summaries] == [50, 60]


# -- summary-aware context ---------------------------------------------------------------------


@st.composite
def cut_conversations(draw: st.DrawFn) -> tuple[list[Message], int]:
    """A conversation and the point at which a summary is made."""
    messages = draw(conversations())
    return messages, draw(st.integers(0, len(messages)))


@pytest.mark.parametrize("tail_size", [2_000, 3], ids=["tail-in-memory", "tail-paged"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut_conversations(), st.integers(0, 1_500))
async def test_summary_context_fits_budget_repeats_nothing_and_keeps_pairs(
    tail_size: int, conversation: tuple[list[Message], int], budget: int
) -> None:
    messages, cut = conversation
    options = {"tail_size": tail_size, "durability": "committed"}
    async with manager_on(InMemoryBackend(), **options) as memory:
        session = await memory.create_session("u")
        await add_all(session, messages[:cut])
        summary = await session.create_summary()
        await add_all(session, messages[cut:])
        whole = await session.get_conversation_context(max_tokens=BIG, include_summaries=True)
        context = await session.get_conversation_context(max_tokens=budget, include_summaries=True)

    if summary.message_count == 0:  # it covers nothing: not kept, so it never leads
        assert all("summary_id" not in m.metadata for m in whole)
        return
    head = whole[0]
    assert head.metadata["summary_id"] == summary.summary_id
    assert head.metadata["covers_through"] == summary.covers_through
    assert head.token_count is not None
    assert all(m.token_count is not None for m in context)
    assert sum(m.token_count or 0 for m in context) <= budget
    included = head.token_count <= budget  # the summary leads whenever it fits
    assert (context[:1] == [head]) == included
    body = context[1:] if included else context
    if included:
        assert not set(ids(body)) & set(ids(messages[: summary.covers_through]))
    assert_pairs_intact(body, messages)
    # The rest of the budget holds the newest whole units after the summary, nothing less.
    floor = summary.covers_through if included else 0
    left = budget - head.token_count if included else budget
    start, _, _ = window_start(messages, floor, len(messages), left)
    assert ids(body) == ids(messages[start:])


async def test_summary_context_pages_past_a_tool_exchange_split_by_the_tail() -> None:
    """Messages older than the in-memory tail are paged in even when the tail starts inside
    a tool exchange."""
    messages = [user_message(f"question {i}") for i in range(3)] + exchange("x", 4)
    async with manager_on(InMemoryBackend(), tail_size=2, durability="committed") as memory:
        session = await memory.create_session("u")
        await session.add_message(messages[0])
        await session.create_summary()
        await add_all(session, messages[1:])
        context = await session.get_conversation_context(max_tokens=BIG, include_summaries=True)
    assert ids(context[1:]) == ids(messages[1:])


# -- tool calls at summary and trim boundaries -------------------------------------------------


async def test_summary_never_ends_between_results_of_one_call() -> None:
    """A trigger that fires after the first of three results leaves the call uncovered."""
    messages = [user_message("look these up"), *exchange("x", 3), user_message("thanks")]
    async with manager_on(InMemoryBackend()) as memory:
        session = await memory.create_session("u", auto_summarize_threshold=3)
        for message in messages:
            await session.add_message(message)
            await settled(session)
        summaries = await settled(session)
    for summary in summaries:
        assert_safe_cut(messages, summary.covers_through)


@pytest.mark.parametrize("tail_size", [2_000, 2], ids=["tail-in-memory", "tail-paged"])
@pytest.mark.parametrize("limit", [7, 9])
async def test_max_messages_trim_never_splits_a_tool_exchange(
    backend: Backend, tail_size: int, limit: int
) -> None:
    """Of these 13 messages, the newest ``limit`` start at the last or the first of three
    results: the trim must keep or drop the exchange whole."""
    messages = (
        [user_message(f"u{i}") for i in range(3)]
        + exchange("x", 3)
        + [user_message(f"v{i}") for i in range(6)]
    )
    summarizer = RecordingSummarizer()
    options = {"tail_size": tail_size, "durability": "committed"}
    async with manager_on(backend, summarizer=summarizer, **options) as memory:
        session = await memory.create_session("u", max_messages=limit)
        await add_all(session, messages)
        summaries = await settled(session)
        kept = await session.get_messages()
    assert summarizer.empty_calls == 0, f"{summarizer.empty_calls} requests with nothing new"
    first = len(messages) - len(kept)
    assert ids(kept) == ids(messages[first:])
    assert_safe_cut(messages, first)
    assert summaries and first <= summaries[-1].covers_through


async def test_max_messages_settles_when_a_tool_exchange_straddles_the_limit() -> None:
    """The newest whole units do not fit ``max_messages`` exactly: the session settles on
    a safe cut and stops summarising, rather than asking the summarizer again and again
    for nothing."""
    messages = [user_message(f"u{i}") for i in range(3)] + exchange("x", 3)
    summarizer = RecordingSummarizer()
    async with manager_on(InMemoryBackend(), summarizer=summarizer) as memory:
        session = await memory.create_session("u", max_messages=3)
        await add_all(session, messages)
        summaries = await settled(session)
        kept = await session.get_messages()
    assert summarizer.empty_calls == 0, f"{summarizer.empty_calls} requests with nothing new"
    first = len(messages) - len(kept)
    assert ids(kept) == ids(messages[first:])
    assert_safe_cut(messages, first)
    assert first <= summaries[-1].covers_through


async def test_max_messages_drops_nothing_without_a_summary(backend: Backend) -> None:
    summarizer = RecordingSummarizer(failing=range(1, 1_000))
    messages = chat(30)
    async with manager_on(backend, summarizer=summarizer) as memory:
        session = await memory.create_session("u", max_messages=10)
        await add_all(session, messages)
        assert await settled(session) == []
        assert ids(await session.get_messages()) == ids(messages)
        context = await session.get_conversation_context(max_tokens=BIG, include_summaries=True)
        assert ids(context) == ids(messages)
    assert summarizer.calls  # it was asked, and failed every time


async def test_max_messages_drops_only_what_a_summary_covers(backend: Backend) -> None:
    summarizer = HeldSummarizer(hold=1)
    messages = chat(30)
    async with manager_on(backend, summarizer=summarizer) as memory:
        session = await memory.create_session("u", max_messages=10)
        await add_all(session, messages)
        gate = await summarizer.next_call()
        assert ids(await session.get_messages()) == ids(messages)  # nothing covered yet
        gate.set()
        summaries = await settled(session)
        kept = await session.get_messages()
    first = len(messages) - len(kept)
    assert ids(kept) == ids(messages[first:]) and len(kept) == 10
    assert first <= summaries[-1].covers_through


@pytest.mark.parametrize("tail_size", [2_000, 3], ids=["tail-in-memory", "tail-paged"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    conversations(),
    st.one_of(st.none(), st.integers(1, 8)),
    st.one_of(st.none(), st.integers(1, 8)),
)
async def test_summary_boundaries_and_trims_never_split_a_tool_call(
    tail_size: int, messages: list[Message], threshold: int | None, limit: int | None
) -> None:
    summarizer = RecordingSummarizer()
    options = {"tail_size": tail_size, "durability": "committed"}
    async with manager_on(InMemoryBackend(), summarizer=summarizer, **options) as memory:
        session = await memory.create_session(
            "u", auto_summarize_threshold=threshold, max_messages=limit
        )
        await add_all(session, messages)
        summaries = await settled(session)
        kept = await session.get_messages()
    assert summarizer.empty_calls == 0
    for summary in summaries:
        assert_safe_cut(messages, summary.covers_through)
    first = len(messages) - len(kept)
    assert ids(kept) == ids(messages[first:])
    assert_safe_cut(messages, first)
    assert first <= (summaries[-1].covers_through if summaries else 0)


# -- failing summarizers -----------------------------------------------------------------------


async def test_failing_summarizer_never_breaks_appends_and_is_retried(backend: Backend) -> None:
    summarizer = RecordingSummarizer(failing={1, 3})
    messages = chat(130)
    async with manager_on(backend, summarizer=summarizer) as memory:
        session = await memory.create_session("u", auto_summarize_threshold=50)
        await add_all(session, messages[:99])  # the summary triggered at 50 fails
        assert await settled(session) == []
        assert len(summarizer.calls) == 1

        await session.add_message(messages[99])  # the next trigger retries
        [summary] = await settled(session)
        assert (summary.covers_through, summary.message_count) == (100, 100)
        assert summarizer.calls[1].message_ids == ids(messages[:100])

        await add_all(session, messages[100:])
        with pytest.raises(SummarizationError, match="model unavailable") as failure:
            await session.create_summary()
        assert isinstance(failure.value, MemoryError)
        manual = await session.create_summary()
        assert manual.summary_type is SummaryType.MANUAL
        assert (manual.covers_through, manual.message_count) == (130, 130)
        assert [s.covers_through for s in await settled(session)] == [100, 130]
        assert ids(await session.get_messages()) == ids(messages)


# -- passivation and persistence ----------------------------------------------------------------


@pytest.mark.parametrize("running", [False, True], ids=["summary-lands-first", "still-running"])
async def test_passivation_keeps_summaries_and_the_next_trigger_point(
    backend: Backend, running: bool
) -> None:
    summarizer = HeldSummarizer(hold=int(running))
    async with manager_on(
        backend, summarizer=summarizer, idle_timeout=0, sweep_interval=3600
    ) as memory:
        session = await memory.create_session("u", auto_summarize_threshold=50)
        await _fill_120(session, summarizer)
        before = await settled(session)
        context = await session.get_conversation_context(max_tokens=BIG, include_summaries=True)

        await passivate_all(memory)
        assert [key(s) for s in await session.get_summaries()] == [key(s) for s in before]
        again = await session.get_conversation_context(max_tokens=BIG, include_summaries=True)
        assert [(m.message_id, m.content) for m in again] == [
            (m.message_id, m.content) for m in context
        ]

        await passivate_all(memory)
        await add_all(session, chat(30))  # reaches the next trigger point, 150
        summaries = await settled(session)
    assert [s.covers_through for s in summaries] == [50, 100, 150]
    assert summaries[2].message_count == 150


async def test_sqlite_summaries_persist_and_reload(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    messages = chat(150)
    async with manager_on(SQLiteBackend(db_path=path)) as memory:
        session = await memory.create_session("u", "kept", auto_summarize_threshold=50)
        for message in messages[:130]:
            await session.add_message(message)
            await settled(session)
        await session.create_summary()
        before = await settled(session)
        context = await session.get_conversation_context(max_tokens=BIG, include_summaries=True)
    assert [s.covers_through for s in before] == [50, 100, 130]

    async with manager_on(SQLiteBackend(db_path=path)) as memory:
        reloaded = await memory.get_session("kept", user_id="u")
        assert reloaded is not None
        assert [key(s) for s in await reloaded.get_summaries()] == [key(s) for s in before]
        again = await reloaded.get_conversation_context(max_tokens=BIG, include_summaries=True)
        assert [(m.message_id, m.content) for m in again] == [
            (m.message_id, m.content) for m in context
        ]
        await add_all(reloaded, messages[130:])  # the next automatic trigger is at 150
        summaries = await settled(reloaded)
    assert [s.summary_type for s in summaries] == [
        SummaryType.AUTOMATIC,
        SummaryType.AUTOMATIC,
        SummaryType.MANUAL,
        SummaryType.AUTOMATIC,
    ]
    assert summaries[-1].covers_through == summaries[-1].message_count == 150
