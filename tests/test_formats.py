"""Provider formats: validation, conversion rules, and properties checked with the SDKs' types."""

from __future__ import annotations

import itertools
import json
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from anthropic.types import MessageParam
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageParam
from pydantic import ConfigDict, TypeAdapter

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

Json = dict[str, Any]

PNG = "iVBORw0KGgo="
PNG_URL = f"data:image/png;base64,{PNG}"
B64_IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
URL_IMAGE = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}


# --- checking against the SDKs ------------------------------------------------------------

# extra="forbid" so a key the SDK type does not declare fails too (the SDKs ignore extras).
OPENAI_MESSAGES = TypeAdapter(list[ChatCompletionMessageParam], config=ConfigDict(extra="forbid"))
ANTHROPIC_MESSAGES = TypeAdapter(list[MessageParam], config=ConfigDict(extra="forbid"))


def drain(value: Any) -> Any:
    """Consume pydantic's lazy ``Iterable[...]`` validators, so nested items are checked."""
    if isinstance(value, dict):
        return {key: drain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | Iterator):
        return [drain(item) for item in value]
    return value


def loose(converted: object) -> Any:
    """A converter's result (typed with the SDKs' request types) as JSON to index freely."""
    return converted


def blocks_of(content: Any) -> list[Json]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def check_openai(messages: list[Any]) -> None:
    """Valid for the OpenAI SDK, content None only where allowed, every tool call answered."""
    drain(OPENAI_MESSAGES.validate_python(messages))
    for i, message in enumerate(messages):
        role = message["role"]
        if message.get("content", "") is None:
            assert role == "function" or message.get("tool_calls") or message.get("function_call")
        if role == "assistant" and message.get("tool_calls"):
            calls = [call["id"] for call in message["tool_calls"]]
            answers = list(itertools.takewhile(lambda m: m["role"] == "tool", messages[i + 1 :]))
            assert sorted(m["tool_call_id"] for m in answers) == sorted(calls)
        elif role == "assistant" and message.get("function_call"):
            assert messages[i + 1]["role"] == "function"
            assert messages[i + 1]["name"] == message["function_call"]["name"]
        elif role == "tool":
            before = messages[i - 1] if i else {"role": None}
            assert before["role"] == "tool" or before.get("tool_calls")
        elif role == "function":
            assert i and messages[i - 1].get("function_call")


def check_anthropic(system: str | None, messages: list[Any]) -> None:
    """Valid for the Anthropic SDK and the API's conversation rules."""
    drain(ANTHROPIC_MESSAGES.validate_python(messages))
    assert system is None or system.strip()
    roles = [m["role"] for m in messages]
    assert not roles or roles[0] == "user"
    assert all(a != b for a, b in itertools.pairwise(roles)), roles
    previous_uses: set[str] = set()
    for message in messages:
        blocks = blocks_of(message["content"])
        assert blocks
        for block in blocks:
            for inner in [block, *blocks_of(block.get("content", []))]:
                if inner["type"] == "text":
                    assert inner["text"].strip(), "empty or whitespace-only text block"
            for key in ("id", "tool_use_id"):
                if key in block:
                    assert re.fullmatch(r"[A-Za-z0-9_-]+", block[key])
        kinds = [b["type"] for b in blocks]
        uses = [b["id"] for b in blocks if b["type"] == "tool_use"]
        results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        if message["role"] == "user":
            assert kinds == sorted(kinds, key=lambda kind: kind != "tool_result")
            assert sorted(results) == sorted(previous_uses)
            previous_uses = set()
        else:
            assert previous_uses == set(), "tool_use without a tool_result in the next turn"
            assert len(set(uses)) == len(uses)
            previous_uses = set(uses)
    if messages and messages[-1]["role"] == "assistant":
        last = blocks_of(messages[-1]["content"])[-1]
        assert last["type"] != "text" or last["text"] == last["text"].rstrip()


# --- the guide's constructions ------------------------------------------------------------


