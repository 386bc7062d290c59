"""One process, one open manager, driven by JSON commands on stdin.

    python -m tests.multiprocess.driver --memory JSON --loop asyncio|trio [--naming-summarizer]

Prints a readiness line ``{"ready": true, "pid": N}`` once its manager runs, then answers
each command line (``{"op": ..., ...}``) with one line: ``{"ok": result}``, or
``{"error": "<exception class>", "detail": "...", "done": n}`` where ``n`` counts the writes
the command had acknowledged before it failed. The manager stays open between commands, so a
session opened here stays live in this process, as it would in a server worker. ``quit``
closes the manager (flushing everything) and answers only after that.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from langswarm.core.memory import (
    ConversationSummary,
    MemoryManager,
    MemorySession,
    Message,
    MessageRole,
)
from langswarm.core.memory.exceptions import SessionOwnershipError

Command = dict[str, Any]


class NamingSummarizer:
    """A summary that names every message it was shown (message texts hold no spaces).

    It folds in the previous summary's names, so the stored summaries say exactly which
    messages any summary really covered.
    """

    async def summarize(
        self,
        messages: Sequence[Message],
        *,
        previous: ConversationSummary | None,
        max_tokens: int,
    ) -> str:
        names = previous.summary_text.split() if previous is not None else []
        return " ".join([*names, *(m.text() for m in messages)])


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def _summary(summary: ConversationSummary) -> dict[str, Any]:
    return {"text": summary.summary_text, "covers_through": summary.covers_through}


class Driver:
    """Runs commands against one manager and remembers the session handles it opened."""

    def __init__(self, manager: MemoryManager) -> None:
        self.manager = manager
        self.sessions: dict[str, MemorySession] = {}
        self.done = 0

    async def run(self, command: Command) -> dict[str, Any]:
        self.done = 0
        handler = getattr(self, f"op_{command['op']}")
        try:
            return {"ok": await handler(command)}
        except Exception as exc:  # reported to the test, which judges it
            return {"error": type(exc).__name__, "detail": str(exc), "done": self.done}

    async def op_open(self, command: Command) -> str | None:
        """Open ``sid`` with ``how`` = create | get | get_or_create; return its owner."""
        manager, sid = self.manager, command["sid"]
        options = command.get("options", {})
        how = command.get("how", "get_or_create")
        session: MemorySession | None
        if how == "get":
            session = await manager.get_session(sid, user_id=command.get("user"))
        elif how == "create":
            session = await manager.create_session(command["user"], sid, **options)
        else:
            session = await manager.get_or_create_session(command["user"], sid, **options)
        if session is None:
            return None
        self.sessions[sid] = session
        return session.metadata.user_id

    async def op_add(self, command: Command) -> int:
        """Append ``texts`` one awaited ``add_message`` at a time, in order."""
        session = self.sessions[command["sid"]]
        role = MessageRole(command.get("role", "user"))
        for text in command["texts"]:
            await session.add_message(Message(role=role, content=text))
            self.done += 1
        return self.done

    async def op_read(self, command: Command) -> list[str]:
        return [m.text() for m in await self.sessions[command["sid"]].get_messages()]

    async def op_context(self, command: Command) -> list[str]:
        session = self.sessions[command["sid"]]
        context = await session.get_conversation_context(max_tokens=command.get("tokens", 50_000))
        return [m.text() for m in context]

    async def op_meta(self, command: Command) -> dict[str, Any]:
        """The handle's metadata right after a call to the session."""
        session = self.sessions[command["sid"]]
        await session.get_messages(limit=1)
        meta = session.metadata
        return {"user": meta.user_id, "status": meta.status.value, "metadata": meta.metadata}

    async def op_update(self, command: Command) -> None:
        await self.sessions[command["sid"]].update_metadata(command["updates"])

    async def op_archive(self, command: Command) -> None:
        await self.sessions[command["sid"]].archive_session()

    async def op_delete(self, command: Command) -> None:
        await self.sessions[command["sid"]].delete_session()

    async def op_summarize(self, command: Command) -> dict[str, Any]:
        return _summary(await self.sessions[command["sid"]].create_summary())

    async def op_race(self, command: Command) -> dict[str, str]:
        """``get_or_create_session(user, sid)`` for every sid at once; each win writes
        ``"<user>:<sid>"``. Returns sid -> "won" | "refused" | another error's name."""
        user: str = command["user"]
        outcome: dict[str, str] = {}

        async def claim(sid: str) -> None:
            try:
                session = await self.manager.get_or_create_session(user, sid)
                self.sessions[sid] = session
                await session.add_message(Message(role=MessageRole.USER, content=f"{user}:{sid}"))
                outcome[sid] = "won"
            except SessionOwnershipError:
                outcome[sid] = "refused"
            except Exception as exc:  # reported per id
                outcome[sid] = f"{type(exc).__name__}: {exc}"

        async with anyio.create_task_group() as tg:
            for sid in command["sids"]:
                tg.start_soon(claim, sid)
        return outcome


async def serve(memory: dict[str, Any], naming: bool) -> None:
    options = dict(memory)
    if naming:
        options["summarizer"] = NamingSummarizer()
    async with MemoryManager.from_config(memory=options) as manager:
        driver = Driver(manager)
        emit({"ready": True, "pid": os.getpid()})
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            if command["op"] == "quit":
                break
            emit(await driver.run(command))
    emit({"ok": "closed"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", required=True, help="initialize_memory's memory= dict, JSON")
    parser.add_argument("--loop", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--naming-summarizer", action="store_true")
    args = parser.parse_args()
    anyio.run(serve, json.loads(args.memory), args.naming_summarizer, backend=args.loop)


if __name__ == "__main__":
    main()
