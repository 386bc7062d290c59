"""Shared fixtures: both event loops, real SQLite files and real redis-server processes."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.standin_fixtures import llm_standin  # noqa: F401  (a shared fixture)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs once on asyncio and once on trio."""
    return str(request.param)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server process started by the tests on a free loopback port."""

    port: int
    directory: Path
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; the README test command installs it")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--daemonize",
                "no",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start within 10 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def flushall(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(16)


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
def redis_url(redis_server: RedisServer) -> str:
    """URL of the shared test redis-server, flushed before the test."""
    redis_server.flushall()
    return redis_server.url


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
