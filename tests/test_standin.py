"""The LLM API stand-in checks what it is sent: malformed requests get the API's 400."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import openai
import pytest

from tests._standin import (
    FunctionCall,
    LLMStandIn,
    RequestRejected,
    check_anthropic_request,
    check_openai_request,
    check_responses_request,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def standin(llm_standin: LLMStandIn) -> LLMStandIn:
    """The shared stand-in, reset for this test."""
    llm_standin.reset()
    return llm_standin


TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}
TOOL_RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "found"}
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}


def anthropic_body(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": messages, **extra}


def openai_body(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": messages, **extra}


VALID_ANTHROPIC = {
    "plain": anthropic_body([{"role": "user", "content": "hi"}]),
    "system prompt": anthropic_body([{"role": "user", "content": "hi"}], system="be brief"),
    "system blocks": anthropic_body(
        [{"role": "user", "content": "hi"}], system=[{"type": "text", "text": "be brief"}]
    ),
    "tool round trip": anthropic_body(
        [
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": [{"type": "text", "text": "Sure."}, TOOL_USE]},
            {"role": "user", "content": [TOOL_RESULT]},
        ]
    ),
}

INVALID_ANTHROPIC = {
    "starts with assistant": anthropic_body([{"role": "assistant", "content": "hi"}]),
    "two user turns": anthropic_body(
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    ),
    "system role in messages": anthropic_body(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    ),
    "no max_tokens": {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]},
    "no model": {"max_tokens": 10, "messages": [{"role": "user", "content": "x"}]},
    "no messages": anthropic_body([]),
    "tool_use unanswered": anthropic_body(
        [
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": [TOOL_USE]},
            {"role": "user", "content": "well?"},
        ]
    ),
    "tool_result for unknown id": anthropic_body([{"role": "user", "content": [TOOL_RESULT]}]),
    "tool_result after text": anthropic_body(
        [
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": [TOOL_USE]},
            {"role": "user", "content": [{"type": "text", "text": "here:"}, TOOL_RESULT]},
        ]
    ),
    "ends on an unanswered tool_use": anthropic_body(
        [{"role": "user", "content": "look it up"}, {"role": "assistant", "content": [TOOL_USE]}]
    ),
    "unknown block type": anthropic_body(
        [{"role": "user", "content": [{"type": "txt", "text": "hi"}]}]
    ),
    "unknown message key": anthropic_body([{"role": "user", "content": "hi", "name": "bob"}]),
    "bad system block": anthropic_body(
        [{"role": "user", "content": "hi"}], system=[{"type": "image", "text": "x"}]
    ),
}

VALID_OPENAI = {
    "plain": openai_body([{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]),
    "tool round trip": openai_body(
        [
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "found"},
        ]
    ),
    "legacy function": openai_body(
        [
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": None, "function_call": TOOL_CALL["function"]},
            {"role": "function", "name": "lookup", "content": "found"},
        ]
    ),
}

INVALID_OPENAI = {
    "no model": {"messages": [{"role": "user", "content": "hi"}]},
    "no messages": openai_body([]),
    "unknown role": openai_body([{"role": "robot", "content": "hi"}]),
    "unknown key": openai_body([{"role": "user", "content": "hi", "tool_use_id": "x"}]),
    "orphan tool message": openai_body(
        [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "call_1", "content": "found"},
        ]
    ),
    "tool call unanswered": openai_body(
        [
            {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
            {"role": "user", "content": "well?"},
        ]
    ),
    "zero max_tokens": openai_body([{"role": "user", "content": "hi"}], max_tokens=0),
}


@pytest.mark.parametrize("body", VALID_ANTHROPIC.values(), ids=VALID_ANTHROPIC)
def test_anthropic_check_accepts(body: dict[str, Any]) -> None:
    check_anthropic_request(body)


@pytest.mark.parametrize("body", INVALID_ANTHROPIC.values(), ids=INVALID_ANTHROPIC)
def test_anthropic_check_rejects(body: dict[str, Any]) -> None:
    with pytest.raises(RequestRejected):
        check_anthropic_request(body)


@pytest.mark.parametrize("body", VALID_OPENAI.values(), ids=VALID_OPENAI)
def test_openai_check_accepts(body: dict[str, Any]) -> None:
    check_openai_request(body)


@pytest.mark.parametrize("body", INVALID_OPENAI.values(), ids=INVALID_OPENAI)
def test_openai_check_rejects(body: dict[str, Any]) -> None:
    with pytest.raises(RequestRejected):
        check_openai_request(body)


async def test_rejects_anthropic_messages_starting_with_assistant(standin: LLMStandIn) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=standin.anthropic_base_url, api_key="test", max_retries=0
    ) as client:
        with pytest.raises(anthropic.BadRequestError) as info:
            await client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=50,
                messages=[{"role": "assistant", "content": "I'll start."}],
            )
    assert info.value.status_code == 400
    assert "starting with 'user'" in info.value.message
    (request,) = standin.requests
    assert request.status == 400


async def test_rejects_openai_orphan_tool_message(standin: LLMStandIn) -> None:
    async with openai.AsyncOpenAI(
        base_url=standin.openai_base_url, api_key="test", max_retries=0
    ) as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "tool", "tool_call_id": "call_9", "content": "42"}],
            )
    assert info.value.status_code == 400
    assert "role 'tool'" in info.value.message


async def test_answers_valid_requests_in_the_sdks_types(standin: LLMStandIn) -> None:
    standin.configure(reply="All done.", delay=0.2)
    started = time.monotonic()
    async with anthropic.AsyncAnthropic(
        base_url=standin.anthropic_base_url, api_key="test", max_retries=0
    ) as aclient:
        message = await aclient.messages.create(**VALID_ANTHROPIC["tool round trip"])
    async with openai.AsyncOpenAI(
        base_url=standin.openai_base_url, api_key="test", max_retries=0
    ) as oclient:
        completion = await oclient.chat.completions.create(**VALID_OPENAI["tool round trip"])
    assert time.monotonic() - started >= 0.4  # the configured delay, twice
    assert message.content[0].type == "text" and message.content[0].text == "All done."
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 2
    assert completion.choices[0].message.content == "All done."
    assert completion.choices[0].finish_reason == "stop"
    assert [r.api for r in standin.requests] == ["anthropic", "openai"]
    assert all(r.status == 200 for r in standin.requests)
    standin.reset()
    assert standin.requests == []


# -- Responses API --------------------------------------------------------------------------

CALL_ITEM = {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"}
OUTPUT_ITEM = {"type": "function_call_output", "call_id": "call_1", "output": "found"}
ASSISTANT_ITEM = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "status": "completed",
    "content": [{"type": "output_text", "text": "Sure.", "annotations": [], "logprobs": []}],
}
LOOKUP_TOOL = {
    "type": "function",
    "name": "lookup",
    "parameters": {"type": "object", "properties": {}},
    "strict": True,
}


def responses_body(items: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "input": items, **extra}


VALID_RESPONSES = {
    "text input": responses_body("hi"),
    "easy messages": responses_body(
        [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]
    ),
    "model output back as input": responses_body(
        [{"role": "user", "content": "hi"}, ASSISTANT_ITEM, {"role": "user", "content": "more"}]
    ),
    "tool round trip": responses_body(
        [{"role": "user", "content": "look it up"}, CALL_ITEM, OUTPUT_ITEM],
        tools=[LOOKUP_TOOL],
        instructions="be brief",
    ),
    "reasoning item": responses_body(
        [{"type": "reasoning", "id": "rs_1", "summary": []}, {"role": "user", "content": "x"}]
    ),
    "answer left to an earlier response": responses_body(
        [OUTPUT_ITEM], previous_response_id="resp_1"
    ),
}

INVALID_RESPONSES = {
    "no model": {"input": "hi"},
    "no input": {"model": "gpt-4o-mini"},
    "unknown parameter": responses_body("hi", temperature_=1),
    "streaming": responses_body("hi", stream=True),
    "unknown item key": responses_body([{"role": "user", "content": "hi", "name": "bob"}]),
    "unknown item type": responses_body([{"type": "function_cal", "call_id": "c"}]),
    "unknown part type": responses_body(
        [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    ),
    "call without arguments": responses_body([{**CALL_ITEM, "arguments": None}, OUTPUT_ITEM]),
    "output without its call": responses_body([{"role": "user", "content": "x"}, OUTPUT_ITEM]),
    "call never answered": responses_body([{"role": "user", "content": "x"}, CALL_ITEM]),
    "output before its call": responses_body([OUTPUT_ITEM, CALL_ITEM]),
    "duplicate item ids": responses_body([ASSISTANT_ITEM, ASSISTANT_ITEM]),
}


@pytest.mark.parametrize("body", VALID_RESPONSES.values(), ids=VALID_RESPONSES)
def test_responses_check_accepts(body: dict[str, Any]) -> None:
    check_responses_request(body)


@pytest.mark.parametrize("body", INVALID_RESPONSES.values(), ids=INVALID_RESPONSES)
def test_responses_check_rejects(body: dict[str, Any]) -> None:
    with pytest.raises(RequestRejected):
        check_responses_request(body)


def test_responses_check_names_the_bad_item() -> None:
    body = responses_body([{"role": "user", "content": "ok"}, {**CALL_ITEM, "arguments": 3}])
    with pytest.raises(RequestRejected, match=r"input\[1\].*arguments"):
        check_responses_request(body)


async def test_responses_answers_with_text_then_scripted_function_calls(
    standin: LLMStandIn,
) -> None:
    standin.configure(reply="Plain text.")
    standin.queue(
        FunctionCall("lookup", '{"q": "x"}'),
        [FunctionCall("a"), FunctionCall("b", '{"n": 1}')],
        "Scripted text.",
    )
    async with openai.AsyncOpenAI(
        base_url=standin.openai_base_url, api_key="test", max_retries=0
    ) as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.responses.create(model="gpt-4o-mini", input=[OUTPUT_ITEM])  # type: ignore[list-item]
        replies = [
            await client.responses.create(model="gpt-4o-mini", input="go", tools=[LOOKUP_TOOL])  # type: ignore[list-item]
            for _ in range(4)
        ]
    assert info.value.status_code == 400 and "call_1" in info.value.message
    one, two, text, default = replies
    assert [(c.type, c.name, c.arguments, c.call_id) for c in one.output] == [  # type: ignore[union-attr]
        ("function_call", "lookup", '{"q": "x"}', "call_standin_1_0")
    ]
    assert [c.name for c in two.output] == ["a", "b"]  # type: ignore[union-attr]
    assert text.output_text == "Scripted text." and default.output_text == "Plain text."
    assert [r.id for r in replies] == [f"resp_standin_{n}" for n in range(1, 5)]
    assert text.usage is not None and text.usage.output_tokens > 0
    assert [(r.api, r.status) for r in standin.requests] == [("responses", 400)] + [
        ("responses", 200)
    ] * 4
    standin.reset()  # numbering starts again
    async with openai.AsyncOpenAI(
        base_url=standin.openai_base_url, api_key="test", max_retries=0
    ) as client:
        again = await client.responses.create(model="gpt-4o-mini", input="go")
    assert again.id == "resp_standin_1" and again.output_text == "Summary: nothing to report."
