"""One OS process of ``bench_processes.py``: drives its sessions, prints one JSON line.

    python benchmarks/_procs_child.py work   --library L --store S --target T --proc P ...
    python benchmarks/_procs_child.py verify --library L --store S --target T --sessions N ...

``work`` opens the store, creates (or joins) its sessions, does one warm-up turn on each,
prints ``{"ready": ...}`` and reads the start time (``time.time()``) from stdin. From then on
each session is an asyncio task running agent turns in a closed loop for ``--duration``
seconds; the last line printed holds the counts, the add latencies (microseconds), the CPU
this process used over the measured window and, per session, every message it had
acknowledged. ``verify`` reads every session back from the store and prints how it compares
with the acknowledged messages (``--acked``): lost, duplicated, stored unacknowledged, out of
order.

langswarm memory is driven through the public API only (``MemoryManager.from_config``,
``get_or_create_session``, ``add_message``, ``get_conversation_context``, ``get_messages``),
which older checkouts have too: with ``PYTHONPATH`` set to one, this file measures it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

USER = "bench-user"
#: How each message starts: ``<process.turn role>``, role ``u`` or ``a``.
TAG = re.compile(r"<(\d+)\.(\d+)([ua])>")
CHECK_KEYS = ("acked", "stored", "lost", "duplicated", "unacked_stored", "out_of_order")
#: Concurrent session creations during set-up.
SETUP_CONCURRENCY = 32


class Library(Protocol):
    """One session store as the benchmark drives it."""

    async def open(self) -> None: ...
    async def session(self, session_id: str) -> Any: ...
    async def add(self, handle: Any, role: str, text: str) -> None: ...
    async def read(self, handle: Any) -> int: ...
    async def stored(self, session_id: str) -> list[str]: ...
    async def close(self) -> None: ...


class Langswarm:
    """langswarm memory, ``committed`` durability: a write returns once it is stored."""

    def __init__(self, store: str, target: str, context_tokens: int) -> None:
        from langswarm.core.memory import MemoryManager, create_openai_message

        config = {"db_path": target} if store == "sqlite" else {"url": target}
        self.manager = MemoryManager.from_config(
            memory={"backend": store, "config": config, "durability": "committed"}
        )
        self.message = create_openai_message
        self.budget = context_tokens

    async def open(self) -> None:
        await self.manager.__aenter__()

    async def session(self, session_id: str) -> Any:
        return await self.manager.get_or_create_session(USER, session_id)

    async def add(self, handle: Any, role: str, text: str) -> None:
        await handle.add_message(self.message(role, text))

    async def read(self, handle: Any) -> int:
        return len(await handle.get_conversation_context(max_tokens=self.budget))

    async def stored(self, session_id: str) -> list[str]:
        handle = await self.manager.get_session(session_id)
        if handle is None:
            return []
        return [str(m.content) for m in await handle.get_messages()]

    async def close(self) -> None:
        await self.manager.__aexit__(None, None, None)


class Agents:
    """The OpenAI Agents SDK's ``SQLiteSession`` (one file) or ``RedisSession``."""

    def __init__(self, store: str, target: str) -> None:
        self.store, self.target = store, target
        self.sqlite_sessions: list[Any] = []
        self.client: Any = None

    async def open(self) -> None:
        if self.store == "redis":
            import redis.asyncio

            # The default pool raises MaxConnectionsError once 100 sessions are busy at once;
            # the blocking pool makes callers wait for a connection instead.
            pool = redis.asyncio.BlockingConnectionPool.from_url(self.target, max_connections=100)
            self.client = redis.asyncio.Redis(connection_pool=pool)

    async def session(self, session_id: str) -> Any:
        if self.store == "redis":
            from agents.extensions.memory.redis_session import RedisSession

            return RedisSession(session_id, redis_client=self.client)
        from agents import SQLiteSession

        session = SQLiteSession(session_id, self.target)
        self.sqlite_sessions.append(session)
        return session

    async def add(self, handle: Any, role: str, text: str) -> None:
        await handle.add_items([{"role": role, "content": text}])

    async def read(self, handle: Any) -> int:
        return len(await handle.get_items())

    async def stored(self, session_id: str) -> list[str]:
        items = await (await self.session(session_id)).get_items()
        return [str(item.get("content", "")) for item in items]

    async def close(self) -> None:
        for session in self.sqlite_sessions:
            session.close()
        if self.client is not None:
            await self.client.aclose()


