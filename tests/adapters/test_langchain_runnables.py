"""LangChain's ``RunnableWithMessageHistory`` and chat models with our history, every backend.

What LangChain's tests of ``RunnableWithMessageHistory`` check (message and dict inputs, a
separate history key, message, list and dict outputs, streaming, custom session factories
keyed by several config fields) with ``LangswarmChatMessageHistory`` behind it; then
``ChatOpenAI`` and ``ChatAnthropic`` against the local stand-in keep a 3-turn conversation.
LangChain's runnables schedule with asyncio (under trio they fail: "no current event loop"),
so these tests pin ``anyio_backend`` to asyncio; the history's own async methods are checked
under both loops in test_langchain_history.py. ``RunnableWithMessageHistory`` is deprecated
in langchain-core 1.x and warns on construction; that warning alone is ignored here.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from langchain_anthropic import ChatAnthropic, _client_utils
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_core.runnables.utils import ConfigurableFieldSpec
from langchain_openai import ChatOpenAI

from langswarm.core.memory import MemoryManager
from langswarm.core.memory.langchain import LangswarmChatMessageHistory
from tests._standin import LLMStandIn

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated"),
]


@pytest.fixture
def anyio_backend() -> str:
    """LangChain's runnables run on asyncio only."""
    return "asyncio"


def humans(messages: list[BaseMessage]) -> list[str]:
    return [str(m.content) for m in messages if isinstance(m, HumanMessage)]


def with_history(
    memory: MemoryManager, runnable: Runnable[Any, Any], **keys: Any
) -> RunnableWithMessageHistory:
    def history(session_id: str) -> LangswarmChatMessageHistory:
        return LangswarmChatMessageHistory(session_id, manager=memory)

    return RunnableWithMessageHistory(runnable, history, **keys)


def config(session_id: str) -> Any:
    return {"configurable": {"session_id": session_id}}


async def stored(memory: MemoryManager, session_id: str) -> list[BaseMessage]:
    return await LangswarmChatMessageHistory(session_id, manager=memory).aget_messages()


async def test_message_input_and_string_output(memory: MemoryManager) -> None:
    chain = with_history(memory, RunnableLambda(lambda ms: "you said: " + "|".join(humans(ms))))
    assert await chain.ainvoke([HumanMessage("hello")], config("1")) == "you said: hello"
    assert await chain.ainvoke([HumanMessage("bye")], config("1")) == "you said: hello|bye"
    chunks = [c async for c in chain.astream([HumanMessage("again")], config("1"))]
    assert chunks == ["you said: hello|bye|again"]
    assert await stored(memory, "1") == [
        HumanMessage("hello"),
        AIMessage("you said: hello"),
        HumanMessage("bye"),
        AIMessage("you said: hello|bye"),
        HumanMessage("again"),
        AIMessage("you said: hello|bye|again"),
    ]


async def test_dict_input_with_and_without_a_history_key(memory: MemoryManager) -> None:
    listed = with_history(
        memory,
        RunnableLambda(lambda d: "said: " + "|".join(humans(d["messages"]))),
        input_messages_key="messages",
    )
    assert await listed.ainvoke({"messages": [HumanMessage("a")]}, config("2")) == "said: a"
    assert await listed.ainvoke({"messages": [HumanMessage("b")]}, config("2")) == "said: a|b"
    keyed = with_history(
        memory,
        RunnableLambda(lambda d: "said: " + "|".join([*humans(d["history"]), d["input"]])),
        input_messages_key="input",
        history_messages_key="history",
    )
    assert await keyed.ainvoke({"input": "a"}, config("3")) == "said: a"
    assert await keyed.ainvoke({"input": "b"}, config("3")) == "said: a|b"


@pytest.mark.parametrize("shape", ["message", "list", "dict"])
async def test_message_list_and_dict_outputs(memory: MemoryManager, shape: str) -> None:
    def answer(d: dict[str, Any]) -> Any:
        message = AIMessage("said: " + "|".join([*humans(d["history"]), d["input"]]))
        return {"message": message, "list": [message], "dict": {"output": [message]}}[shape]

    keys: dict[str, Any] = {"input_messages_key": "input", "history_messages_key": "history"}
    if shape == "dict":
        keys["output_messages_key"] = "output"
    chain = with_history(memory, RunnableLambda(answer), **keys)
    first = await chain.ainvoke({"input": "a"}, config(shape))
    second = await chain.ainvoke({"input": "b"}, config(shape))
    reply = AIMessage("said: a|b")
    assert second == {"message": reply, "list": [reply], "dict": {"output": [reply]}}[shape]
    assert first != second
    assert len(await stored(memory, shape)) == 4


async def test_a_model_sees_the_whole_history(memory: MemoryManager) -> None:
    counter = with_history(memory, RunnableLambda(lambda ms: AIMessage(str(len(ms)))))
    assert (await counter.ainvoke([HumanMessage("hi")], config("count"))).content == "1"
    assert (await counter.ainvoke([HumanMessage("hi")], config("count"))).content == "3"
    assert (await counter.ainvoke([HumanMessage("hi")], config("count"))).content == "5"


