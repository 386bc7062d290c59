"""Mistakes ``mypy --strict`` must catch in a user's module (the negative control for
``downstream.py``): each line marked ``# error`` has to be reported, and nothing else.

If langswarm's types were not seen (no ``py.typed``, or converters typed ``Any``), these
lines would pass and ``tests/test_typing.py`` would fail.
"""

from __future__ import annotations

from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

from langswarm.core.memory import (
    Message,
    create_anthropic_message,
    messages_from_openai_format,
    messages_to_anthropic_format,
    messages_to_anthropic_request,
    messages_to_openai_format,
    messages_to_responses_format,
)


async def mixed_up(openai: AsyncOpenAI, claude: AsyncAnthropic, history: list[Message]) -> None:
    chat = messages_to_openai_format(history)
    turns = messages_to_anthropic_format(history)
    items = messages_to_responses_format(history)
    await claude.messages.create(model="m", max_tokens=8, messages=chat)  # error
    await openai.chat.completions.create(model="m", messages=turns)  # error
    await openai.responses.create(model="m", input=chat)  # error
    await openai.chat.completions.create(model="m", messages=items)  # error
    len(messages_to_anthropic_request(history).system)  # error
    create_anthropic_message("assistant", 42)  # error
    messages_from_openai_format(["hello"])  # error