class Worker:
    """The sessions of one process, their turns, and what was measured."""

    def __init__(self, library: Library, args: argparse.Namespace) -> None:
        self.library, self.proc = library, args.proc
        self.ids = session_ids(args.mode, args.proc, args.sessions)
        self.handles: list[Any] = []
        self.turn_no = [0] * len(self.ids)
        self.acked: dict[str, list[str]] = {sid: [] for sid in self.ids}
        self.add_us: list[int] = []
        self.turns = 0
        self.measuring = False
        self.errors: Counter[str] = Counter()
        rng = random.Random(args.seed * 1_000 + args.proc)
        self.fillers = [filler(rng, args.message_chars) for _ in range(64)]

    async def setup(self) -> None:
        limit = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def open_one(sid: str) -> Any:
            async with limit:
                return await self.library.session(sid)

        self.handles = list(await asyncio.gather(*(open_one(sid) for sid in self.ids)))
        await asyncio.gather(*(self.turn(i) for i in range(len(self.ids))))

    async def add(self, i: int, role: str, k: int) -> None:
        tag = f"<{self.proc}.{k}{role[0]}>"
        text = f"{tag} {self.fillers[(k * 2 + len(role)) % len(self.fillers)]}"
        t = time.perf_counter_ns()
        await self.library.add(self.handles[i], role, text)
        if self.measuring:
            self.add_us.append((time.perf_counter_ns() - t) // 1_000)
        self.acked[self.ids[i]].append(tag)

    async def turn(self, i: int) -> None:
        """User message, context read, assistant message; an error ends the turn."""
        k = self.turn_no[i]
        self.turn_no[i] += 1
        try:
            await self.add(i, "user", k)
            await self.library.read(self.handles[i])
            await self.add(i, "assistant", k)
        except Exception as exc:
            self.errors[f"{type(exc).__name__}: {str(exc)[:100]}"] += 1
            await asyncio.sleep(0)
        else:
            if self.measuring:
                self.turns += 1

    async def run(self, duration: float) -> float:
        """Turns on every session until ``duration`` is over; returns the seconds taken."""
        started = time.monotonic()
        deadline = started + duration

        async def loop(i: int) -> None:
            while time.monotonic() < deadline:
                await self.turn(i)

        self.measuring = True
        await asyncio.gather(*(loop(i) for i in range(len(self.ids))))
        self.measuring = False
        return time.monotonic() - started


def session_ids(mode: str, proc: int, sessions: int) -> list[str]:
    prefix = "shared" if mode == "shared" else f"p{proc}"
    return [f"{prefix}-{i}" for i in range(sessions)]


def filler(rng: random.Random, chars: int) -> str:
    words = ["memory", "agent", "turn", "session", "store", "reply", "tool", "context", "query"]
    text = ""
    while len(text) < chars:
        text += rng.choice(words) + " "
    return text[:chars]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_library(args: argparse.Namespace) -> Library:
    if args.library == "langswarm":
        return Langswarm(args.store, args.target, args.context_tokens)
    return Agents(args.store, args.target)


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def work(args: argparse.Namespace) -> None:
    library = make_library(args)
    await library.open()
    try:
        worker = Worker(library, args)
        await worker.setup()
        emit({"ready": args.proc, "module": loaded_from()})
        start_at = float(await asyncio.to_thread(sys.stdin.readline))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu = cpu_seconds()
        elapsed = await worker.run(args.duration)
        cpu = cpu_seconds() - cpu
    finally:
        await library.close()
    emit(
        {
            "proc": args.proc,
            "turns": worker.turns,
            "elapsed_s": elapsed,
            "cpu_s": cpu,
            "add_us": worker.add_us,
            "errors": dict(worker.errors),
            "acked": worker.acked if args.mode == "shared" else {},
        }
    )


async def verify(args: argparse.Namespace) -> None:
    acked: dict[str, list[str]] = args.acked_tags
    library = make_library(args)
    await library.open()
    totals: Counter[str] = Counter()
    try:
        for sid in session_ids(args.mode, args.proc, args.sessions):
            totals.update(compare(set(acked.get(sid, [])), await library.stored(sid)))
    finally:
        await library.close()
    emit({"check": {key: totals[key] for key in CHECK_KEYS}})


def compare(acked: set[str], texts: list[str]) -> Counter[str]:
    """One session as stored against the messages acknowledged to every process."""
    tags = [text.split(" ", 1)[0] for text in texts]
    counts = Counter(tags)
    return Counter(
        acked=len(acked),
        stored=len(tags),
        lost=len(acked - counts.keys()),
        duplicated=sum(n - 1 for n in counts.values()),
        unacked_stored=len(counts.keys() - acked),
        out_of_order=inversions(tags),
    )


def inversions(tags: list[str]) -> int:
    """Adjacent pairs of one process's messages stored out of the order it wrote them."""
    last: dict[str, tuple[int, bool]] = {}
    bad = 0
    for tag in dict.fromkeys(tags):
        match = TAG.fullmatch(tag)
        if match is None:
            continue
        proc, key = match[1], (int(match[2]), match[3] == "a")  # user before assistant
        if proc in last and key <= last[proc]:
            bad += 1
        last[proc] = key
    return bad


def loaded_from() -> str:
    """Where the library under test was imported from (to prove which checkout ran)."""
    name = "langswarm" if "langswarm" in sys.modules else "agents"
    return str(getattr(sys.modules[name], "__file__", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["work", "verify"])
    parser.add_argument("--library", choices=["langswarm", "agents"], required=True)
    parser.add_argument("--store", choices=["sqlite", "redis"], required=True)
    parser.add_argument("--target", required=True, help="SQLite file or Redis URL")
    parser.add_argument("--mode", choices=["distinct", "shared"], default="distinct")
    parser.add_argument("--proc", type=int, default=0)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--context-tokens", type=int, default=4_000)
    parser.add_argument("--message-chars", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--acked", help="verify: JSON file of the acknowledged tags per session")
    args = parser.parse_args()
    if args.role == "verify":
        with open(args.acked) as f:
            args.acked_tags = json.load(f)
    roles: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, None]]] = {
        "work": work,
        "verify": verify,
    }
    asyncio.run(roles[args.role](args))


if __name__ == "__main__":
    main()