def guide_messages() -> list[Message]:
    """Every message the guide's "Creating Messages" and "Function and Tool Calls" build."""
    user_msg = create_openai_message("user", "What's the weather like?")
    assistant_msg = create_openai_message("assistant", "I'll check the weather for you.")
    system_msg = create_openai_message("system", "You are a helpful weather assistant.")
    function_msg = create_openai_message(
        "assistant",
        content=None,
        function_call={"name": "get_weather", "arguments": '{"location": "San Francisco"}'},
    )
    function_call_msg = create_openai_message(
        "assistant",
        content=None,
        function_call={
            "name": "search_knowledge_base",
            "arguments": '{"query": "machine learning", "limit": 5}',
        },
    )
    function_result = create_openai_message(
        "function",
        content='{"results": ["ML basics", "Neural networks", "Deep learning"]}',
        name="search_knowledge_base",
    )
    tool_use_msg = create_anthropic_message(
        "assistant",
        content=[
            {"type": "text", "text": "I'll search for that information."},
            {
                "type": "tool_use",
                "id": "tool_123",
                "name": "web_search",
                "input": {"query": "latest AI research"},
            },
        ],
    )
    tool_result_msg = create_anthropic_message(
        "user",
        content=[
            {
                "type": "tool_result",
                "tool_use_id": "tool_123",
                "content": "Found 10 recent papers on AI research...",
            }
        ],
    )
    return [
        user_msg,
        assistant_msg,
        system_msg,
        function_msg,
        function_call_msg,
        function_result,
        tool_use_msg,
        tool_result_msg,
    ]


def test_guide_messages_are_accepted() -> None:
    messages = guide_messages()
    assert [m.role for m in messages] == [
        MessageRole.USER,
        MessageRole.ASSISTANT,
        MessageRole.SYSTEM,
        MessageRole.ASSISTANT,
        MessageRole.ASSISTANT,
        MessageRole.FUNCTION,
        MessageRole.ASSISTANT,
        MessageRole.USER,
    ]
    assert messages[3].has_tool_calls and messages[3].content is None
    assert messages[5].is_tool_result and messages[5].name == "search_knowledge_base"
    assert messages[6].has_tool_calls and messages[7].is_tool_result
    assert messages[7].role is MessageRole.USER


def test_guide_tool_calls_convert_to_both_providers() -> None:
    # The guide's "Function and Tool Calls" session: every call is answered.
    messages = guide_messages()[4:]
    openai = loose(messages_to_openai_format(messages))
    check_openai(openai)
    assert openai[0]["function_call"]["name"] == "search_knowledge_base"
    assert openai[2]["tool_calls"][0]["id"] == "tool_123"
    assert openai[3] == {
        "role": "tool",
        "tool_call_id": "tool_123",
        "content": "Found 10 recent papers on AI research...",
    }
    system, anthropic = loose(messages_to_anthropic_request(messages))
    check_anthropic(system, anthropic)
    assert system is None
    assert [m["role"] for m in anthropic] == ["user", "assistant", "user", "assistant", "user"]
    assert anthropic[0]["content"] == ANTHROPIC_CONTINUATION_TEXT


def test_guide_creating_messages_convert() -> None:
    # The guide's "Creating Messages" session ends with an unanswered function call.
    messages = guide_messages()[:4]
    drain(OPENAI_MESSAGES.validate_python(messages_to_openai_format(messages)))
    system, anthropic = loose(messages_to_anthropic_request(messages))
    assert system == "You are a helpful weather assistant."
    drain(ANTHROPIC_MESSAGES.validate_python(anthropic))
    assert [m["role"] for m in anthropic] == ["user", "assistant"]
    assert anthropic[1]["content"][-1]["input"] == {"location": "San Francisco"}


# --- rejected input -----------------------------------------------------------------------

CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}

