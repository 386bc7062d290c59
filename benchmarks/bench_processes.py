"""Agent turns with 1, 2 and 4 OS processes on one store: langswarm memory and the Agents SDK.

    python benchmarks/bench_processes.py [--sessions 100] [--duration 10] [--procs 1,2,4]
        [--baseline /path/to/older/checkout] [--json FILE]

Each run starts N worker processes (``_procs_child.py``) on one store: one SQLite file, or
one redis-server started here on a free port (no persistence). Each worker drives
``--sessions`` sessions as asyncio tasks, each a closed loop of agent turns (add the user
message, read the context, add the assistant message) for ``--duration`` seconds, after it
set them up and did one turn on each; the parent hands all workers one start time. Targets:
langswarm memory (``committed``; ``get_conversation_context``) and the Agents SDK's
``SQLiteSession`` / ``RedisSession`` (``get_items``, the whole history, as its Runner reads).
Modes: ``distinct`` sessions per process, or ``shared`` (all processes on the same ones; a
fresh process then reads them back: every acknowledged message stored once, in order). With
one process both modes are the same workload, so their gap shows the machine's noise.
``--baseline PATH`` also runs one-process langswarm with ``PYTHONPATH=PATH`` (an older
checkout). Reported: turns/s (sum), add latency p50/p99 (pooled), CPU cores used by the
workers, by redis-server and by the rest of the host. Never asserts a time. More:
docs/benchmarks-processes.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from statistics import mean
from typing import Any

from _redis_server import start_server

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_procs_child.py")
TICK = os.sysconf("SC_CLK_TCK")
#: Seconds between handing out the start time and the start (to read it and get going).
START_MARGIN = 0.5
READY_TIMEOUT = 300.0


@dataclass(frozen=True)
class Case:
    library: str  # "langswarm" or "agents"
    store: str
    mode: str
    procs: int
    baseline: bool = False

    @property
    def label(self) -> str:
        if self.library == "agents":
            return "SDK SQLiteSession" if self.store == "sqlite" else "SDK RedisSession"
        return "langswarm baseline" if self.baseline else "langswarm memory"


@dataclass
class Check:
    """A shared run read back: each acknowledged message stored exactly once, in order."""

    acked: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    unacked_stored: int = 0  # stored although the call raised (not a loss)
    out_of_order: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order)


@dataclass
class Result:
    case: Case
    turns_per_s: float
    adds: int
    add_p50_ms: float
    add_p99_ms: float
    errors: dict[str, int]
    cpu_procs: float  # cores
    cpu_redis: float | None
    cpu_other: float  # the rest of the machine's busy cores
    cpu_ms_per_turn: float  # workers and redis-server: steadier than turns/s on a busy host
    module: str
    check: Check | None = None


# -- one run ----------------------------------------------------------------------------------


def child_command(
    case: Case, args: argparse.Namespace, role: str, target: str, proc: int
) -> list[str]:
    options = {
        "library": case.library, "store": case.store, "target": target, "mode": case.mode,
        "proc": proc, "sessions": args.sessions, "duration": args.duration,
        "context-tokens": args.context_tokens, "message-chars": args.message_chars,
        "seed": args.seed,
    }  # fmt: skip
    return [sys.executable, CHILD, role, *(f"--{k}={v}" for k, v in options.items())]


def child_env(case: Case, args: argparse.Namespace) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return {**env, "PYTHONPATH": args.baseline} if case.baseline else env


def read_line(child: subprocess.Popen[str], deadline: float) -> str:
    """One line from a child's stdout, or SystemExit if it dies or stays silent."""
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], max(0.0, deadline - time.monotonic()))
    line = child.stdout.readline() if ready else ""
    if not line:
        child.kill()
        raise SystemExit(f"a worker did not report ready (exit {child.wait()})")
    return line


