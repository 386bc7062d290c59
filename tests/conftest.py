"""Shared fixtures: both event loops, real SQLite files and real redis-server processes."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._servers import (
    APP_PASSWORD,
    APP_USER,
    APP_USER_RULES,
    RedisCluster,
    RedisTLSServer,
    redis_tls_missing,
)
from tests._servers import RedisServer as RedisServer  # re-exported for test modules
from tests._servers import free_port as free_port  # re-exported for test modules
from tests.standin_fixtures import llm_standin  # noqa: F401  (a shared fixture)
from tests.store_fixtures import make_memory, memory  # noqa: F401  (shared fixtures)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs once on asyncio and once on trio."""
    return str(request.param)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole run; use ``redis_url`` for a clean database."""
    server = RedisServer(port=free_port(), directory=tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def durable_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server that writes every command to its AOF before answering."""
    server = RedisServer(
        port=free_port(),
        directory=tmp_path,
        extra_args=("--appendonly", "yes", "--appendfsync", "always"),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own (to pause, kill or restart), no persistence."""
    server = RedisServer(port=free_port(), directory=tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the shared test redis-server, flushed before the test."""
    redis_server.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """Three cluster masters for the whole run; use ``redis_cluster_url`` for an empty cluster."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    """``redis+cluster://`` URL of the shared cluster, healed and flushed before the test."""
    redis_cluster.heal()
    redis_cluster.flushall()
    return redis_cluster.url


def _tls_server(
    factory: pytest.TempPathFactory, *, require_client_cert: bool
) -> Iterator[RedisTLSServer]:
    missing = redis_tls_missing()
    if missing is not None:
        pytest.skip(f"this redis-server has no TLS support: {missing}")
    directory = factory.mktemp("redis-tls")
    server = RedisTLSServer(free_port(), directory, require_client_cert=require_client_cert)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTLSServer]:
    """A TLS-only redis-server: ``url`` is ``rediss://``, clients trust ``ca_file``."""
    yield from _tls_server(tmp_path_factory, require_client_cert=False)


@pytest.fixture(scope="session")
def redis_mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTLSServer]:
    """Like ``redis_tls``, but clients must also present ``client_cert``."""
    yield from _tls_server(tmp_path_factory, require_client_cert=True)


@pytest.fixture(scope="session")
def redis_acl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server whose ``default`` user needs ``password``, plus a limited user.

    ``APP_USER`` (``APP_PASSWORD``) may touch only ``langswarm:*`` keys and may not run
    ``@dangerous`` commands; ``redis_acl.acl_url(APP_USER, APP_PASSWORD)`` logs in as it.
    """
    directory = tmp_path_factory.mktemp("redis-acl")
    server = RedisServer(free_port(), directory, password=secrets.token_hex(16))
    try:
        server.start()
        server.set_user(APP_USER, APP_PASSWORD, *APP_USER_RULES)
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., RedisServer]]:
    """Serve a fixed ``host:port`` (as written in the guide) from a private redis-server.

    Name resolution for that one ``(host, port)`` pair is pointed at a server started on a
    free loopback port; every other lookup is untouched.
    """
    real = socket.getaddrinfo
    aliases: dict[tuple[str, int], int] = {}
    servers: list[RedisServer] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            target = aliases.get((host, int(port)))
        except (TypeError, ValueError):
            target = None
        if target is not None:
            return real("127.0.0.1", target, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    def alias(host: str, port: int, *extra_args: str) -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        server = RedisServer(port=free_port(), directory=directory, extra_args=extra_args)
        server.start()
        servers.append(server)
        aliases[(host, port)] = server.port
        return server

    yield alias
    for server in servers:
        server.stop()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> str:
    """A fresh SQLite database file path."""
    return os.fspath(tmp_path / "memory.db")


@pytest.fixture
def read_only_db(sqlite_path: str) -> Iterator[str]:
    """An existing database file that this process cannot write.

    Tests here run as root, and root ignores ``chmod 0o444``. The immutable attribute
    (``chattr +i``) stops root too, and the kernel then refuses a writable open of the file
    exactly as it does for a non-root user on a 0o444 file, so SQLite sees the same thing.
    """
    db = sqlite3.connect(sqlite_path)
    db.execute("CREATE TABLE unrelated (x)")
    db.commit()
    db.close()
    os.chmod(sqlite_path, 0o444)
    immutable = False
    try:
        if os.geteuid() == 0:
            if shutil.which("chattr") is None:
                pytest.skip("running as root and chattr is not installed")
            result = subprocess.run(["chattr", "+i", sqlite_path], capture_output=True)
            if result.returncode != 0:
                pytest.skip(f"cannot make a file read-only for root here: {result.stderr!r}")
            immutable = True
        try:
            with open(sqlite_path, "r+b"):
                pass
        except PermissionError:
            pass
        else:
            pytest.skip("this process can still write a read-only file")
        yield sqlite_path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", sqlite_path], check=True)
        os.chmod(sqlite_path, 0o644)