OPENAI_REJECTED: list[tuple[dict[str, Any], str]] = [
    ({"role": "robot", "content": "x"}, "unknown OpenAI role 'robot'"),
    ({"role": "developer", "content": "x"}, "unknown OpenAI role"),
    ({"role": 5, "content": "x"}, "unknown OpenAI role"),
    ({"role": "user"}, "user messages need content"),
    ({"role": "assistant"}, "assistant messages need content"),
    ({"role": "user", "content": 5}, "content must be a string, a list of content parts or None"),
    ({"role": "user", "content": []}, "must not be an empty list"),
    ({"role": "user", "content": ["hi"]}, r"content\[0\] must be a dict content block"),
    ({"role": "user", "content": [{"text": "hi"}]}, r"content\[0\] needs a string 'type'"),
    ({"role": "user", "content": [{"type": "text"}]}, r"content\[0\]\.text must be a string"),
    ({"role": "user", "content": [{"type": "text", "text": 1}]}, "text must be a string, not int"),
    ({"role": "user", "content": [B64_IMAGE]}, "'image' parts are not allowed"),
    ({"role": "user", "content": [{"type": "input_audio"}]}, "'input_audio' parts"),
    (
        {"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
        r"content\[0\]\.image_url\.url must be a non-empty string",
    ),
    ({"role": "user", "content": [{"type": "image_url"}]}, r"image_url must be a dict"),
    (
        {"role": "system", "content": [{"type": "image_url", "image_url": {"url": PNG_URL}}]},
        "'image_url' parts are not allowed in OpenAI system messages",
    ),
    (
        {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": PNG_URL}}]},
        "not allowed in OpenAI assistant messages",
    ),
    (
        {"role": "assistant", "content": [{"type": "refusal"}]},
        r"content\[0\]\.refusal must be a string",
    ),
    ({"role": "tool", "content": "x"}, "tool messages need tool_call_id"),
    ({"role": "tool", "content": "x", "tool_call_id": ""}, "tool messages need tool_call_id"),
    ({"role": "tool", "tool_call_id": "c"}, "tool messages need content"),
    ({"role": "user", "content": "x", "tool_call_id": "c"}, "only tool messages carry"),
    ({"role": "function", "content": "x"}, "function messages need name"),
    (
        {"role": "function", "content": [{"type": "text", "text": "x"}], "name": "f"},
        "function message content must be a string or None",
    ),
    ({"role": "user", "content": "x", "name": ""}, "name must be a non-empty string"),
    ({"role": "user", "content": "x", "name": 3}, "name must be a non-empty string"),
    (
        {"role": "user", "content": "x", "function_call": {"name": "f", "arguments": "{}"}},
        "only assistant messages carry function_call or tool_calls",
    ),
    ({"role": "tool", "content": "x", "tool_call_id": "c", "tool_calls": [CALL]}, "only assist"),
    (
        {
            "role": "assistant",
            "function_call": {"name": "f", "arguments": "{}"},
            "tool_calls": [CALL],
        },
        "not both",
    ),
    ({"role": "assistant", "function_call": "f()"}, "function_call must be a dict"),
    (
        {"role": "assistant", "function_call": {"arguments": "{}"}},
        r"function_call\.name must be a non-empty string, not missing",
    ),
    (
        {"role": "assistant", "function_call": {"name": "f", "arguments": {}}},
        r"function_call\.arguments must be a string, not dict",
    ),
    (
        {"role": "assistant", "function_call": {"name": "f", "arguments": "{oops"}},
        r"function_call\.arguments must be JSON text",
    ),
    (
        {"role": "assistant", "function_call": {"name": "f", "arguments": "[1]"}},
        "must be a JSON object",
    ),
    (
        {"role": "assistant", "function_call": {"name": "f", "arguments": "{}", "x": 1}},
        "function_call has unsupported keys: x",
    ),
    ({"role": "assistant", "tool_calls": []}, "tool_calls must be a non-empty list"),
    ({"role": "assistant", "tool_calls": CALL}, "tool_calls must be a non-empty list"),
    ({"role": "assistant", "tool_calls": ["call_1"]}, r"tool_calls\[0\] must be a dict"),
    (
        {"role": "assistant", "tool_calls": [{**CALL, "id": None}]},
        r"tool_calls\[0\]\.id must be a non-empty string",
    ),
    (
        {"role": "assistant", "tool_calls": [{**CALL, "type": "custom"}]},
        r"tool_calls\[0\]\.type must be 'function'",
    ),
    (
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]},
        r"tool_calls\[0\]\.function must be a dict",
    ),
    (
        {"role": "assistant", "tool_calls": [CALL, {**CALL}]},
        r"tool_calls\[1\]: duplicate tool call id 'call_1'",
    ),
    (
        {
            "role": "assistant",
            "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "nope"}}],
        },
        r"tool_calls\[0\]\.function\.arguments must be JSON text",
    ),
    (
        {"role": "assistant", "tool_calls": [{**CALL, "extra": True}]},
        r"tool_calls\[0\] has unsupported keys: extra",
    ),
    ({"role": "user", "content": "x", "metadata": ["a"]}, "metadata must be a dict"),
    ({"role": "user", "content": "x", "message_id": ""}, "message_id must be a non-empty"),
    ({"role": "user", "content": "x", "timestamp": "now"}, "timestamp must be a datetime"),
]