def cpu_sample(redis_pid: int) -> tuple[float, float]:
    """Busy CPU seconds so far of the machine and of redis-server, from /proc."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    with open(f"/proc/{redis_pid}/stat") as f:
        stat = f.read().rsplit(")", 1)[1].split()
    machine = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    return machine / TICK, (int(stat[11]) + int(stat[12])) / TICK  # utime + stime


def run_workers(
    case: Case, args: argparse.Namespace, target: str, redis_pid: int, logs: str
) -> tuple[list[dict[str, Any]], str, tuple[float, float]]:
    """Start, synchronise and collect the workers; the CPU deltas over the window."""
    children: list[subprocess.Popen[str]] = []
    try:
        for proc in range(case.procs):
            with open(os.path.join(logs, f"worker-{proc}.err"), "w") as err:
                children.append(subprocess.Popen(
                    child_command(case, args, "work", target, proc), env=child_env(case, args),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                ))  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT
        modules = {json.loads(read_line(c, deadline))["module"] for c in children}
        start_at = time.time() + START_MARGIN
        for child in children:
            assert child.stdin is not None
            child.stdin.write(f"{start_at!r}\n")
            child.stdin.flush()
        time.sleep(max(0.0, start_at - time.time()))
        before = cpu_sample(redis_pid)
        time.sleep(args.duration)
        after = cpu_sample(redis_pid)
        outputs = [collect(child, args, logs, proc) for proc, child in enumerate(children)]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    cpu = (after[0] - before[0], after[1] - before[1])
    return outputs, ", ".join(sorted(modules)), cpu


def collect(
    child: subprocess.Popen[str], args: argparse.Namespace, logs: str, proc: int
) -> dict[str, Any]:
    """A worker's result line, or SystemExit with the end of its stderr."""
    out, _ = child.communicate(timeout=args.duration + READY_TIMEOUT)
    if child.returncode == 0 and out.strip():
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result
    with open(os.path.join(logs, f"worker-{proc}.err")) as f:
        tail = f.read()[-2_000:]
    raise SystemExit(f"worker {proc} failed (exit {child.returncode}):\n{tail}")


