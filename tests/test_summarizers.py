"""Summarizers: what the extractive default keeps, and the LLM ones against real SDK clients.

The LLM summarizers talk to the local API stand-in (``tests/_standin.py``) through the
official ``openai`` and ``anthropic`` async clients, on asyncio and on trio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langswarm.core.memory._summarizers import (
    AnthropicSummarizer,
    ExtractiveSummarizer,
    OpenAISummarizer,
    render_transcript,
)
from langswarm.core.memory._tokens import count_message_tokens, count_text_tokens
from langswarm.core.memory.exceptions import MemoryValidationError, SummarizationError
from langswarm.core.memory.interfaces import (
    ConversationSummary,
    Message,
    MessageRole,
    Summarizer,
    SummaryType,
)
from tests._standin import LLMStandIn
from tests.children import script

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parent / "fixtures" / "summary_conversations.json"
#: The quality bar: a 200-token summary of each fixture conversation (415-775 tokens long)
#: keeps at least 90 % of the facts listed for it, over all conversations together.
BUDGET = 200
MIN_FACTS_KEPT = 0.90


def load_conversations() -> list[tuple[str, list[Message], list[str]]]:
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return [
        (c["id"], [Message(**m) for m in c["messages"]], c["facts"]) for c in data["conversations"]
    ]


CONVERSATIONS = load_conversations()


def summary_of(text: str, message_count: int = 1) -> ConversationSummary:
    return ConversationSummary(
        summary_id="s1",
        session_id="session",
        summary_text=text,
        message_count=message_count,
        token_count=count_text_tokens(text),
        created_at=datetime(2025, 1, 1),
        summary_type=SummaryType.AUTOMATIC,
        covers_through=message_count,
    )


def split_point(messages: Sequence[Message]) -> int:
    """About half-way, never between a tool call and its result."""
    half = len(messages) // 2
    while half < len(messages) and messages[half].is_tool_result:
        half += 1
    return half


@pytest.fixture
def standin(llm_standin: LLMStandIn) -> LLMStandIn:
    """The shared stand-in, reset for this test."""
    llm_standin.reset()
    return llm_standin


# ---------------------------------------------------------------------------------------------
# The fixture itself


def test_fixture_holds_realistic_conversations() -> None:
    assert len(CONVERSATIONS) >= 10
    for name, messages, facts in CONVERSATIONS:
        transcript = render_transcript(messages)
        assert len(messages) >= 10, name
        assert sum(map(count_message_tokens, messages)) >= 2 * BUDGET, name
        for fact in facts:
            assert fact in transcript, f"{name}: {fact!r} is not in the conversation"


# ---------------------------------------------------------------------------------------------
# Extractive summarizer


async def test_extractive_keeps_the_facts_within_budget() -> None:
    summarizer = ExtractiveSummarizer()
    kept = total = 0
    lost: dict[str, list[str]] = {}
    for name, messages, facts in CONVERSATIONS:
        text = await summarizer.summarize(messages, previous=None, max_tokens=BUDGET)
        assert 0 < count_text_tokens(text) <= BUDGET, name
        missing = [fact for fact in facts if fact not in text]
        kept += len(facts) - len(missing)
        total += len(facts)
        if missing:
            lost[name] = missing
    assert kept / total >= MIN_FACTS_KEPT, f"kept {kept}/{total} facts; lost {lost}"


async def test_extractive_is_incremental() -> None:
    """Summarizing in two halves, the second folding in the first, keeps the first's facts."""
    summarizer = ExtractiveSummarizer()
    carried = first_kept = kept = total = 0
    for name, messages, facts in CONVERSATIONS:
        half = split_point(messages)
        first = await summarizer.summarize(messages[:half], previous=None, max_tokens=BUDGET)
        rolled = await summarizer.summarize(
            messages[half:], previous=summary_of(first, half), max_tokens=BUDGET
        )
        assert count_text_tokens(rolled) <= BUDGET, name
        early = [fact for fact in facts if fact in first]
        first_kept += len(early)
        carried += sum(fact in rolled for fact in early)
        kept += sum(fact in rolled for fact in facts)
        total += len(facts)
    assert carried / first_kept >= MIN_FACTS_KEPT, f"carried {carried}/{first_kept}"
    assert kept / total >= MIN_FACTS_KEPT, f"kept {kept}/{total}"


def test_extractive_rolling_summary_is_stable() -> None:
    """Folding a summary into itself with nothing new changes nothing."""
    summarizer = ExtractiveSummarizer()
    for name, messages, _ in CONVERSATIONS:
        text = summarizer.summarize_sync(messages, previous=None, max_tokens=BUDGET)
        again = summarizer.summarize_sync([], previous=summary_of(text), max_tokens=BUDGET)
        assert again == text, name


