"""The stores the command-line tests work on, and a check that they hold what those tests rely
on: a varied store written through the public API (tool calls, content blocks, a
Responses-API item, unicode metadata, summaries, messages trimmed away and removed, an
archived, an emptied, an empty and a forked session), and bulk stores written through the
backend protocol."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from langswarm.core.memory import (
    MemoryManager,
    SummaryType,
    create_anthropic_message,
    create_openai_message,
    messages_from_responses_format,
)
from langswarm.core.memory._cli import main
from langswarm.core.memory._config import build, memory_from_url
from langswarm.core.memory.backends.base import REMOVED, Backend, SessionWrite, live
from langswarm.core.memory.interfaces import Message, MessageRole, SessionMetadata

#: Sessions of the varied store, by id.
VARIED = ("s-alice", "s-bob", "s-carol", "s-empty", "s-fork", "s-clear")
TEXT = ("lorem ipsum dolor sit amet, ünïcödé ☃ " * 6)[:200]


def sqlite_url(path: str | os.PathLike[str]) -> str:
    return f"sqlite:///{os.path.abspath(path)}"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command in this process: its status, standard output and standard error."""
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


async def _varied(path: str) -> None:
    memory = {"backend": "sqlite", "config": {"db_path": path}}
    async with MemoryManager.from_config(memory=memory) as m:
        alice = await m.create_session(
            "alice",
            "s-alice",
            metadata={"topic": "billing", "ünï": [1, 2.5, None]},
            max_tokens=4000,
        )
        call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
        for message in (
            create_openai_message("system", "You are helpful."),
            create_openai_message("user", "Hello ☃"),
            create_openai_message("assistant", None, tool_calls=[call]),
            create_openai_message("tool", "42", tool_call_id="c1"),
            create_openai_message("assistant", "It is 42."),
        ):
            await alice.add_message(message)
        await alice.create_summary(SummaryType.MANUAL)
        await alice.add_message(create_anthropic_message("user", [{"type": "text", "text": "?"}]))
        item = {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "!"}],
        }
        await alice.add_messages(messages_from_responses_format([item]))
        bob = await m.create_session("bob", "s-bob", metadata={"plan": "pro"})
        said = [create_openai_message(("user", "assistant")[i % 2], f"b{i}") for i in range(8)]
        await bob.add_messages(said)
        await bob.delete_message(said[3].message_id)
        await bob.archive_session()
        carol = await m.create_session("carol", "s-carol", max_messages=50)
        for i in range(30):
            await carol.add_message(
                create_openai_message(("user", "assistant")[i % 2], f"c{i} {TEXT}")
            )
            if i in (9, 19):
                await carol.create_summary()
        await m.create_session("dave", "s-empty", metadata={"k": "v"})
        fork = await alice.fork("s-fork")
        await fork.add_message(create_openai_message("user", "after the fork"))
        erin = await m.create_session("erin", "s-clear")
        await erin.add_messages(
            [create_openai_message("user", "x"), create_openai_message("assistant", "y")]
        )
        await erin.clear()
        await erin.add_message(create_openai_message("user", "z"))
    await _trim(sqlite_url(path), "s-carol", 20)


async def _trim(url: str, session_id: str, before: int) -> None:
    """Drop a session's messages below ``before`` (what a summary covers), as the runtime's
    ``max_messages`` trims do."""
    backend = await open_backend(url)
    try:
        held = await backend.load_session(session_id, tail=0)
        assert held is not None
        write = SessionWrite(
            session_id, held.incarnation, trim_before=before, trim_base=held.version
        )
        [result] = await backend.apply([write])
        assert result.error is None and result.state.first_seq == before
    finally:
        await backend.close()


@pytest.fixture(scope="session", name="varied_master")
def varied_master_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("varied") / "varied.db"
    anyio.run(_varied, str(path))
    return path


@pytest.fixture(name="varied_db")
def varied_db_fixture(varied_master: Path, tmp_path: Path) -> Path:
    """A private copy of the varied SQLite store."""
    path = tmp_path / "varied.db"
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{varied_master}{suffix}").exists():
            shutil.copy(f"{varied_master}{suffix}", f"{path}{suffix}")
    return path


async def open_backend(url: str) -> Backend:
    backend: Backend = build(None, memory_from_url(url), {})[0]
    await backend.open()
    return backend


def bulk_writes(sessions: int, messages: int, *, start: int = 0) -> Iterator[list[SessionWrite]]:
    """Sessions ``b000000``... of ``messages`` messages each (user ``u0``..``u9``, one
    second apart), in batches of about 5,000 messages."""
    base = datetime(2025, 1, 1, tzinfo=UTC)
    batch: list[SessionWrite] = []
    for n in range(start, start + sessions):
        sid = f"b{n:06d}"
        then = base + timedelta(seconds=n)
        meta = SessionMetadata(sid, f"u{n % 10}", created_at=then, updated_at=then)
        said = [
            Message(
                (MessageRole.USER, MessageRole.ASSISTANT)[i % 2],
                TEXT,
                timestamp=then + timedelta(milliseconds=i),
                message_id=f"{sid}-{i}",
                token_count=50,
            )
            for i in range(messages)
        ]
        batch.append(SessionWrite(sid, f"i{n}", create=meta, messages=said))
        if len(batch) * messages >= 5_000:
            yield batch
            batch = []
    if batch:
        yield batch


async def fill(url: str, sessions: int, messages: int, start: int = 0) -> None:
    """Add bulk sessions to the store at ``url``."""
    backend = await open_backend(url)
    try:
        for batch in bulk_writes(sessions, messages, start=start):
            results = await backend.apply(batch)
            assert all(r.error is None for r in results)
    finally:
        await backend.close()


# -- what the tests rely on -----------------------------------------------------------------


async def _shape(url: str) -> dict[str, tuple[int, int, int, int, str, list[int]]]:
    backend = await open_backend(url)
    try:
        found = {}
        for sid in VARIED:
            snap = await backend.load_session(sid, tail=1000)
            assert snap is not None, sid
            seqs = [snap.first_seq + i for i, m in enumerate(snap.messages) if m is not REMOVED]
            found[sid] = (
                snap.first_seq,
                snap.next_seq,
                len(live(snap.messages)),
                len(snap.summaries),
                snap.meta.status.value,
                seqs,
            )
        return found
    finally:
        await backend.close()


def test_the_varied_store_holds_every_shape(varied_db: Path) -> None:
    shape = anyio.run(_shape, sqlite_url(varied_db))
    first, nxt, count, _, status, seqs = shape["s-bob"]
    assert (first, nxt, count, status) == (0, 8, 7, "archived") and 3 not in seqs  # a hole
    assert shape["s-carol"][:4] == (20, 30, 10, 2)  # trimmed, summarized
    assert shape["s-empty"][:4] == (0, 0, 0, 0)
    assert shape["s-clear"][:3] == (2, 3, 1)  # cleared, then one more message
    assert shape["s-alice"][3] == 1 and shape["s-fork"][3] == 1


def test_bulk_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = sqlite_url(tmp_path / "bulk.db")
    anyio.run(fill, url, 30, 20)
    status, out, _ = cli(capsys, "stats", "--url", url, "--json")
    assert status == 0
    assert '"total_messages":600' in out and '"total_sessions":30' in out