def percentile(ordered: list[int], p: float) -> float:
    """The ``p`` percentile of sorted microseconds, in milliseconds."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] / 1000


def summarise(
    case: Case,
    args: argparse.Namespace,
    outputs: list[dict[str, Any]],
    module: str,
    cpu: tuple[float, float],
    redis: bool,
) -> Result:
    samples = sorted(us for out in outputs for us in out["add_us"])
    errors: Counter[str] = Counter()
    for out in outputs:
        errors.update(out["errors"])
    procs_cpu = sum(out["cpu_s"] for out in outputs) / args.duration
    machine, redis_cpu = cpu[0] / args.duration, cpu[1] / args.duration
    turns_per_s = sum(out["turns"] / out["elapsed_s"] for out in outputs)
    used = procs_cpu + (redis_cpu if redis else 0.0)
    return Result(
        case=case,
        turns_per_s=turns_per_s,
        adds=len(samples),
        add_p50_ms=percentile(samples, 50),
        add_p99_ms=percentile(samples, 99),
        errors=dict(errors),
        cpu_procs=procs_cpu,
        cpu_redis=redis_cpu if redis else None,
        cpu_other=max(0.0, machine - procs_cpu - redis_cpu),
        cpu_ms_per_turn=1_000 * used / turns_per_s if turns_per_s else 0.0,
        module=module,
    )


def check_store(
    case: Case, args: argparse.Namespace, target: str, outputs: list[dict[str, Any]], scratch: str
) -> Check:
    """Have a fresh process read every shared session back and compare it with the acks."""
    acked: dict[str, list[str]] = {}
    for out in outputs:
        for sid, tags in out["acked"].items():
            acked.setdefault(sid, []).extend(tags)
    path = os.path.join(scratch, "acked.json")
    with open(path, "w") as f:
        json.dump(acked, f)
    verify = subprocess.run(
        [*child_command(case, args, "verify", target, 0), "--acked", path],
        capture_output=True,
        text=True,
        env=child_env(case, args),
        check=True,
    )
    return Check(**json.loads(verify.stdout.strip().splitlines()[-1])["check"])


def run_case(
    case: Case, args: argparse.Namespace, scratch: str, redis_url: str, redis_pid: int
) -> Result:
    if case.store == "sqlite":
        target = os.path.join(scratch, f"{case.library}-{case.mode}-{case.procs}.db")
    else:
        target = redis_url
    try:
        outputs, module, cpu = run_workers(case, args, target, redis_pid, scratch)
        result = summarise(case, args, outputs, module, cpu, case.store == "redis")
        if case.mode == "shared":
            result.check = check_store(case, args, target, outputs, scratch)
    finally:
        if case.store == "redis":
            flushall(redis_url)
        else:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(target + suffix):
                    os.remove(target + suffix)
    return result


def flushall(url: str) -> None:
    import redis

    with redis.Redis.from_url(url) as client:
        client.flushall()


# -- the plan and the report --------------------------------------------------------------------


def plan(args: argparse.Namespace) -> list[Case]:
    """Every run, the two libraries side by side at each process count."""
    cases = []
    for store in args.stores:
        for mode in args.modes:
            for procs in args.procs:
                cases.append(Case("langswarm", store, mode, procs))
                if args.baseline and procs == 1:
                    cases.append(Case("langswarm", store, mode, procs, baseline=True))
                cases.append(Case("agents", store, mode, procs))
    return cases


def find(results: list[Result], **match: Any) -> Result | None:
    for result in results:
        if all(getattr(result.case, key) == value for key, value in match.items()):
            return result
    return None


def ratios(results: list[Result], args: argparse.Namespace) -> list[str]:
    lines = ["scaling, turns/s at N processes over 1 process:"]
    for r in results:
        if r.case.procs == 1:
            one, steps = r, []
            for n in args.procs[1:]:
                other = find(results, **{**dataclasses.asdict(r.case), "procs": n})
                if other is not None and one.turns_per_s:
                    steps.append(f"{n}/1 {other.turns_per_s / one.turns_per_s:.2f}x")
            if steps:
                lines.append(
                    f"  {r.case.store:<7}{r.case.mode:<9}{r.case.label:<20}" + ", ".join(steps)
                )
    lines.append("langswarm / SDK at each count: turns/s ours over theirs; p99 theirs over ours:")
    for r in results:
        if r.case.library == "langswarm" and not r.case.baseline:
            sdk = find(
                results, library="agents", store=r.case.store, mode=r.case.mode, procs=r.case.procs
            )
            if sdk is not None and sdk.turns_per_s and r.add_p99_ms:
                lines.append(
                    f"  {r.case.store:<7}{r.case.mode:<9}{r.case.procs} proc: turns/s "
                    f"{r.turns_per_s / sdk.turns_per_s:.2f}x, add p99 {sdk.add_p99_ms / r.add_p99_ms:.2f}x"
                )
    return lines + before_after(results) + noise(results)


def before_after(results: list[Result]) -> list[str]:
    lines = []
    for store in ("sqlite", "redis"):
        ones = [r for r in results if r.case.store == store and r.case.procs == 1]
        now = [r for r in ones if r.case.library == "langswarm" and not r.case.baseline]
        base = [r for r in ones if r.case.baseline]
        if now and base:
            a, b = mean(r.turns_per_s for r in now), mean(r.turns_per_s for r in base)
            ca, cb = mean(r.cpu_ms_per_turn for r in now), mean(r.cpu_ms_per_turn for r in base)
            lines.append(
                f"  {store:<7}mean of {len(now)} runs each: {a:,.0f} now vs {b:,.0f} baseline "
                f"turns/s {100 * (a / b - 1):+.1f}% (target: no worse than -15%); CPU per turn "
                f"{ca:.3f} vs {cb:.3f} ms {100 * (ca / cb - 1):+.1f}%"
            )
    return ["before/after, one process, langswarm:", *lines] if lines else []


def noise(results: list[Result]) -> list[str]:
    lines = ["noise, the two one-process runs of each target (same workload, run apart):"]
    for r in results:
        if r.case.procs == 1 and r.case.mode == "distinct":
            twin = find(results, **{**dataclasses.asdict(r.case), "mode": "shared"})
            if twin is not None and r.turns_per_s:
                lines.append(
                    f"  {r.case.store:<7}{r.case.label:<20}{r.turns_per_s:>9,.0f} vs "
                    f"{twin.turns_per_s:>9,.0f} turns/s ({100 * (twin.turns_per_s / r.turns_per_s - 1):+.1f}%)"
                )
    return lines if len(lines) > 1 else []


def table(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        f"agent turns with N processes on one store: {args.sessions} sessions per process, "
        f"{args.duration:g} s per run, {args.message_chars}-char messages, committed writes, "
        f"asyncio, {os.cpu_count()} CPUs; CPU procs/redis/other in cores over the measured window",
        "",
        f"{'store':<7}{'mode':<9}{'procs':>5}  {'target':<20}{'turns/s':>9}{'add p50 ms':>11}"
        f"{'add p99 ms':>11}{'errors':>8}{'CPU procs':>10}{'CPU redis':>10}{'CPU other':>10}"
        f"{'CPU ms/turn':>12}",
    ]
    lines.append("-" * len(lines[-1]))
    for r in results:
        redis = "-" if r.cpu_redis is None else f"{r.cpu_redis:.2f}"
        lines.append(
            f"{r.case.store:<7}{r.case.mode:<9}{r.case.procs:>5}  {r.case.label:<20}"
            f"{r.turns_per_s:>9,.0f}{r.add_p50_ms:>11.2f}{r.add_p99_ms:>11.2f}"
            f"{sum(r.errors.values()):>8,}{r.cpu_procs:>10.2f}{redis:>10}{r.cpu_other:>10.2f}"
            f"{r.cpu_ms_per_turn:>12.3f}"
        )
    lines += ["", *ratios(results, args), "", *checks(results)]
    for r in results:
        for error, count in Counter(r.errors).most_common(3):
            lines.append(
                f"  {r.case.label} {r.case.store} {r.case.mode} x{r.case.procs}: {count:,} x {error}"
            )
    return "\n".join(lines)


def checks(results: list[Result]) -> list[str]:
    lines = [
        "shared sessions read back by a fresh process (acknowledged messages stored once, in order):",
        f"  {'store':<7}{'procs':>5}  {'target':<20}{'acked':>9}{'stored':>9}{'lost':>7}"
        f"{'dup':>7}{'unacked':>9}{'order':>7}  verdict",
    ]
    for r in results:
        c = r.check
        if c is not None:
            lines.append(
                f"  {r.case.store:<7}{r.case.procs:>5}  {r.case.label:<20}{c.acked:>9,}{c.stored:>9,}"
                f"{c.lost:>7,}{c.duplicated:>7,}{c.unacked_stored:>9,}{c.out_of_order:>7,}  "
                + ("ok" if c.ok else "FAILED")
            )
    return lines if len(lines) > 2 else []


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100, help="sessions per process")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--procs", default="1,2,4", help="process counts, 1 first")
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--modes", default="distinct,shared")
    parser.add_argument("--context-tokens", type=int, default=4_000)
    parser.add_argument("--message-chars", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline", metavar="PATH", help="older checkout run as PYTHONPATH")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    args.procs = [int(n) for n in args.procs.split(",")]
    args.stores, args.modes = args.stores.split(","), args.modes.split(",")
    if args.procs[0] != 1:
        parser.error("--procs must start with 1 (ratios are taken against it)")
    if args.baseline:
        args.baseline = os.path.abspath(args.baseline)
        if not os.path.isfile(os.path.join(args.baseline, "langswarm/core/memory/__init__.py")):
            parser.error(f"{args.baseline} holds no langswarm/core/memory package")
    return args


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop our redis-server
    args = arguments()
    scratch = tempfile.mkdtemp(prefix="bench-procs-")
    server, url = start_server(scratch)
    results: list[Result] = []
    try:
        for case in plan(args):
            note = f"running {case.label} on {case.store}, {case.mode}, {case.procs} proc ..."
            print(note, file=sys.stderr, flush=True)
            results.append(run_case(case, args, scratch, url, server.pid))
            if case.baseline and args.baseline not in results[-1].module:
                raise SystemExit(f"the baseline run imported {results[-1].module}")
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(scratch, ignore_errors=True)
    report = table(results, args)
    print(report)
    if args.json:
        with open(args.json, "w") as f:
            rows = [dataclasses.asdict(r) for r in results]
            payload = {"config": vars(args), "runs": rows, "report": report.splitlines()}
            json.dump(payload, f, indent=2)


if __name__ == "__main__":
    main()