@pytest.mark.parametrize(("fields", "match"), OPENAI_REJECTED)
def test_create_openai_message_rejects(fields: dict[str, Any], match: str) -> None:
    fields = dict(fields)
    role = fields.pop("role")
    content = fields.pop("content", None)
    with pytest.raises(MemoryValidationError, match=match):
        create_openai_message(role, content, **fields)


def result(content: Any = "ok", **extra: Any) -> Json:
    return {"type": "tool_result", "tool_use_id": "t1", "content": content, **extra}


USE = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}

ANTHROPIC_REJECTED: list[tuple[str, Any, str]] = [
    ("tool", "x", "unknown Anthropic role 'tool'"),
    ("function", "x", "unknown Anthropic role"),
    ("user", None, "must be a string or a non-empty list of content blocks, not NoneType"),
    ("user", 7, "must be a string or a non-empty list"),
    ("user", [], "must not be an empty list"),
    ("user", ["hi"], r"content\[0\] must be a dict content block, not str"),
    ("user", [{"text": "hi"}], "needs a string 'type'"),
    ("assistant", [{"type": "thinking", "thinking": "."}], "'thinking' blocks are not allowed"),
    ("user", [{"type": "image_url", "image_url": {"url": PNG_URL}}], "'image_url' blocks"),
    ("user", [{"type": "text"}], r"content\[0\]\.text must be a string, not missing"),
    ("user", [{"type": "text", "text": None}], "text must be a string, not NoneType"),
    ("assistant", [B64_IMAGE], "'image' blocks are not allowed in Anthropic assistant messages"),
    ("system", [B64_IMAGE], "not allowed in Anthropic system messages"),
    ("system", [USE], "not allowed in Anthropic system messages"),
    ("user", [{"type": "image"}], r"content\[0\]\.source must be a dict, not missing"),
    (
        "user",
        [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
        r"source\.type must be 'base64' or 'url'",
    ),
    (
        "user",
        [{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "x"}}],
        r"source\.media_type must be one of",
    ),
    (
        "user",
        [{"type": "image", "source": {"type": "base64", "media_type": "image/png"}}],
        r"source\.data must be a non-empty string",
    ),
    ("user", [{"type": "image", "source": {"type": "url"}}], r"source\.url must be a non-empty"),
    ("user", [USE], "'tool_use' blocks are not allowed in Anthropic user messages"),
    ("assistant", [{**USE, "id": ""}], r"content\[0\]\.id must be a non-empty string"),
    ("assistant", [{**USE, "name": None}], r"content\[0\]\.name must be a non-empty string"),
    ("assistant", [{**USE, "input": "{}"}], r"content\[0\]\.input must be a dict, not str"),
    ("assistant", [USE, {**USE, "name": "g"}], r"content\[1\]: duplicate tool id 't1'"),
    ("assistant", [result()], "'tool_result' blocks are not allowed in Anthropic assistant"),
    ("user", [{"type": "tool_result"}], r"tool_use_id must be a non-empty string, not missing"),
    ("user", [result(5)], r"content\[0\]\.content must be a string or a list"),
    ("user", [result([USE])], r"content\[0\]\.content\[0\]: tool results hold text and image"),
    ("user", [result(["x"])], r"content\[0\]\.content\[0\] must be a dict"),
    ("user", [result([{"type": "text"}])], r"content\[0\]\.content\[0\]\.text must be"),
    ("user", [result([{"type": "image", "source": {}}])], r"source\.type must be"),
    ("user", [result(is_error="yes")], r"is_error must be a bool, not str"),
    ("user", [result(), result()], "duplicate tool id 't1'"),
]


