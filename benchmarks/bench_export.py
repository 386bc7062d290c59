"""Export and import throughput of ``langswarm-memory`` on SQLite and Redis, against reading
(and writing) the same messages through LangChain's chat histories; peak memory of exports of
two sizes; and a SQLite -> Redis migration interrupted by SIGINT and resumed.

    python benchmarks/bench_export.py [--sessions 10000] [--messages 100]
        [--langchain-sessions 1000] [--keep DIR]

The source is an SQLite store of ``--sessions`` sessions of ``--messages`` messages (200
characters each, user and assistant in turn), written through the backend protocol. Each
``langswarm-memory`` step runs in a fresh process: messages/s are over the time the command
reports itself (its work, not interpreter start-up); CPU time and peak RSS come from
``wait4``. Copies are checked: every export of the same sessions must be identical byte for
byte, and so must the store a migration leaves after SIGINT and a second run. LangChain's
``SQLChatMessageHistory`` (one shared SQLAlchemy engine) and ``RedisChatMessageHistory``
(one shared client) hold the first ``--langchain-sessions`` sessions; reading them is
``history.messages`` per session. A throwaway redis-server (no persistence) serves Redis.
Prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _redis_server import start_server

from langswarm.core.memory._config import build, memory_from_url
from langswarm.core.memory.backends.base import SessionWrite
from langswarm.core.memory.interfaces import Message, MessageRole, SessionMetadata

CLI = [sys.executable, "-m", "langswarm.core.memory._cli"]
#: The command, reporting its peak resident set (VmHWM: this process's own, unlike wait4's
#: ru_maxrss, which Linux carries over from the parent across exec) as its last stderr line.
MEASURED = [
    sys.executable,
    "-c",
    "import atexit, re, sys\n"
    "def peak():\n"
    "    found = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())\n"
    "    print(f'peak-rss-kib {found[1]}', file=sys.stderr)\n"
    "atexit.register(peak)\n"
    "from langswarm.core.memory._cli import main\n"
    "sys.exit(main(sys.argv[1:]))",
]
PEAK = re.compile(r"peak-rss-kib (\d+)")
TEXT = ("The quick brown fox jumps over the lazy dog; " * 5)[:200]
REPORTED = re.compile(r" in ([\d.]+) s \(")


@dataclass
class Row:
    step: str
    messages: int
    seconds: float  # the work, as reported (or timed in this process)
    cpu: float | None = None  # user + system seconds of the process
    rss_mb: float | None = None  # its peak resident set
    note: str = ""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def said(sid: str, n: int, then: datetime, messages: int) -> list[Message]:
    roles = (MessageRole.USER, MessageRole.ASSISTANT)
    return [
        Message(
            roles[i % 2],
            f"{sid} {i} {TEXT}"[:200],
            timestamp=then + timedelta(milliseconds=i),
            message_id=f"{sid}-{i}",
            token_count=45,
        )
        for i in range(messages)
    ]


async def build_source(url: str, sessions: int, messages: int) -> None:
    backend = build(None, memory_from_url(url), {})[0]
    await backend.open()
    base = datetime(2025, 1, 1, tzinfo=UTC)
    try:
        batch: list[SessionWrite] = []
        for n in range(sessions):
            sid, then = f"s{n:06d}", base + timedelta(seconds=n)
            meta = SessionMetadata(sid, f"u{n % 100}", created_at=then, updated_at=then)
            batch.append(
                SessionWrite(sid, f"i{n}", create=meta, messages=said(sid, n, then, messages))
            )
            if len(batch) * messages >= 20_000 or n == sessions - 1:
                results = await backend.apply(batch)
                assert all(r.error is None for r in results)
                batch = []
    finally:
        await backend.close()


def run_cli(step: str, messages: int, *args: str) -> Row:
    """Run one command in a fresh process; its reported time, CPU time and peak RSS."""
    child = subprocess.Popen([*MEASURED, *args, "--no-progress"], stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{step} failed ({child.returncode}): {err}")
    found = REPORTED.search(err)
    assert found is not None, err
    outcome = re.search(
        r"\(([\d,]+ new, [\d,]+ updated, [\d,]+ already complete)\), ([\d,]+) messages", err
    )
    if outcome is not None and messages < 0:  # an import: count what it stored
        messages = int(outcome[2].replace(",", ""))
    note = "" if outcome is None else outcome[1]
    return Row(
        step,
        messages,
        float(found[1]),
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        note,
    )


def same(a: Path, b: Path) -> None:
    """Stop unless the files hold the same bytes (read a block at a time)."""
    with a.open("rb") as first, b.open("rb") as second:
        while True:
            block = first.read(1 << 20)
            if block != second.read(1 << 20):
                raise SystemExit(f"{a} and {b} differ")
            if not block:
                return


def interrupted_migration(src: str, dst: str, sessions: int) -> list[Row]:
    """Migrate, SIGINT once 40% of the sessions are read, migrate again to the end."""
    started = time.perf_counter()
    child = subprocess.Popen([*MEASURED, "migrate", src, dst], stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    read = 0
    for line in child.stderr:
        found = re.match(r"migrate: ([\d,]+)/[\d,]+ sessions, ([\d,]+) messages", line)
        if found and int(found[1].replace(",", "")) >= 0.4 * sessions:
            read = int(found[2].replace(",", ""))
            break
    os.kill(child.pid, signal.SIGINT)  # not send_signal: it would reap the child first
    rest = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, 130):
        raise SystemExit(f"the migration failed ({child.returncode}): {rest}")
    how = "interrupted: exit status 130" if child.returncode else "done before the signal"
    first = Row(
        "migrate sqlite -> redis, SIGINT at 40%",
        read,
        time.perf_counter() - started,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        how,
    )
    return [first, run_cli("migrate again: resumes", -1, "migrate", src, dst)]


def langchain_rows(sqlite_path: Path, redis_url: str, sessions: int, messages: int) -> list[Row]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import redis
        from langchain_community.chat_message_histories import (
            RedisChatMessageHistory,
            SQLChatMessageHistory,
        )
        from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
        from sqlalchemy import create_engine

    def converted(sid: str, n: int) -> list[BaseMessage]:
        kinds = (HumanMessage, AIMessage)
        return [
            kinds[i % 2](content=m.content)
            for i, m in enumerate(said(sid, n, datetime.now(UTC), messages))
        ]

    engine = create_engine(f"sqlite:///{sqlite_path}")
    client = redis.Redis.from_url(redis_url)
    rows = []
    for name, make in (
        ("SQLChatMessageHistory", lambda sid: SQLChatMessageHistory(sid, connection=engine)),
        (
            "RedisChatMessageHistory",
            lambda sid: _redis_history(RedisChatMessageHistory, sid, redis_url, client),
        ),
    ):
        histories = [make(f"s{n:06d}") for n in range(sessions)]
        started = time.perf_counter()
        for n, history in enumerate(histories):
            history.add_messages(converted(f"s{n:06d}", n))
        rows.append(
            Row(
                f"LangChain {name}: add_messages",
                sessions * messages,
                time.perf_counter() - started,
            )
        )
        started = time.perf_counter()
        read = sum(len(history.messages) for history in histories)
        rows.append(Row(f"LangChain {name}: .messages", read, time.perf_counter() - started))
        assert read == sessions * messages
    client.close()
    engine.dispose()
    return rows


def _redis_history(kind: type, sid: str, url: str, client: object) -> object:
    history = kind(sid, url=url)
    history.redis_client = client  # one client for all, as a server would hold
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=100, help="per session")
    parser.add_argument("--langchain-sessions", type=int, default=1_000)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    server, redis_url = start_server(str(work))
    base = redis_url.rsplit("/", 1)[0]
    try:
        rows = run(args, work, base)
    finally:
        server.terminate()
        server.wait()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print_table(rows, args)


def run(args: argparse.Namespace, work: Path, redis_base: str) -> list[Row]:
    sessions, per = args.sessions, args.messages
    total = sessions * per
    src, small = f"sqlite:///{work}/source.db", f"sqlite:///{work}/small.db"
    started = time.perf_counter()
    anyio.run(build_source, src, sessions, per)
    rows = [Row("build the source (backend.apply)", total, time.perf_counter() - started)]
    anyio.run(build_source, small, max(sessions // 10, 1), per)
    rows.append(
        run_cli(
            "export sqlite (1/10 of the sessions)",
            max(sessions // 10, 1) * per,
            "export",
            "-u",
            small,
            "-o",
            str(work / "small.jsonl"),
        )
    )
    rows.append(run_cli("export sqlite", total, "export", "-u", src, "-o", str(work / "a.jsonl")))
    rows.append(
        run_cli("import redis", -1, "import", "-u", f"{redis_base}/0", str(work / "a.jsonl"))
    )
    rows.append(
        run_cli(
            "export redis", total, "export", "-u", f"{redis_base}/0", "-o", str(work / "b.jsonl")
        )
    )
    same(work / "a.jsonl", work / "b.jsonl")
    copy = f"sqlite:///{work}/copy.db"
    rows.append(run_cli("import sqlite", -1, "import", "-u", copy, str(work / "b.jsonl")))
    rows.append(
        run_cli(
            "import redis again (stores nothing)",
            -1,
            "import",
            "-u",
            f"{redis_base}/0",
            str(work / "a.jsonl"),
        )
    )
    rows += interrupted_migration(src, f"{redis_base}/1", sessions)
    rows.append(
        run_cli(
            "export the migrated copy",
            total,
            "export",
            "-u",
            f"{redis_base}/1",
            "-o",
            str(work / "c.jsonl"),
        )
    )
    same(work / "a.jsonl", work / "c.jsonl")
    rows.append(
        run_cli("migrate sqlite -> redis, in one go", -1, "migrate", src, f"{redis_base}/2")
    )
    lc = min(args.langchain_sessions, sessions)
    rows += langchain_rows(work / "langchain.db", f"{redis_base}/3", lc, per)
    return rows


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    print(
        f"\n{args.sessions:,} sessions x {args.messages} messages; python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'step':<46}{'messages':>11}{'seconds':>9}{'msg/s':>10}{'CPU s':>8}{'peak RSS MB':>13}  note"
    )
    for r in rows:
        cpu = "" if r.cpu is None else f"{r.cpu:.1f}"
        rss = "" if r.rss_mb is None else f"{r.rss_mb:,.0f}"
        rate = f"{r.rate:,.0f}" if r.messages else ""
        print(
            f"{r.step:<46}{r.messages:>11,}{r.seconds:>9.1f}{rate:>10}{cpu:>8}{rss:>13}  {r.note}"
        )
    print("every export of the same sessions was identical, byte for byte")


if __name__ == "__main__":
    main()
