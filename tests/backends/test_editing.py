"""History editing at the Backend protocol, on every storage backend and both loops: removals
(holes in the middle, the numbering shrinking back at the end), clears, summaries that go
with what they cover, and sessions created from a fork point."""

from __future__ import annotations

import pytest

from langswarm.core.memory.backends.base import REMOVED, Backend, SessionWrite
from langswarm.core.memory.exceptions import MemoryValidationError, MessageNotFoundError
from langswarm.core.memory.interfaces import SessionStatus
from tests.backends.conftest import apply1, contents, create, load, meta, summary, texts

pytestmark = pytest.mark.anyio


def edit(session_id: str = "s", incarnation: str = "i1", **fields: object) -> SessionWrite:
    return SessionWrite(session_id, incarnation, "w1", **fields)  # type: ignore[arg-type]


async def test_removing_the_newest_shrinks_the_numbering(backend: Backend) -> None:
    await create(backend, "s", 5)
    result = await apply1(backend, edit(remove=["m4"]))
    assert result.error is None and (result.state.next_seq, result.state.version) == (4, 2)
    snapshot = await load(backend, "s")
    assert contents(snapshot.messages) == ["m0", "m1", "m2", "m3"]
    assert snapshot.meta.message_count == 4
    # The number is given again, and the id may be stored again.
    again = await apply1(backend, edit(messages=texts(1, 4)))
    assert again.appended_at == 4
    assert contents((await load(backend, "s")).messages)[-1] == "m4"


async def test_a_removal_in_the_middle_leaves_a_hole(backend: Backend) -> None:
    await create(backend, "s", 5)
    result = await apply1(backend, edit(remove=["m1", "m2"]))
    assert result.error is None and result.state.next_seq == 5
    snapshot = await load(backend, "s")
    assert snapshot.messages[1] is REMOVED and snapshot.messages[2] is REMOVED
    assert contents(snapshot.messages) == ["m0", "", "", "m3", "m4"]
    assert snapshot.meta.message_count == 3
    paged = await backend.load_messages("s", start=0, stop=5)
    assert [m is REMOVED for m in paged] == [False, True, True, False, False]
    # Removing the newest now shrinks the numbering past the hole as well.
    await apply1(backend, edit(remove=["m3", "m4"]))
    snapshot = await load(backend, "s")
    assert (snapshot.next_seq, contents(snapshot.messages)) == (1, ["m0"])


async def test_a_missing_id_refuses_the_whole_write(backend: Backend) -> None:
    await create(backend, "s", 3)
    result = await apply1(backend, edit(remove=["m0", "nope"], messages=texts(1, 3)))
    assert isinstance(result.error, MessageNotFoundError)
    assert "nope" in str(result.error)
    snapshot = await load(backend, "s")
    assert contents(snapshot.messages) == ["m0", "m1", "m2"] and snapshot.version == 1


async def test_one_sessions_refusal_leaves_the_others_of_its_batch(backend: Backend) -> None:
    await create(backend, "a", 2)
    await create(backend, "b", 2)
    bad, good = await backend.apply(
        [edit("a", remove=["zz"]), edit("b", remove=["m1"], messages=texts(1, 5))]
    )
    assert isinstance(bad.error, MessageNotFoundError) and good.error is None
    assert contents((await load(backend, "b")).messages) == ["m0", "", "m5"]


async def test_a_message_appended_and_removed_in_one_write_is_not_stored(
    backend: Backend,
) -> None:
    await create(backend, "s", 2)
    result = await apply1(backend, edit(messages=texts(2, 2), remove=["m3"]))
    assert result.error is None and result.state.next_seq == 3
    assert contents((await load(backend, "s")).messages) == ["m0", "m1", "m2"]


async def test_a_stale_version_removes_nothing(backend: Backend) -> None:
    await create(backend, "s", 3)
    await apply1(backend, edit(messages=texts(1, 3)))
    result = await apply1(backend, edit(remove=["m3"], expect_version=1))
    assert result.conflict and result.error is None
    assert len((await load(backend, "s")).messages) == 4


