"""Crash soak for SQLite persistence: many more SIGKILLs than the test suite does.

    .venv/bin/python -m tests.soak.sqlite_crash_soak [--committed-runs 100] [--buffered-runs 30]
        [--loops asyncio,trio] [--writers 32] [--seed N]

Not collected by pytest (the name does not match ``test_*.py``). Each run starts the test
suite's crash writer (``--writers`` concurrent sessions appending through the global API, one
line on stdout per acknowledged message), SIGKILLs it after a random number of
acknowledgements, then checks the file with ``PRAGMA integrity_check`` and reads it back
through the library.

``committed`` runs must lose nothing: every acknowledged id is stored, each session holds a
gap-free prefix of its messages in order, and its stored ``message_count`` matches.

``buffered`` runs acknowledge on receipt, so a kill loses what was accepted but not yet
committed: the loss window. It is reported in messages and in milliseconds of writes at the
rate the writer was acknowledging when it was killed. Files must still be intact and every
session a gap-free prefix.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import anyio

if not __package__:  # run as a file path: make ``tests`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.test_sqlite_durability import CrashRun, crash_once


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def soak(
    loop: str, durability: str, runs: int, kill_range: tuple[int, int], writers: int, seed: int
) -> list[CrashRun]:
    rng = random.Random(seed)
    results = []
    for n in range(runs):
        with tempfile.TemporaryDirectory() as directory:
            kill_after = rng.randint(*kill_range)
            run = await crash_once(
                Path(directory),
                loop=loop,
                durability=durability,
                kill_after=kill_after,
                writers=writers,
            )
        if run.returncode != -9:
            raise SystemExit(f"run {n}: the writer exited by itself:\n{run.stderr}")
        problems = run.problems()
        if durability == "committed" and run.lost:
            problems.append(f"{len(run.lost)} acknowledged messages lost, e.g. {run.lost[:3]}")
        if problems:
            print(f"  FAIL {loop} {durability} run {n} (kill after {kill_after}): {problems}")
        results.append(run)
    return results


def report(loop: str, durability: str, runs: list[CrashRun]) -> None:
    acked = sum(len(r.acked) for r in runs)
    lost = [len(r.lost) for r in runs]
    broken = sum(1 for r in runs if r.problems())
    rates = [r.acked_at_kill / r.write_seconds for r in runs if r.write_seconds > 0]
    print(
        f"{loop:<8} {durability:<10} {len(runs):>5} {acked:>10,} {sum(lost):>8,} "
        f"{broken:>7} {statistics.median(rates):>10,.0f}"
    )


def loss_window(loop: str, runs: list[CrashRun]) -> None:
    lost = [len(r.lost) for r in runs]
    window_ms = [
        len(r.lost) / (r.acked_at_kill / r.write_seconds) * 1e3 for r in runs if r.write_seconds > 0
    ]
    print(
        f"{loop:<8} {len(runs):>5} {statistics.median(lost):>8,.0f} {quantile(lost, 0.9):>8,.0f}"
        f" {max(lost):>8,} {statistics.median(window_ms):>9.0f} {quantile(window_ms, 0.9):>9.0f}"
        f" {max(window_ms):>9.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--committed-runs", type=int, default=100, help="kills per loop")
    parser.add_argument("--buffered-runs", type=int, default=30, help="kills per loop")
    parser.add_argument("--loops", default="asyncio,trio")
    parser.add_argument("--writers", type=int, default=32, help="concurrent sessions")
    parser.add_argument("--seed", type=int, default=random.randrange(2**32))
    args = parser.parse_args()
    loops = args.loops.split(",")
    print(f"seed {args.seed}, {args.writers} concurrent writers, SQLite WAL synchronous=FULL")

    results: dict[tuple[str, str], list[CrashRun]] = {}
    for loop in loops:
        # committed: kills from the first commits on; buffered: once writing is steady.
        results[loop, "committed"] = anyio.run(
            soak,
            loop,
            "committed",
            args.committed_runs,
            (50, 5_000),
            args.writers,
            args.seed,
            backend=loop,
        )
        results[loop, "buffered"] = anyio.run(
            soak,
            loop,
            "buffered",
            args.buffered_runs,
            (5_000, 60_000),
            args.writers,
            args.seed,
            backend=loop,
        )

    print()
    print(
        f"{'loop':<8} {'mode':<10} {'runs':>5} {'acked':>10} {'lost':>8} {'broken':>7} "
        f"{'acks/s':>10}"
    )
    for (loop, durability), runs in results.items():
        report(loop, durability, runs)
    print()
    print("buffered loss window at SIGKILL (acknowledged, not stored)")
    print(
        f"{'loop':<8} {'runs':>5} {'p50 msg':>8} {'p90 msg':>8} {'max msg':>8} "
        f"{'p50 ms':>9} {'p90 ms':>9} {'max ms':>9}"
    )
    for loop in loops:
        loss_window(loop, results[loop, "buffered"])
    failed = any(
        r.problems() or (durability == "committed" and r.lost)
        for (_, durability), runs in results.items()
        for r in runs
    )
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