@pytest.mark.parametrize(("role", "content", "match"), ANTHROPIC_REJECTED)
def test_create_anthropic_message_rejects(role: str, content: Any, match: str) -> None:
    with pytest.raises(MemoryValidationError, match=match):
        create_anthropic_message(role, content)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: messages_from_openai_format(["hi"]),  # type: ignore[list-item]
            r"messages\[0\]: a message must be a dict",
        ),
        (lambda: messages_from_openai_format([{"content": "x"}]), "needs a role"),
        (
            lambda: messages_from_openai_format(
                [{"role": "user", "content": "a"}, {"role": "user", "content": 1}]
            ),
            r"messages\[1\]: content must be",
        ),
        (
            lambda: messages_from_openai_format([{"role": "user", "content": "a", "audio": 1}]),
            "message has unsupported keys: audio",
        ),
        (
            lambda: messages_from_anthropic_format([{"role": "user", "content": "a", "x": 1}]),
            r"messages\[0\]: message has unsupported keys: x",
        ),
        (
            lambda: messages_from_anthropic_format([{"role": "user"}]),
            "Anthropic messages need content",
        ),
        (
            lambda: messages_from_anthropic_format([], system=[B64_IMAGE]),
            "system: content\\[0\\]: 'image' blocks are not allowed",
        ),
        (
            lambda: messages_to_openai_format([Message(MessageRole.ASSISTANT, [B64_IMAGE])]),
            r"messages\[0\]: content\[0\]: 'image' blocks cannot be sent to OpenAI",
        ),
        (
            lambda: messages_to_openai_format([Message(MessageRole.TOOL, "x")]),
            "tool messages need tool_call_id",
        ),
        (
            lambda: messages_to_anthropic_format([Message(MessageRole.FUNCTION, "x")]),
            "function messages need name",
        ),
        (
            lambda: messages_to_anthropic_format(
                [
                    Message(
                        MessageRole.ASSISTANT,
                        function_call={"name": "f", "arguments": "not json"},
                    )
                ]
            ),
            r"messages\[0\]: function_call\.arguments must be JSON text",
        ),
        (
            lambda: messages_to_anthropic_format(
                [
                    create_openai_message(
                        "user",
                        [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/svg+xml;base64,AA"},
                            }
                        ],
                    )
                ]
            ),
            "Anthropic takes data URLs only as base64",
        ),
        (
            lambda: messages_to_anthropic_format([Message(MessageRole.SYSTEM, [B64_IMAGE])]),
            "system messages hold text, not 'image'",
        ),
    ],
)
def test_list_functions_reject(call: Callable[[], object], match: str) -> None:
    with pytest.raises(MemoryValidationError, match=match):
        call()


# --- building -----------------------------------------------------------------------------


def test_created_messages_keep_fields_and_copy_input() -> None:
    when = datetime(2024, 5, 1, 12, 0)
    blocks = [{"type": "text", "text": "hi"}]
    message = create_anthropic_message(
        "user", blocks, metadata={"k": 1}, message_id="m1", timestamp=when
    )
    blocks[0]["text"] = "changed"
    blocks.append({"type": "text", "text": "more"})
    assert message.content == [{"type": "text", "text": "hi"}]
    assert (message.message_id, message.timestamp, message.metadata) == ("m1", when, {"k": 1})

    calls = [dict(CALL)]
    message = create_openai_message(MessageRole.ASSISTANT, None, tool_calls=calls, name="bot")
    calls[0]["id"] = "changed"
    assert message.tool_calls == [CALL] and message.name == "bot"


def test_anthropic_tool_result_message_stays_a_user_message() -> None:
    message = create_anthropic_message("user", [result(), {"type": "text", "text": "and?"}])
    assert message.role is MessageRole.USER
    assert create_anthropic_message("user", [result(is_error=True)]).is_tool_result


def test_openai_accepts_its_documented_shapes() -> None:
    create_openai_message(
        "user",
        [
            {"type": "text", "text": "a"},
            {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}},
        ],
        name="ann",
    )
    create_openai_message("assistant", [{"type": "refusal", "refusal": "no"}])
    create_openai_message("tool", [{"type": "text", "text": "r"}], tool_call_id="c", name="f")
    create_openai_message("function", None, name="f")
    create_openai_message("assistant", "", tool_calls=[CALL])
    create_anthropic_message("system", [{"type": "text", "text": "be brief"}])


def test_from_openai_ignores_empty_response_fields() -> None:
    (message,) = messages_from_openai_format(
        [
            {
                "role": "assistant",
                "content": "hi",
                "refusal": None,
                "annotations": [],
                "audio": None,
                "function_call": None,
                "tool_calls": None,
            }
        ]
    )
    assert message.content == "hi" and message.tool_calls is None


# --- conversion rules ---------------------------------------------------------------------


def user(content: Any) -> Message:
    return create_anthropic_message("user", content)


def assistant(content: Any) -> Message:
    return create_anthropic_message("assistant", content)


