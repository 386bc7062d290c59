"""A program with no event loop uses ``LangswarmChatMessageHistory`` through its sync methods.

Nothing here runs inside an event loop, as in a script or a sync web handler: the calls go to
the adapter's home loop on a daemon thread, where each manager's runtime starts on first use
and then serves every call, from any thread. LangChain's sync ``RunnableWithMessageHistory``
``invoke``/``stream`` take this path.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from langswarm.core.memory.langchain import LangswarmChatMessageHistory
from tests.adapters.conftest import Factory

DEPRECATED = pytest.mark.filterwarnings(
    "ignore:RunnableWithMessageHistory is deprecated:DeprecationWarning"
)


def test_the_sync_methods_need_no_event_loop(unentered: Factory) -> None:
    make_memory = unentered
    memory = make_memory()
    history = LangswarmChatMessageHistory("script", manager=memory)
    assert history.messages == []
    history.add_messages([SystemMessage("system"), HumanMessage("human 1")])
    history.add_ai_message("ai")
    history.add_user_message(HumanMessage("human 2", id="h2"))
    assert str(history) == "System: system\nHuman: human 1\nAI: ai\nHuman: human 2"
    expected = [
        SystemMessage("system"),
        HumanMessage("human 1"),
        AIMessage("ai"),
        HumanMessage("human 2", id="h2"),
    ]
    assert LangswarmChatMessageHistory("script", manager=make_memory()).messages == expected
    again = LangswarmChatMessageHistory("script", manager=memory)
    assert again.messages == expected
    again.clear()
    assert history.messages == []


def test_threads_share_one_runtime(unentered: Factory, caplog: pytest.LogCaptureFixture) -> None:
    """Sync calls from many threads at once go to one runtime: nothing is lost, every batch
    stays whole, and the runtime is started once, not per call."""
    caplog.set_level(logging.INFO, logger="langswarm.memory")
    memory = unentered()
    history = LangswarmChatMessageHistory("threads", manager=memory)

    def turn(n: int) -> None:
        history.add_messages([HumanMessage(f"q{n}"), AIMessage(f"a{n}")])
        assert len(history.messages) >= 2

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(turn, range(40)))
    read = history.messages
    starts = [r for r in caplog.records if r.getMessage().startswith("memory runtime started")]
    assert len(starts) == 1
    assert sorted(str(m.content) for m in read[::2]) == sorted(f"q{n}" for n in range(40))
    assert [m.content for m in read[1::2]] == ["a" + str(m.content)[1:] for m in read[::2]]


@DEPRECATED
def test_a_sync_chain_keeps_its_history(unentered: Factory) -> None:
    memory = unentered()

    def reply(messages: list[BaseMessage]) -> str:
        said = [str(m.content) for m in messages if isinstance(m, HumanMessage)]
        return "you said: " + " / ".join(said)

    chain = RunnableWithMessageHistory(
        RunnableLambda(reply),
        lambda session_id: LangswarmChatMessageHistory(session_id, manager=memory),
    )
    config: RunnableConfig = {"configurable": {"session_id": "sync-chain"}}
    assert chain.invoke([HumanMessage("hello")], config) == "you said: hello"
    assert chain.invoke([HumanMessage("bye")], config) == "you said: hello / bye"
    assert list(chain.stream([HumanMessage("again")], config)) == ["you said: hello / bye / again"]
    assert LangswarmChatMessageHistory("sync-chain", manager=memory).messages == [
        HumanMessage("hello"),
        AIMessage("you said: hello"),
        HumanMessage("bye"),
        AIMessage("you said: hello / bye"),
        HumanMessage("again"),
        AIMessage("you said: hello / bye / again"),
    ]
