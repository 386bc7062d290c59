"""``doctor`` on real stores: a healthy SQLite file, a write-ahead log grown past its limit, a
file of another schema or application; Redis with persistence off, snapshots only, an
append-only file, an evicting memory policy, a user not allowed CONFIG, a cluster, no
server at all."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import anyio
import pytest

from tests._servers import APP_PASSWORD, APP_USER, RedisCluster, RedisServer
from tests.test_cli_data import cli, fill, sqlite_url, varied_db_fixture, varied_master_fixture  # noqa: F401


def findings(
    capsys: pytest.CaptureFixture[str], url: str, *extra: str
) -> tuple[int, dict[str, dict[str, str]]]:
    """The doctor's exit status and its findings by check name (the last of each name)."""
    status, out, _ = cli(capsys, "doctor", "-u", url, "--json", *extra)
    return status, {c["name"]: c for c in json.loads(out)}


def test_a_healthy_sqlite_file(varied_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = cli(capsys, "doctor", "-u", sqlite_url(varied_db))
    assert status == 0, out
    assert out.splitlines()[-1] == "0 problem(s), 0 warning(s)"
    for name in ("connection", "schema", "journal", "wal", "data"):
        assert f"  ok    {name}" in out
    assert "6 sessions, 33 messages" in out


def test_a_wal_past_its_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "memory.db"
    url = sqlite_url(path)
    anyio.run(fill, url, 1, 1)
    reader = sqlite3.connect(path)  # a long read: no checkpoint can go past it
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM messages").fetchall()
        anyio.run(fill, url, 20, 200, 1)  # about 3 MB of messages behind the reader
        status, found = findings(capsys, url, "--wal-limit-mb", "1")
        assert status == 1
        wal = found["wal"]
        assert wal["status"] == "FAIL" and f"{path}-wal is " in wal["detail"]
        assert "(limit 1 MB)" in wal["detail"] and "PRAGMA wal_checkpoint(TRUNCATE)" in wal["fix"]
        assert (tmp_path / "memory.db-wal").stat().st_size > 1024 * 1024  # the doctor left it
        status, out, _ = cli(capsys, "doctor", "-u", url, "--wal-limit-mb", "1")
        assert "  FAIL  wal" in out and "fix: end long-running readers" in out
        assert out.splitlines()[-1] == "1 problem(s), 0 warning(s)"
    finally:
        reader.rollback()
        reader.close()
    status, found = findings(capsys, url, "--wal-limit-mb", "1")
    assert status == 0 and found["wal"]["status"] == "ok"


def test_sqlite_files_it_cannot_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, found = findings(capsys, sqlite_url(tmp_path / "missing.db"))
    assert status == 1 and found["connection"]["status"] == "FAIL"
    assert not (tmp_path / "missing.db").exists()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (x)")
    status, found = findings(capsys, sqlite_url(other))
    assert status == 1 and "not a langswarm-memory database" in found["schema"]["detail"]
    newer = tmp_path / "newer.db"
    anyio.run(fill, sqlite_url(newer), 1, 1)
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    status, found = findings(capsys, sqlite_url(newer))
    assert (
        status == 1 and "version 99 is newer than this release reads" in found["schema"]["detail"]
    )
    assert found["schema"]["fix"] == "upgrade langswarm-memory everywhere this file is used"


def test_redis_with_persistence_off(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    anyio.run(fill, redis_url, 3, 2)
    status, out, _ = cli(capsys, "doctor", "-u", redis_url)
    assert status == 1
    assert "  ok    connection" in out and "(redis 7." in out
    assert "  ok    data" in out and "the 3 newest sessions read back" in out
    assert '  FAIL  persistence  persistence is off (save "", appendonly no)' in out
    assert "fix: CONFIG SET appendonly yes" in out
    assert out.splitlines()[-1] == "1 problem(s), 0 warning(s)"


def test_redis_persistence_and_eviction_settings(
    durable_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = durable_server.url
    status, found = findings(capsys, url)
    assert status == 0
    persistence = found["persistence"]
    assert persistence["status"] == "ok" and persistence["fix"] == ""
    assert persistence["detail"] == "append-only file, appendfsync always"
    durable_server.call("CONFIG", "SET", "appendfsync", "no")
    status, found = findings(capsys, url)
    assert status == 0 and found["persistence"]["status"] == "warn"
    durable_server.call("CONFIG", "SET", "appendonly", "no")
    durable_server.call("CONFIG", "SET", "save", "60 100")
    status, found = findings(capsys, url)
    assert status == 0 and found["persistence"]["detail"].startswith("RDB snapshots only")
    durable_server.call("CONFIG", "SET", "maxmemory", "100mb")
    durable_server.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    status, found = findings(capsys, url)
    assert status == 1 and found["eviction"]["status"] == "FAIL"
    assert "maxmemory-policy allkeys-lru" in found["eviction"]["detail"]
    assert found["eviction"]["fix"].startswith("CONFIG SET maxmemory-policy noeviction")


def test_redis_user_not_allowed_config(
    redis_acl: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_acl.flushall()
    status, found = findings(capsys, redis_acl.acl_url(APP_USER, APP_PASSWORD))
    assert status == 0
    assert found["connection"]["status"] == "ok" and found["data"]["status"] == "ok"
    assert found["config"]["status"] == "warn"
    assert "cannot read the server's configuration" in found["config"]["detail"]


def test_a_redis_cluster(
    redis_cluster: RedisCluster, redis_cluster_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = cli(capsys, "doctor", "-u", redis_cluster_url)
    assert status == 1
    assert "3 cluster masters" in out
    for address in redis_cluster.startup_nodes:
        assert f"  FAIL  persistence  {address}: persistence is off" in out
    assert out.splitlines()[-1] == "3 problem(s), 0 warning(s)"


def test_no_redis_there(capsys: pytest.CaptureFixture[str]) -> None:
    status, found = findings(capsys, "redis://127.0.0.1:1/0")
    assert status == 1 and list(found) == ["connection"]
    assert found["connection"]["status"] == "FAIL"
    assert "cannot reach redis at redis://127.0.0.1:1/0: " in found["connection"]["detail"]
