"""History editing through ``MemorySession`` on every backend and both loops: pop (with and
without a check), delete with the rest of a tool exchange, clear, fork; what is stored is a
snapshot; two managers on one store edit one history without losing or doubling a message."""

from __future__ import annotations

import anyio
import pytest

from langswarm.core.memory import (
    MemoryManager,
    Message,
    create_anthropic_message,
    create_openai_message,
)
from langswarm.core.memory.exceptions import (
    MemoryValidationError,
    MessageNotFoundError,
    SessionExistsError,
    SessionNotFoundError,
)
from tests.helpers import passivate_all
from tests.store_fixtures import Factory

pytestmark = pytest.mark.anyio


def text(role: str, body: str, message_id: str | None = None) -> Message:
    return create_openai_message(role, body, message_id=message_id)


def call(call_ids: list[str], message_id: str) -> Message:
    calls = [
        {"id": cid, "type": "function", "function": {"name": "f", "arguments": "{}"}}
        for cid in call_ids
    ]
    return create_openai_message("assistant", None, tool_calls=calls, message_id=message_id)


def result(call_id: str, message_id: str) -> Message:
    return create_openai_message("tool", "42", tool_call_id=call_id, message_id=message_id)


def ids(messages: list[Message]) -> list[str]:
    return [m.message_id for m in messages]


async def stored_ids(make_memory: Factory, session_id: str) -> list[str]:
    """The history as a fresh manager reads it from storage."""
    async with make_memory() as fresh:
        session = await fresh.get_session(session_id)
        assert session is not None
        return ids(await session.get_messages())


async def test_pop_removes_and_returns_the_newest(make_memory: Factory) -> None:
    async with make_memory() as memory:
        session = await memory.create_session("u", "s")
        assert await session.pop_message() is None
        for i in range(3):
            await session.add_message(text("user", f"m{i}", f"m{i}"))
        popped = await session.pop_message()
        assert popped is not None and (popped.message_id, popped.content) == ("m2", "m2")
        assert ids(await session.get_messages()) == ["m0", "m1"]
        assert session.metadata.message_count == 2
        await session.add_message(text("user", "again", "m3"))
    assert await stored_ids(make_memory, "s") == ["m0", "m1", "m3"]


async def test_a_check_decides_the_pop(memory: MemoryManager) -> None:
    session = await memory.create_session("u", "s")
    await session.add_messages([text("user", "keep", "a"), text("assistant", "drop", "b")])
    assert await session.pop_message(check=lambda m: m.content == "keep") is None
    assert ids(await session.get_messages()) == ["a", "b"]

    async def is_assistant(message: Message) -> bool:
        await anyio.lowlevel.checkpoint()
        return message.role.value == "assistant"

    popped = await session.pop_message(check=is_assistant)
    assert popped is not None and popped.message_id == "b"
    assert ids(await session.get_messages()) == ["a"]
    with pytest.raises(MemoryValidationError, match="callable"):
        await session.pop_message(check="yes")  # type: ignore[arg-type]


async def test_a_failing_check_changes_nothing(memory: MemoryManager) -> None:
    session = await memory.create_session("u", "s")
    await session.add_message(text("user", "x", "a"))

    def broken(message: Message) -> bool:
        raise RuntimeError("check failed")

    with pytest.raises(RuntimeError, match="check failed"):
        await session.pop_message(check=broken)
    assert ids(await session.get_messages()) == ["a"]


async def test_delete_takes_the_whole_openai_exchange(make_memory: Factory) -> None:
    async with make_memory() as memory:
        session = await memory.create_session("u", "s")
        await session.add_messages(
            [
                text("user", "q", "q"),
                call(["c1", "c2"], "call"),
                result("c1", "r1"),
                result("c2", "r2"),
                text("assistant", "done", "a"),
            ]
        )
        removed = await session.delete_message("r2")
        assert ids(removed) == ["call", "r1", "r2"]
        assert ids(await session.get_messages()) == ["q", "a"]
        with pytest.raises(MessageNotFoundError, match="r1"):
            await session.delete_message("r1")
        assert ids(await session.delete_message("q")) == ["q"]
    assert await stored_ids(make_memory, "s") == ["a"]


async def test_delete_takes_the_whole_anthropic_exchange(memory: MemoryManager) -> None:
    session = await memory.create_session("u", "s")
    use = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    answer = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}
    await session.add_messages(
        [
            create_anthropic_message("user", "q", message_id="q"),
            create_anthropic_message("assistant", [use], message_id="use"),
            create_anthropic_message("user", [answer], message_id="answer"),
        ]
    )
    assert ids(await session.delete_message("use")) == ["use", "answer"]
    assert ids(await session.get_messages()) == ["q"]


async def test_pop_takes_the_newest_alone(memory: MemoryManager) -> None:
    session = await memory.create_session("u", "s")
    await session.add_messages([call(["c1"], "call"), result("c1", "r1")])
    popped = await session.pop_message()
    assert popped is not None and popped.message_id == "r1"
    assert ids(await session.get_messages()) == ["call"]


async def test_deleting_drops_the_summaries_that_cover_it(memory: MemoryManager) -> None:
    session = await memory.create_session("u", "s")
    await session.add_messages([text("user", f"m{i}", f"m{i}") for i in range(4)])
    first = await session.create_summary()
    assert [s.summary_id for s in await session.get_summaries()] == [first.summary_id]
    await session.delete_message("m3")
    assert await session.get_summaries() == []
    second = await session.create_summary()
    assert "m3" not in second.summary_text
    assert [s.summary_id for s in await session.get_summaries()] == [second.summary_id]