def test_system_messages_leave_the_anthropic_list() -> None:
    messages = [
        create_openai_message("system", "first"),
        user("hi"),
        create_openai_message("system", "  "),
        create_anthropic_message(
            "system", [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
        ),
        assistant("hello"),
    ]
    system, anthropic = loose(messages_to_anthropic_request(messages))
    assert system == "first\n\na\nb"
    assert anthropic == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    assert messages_to_anthropic_format(messages) == anthropic
    assert messages_to_anthropic_request([user("hi")])[0] is None


def test_leading_assistant_gets_a_continuation_turn() -> None:
    anthropic = loose(messages_to_anthropic_format([assistant("Hi! How can I help?"), user("hey")]))
    assert anthropic == [
        {"role": "user", "content": ANTHROPIC_CONTINUATION_TEXT},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": "hey"},
    ]


def test_same_role_turns_merge_with_tool_results_first() -> None:
    messages = [
        user("q"),
        assistant([USE]),
        user([{"type": "text", "text": "also this"}]),
        create_openai_message("tool", "done", tool_call_id="t1"),
        user("thanks"),
    ]
    anthropic = loose(messages_to_anthropic_format(messages))
    assert anthropic[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "done"},
            {"type": "text", "text": "also this"},
            {"type": "text", "text": "thanks"},
        ],
    }
    check_anthropic(None, anthropic)


def test_whitespace_text_and_empty_turns_are_dropped() -> None:
    messages = [
        user("a"),
        create_openai_message("assistant", "   "),
        user([{"type": "text", "text": ""}, {"type": "text", "text": "b"}]),
        assistant("answer \n"),
    ]
    anthropic = loose(messages_to_anthropic_format(messages))
    assert anthropic == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "answer"},  # a final assistant turn: no trailing space
    ]
    assert messages_to_anthropic_format([create_openai_message("user", " ")]) == []


def test_function_calls_get_stable_ids_paired_by_name() -> None:
    calls = [
        create_openai_message(
            "assistant", None, function_call={"name": name, "arguments": "{}"}, message_id=mid
        )
        for name, mid in (("a", "m1"), ("b", "m2"))
    ]
    results = [create_openai_message("function", name, name=name) for name in ("b", "a")]
    orphan = create_openai_message("function", "late", name="a", message_id="m9")
    messages = [user("go"), *calls, *results, orphan]
    first = loose(messages_to_anthropic_format(messages))
    assert first == messages_to_anthropic_format(messages)
    uses = {b["name"]: b["id"] for b in first[1]["content"]}
    assert uses == {"a": "call_m1", "b": "call_m2"}
    assert [b["tool_use_id"] for b in first[2]["content"]] == ["call_m2", "call_m1", "call_m9"]


def test_unsafe_tool_ids_are_rewritten_consistently() -> None:
    call = {**CALL, "id": "functions.lookup:0"}
    messages = [
        user("go"),
        create_openai_message("assistant", None, tool_calls=[call]),
        create_openai_message("tool", "r", tool_call_id="functions.lookup:0"),
    ]
    anthropic = loose(messages_to_anthropic_format(messages))
    use_id = anthropic[1]["content"][0]["id"]
    assert re.fullmatch(r"functions_lookup_0_[0-9a-f]{12}", use_id)
    assert anthropic[2]["content"][0]["tool_use_id"] == use_id
    openai = loose(messages_to_openai_format(messages))
    assert openai[1]["tool_calls"][0]["id"] == "functions.lookup:0"


