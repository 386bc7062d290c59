"""``export``, ``import`` and ``migrate`` against real SQLite files and real redis-servers:
exports survive a trip through every store byte for byte, imports store nothing twice, a
migration interrupted by SIGINT resumes to an exact copy."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from langswarm.core.memory import create_openai_message
from langswarm.core.memory._manager import MemoryManager
from tests._servers import RedisServer
from tests.test_cli_data import (  # noqa: F401
    VARIED,
    cli,
    fill,
    open_backend,
    sqlite_url,
    varied_db_fixture,
    varied_master_fixture,
)

CLI = [sys.executable, "-m", "langswarm.core.memory._cli"]


@pytest.fixture(params=["asyncio", "trio"])
def loop(request: pytest.FixtureRequest) -> str:
    """The event loop the command runs on (``--loop``)."""
    return str(request.param)


@pytest.fixture
def source(varied_db: Path) -> str:
    """The varied store plus 40 bulk sessions of 30 messages, as a SQLite URL."""
    url = sqlite_url(varied_db)
    anyio.run(fill, url, 40, 30)
    return url


def export(
    capsys: pytest.CaptureFixture[str], url: str, path: Path, *extra: str, loop: str = "asyncio"
) -> bytes:
    argv = ["--loop", loop, "export", "--url", url, "-o", str(path), "--no-progress", *extra]
    status, _, err = cli(capsys, *argv)
    assert status == 0, err
    return path.read_bytes()


def import_(capsys: pytest.CaptureFixture[str], url: str, path: Path, *extra: str) -> str:
    status, _, err = cli(capsys, "import", "--url", url, str(path), "--no-progress", *extra)
    assert status == 0, err
    return err


def totals(capsys: pytest.CaptureFixture[str], url: str) -> tuple[int, int, int]:
    """Sessions, messages and summaries in the store at ``url``."""
    status, out, _ = cli(capsys, "stats", "-u", url, "--json")
    assert status == 0
    stats = json.loads(out)
    return stats["total_sessions"], stats["total_messages"], stats["total_summaries"]


def records(data: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in data.decode().split("\n")[:-1]]


def test_export_import_export_is_identical_across_stores(
    source: str, redis_url: str, tmp_path: Path, loop: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions, messages, summaries = totals(capsys, source)
    assert (sessions, messages) == (46, 1233) and summaries > 2
    status, _, err = cli(
        capsys, "--loop", loop, "export", "-u", source, "-o", str(tmp_path / "a.jsonl")
    )
    assert status == 0 and "exported 46 sessions, 1,233 messages" in err, err
    first = (tmp_path / "a.jsonl").read_bytes()
    status, _, err = cli(
        capsys, "--loop", loop, "import", "-u", redis_url, str(tmp_path / "a.jsonl")
    )
    assert status == 0 and "46 new" in err
    assert f"1,233 messages and {summaries} summaries stored" in err
    assert totals(capsys, redis_url) == (sessions, messages, summaries)
    assert export(capsys, redis_url, tmp_path / "b.jsonl") == first
    target = sqlite_url(tmp_path / "copy.db")
    import_(capsys, target, tmp_path / "b.jsonl")
    assert export(capsys, target, tmp_path / "c.jsonl", loop=loop) == first
    kinds = [r["type"] for r in records(first)]
    assert kinds[0] == "header" and kinds[-1] == "end"
    assert kinds.count("session") == 46 and kinds.count("summary") == summaries


def test_what_an_export_holds(
    source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = records(export(capsys, source, tmp_path / "a.jsonl", "--session", "s-bob"))
    assert lines[0] == {
        "format": "langswarm-memory",
        "layout": "records",
        "type": "header",
        "version": 1,
    }
    session, *messages, end = lines[1:]
    assert session["status"] == "archived" and session["metadata"] == {"plan": "pro"}
    assert (session["first_seq"], session["next_seq"], session["message_count"]) == (0, 8, 7)
    assert [m["seq"] for m in messages] == [0, 1, 2, 4, 5, 6, 7]  # 3 was removed
    assert [m["content"] for m in messages][:2] == ["b0", "b1"]
    assert all(str(m["timestamp"]).endswith("+00:00") and m["token_count"] for m in messages)
    assert end == {"type": "end", "sessions": 1, "messages": 7, "summaries": 0}


def test_sessions_layout_and_gzip(
    source: str, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = export(capsys, source, tmp_path / "a.jsonl")
    packed = export(capsys, source, tmp_path / "s.jsonl.gz", "--layout", "sessions")
    assert export(capsys, source, tmp_path / "t.jsonl.gz", "--layout", "sessions") == packed
    lines = records(gzip.decompress(packed))
    assert lines[0]["layout"] == "sessions" and len(lines) == 46 + 2
    carol = next(line for line in lines if line.get("session_id") == "s-carol")
    assert isinstance(carol["messages"], list) and len(carol["messages"]) == 10
    assert isinstance(carol["summaries"], list) and len(carol["summaries"]) == 2
    import_(capsys, redis_url, tmp_path / "s.jsonl.gz")
    assert export(capsys, redis_url, tmp_path / "b.jsonl") == plain


async def _versions(url: str) -> dict[str, int]:
    backend = await open_backend(url)
    try:
        found = {}
        for meta in await backend.list_sessions(limit=None):
            snap = await backend.load_session(meta.session_id, tail=0)
            assert snap is not None
            found[meta.session_id] = snap.version
        return found
    finally:
        await backend.close()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_importing_twice_stores_nothing_twice(
    kind: str,
    source: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = (
        sqlite_url(tmp_path / "t.db") if kind == "sqlite" else request.getfixturevalue("redis_url")
    )
    first = export(capsys, source, tmp_path / "a.jsonl")
    import_(capsys, target, tmp_path / "a.jsonl")
    versions = anyio.run(_versions, target)
    err = import_(capsys, target, tmp_path / "a.jsonl")
    assert "0 new, 0 updated, 46 already complete), 0 messages and 0 summaries stored" in err
    assert anyio.run(_versions, target) == versions  # not one write changed anything
    assert export(capsys, target, tmp_path / "b.jsonl") == first


def test_a_cut_import_goes_on_where_it_stopped(
    varied_db: Path, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = sqlite_url(varied_db)
    anyio.run(fill, source, 1, 1_200)  # stored in several writes
    whole = export(capsys, source, tmp_path / "a.jsonl")
    lines = whole.decode().split("\n")
    cut = lines.index(next(line for line in lines if '"message_id":"b000000-1100"' in line))
    (tmp_path / "cut.jsonl").write_text("\n".join(lines[:cut]) + "\n")
    status, _, err = cli(capsys, "import", "-u", redis_url, str(tmp_path / "cut.jsonl"))
    assert status == 1
    assert err.splitlines()[-1].startswith("langswarm-memory import: error: ")
    assert "ends without its end record (cut short?)" in err
    status, out, _ = cli(capsys, "sessions", "show", "b000000", "-u", redis_url, "--json")
    assert status == 0 and 0 < len(json.loads(out)["messages"]) < 1_100
    err = import_(capsys, redis_url, tmp_path / "a.jsonl")
    assert " 1 updated" in err  # the session the cut went through goes on
    assert export(capsys, redis_url, tmp_path / "b.jsonl") == whole


def test_another_session_under_the_same_id_is_skipped(
    source: str, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export(capsys, source, tmp_path / "a.jsonl")

    async def squat() -> None:
        memory = {"backend": "redis", "config": {"url": redis_url}}
        async with MemoryManager.from_config(memory=memory) as manager:
            session = await manager.create_session("alice", "s-alice")
            await session.add_message(create_openai_message("user", "mine"))

    anyio.run(squat)
    status, _, err = cli(capsys, "import", "-u", redis_url, str(tmp_path / "a.jsonl"))
    assert status == 1
    assert "45 new" in err and "skipped 1 sessions:" in err
    assert "s-alice: the target holds another session with this id" in err
    status, out, _ = cli(capsys, "sessions", "show", "s-alice", "-u", redis_url, "--json")
    assert [m["content"] for m in json.loads(out)["messages"]] == ["mine"]


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        (["not json"], "line 1: not JSON"),
        (['{"type":"header","format":"other","version":1}'], "not a langswarm-memory export"),
        (
            ['{"type":"header","format":"langswarm-memory","version":2,"layout":"records"}'],
            "version 2 is newer than this release reads (1)",
        ),
        ([], "the export is empty"),
        (["HEADER", '{"type":"mystery"}'], "line 2: unknown record type 'mystery'"),
        (
            ["HEADER", '{"type":"end","sessions":1,"messages":0,"summaries":0}'],
            "the end record counts 1 sessions",
        ),
    ],
)
def test_a_bad_file_fails_with_the_line_to_look_at(
    lines: list[str], problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = '{"format":"langswarm-memory","layout":"records","type":"header","version":1}'
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(line.replace("HEADER", header) + "\n" for line in lines))
    status, _, err = cli(capsys, "import", "-u", sqlite_url(tmp_path / "t.db"), str(path))
    assert status == 1
    last = err.splitlines()[-1]
    assert last.startswith(f"langswarm-memory import: error: {path}, line ") and problem in last


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (["--user", "alice"], {"s-alice", "s-fork"}),
        (["--session", "s-bob", "--session", "s-empty", "--session", "nope"], {"s-bob", "s-empty"}),
        (["--status", "archived"], {"s-bob"}),
        (["--user", "u3", "--older-than", "1d"], {f"b{n:06d}" for n in (3, 13, 23, 33)}),
        (["--newer-than", "1d"], set(VARIED)),
    ],
)
def test_export_selects_sessions(
    selection: list[str],
    expected: set[str],
    source: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = records(export(capsys, source, tmp_path / "a.jsonl", *selection))
    assert {str(r["session_id"]) for r in lines if r["type"] == "session"} == expected


def test_export_to_stdout_piped_into_import(source: str, redis_url: str, tmp_path: Path) -> None:
    with subprocess.Popen([*CLI, "export", "-u", source], stdout=subprocess.PIPE) as exporter:
        importer = subprocess.run(
            [*CLI, "import", "-u", redis_url, "-", "--no-progress"],
            stdin=exporter.stdout,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert exporter.returncode == 0
    assert importer.returncode == 0, importer.stderr
    assert "46 new" in importer.stderr
    stats = json.loads(subprocess.check_output([*CLI, "stats", "-u", redis_url, "--json"]))
    assert (stats["total_sessions"], stats["total_messages"]) == (46, 1233)


def _stored_sessions(server: RedisServer) -> int:
    count = server.call("ZCARD", "langswarm:idx:all")
    assert isinstance(count, int)
    return count


def test_migrate_interrupted_by_sigint_resumes_to_an_exact_copy(
    varied_db: Path,
    redis_server: RedisServer,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = sqlite_url(varied_db)
    anyio.run(fill, source, 600, 50)
    total = 600 + len(VARIED)
    with subprocess.Popen(
        [*CLI, "migrate", source, redis_url], stderr=subprocess.PIPE, text=True
    ) as child:
        assert child.stderr is not None
        first = child.stderr.readline()  # the first progress line: the migration is under way
        assert first.startswith("migrate: "), first
        # Frozen, the target holds the migration where it is until the interrupt arrives.
        redis_server.pause()
        try:
            child.send_signal(signal.SIGINT)
        finally:
            redis_server.resume()
        rest = child.stderr.read()
        assert child.wait(timeout=60) == 130, rest
    assert "langswarm-memory migrate: interrupted" in rest
    assert "run the same command again to resume" in rest
    stored = _stored_sessions(redis_server)
    assert stored < total
    status, _, err = cli(capsys, "--loop", "trio", "migrate", source, redis_url, "--no-progress")
    assert status == 0, err
    assert f"migrated {total:,} sessions" in err
    complete = int(err.split(" updated, ")[1].split(" already complete")[0].replace(",", ""))
    assert stored - 1 <= complete <= stored  # all that was stored, but a session cut half-way
    assert export(capsys, redis_url, tmp_path / "b.jsonl") == export(
        capsys, source, tmp_path / "a.jsonl"
    )


def test_migrate_redis_to_sqlite_and_back_to_redis(
    source: str, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = export(capsys, source, tmp_path / "a.jsonl")
    status, _, err = cli(capsys, "migrate", source, redis_url, "--no-progress")
    assert status == 0 and "46 new" in err, err
    copy = sqlite_url(tmp_path / "copy.db")
    status, _, err = cli(capsys, "--loop", "trio", "migrate", redis_url, copy, "--no-progress")
    assert status == 0 and "46 new" in err
    assert export(capsys, copy, tmp_path / "b.jsonl") == first
    other = redis_url.rsplit("/", 1)[0] + "/1"
    status, _, err = cli(capsys, "migrate", copy, other, "--user", "alice", "--no-progress")
    assert status == 0 and "migrated 2 sessions (2 new" in err


def test_round_trip_through_a_redis_cluster(
    source: str, redis_cluster_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = export(capsys, source, tmp_path / "a.jsonl")
    import_(capsys, redis_cluster_url, tmp_path / "a.jsonl")
    assert export(capsys, redis_cluster_url, tmp_path / "b.jsonl") == first
    err = import_(capsys, redis_cluster_url, tmp_path / "a.jsonl")
    assert "46 already complete), 0 messages" in err
    status, out, _ = cli(capsys, "sessions", "list", "-u", redis_cluster_url, "--user", "bob")
    assert status == 0 and "s-bob" in out and "archived" in out
