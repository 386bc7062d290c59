"""Several OS processes share one store; a checker judges everything they saw (DESIGN.md §12).

Each test starts real worker processes (``tests/history/worker.py``) on one SQLite file, one
redis-server or a 3-master Redis Cluster, under asyncio or trio, in ``committed`` mode. The
workers start together (each says ``ready`` and waits for ``go``), run random calls on three
shared sessions for a few seconds and log every call. The test then reads every session
afresh and hands the logs and that final state to ``checker.check_history``; any violation
fails the test with the checker's report. The checker's own rules are tested first, on
small histories written by hand: each rule fires on a history that breaks it, and none fires
on one full of lawful concurrency.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.history import checker
from tests.history.worker import load_history, read_final_state

ROOT = Path(__file__).resolve().parents[2]
SESSIONS = ["s0", "s1", "s2"]
USERS = ["u0", "u1"]
DURATION = 1.5  # seconds of calls per worker
SEED = int(os.environ.get("LANGSWARM_HISTORY_SEED", "1"))
KILL_AFTER = 40  # the victim is SIGKILLed just after it begins this many calls
LOOPS = ["asyncio", "trio"]


def call(
    op: str, inv: int, end: int | None, *, user: str = "u0", task: int = 0, **extra: Any
) -> checker.Op:
    """A hand-written call on session s0; ``end=None``: its process died during it."""
    error = extra.pop("error", None)
    args = {"ids": extra.pop("ids")} if op in checker.WRITES else {}
    result = {"ids": extra.pop("seen")} if op in ("read", "context") else {}
    if op == "metadata":
        args = {"key": extra["key"], "value": extra["value"]}
        result = {"metadata": {extra["key"]: extra["value"]}}
    if op == "open":
        result = {"owner": extra.pop("owner", user)}
    return checker.Op(
        op_id=f"{op}@{inv}t{task}",
        process=0,
        task=task,
        seq=inv,
        op=op,
        session="s0",
        user=user,
        args=args,
        inv=inv,
        end=checker.INF if end is None else end,
        ok=None if end is None else error is None,
        result=result,
        error=error,
        ours=extra.get("ours", True),
    )


def final(
    ids: list[str], owner: str = "u0", status: str = "active", bad: list[str] | None = None
) -> dict[str, checker.FinalSession | None]:
    return {"s0": checker.FinalSession(owner, status, {}, ids, bad or [])}


def test_checker_accepts_lawful_concurrency() -> None:
    """Overlapping calls in either order, deletes that may excuse a loss, a re-create by
    another user, suffix windows, a call cut short by SIGKILL, refusals: no violation."""
    ops = [
        call("open", 0, 1),
        call("add_one", 2, 3, ids=["m1"]),
        call("add_one", 4, 10, ids=["m2"], task=1),
        call("read", 5, 6, seen=["m1"]),  # m2 was not acknowledged yet
        call("context", 11, 12, seen=["m2"]),  # m1 is older than m2
        call("metadata", 13, 14, key="k_p0t0", value=1),
        call("read", 15, 16, seen=["m1", "m2"]),
        call("delete", 20, 30),
        call("add_one", 25, 26, ids=["m3"]),  # acknowledged, but the delete may follow it
        call("open", 31, 32, user="u1"),
        call("add_one", 33, 34, ids=["m4"], user="u1", task=1),
        call("add_many", 35, 36, ids=["m5", "m6"], user="u1", task=1),
        call("read", 37, 38, seen=["m4", "m5", "m6"], user="u1"),
        call("context", 39, 40, seen=["m5", "m6"], user="u1"),
        call("add_one", 41, None, ids=["m7"], user="u1", task=2),
        call("read", 42, 43, seen=[], error="SessionNotFoundError"),
        call("archive", 44, 45, user="u1"),
        call("add_one", 46, 47, ids=["m8"], user="u1", error="MemoryValidationError"),
    ]
    violations = checker.check_history(ops, final(["m4", "m5", "m6"], "u1", "archived"))
    assert not violations, checker.format_report(violations, ops)


OPEN = call("open", 0, 1)
ADD = call("add_one", 2, 3, ids=["m1"])
BROKEN: dict[str, tuple[list[checker.Op], dict[str, checker.FinalSession | None]]] = {
    "lost-write": ([OPEN, ADD], final([])),
    "duplicate": ([OPEN, ADD], final(["m1", "m1"])),
    "content": ([OPEN, ADD], final(["m1"], bad=["m1"])),
    "phantom": ([OPEN, call("add_one", 2, 3, ids=["m1"], error="SessionNotFoundError")],
                final(["m1"])),
    "foreign-message": ([OPEN, call("add_one", 2, 3, ids=["m1"], user="u1")], final(["m1"])),
    "writer-order": ([OPEN, ADD, call("add_one", 4, 5, ids=["m2"])], final(["m2", "m1"])),
    "read-order": ([OPEN, ADD, call("add_one", 2, 3, ids=["m2"], task=1),
                    call("read", 4, 5, seen=["m2", "m1"])], final(["m1", "m2"])),
    "stale-read": ([OPEN, ADD, call("read", 4, 5, seen=[])], final(["m1"])),
    "stale-context": ([OPEN, ADD, call("add_one", 4, 5, ids=["m2"]),
                       call("context", 6, 7, seen=["m1"])], final(["m1", "m2"])),
    "lost-metadata": ([OPEN, call("metadata", 2, 3, key="k", value=1)], final([])),
    "archive-ignored": ([OPEN, call("archive", 2, 3), call("add_one", 4, 5, ids=["m1"])],
                        final(["m1"], status="archived")),
    "archive-undone": ([OPEN, call("archive", 2, 3)], final([])),
    "delete-ignored": ([OPEN, ADD, call("delete", 4, 5), call("read", 6, 7, seen=["m1"])],
                       {"s0": None}),
    "resurrected": ([OPEN, call("delete", 2, 3)], final([])),
    "spurious-not-found": ([OPEN, call("read", 2, 3, seen=[], error="SessionNotFoundError")],
                           final([])),
    "two-owners": ([OPEN, call("open", 2, 3, user="u1")], final([])),
    "ownership": ([call("open", 0, 1, owner="u1")], final([], "u1")),
    "final-owner": ([OPEN], final([], owner="u1")),
    "unexpected-error": ([OPEN, call("read", 2, 3, seen=[], error="KeyError", ours=False)],
                         final([])),
}  # fmt: skip


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_checker_catches(rule: str) -> None:
    """Each rule fires on a small history that breaks it."""
    ops, state = BROKEN[rule]
    assert rule in {v.rule for v in checker.check_history(ops, state)}


def test_log_of_a_killed_worker_reads_back(tmp_path: Path) -> None:
    """A call with no completion line is unknown; a torn last line is skipped."""
    base = '"process":0,"task":0,"op":"read","session":"s0","user":"u0","args":{}'
    (tmp_path / "w.jsonl").write_text(
        f'{{"kind":"invoke","op_id":"a","seq":1,{base},"t":5}}\n'
        '{"kind":"complete","op_id":"a","t":9,"ok":true,"result":{"ids":[]}}\n'
        f'{{"kind":"invoke","op_id":"b","seq":2,{base},"t":10}}\n'
        '{"kind":"complete","op_id":"b","t"'
    )
    a, b = load_history([tmp_path / "w.jsonl"])
    assert (a.ok, a.end, b.ok, b.end) == (True, 9, None, checker.INF)


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL: a new SQLite file, a flushed redis-server, or a flushed cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(request.getfixturevalue("redis_cluster_url"))


@dataclass
class Outcome:
    """What a run left behind: the calls, the final state, and which process was killed."""

    ops: list[checker.Op]
    final: dict[str, checker.FinalSession | None]
    logs: list[Path]
    processes: int
    killed: int | None


def _start(
    store: str, loop: str, process: int, processes: int, tmp_path: Path
) -> subprocess.Popen[str]:
    """Start one worker. Archives and deletes get rarer as processes are added, so sessions
    live about as long (and hold as many acknowledged messages to lose) at any count."""
    command = [
        sys.executable, "-m", "tests.history.worker", "--store", store, "--loop", loop,
        "--seed", str(SEED), "--process-id", str(process), "--sessions", ",".join(SESSIONS),
        "--users", ",".join(USERS), "--duration", str(DURATION), "--durability", "committed",
        "--churn", str(1 / processes), "--log", str(tmp_path / f"worker{process}.jsonl"),
        "--wait-for-go",
    ]  # fmt: skip
    with open(tmp_path / f"worker{process}.err", "w") as err:
        return subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
        )


def _failure(tmp_path: Path, process: int, what: str) -> str:
    err = (tmp_path / f"worker{process}.err").read_text()
    return f"worker {process} {what}; stderr:\n{err[-3000:]}"


def _await_line(proc: subprocess.Popen[str], done: str | int, tmp_path: Path, n: int) -> None:
    """Read the worker's stdout until ``done`` (a line, or a progress count reached)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        word, _, count = line.strip().partition(" ")
        if line.strip() == done or (
            word == "progress" and isinstance(done, int) and int(count) >= done
        ):
            return
    proc.wait()
    pytest.fail(_failure(tmp_path, n, f"exited ({proc.returncode}) before printing {done!r}"))