def test_images_convert_both_ways() -> None:
    openai_user = create_openai_message(
        "user",
        [
            {"type": "image_url", "image_url": {"url": PNG_URL}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
        ],
    )
    anthropic = loose(messages_to_anthropic_format([openai_user]))
    assert anthropic[0]["content"] == [B64_IMAGE, URL_IMAGE]
    (back,) = messages_from_anthropic_format(anthropic)
    assert messages_to_openai_format([back])[0]["content"] == [
        {"type": "image_url", "image_url": {"url": PNG_URL}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
    ]


def test_tool_result_images_follow_the_tool_message_in_openai() -> None:
    messages = [
        user("look"),
        assistant([{"type": "text", "text": "ok"}, USE]),
        user(
            [
                result([{"type": "text", "text": "seen"}, B64_IMAGE], is_error=False),
                {"type": "text", "text": "what is it?"},
            ]
        ),
    ]
    openai = loose(messages_to_openai_format(messages))
    check_openai(openai)
    assert openai[1] == {
        "role": "assistant",
        "content": "ok",
        "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    assert openai[2] == {"role": "tool", "tool_call_id": "t1", "content": "seen"}
    assert openai[3] == {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": PNG_URL}},
            {"type": "text", "text": "what is it?"},
        ],
    }
    anthropic = loose(messages_to_anthropic_format(messages))
    assert anthropic[2]["content"][0]["is_error"] is False
    check_anthropic(None, anthropic)


def test_openai_content_is_none_only_with_calls() -> None:
    only_calls = assistant([USE])
    assert messages_to_openai_format([only_calls])[0]["content"] is None
    bare = Message(MessageRole.ASSISTANT)
    assert messages_to_openai_format([bare])[0]["content"] == ""
    assert messages_to_openai_format([Message(MessageRole.USER)])[0]["content"] == ""


# --- properties ---------------------------------------------------------------------------

TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "\n", "hello ", "\tindented"]),
)
NAME = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
ID_SUFFIX = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=8)
JSON_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)  # what messages hold (signed 64-bit, as stored)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
ARGUMENTS = st.dictionaries(st.text(max_size=8), JSON_VALUE, max_size=3)
TEXT_PARTS = st.lists(TEXT.map(lambda t: {"type": "text", "text": t}), min_size=1, max_size=3)
IMAGE_BLOCK = st.sampled_from([B64_IMAGE, URL_IMAGE])
IMAGE_PART = st.sampled_from(
    [
        {"type": "image_url", "image_url": {"url": PNG_URL}},
        {"type": "image_url", "image_url": {"url": "https://example.com/b.png", "detail": "high"}},
    ]
)


@st.composite
def openai_conversations(draw: st.DrawFn) -> list[Json]:
    """Well-formed OpenAI chat lists: every tool or function call is answered right after."""
    counter = itertools.count()
    out: list[Json] = []
    for _ in range(draw(st.integers(0, 7))):
        step = draw(st.sampled_from(["system", "user", "assistant", "tools", "function"]))
        if step in ("system", "user"):
            out.append({"role": step, "content": draw(TEXT | TEXT_PARTS)})
            if step == "user" and draw(st.booleans()):
                out[-1]["name"] = draw(NAME)
        elif step == "assistant":
            out.append({"role": "assistant", "content": draw(TEXT | TEXT_PARTS)})
        elif step == "tools":
            calls = [
                {
                    "id": f"call_{next(counter)}{draw(ID_SUFFIX)}",
                    "type": "function",
                    "function": {"name": draw(NAME), "arguments": json.dumps(draw(ARGUMENTS))},
                }
                for _ in range(draw(st.integers(1, 3)))
            ]
            out.append(
                {"role": "assistant", "content": draw(st.none() | TEXT), "tool_calls": calls}
            )
            out.extend(
                {"role": "tool", "tool_call_id": call["id"], "content": draw(TEXT | TEXT_PARTS)}
                for call in draw(st.permutations(calls))
            )
        else:
            name = draw(NAME)
            arguments = json.dumps(draw(ARGUMENTS))
            out.append(
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": name, "arguments": arguments},
                }
            )
            out.append({"role": "function", "name": name, "content": draw(st.none() | TEXT)})
    return out


@st.composite
def mixed_conversations(draw: st.DrawFn) -> list[Message]:
    """Well-formed conversations mixing OpenAI-style and Anthropic-style messages."""
    counter = itertools.count()
    out = messages_from_openai_format(draw(openai_conversations()))
    for _ in range(draw(st.integers(0, 4))):
        step = draw(st.sampled_from(["user", "assistant", "system", "tools"]))
        if step == "user":
            openai_style = draw(st.booleans())
            image = IMAGE_PART if openai_style else IMAGE_BLOCK
            groups = draw(st.lists(TEXT_PARTS | image.map(lambda b: [b]), min_size=1, max_size=3))
            maker = create_openai_message if openai_style else create_anthropic_message
            out.append(maker("user", [block for group in groups for block in group]))
        elif step in ("assistant", "system"):
            out.append(create_anthropic_message(step, draw(TEXT | TEXT_PARTS)))
        else:
            uses = [
                {
                    "type": "tool_use",
                    "id": f"toolu_{next(counter)}{draw(ID_SUFFIX)}",
                    "name": draw(NAME),
                    "input": draw(ARGUMENTS),
                }
                for _ in range(draw(st.integers(1, 3)))
            ]
            lead = draw(st.lists(TEXT.map(lambda t: {"type": "text", "text": t}), max_size=1))
            out.append(create_anthropic_message("assistant", [*lead, *uses]))
            results: list[Json] = []
            for use in draw(st.permutations(uses)):
                block: Json = {"type": "tool_result", "tool_use_id": use["id"]}
                content = draw(
                    st.none()
                    | TEXT
                    | st.lists(
                        TEXT.map(lambda t: {"type": "text", "text": t}) | IMAGE_BLOCK, max_size=2
                    )
                )
                if content is not None:
                    block["content"] = content
                if draw(st.booleans()):
                    block["is_error"] = draw(st.booleans())
                results.append(block)
            # Text may come before the results here; the converter must move it after them.
            text = draw(st.lists(TEXT.map(lambda t: {"type": "text", "text": t}), max_size=1))
            before = draw(st.booleans())
            out.append(
                create_anthropic_message("user", text + results if before else results + text)
            )
    return out