async def test_an_archived_session_refuses_removals_and_clears(backend: Backend) -> None:
    await create(backend, "s", 2)
    await apply1(backend, edit(status=SessionStatus.ARCHIVED))
    for change in ({"remove": ["m0"]}, {"clear": True}):
        result = await apply1(backend, edit(**change))
        assert isinstance(result.error, MemoryValidationError), change
    assert contents((await load(backend, "s")).messages) == ["m0", "m1"]


async def test_clear_drops_messages_and_summaries_and_keeps_numbering(backend: Backend) -> None:
    await create(backend, "s", 4)
    await apply1(backend, edit(summary=summary("s", "s1", 2)))
    result = await apply1(backend, edit(clear=True))
    assert result.error is None
    snapshot = await load(backend, "s")
    assert (snapshot.first_seq, snapshot.next_seq, snapshot.messages) == (4, 4, [])
    assert snapshot.summaries == [] and snapshot.meta.message_count == 0
    assert snapshot.meta.metadata == meta("s").metadata
    # Ids stored before the clear may be stored again; a summary of the cleared messages may not.
    again = await apply1(backend, edit(messages=texts(2)))
    assert again.appended_at == 4
    late = await apply1(backend, edit(summary=summary("s", "old", 3)))
    assert not late.summary_stored
    assert contents((await load(backend, "s")).messages) == ["m0", "m1"]


async def test_removing_a_summarised_message_drops_the_summaries_covering_it(
    backend: Backend,
) -> None:
    await create(backend, "s", 8)
    await apply1(backend, edit(summary=summary("s", "s2", 2)))
    await apply1(backend, edit(summary=summary("s", "s5", 5), summary_base="s2"))
    result = await apply1(backend, edit(remove=["m3"]))
    assert result.error is None
    snapshot = await load(backend, "s")
    assert [s.summary_id for s in snapshot.summaries] == ["s2"]
    # The next summary folds in the one left, and is made from messages read after the removal.
    stale = await apply1(
        backend, edit(summary=summary("s", "s6", 6), summary_base="s2", summary_seen=1)
    )
    assert not stale.summary_stored
    fresh = await apply1(
        backend,
        edit(summary=summary("s", "s6", 6), summary_base="s2", summary_seen=result.state.version),
    )
    assert fresh.summary_stored


async def test_a_removal_that_would_lose_trimmed_history_is_refused(backend: Backend) -> None:
    await create(backend, "s", 6)
    await apply1(backend, edit(summary=summary("s", "s4", 4)))
    await apply1(backend, edit(trim_before=3, trim_base=2))
    assert (await load(backend, "s")).first_seq == 3
    # m3 is in the summary that alone holds m0..m2 now.
    result = await apply1(backend, edit(remove=["m3"]))
    assert isinstance(result.error, MemoryValidationError)
    assert "trimmed" in str(result.error)
    # A message after the summary goes freely.
    assert (await apply1(backend, edit(remove=["m4"]))).error is None


async def test_a_session_can_start_at_a_later_number_with_a_summary(backend: Backend) -> None:
    write = SessionWrite(
        "f",
        "i9",
        "w1",
        create=meta("f"),
        exclusive=True,
        start_seq=40,
        messages=texts(3, 40),
        summary=summary("f", "f40", 40),
    )
    result = await apply1(backend, write)
    assert result.created and result.summary_stored and result.appended_at == 40
    snapshot = await load(backend, "f")
    assert (snapshot.first_seq, snapshot.next_seq) == (40, 43)
    assert contents(snapshot.messages) == ["m40", "m41", "m42"]
    assert [s.covers_through for s in snapshot.summaries] == [40]
    later = summary("f", "f42", 42)
    await apply1(backend, edit("f", "i9", summary=later, summary_base="f40"))
    removed = await apply1(backend, edit("f", "i9", remove=["m41"]))
    assert removed.error is None
    assert [s.summary_id for s in (await load(backend, "f")).summaries] == ["f40"]
