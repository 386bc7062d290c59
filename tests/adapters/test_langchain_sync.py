"""A program with no event loop uses ``LangswarmChatMessageHistory`` through its sync methods.

Nothing here runs inside an event loop: each sync call runs on a short-lived loop of its own
(the manager's runtime starts for it and drains when it ends), as in a script or a sync web
handler. LangChain's sync ``RunnableWithMessageHistory.invoke``/``stream`` take this path.
"""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from langswarm.core.memory.langchain import LangswarmChatMessageHistory
from tests.adapters.conftest import Factory

DEPRECATED = pytest.mark.filterwarnings(
    "ignore:RunnableWithMessageHistory is deprecated:DeprecationWarning"
)


def test_the_sync_methods_need_no_event_loop(make_memory: Factory) -> None:
    memory = make_memory()  # never entered: each call starts the runtime on its own loop
    history = LangswarmChatMessageHistory("script", manager=memory)
    assert history.messages == []
    history.add_messages([SystemMessage("system"), HumanMessage("human 1")])
    history.add_ai_message("ai")
    history.add_user_message(HumanMessage("human 2", id="h2"))
    assert str(history) == "System: system\nHuman: human 1\nAI: ai\nHuman: human 2"
    again = LangswarmChatMessageHistory("script", manager=make_memory())
    assert again.messages == [
        SystemMessage("system"),
        HumanMessage("human 1"),
        AIMessage("ai"),
        HumanMessage("human 2", id="h2"),
    ]
    again.clear()
    assert history.messages == []


@DEPRECATED
def test_a_sync_chain_keeps_its_history(make_memory: Factory) -> None:
    memory = make_memory()

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