FAST = settings(max_examples=150, deadline=None)


@FAST
@given(mixed_conversations())
def test_conversions_satisfy_both_sdks(messages: list[Message]) -> None:
    openai = loose(messages_to_openai_format(messages))
    check_openai(openai)
    messages_from_openai_format(openai)

    system, anthropic = loose(messages_to_anthropic_request(messages))
    check_anthropic(system, anthropic)
    messages_from_anthropic_format(anthropic, system)


@dataclass
class Kept:
    """What a round trip must keep: system text, other text, calls and results, in order.

    Text Anthropic cannot carry (whitespace only) is left out, as is a final assistant
    text's trailing whitespace; legacy function calls and their results have no id (None).
    """

    system: str | None = None
    texts: list[tuple[str, str]] = field(default_factory=list)
    calls: list[tuple[str | None, str, Any]] = field(default_factory=list)
    results: list[tuple[str | None, tuple[str, ...]]] = field(default_factory=list)


def kept(openai: list[Any]) -> Kept:
    system: list[str] = []
    out = Kept()
    last = ""  # what Anthropic's last turn ends with: "user", "assistant" (text) or "tools"
    for message in openai:
        role, content = message["role"], message.get("content")
        texts = [] if content is None else [b["text"] for b in blocks_of(content)]
        if role == "system":
            system.append("\n".join(texts))
            continue
        visible = [text for text in texts if text.strip()]
        if role in ("user", "assistant"):
            out.texts.extend((role, text) for text in visible)
            last = role if visible else last
            for call in message.get("tool_calls") or ():
                function = call["function"]
                arguments = json.loads(function["arguments"])
                out.calls.append((call["id"], function["name"], arguments))
                last = "tools"
            if call := message.get("function_call"):
                out.calls.append((None, call["name"], json.loads(call["arguments"])))
                last = "tools"
        else:
            out.results.append((message.get("tool_call_id"), tuple(visible)))
            last = "tools"
    if last == "assistant":
        out.texts[-1] = ("assistant", out.texts[-1][1].rstrip())
    out.system = "\n\n".join(s for s in system if s.strip()) or None
    return out


@FAST
@given(openai_conversations())
def test_round_trip_through_anthropic_keeps_calls_and_text(original: list[Json]) -> None:
    ours = messages_from_openai_format(original)
    system, anthropic = loose(messages_to_anthropic_request(ours))
    check_anthropic(system, anthropic)
    back = messages_to_openai_format(messages_from_anthropic_format(anthropic, system))
    check_openai(back)

    want, got = kept(original), kept(back)
    assert got.system == want.system
    if anthropic and anthropic[0]["content"] == ANTHROPIC_CONTINUATION_TEXT:
        assert got.texts[0] == ("user", ANTHROPIC_CONTINUATION_TEXT)
        del got.texts[0]
    assert got.texts == want.texts
    assert [call[1:] for call in got.calls] == [call[1:] for call in want.calls]
    assert [result[1] for result in got.results] == [result[1] for result in want.results]
    # Ids survive; a legacy function call gets a synthetic id, which its result then carries.
    got_ids = [call[0] for call in got.calls] + [result[0] for result in got.results]
    want_ids = [call[0] for call in want.calls] + [result[0] for result in want.results]
    for got_id, want_id in zip(got_ids, want_ids, strict=True):
        assert got_id == want_id or (want_id is None and str(got_id).startswith("call_"))
