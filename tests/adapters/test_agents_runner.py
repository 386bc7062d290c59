"""The Agents SDK's Runner with ``LangswarmSession`` as its session, on every backend.

The Runner is asyncio-only (it schedules its work with asyncio tasks and queues), so these
tests pin ``anyio_backend`` to asyncio; the session's own contract is checked under both
loops in test_agents_session.py. Models are the SDK's ``ScriptedModel`` (no HTTP), except in
the last test, which drives ``OpenAIResponsesModel`` over the local Responses stand-in and
compares what it sends with what the same run sends with the SDK's own ``SQLiteSession``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio.to_thread
import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    RunConfig,
    Runner,
    SessionSettings,
    SQLiteSession,
    function_tool,
)
from agents.memory import Session
from agents.models.openai_responses import OpenAIResponsesModel
from agents.result import RunResultBase
from agents.testing import ScriptedModel, assistant_message, function_call

from langswarm.core.memory import MemoryManager
from langswarm.core.memory.agents_sdk import LangswarmSession
from tests._standin import FunctionCall, LLMStandIn

pytestmark = pytest.mark.anyio

NO_TRACES = RunConfig(tracing_disabled=True)


@pytest.fixture
def anyio_backend() -> str:
    """The Agents SDK's Runner runs on asyncio only."""
    return "asyncio"


def in_own_loop(agent: Agent[Any], text: Any, **options: Any) -> RunResultBase:
    """``Runner.run_sync`` on a thread's own loop, as a sync program calls it."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return Runner.run_sync(agent, text, **options)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def run(how: str, agent: Agent[Any], text: Any, **options: Any) -> Any:
    """One turn through ``Runner.run``, ``Runner.run_streamed`` or ``Runner.run_sync``."""
    options.setdefault("run_config", NO_TRACES)
    if how == "run":
        return await Runner.run(agent, text, **options)
    if how == "streamed":
        streamed = Runner.run_streamed(agent, text, **options)
        async for _ in streamed.stream_events():
            pass
        return streamed
    return await anyio.to_thread.run_sync(lambda: in_own_loop(agent, text, **options))


HOW = pytest.mark.parametrize("how", ["run", "streamed", "sync"])


def scripted(*replies: str) -> ScriptedModel:
    return ScriptedModel(
        [[assistant_message(text, item_id=f"msg_{i}")] for i, text in enumerate(replies)]
    )


@HOW
async def test_each_turn_sees_the_earlier_turns(memory: MemoryManager, how: str) -> None:
    session = LangswarmSession("turns", manager=memory)
    model = scripted("San Francisco", "California")
    agent = Agent(name="geo", model=model)
    first = await run(how, agent, "Which city is the Golden Gate Bridge in?", session=session)
    assert first.final_output == "San Francisco"
    stored = await session.get_items()
    second = await run(how, agent, "Which state is it in?", session=session)
    assert second.final_output == "California"
    assert list(model.calls[-1].input) == [
        *stored,
        {"role": "user", "content": "Which state is it in?"},
    ]
    assert [item.get("role") for item in await session.get_items()] == ["user", "assistant"] * 2


@HOW
async def test_sessions_do_not_share_history(memory: MemoryManager, how: str) -> None:
    cats, dogs = (LangswarmSession(name, manager=memory) for name in ("cats", "dogs"))
    model = scripted("Cats, noted.", "Dogs, noted.", "You like cats.")
    agent = Agent(name="pets", model=model)
    await run(how, agent, "I like cats", session=cats)
    await run(how, agent, "I like dogs", session=dogs)
    await run(how, agent, "What do I like?", session=cats)
    sent = str(model.calls[-1].input)
    assert "I like cats" in sent and "I like dogs" not in sent


async def test_list_input_is_appended_to_the_history(memory: MemoryManager) -> None:
    session = LangswarmSession("lists", manager=memory)
    earlier: list[Any] = [
        {"role": "user", "content": "Earlier message"},
        {"role": "assistant", "content": "Saved reply"},
    ]
    await session.add_items(earlier)
    model = scripted("ok")
    new: list[Any] = [{"role": "user", "content": "Now this"}]
    await run("run", Agent(name="a", model=model), new, session=session)
    assert list(model.calls[-1].input) == earlier + new
    assert (await session.get_items())[:3] == earlier + new


async def test_an_input_callback_shapes_the_model_input_only(memory: MemoryManager) -> None:
    session = LangswarmSession("callback", manager=memory)
    model = scripted("reply 0", "reply 1", "reply 2")
    agent = Agent(name="a", model=model)

    def users_twice(history: list[Any], new: list[Any]) -> list[Any]:
        users = [item for item in history if item.get("role") == "user"]
        return users + users + new

    config = RunConfig(tracing_disabled=True, session_input_callback=users_twice)
    for turn in range(3):
        await run("run", agent, f"user {turn}", session=session, run_config=config)
    assert [item.get("content") for item in model.calls[-1].input] == [
        "user 0",
        "user 1",
        "user 0",
        "user 1",
        "user 2",
    ]
    stored = await session.get_items()
    assert len(stored) == 6  # the repeated history is not stored again
    assert [i.get("content") for i in stored if i.get("role") == "user"] == [
        "user 0",
        "user 1",
        "user 2",
    ]


async def test_run_config_settings_limit_the_history_sent(memory: MemoryManager) -> None:
    session = LangswarmSession(
        "limited", manager=memory, session_settings=SessionSettings(limit=100)
    )
    await session.add_items([{"role": "user", "content": f"Turn {i}"} for i in range(10)])
    model = scripted("Got it")
    config = RunConfig(tracing_disabled=True, session_settings=SessionSettings(limit=2))
    await run(
        "run", Agent(name="a", model=model), "New question", session=session, run_config=config
    )
    assert [item.get("content") for item in model.calls[-1].input] == [
        "Turn 8",
        "Turn 9",
        "New question",
    ]
    zero = RunConfig(tracing_disabled=True, session_settings=SessionSettings(limit=0))
    model.enqueue([assistant_message("Only the question")])
    await run("run", Agent(name="a", model=model), "Alone?", session=session, run_config=zero)
    assert list(model.calls[-1].input) == [{"role": "user", "content": "Alone?"}]


async def test_a_limit_never_sends_a_tool_output_without_its_call(
    memory: MemoryManager,
) -> None:
    session = LangswarmSession("pairs", manager=memory)
    history: list[Any] = [
        {"role": "user", "content": "What is the weather?"},
        {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}],
        },
    ]
    await session.add_items(history)
    assert await session.get_items(limit=2) == history[-2:]
    model = scripted("Sunny tomorrow too.")
    config = RunConfig(tracing_disabled=True, session_settings=SessionSettings(limit=2))
    await run(
        "run", Agent(name="a", model=model), "And tomorrow?", session=session, run_config=config
    )
    assert list(model.calls[-1].input) == [
        history[-1],
        {"role": "user", "content": "And tomorrow?"},
    ]


@pytest.mark.parametrize("how", ["run", "streamed"])
async def test_a_failing_store_fails_the_run_instead_of_hanging(
    memory: MemoryManager, how: str
) -> None:
    session = LangswarmSession("failing", manager=memory)
    session.close()
    with pytest.raises(RuntimeError, match="closed"):
        await run(how, Agent(name="a", model=scripted("never sent")), "hi", session=session)


approvals: list[str] = []


@function_tool(needs_approval=True)
def delete_note(customer: str) -> str:
    """Delete the customer's note (asks a human first)."""
    approvals.append(customer)
    return f"deleted note of {customer}"