def run_history(
    store: str, loop: str, processes: int, tmp_path: Path, *, kill: int | None = None
) -> Outcome:
    """Run ``processes`` workers together (SIGKILL worker ``kill`` mid-run), then read back."""
    procs = [_start(store, loop, n, processes, tmp_path) for n in range(processes)]
    try:
        for n, proc in enumerate(procs):
            _await_line(proc, "ready", tmp_path, n)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.close()
        if kill is not None:
            _await_line(procs[kill], KILL_AFTER, tmp_path, kill)
            procs[kill].send_signal(signal.SIGKILL)
        for n, proc in enumerate(procs):
            assert proc.stdout is not None
            proc.stdout.read()
            proc.wait(timeout=DURATION + 60)
            expected = -signal.SIGKILL if n == kill else 0
            assert proc.returncode == expected, _failure(tmp_path, n, f"exited {proc.returncode}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
    logs = [tmp_path / f"worker{n}.jsonl" for n in range(processes)]
    final = anyio.run(read_final_state, store, SESSIONS, backend=loop)
    return Outcome(load_history(logs), final, logs, processes, kill)


def assert_history_holds(outcome: Outcome) -> None:
    """The run did real work in every process, and the checker finds nothing wrong."""
    for process in range(outcome.processes):
        acked = Counter(o.op for o in outcome.ops if o.process == process and o.ok)
        least = KILL_AFTER // 4 if process == outcome.killed else 15
        assert acked["add_one"] and acked["read"] and acked.total() >= least, (
            f"process {process} did too little to judge: {dict(acked)}"
        )
    violations = checker.check_history(outcome.ops, outcome.final)
    report = checker.format_report(violations, outcome.ops)
    assert not violations, f"{report}\nlogs: {', '.join(map(str, outcome.logs))}"


@pytest.mark.parametrize("loop", LOOPS)
def test_one_process_history_holds(store: str, loop: str, tmp_path: Path) -> None:
    """One process (three concurrent tasks): the baseline, and the proof that the checker
    raises no false alarm on a runtime that is correct within one process."""
    assert_history_holds(run_history(store, loop, 1, tmp_path))


@pytest.mark.parametrize("processes", [2, 4])
@pytest.mark.parametrize("loop", LOOPS)
def test_many_processes_history_holds(
    store: str, loop: str, processes: int, tmp_path: Path
) -> None:
    """Two and four processes on shared sessions: every §12 property holds."""
    assert_history_holds(run_history(store, loop, processes, tmp_path))


@pytest.mark.parametrize("processes", [1, 3])
@pytest.mark.parametrize("loop", LOOPS)
def test_killed_process_loses_nothing_acknowledged(
    store: str, loop: str, processes: int, tmp_path: Path
) -> None:
    """One process is SIGKILLed mid-run: nothing it acknowledged is lost, nothing it left
    half-done breaks the others' history."""
    assert_history_holds(run_history(store, loop, processes, tmp_path, kill=0))