async def test_clear_keeps_the_session_and_its_metadata(make_memory: Factory) -> None:
    async with make_memory() as memory:
        session = await memory.create_session("u", "s", metadata={"app": "x"}, max_tokens=500)
        await session.add_messages([text("user", f"m{i}", f"m{i}") for i in range(5)])
        await session.create_summary()
        await session.clear()
        assert await session.get_messages() == []
        assert await session.get_summaries() == []
        assert session.metadata.message_count == 0
        # An id that was cleared can be stored again.
        await session.add_message(text("user", "fresh", "m0"))
    async with make_memory() as fresh:
        found = await fresh.get_session("s", user_id="u")
        assert found is not None
        assert found.metadata.metadata == {"app": "x"} and found.metadata.max_tokens == 500
        assert ids(await found.get_messages()) == ["m0"]
        assert await found.get_summaries() == []


async def test_fork_copies_the_history_up_to_a_message(make_memory: Factory) -> None:
    async with make_memory() as memory:
        source = await memory.create_session("u", "src", metadata={"app": "x"})
        await source.add_messages([text("user", f"m{i}", f"m{i}") for i in range(5)])
        fork = await source.fork("dst", at="m2")
        assert ids(await fork.get_messages()) == ["m0", "m1", "m2"]
        assert fork.metadata.metadata == {"app": "x"}
        await fork.add_message(text("user", "branch", "b"))
        await source.add_message(text("user", "trunk", "t"))
        whole = await memory.fork_session("src", "other", user_id="v")
        assert ids(await whole.get_messages()) == ["m0", "m1", "m2", "m3", "m4", "t"]
        assert whole.metadata.user_id == "v"
    assert await stored_ids(make_memory, "dst") == ["m0", "m1", "m2", "b"]
    assert await stored_ids(make_memory, "src") == ["m0", "m1", "m2", "m3", "m4", "t"]


async def test_fork_refusals(memory: MemoryManager) -> None:
    source = await memory.create_session("u", "src")
    await memory.create_session("u", "taken")
    await source.add_messages([call(["c1"], "call"), result("c1", "r1"), text("user", "q", "q")])
    with pytest.raises(MemoryValidationError, match="tool"):
        await source.fork("dst", at="call")
    with pytest.raises(MessageNotFoundError):
        await source.fork("dst", at="nope")
    with pytest.raises(SessionExistsError):
        await source.fork("taken")
    with pytest.raises(SessionNotFoundError):
        await memory.fork_session("missing", "dst")
    assert await memory.get_session("dst") is None
    fork = await source.fork("dst", at="r1")
    assert ids(await fork.get_messages()) == ["call", "r1"]


async def test_fork_carries_the_latest_summary(make_memory: Factory) -> None:
    async with make_memory() as memory:
        source = await memory.create_session("u", "src")
        await source.add_messages([text("user", f"m{i}", f"m{i}") for i in range(4)])
        gist = (await source.create_summary()).summary_text
        fork = await source.fork("dst")
        assert [s.summary_text for s in await fork.get_summaries()] == [gist]
    async with make_memory() as fresh:
        found = await fresh.get_session("dst")
        assert found is not None
        assert [s.summary_text for s in await found.get_summaries()] == [gist]


async def test_buffered_edits_are_stored_before_they_return(make_memory: Factory) -> None:
    async with make_memory() as memory:
        session = await memory.create_session("u", "s", durability="buffered")
        await session.add_messages([text("user", f"m{i}", f"m{i}") for i in range(4)])
        await session.pop_message()
        await session.delete_message("m1")
        async with make_memory() as other:
            seen = await other.get_session("s")
            assert seen is not None
            assert ids(await seen.get_messages()) == ["m0", "m2"]


async def test_reads_are_snapshots(memory: MemoryManager) -> None:
    session = await memory.create_session("u", "s")
    metadata = {"tags": ["a"]}
    await session.add_message(
        create_openai_message("user", [{"type": "text", "text": "hi"}], metadata=metadata)
    )
    metadata["tags"].append("changed")
    (message,) = await session.get_messages()
    assert message.metadata == {"tags": ["a"]}
    with pytest.raises(TypeError):
        message.metadata["x"] = 1
    with pytest.raises(TypeError):
        message.metadata["tags"].append("b")
    assert isinstance(message.content, list)
    with pytest.raises(TypeError):
        message.content[0]["text"] = "changed"
    await passivate_all(memory)
    again = await memory.get_session("s")
    assert again is not None
    (message,) = await again.get_messages()
    assert message.metadata == {"tags": ["a"]} and message.content[0]["text"] == "hi"


async def test_two_managers_pop_each_message_once(make_memory: Factory) -> None:
    async with make_memory() as first:
        session = await first.create_session("u", "s")
        await session.add_messages([text("user", f"m{i}", f"m{i}") for i in range(40)])
    popped: list[str] = []

    async def popper(memory: MemoryManager) -> None:
        found = await memory.get_session("s")
        assert found is not None
        while (message := await found.pop_message()) is not None:
            popped.append(message.message_id)

    async with make_memory() as a, make_memory() as b, anyio.create_task_group() as tg:
        tg.start_soon(popper, a)
        tg.start_soon(popper, b)
    assert sorted(popped, key=lambda i: int(i[1:])) == [f"m{i}" for i in range(40)]
    assert await stored_ids(make_memory, "s") == []