async def test_a_factory_keyed_by_user_and_conversation(memory: MemoryManager) -> None:
    def history(user_id: str, conversation_id: str) -> LangswarmChatMessageHistory:
        return LangswarmChatMessageHistory(conversation_id, manager=memory, user_id=user_id)

    fields = [
        ConfigurableFieldSpec(id="user_id", annotation=str, default="", is_shared=True),
        ConfigurableFieldSpec(id="conversation_id", annotation=str, is_shared=True),
    ]

    def answer(d: dict[str, Any]) -> list[BaseMessage]:
        return [AIMessage("said: " + "|".join(humans(d["messages"])))]

    chain = RunnableWithMessageHistory(
        RunnableLambda(answer),
        history,
        input_messages_key="messages",
        history_messages_key="history",
        history_factory_config=fields,
    )

    def who(user: str, conversation: str) -> Any:
        return {"configurable": {"user_id": user, "conversation_id": conversation}}

    await chain.ainvoke({"messages": [HumanMessage("hello")]}, who("u1", "c1"))
    await chain.ainvoke({"messages": [HumanMessage("goodbye")]}, who("u1", "c1"))
    await chain.ainvoke({"messages": [HumanMessage("meow")]}, who("u2", "c2"))
    assert await stored(memory, "c1") == [
        HumanMessage("hello"),
        AIMessage("said: hello"),
        HumanMessage("goodbye"),
        AIMessage("said: goodbye"),
    ]
    owner = await memory.get_session("c2")
    assert owner is not None and owner.metadata.user_id == "u2"


# -- real chat models against the stand-in ----------------------------------------------------

QUESTIONS = ["My name is Ada.", "What is 2 + 2?", "What is my name?"]
PROMPT = ChatPromptTemplate.from_messages(
    [("system", "Be brief."), MessagesPlaceholder("history"), ("human", "{question}")]
)


async def three_turns(
    memory: MemoryManager, standin: LLMStandIn, model: Runnable[Any, Any], session_id: str
) -> None:
    chain = with_history(
        memory, PROMPT | model, input_messages_key="question", history_messages_key="history"
    )
    standin.reset()
    for turn, question in enumerate(QUESTIONS):
        standin.configure(reply=f"answer {turn}")
        reply = await chain.ainvoke({"question": question}, config(session_id))
        assert reply.content == f"answer {turn}"


def texts_sent(body: dict[str, Any], key: str) -> list[tuple[str, str]]:
    def text(content: Any) -> str:
        if isinstance(content, str):
            return content
        return "".join(block["text"] for block in content if block.get("type") == "text")

    return [(m["role"], text(m["content"])) for m in body[key]]


EXPECTED_LAST_TURN = [
    ("user", QUESTIONS[0]),
    ("assistant", "answer 0"),
    ("user", QUESTIONS[1]),
    ("assistant", "answer 1"),
    ("user", QUESTIONS[2]),
]


async def check_history(memory: MemoryManager, session_id: str) -> list[BaseMessage]:
    history = await stored(memory, session_id)
    assert [type(m) for m in history] == [HumanMessage, AIMessage] * 3
    assert [m.content for m in history[::2]] == QUESTIONS
    return history


async def test_chat_openai_keeps_a_three_turn_conversation(
    memory: MemoryManager, llm_standin: LLMStandIn
) -> None:
    # A client of the test's own: langchain-openai's default one outlives the event loop.
    async with httpx.AsyncClient() as http:
        model = ChatOpenAI(
            model="gpt-4o-mini",
            base_url=llm_standin.openai_base_url,
            api_key="test",  # type: ignore[arg-type]
            max_retries=0,
            http_async_client=http,
        )
        await three_turns(memory, llm_standin, model, "openai")
    bodies = [r.body for r in llm_standin.requests]
    assert [r.status for r in llm_standin.requests] == [200] * 3
    assert texts_sent(bodies[2], "messages") == [("system", "Be brief."), *EXPECTED_LAST_TURN]
    history = await check_history(memory, "openai")
    assert history[1].response_metadata["model_name"] == "gpt-4o-mini"
    reply = history[1]
    assert isinstance(reply, AIMessage) and reply.usage_metadata is not None  # kept whole


async def test_chat_anthropic_keeps_a_three_turn_conversation(
    memory: MemoryManager, llm_standin: LLMStandIn
) -> None:
    model = ChatAnthropic(  # type: ignore[call-arg]
        model_name="claude-haiku-4-5",
        base_url=llm_standin.anthropic_base_url,
        api_key="test",  # type: ignore[arg-type]
        max_retries=0,
        max_tokens_to_sample=200,
    )
    try:
        await three_turns(memory, llm_standin, model, "anthropic")
    finally:
        # langchain-anthropic caches its HTTP client per base URL across event loops: close
        # it on this loop and forget it, so the next test's loop gets a fresh one.
        await model._async_client.close()
        _client_utils._get_default_async_httpx_client.cache_clear()
    bodies = [r.body for r in llm_standin.requests]
    assert [r.status for r in llm_standin.requests] == [200] * 3
    assert bodies[2]["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
    assert texts_sent(bodies[2], "messages") == EXPECTED_LAST_TURN
    history = await check_history(memory, "anthropic")
    assert history[1].response_metadata["stop_reason"] == "end_turn"
