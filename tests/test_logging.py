"""Logging: one ``langswarm.memory`` tree with a NullHandler at its top, lifecycle at INFO with
structured fields, and a storage outage logged once when it starts and once when it ends."""

from __future__ import annotations

import ast
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from langswarm.core.memory import MemoryManager, _health
from tests._servers import RedisServer
from tests.helpers import user_message

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "langswarm"
TREE = "langswarm.memory"
#: How long the tests freeze redis-server.
OUTAGE = 3.0


def ours(records: list[logging.LogRecord], level: int) -> list[logging.LogRecord]:
    return [r for r in records if r.name.startswith(TREE) and r.levelno == level]


def test_every_logger_of_the_package_is_in_one_tree() -> None:
    names: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("getLogger"):
                if not node.args:
                    continue  # the root logger: the command line sets up where logs go
                [argument] = node.args
                assert isinstance(argument, ast.Constant), f"{path}: a logger named at runtime"
                names[str(path.relative_to(ROOT))] = str(argument.value)
    assert names, "the scan should find the package's loggers"
    outside = {path: name for path, name in names.items() if not name.startswith(TREE)}
    assert outside == {}
    assert "langswarm/core/memory/backends/redis/backend.py" in names


def test_the_top_of_the_tree_has_a_null_handler() -> None:
    import langswarm.core.memory  # noqa: F401

    handlers = logging.getLogger(TREE).handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_an_application_without_logging_set_up_sees_no_output(tmp_path: Path) -> None:
    """A WARNING (a session crash) reaches no handler: Python's last-resort handler, which
    prints to stderr, stays silent because the tree has a handler."""
    code = """
import anyio
from langswarm.core.memory import MemoryManager, Message, MessageRole

async def main():
    async with MemoryManager.from_config("development") as memory:
        session = await memory.create_session("u", "s")
        runtime = await memory._ensure()
        runtime.registry.live["s"].tail.next += 1
        try:
            await session.add_message(Message(MessageRole.USER, "crash"))
        except Exception:
            pass
        await session.get_messages()
        assert runtime.registry.restarts == 1

anyio.run(main)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


async def test_opening_and_closing_are_logged_at_info(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger=TREE)
    memory = MemoryManager.from_config(
        memory={"backend": "sqlite", "config": {"db_path": str(tmp_path / "m.db")}}
    )
    async with memory:
        session = await memory.create_session("u", "s")
        await session.add_message(user_message("hello"))
    started, stopped = ours(caplog.records, logging.INFO)
    assert started.name == "langswarm.memory.runtime"
    assert "started on the sqlite backend" in started.getMessage()
    assert "stopped" in stopped.getMessage() and "2 writes stored" in stopped.getMessage()
    for record in (started, stopped):
        assert record.__dict__["backend"] == "sqlite"
    assert stopped.__dict__["duration"] > 0
    assert ours(caplog.records, logging.WARNING) == []


class Announcer(logging.Handler):
    """Sets ``seen`` when a WARNING from the tree arrives (so the test knows the outage was
    noticed without polling)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(TREE):
            self.seen.set()


async def outage(server: RedisServer, socket_timeout: float, caplog: Any) -> float:
    """Freeze redis for ``OUTAGE`` seconds while a committed write waits; return how long
    the write took."""
    announcer = Announcer()
    logging.getLogger(TREE).addHandler(announcer)
    caplog.set_level(logging.DEBUG, logger=TREE)
    config = {"url": server.url, "socket_timeout": socket_timeout}
    try:
        async with MemoryManager.from_config(
            memory={"backend": "redis", "config": config}
        ) as memory:
            session = await memory.create_session("u", "s")
            caplog.clear()
            server.pause()
            frozen = time.monotonic()
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(session.add_message, user_message("during the outage"))
                    with anyio.fail_after(OUTAGE + 5):
                        await announcer.seen.wait()
                    await anyio.sleep(OUTAGE - (time.monotonic() - frozen))
                    server.resume()
            finally:
                server.resume()
            took = time.monotonic() - frozen
            assert [m.content for m in await session.get_messages()] == ["during the outage"]
    finally:
        logging.getLogger(TREE).removeHandler(announcer)
    return took


@pytest.mark.parametrize(
    "socket_timeout",
    [
        pytest.param(0.3, id="calls-time-out"),  # each attempt fails: many retries
        pytest.param(5.0, id="calls-hang"),  # the default: one attempt waits the outage out
    ],
)
async def test_a_redis_outage_logs_one_warning_and_one_info_with_its_duration(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture, socket_timeout: float
) -> None:
    took = await outage(private_redis, socket_timeout, caplog)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1, [r.getMessage() for r in loud]
    [warning] = loud
    assert warning.name == "langswarm.memory.storage"
    assert warning.__dict__["backend"] == "redis"
    assert "redis store" in warning.getMessage()
    ended = [r for r in ours(caplog.records, logging.INFO) if "answering again" in r.getMessage()]
    assert len(ended) == 1
    [info] = ended
    duration = info.__dict__["duration"]
    assert OUTAGE - 0.5 <= duration <= took + 0.1
    assert f"{duration:.1f} s" in info.getMessage()
    retries = [r for r in ours(caplog.records, logging.DEBUG) if "retrying" in r.getMessage()]
    if socket_timeout < OUTAGE:
        assert "attempt" in warning.__dict__
        assert len(retries) >= 2  # every retry after the first is at DEBUG only
        assert info.__dict__["attempt"] == len(retries) + 1
    else:
        assert "has not answered for" in warning.getMessage()
        assert retries == []


async def test_a_long_outage_is_recalled_at_most_once_per_interval(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_health, "REMIND_EVERY", 1.0)
    took = await outage(private_redis, 0.2, caplog)
    warnings = ours(caplog.records, logging.WARNING)
    reminders = [r for r in warnings if "still failing" in r.getMessage()]
    assert len(warnings) == 1 + len(reminders)
    assert 1 <= len(reminders) <= int(took)
    assert all(re.search(r"after \d+ s \(\d+ failed attempts\)", r.getMessage()) for r in reminders)
    retries = [r for r in ours(caplog.records, logging.DEBUG) if "retrying" in r.getMessage()]
    assert len(retries) > len(reminders)
