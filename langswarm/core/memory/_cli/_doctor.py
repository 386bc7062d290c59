"""``doctor``: checks a store the way an operator would, and says what to fix.

SQLite: the file opens (read-only: the doctor changes nothing, not even the WAL it
measures), its schema version, the journal mode and the size of the write-ahead log. Redis:
the server answers, the backend's scripts load and recent sessions read back, persistence
(RDB snapshots, the append-only file and its fsync policy) and eviction, on every master of
a cluster.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

import click
import redis
import redis.cluster

from .._export import dump
from ..backends._sqlite_schema import SCHEMA_VERSION
from ..backends.redis._connect import Target
from ..exceptions import MemoryError
from ._common import CommandError, open_store, run, sqlite_path, url_option

__all__ = ["Check", "doctor_command"]

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True, slots=True)
class Check:
    """One finding: what was checked, how it stands, what was seen and what to do."""

    name: str
    status: str
    detail: str
    fix: str = ""


@click.command(
    "doctor",
    epilog="""\b
examples:
  langswarm-memory doctor --url sqlite:////var/lib/app/memory.db --wal-limit-mb 256
  langswarm-memory doctor --url redis://cache:6379/0
  langswarm-memory doctor --json        # store from $LANGSWARM_MEMORY_URL

Exit status: 0 when nothing needs fixing (warnings allowed), 1 when something does.
""",
)
@url_option
@click.option(
    "--wal-limit-mb",
    type=click.FloatRange(min=0),
    default=64.0,
    show_default=True,
    help="SQLite: a write-ahead log larger than this is a problem",
)
@click.option("--json", "as_json", is_flag=True, help="the findings as a JSON array")
def doctor_command(url: str, wal_limit_mb: float, as_json: bool) -> int:
    """Check a store: connectivity, schema version, SQLite WAL size, Redis persistence and
    eviction settings. Each problem comes with what to do about it."""
    path = sqlite_path(url)
    checks = list(_sqlite(path, wal_limit_mb) if path is not None else _redis(url))
    if as_json:
        click.echo(dump([_fields(c) for c in checks]))
    else:
        _print(url, checks)
    return 1 if any(c.status == FAIL for c in checks) else 0


def _fields(check: Check) -> dict[str, str]:
    return {"name": check.name, "status": check.status, "detail": check.detail, "fix": check.fix}


def _print(url: str, checks: list[Check]) -> None:
    click.echo(f"checking {url}")
    for c in checks:
        click.echo(f"  {c.status:<4}  {c.name:<11}  {c.detail}")
        if c.fix:
            click.echo(f"{'':21}fix: {c.fix}")
    problems = sum(c.status == FAIL for c in checks)
    warnings = sum(c.status == WARN for c in checks)
    click.echo(f"{problems} problem(s), {warnings} warning(s)")


# -- SQLite ---------------------------------------------------------------------------------


def _sqlite(path: str, wal_limit_mb: float) -> Iterator[Check]:
    if not os.path.exists(path):
        yield Check(
            "connection",
            FAIL,
            f"no database file at {path}",
            "check the path: sqlite:///name is relative to the current directory, "
            "sqlite:////name absolute",
        )
        return
    wal = _wal_size(path)  # measured before anything opens the file
    try:
        db = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
        try:
            facts = _sqlite_facts(db)
        finally:
            db.close()
    except sqlite3.Error as exc:
        yield Check(
            "connection",
            FAIL,
            f"cannot read {path}: {exc}",
            "check the file's permissions and that it is an SQLite database",
        )
        return
    yield Check("connection", OK, f"{path} opens (read-only)")
    yield _schema(facts)
    mode = facts["journal_mode"]
    if mode == "wal":
        yield Check("journal", OK, "write-ahead log (WAL)")
    else:
        yield Check(
            "journal",
            WARN,
            f"journal_mode is {mode}, not wal: writers block readers",
            "the backend turns WAL on when it opens the file, unless enable_wal=False",
        )
    yield _wal(path, wal, wal_limit_mb)
    if facts["tables"] >= {"sessions", "messages"}:
        yield Check("data", OK, f"{facts['sessions']:,} sessions, {facts['messages']:,} messages")


def _wal_size(path: str) -> int | None:
    try:
        return os.stat(path + "-wal").st_size
    except FileNotFoundError:
        return None


def _sqlite_facts(db: sqlite3.Connection) -> dict[str, Any]:
    ((version,),) = db.execute("PRAGMA user_version").fetchall()
    ((mode,),) = db.execute("PRAGMA journal_mode").fetchall()
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    facts: dict[str, Any] = {"version": version, "journal_mode": mode, "tables": tables}
    if {"sessions", "messages"} <= tables and version == SCHEMA_VERSION:
        ((sessions, messages),) = db.execute(
            "SELECT COUNT(*), TOTAL(message_count) FROM sessions"
        ).fetchall()
        facts["sessions"], facts["messages"] = sessions, int(messages)
    else:
        facts["tables"] = tables - {"sessions"}  # counts unknown: no data line
    return facts


def _schema(facts: dict[str, Any]) -> Check:
    version = facts["version"]
    if version == SCHEMA_VERSION:
        return Check("schema", OK, f"version {version} (this release's)")
    if version > SCHEMA_VERSION:
        return Check(
            "schema",
            FAIL,
            f"version {version} is newer than this release reads ({SCHEMA_VERSION})",
            "upgrade langswarm-memory everywhere this file is used",
        )
    if version == 0:
        if facts["tables"]:
            return Check(
                "schema",
                FAIL,
                "not a langswarm-memory database (no schema version)",
                "point the URL at the memory database",
            )
        return Check("schema", WARN, "empty database: the schema is made when first opened")
    return Check(
        "schema",
        WARN,
        f"version {version}, older than this release's ({SCHEMA_VERSION}): it is "
        "upgraded when the file is next opened for writing",
        "back the file up first; older releases cannot read it once upgraded",
    )


def _wal(path: str, size: int | None, limit_mb: float) -> Check:
    if size is None:
        return Check("wal", OK, "no write-ahead log file (checkpointed and closed)")
    mb = size / (1024 * 1024)
    seen = f"{path}-wal is {mb:,.1f} MB (limit {limit_mb:g} MB)"
    if mb <= limit_mb:
        return Check("wal", OK, seen)
    return Check(
        "wal",
        FAIL,
        seen + ": checkpoints are not keeping up, or a long read keeps "
        "them from finishing, so every read scans the log and the disk fills",
        f"end long-running readers (fuser {path}-wal shows who holds it), then run "
        f"sqlite3 {path} 'PRAGMA wal_checkpoint(TRUNCATE)'",
    )


# -- Redis ----------------------------------------------------------------------------------


def _redis(url: str) -> Iterator[Check]:
    target = Target.parse(url, "localhost", 6379, 0, None)
    client = _client(target)
    try:
        started = time.perf_counter()
        nodes = _nodes(client)
        for _, node in nodes:
            node.ping()
        elapsed = (time.perf_counter() - started) * 1000
    except redis.RedisError as exc:
        client.close()
        yield Check(
            "connection",
            FAIL,
            f"cannot reach redis at {target.where}: {exc}",
            "check the URL (host, port, password, TLS) and that the server runs and "
            "accepts this host",
        )
        return
    where = f"{len(nodes)} cluster masters" if target.cluster else "the server"
    yield Check(
        "connection",
        OK,
        f"{where} at {target.where} answered in {elapsed:.1f} ms{_versions(nodes)}",
    )
    yield _data(url)
    for name, node in nodes:
        yield from _config_checks(node, f"{name}: " if target.cluster else "")
    client.close()


def _versions(nodes: list[tuple[str, Any]]) -> str:
    try:
        found = {str(node.info("server").get("redis_version")) for _, node in nodes}
    except redis.RedisError:  # INFO not allowed for this user
        return ""
    return f" (redis {', '.join(sorted(found))})"


def _client(target: Target) -> Any:
    options = target.client_options(2.0, 5.0)
    if target.cluster:
        startup = [redis.cluster.ClusterNode(h, p) for h, p in target.nodes]  # type: ignore[no-untyped-call]
        return redis.cluster.RedisCluster(startup_nodes=startup, **options)
    host, port = target.nodes[0]
    return redis.Redis(host=host, port=port, db=target.db, ssl=target.ssl, **options)


class _Node:
    """One server, for commands a cluster client would send to a random node."""

    def __init__(self, client: Any, node: Any) -> None:
        self._client, self._node = client, node

    def ping(self) -> Any:
        return self._client.ping(target_nodes=self._node)

    def info(self, section: str) -> Any:
        return self._client.info(section, target_nodes=self._node)

    def config_get(self, key: str) -> Any:
        return self._client.config_get(key, target_nodes=self._node)


def _nodes(client: Any) -> list[tuple[str, Any]]:
    if isinstance(client, redis.cluster.RedisCluster):
        primaries: list[Any] = cast(Any, client).get_primaries()
        return [(n.name, _Node(client, n)) for n in primaries]
    return [("server", client)]


def _data(url: str) -> Check:
    """The backend opens (its scripts load) and the newest sessions read back."""

    async def sample() -> int:
        async with open_store(url) as store:
            metas = await store.list_sessions(limit=20)
            for meta in metas:
                await store.load_session(meta.session_id, tail=1)
            return len(metas)

    try:
        read = run(sample)
    except CommandError as exc:
        return Check(
            "data",
            FAIL,
            str(exc.message),
            "data under this key prefix was written by another release or another "
            "application; export what reads, then delete the rest",
        )
    except MemoryError as exc:  # pragma: no cover - run() maps these to CommandError
        return Check("data", FAIL, str(exc))
    return Check("data", OK, f"the backend's scripts load; the {read} newest sessions read back")


def _config(node: Any, key: str) -> str | None:
    reply = node.config_get(key)
    value = reply.get(key) if isinstance(reply, dict) else None
    return None if value is None else str(value)


def _config_checks(node: Any, label: str) -> Iterator[Check]:
    try:
        save, aof = _config(node, "save"), _config(node, "appendonly")
        fsync, maxmemory = _config(node, "appendfsync"), _config(node, "maxmemory")
        policy = _config(node, "maxmemory-policy")
    except redis.RedisError as exc:
        yield Check(
            "config",
            WARN,
            f"{label}cannot read the server's configuration ({exc}): "
            "persistence and eviction not checked",
            "run the doctor as a user allowed CONFIG GET, or check redis.conf by hand",
        )
        return
    yield _persistence(label, save or "", aof == "yes", fsync)
    if maxmemory not in (None, "0") and policy != "noeviction":
        yield Check(
            "eviction",
            FAIL,
            f"{label}maxmemory {maxmemory} with maxmemory-policy "
            f"{policy}: when memory is full Redis drops keys, and sessions lose data "
            "without an error",
            "CONFIG SET maxmemory-policy noeviction (and in redis.conf), or raise maxmemory",
        )
    else:
        yield Check("eviction", OK, f"{label}no eviction (maxmemory {maxmemory}, policy {policy})")


def _persistence(label: str, save: str, aof: bool, fsync: str | None) -> Check:
    if not aof and not save.strip():
        return Check(
            "persistence",
            FAIL,
            f'{label}persistence is off (save "", appendonly '
            "no): a restart of Redis loses every session",
            "CONFIG SET appendonly yes, then CONFIG REWRITE (or set appendonly yes in redis.conf)",
        )
    if not aof:
        return Check(
            "persistence",
            WARN,
            f"{label}RDB snapshots only (save {save}): a crash "
            "loses what was written since the last snapshot",
            "CONFIG SET appendonly yes for committed writes to survive a crash",
        )
    if fsync == "no":
        return Check(
            "persistence",
            WARN,
            f"{label}append-only file with appendfsync no: the "
            "OS decides when writes reach the disk",
            "CONFIG SET appendfsync everysec (at most a second lost) or always",
        )
    return Check("persistence", OK, f"{label}append-only file, appendfsync {fsync}")
