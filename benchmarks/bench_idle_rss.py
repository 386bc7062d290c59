"""Resident memory per idle live session, on every backend, optionally against another tree.

    python benchmarks/bench_idle_rss.py [--sessions 20000] [--messages 0] [--before PATH]

Each measurement runs in a fresh process: open a manager, create ``--sessions`` sessions
(each with ``--messages`` short messages), wait until everything is stored, collect garbage,
and divide the growth of the resident set by the number of sessions. The sessions stay live
(idle, not passivated) and their handles are held, as a server holding them would.
With ``--before PATH`` the same measurement also runs against the package found at PATH (a
checkout of an earlier commit), side by side. Redis rows start a throwaway redis-server.
Prints a table; never asserts a size.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BACKENDS = ("memory", "sqlite", "redis")


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(backend: str, sessions: int, messages: int, target: str) -> float:
    """KiB of resident memory per live session (runs inside the child process)."""
    import anyio

    from langswarm.core.memory import MemoryManager, create_openai_message

    config: dict[str, object] = {"backend": backend, "idle_timeout": 10**6}
    if backend == "sqlite":
        config["config"] = {"db_path": target}
    elif backend == "redis":
        config["config"] = {"url": target}

    async def main() -> float:
        async with MemoryManager.from_config(memory=config) as memory:
            warm = await memory.create_session("warm-up")
            await warm.add_message(create_openai_message("user", "warm up"))
            await memory.backend.list_sessions(limit=1)
            gc.collect()
            before = _rss_kib()
            held = []
            for i in range(sessions):
                session = await memory.create_session(f"user{i % 100}")
                for k in range(messages):
                    await session.add_message(create_openai_message("user", f"message {k}"))
                held.append(session)
            await memory.backend.list_sessions(limit=1)  # everything stored
            gc.collect()
            grown = _rss_kib() - before
            stats = await memory.get_system_stats()
            assert stats["live_sessions"] >= sessions, stats
            return grown / sessions

    return anyio.run(main)


def run_child(tree: Path | None, backend: str, sessions: int, messages: int) -> float:
    """Measure in a fresh interpreter, importing the package from ``tree`` if given."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    with tempfile.TemporaryDirectory() as scratch:
        target = os.path.join(scratch, "memory.db")
        server = None
        if backend == "redis":
            sys.path.insert(0, str(HERE))
            from _redis_server import start_server

            server, target = start_server(scratch)
        try:
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    backend,
                    str(sessions),
                    str(messages),
                    target,
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                cwd=scratch,
            )
        finally:
            if server is not None:
                server.kill()
                server.wait()
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        backend, sessions, messages, target = sys.argv[2:6]
        print(json.dumps(measure(backend, int(sessions), int(messages), target)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--messages", type=int, default=0, help="messages per session")
    parser.add_argument("--before", type=Path, help="an earlier checkout to compare against")
    args = parser.parse_args()
    print(f"{args.sessions:,} idle live sessions, {args.messages} messages each: KiB of RSS each")
    header = f"{'backend':8} {'this tree':>10}"
    if args.before:
        header += f" {'before':>10} {'ratio':>7}"
    print(header)
    for backend in BACKENDS:
        now = run_child(None, backend, args.sessions, args.messages)
        line = f"{backend:8} {now:10.2f}"
        if args.before:
            then = run_child(args.before, backend, args.sessions, args.messages)
            line += f" {then:10.2f} {now / then:7.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
