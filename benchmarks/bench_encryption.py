"""What encryption at rest costs: agent turns/s with and without ``EncryptedBackend``, one run.

    pip install -e '.[bench,encryption]'
    python benchmarks/bench_encryption.py [--sessions 500] [--duration 10] [--rounds 1]

The workload and harness are compare.py's (``compare.measure``): ``--sessions`` sessions,
each a closed loop of agent turns with no think time, for ``--duration`` seconds after one
warm-up turn per session, where a turn is

    store the user message -> read the context (newest messages within --context-tokens)
    -> store the assistant message

through the public API with ``committed`` durability (a call returns once its write is
committed). Each store runs twice, plain and encrypted (AES-256-GCM through a
``StaticKeyring``), alternating, ``--rounds`` times: SQLite (a fresh file per target, WAL,
synchronous=FULL) and Redis (a redis-server this script starts on a free port, no
persistence, flushed between targets). Everything runs on asyncio. The last lines give, per
store, encrypted turns/s over plain turns/s (summed over rounds) and the slowdown, and the
same for this process's CPU time per turn (all its threads, set-up and warm-up included),
which other load on the machine disturbs much less than throughput.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

import anyio
from compare import Outcome, committed_memory, error_lines, measure, redis_server, scratch

from langswarm.core.memory import MemoryManager, create_openai_message
from langswarm.core.memory._bench.workload import Workload
from langswarm.core.memory._config import build
from langswarm.core.memory._tokens import count_text_tokens
from langswarm.core.memory.backends.encrypted import EncryptedBackend, StaticKeyring


class Langswarm:
    """langswarm memory on one store, with or without encryption at rest."""

    def __init__(self, store: str, encrypted: bool, budget: int, scratch: str, url: str) -> None:
        self.name = "encrypted" if encrypted else "plain"
        self.store = store
        self.budget = budget
        backend, settings = build(None, committed_memory(store, scratch, url, "bench.db"), {})
        if encrypted:
            keyring = StaticKeyring({"bench-1": os.urandom(32)}, current="bench-1")
            backend = EncryptedBackend(backend, keyring)
        self.manager = MemoryManager(backend, settings)

    async def open(self) -> None:
        await self.manager.__aenter__()

    async def session(self, index: int, user_id: str) -> Any:
        return await self.manager.create_session(user_id, metadata={"channel": "bench"})

    async def turn(self, handle: Any, user: str, assistant: str) -> int:
        await handle.add_message(create_openai_message("user", user))
        context = await handle.get_conversation_context(max_tokens=self.budget)
        await handle.add_message(create_openai_message("assistant", assistant))
        return len(context)

    async def close(self) -> None:
        await self.manager.__aexit__(None, None, None)


def table(outcomes: list[Outcome], cpu: list[float], workload: Workload, rounds: int) -> str:
    lines = [
        f"agent turns with and without encryption at rest, {workload.sessions:,} sessions in a "
        f"closed loop, {workload.duration:g} s per target, {rounds} round(s), "
        f"{workload.message_chars}-char messages, context {workload.context_tokens:,} tokens, "
        "committed, asyncio",
        "",
        f"{'store':<8}{'target':<12}{'turns/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
        f"{'ctx msgs':>10}{'errors':>8}{'CPU us/turn':>13}",
    ]
    lines.append("-" * len(lines[-1]))
    for o, seconds in zip(outcomes, cpu, strict=True):
        ctx = o.context_messages / o.turns if o.turns else 0.0
        per_turn = seconds / o.turns * 1e6 if o.turns else 0.0
        lines.append(
            f"{o.store:<8}{o.name:<12}{o.turns_per_s:>10,.0f}{o.ms(50):>10.2f}{o.ms(99):>10.2f}"
            f"{ctx:>10.1f}{sum(o.errors.values()):>8,}{per_turn:>13,.0f}"
        )
    lines.append("")
    for store in ("sqlite", "redis"):
        rate = {
            name: sum(o.turns for o in outcomes if o.store == store and o.name == name)
            / sum(o.elapsed_s for o in outcomes if o.store == store and o.name == name)
            for name in ("plain", "encrypted")
        }
        cost = {
            name: sum(
                c for o, c in zip(outcomes, cpu, strict=True) if o.store == store and o.name == name
            )
            / sum(o.turns for o in outcomes if o.store == store and o.name == name)
            for name in ("plain", "encrypted")
        }
        ratio = rate["encrypted"] / rate["plain"]
        lines.append(
            f"{store}: encrypted/plain turns/s {ratio:.3f}x ({(ratio - 1) * 100:+.1f}%; target: "
            f"no worse than -15%), CPU per turn {cost['encrypted'] / cost['plain']:.3f}x"
        )
    lines.extend(error_lines(outcomes))
    return "\n".join(lines)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop our redis-server
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--message-chars", type=int, default=200)
    parser.add_argument("--context-tokens", type=int, default=4_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    workload = Workload(
        sessions=args.sessions,
        duration=args.duration,
        message_chars=args.message_chars,
        context_tokens=args.context_tokens,
        seed=args.seed,
    )
    count_text_tokens("load the encoding before the first target, not during it")
    outcomes: list[Outcome] = []
    cpu: list[float] = []
    with redis_server() as url:
        for round_ in range(args.rounds):
            # Alternate which variant goes first, so drift over the run falls on both.
            order = (False, True) if round_ % 2 == 0 else (True, False)
            for store in ("sqlite", "redis"):
                for encrypted in order:
                    with scratch(url, "bench-encryption-") as directory:
                        target = Langswarm(store, encrypted, args.context_tokens, directory, url)
                        print(f"running {target.name} on {store} ...", file=sys.stderr, flush=True)
                        started = time.process_time()
                        outcomes.append(anyio.run(measure, target, workload))
                        cpu.append(time.process_time() - started)
    print(table(outcomes, cpu, workload, args.rounds))


if __name__ == "__main__":
    main()
