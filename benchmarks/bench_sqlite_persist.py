"""Persisted messages per second on SQLite: langswarm memory vs. a commit per message vs.
LangChain's ``SQLChatMessageHistory``, one workload, side by side in one run.

    .venv/bin/pip install -e '.[peers]'        # for the LangChain rows
    .venv/bin/python benchmarks/bench_sqlite_persist.py [--sessions 1000] [--messages 20000]
        [--baseline-messages 3000] [--peer-messages 2000] [--repeat 3] [--batch 1]

Workload: ``--sessions`` sessions written concurrently, 200-character messages, one
``add_message`` call per message (with ``--batch N``, one ``add_messages`` call, transaction
or ``add_messages``/``aadd_messages`` call per N messages in every row); every message is
built before the clock starts. The clock
stops once everything is persisted: for langswarm, after ``await
memory.backend.list_sessions(limit=1)``, which returns only when every earlier write is
committed (read-your-writes). Every SQLite file is fresh, in WAL mode with synchronous=FULL
unless a row says otherwise (LangChain's default is SQLite's rollback journal).

* langswarm ``committed``: a call returns once its message is committed (group commit).
  ``buffered``: a call returns once the session actor has it. Tokens are counted (tiktoken)
  before each message is stored, in both modes. One task per session, asyncio and trio.
* one transaction per call: plain ``sqlite3``, ``BEGIN``, ``INSERT`` and ``COMMIT`` for each
  message (or ``--batch`` of them), sessions in turn: what a store without group commit pays
  for the same durability.
* LangChain ``SQLChatMessageHistory``: synchronous ``add_message`` (one engine shared by
  every session's history, sessions in turn), with its default journal and with WAL set on
  the file first; and its async mode (``aadd_messages`` on an aiosqlite engine, one asyncio
  task per session). Its rows write fewer messages (it is slow), reported per second.

Ratios are against LangChain's synchronous row with its defaults. Never asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from langswarm.core.memory import MemoryManager, Message, MessageRole
from langswarm.core.memory.backends._codec import unpack_message

TEXT = (
    "The agent checked the order status, confirmed the shipping address in Lisbon and "
    "scheduled delivery for Thursday; the customer asked whether the invoice could list "
    "the VAT number."
)[:200]
ROLES = (MessageRole.USER, MessageRole.ASSISTANT)


def fresh_db(directory: str, name: str) -> str:
    return str(Path(directory) / f"{name}.db")


# -- langswarm memory ---------------------------------------------------------------------------


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def langswarm_rate(
    path: str, durability: str, sessions: int, per_session: int, batch: int = 1
) -> float:
    """Messages/s through the runtime, until all of them are persisted."""
    memory_config = {"backend": "sqlite", "config": {"db_path": path}, "durability": durability}
    async with MemoryManager.from_config(memory=memory_config) as memory:
        handles: list[Any] = [None] * sessions

        async def open_session(i: int) -> None:
            handles[i] = await memory.create_session(f"user{i % 100}", f"s{i}")
            await handles[i].add_message(Message(role=MessageRole.SYSTEM, content="warm-up"))

        async with anyio.create_task_group() as tg:
            for i in range(sessions):
                tg.start_soon(open_session, i)
        payloads = [
            [Message(role=ROLES[k % 2], content=TEXT) for k in range(per_session)]
            for _ in range(sessions)
        ]

        async def writer(i: int) -> None:
            session = handles[i]
            if batch == 1:
                for message in payloads[i]:
                    await session.add_message(message)
            else:
                for chunk in chunks(payloads[i], batch):
                    await session.add_messages(chunk)

        expected = sessions * (per_session + 1)
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(sessions):
                tg.start_soon(writer, i)
        await memory.backend.list_sessions(limit=1)  # read-your-writes barrier
        elapsed = time.perf_counter() - started
        stored = (await memory.backend.get_usage_stats())["total_messages"]
    if stored != expected:
        raise SystemExit(f"the barrier returned with {stored} of {expected} messages stored")
    check_stored(path, expected)
    return sessions * per_session / elapsed


def check_stored(path: str, expected: int) -> None:
    """Every message is in the file, and stored messages carry their token counts."""
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute("SELECT COUNT(*) FROM messages").fetchone()
        rows = conn.execute("SELECT payload FROM messages ORDER BY random() LIMIT 100").fetchall()
    finally:
        conn.close()
    if count != expected:
        raise SystemExit(f"{count} messages stored, {expected} written")
    if any(unpack_message(payload).token_count is None for (payload,) in rows):
        raise SystemExit("a stored message has no token count")


# -- one transaction per call -------------------------------------------------------------------------


def commit_per_message_rate(path: str, sessions: int, total: int, batch: int = 1) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE messages (session_id TEXT, seq INTEGER, role TEXT, content TEXT,"
        " PRIMARY KEY (session_id, seq))"
    )
    # Sessions in turn, each call (a message, or ``batch`` of them) one transaction.
    calls = [
        [(f"s{i}", k, ROLES[k % 2].value, TEXT) for k in range(start, start + batch)]
        for start in range(0, max(total // sessions, batch), batch)
        for i in range(sessions)
    ]
    started = time.perf_counter()
    for rows in calls:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    total = sum(len(rows) for rows in calls)
    elapsed = time.perf_counter() - started
    conn.close()
    return total / elapsed


# -- LangChain ----------------------------------------------------------------------------------


def import_langchain() -> tuple[Any, Any] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from langchain_community.chat_message_histories import SQLChatMessageHistory
            from langchain_core.messages import AIMessage, HumanMessage
    except ImportError:
        return None
    return SQLChatMessageHistory, (HumanMessage, AIMessage)


def set_wal(path: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


def langchain_sync_rate(path: str, sessions: int, total: int, wal: bool, batch: int = 1) -> float:
    from sqlalchemy import create_engine

    history_cls, kinds = import_langchain()  # type: ignore[misc]
    if wal:
        set_wal(path)
    engine = create_engine(f"sqlite:///{path}")
    histories = [history_cls(f"s{i}", connection=engine) for i in range(sessions)]
    histories[0].add_message(kinds[0](content="warm-up"))
    calls = [
        (histories[i], [kinds[k % 2](content=TEXT) for k in range(start, start + batch)])
        for start in range(0, max(total // sessions, batch), batch)
        for i in range(sessions)
    ]
    total = sum(len(messages) for _, messages in calls)
    started = time.perf_counter()
    for history, messages in calls:
        if batch == 1:
            history.add_message(messages[0])
        else:
            history.add_messages(messages)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return total / elapsed


async def langchain_async_rate(path: str, sessions: int, per_session: int, batch: int = 1) -> float:
    from sqlalchemy.ext.asyncio import create_async_engine

    history_cls, kinds = import_langchain()  # type: ignore[misc]
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    histories = [history_cls(f"s{i}", connection=engine, async_mode=True) for i in range(sessions)]
    await histories[0].aadd_messages([kinds[0](content="warm-up")])
    payloads = [[kinds[k % 2](content=TEXT) for k in range(per_session)] for _ in range(sessions)]

    async def writer(i: int) -> None:
        for chunk in chunks(payloads[i], batch):
            await histories[i].aadd_messages(chunk)

    started = time.perf_counter()
    await asyncio.gather(*(writer(i) for i in range(sessions)))
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return sessions * per_session / elapsed


# -- table --------------------------------------------------------------------------------------


def measure(repeat: int, run: Callable[[str], float]) -> float:
    """Median rate of ``repeat`` runs, each on a fresh file."""
    rates = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as directory:
            rates.append(run(fresh_db(directory, "bench")))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20_000, help="per langswarm row")
    parser.add_argument("--baseline-messages", type=int, default=3_000)
    parser.add_argument("--peer-messages", type=int, default=2_000, help="per LangChain row")
    parser.add_argument("--repeat", type=int, default=3, help="runs per langswarm row (median)")
    parser.add_argument("--batch", type=int, default=1, help="messages per call (default 1)")
    args = parser.parse_args()
    sessions: int = args.sessions
    batch: int = args.batch

    def per(messages: int) -> int:
        """Messages per session: at least one call, whole calls only."""
        return -(-max(messages // sessions, 1) // batch) * batch

    per_session = per(args.messages)
    peer_per_session = per(args.peer_messages)
    baseline_total = sessions * per(args.baseline_messages)

    rows: list[tuple[str, int, float | None]] = []
    for durability in ("committed", "buffered"):
        for loop in ("asyncio", "trio"):

            def ours(path: str, durability: str = durability, loop: str = loop) -> float:
                return anyio.run(
                    langswarm_rate, path, durability, sessions, per_session, batch, backend=loop
                )

            label = f"langswarm {durability:<9} on {loop}"
            rows.append((label, sessions * per_session, measure(args.repeat, ours)))

    rows.append(
        (
            "sqlite3, one transaction per call",
            baseline_total,
            measure(1, lambda p: commit_per_message_rate(p, sessions, baseline_total, batch)),
        )
    )

    peer_total = sessions * peer_per_session
    reference = "LangChain SQLChatMessageHistory, sync"
    peers: list[tuple[str, Callable[[str], float]]] = [
        (reference, lambda p: langchain_sync_rate(p, sessions, peer_total, False, batch)),
        (
            "LangChain SQLChatMessageHistory, sync, WAL",
            lambda p: langchain_sync_rate(p, sessions, peer_total, True, batch),
        ),
        (
            "LangChain SQLChatMessageHistory, async",
            lambda p: asyncio.run(langchain_async_rate(p, sessions, peer_per_session, batch)),
        ),
    ]
    installed = import_langchain() is not None
    for label, run in peers:
        rows.append((label, peer_total, measure(1, run) if installed else None))

    base = next(rate for label, _, rate in rows if label == reference)
    calls = "one message per call" if batch == 1 else f"{batch} messages per call"
    print(
        f"{sessions:,} concurrent sessions, 200-character messages, {calls}, "
        "SQLite synchronous=FULL"
    )
    print(f"{'system':<44} {'messages':>9} {'msgs/s':>10} {'vs LangChain':>13}")
    for label, count, rate in rows:
        if rate is None:
            print(f"{label:<44} {'':>9} {'not installed':>10}")
            continue
        ratio = f"{rate / base:,.1f}x" if base else "n/a"
        print(f"{label:<44} {count:>9,} {rate:>10,.0f} {ratio:>13}")


if __name__ == "__main__":
    main()
