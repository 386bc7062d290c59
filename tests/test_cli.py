"""The ``langswarm-memory`` command line: help, version, usage errors, the store from the
environment, and ``sessions list``/``show``, ``stats`` and ``cleanup`` on SQLite and Redis."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import anyio
import click
import pytest

from langswarm.core.memory._cli import main
from langswarm.core.memory._cli._app import cli as root
from langswarm.core.memory._config import URL_ENV
from langswarm.core.memory._manager import MemoryManager
from tests.test_cli_data import (  # noqa: F401
    VARIED,
    cli,
    fill,
    sqlite_url,
    varied_db_fixture,
    varied_master_fixture,
)

COMMANDS = [
    ["sessions", "list"],
    ["sessions", "show"],
    ["stats"],
    ["export"],
    ["import"],
    ["migrate"],
    ["cleanup"],
    ["erase-user"],
    ["doctor"],
]


@pytest.fixture(autouse=True)
def no_store_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, varied_db: Path) -> str:
    """The varied store plus 30 bulk sessions, in SQLite or (migrated there) in Redis."""
    url = sqlite_url(varied_db)
    anyio.run(fill, url, 30, 4)
    if request.param == "sqlite":
        return url
    target = str(request.getfixturevalue("redis_url"))
    assert main(["migrate", url, target, "--no-progress"]) == 0
    return target


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = cli(capsys, "--version")
    assert status == 0
    assert re.fullmatch(r"langswarm-memory \S+ \(export format 1, SQLite schema \d+\)\n", out)
    console = subprocess.run(
        [Path(sys.executable).parent / "langswarm-memory", "--version"],
        capture_output=True,
        text=True,
    )
    assert console.returncode == 0 and console.stdout == out


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_examples(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = cli(capsys, *command, "--help")
    assert status == 0
    assert f"Usage: langswarm-memory {' '.join(command)}" in out
    assert re.search(rf"^ +examples:\n +langswarm-memory {command[0]} ", out, re.M)
    group = root
    for name in command[:-1]:
        group = group.commands[name]  # type: ignore[assignment]
    declared = group.commands[command[-1]].params
    for param in declared:
        if isinstance(param, click.Option):
            assert param.help, param.name
            assert param.opts[0] in out


def test_root_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = cli(capsys, "--help")
    assert status == 0
    names = ("bench", "sessions", "stats", "export", "import", "migrate", "cleanup", "doctor")
    for name in (*names, "erase-user"):
        assert re.search(rf"^  {name} ", out, re.M), name


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "a command is required"),
        (["sessions"], "a command is required"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["stats"], f"no store given: pass --url or set {URL_ENV}"),
        (["stats", "--url", "mongodb://x"], "unknown memory URL scheme 'mongodb'"),
        (["stats", "--url", "memory://"], "memory:// lives inside one process"),
        (
            ["sessions", "list", "-u", "sqlite:///x.db", "--older-than", "3 days"],
            "expected a duration like 90s",
        ),
        (["sessions", "list", "-u", "sqlite:///x.db", "--status", "gone"], "'gone' is not one of"),
        (["sessions", "list", "-u", "sqlite:///x.db", "--bogus"], "No such option '--bogus'"),
        (["cleanup", "-u", "sqlite:///x.db"], "say which sessions to delete"),
        (["migrate", "sqlite:///a.db", "sqlite:///./a.db"], "SRC and DST are the same store"),
        (["migrate", "sqlite:///a.db"], "Missing argument 'DST'"),
        (["export", "-u", "sqlite:///a.db", "--layout", "xml"], "'xml' is not one of"),
        (["import", "-u", "sqlite:///a.db", "/no/such/file.jsonl"], "No such file"),
        (["--loop", "curio", "stats"], "'curio' is not one of"),
    ],
)
def test_bad_usage_exits_2_with_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert re.match(r"langswarm-memory( [a-z]+)*: error: .* \(see --help\)$", err)


def test_failures_exit_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.db"
    status, _, err = cli(capsys, "stats", "-u", sqlite_url(missing))
    assert (
        status == 1 and err == f"langswarm-memory stats: error: no SQLite database at {missing}\n"
    )
    assert not missing.exists()  # reading does not create a store
    status, _, err = cli(capsys, "sessions", "list", "-u", "redis://127.0.0.1:1/0")
    assert status == 1 and err.count("\n") == 1
    assert err.startswith("langswarm-memory sessions list: error: cannot reach redis")


def test_the_store_comes_from_the_environment(
    varied_db: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(URL_ENV, sqlite_url(varied_db))
    status, out, _ = cli(capsys, "sessions", "list", "--json")
    assert status == 0 and {s["session_id"] for s in json.loads(out)} == set(VARIED)


def _listed(capsys: pytest.CaptureFixture[str], url: str, *filters: str) -> list[str]:
    status, out, _ = cli(capsys, "sessions", "list", "-u", url, "--json", *filters)
    assert status == 0
    return [s["session_id"] for s in json.loads(out)]


def test_a_redis_key_prefix_comes_from_the_url(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def write() -> None:
        memory = {"backend": "redis", "config": {"url": redis_url, "key_prefix": "app"}}
        async with MemoryManager.from_config(memory=memory) as m:
            await m.create_session("alice", "s-app")

    anyio.run(write)
    assert _listed(capsys, f"{redis_url}?key_prefix=app") == ["s-app"]
    assert _listed(capsys, redis_url) == []  # the default prefix holds nothing
    with pytest.raises(SystemExit) as exit_info:
        main(["sessions", "list", "-u", f"{redis_url}?pool_size=many"])
    assert exit_info.value.code == 2
    assert "pool_size must be a whole number, not 'many'" in capsys.readouterr().err


def test_sessions_list(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    everything = _listed(capsys, store, "--limit", "0")
    assert len(everything) == len(set(everything)) == 36
    assert everything[-3:] == ["b000002", "b000001", "b000000"]  # newest update first
    assert _listed(capsys, store)[:50] == everything[:50]
    assert set(_listed(capsys, store, "--user", "alice")) == {"s-alice", "s-fork"}
    assert _listed(capsys, store, "--status", "archived") == ["s-bob"]
    assert set(_listed(capsys, store, "--newer-than", "1h")) == set(VARIED)
    assert _listed(capsys, store, "--older-than", "1h", "--limit", "2") == ["b000029", "b000028"]
    status, out, _ = cli(capsys, "sessions", "list", "-u", store, "--user", "bob")
    assert status == 0
    header, row = out.splitlines()
    assert header.split() == ["SESSION", "USER", "STATUS", "MESSAGES", "UPDATED", "(UTC)"]
    assert row.split()[:4] == ["s-bob", "bob", "archived", "7"]
    status, out, err = cli(capsys, "sessions", "list", "-u", store, "--user", "nobody")
    assert status == 0 and out == "" and err == "no sessions match\n"


def test_sessions_list_pages_through_many_sessions_of_one_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """More sessions share one update time than a page of the listing holds (700 of them,
    the oldest), after 600 of distinct times."""
    url = sqlite_url(tmp_path / "ties.db")

    async def tied() -> None:
        from tests.test_cli_data import bulk_writes, open_backend

        backend = await open_backend(url)
        try:
            for batch in bulk_writes(1_300, 1):
                for write in batch:
                    assert write.create is not None
                    if write.session_id < "b000700":
                        write.create.updated_at = write.create.created_at.replace(
                            minute=0, second=0
                        )
                await backend.apply(batch)
        finally:
            await backend.close()

    anyio.run(tied)
    listed = _listed(capsys, url, "--limit", "0")
    assert listed == [f"b{n:06d}" for n in reversed(range(1_300))]


def test_sessions_show(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = cli(capsys, "sessions", "show", "s-carol", "-u", store, "-n", "3")
    assert status == 0
    assert re.search(r"^messages +10 stored, seq 20 to 29, [\d,]+ tokens$", out, re.M)
    assert re.search(r"^summaries +2$", out, re.M)
    assert "messages (newest 3 of 10):" in out and re.search(r"^29 .* assistant .* c29 ", out, re.M)
    status, out, _ = cli(capsys, "sessions", "show", "s-bob", "-u", store, "--messages", "0")
    assert "7 stored, seq 0 to 7 (1 removed)" in out and "messages (every message):" in out
    assert '{"plan":"pro"}' in out and "archived" in out
    status, out, _ = cli(capsys, "sessions", "show", "s-alice", "-u", store, "--json")
    shown = json.loads(out)
    assert shown["metadata"] == {"topic": "billing", "ünï": [1, 2.5, None]}
    assert len(shown["messages"]) == 7 and len(shown["summaries"]) == 1
    assert shown["messages"][2]["tool_calls"][0]["id"] == "c1"
    assert sum(m["token_count"] for m in shown["messages"]) > 0
    status, _, err = cli(capsys, "sessions", "show", "nope", "-u", store)
    assert (
        status == 1
        and err == "langswarm-memory sessions show: error: no session 'nope' in this store\n"
    )


def test_stats(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = cli(capsys, "stats", "-u", store)
    assert status == 0
    assert re.search(r"^sessions +36$", out, re.M) and re.search(r"^  archived +1$", out, re.M)
    assert re.search(r"^messages +153$", out, re.M) and re.search(r"^summaries +4$", out, re.M)
    assert re.search(r"^storage +[\d.,]+ MB$", out, re.M)


def test_cleanup_is_a_dry_run_until_yes(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = cli(capsys, "cleanup", "-u", store, "--older-than", "1d")
    assert status == 0 and len(out.splitlines()) == 20 and "... and 10 more" in err
    assert "would delete 30 sessions (120 messages); run again with --yes" in err
    assert len(_listed(capsys, store, "--limit", "0")) == 36
    status, _, err = cli(capsys, "cleanup", "-u", store, "--older-than", "1d", "--user", "u1", "-y")
    assert status == 0 and err == "deleted 3 sessions (12 messages)\n"
    status, _, err = cli(capsys, "cleanup", "-u", store, "--status", "archived", "--yes")
    assert err == "deleted 1 sessions (7 messages)\n"
    remaining = _listed(capsys, store, "--limit", "0")
    assert len(remaining) == 32 and "s-bob" not in remaining and "b000011" not in remaining


def test_cleanup_of_expired_sessions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = sqlite_url(tmp_path / "expiring.db")

    async def expiring() -> None:
        from datetime import timedelta

        from tests.test_cli_data import bulk_writes, open_backend

        backend = await open_backend(url)
        try:
            [batch] = list(bulk_writes(4, 2))
            for n, write in enumerate(batch):
                assert write.create is not None
                if n % 2:
                    write.create.expires_at = write.create.created_at + timedelta(days=1)
            await backend.apply(batch)
        finally:
            await backend.close()

    anyio.run(expiring)
    status, _, err = cli(capsys, "cleanup", "-u", url, "--expired", "--yes")
    assert status == 0 and err == "deleted 2 sessions (4 messages)\n"
    assert _listed(capsys, url) == ["b000002", "b000000"]


def test_erase_user_is_a_dry_run_until_yes(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = len(_listed(capsys, store, "--limit", "0"))
    mine = len(_listed(capsys, store, "--limit", "0", "--user", "u1"))
    assert mine > 0
    status, _, err = cli(capsys, "erase-user", "u1", "-u", store)
    assert status == 0 and err.startswith(f"would erase {mine} sessions")
    assert len(_listed(capsys, store, "--limit", "0")) == before
    status, _, err = cli(capsys, "erase-user", "u1", "-u", store, "--yes")
    assert status == 0 and err.startswith(f"erased {mine} sessions")
    assert _listed(capsys, store, "--limit", "0", "--user", "u1") == []
    assert len(_listed(capsys, store, "--limit", "0")) == before - mine