async def test_an_approved_tool_call_resumes_into_the_same_history(
    memory: MemoryManager,
) -> None:
    approvals.clear()
    model = ScriptedModel(
        [
            [function_call("delete_note", {"customer": "104"}, call_id="call_1")],
            [function_call("delete_note", {"customer": "105"}, call_id="call_2")],
        ]
    )
    agent = Agent(
        name="notes",
        model=model,
        tools=[delete_note],
        model_settings=ModelSettings(tool_choice="delete_note"),
        tool_use_behavior="stop_on_first_tool",
    )
    for turn, (customer, verdict) in enumerate([("104", "approve"), ("105", "reject")]):
        session = LangswarmSession("approvals", manager=memory)  # a fresh object each turn
        paused = await run("run", agent, f"Delete note {customer}", session=session)
        (request,) = paused.interruptions
        state = paused.to_state()
        getattr(state, verdict)(request)
        resumed = await Runner.run(agent, state, session=session, run_config=NO_TRACES)
        assert resumed.interruptions == []
        items: list[Any] = await session.get_items()
        calls = [i for i in items if i.get("type") == "function_call"]
        outputs = [i for i in items if i.get("type") == "function_call_output"]
        assert len(calls) == len(outputs) == turn + 1
        assert calls[-1]["call_id"] == outputs[-1]["call_id"] == f"call_{turn + 1}"
    assert approvals == ["104"]


# -- the same requests as with the SDK's own SQLiteSession ----------------------------------


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


TURNS = ["Hello!", "What is the weather in Paris?", "Thanks, and tomorrow?"]


async def three_turns(standin: LLMStandIn, session: Session) -> list[Any]:
    """Three turns (the second calls a tool); the request bodies the stand-in received."""
    standin.reset()
    standin.queue(
        "Hello, how can I help?",
        FunctionCall("get_weather", '{"city": "Paris"}'),
        "It is sunny in Paris.",
        "Sunny tomorrow as well.",
    )
    async with openai.AsyncOpenAI(
        base_url=standin.openai_base_url, api_key="test", max_retries=0
    ) as client:
        model = OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client)
        agent = Agent(name="weather", instructions="Be brief.", model=model, tools=[get_weather])
        for text in TURNS:
            await Runner.run(agent, text, session=session, run_config=NO_TRACES)
    assert [r.status for r in standin.requests] == [200] * 4, standin.requests
    return [r.body for r in standin.requests]


async def test_the_model_receives_what_the_sdks_sqlite_session_would_send(
    memory: MemoryManager, llm_standin: LLMStandIn, tmp_path: Path
) -> None:
    reference = SQLiteSession("weather", tmp_path / "agents.db")
    try:
        expected = await three_turns(llm_standin, reference)
        expected_items = await reference.get_items()
    finally:
        reference.close()
    ours = LangswarmSession("weather", manager=memory)
    sent = await three_turns(llm_standin, ours)
    # Turn 1 is one request, turn 2 two (the tool call and the answer), turn 3 one.
    assert sent == expected
    second_turn, third_turn = sent[1], sent[3]
    assert second_turn["input"][0] == {"content": TURNS[0], "role": "user"}
    assert [i.get("type") for i in third_turn["input"]][3:5] == [
        "function_call",
        "function_call_output",
    ]
    assert third_turn["input"][-1] == {"content": TURNS[2], "role": "user"}
    assert await ours.get_items() == expected_items
