"""The load benchmark: workload generator, engine counts, report formats and the CLI.

Engine runs are small and on the in-memory backend; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import random
import re
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from langswarm.core.memory import create_openai_message
from langswarm.core.memory._bench import (
    BenchResult,
    Workload,
    WorkloadGenerator,
    format_table,
    run_workload,
    to_dict,
    write_json,
    write_plot,
)
from langswarm.core.memory._bench.engine import Snapshot, new_histogram, record_batch
from langswarm.core.memory._bench.progress import Progress
from langswarm.core.memory._bench.report import SCHEMA
from langswarm.core.memory._bench.workload import (
    ADD_ASSISTANT,
    ADD_TOOL_CALL,
    ADD_TOOL_RESULT,
    ADD_USER,
    GET_CONTEXT,
    GET_MESSAGES,
    Step,
)
from langswarm.core.memory._cli import build_parser, main

pytestmark = pytest.mark.anyio


def steps(workload: Workload, session: int, n: int) -> list[Step]:
    return list(itertools.islice(WorkloadGenerator(workload).plan(session), n))


def until_turns(workload: Workload, session: int, turns: int) -> list[Step]:
    """The steps session ``session`` runs to complete ``turns`` turns."""
    done: list[Step] = []
    for step in WorkloadGenerator(workload).plan(session):
        done.append(step)
        if sum(s.kind == "turn" for s in done) == turns:
            return done
    raise AssertionError("unreachable")


# -- workload generator -------------------------------------------------------------------

MIXED = Workload(sessions=50, tool_calls=0.25, read_ratio=0.3, think_ms=20, seed=7)


def test_same_seed_same_steps() -> None:
    for session in (0, 1, 49):
        assert steps(MIXED, session, 300) == steps(MIXED, session, 300)


def test_session_stream_does_not_depend_on_other_sessions() -> None:
    generator = WorkloadGenerator(MIXED)
    first = list(itertools.islice(generator.plan(5), 50))
    list(itertools.islice(generator.plan(4), 500))
    assert list(itertools.islice(generator.plan(5), 50)) == first


def test_other_seed_or_session_other_steps() -> None:
    other = Workload(sessions=50, tool_calls=0.25, read_ratio=0.3, think_ms=20, seed=8)
    assert steps(MIXED, 0, 100) != steps(other, 0, 100)
    assert steps(MIXED, 0, 100) != steps(MIXED, 1, 100)


def test_op_mix_follows_the_ratios() -> None:
    drawn = [s for i in range(10) for s in steps(MIXED, i, 2_000)]
    reads = [s for s in drawn if s.kind == "read"]
    turns = [s for s in drawn if s.kind == "turn"]
    assert len(reads) / len(drawn) == pytest.approx(0.3, abs=0.02)
    assert sum(s.uses_tool for s in turns) / len(turns) == pytest.approx(0.25, abs=0.02)
    assert all(s.actions == reads[0].actions for s in reads)
    assert reads[0].actions[0].op == GET_MESSAGES
    assert all(0.010 <= s.think_s <= 0.030 for s in drawn)


def test_turn_shapes() -> None:
    plain = Workload(sessions=1, message_chars=123)
    for step in steps(plain, 0, 20):
        assert [a.op for a in step.actions] == [ADD_USER, GET_CONTEXT, ADD_ASSISTANT]
        assert step.think_s == 0
        assert all(len(a.text or "") == 123 for a in step.actions if a.op != GET_CONTEXT)
    assert not any(s.kind == "read" or s.uses_tool for s in steps(plain, 0, 500))
    tools = Workload(sessions=1, tool_calls=1.0)
    assert all(s.uses_tool for s in steps(tools, 0, 100))


def test_tool_call_is_followed_by_its_result() -> None:
    drawn = steps(Workload(sessions=3, tool_calls=0.5, seed=3), 2, 400)
    call_ids = set()
    for step in (s for s in drawn if s.uses_tool):
        ops = [a.op for a in step.actions]
        assert ops == [
            ADD_USER,
            GET_CONTEXT,
            ADD_TOOL_CALL,
            ADD_TOOL_RESULT,
            GET_CONTEXT,
            ADD_ASSISTANT,
        ]
        call, result = step.actions[2], step.actions[3]
        assert call.call_id is not None and call.call_id == result.call_id
        call_ids.add(call.call_id)
        # The library accepts both, and they pair up as OpenAI requires.
        call_message = create_openai_message(**call.openai_fields())
        result_message = create_openai_message(**result.openai_fields())
        assert call_message.has_tool_calls and result_message.is_tool_result
        assert call_message.tool_calls is not None
        assert call_message.tool_calls[0]["id"] == result_message.tool_call_id
    assert len(call_ids) == sum(s.uses_tool for s in drawn) > 0


def test_prefill_is_seeded_exchanges() -> None:
    w = Workload(sessions=2, prefill=3)
    prefill = WorkloadGenerator(w).prefill(1)
    assert [a.op for a in prefill] == [ADD_USER, ADD_ASSISTANT] * 3
    assert prefill == WorkloadGenerator(w).prefill(1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("backend", "mongo"),
        ("loop", "curio"),
        ("sessions", 0),
        ("users", 2_000),
        ("tool_calls", 1.5),
        ("read_ratio", 1.0),
        ("think_ms", -1.0),
        ("duration", 0.0),
        ("durability", "eventually"),
        ("sqlite_path", "x.db"),
    ],
)
def test_workload_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        Workload(**{field: value})  # type: ignore[arg-type]


def test_workload_defaults() -> None:
    w = Workload()
    assert (w.time_limit, w.drivers, w.user_count) == (10.0, 1_000, 100)
    assert Workload(sessions=10).user_count == 10
    assert Workload(turns=3).time_limit is None
    assert Workload(turns=3, sessions=4).total_turns == 12
    assert Workload(backend="redis").memory_config(key_prefix="p") == {
        "backend": "redis",
        "config": {"url": "redis://127.0.0.1:6379/0", "key_prefix": "p"},
    }


# -- engine ---------------------------------------------------------------------------------

SMALL = Workload(sessions=12, users=4, turns=5, tool_calls=0.4, read_ratio=0.25, seed=11)


@pytest.fixture
async def small_result() -> BenchResult:
    return await run_workload(SMALL)


async def test_engine_runs_exactly_the_generated_steps(small_result: BenchResult) -> None:
    r = small_result
    planned = [until_turns(SMALL, i, SMALL.turns or 0) for i in range(SMALL.sessions)]
    flat = [s for session in planned for s in session]
    reads = sum(s.kind == "read" for s in flat)
    tool_turns = sum(s.uses_tool for s in flat)
    writes = sum(s.writes for s in flat)
    assert r.error_count == 0 and r.failed_turns == 0
    assert r.turns == 60
    assert r.reads == reads
    assert r.messages == writes
    counts = {op: h.get_total_count() for op, h in r.histograms.items()}
    assert counts["turn"] == counts["add_user"] == counts["add_assistant"] == 60
    assert counts["add_tool_call"] == counts["add_tool_result"] == tool_turns
    assert counts["get_context"] == 60 + tool_turns
    assert counts["get_messages"] == reads
    assert counts["create_session"] == 12
    assert r.storage["total_sessions"] == 12
    assert r.storage["total_messages"] == writes
    assert sum(b.turns for b in r.timeline) == r.turns
    assert sum(b.messages for b in r.timeline) == r.messages


async def test_engine_timeline_covers_a_timed_run() -> None:
    ticks: list[Snapshot] = []
    w = Workload(sessions=8, duration=1.3, think_ms=5, prefill=2)
    r = await run_workload(w, on_tick=ticks.append)
    assert r.turns > 0 and r.error_count == 0
    assert [b.start_s for b in r.timeline][:1] == [0.0]
    assert sum(b.duration_s for b in r.timeline) == pytest.approx(r.elapsed_s)
    assert sum(b.turns for b in r.timeline) == r.turns
    assert all(b.turn_p99_ms is not None for b in r.timeline if b.turns)
    assert {"setup", "run"} <= {t.phase for t in ticks}
    assert r.storage["total_messages"] == r.messages + 8 * 2 * 2


async def test_engine_with_summaries() -> None:
    w = Workload(sessions=3, turns=12, summarize_every=6)
    r = await run_workload(w)
    assert r.error_count == 0 and r.turns == 36


def test_batched_recording_matches_recording_each_sample() -> None:
    """The engine folds samples in batches; the histogram must be what one-by-one gives."""
    rng = random.Random(5)
    samples = [int(rng.lognormvariate(12, 2.5)) for _ in range(20_000)]
    batched, single = new_histogram(), new_histogram()
    record_batch(samples, batched)
    for ns in samples:
        single.record_value(max(1, ns // 1000))
    assert list(batched.counts) == list(single.counts)
    for pct in (50, 90, 99, 99.9, 100):
        assert batched.get_value_at_percentile(pct) == single.get_value_at_percentile(pct)
    assert batched.get_max_value() == single.get_max_value()


# -- report ---------------------------------------------------------------------------------


async def test_table_has_throughput_and_percentiles(small_result: BenchResult) -> None:
    table = format_table(small_result)
    header = next(line for line in table.splitlines() if "operation" in line)
    assert header.split()[-5:] == ["p50", "p90", "p99", "p99.9", "max"]
    for op in ("turn", "add_user", "get_context", "add_assistant", "add_tool_call"):
        assert re.search(rf"^\s+{op}\s+[\d,]+(\s+\d+\.\d+){{5}}$", table, re.M), op
    assert re.search(r"turns\s+60\s", table)
    assert "messages" in table and "/s" in table
    assert "peak RSS" in table and "errors" in table


async def test_json_document(small_result: BenchResult, tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    write_json(small_result, str(path))
    doc = json.loads(path.read_text())
    assert doc == json.loads(json.dumps(to_dict(small_result)))
    assert doc["schema"] == SCHEMA
    assert set(doc) >= {
        "workload",
        "environment",
        "run",
        "throughput",
        "operations",
        "errors",
        "resources",
        "timeline",
    }
    assert doc["workload"]["sessions"] == 12
    assert doc["run"]["backend"] == "memory"
    assert doc["throughput"]["turns"] == 60
    assert doc["errors"] == {"total": 0, "by_kind": []}
    turn = doc["operations"]["turn"]
    for key in ("count", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "p99.9_ms", "max_ms"):
        assert isinstance(turn[key], int | float), key
    assert turn["p50_ms"] <= turn["p90_ms"] <= turn["p99_ms"] <= turn["p99.9_ms"]
    assert turn["p99.9_ms"] <= turn["max_ms"]
    decoded = HdrHistogram.decode(turn["hdr"])
    assert decoded.get_total_count() == turn["count"] == 60
    assert doc["operations"]["create_session"]["phase"] == "setup"
    bucket = doc["timeline"][0]
    assert set(bucket) >= {"start_s", "duration_s", "turns", "turns_per_s", "turn_p99_ms"}


async def test_plot_is_a_png(small_result: BenchResult, tmp_path: Path) -> None:
    path = tmp_path / "run.png"
    write_plot(small_result, str(path))
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_progress_line() -> None:
    stream = io.StringIO()
    progress = Progress(stream)
    for i in range(10):
        progress(
            Snapshot(
                "sqlite", "run", (i + 1) / 5, 10.0, (i + 1) * 100, None, (i + 1) * 200, 0, 5, 5
            )
        )
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # not a terminal: one line per second
    assert "turns/s" in lines[-1] and "msg/s" in lines[-1] and "sqlite" in lines[-1]
    assert "500 turns/s (last 2 s: 500)" in lines[-1] and "1,000 msg/s" in lines[-1]
    setup = progress.render(Snapshot("redis", "setup", 0.0, None, 0, None, 0, 0, 3, 10))
    assert "3/10" in setup


# -- command line ---------------------------------------------------------------------------

OPTIONS = (
    "--backend",
    "--sqlite-path",
    "--redis-url",
    "--durability",
    "--loop",
    "--sessions",
    "--users",
    "--turns",
    "--duration",
    "--concurrency",
    "--message-chars",
    "--context-tokens",
    "--tool-calls",
    "--think-ms",
    "--read-ratio",
    "--summarize-every",
    "--prefill",
    "--seed",
    "--json",
    "--plot",
    "--no-progress",
)


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    flat = " ".join(text.split())
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    bench = commands.choices["bench"]
    declared = {s for a in bench._actions for s in a.option_strings if s.startswith("--")}
    assert declared == {*OPTIONS, "--help"}
    for action in bench._actions:
        assert action.help, action.option_strings
        described = " ".join(action.help.split()).replace("%(default)s", str(action.default))
        assert described in flat, action.option_strings
    for option in OPTIONS:
        assert option in text


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bench", "--bogus"], "unrecognized arguments: --bogus"),
        (["bench", "--sessions", "0"], "--sessions: expected a positive integer"),
        (["bench", "--tool-calls", "2"], "--tool-calls: expected a ratio"),
        (["bench", "--backend", "mongo"], "invalid choice: 'mongo'"),
        (["bench", "--sqlite-path", "x.db"], "--sqlite-path only applies to --backend sqlite"),
        (["bench", "--plot", "out.jpg"], "ending in .png"),
        ([], "required"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "error:" in err


def test_cli_run_writes_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, plot = tmp_path / "r.json", tmp_path / "r.png"
    argv = ["bench", "--sessions", "6", "--turns", "3", "--tool-calls", "0.5", "--no-progress"]
    status = main([*argv, "--json", str(report), "--plot", str(plot), "--loop", "trio"])
    out = capsys.readouterr()
    assert status == 0
    assert "p99.9" in out.out and out.err == ""
    assert json.loads(report.read_text())["throughput"]["turns"] == 18
    assert plot.stat().st_size > 0


def test_cli_unreachable_backend_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--backend", "redis", "--redis-url", "redis://127.0.0.1:1/0"]
    assert main([*argv, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach redis" in err
