"""Budgeted context windows: exact tiktoken budgets, order, tool pairs, no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langswarm.core.memory import Message, MessageRole
from langswarm.core.memory._tokens import count_message_tokens
from langswarm.core.memory._windows import safe_boundary, window_start
from langswarm.core.memory.backends.memory import InMemoryBackend
from tests.helpers import manager_on

pytestmark = pytest.mark.anyio

WORDS = ["alpha", "Lisbon", "42", "invoice", "naïve", "日本", "tool", "émoji 🙂", "\n", "x" * 30]


def _text(draw: st.DrawFn) -> str:
    return " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=0, max_size=40)))


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    """Chat turns mixing plain messages with OpenAI and Anthropic tool exchanges."""
    messages: list[Message] = []
    for turn in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["user", "assistant", "openai_tools", "anthropic_tools"]))
        if kind in ("user", "assistant"):
            messages.append(Message(role=MessageRole(kind), content=_text(draw)))
        elif kind == "openai_tools":
            ids = [f"call_{turn}_{k}" for k in range(draw(st.integers(1, 3)))]
            calls = [
                {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}}
                for i in ids
            ]
            messages.append(Message(role=MessageRole.ASSISTANT, content=None, tool_calls=calls))
            for i in ids:
                messages.append(Message(role=MessageRole.TOOL, content=_text(draw), tool_call_id=i))
        else:
            tid = f"toolu_{turn}"
            messages.append(
                Message(
                    role=MessageRole.ASSISTANT,
                    content=[{"type": "tool_use", "id": tid, "name": "f", "input": {"q": 1}}],
                )
            )
            messages.append(
                Message(
                    role=MessageRole.USER,
                    content=[{"type": "tool_result", "tool_use_id": tid, "content": _text(draw)}],
                )
            )
    return messages


def _call_ids(m: Message) -> set[str]:
    ids = {c["id"] for c in m.tool_calls or []}
    if isinstance(m.content, list):
        ids |= {b["id"] for b in m.content if b.get("type") == "tool_use"}
    return ids


def _result_ids(m: Message) -> set[str]:
    ids = {m.tool_call_id} if m.tool_call_id else set()
    if isinstance(m.content, list):
        ids |= {b["tool_use_id"] for b in m.content if b.get("type") == "tool_result"}
    return ids


def assert_pairs_intact(window: list[Message], full: list[Message]) -> None:
    """No result without its call; no call without every result the conversation has."""
    called = set().union(*(_call_ids(m) for m in window)) if window else set()
    answered = set().union(*(_result_ids(m) for m in window)) if window else set()
    assert answered <= called, "a tool result lost its call"
    answered_anywhere = set().union(*(_result_ids(m) for m in full))
    assert called & answered_anywhere <= answered, "a tool call lost its result"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations(), st.integers(0, 400))
def test_window_is_within_budget_maximal_and_keeps_pairs(
    messages: list[Message], budget: int
) -> None:
    start, tokens, _ = window_start(messages, 0, len(messages), budget)
    window = messages[start:]
    assert tokens == sum(count_message_tokens(m) for m in window) <= budget
    assert_pairs_intact(window, messages)
    if start > 0:  # the next older unit would not fit (or cannot be sent alone)
        unit = start - 1
        while unit > 0 and messages[unit].is_tool_result:
            unit -= 1
        extra = sum(count_message_tokens(m) for m in messages[unit:start])
        assert tokens + extra > budget or not messages[unit].has_tool_calls


@settings(max_examples=150, deadline=None)
@given(conversations(), st.data())
def test_safe_boundary_never_splits_a_pair(messages: list[Message], data: st.DataObject) -> None:
    cut = safe_boundary(messages, data.draw(st.integers(0, len(messages))))
    kept = messages[cut:]
    assert_pairs_intact(kept, messages)
    dropped = messages[:cut]
    assert not (
        set().union(set(), *(_call_ids(m) for m in dropped))
        & set().union(set(), *(_result_ids(m) for m in kept))
    )


async def test_context_respects_budget_order_and_reports_counts() -> None:
    async with manager_on(InMemoryBackend(), tail_size=50) as memory:
        session = await memory.create_session("u")
        texts = [f"message {i}: " + "lorem ipsum " * (i % 13) for i in range(400)]
        for i, t in enumerate(texts):
            role = MessageRole.USER if i % 2 == 0 else MessageRole.ASSISTANT
            await session.add_message(Message(role=role, content=t))
        for budget in (0, 7, 50, 333, 1000, 4000, 100_000):
            context = await session.get_conversation_context(max_tokens=budget)
            assert sum(m.token_count or 0 for m in context) <= budget
            assert [m.token_count for m in context] == [count_message_tokens(m) for m in context]
            assert [m.content for m in context] == texts[len(texts) - len(context) :]
        everything = await session.get_conversation_context(max_tokens=100_000)
        assert len(everything) == 400  # paged in from the backend beyond the tail
        recent = await session.get_recent_messages(token_limit=333)
        assert recent == await session.get_conversation_context(max_tokens=333)


def test_counting_works_with_networking_disabled(tmp_path: Path) -> None:
    """A fresh process with sockets disabled and an empty tiktoken cache counts tokens."""
    script = textwrap.dedent(
        """
        import json, socket
        import anyio

        def refuse(*args, **kwargs):
            raise OSError("network disabled for this test")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from langswarm.core.memory import (
            create_openai_message, initialize_memory, get_global_memory_manager)

        async def main():
            initialize_memory("development")
            session = await get_global_memory_manager().create_session("u")
            for i in range(30):
                await session.add_message(create_openai_message("user", f"hello number {i}"))
            context = await session.get_conversation_context(max_tokens=50)
            print(json.dumps([m.token_count for m in context]))

        anyio.run(main)
        """
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty-cache")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    assert counts and sum(counts) <= 50
    assert all(
        c == count_message_tokens(Message(role=MessageRole.USER, content="hello number 10"))
        for c in counts
    )
