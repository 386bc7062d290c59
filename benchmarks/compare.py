"""The agent-turn workload side by side: langswarm memory and peer libraries, in one run.

    pip install -e '.[bench,peers]'
    python benchmarks/compare.py [--sessions 1000] [--duration 10] [--peer-threads 64]

Every target runs the same workload with the same harness: ``--sessions`` sessions, each a
closed loop of agent turns with no think time, for ``--duration`` seconds, texts from the
benchmark's seeded generator (``langswarm.core.memory._bench.workload``). A turn is

    store the user message -> read the context (newest messages within --context-tokens)
    -> store the assistant message

and its latency is taken around the whole turn, queueing included. Before the clock starts,
every session is created and does one warm-up turn (connections, table checks, tokenizer).
SQLite targets each get a fresh file; Redis targets share one redis-server this script starts
on a free port (no persistence), flushed between targets.

How each target is driven, and why that is fair:

* langswarm memory: its public API (``add_message``, ``get_conversation_context``,
  ``add_message``) with ``committed`` durability: a call returns once its write is committed
  (SQLite WAL, synchronous=FULL; Redis MULTI/EXEC). One asyncio task per session.
* langchain-community ``SQLChatMessageHistory``: its async mode (``aadd_messages``,
  ``aget_messages``) over one shared SQLAlchemy async engine on aiosqlite, as its docstring
  shows. The file is switched to WAL first (its default is a rollback journal, which would
  only slow it down); synchronous stays FULL. One asyncio task per session.
* langchain-community ``RedisChatMessageHistory``: synchronous only, so each turn runs as one
  call in a worker thread, with ``--peer-threads`` threads (one thread hop per turn, not per
  operation: the cheapest way to drive it from async code; 4, 16 and 64 threads gave 1,042,
  1,177 and 1,234 turns/s for 1,000 sessions, so 64 is the default). Constructed as
  documented, which gives each history its own client.
* openai-agents ``SQLiteSession`` (WAL by its own choice, synchronous=FULL) and
  ``RedisSession``: their async API (``add_items``, ``get_items``), one asyncio task per
  session. The Redis sessions share one ``redis.asyncio`` client on a
  ``BlockingConnectionPool`` of 100 connections: with a plain client, redis-py's pool (also
  100) raises ``MaxConnectionsError`` instead of waiting once 100 sessions are busy.

Peers have no token-budgeted read, so their context is the full history (what their API
returns) trimmed to the newest messages that fit, counting tokens with the same tiktoken
encoding and per-message overhead langswarm uses, newest first and stopping at the budget.
Everything runs on asyncio: none of the peers runs on trio. Never asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.lowlevel

from langswarm.core.memory import MemoryManager, create_openai_message
from langswarm.core.memory._bench.engine import new_histogram, record_batch
from langswarm.core.memory._bench.workload import (
    ADD_ASSISTANT,
    ADD_USER,
    Workload,
    WorkloadGenerator,
)
from langswarm.core.memory._tokens import TOKENS_PER_MESSAGE, get_encoding


def newest_within(texts: list[str], budget: int) -> int:
    """How many of the newest ``texts`` fit ``budget`` tokens (peers' context read)."""
    encode = get_encoding().encode_ordinary
    used = n = 0
    for text in reversed(texts):
        used += TOKENS_PER_MESSAGE + len(encode(text))
        if used > budget:
            break
        n += 1
    return n


class Target(Protocol):
    """One library under test."""

    name: str
    store: str

    async def open(self) -> None: ...
    async def session(self, index: int, user_id: str) -> Any: ...
    async def turn(self, handle: Any, user: str, assistant: str) -> int: ...
    async def close(self) -> None: ...


# -- langswarm memory ---------------------------------------------------------------------


def committed_memory(
    store: str, scratch: str, redis_url: str, name: str = "ours.db"
) -> dict[str, Any]:
    """The ``memory=`` config of langswarm memory on ``store`` with ``committed`` durability:
    an SQLite file ``name`` in ``scratch``, or the Redis at ``redis_url``."""
    config = {"db_path": os.path.join(scratch, name)} if store == "sqlite" else {"url": redis_url}
    return {"backend": store, "config": config, "durability": "committed"}


class Ours:
    def __init__(self, store: str, budget: int, scratch: str, redis_url: str) -> None:
        self.name = "langswarm memory (committed)"
        self.store = store
        self.budget = budget
        self.manager = MemoryManager.from_config(memory=committed_memory(store, scratch, redis_url))

    async def open(self) -> None:
        await self.manager.__aenter__()

    async def session(self, index: int, user_id: str) -> Any:
        return await self.manager.create_session(user_id)

    async def turn(self, handle: Any, user: str, assistant: str) -> int:
        await handle.add_message(create_openai_message("user", user))
        context = await handle.get_conversation_context(max_tokens=self.budget)
        await handle.add_message(create_openai_message("assistant", assistant))
        return len(context)

    async def close(self) -> None:
        await self.manager.__aexit__(None, None, None)


# -- langchain-community --------------------------------------------------------------------


class LangchainSQL:
    def __init__(self, budget: int, scratch: str) -> None:
        self.name = "langchain SQLChatMessageHistory (async)"
        self.store = "sqlite"
        self.budget = budget
        self.path = os.path.join(scratch, "langchain.db")
        from langchain_community.chat_message_histories import SQLChatMessageHistory
        from langchain_core.messages import AIMessage, HumanMessage

        self.history, self.human, self.ai = SQLChatMessageHistory, HumanMessage, AIMessage

    async def open(self) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
        self.engine = create_async_engine(f"sqlite+aiosqlite:///{self.path}")

    async def session(self, index: int, user_id: str) -> Any:
        return self.history(session_id=f"{user_id}-{index}", connection=self.engine)

    async def turn(self, handle: Any, user: str, assistant: str) -> int:
        await handle.aadd_messages([self.human(content=user)])
        history = await handle.aget_messages()
        n = newest_within([m.content for m in history], self.budget)
        await handle.aadd_messages([self.ai(content=assistant)])
        return n

    async def close(self) -> None:
        await self.engine.dispose()


class LangchainRedis:
    def __init__(self, budget: int, redis_url: str, threads: int) -> None:
        self.name = f"langchain RedisChatMessageHistory ({threads} threads)"
        self.store = "redis"
        self.budget = budget
        self.url = redis_url
        self.limiter = anyio.CapacityLimiter(threads)
        self.histories: list[Any] = []
        from langchain_community.chat_message_histories import RedisChatMessageHistory
        from langchain_core.messages import AIMessage, HumanMessage

        self.history, self.human, self.ai = RedisChatMessageHistory, HumanMessage, AIMessage

    async def open(self) -> None:
        return None

    async def session(self, index: int, user_id: str) -> Any:
        history = self.history(session_id=f"{user_id}-{index}", url=self.url)
        self.histories.append(history)
        return history

    def _turn(self, handle: Any, user: str, assistant: str) -> int:
        handle.add_message(self.human(content=user))
        n = newest_within([m.content for m in handle.messages], self.budget)
        handle.add_message(self.ai(content=assistant))
        return n

    async def turn(self, handle: Any, user: str, assistant: str) -> int:
        n: int = await anyio.to_thread.run_sync(
            self._turn, handle, user, assistant, limiter=self.limiter
        )
        return n

    async def close(self) -> None:
        for history in self.histories:
            history.redis_client.close()


# -- openai-agents ----------------------------------------------------------------------------


async def agents_turn(handle: Any, user: str, assistant: str, budget: int) -> int:
    """One turn on an OpenAI Agents SDK session (SQLite or Redis, same API)."""
    await handle.add_items([{"role": "user", "content": user}])
    items = await handle.get_items()
    n = newest_within([str(i.get("content", "")) for i in items], budget)
    await handle.add_items([{"role": "assistant", "content": assistant}])
    return n


class AgentsSQLite:
    def __init__(self, budget: int, scratch: str) -> None:
        self.name = "openai-agents SQLiteSession"
        self.store = "sqlite"
        self.budget = budget
        self.path = os.path.join(scratch, "agents.db")
        self.sessions: list[Any] = []
        from agents import SQLiteSession

        self.factory = SQLiteSession

    async def open(self) -> None:
        return None

    async def session(self, index: int, user_id: str) -> Any:
        session = self.factory(f"{user_id}-{index}", self.path)
        self.sessions.append(session)
        return session

    async def turn(self, handle: Any, user: str, assistant: str) -> int:
        return await agents_turn(handle, user, assistant, self.budget)

    async def close(self) -> None:
        for session in self.sessions:
            session.close()


class AgentsRedis:
    def __init__(self, budget: int, redis_url: str) -> None:
        self.name = "openai-agents RedisSession"
        self.store = "redis"
        self.budget = budget
        self.url = redis_url
        from agents.extensions.memory.redis_session import RedisSession

        self.factory = RedisSession

    async def open(self) -> None:
        import redis.asyncio

        # A plain shared client fails with MaxConnectionsError once 100 sessions are busy at
        # once; redis-py's blocking pool makes callers wait for a connection instead.
        pool = redis.asyncio.BlockingConnectionPool.from_url(self.url, max_connections=100)
        self.client = redis.asyncio.Redis(connection_pool=pool)

    async def session(self, index: int, user_id: str) -> Any:
        return self.factory(f"{user_id}-{index}", redis_client=self.client)

    async def turn(self, handle: Any, user: str, assistant: str) -> int:
        return await agents_turn(handle, user, assistant, self.budget)

    async def close(self) -> None:
        await self.client.aclose()


# -- harness ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    store: str
    turns: int = 0
    elapsed_s: float = 0.0
    histogram: Any = field(default_factory=new_histogram)
    context_messages: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    skipped: str | None = None

    @property
    def turns_per_s(self) -> float:
        return self.turns / self.elapsed_s if self.elapsed_s else 0.0

    def ms(self, percentile: float) -> float:
        return float(self.histogram.get_value_at_percentile(percentile)) / 1000


async def measure(target: Target, workload: Workload) -> Outcome:
    """Set up, warm up, then drive every session in a closed loop until the deadline."""
    generator = WorkloadGenerator(workload)
    outcome = Outcome(target.name, target.store)
    await target.open()
    try:
        limiter = anyio.Semaphore(64)
        handles: list[Any] = [None] * workload.sessions
        plans = [generator.plan(i) for i in range(workload.sessions)]

        async def setup(i: int) -> None:
            async with limiter:
                try:
                    handles[i] = await target.session(i, generator.user_id(i))
                    await one_turn(i)
                except Exception as exc:
                    outcome.errors[f"setup: {type(exc).__name__}: {str(exc)[:80]}"] += 1

        async def one_turn(i: int) -> int:
            step = next(plans[i])
            texts = {a.op: a.text or "" for a in step.actions}
            return await target.turn(handles[i], texts[ADD_USER], texts[ADD_ASSISTANT])

        # One session first: langchain's async history creates its table on first use, per
        # instance, and concurrent first uses race ("table message_store already exists").
        await setup(0)
        async with anyio.create_task_group() as tg:
            for i in range(1, workload.sessions):
                tg.start_soon(setup, i)

        samples: list[int] = []
        deadline = time.perf_counter() + (workload.duration or 10.0)

        async def drive(i: int) -> None:
            if handles[i] is None:
                return
            now = time.perf_counter_ns
            while time.perf_counter() < deadline:
                t = now()
                try:
                    n = await one_turn(i)
                except Exception as exc:
                    outcome.errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                else:
                    samples.append(now() - t)
                    outcome.turns += 1
                    outcome.context_messages += n
                await anyio.lowlevel.checkpoint()

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(workload.sessions):
                tg.start_soon(drive, i)
        outcome.elapsed_s = time.perf_counter() - started
        record_batch(samples, outcome.histogram)
    finally:
        await target.close()
    return outcome


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("compare.py: redis-server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="compare-redis-")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [*args, "--dir", directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("compare.py: redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def flushall(url: str) -> None:
    import redis

    with contextlib.closing(redis.Redis.from_url(url)) as client:
        client.flushall()


@contextlib.contextmanager
def scratch(url: str, prefix: str) -> Iterator[str]:
    """A directory for one target's files; removed, and Redis at ``url`` emptied, after it."""
    directory = tempfile.mkdtemp(prefix=prefix)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        flushall(url)


TARGETS: dict[str, Callable[[argparse.Namespace, str, str], Target]] = {
    "ours-sqlite": lambda a, d, u: Ours("sqlite", a.context_tokens, d, u),
    "langchain-sql": lambda a, d, u: LangchainSQL(a.context_tokens, d),
    "agents-sqlite": lambda a, d, u: AgentsSQLite(a.context_tokens, d),
    "ours-redis": lambda a, d, u: Ours("redis", a.context_tokens, d, u),
    "langchain-redis": lambda a, d, u: LangchainRedis(a.context_tokens, u, a.peer_threads),
    "agents-redis": lambda a, d, u: AgentsRedis(a.context_tokens, u),
}


def table(outcomes: list[Outcome], workload: Workload) -> str:
    lines = [
        f"agent turns, {workload.sessions:,} sessions in a closed loop, {workload.duration:g} s "
        f"per target, {workload.message_chars}-char messages, context {workload.context_tokens:,} "
        "tokens, asyncio",
        "ratios compare each peer with langswarm on the same store; above 1 means langswarm "
        "is better",
        "",
        f"{'target':<48}{'store':<8}{'turns/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
        f"{'ctx msgs':>10}{'errors':>8}{'ours/peer turns/s':>19}{'peer/ours p99':>15}",
    ]
    lines.append("-" * len(lines[-1]))
    ours = {o.store: o for o in outcomes if o.name.startswith("langswarm") and not o.skipped}
    for o in outcomes:
        if o.skipped:
            lines.append(f"{o.name:<48}{o.store:<8}  skipped: {o.skipped}")
            continue
        base = ours.get(o.store)
        ratio_tps = ratio_p99 = ""
        if base is not None and base is not o and o.turns:
            ratio_tps = f"{base.turns_per_s / o.turns_per_s:.1f}x"
            ratio_p99 = f"{o.ms(99) / base.ms(99):.1f}x"
        ctx = o.context_messages / o.turns if o.turns else 0.0
        lines.append(
            f"{o.name:<48}{o.store:<8}{o.turns_per_s:>10,.0f}{o.ms(50):>10.2f}{o.ms(99):>10.2f}"
            f"{ctx:>10.1f}{sum(o.errors.values()):>8,}{ratio_tps:>19}{ratio_p99:>15}"
        )
    lines.extend(error_lines(outcomes))
    return "\n".join(lines)


def error_lines(outcomes: Sequence[Outcome]) -> list[str]:
    """The three commonest errors of each target, one line each."""
    return [
        f"  {o.name} ({o.store}): {count:,} x {error}"
        for o in outcomes
        for error, count in o.errors.most_common(3)
    ]


def main() -> None:
    # So that `kill` still runs the cleanup that stops our redis-server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--message-chars", type=int, default=200)
    parser.add_argument("--context-tokens", type=int, default=4_000)
    parser.add_argument("--peer-threads", type=int, default=64, help="threads for sync peers")
    parser.add_argument("--only", default=",".join(TARGETS), help="comma-separated targets")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    workload = Workload(
        sessions=args.sessions,
        duration=args.duration,
        message_chars=args.message_chars,
        context_tokens=args.context_tokens,
        seed=args.seed,
    )
    chosen = args.only.split(",")
    unknown = set(chosen) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
    outcomes: list[Outcome] = []
    with redis_server() as url:
        for key in chosen:
            with scratch(url, "compare-") as directory:
                try:
                    target = TARGETS[key](args, directory, url)
                except ImportError as exc:
                    store = "redis" if "redis" in key else "sqlite"
                    outcomes.append(Outcome(key, store, skipped=f"cannot import: {exc}"[:120]))
                    continue
                print(f"running {target.name} on {target.store} ...", file=sys.stderr, flush=True)
                outcomes.append(anyio.run(measure, target, workload))
    print(table(outcomes, workload))
    if args.json:
        with open(args.json, "w") as f:
            rows = [
                {
                    "target": o.name,
                    "store": o.store,
                    "turns": o.turns,
                    "turns_per_s": o.turns_per_s,
                    "p50_ms": o.ms(50),
                    "p99_ms": o.ms(99),
                    "errors": dict(o.errors),
                    "skipped": o.skipped,
                    "hdr": o.histogram.encode().decode() if o.turns else None,
                }
                for o in outcomes
            ]
            json.dump({"workload": workload.as_dict(), "targets": rows}, f, indent=2)


if __name__ == "__main__":
    main()
