"""``LangswarmChatMessageHistory`` keeps LangChain's chat-history contract on every backend.

What LangChain's own tests ask of a ``BaseChatMessageHistory`` (bulk and single adds, the
async interface, clearing, its text form) and what its in-memory history gives (messages read
back equal to those added, class and every field included), on memory, SQLite and Redis, under
asyncio and trio for the async methods. The sync methods are checked from worker threads
while the manager runs on the test's loop; test_langchain_sync.py checks them in a program
with no event loop at all.
"""

from __future__ import annotations

import copy
from typing import Any

import anyio
import anyio.to_thread
import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)

from langswarm.core.memory import (
    MemoryManager,
    create_openai_message,
    messages_from_responses_format,
    messages_to_anthropic_request,
    messages_to_openai_format,
)
from langswarm.core.memory.exceptions import MemoryValidationError, SessionOwnershipError
from langswarm.core.memory.langchain import DEFAULT_USER_ID, LangswarmChatMessageHistory
from tests._standin import check_anthropic_request, check_openai_request
from tests.adapters.conftest import Factory

pytestmark = pytest.mark.anyio

#: A conversation with every kind of message and field LangChain models produce.
CONVERSATION: list[BaseMessage] = [
    SystemMessage("Answer in one sentence."),
    HumanMessage("What is the weather in Paris?", id="human-1", name="alice"),
    AIMessage(
        "",
        id="chatcmpl-1",
        tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "call_1"}],
        usage_metadata={"input_tokens": 12, "output_tokens": 7, "total_tokens": 19},
        response_metadata={"model_name": "gpt-4o-mini", "finish_reason": "tool_calls"},
    ),
    ToolMessage("sunny, 24 C", tool_call_id="call_1", name="weather"),
    AIMessage("It is sunny.", response_metadata={"finish_reason": "stop"}),
    HumanMessage(["And here?", {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]),
    AIMessage(  # the shape ChatAnthropic returns: tool_use blocks and tool_calls
        [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Nice"}},
        ],
        tool_calls=[{"name": "weather", "args": {"city": "Nice"}, "id": "toolu_1"}],
    ),
    ToolMessage("no data", tool_call_id="toolu_1", status="error", artifact={"source": "cache"}),
    AIMessage(
        "Unknown.",
        invalid_tool_calls=[
            {"name": "weather", "args": "{oops", "id": "call_2", "error": "bad JSON"}
        ],
    ),
    AIMessage("", additional_kwargs={"function_call": {"name": "lookup", "arguments": "{}"}}),
    FunctionMessage(name="lookup", content="found it"),
    ChatMessage(role="critic", content="Too long."),
    AIMessageChunk(content="streamed ", id="run-1"),
    HumanMessage("Thanks 🙏 — merci", additional_kwargs={"client": {"tab": 3}}),
]


def assert_same(read: list[BaseMessage], added: list[BaseMessage]) -> None:
    """Equal, and of the same classes (``==`` on messages does not compare classes)."""
    assert read == added
    assert [type(m) for m in read] == [type(m) for m in added]


async def test_messages_read_back_equal_to_what_was_added(make_memory: Factory) -> None:
    async with make_memory() as memory:
        history = LangswarmChatMessageHistory("chat", manager=memory, user_id="alice")
        await history.aadd_messages(CONVERSATION[:5])
        await history.aadd_messages(CONVERSATION[5:])
        assert_same(await history.aget_messages(), CONVERSATION)
    async with make_memory() as again:
        history = LangswarmChatMessageHistory("chat", manager=again)
        assert_same(await history.aget_messages(), CONVERSATION)


async def test_stored_messages_convert_to_valid_provider_requests(
    memory: MemoryManager,
) -> None:
    history = LangswarmChatMessageHistory("convert", manager=memory)
    await history.aadd_messages(CONVERSATION[:8])
    session = await memory.get_session("convert")
    assert session is not None
    stored = await session.get_messages()
    assert stored[2].tool_calls and stored[3].tool_call_id == "call_1"
    check_openai_request({"model": "gpt-4o-mini", "messages": messages_to_openai_format(stored)})
    system, messages = messages_to_anthropic_request(stored)
    check_anthropic_request(
        {"model": "claude-haiku-4-5", "max_tokens": 100, "system": system, "messages": messages}
    )


