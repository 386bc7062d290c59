"""Agents SDK session stores under the Runner's turn workload: LangswarmSession vs the SDK's own.

    pip install -e '.[bench,agents]'
    python benchmarks/bench_agents_sessions.py [--sessions 1000] [--duration 10]

One run measures four targets with the same harness (``compare.measure``): ``--sessions``
sessions, each a closed loop of turns with no think time, for ``--duration`` seconds, after
one warm-up turn per session. A turn is what ``Runner.run`` asks of its session for a
one-step answer:

    get_items()  ->  add_items([user input item])  ->  add_items([model output item])

with the output item in the shape the Runner stores (a ``message`` with ``output_text``), and
its latency is taken around the whole turn. The targets:

* ``LangswarmSession`` on SQLite and on Redis (langswarm memory, ``committed`` durability:
  each ``add_items`` returns once its write is committed), one ``MemoryManager`` per store;
* the SDK's ``SQLiteSession`` (one file, WAL by its own choice) and ``RedisSession`` (one
  shared ``redis.asyncio`` client on a blocking pool of 100 connections, see compare.py).

The Redis targets share one redis-server this script starts on a free port (no persistence),
flushed between targets; each SQLite target gets a fresh file. Everything runs on asyncio (the
SDK's stores need it). Ratios compare LangswarmSession with the SDK's store on the same
backend: turns/s ours over theirs, p99 theirs over ours (above 1: langswarm is better).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from typing import Any

import anyio
from compare import (
    AgentsRedis,
    AgentsSQLite,
    Outcome,
    committed_memory,
    error_lines,
    measure,
    redis_server,
    scratch,
)

from langswarm.core.memory import MemoryManager
from langswarm.core.memory._bench.workload import Workload


def output_item(text: str, turn: int) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "id": f"msg_{turn}",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [part],
    }


async def runner_turn(session: Any, user: str, assistant: str) -> int:
    """One turn as the Runner drives a session; returns how many items the model was sent."""
    history = await session.get_items()
    await session.add_items([{"role": "user", "content": user}])
    await session.add_items([output_item(assistant, len(history))])
    return len(history) + 1


class Ours:
    def __init__(self, store: str, scratch: str, redis_url: str) -> None:
        from langswarm.core.memory.agents_sdk import LangswarmSession

        self.name = "LangswarmSession"
        self.store = store
        self.factory = LangswarmSession
        self.manager = MemoryManager.from_config(memory=committed_memory(store, scratch, redis_url))

    async def open(self) -> None:
        await self.manager.__aenter__()

    async def session(self, index: int, user_id: str) -> Any:
        return self.factory(f"{user_id}-{index}", manager=self.manager, user_id=user_id)

    async def turn(self, handle: Any, user: str, assistant: str) -> int:
        return await runner_turn(handle, user, assistant)

    async def close(self) -> None:
        await self.manager.__aexit__(None, None, None)


class TheirSQLite(AgentsSQLite):
    async def turn(self, handle: Any, user: str, assistant: str) -> int:
        return await runner_turn(handle, user, assistant)


class TheirRedis(AgentsRedis):
    async def turn(self, handle: Any, user: str, assistant: str) -> int:
        return await runner_turn(handle, user, assistant)


#: The targets, in the order they run, each built from a scratch directory and the Redis URL.
TARGETS: list[Callable[[str, str], Any]] = [
    lambda scratch, url: Ours("sqlite", scratch, url),
    lambda scratch, url: TheirSQLite(0, scratch),
    lambda scratch, url: Ours("redis", scratch, url),
    lambda scratch, url: TheirRedis(0, url),
]


def table(outcomes: list[Outcome], workload: Workload) -> str:
    lines = [
        f"Agents SDK session turns (get_items + 2 x add_items), {workload.sessions:,} sessions "
        f"in a closed loop, {workload.duration:g} s per target, "
        f"{workload.message_chars}-char messages, asyncio",
        "",
        f"{'target':<36}{'store':<8}{'turns/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
        f"{'items/turn':>12}{'errors':>8}",
    ]
    lines.append("-" * len(lines[-1]))
    for o in outcomes:
        per_turn = o.context_messages / o.turns if o.turns else 0.0
        lines.append(
            f"{o.name:<36}{o.store:<8}{o.turns_per_s:>10,.0f}{o.ms(50):>10.2f}{o.ms(99):>10.2f}"
            f"{per_turn:>12.1f}{sum(o.errors.values()):>8,}"
        )
    lines.append("")
    for store in ("sqlite", "redis"):
        ours = next(o for o in outcomes if o.store == store and o.name == "LangswarmSession")
        theirs = next(o for o in outcomes if o.store == store and o.name != ours.name)
        if ours.turns and theirs.turns:
            lines.append(
                f"{store}: LangswarmSession/{theirs.name}: turns/s "
                f"{ours.turns_per_s / theirs.turns_per_s:.2f}x, p50 {theirs.ms(50) / ours.ms(50):.2f}x"
                f" lower, p99 {theirs.ms(99) / ours.ms(99):.2f}x lower"
            )
    lines.extend(error_lines(outcomes))
    return "\n".join(lines)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop our redis-server
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--message-chars", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    workload = Workload(
        sessions=args.sessions,
        duration=args.duration,
        message_chars=args.message_chars,
        seed=args.seed,
    )
    outcomes: list[Outcome] = []
    with redis_server() as url:
        for make in TARGETS:
            with scratch(url, "bench-agents-") as directory:
                target = make(directory, url)
                print(f"running {target.name} on {target.store} ...", file=sys.stderr, flush=True)
                outcomes.append(anyio.run(measure, target, workload))
    print(table(outcomes, workload))


if __name__ == "__main__":
    main()
