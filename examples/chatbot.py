"""A small chatbot that remembers: run it twice and the conversation carries on.

    python examples/chatbot.py [--db PATH] [--loop asyncio|trio]

The "bot" is a few rules, so the demo needs no API key; swap ``reply()`` for a call to your
LLM with ``messages_to_openai_format(context)``. Memory lives in a SQLite file (the embedded
backend); pass ``--db :memory:`` for a throwaway run.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import anyio

from langswarm.core.memory import (
    MemorySessionContext,
    Message,
    create_openai_message,
    initialize_memory,
    messages_to_openai_format,
)

SCRIPT = [
    "Hi, I'm Ada and I'm planning a trip to Lisbon.",
    "My budget is 1200 euros for 5 nights.",
    "What was my budget again?",
    "And where am I going?",
]


def reply(question: str, context: list[Message]) -> str:
    """Answer from what memory handed back (a stand-in for an LLM call)."""
    said = " ".join(m.text() for m in context if m.role.value == "user")
    if "budget" in question.lower():
        found = re.search(r"(\d+) euros", said)
        return f"Your budget is {found.group(1)} euros." if found else "You haven't said."
    if "where" in question.lower():
        found = re.search(r"trip to (\w+)", said)
        return f"You're going to {found.group(1)}." if found else "You haven't said."
    return "Noted!"


async def main(db: str) -> None:
    initialize_memory(memory={"backend": "sqlite", "config": {"db_path": db}})
    async with MemorySessionContext(
        user_id="ada", session_id="trip-planning", max_tokens=2000
    ) as session:
        earlier = len(await session.get_messages())
        print(f"session {session.session_id}: {earlier} messages from earlier runs")
        for question in SCRIPT:
            await session.add_message(create_openai_message("user", question))
            context = await session.get_conversation_context(max_tokens=2000)
            answer = reply(question, context)
            await session.add_message(create_openai_message("assistant", answer))
            print(f"  user: {question}\n  bot:  {answer}")
        context = await session.get_conversation_context(max_tokens=2000)
        tokens = sum(m.token_count or 0 for m in context)
        print(
            f"next LLM call would send {len(messages_to_openai_format(context))} messages, "
            f"{tokens} tokens"
        )
    print(f"stored in {db}; run again to continue the conversation")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=str(Path(".demo") / "chatbot.db"))
    parser.add_argument("--loop", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    if args.db != ":memory:":
        Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    anyio.run(main, args.db, backend=args.loop)