async def test_an_unknown_history_is_empty_and_is_not_created(memory: MemoryManager) -> None:
    history = LangswarmChatMessageHistory("never-written", manager=memory)
    assert await history.aget_messages() == []
    await history.aclear()
    await history.aadd_messages([])
    assert await memory.get_session("never-written") is None


async def test_clear_drops_messages_and_keeps_the_session(memory: MemoryManager) -> None:
    history = LangswarmChatMessageHistory("cleared", manager=memory)
    await history.aadd_messages(CONVERSATION[:3])
    session = await memory.get_session("cleared")
    assert session is not None and session.metadata.user_id == DEFAULT_USER_ID
    await session.update_metadata({"app": "demo"})
    await history.aclear()
    assert await history.aget_messages() == []
    kept = await memory.get_session("cleared")
    assert kept is not None and kept.metadata.metadata == {"app": "demo"}
    await history.aadd_messages([HumanMessage("again")])
    assert await history.aget_messages() == [HumanMessage("again")]


async def test_histories_are_separate_and_owned(memory: MemoryManager) -> None:
    alice = LangswarmChatMessageHistory("a", manager=memory, user_id="alice")
    other = LangswarmChatMessageHistory("b", manager=memory, user_id="alice")
    await alice.aadd_messages([HumanMessage("mine")])
    await other.aadd_messages([HumanMessage("other")])
    await other.aclear()
    assert await alice.aget_messages() == [HumanMessage("mine")]
    with pytest.raises(SessionOwnershipError):
        await LangswarmChatMessageHistory("a", manager=memory, user_id="bob").aget_messages()


async def test_concurrent_batches_are_stored_whole(memory: MemoryManager) -> None:
    histories = [LangswarmChatMessageHistory("busy", manager=memory) for _ in range(3)]
    batches = [[HumanMessage(f"q{b}"), AIMessage(f"a{b}")] for b in range(15)]
    async with anyio.create_task_group() as tg:
        for b, batch in enumerate(batches):
            tg.start_soon(histories[b % 3].aadd_messages, batch)
    read = await histories[0].aget_messages()
    assert len(read) == 30
    for question, answer in zip(read[::2], read[1::2], strict=True):
        assert isinstance(question, HumanMessage) and isinstance(answer, AIMessage)
        assert answer.content == "a" + str(question.content)[1:]


async def test_changing_messages_outside_does_not_change_the_history(
    memory: MemoryManager,
) -> None:
    history = LangswarmChatMessageHistory("snapshots", manager=memory)
    added: list[Any] = copy.deepcopy(CONVERSATION[:6])
    await history.aadd_messages(added)
    added[1].content = "changed"
    added[2].tool_calls[0]["args"]["city"] = "Rome"
    added[5].content[1]["image_url"]["url"] = "https://elsewhere"
    read = await history.aget_messages()
    assert_same(read, CONVERSATION[:6])
    read[4].response_metadata["finish_reason"] = "changed"
    assert_same(await history.aget_messages(), CONVERSATION[:6])


async def test_messages_that_cannot_be_stored_are_refused_before_anything_is(
    memory: MemoryManager,
) -> None:
    history = LangswarmChatMessageHistory("refused", manager=memory)
    await history.aadd_messages([HumanMessage("kept")])
    for bad in (
        ToolMessage("x", tool_call_id="c", artifact=object()),
        RemoveMessage(id="human-1"),
        HumanMessage("x", additional_kwargs={"when": {1, 2}}),
    ):
        with pytest.raises(MemoryValidationError):
            await history.aadd_messages([HumanMessage("fine"), bad])
    assert await history.aget_messages() == [HumanMessage("kept")]


