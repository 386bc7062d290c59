"""Where an agent-turn load spends its time: CPU per thread, and the event loop's profile.

    .venv/bin/python benchmarks/profile_turns.py [--backend sqlite] [--durability committed]
        [--sessions 1000] [--concurrency 16] [--duration 5] [--loop asyncio] [--top 12]

Runs the load benchmark's agent-turn workload twice: once plainly, for the throughput and
latency figures, and once with ``cProfile`` on the event loop's thread. It prints

* the plain run's turns/s and turn latency percentiles;
* CPU seconds per thread during the plain run (the event loop, the storage driver threads,
  the token-counting thread), as a share of the run's wall time: with CPython's GIL, the
  sum of the Python parts is what bounds throughput on any number of cores;
* the event loop's own time split by where the code lives (this library, the benchmark's
  driver, the event loop machinery, tiktoken), then its most expensive functions.

``--backend memory --durability committed`` shows what the runtime costs with storage
taken out. Never asserts a time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import threading
import time
from collections import defaultdict
from typing import Any

import psutil

from langswarm.core.memory._bench import Workload, run

GROUPS = (
    ("langswarm/core/memory/_bench", "benchmark driver"),
    ("langswarm/core/memory", "langswarm runtime"),
    ("tiktoken", "tiktoken"),
    ("anyio", "event loop machinery"),
    ("asyncio", "event loop machinery"),
    ("trio", "event loop machinery"),
    ("sniffio", "event loop machinery"),
    ("hdrh", "benchmark driver"),
)


def thread_cpu() -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}


def thread_names() -> dict[int, str]:
    return {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}


def group_of(filename: str, function: str) -> str:
    if "select.epoll" in function or "select.select" in function:
        return "idle (waiting in epoll)"
    if filename.startswith("~") or filename.startswith("<"):
        return "C calls (builtins, extensions)"
    for marker, group in GROUPS:
        if marker in filename:
            return group
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="sqlite", choices=("memory", "sqlite", "redis"))
    parser.add_argument("--durability", default="committed", choices=("committed", "buffered"))
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--loop", default="asyncio", choices=("asyncio", "trio"))
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    workload = Workload(
        backend=args.backend,
        durability=args.durability,
        sessions=args.sessions,
        concurrency=args.concurrency,
        duration=args.duration,
        loop=args.loop,
    )

    # Threads come and go with the run: their names and CPU times are sampled while it runs.
    names: dict[int, str] = {threading.main_thread().native_id or 0: "event loop (main)"}
    latest: dict[int, float] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            for tid, name in thread_names().items():
                names.setdefault(tid, name)
            latest.update(thread_cpu())

    watcher = threading.Thread(target=watch, name="profile-watcher", daemon=True)
    watcher.start()
    before = thread_cpu()
    started = time.perf_counter()
    result = run(workload)
    wall = time.perf_counter() - started
    stop.set()
    watcher.join()
    after = {**latest, **thread_cpu()}

    p = {q: result.histograms["turn"].get_value_at_percentile(q) / 1e3 for q in (50, 99)}
    print(
        f"{args.backend} ({result.durability}) on {args.loop}, {args.sessions:,} sessions, "
        f"concurrency {args.concurrency}: {result.turns_per_s:,.0f} turns/s, "
        f"{result.messages_per_s:,.0f} messages/s, turn p50 {p[50]:.2f} ms, p99 {p[99]:.2f} ms"
    )
    print(f"\nCPU per thread over the whole run ({wall:.1f} s wall, setup and drain included;")
    print("threads are sampled every 50 ms, so one that ends between samples loses its last one)")
    rows = []
    for tid, cpu in after.items():
        used = cpu - before.get(tid, 0.0)
        if used >= 0.01 and names.get(tid) != "profile-watcher":
            rows.append((used, names.get(tid, f"thread {tid}")))
    for used, name in sorted(rows, reverse=True):
        print(f"  {name:<36} {used:7.2f} s  {used / wall:6.1%} of wall")

    profile = cProfile.Profile()
    profile.enable()
    run(workload)
    profile.disable()
    stats = pstats.Stats(profile)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_group: dict[str, float] = defaultdict(float)
    for (filename, _, function), (_, _, tottime, _, _) in raw.items():
        by_group[group_of(filename, function)] += tottime
    total = sum(by_group.values())
    print("\nEvent loop thread under cProfile (which inflates Python calls), by where code lives")
    for group, seconds in sorted(by_group.items(), key=lambda item: -item[1]):
        print(f"  {group:<36} {seconds:7.2f} s  {seconds / total:6.1%}")
    print(f"\nTop {args.top} functions by own time")
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
