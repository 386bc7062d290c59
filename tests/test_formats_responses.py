"""Responses-API items as a message format: kept verbatim, read by the runtime, converted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agents.items import ModelResponse
from agents.usage import Usage
from hypothesis import given
from openai.types.responses import Response, ResponseInputItemParam
from pydantic import ConfigDict, TypeAdapter

from langswarm.core.memory._formats import (
    create_anthropic_message,
    create_openai_message,
    messages_from_openai_format,
    messages_from_responses_format,
    messages_to_anthropic_request,
    messages_to_openai_format,
    messages_to_responses_format,
)
from langswarm.core.memory.exceptions import MemoryValidationError
from langswarm.core.memory.interfaces import Message, MessageRole
from tests.test_formats import (
    B64_IMAGE,
    FAST,
    PNG_URL,
    check_anthropic,
    check_openai,
    drain,
    guide_messages,
    mixed_conversations,
    openai_conversations,
)

Json = dict[str, Any]

# extra="forbid": an item with a key the SDK's request type does not declare fails too.
RESPONSES_INPUT = TypeAdapter(list[ResponseInputItemParam], config=ConfigDict(extra="forbid"))


def check_responses(items: list[Any]) -> None:
    """Valid ``input`` for ``responses.create``; every function output answers an earlier call."""
    drain(RESPONSES_INPUT.validate_python(items))
    called: set[str] = set()
    for item in items:
        if item.get("type") == "function_call":
            called.add(item["call_id"])
        elif item.get("type") == "function_call_output":
            assert item["call_id"] in called, item


def as_json(value: Any) -> str:
    """JSON text in key order, so equal text means the same items, keys in the same order."""
    return json.dumps(value)


USER: Json = {"role": "user", "content": "What is in this picture?"}
USER_PARTS: Json = {
    "type": "message",
    "role": "user",
    "content": [
        {"type": "input_text", "text": "and this one?"},
        {"type": "input_image", "image_url": PNG_URL, "detail": "low"},
    ],
}
DEVELOPER: Json = {"role": "developer", "content": "Answer briefly."}
SYSTEM: Json = {
    "type": "message",
    "role": "system",
    "content": [{"type": "input_text", "text": "Sys"}],
}
ANSWER: Json = {
    "type": "message",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "A cat.", "annotations": []}],
    "id": "msg_1",
    "status": "completed",
}
REFUSAL: Json = {
    "id": "msg_2",
    "type": "message",
    "role": "assistant",
    "status": "completed",
    "content": [{"type": "refusal", "refusal": "I can't help with that."}],
}
CALL_1: Json = {
    "type": "function_call",
    "call_id": "call_1",
    "name": "weather",
    "arguments": '{"city": "Oslo"}',
    "id": "fc_1",
    "status": "completed",
}
CALL_2: Json = {"type": "function_call", "call_id": "call_2", "name": "time", "arguments": "{}"}
OUTPUT_1: Json = {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}
OUTPUT_2: Json = {
    "type": "function_call_output",
    "call_id": "call_2",
    "output": [{"type": "input_text", "text": "12:00"}],
}
REASONING: Json = {
    "type": "reasoning",
    "id": "rs_1",
    "summary": [{"type": "summary_text", "text": "Looking up the weather."}],
    "encrypted_content": "gAAAA...",
}
WEB_SEARCH: Json = {
    "type": "web_search_call",
    "id": "ws_1",
    "status": "completed",
    "action": {"type": "search", "query": "weather Oslo"},
}
FILE_SEARCH: Json = {
    "type": "file_search_call",
    "id": "fs_1",
    "queries": ["q"],
    "status": "completed",
    "results": None,
}
COMPUTER_CALL: Json = {
    "type": "computer_call",
    "id": "cu_1",
    "call_id": "call_c",
    "action": {"type": "click", "button": "left", "x": 1, "y": 2},
    "pending_safety_checks": [],
    "status": "completed",
}
COMPUTER_OUTPUT: Json = {
    "type": "computer_call_output",
    "call_id": "call_c",
    "output": {"type": "computer_screenshot", "image_url": PNG_URL},
}
CUSTOM_CALL: Json = {
    "type": "custom_tool_call",
    "call_id": "call_x",
    "name": "sql",
    "input": "SELECT 1",
}
CUSTOM_OUTPUT: Json = {"type": "custom_tool_call_output", "call_id": "call_x", "output": "1"}
MCP_REQUEST: Json = {
    "type": "mcp_approval_request",
    "id": "mcpr_1",
    "name": "deploy",
    "arguments": "{}",
    "server_label": "ops",
}
MCP_RESPONSE: Json = {
    "type": "mcp_approval_response",
    "approval_request_id": "mcpr_1",
    "approve": True,
}
REFERENCE: Json = {"type": "item_reference", "id": "msg_0"}
FILE_IMAGE: Json = {"type": "input_image", "detail": "auto", "file_id": "file_1"}
BARE_REFERENCE: Json = {"id": "msg_0"}

CONVERTIBLE: list[Json] = [USER, USER_PARTS, DEVELOPER, SYSTEM, ANSWER, REFUSAL, CALL_1, CALL_2]
CONVERTIBLE += [OUTPUT_1, OUTPUT_2]
OPAQUE: list[Json] = [
    REASONING,
    WEB_SEARCH,
    FILE_SEARCH,
    COMPUTER_CALL,
    COMPUTER_OUTPUT,
    CUSTOM_CALL,
]
OPAQUE += [CUSTOM_OUTPUT, MCP_REQUEST, MCP_RESPONSE, REFERENCE, BARE_REFERENCE]
ALL = CONVERTIBLE + OPAQUE


def test_the_test_items_are_valid_responses_input() -> None:
    check_responses(ALL)


def test_items_round_trip_exactly() -> None:
    messages = messages_from_responses_format(ALL)
    assert as_json(messages_to_responses_format(messages)) == as_json(ALL)
    # Copies: changing what came out changes neither the stored items nor the caller's.
    out: list[Any] = messages_to_responses_format(messages)
    out[0]["content"] = "changed"
    assert messages[0].item == USER and USER["content"] == "What is in this picture?"


def test_items_fill_the_ordinary_fields() -> None:
    user, parts, developer, system, answer, refusal, call_1, _, output_1, output_2 = (
        messages_from_responses_format(CONVERTIBLE)
    )
    assert (user.role, user.content) == (MessageRole.USER, "What is in this picture?")
    assert parts.content == [
        {"type": "text", "text": "and this one?"},
        {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}},
    ]
    assert (developer.role, developer.content) == (MessageRole.SYSTEM, "Answer briefly.")
    assert system.text() == "Sys"
    assert (answer.role, answer.text()) == (MessageRole.ASSISTANT, "A cat.")
    assert refusal.content == [{"type": "refusal", "refusal": "I can't help with that."}]
    assert call_1.content is None and call_1.has_tool_calls
    assert call_1.tool_calls == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
        }
    ]
    assert (output_1.role, output_1.tool_call_id, output_1.content) == (
        MessageRole.TOOL,
        "call_1",
        "sunny",
    )
    assert output_1.is_tool_result
    assert output_2.content == [{"type": "text", "text": "12:00"}]


def test_items_with_no_chat_form_keep_calls_paired_with_their_outputs() -> None:
    messages = messages_from_responses_format(OPAQUE)
    by_type = {str(m.item.get("type", "item_reference")): m for m in messages if m.item}
    for message in messages:
        assert message.content is None
    assert by_type["reasoning"].role is MessageRole.ASSISTANT
    assert not by_type["reasoning"].has_tool_calls and not by_type["web_search_call"].has_tool_calls
    for call, output, call_id in [
        ("computer_call", "computer_call_output", "call_c"),
        ("custom_tool_call", "custom_tool_call_output", "call_x"),
        ("mcp_approval_request", "mcp_approval_response", "mcpr_1"),
    ]:
        assert by_type[call].has_tool_calls
        assert by_type[call].tool_calls == [{"id": call_id, "type": call}]
        assert by_type[output].is_tool_result and by_type[output].tool_call_id == call_id


def test_convertible_items_go_to_chat_with_parallel_calls_merged() -> None:
    items = [DEVELOPER, USER, ANSWER, CALL_1, CALL_2, OUTPUT_1, OUTPUT_2, REFUSAL]
    chat = messages_to_openai_format(messages_from_responses_format(items))
    check_openai(chat)
    assert chat == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is in this picture?"},
        {"role": "assistant", "content": "A cat."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "time", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
        {
            "role": "assistant",
            "content": [{"type": "refusal", "refusal": "I can't help with that."}],
        },
    ]


def test_convertible_items_go_to_anthropic() -> None:
    items = [DEVELOPER, USER_PARTS, ANSWER, CALL_1, CALL_2, OUTPUT_1, OUTPUT_2]
    system, turns = messages_to_anthropic_request(messages_from_responses_format(items))
    check_anthropic(system, turns)
    assert system == "Answer briefly."
    assert turns[0]["content"][1]["type"] == "image"  # type: ignore[index]
    assert turns[1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "A cat."},
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "call_2", "name": "time", "input": {}},
        ],
    }
    assert turns[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
            {
                "type": "tool_result",
                "tool_use_id": "call_2",
                "content": [{"type": "text", "text": "12:00"}],
            },
        ],
    }


@pytest.mark.parametrize(
    ("item", "match"),
    [
        (REASONING, "'reasoning' item 'rs_1' cannot be sent to {}: 'reasoning' items have no"),
        (WEB_SEARCH, "'web_search_call' item 'ws_1' cannot be sent to {}"),
        (COMPUTER_OUTPUT, "'computer_call_output' item cannot be sent to {}"),
        (BARE_REFERENCE, "'item_reference' item 'msg_0' cannot be sent"),
        (
            {"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]},
            r"'message' item cannot be sent to {}: content\[0\] is an 'input_file' part",
        ),
        (
            {"type": "message", "role": "user", "content": [FILE_IMAGE]},
            r"'message' item cannot be sent to {}: content\[0\] is an 'input_image' part, which",
        ),
        ({**CALL_2, "namespace": "tools"}, "'function_call' item cannot .*'namespace' has no"),
    ],
)
@pytest.mark.parametrize("target", ["OpenAI chat completions", "Anthropic"])
def test_items_with_no_faithful_conversion_are_refused(item: Json, match: str, target: str) -> None:
    messages = [*messages_from_responses_format([USER, item])]
    convert = messages_to_openai_format if target != "Anthropic" else messages_to_anthropic_request
    with pytest.raises(
        MemoryValidationError, match=r"messages\[1\]: the Responses " + match.format(target)
    ):
        convert(messages)


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ("hello", r"items\[0\]: a Responses item must be a dict, not str"),
        ({"content": "x"}, r"items\[0\]: a Responses item needs a string 'type' \(or a 'role'\)"),
        ({"type": 3}, "needs a string 'type'"),
        ({"role": "tool", "content": "x"}, "message.role must be one of user, assistant"),
        ({"role": "user", "content": None}, "message.content must be a string or a list"),
        ({"role": "user", "content": ["hi"]}, r"message: content\[0\] must be a dict"),
        ({"role": "user", "content": [{"type": "input_text"}]}, r"content\[0\]\.text must be"),
        ({**CALL_2, "call_id": ""}, "function_call.call_id must be a non-empty string"),
        ({**CALL_2, "arguments": {}}, "function_call.arguments must be a string, not dict"),
        ({**OUTPUT_1, "output": 3}, "function_call_output.output must be a string or a list"),
        ({"type": "reasoning", "id": "rs", "summary": [], "x": object()}, "plain"),
    ],
)
def test_malformed_items_are_refused(item: Any, match: str) -> None:
    with pytest.raises(MemoryValidationError, match=match):
        messages_from_responses_format([item])


# --- SDK objects --------------------------------------------------------------------------

RESPONSE = Response.model_validate(
    {
        "id": "resp_1",
        "object": "response",
        "created_at": 1_700_000_000,
        "model": "gpt-4.1-mini",
        "status": "completed",
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "output": [
            REASONING,
            {**ANSWER, "content": [{**ANSWER["content"][0], "logprobs": []}]},
            CALL_1,
            {**CALL_2, "id": "fc_2", "status": "completed"},
            WEB_SEARCH,
            {
                "type": "function_call_output",
                "id": "fco_1",
                "call_id": "call_1",
                "output": "sunny",
                "status": "completed",
                "created_by": "client",
            },
        ],
    }
)


def test_output_objects_are_kept_as_the_agents_sdk_keeps_them() -> None:
    # The Agents SDK's own conversion of a model response into session items is the oracle.
    expected = ModelResponse(
        output=RESPONSE.output, usage=Usage(), response_id=RESPONSE.id
    ).to_input_items()
    messages = messages_from_responses_format(RESPONSE.output)
    items = messages_to_responses_format(messages)
    assert as_json(items) == as_json(expected)
    assert "created_by" not in items[-1]
    check_responses(items)
    assert messages_to_responses_format(messages_from_responses_format(items)) == items
    assert [m.role for m in messages] == [MessageRole.ASSISTANT] * 5 + [MessageRole.TOOL]


def test_output_objects_inside_dicts_are_read_too() -> None:
    answer = RESPONSE.output[1]
    (message,) = messages_from_responses_format(
        [{"type": "message", "role": "assistant", "content": answer.content}]  # type: ignore[union-attr]
    )
    assert message.text() == "A cat."
    assert message.item is not None and message.item["content"][0]["type"] == "output_text"


# --- chat and Anthropic messages as items -------------------------------------------------


def test_guide_messages_become_items() -> None:
    messages = guide_messages()
    items: list[Any] = messages_to_responses_format(messages)
    drain(RESPONSES_INPUT.validate_python(items))
    assert items[:3] == [
        {"role": "user", "content": "What's the weather like?"},
        {"role": "assistant", "content": "I'll check the weather for you."},
        {"role": "system", "content": "You are a helpful weather assistant."},
    ]
    calls = [item for item in items if item.get("type") == "function_call"]
    outputs = [item for item in items if item.get("type") == "function_call_output"]
    assert [c["name"] for c in calls] == ["get_weather", "search_knowledge_base", "web_search"]
    assert calls[2] == {
        "type": "function_call",
        "call_id": "tool_123",
        "name": "web_search",
        "arguments": '{"query": "latest AI research"}',
    }
    # A legacy function call gets the id its Anthropic tool_use would, and its result quotes it.
    assert calls[1]["call_id"] == outputs[0]["call_id"] == f"call_{messages[4].message_id}"
    assert outputs[1] == {
        "type": "function_call_output",
        "call_id": "tool_123",
        "output": "Found 10 recent papers on AI research...",
    }


def test_images_and_tool_results_become_input_parts() -> None:
    messages = [
        create_openai_message(
            "user",
            [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        ),
        create_anthropic_message(
            "assistant",
            [{"type": "tool_use", "id": "toolu_1", "name": "crop", "input": {"x": 1}}],
        ),
        create_anthropic_message(
            "user",
            [
                {"type": "text", "text": "cropped:"},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [B64_IMAGE]},
            ],
        ),
        create_openai_message("assistant", [{"type": "refusal", "refusal": "No."}]),
    ]
    items = messages_to_responses_format(messages)
    check_responses(items)
    assert items == [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"},
            ],
        },
        {"type": "function_call", "call_id": "toolu_1", "name": "crop", "arguments": '{"x": 1}'},
        {
            "type": "function_call_output",
            "call_id": "toolu_1",
            "output": [{"type": "input_image", "image_url": PNG_URL, "detail": "auto"}],
        },
        {"role": "user", "content": [{"type": "input_text", "text": "cropped:"}]},
        {"role": "assistant", "content": "No."},
    ]


def events(chat: list[Any]) -> list[tuple[Any, ...]]:
    """What a chat list says, in order, however it is split into messages: the text of each
    message with any, each call and each result (legacy function calls have no id: None)."""
    out: list[tuple[Any, ...]] = []
    for message in chat:
        content = message.get("content")
        parts = [content] if isinstance(content, str) else content or []
        text = "\n".join(
            p if isinstance(p, str) else p.get("text", p.get("refusal")) for p in parts
        )
        role = message["role"]
        if role in ("tool", "function"):
            out.append(("result", message.get("tool_call_id"), text))
            continue
        if text:
            out.append((role, text))
        for call in message.get("tool_calls") or ():
            function = call["function"]
            out.append(("call", call["id"], function["name"], function["arguments"]))
        if call := message.get("function_call"):
            out.append(("call", None, call["name"], call["arguments"]))
    return out


@FAST
@given(openai_conversations())
def test_chat_round_trips_through_items(original: list[Json]) -> None:
    ours = messages_from_openai_format(original)
    items = messages_to_responses_format(ours)
    check_responses(items)
    back = messages_to_openai_format(messages_from_responses_format(items))
    check_openai(back)
    want, got = events(original), events(back)
    assert len(got) == len(want)
    for got_event, want_event in zip(got, want, strict=True):
        if want_event[0] in ("call", "result") and want_event[1] is None:
            # A legacy function call and its result get the id call_<message_id>.
            assert str(got_event[1]).startswith("call_")
            got_event = (got_event[0], None, *got_event[2:])
        assert got_event == want_event


@FAST
@given(mixed_conversations())
def test_mixed_conversations_become_valid_items(messages: list[Message]) -> None:
    items = messages_to_responses_format(messages)
    check_responses(items)
    again = messages_from_responses_format(items)
    assert messages_to_responses_format(again) == items
    system, turns = messages_to_anthropic_request(again)
    check_anthropic(system, turns)