async def test_messages_from_other_apis_read_as_langchain_messages(
    memory: MemoryManager,
) -> None:
    session = await memory.create_session("dora", "foreign")
    call = {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    await session.add_messages(
        [
            create_openai_message("system", "sys"),
            create_openai_message("user", "hi", name="dora"),
            create_openai_message("assistant", None, tool_calls=[call]),
            create_openai_message("tool", "done", tool_call_id="call_9"),
            *messages_from_responses_format(
                [
                    {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{"},
                    {"type": "function_call_output", "call_id": "c2", "output": "?"},
                ]
            ),
        ]
    )
    read = await LangswarmChatMessageHistory("foreign", manager=memory).aget_messages()
    assert read[:4] == [
        SystemMessage("sys"),
        HumanMessage("hi", name="dora"),
        AIMessage("", tool_calls=[{"name": "f", "args": {"x": 1}, "id": "call_9"}]),
        ToolMessage("done", tool_call_id="call_9"),
    ]
    broken = read[4]
    assert isinstance(broken, AIMessage) and broken.tool_calls == []
    assert [(c["name"], c["args"], c["id"]) for c in broken.invalid_tool_calls] == [
        ("g", "{", "c2")
    ]
    assert read[5] == ToolMessage("?", tool_call_id="c2")


async def test_sync_methods_work_from_a_worker_thread(memory: MemoryManager) -> None:
    history = LangswarmChatMessageHistory("threads", manager=memory)

    def sync_calls() -> list[BaseMessage]:
        history.add_message(SystemMessage("system"))
        history.add_user_message("human 1")
        history.add_ai_message("ai")
        history.add_messages([HumanMessage("human 2")])
        assert str(history) == "System: system\nHuman: human 1\nAI: ai\nHuman: human 2"
        read = history.messages
        history.clear()
        return read

    read = await anyio.to_thread.run_sync(sync_calls)
    assert [m.content for m in read] == ["system", "human 1", "ai", "human 2"]
    assert await history.aget_messages() == []


async def test_sync_methods_refuse_to_block_a_running_loop(memory: MemoryManager) -> None:
    history = LangswarmChatMessageHistory("blocking", manager=memory)
    with pytest.raises(RuntimeError, match="aget_messages"):
        _ = history.messages
    with pytest.raises(RuntimeError, match="event loop"):
        history.add_messages([HumanMessage("x")])
    with pytest.raises(RuntimeError, match="event loop"):
        history.clear()
    assert await memory.get_session("blocking") is None


async def test_sync_methods_work_on_a_loop_that_does_not_run_the_manager(
    unentered: Factory,
) -> None:
    """As in a notebook: sync calls on a thread whose loop does not host the manager's
    runtime block that loop briefly, like any sync call, and work."""
    history = LangswarmChatMessageHistory("notebook", manager=unentered())
    history.add_messages([HumanMessage("hi")])
    assert await history.aget_messages() == [HumanMessage("hi")]
    await history.aadd_messages([AIMessage("hello")])
    assert history.messages == [HumanMessage("hi"), AIMessage("hello")]
    history.clear()
    assert await history.aget_messages() == []


async def test_the_global_manager_is_used_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from langswarm.core.memory import _manager, initialize_memory

    monkeypatch.setattr(_manager, "_global_manager", None)
    history = LangswarmChatMessageHistory("global")
    manager = initialize_memory("development")
    try:
        await history.aadd_messages(CONVERSATION[:2])
        assert history.manager is manager
        assert await LangswarmChatMessageHistory("global").aget_messages() == CONVERSATION[:2]
    finally:
        await manager.close()


def test_the_async_contract_of_langchain_is_met() -> None:
    """The three async methods are our own, not LangChain's thread-pool defaults."""
    from langchain_core.chat_history import BaseChatMessageHistory

    for name in ("aget_messages", "aadd_messages", "aclear", "add_messages", "clear"):
        ours = getattr(LangswarmChatMessageHistory, name)
        assert ours is not getattr(BaseChatMessageHistory, name), name
    assert isinstance(LangswarmChatMessageHistory.__dict__["messages"], property)
    assert issubclass(LangswarmChatMessageHistory, BaseChatMessageHistory)
