"""The SDKs' own objects go in wherever a dict does, built with the SDK types and returned by
the real async clients talking to the local stand-in."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic import AsyncAnthropic
from anthropic.types import Message as AnthropicMessage
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

from langswarm.core.memory._formats import (
    ANTHROPIC_CONTINUATION_TEXT,
    create_anthropic_message,
    create_openai_message,
    messages_from_anthropic_format,
    messages_from_openai_format,
    messages_to_anthropic_format,
    messages_to_anthropic_request,
    messages_to_openai_format,
)
from langswarm.core.memory.exceptions import MemoryValidationError
from langswarm.core.memory.interfaces import Message, MessageRole
from tests._standin import LLMStandIn
from tests.test_formats import check_anthropic, check_openai

Json = dict[str, Any]

CALL: Json = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "f", "arguments": '{"a": 1}'},
}


def completion(message: Json) -> ChatCompletion:
    """A chat completion as the API returns it, with every response-only key present."""
    full = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "annotations": [],
        "audio": None,
        "function_call": None,
        "tool_calls": None,
        **message,
    }
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": full, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )


def claude_response(content: list[Json]) -> AnthropicMessage:
    return AnthropicMessage.model_validate(
        {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": content,
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "container": None,
            "usage": {"input_tokens": 3, "output_tokens": 5},
        }
    )


def fields(message: Message) -> tuple[Any, ...]:
    return (message.role, message.content, message.tool_calls, message.function_call)


# --- OpenAI chat --------------------------------------------------------------------------


def test_chat_completion_message_with_tool_calls() -> None:
    reply = completion({"content": "Let me look.", "tool_calls": [CALL]}).choices[0].message
    (message,) = messages_from_openai_format([reply])
    assert fields(message) == (MessageRole.ASSISTANT, "Let me look.", [CALL], None)
    # The same as from the dict form, and a caller's tool call objects work as they are.
    assert fields(message) == fields(messages_from_openai_format([reply.model_dump()])[0])
    rebuilt = create_openai_message("assistant", reply.content, tool_calls=reply.tool_calls)
    assert fields(rebuilt) == fields(message)
    answer = create_openai_message("tool", "1", tool_call_id="call_1")
    chat = messages_to_openai_format([message, answer])
    check_openai(chat)
    assert chat[0] == {"role": "assistant", "content": "Let me look.", "tool_calls": [CALL]}


def test_chat_completion_legacy_function_call_object() -> None:
    reply = completion({"function_call": {"name": "f", "arguments": "{}"}}).choices[0].message
    assert reply.function_call is not None
    message = create_openai_message("assistant", None, function_call=reply.function_call)
    assert message.function_call == {"arguments": "{}", "name": "f"}
    assert fields(messages_from_openai_format([reply])[0]) == fields(message)


def test_refusal_becomes_a_refusal_part() -> None:
    reply = completion({"refusal": "I can't help with that."}).choices[0].message
    (message,) = messages_from_openai_format([reply])
    assert message.content == [{"type": "refusal", "refusal": "I can't help with that."}]
    both = completion({"content": "Well.", "refusal": "No."}).choices[0].message
    (message,) = messages_from_openai_format([both])
    assert message.content == [
        {"type": "text", "text": "Well."},
        {"type": "refusal", "refusal": "No."},
    ]
    check_openai(messages_to_openai_format([message]))
    assert messages_to_anthropic_format([message])[-1]["content"] == [
        {"type": "text", "text": "Well."},
        {"type": "text", "text": "No."},
    ]


def test_annotations_are_ignored_and_audio_is_refused() -> None:
    citation = {
        "type": "url_citation",
        "url_citation": {"start_index": 0, "end_index": 4, "title": "T", "url": "https://x.y"},
    }
    cited = completion({"content": "Oslo", "annotations": [citation]}).choices[0].message
    assert messages_from_openai_format([cited])[0].content == "Oslo"
    spoken = (
        completion(
            {"audio": {"id": "audio_1", "data": "AAAA", "expires_at": 1, "transcript": "hi"}}
        )
        .choices[0]
        .message
    )
    with pytest.raises(MemoryValidationError, match=r"messages\[0\]: message has unsupported keys"):
        messages_from_openai_format([spoken])


# --- Anthropic ----------------------------------------------------------------------------

BLOCKS: list[Json] = [
    {"type": "text", "text": "Checking.", "citations": None},
    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}},
]


def test_anthropic_response_objects_in_every_form() -> None:
    response = claude_response(BLOCKS)
    from_blocks = create_anthropic_message("assistant", response.content)
    forms: list[Any] = [
        response,
        response.model_dump(),
        response.model_dump(mode="json"),
        response.to_param(),
    ]
    expected = [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}},
            ],
        }
    ]
    continued = {"role": "user", "content": ANTHROPIC_CONTINUATION_TEXT}
    assert messages_to_anthropic_format([from_blocks]) == [continued, *expected]
    for form in forms:
        (message,) = messages_from_anthropic_format([form])
        assert message.role is MessageRole.ASSISTANT and message.has_tool_calls
        assert messages_to_anthropic_format([message]) == messages_to_anthropic_format(
            [from_blocks]
        )
    answer = create_anthropic_message(
        "user", [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "found"}]
    )
    system, turns = messages_to_anthropic_request([from_blocks, answer])
    check_anthropic(system, turns)
    check_openai(messages_to_openai_format([from_blocks, answer]))


def test_keys_that_matter_are_still_refused() -> None:
    with pytest.raises(MemoryValidationError, match="message has unsupported keys: model"):
        messages_from_anthropic_format([{"role": "assistant", "content": "x", "model": "m"}])
    thinking = claude_response([{"type": "thinking", "thinking": "hmm", "signature": "s"}])
    with pytest.raises(MemoryValidationError, match=r"'thinking' blocks are not allowed"):
        messages_from_anthropic_format([thinking])
    with pytest.raises(MemoryValidationError, match=r"content\[0\]: 'thinking' blocks"):
        create_anthropic_message("assistant", thinking.content)


# --- through the real clients ------------------------------------------------------------


@pytest.mark.anyio
async def test_openai_client_replies_go_back_in(llm_standin: LLMStandIn) -> None:
    llm_standin.reset()
    llm_standin.configure(reply="Hello there.")
    client = AsyncOpenAI(base_url=llm_standin.openai_base_url, api_key="sk-test", max_retries=0)
    history = [create_openai_message("user", "Hi")]
    async with client:
        first = await client.chat.completions.create(
            model="gpt-4o-mini", messages=messages_to_openai_format(history)
        )
        history += messages_from_openai_format([first.choices[0].message])
        history.append(create_openai_message("user", "And again?"))
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=messages_to_openai_format(history)
        )
    assert [r.status for r in llm_standin.requests] == [200, 200]
    assert llm_standin.requests[1].body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there."},
        {"role": "user", "content": "And again?"},
    ]


@pytest.mark.anyio
async def test_anthropic_client_replies_go_back_in(llm_standin: LLMStandIn) -> None:
    llm_standin.reset()
    llm_standin.configure(reply="Hello there.")
    client = AsyncAnthropic(
        base_url=llm_standin.anthropic_base_url, api_key="sk-test", max_retries=0
    )
    history = [create_anthropic_message("user", "Hi")]
    async with client:
        response = await client.messages.create(
            model="claude-haiku-4-5", max_tokens=64, messages=messages_to_anthropic_format(history)
        )
        from_blocks = create_anthropic_message("assistant", response.content)
        (from_response,) = messages_from_anthropic_format([response])
        assert fields(from_blocks) == fields(from_response)
        history += [from_response, create_anthropic_message("user", "And again?")]
        await client.messages.create(
            model="claude-haiku-4-5", max_tokens=64, messages=messages_to_anthropic_format(history)
        )
    assert [r.status for r in llm_standin.requests] == [200, 200]
    assert llm_standin.requests[1].body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there."},
        {"role": "user", "content": "And again?"},
    ]