# Summarizes every fixture conversation at a few budgets and prints a digest of the results.
def test_extractive_is_deterministic_across_processes() -> None:
    """Same input, same summary, whatever the string-hash seed of the process."""
    digests = set()
    for seed in ("1", "2", "3"):
        result = subprocess.run(
            [sys.executable, script("summary_digest"), str(FIXTURE)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        digests.add(result.stdout.strip())
    assert len(digests) == 1


def test_extractive_keeps_tool_calls_and_results() -> None:
    messages = [
        Message(role=MessageRole.USER, content="What's the weather in Oslo tomorrow?"),
        Message(
            role=MessageRole.ASSISTANT,
            tool_calls=[
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_forecast", "arguments": '{"city": "Oslo"}'},
                }
            ],
        ),
        Message(
            role=MessageRole.TOOL, tool_call_id="call_1", content='{"high_c": -3, "snow_cm": 12}'
        ),
        Message(
            role=MessageRole.ASSISTANT,
            content="Tomorrow in Oslo: a high of -3 °C and 12 cm of snow.",
        ),
    ]
    text = ExtractiveSummarizer().summarize_sync(messages, previous=None, max_tokens=120)
    assert "Tool call: get_forecast(city=Oslo)" in text
    assert "Tool result: get_forecast → high_c=-3, snow_cm=12" in text
    assert "User: What's the weather in Oslo tomorrow?" in text


async def test_extractive_works_off_the_event_loop() -> None:
    calls: list[int] = []

    class Probe(ExtractiveSummarizer):
        def summarize_sync(self, *args: Any, **kwargs: Any) -> str:
            calls.append(threading.get_ident())
            return super().summarize_sync(*args, **kwargs)

    _, messages, _ = CONVERSATIONS[0]
    await Probe().summarize(messages, previous=None, max_tokens=BUDGET)
    assert calls and calls[0] != threading.get_ident()


async def test_extractive_edge_cases() -> None:
    summarizer = ExtractiveSummarizer()
    assert await summarizer.summarize([], previous=None, max_tokens=50) == ""
    _, messages, _ = CONVERSATIONS[0]
    assert count_text_tokens(await summarizer.summarize(messages, previous=None, max_tokens=1)) == 1
    for bad in (0, -5):
        with pytest.raises(MemoryValidationError):
            await summarizer.summarize(messages, previous=None, max_tokens=bad)


_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.sampled_from(
    [m.text() for _, ms, _ in CONVERSATIONS for m in ms if m.text()]
)


@settings(max_examples=150, deadline=None)
@given(
    texts=st.lists(st.tuples(st.sampled_from(["user", "assistant", "system"]), _text), max_size=12),
    previous=st.none() | _text,
    budget=st.integers(1, 400),
)
def test_extractive_never_exceeds_budget(
    texts: list[tuple[str, str]], previous: str | None, budget: int
) -> None:
    messages = [Message(role=MessageRole(role), content=text) for role, text in texts]
    prior = summary_of(previous) if previous is not None else None
    summarizer = ExtractiveSummarizer()
    text = summarizer.summarize_sync(messages, previous=prior, max_tokens=budget)
    assert count_text_tokens(text) <= budget
    assert summarizer.summarize_sync(messages, previous=prior, max_tokens=budget) == text


async def test_summarizers_satisfy_the_protocol() -> None:
    assert isinstance(ExtractiveSummarizer(), Summarizer)
    async with openai.AsyncOpenAI(api_key="test", base_url="http://127.0.0.1:9/v1") as client:
        assert isinstance(OpenAISummarizer(client), Summarizer)
    async with anthropic.AsyncAnthropic(api_key="test", base_url="http://127.0.0.1:9") as aclient:
        assert isinstance(AnthropicSummarizer(aclient), Summarizer)


# ---------------------------------------------------------------------------------------------
# LLM summarizers through the official clients


def conversation(name: str) -> list[Message]:
    return next(messages for n, messages, _ in CONVERSATIONS if n == name)


PREVIOUS = summary_of("User Marcus Feld reported a double charge of $129.00 (INV-2024-0918).")


def user_text(body: dict[str, Any]) -> str:
    """The single user turn a summarizer sends."""
    (message,) = [m for m in body["messages"] if m["role"] == "user"]
    content = message["content"]
    return content if isinstance(content, str) else "".join(b["text"] for b in content)


async def test_openai_summarizer(standin: LLMStandIn, anyio_backend: str) -> None:
    standin.configure(reply="Marcus Feld got refund RF-77120 for $129.00.")
    async with openai.AsyncOpenAI(
        base_url=standin.openai_base_url, api_key="test", max_retries=0
    ) as client:
        summarizer = OpenAISummarizer(client, model="gpt-4o-mini")
        messages = conversation("billing_double_charge_anthropic_tools")
        text = await summarizer.summarize(messages, previous=PREVIOUS, max_tokens=BUDGET)
    assert text == "Marcus Feld got refund RF-77120 for $129.00."
    (request,) = standin.requests
    assert request.status == 200, request.error
    assert request.headers["x-stainless-async"] == f"async:{anyio_backend}"
    body = request.body
    assert body["model"] == "gpt-4o-mini"
    assert body["max_completion_tokens"] == BUDGET
    assert body["messages"][0]["role"] == "system"
    assert f"at most {BUDGET} tokens" in body["messages"][0]["content"]
    sent = user_text(body)
    assert PREVIOUS.summary_text in sent
    assert "I'm Marcus Feld, customer since 2021" in sent
    assert "[tool call] issue_refund" in sent
    assert "RF-77120" in sent  # the tool result


async def test_anthropic_summarizer(standin: LLMStandIn, anyio_backend: str) -> None:
    standin.configure(reply="Tomasz Kowalski moved K7Q2ZP to LH1178 on 2025-03-16, seat 14C.")
    async with anthropic.AsyncAnthropic(
        base_url=standin.anthropic_base_url, api_key="test", max_retries=0
    ) as client:
        summarizer = AnthropicSummarizer(client, model="claude-haiku-4-5")
        messages = conversation("travel_rebooking_tools")
        text = await summarizer.summarize(messages, previous=PREVIOUS, max_tokens=BUDGET)
    assert text == "Tomasz Kowalski moved K7Q2ZP to LH1178 on 2025-03-16, seat 14C."
    (request,) = standin.requests
    assert request.status == 200, request.error
    assert request.headers["x-stainless-async"] == f"async:{anyio_backend}"
    body = request.body
    assert body["model"] == "claude-haiku-4-5"
    assert body["max_tokens"] == BUDGET
    assert f"at most {BUDGET} tokens" in body["system"]
    sent = user_text(body)
    assert PREVIOUS.summary_text in sent
    assert "Booking reference K7Q2ZP" in sent
    assert "[tool call] rebook" in sent
    assert '"seat": "14C"' in sent  # the tool result


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_llm_summary_is_trimmed_to_budget(standin: LLMStandIn, provider: str) -> None:
    standin.configure(reply="The customer asked about refunds. " * 40)
    text = await _summarize_with(provider, standin, max_tokens=30)
    assert 0 < count_text_tokens(text) <= 30
    assert text.endswith("refunds.")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("status", [400, 429, 500, 529])
async def test_llm_errors_become_summarization_errors(
    standin: LLMStandIn, provider: str, status: int
) -> None:
    standin.configure(fail_status=status, fail_message="the stand-in refused")
    with pytest.raises(SummarizationError, match="the stand-in refused") as info:
        await _summarize_with(provider, standin)
    assert isinstance(info.value.__cause__, openai.APIStatusError | anthropic.APIStatusError)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_llm_timeouts_become_summarization_errors(standin: LLMStandIn, provider: str) -> None:
    standin.configure(delay=2.0)
    with pytest.raises(SummarizationError) as info:
        await _summarize_with(provider, standin, client_timeout=0.2)
    assert isinstance(info.value.__cause__, openai.APITimeoutError | anthropic.APITimeoutError)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_llm_unreachable_server_is_a_summarization_error(provider: str) -> None:
    with pytest.raises(SummarizationError) as info:
        await _summarize_with(provider, None)
    cause = (openai.APIConnectionError, anthropic.APIConnectionError)
    assert isinstance(info.value.__cause__, cause)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_llm_empty_reply_is_a_summarization_error(standin: LLMStandIn, provider: str) -> None:
    standin.configure(reply="")
    with pytest.raises(SummarizationError, match="no summary text"):
        await _summarize_with(provider, standin)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_llm_nothing_new_makes_no_request(standin: LLMStandIn, provider: str) -> None:
    text = await _summarize_with(provider, standin, messages=[], previous=PREVIOUS)
    assert text == PREVIOUS.summary_text
    assert standin.requests == []


async def _summarize_with(
    provider: str,
    standin: LLMStandIn | None,
    *,
    max_tokens: int = BUDGET,
    client_timeout: float = 10.0,
    messages: Sequence[Message] | None = None,
    previous: ConversationSummary | None = None,
) -> str:
    """One summary through a fresh client of ``provider`` (no stand-in: a dead port)."""
    if messages is None:
        messages = conversation("support_account_locked")
    base = standin.base_url if standin else "http://127.0.0.1:9"
    if provider == "openai":
        async with openai.AsyncOpenAI(
            base_url=f"{base}/v1", api_key="test", max_retries=0, timeout=client_timeout
        ) as openai_client:
            return await OpenAISummarizer(openai_client).summarize(
                messages, previous=previous, max_tokens=max_tokens
            )
    async with anthropic.AsyncAnthropic(
        base_url=base, api_key="test", max_retries=0, timeout=client_timeout
    ) as anthropic_client:
        return await AnthropicSummarizer(anthropic_client).summarize(
            messages, previous=previous, max_tokens=max_tokens
        )
