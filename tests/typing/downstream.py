"""A user's module: langswarm's converters go straight into the SDK clients, and what the
clients return comes straight back, with no casts or ``model_dump()``.

Never run; ``tests/test_typing.py`` checks it with ``mypy --strict`` as an installed package's
user would.
"""

from __future__ import annotations

from anthropic import AsyncAnthropic, omit
from openai import AsyncOpenAI

from langswarm.core.memory import (
    Message,
    create_anthropic_message,
    create_openai_message,
    messages_from_anthropic_format,
    messages_from_openai_format,
    messages_from_responses_format,
    messages_to_anthropic_format,
    messages_to_anthropic_request,
    messages_to_openai_format,
    messages_to_responses_format,
)


async def chat_turn(client: AsyncOpenAI, history: list[Message]) -> list[Message]:
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=messages_to_openai_format(history)
    )
    reply = completion.choices[0].message
    return [
        *messages_from_openai_format([reply]),
        create_openai_message("assistant", reply.content, tool_calls=reply.tool_calls),
    ]


async def claude_turn(client: AsyncAnthropic, history: list[Message]) -> list[Message]:
    system, turns = messages_to_anthropic_request(history)
    response = await client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=1024,
        messages=turns,
        system=system if system is not None else omit,
    )
    again = await client.messages.create(
        model="claude-haiku-4-5", max_tokens=1024, messages=messages_to_anthropic_format(history)
    )
    return [
        create_anthropic_message("assistant", response.content),
        *messages_from_anthropic_format([response, again.model_dump()]),
    ]


async def responses_turn(client: AsyncOpenAI, history: list[Message]) -> list[Message]:
    response = await client.responses.create(
        model="gpt-4.1-mini", input=messages_to_responses_format(history)
    )
    return messages_from_responses_format(response.output)


def round_trips(history: list[Message]) -> list[Message]:
    request = messages_to_anthropic_request(history)
    return [
        *messages_from_openai_format(messages_to_openai_format(history)),
        *messages_from_anthropic_format(request.messages, request.system),
        *messages_from_responses_format(messages_to_responses_format(history)),
    ]
