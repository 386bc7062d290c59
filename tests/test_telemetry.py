"""Metrics and traces: known workloads give known counts, histograms and gauges fill, spans
nest under the application's; without OpenTelemetry the library runs unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langswarm.core.memory import MemoryManager, _telemetry
from langswarm.core.memory.backends.memory import InMemoryBackend
from langswarm.core.memory.exceptions import MemoryError, SessionFailedError
from tests._servers import RedisServer
from tests.helpers import GatedBackend, manager_on, user_message

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
SETTLE = 10


class Otel:
    """An SDK meter provider read on demand and a tracer provider kept in memory."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.spans = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.spans))

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data is not None else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def value(self, name: str, **attributes: str) -> float:
        """Sum of a counter's or gauge's points having these attributes."""
        return sum(
            float(p.value)
            for p in self.points(name)
            if all(p.attributes.get(k) == v for k, v in attributes.items())
        )

    def histogram(self, name: str, **attributes: str) -> tuple[int, float]:
        """(count, sum) of a histogram's points having these attributes."""
        chosen = [
            p
            for p in self.points(name)
            if all(p.attributes.get(k) == v for k, v in attributes.items())
        ]
        return sum(p.count for p in chosen), sum(p.sum for p in chosen)


@pytest.fixture
def otel() -> Iterator[Otel]:
    found = Otel()
    _telemetry.configure(meter_provider=found.meters, tracer_provider=found.tracers)
    try:
        yield found
    finally:
        _telemetry.configure()  # the global providers again, as when nothing is configured
        found.meters.shutdown()
        found.tracers.shutdown()


def sqlite_manager(path: Path, **options: Any) -> MemoryManager:
    return MemoryManager.from_config(
        memory={"backend": "sqlite", "config": {"db_path": str(path)}, **options}
    )


async def test_a_known_workload_yields_the_expected_counts(otel: Otel, tmp_path: Path) -> None:
    async with sqlite_manager(tmp_path / "m.db") as memory:
        session = await memory.create_session("u", "s0")  # one batch: the creation
        for i in range(5):  # committed: one batch each
            await session.add_message(user_message(f"m{i}"))
        assert otel.value("langswarm.memory.batches", outcome="stored") == 6
        assert otel.value("langswarm.memory.messages", backend="sqlite") == 5
        assert otel.histogram("langswarm.memory.batch.size") == (6, 6)
        count, waited = otel.histogram("langswarm.memory.commit.duration", backend="sqlite")
        assert count == 6 and waited > 0

        async def chat(i: int) -> None:
            other = await memory.create_session(f"user{i}", f"s{i + 1}")
            for j in range(10):
                await other.add_message(user_message(f"{i}-{j}"))

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(chat, i)
        runtime = await memory._ensure()
        batches = runtime.flusher.batches
        assert otel.value("langswarm.memory.messages") == 5 + 20 * 10
        assert otel.value("langswarm.memory.batches") == batches
        assert otel.histogram("langswarm.memory.batch.size")[0] == batches
        assert otel.histogram("langswarm.memory.commit.duration")[0] == batches
        assert otel.value("langswarm.memory.sessions.live", backend="sqlite") == 21
        assert otel.value("langswarm.memory.flusher.depth") == 0
        assert otel.value("langswarm.memory.retries") == 0
        assert otel.value("langswarm.memory.errors") == 0
        listed = await memory.backend.list_sessions(limit=5)
        assert len(listed) == 5
        count, _ = otel.histogram("langswarm.memory.call.duration", operation="list_sessions")
        assert count == 1
    commits = [s for s in otel.spans.get_finished_spans() if s.name == "langswarm.memory commit"]
    assert len(commits) == batches
    messages = [(s.attributes or {})["langswarm.memory.batch.messages"] for s in commits]
    assert sum(int(str(n)) for n in messages) == 205
    # A closed runtime is no longer observed (runtimes other tests left open may still be).
    live = otel.points("langswarm.memory.sessions.live")
    assert [p for p in live if p.attributes.get("backend") == "sqlite"] == []


async def test_storage_calls_are_traced_under_the_callers_span(otel: Otel, tmp_path: Path) -> None:
    tracer = otel.tracers.get_tracer("app")
    async with sqlite_manager(tmp_path / "m.db", idle_timeout=0) as memory:
        session = await memory.create_session("u", "s")
        await session.add_message(user_message("hello"))
        runtime = await memory._ensure()
        await runtime.registry.sweep()  # passivated: the next call loads it from storage
        with tracer.start_as_current_span("request") as request:
            again = await memory.get_session("s")
            assert again is not None
    loads = [s for s in otel.spans.get_finished_spans() if s.name.endswith(" load_session")]
    # Two loads: create_session looks for the id first (found none), get_session found it.
    assert len(loads) == 2
    first, second = loads
    assert first.parent is None
    assert second.parent is not None
    assert second.parent.span_id == request.get_span_context().span_id
    assert dict(second.attributes or {})["db.operation.name"] == "load_session"
    assert dict(second.attributes or {})["db.system.name"] == "sqlite"
    count, _ = otel.histogram(
        "langswarm.memory.call.duration", backend="sqlite", operation="load_session"
    )
    assert count == 2


async def test_gauges_show_a_stalled_flusher_and_full_mailboxes(otel: Otel) -> None:
    backend = GatedBackend(InMemoryBackend())
    async with manager_on(backend, flush_capacity=4, mailbox_size=2) as memory:
        session = await memory.create_session("u", "s")
        await session.flush()
        runtime = await memory._ensure()
        backend.close_gate()
        with anyio.fail_after(SETTLE):
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(session.add_message, user_message(f"w{i}"))
                await backend.waiting.wait()
                await wait_all_tasks_blocked()
                depth = otel.value("langswarm.memory.flusher.depth", backend="memory")
                assert depth == runtime.flusher.pending > 0
                queued = otel.value("langswarm.memory.mailbox.depth", backend="memory")
                assert queued == runtime.registry.mailbox_depth() > 0
                assert otel.value("langswarm.memory.flusher.lag") > 0
                backend.gate.set()
        await session.flush()
        assert otel.value("langswarm.memory.flusher.depth") == 0
        assert otel.value("langswarm.memory.mailbox.depth") == 0
        assert otel.value("langswarm.memory.flusher.lag") == 0
        assert otel.value("langswarm.memory.messages") == 20


async def test_restarts_and_failed_sessions_are_counted(otel: Otel) -> None:
    async with manager_on(InMemoryBackend(), max_restarts=1, restart_period=60) as memory:
        session = await memory.create_session("u", "doomed")
        runtime = await memory._ensure()
        for _ in range(2):
            await session.get_messages()  # answered once any rebuild has finished
            runtime.registry.live["doomed"].tail.next += 1  # break its invariants
            with pytest.raises(SessionFailedError):
                await session.add_message(user_message("crash"))
        with pytest.raises(SessionFailedError):
            await session.get_messages()
        assert otel.value("langswarm.memory.restarts", backend="memory") == 1
        errors = otel.value(
            "langswarm.memory.errors", backend="memory", **{"error.type": "session"}
        )
        assert errors == 1
        health = await memory.health()
        assert health["failed_sessions"] == ["doomed"] and health["failed_session_count"] == 1
        assert health["ready"] is True


async def test_retries_and_failed_batches_are_counted(
    otel: Otel, private_redis: RedisServer
) -> None:
    memory = MemoryManager.from_config(
        memory={
            "backend": "redis",
            "config": {"url": private_redis.url, "socket_timeout": 0.2, "connect_timeout": 0.2},
            "retry_budget": 1.0,
        }
    )
    async with memory:
        session = await memory.create_session("u", "s")
        private_redis.pause()
        try:
            with pytest.raises(MemoryError):
                await session.add_message(user_message("lost in the outage"))
            health = await memory.health()
            assert health["ready"] is False and health["reachable"] is False
            assert health["outage_seconds"] > 0
        finally:
            private_redis.resume()
        await session.add_message(user_message("after"))
        assert (await memory.health())["ready"] is True
        assert otel.value("langswarm.memory.retries", backend="redis") >= 1
        assert otel.value("langswarm.memory.batches", outcome="failed") == 1
        errors = otel.value("langswarm.memory.errors", backend="redis", **{"error.type": "batch"})
        assert errors == 1
        failed = [
            s for s in otel.spans.get_finished_spans() if s.status.status_code.name == "ERROR"
        ]
        assert [s.name for s in failed] == ["langswarm.memory commit"]


async def test_health_reports_an_unreachable_store_without_raising(tmp_path: Path) -> None:
    memory = MemoryManager.from_config(
        memory={"backend": "sqlite", "config": {"db_path": str(tmp_path / "no" / "such.db")}}
    )
    (tmp_path / "no").write_text("a file where the directory should be")
    health = await memory.health()
    assert health["ready"] is False and health["reachable"] is False
    assert health["backend"] == "sqlite" and health["error"]


# -- without OpenTelemetry -------------------------------------------------------------------

WORKLOAD = """
import anyio, sys
from langswarm.core.memory import MemoryManager, Message, MessageRole

async def main(path):
    for memory in (
        MemoryManager.from_config("development"),
        MemoryManager.from_config(memory={"backend": "sqlite", "config": {"db_path": path}}),
    ):
        async with memory:
            session = await memory.create_session("u", "s")
            for i in range(20):
                await session.add_message(Message(MessageRole.USER, f"m{i}"))
            context = await session.get_conversation_context(max_tokens=1000)
            assert len(context) == 20, context
            assert (await memory.health())["ready"] is True
            stats = await memory.get_system_stats()
            assert stats["total_messages"] == 20, stats

for backend in ("asyncio", "trio"):
    anyio.run(main, sys.argv[1] + backend, backend=backend)
"""

BLOCKED = """
import sys

class NoOpenTelemetry:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, NoOpenTelemetry())
"""


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LANGSWARM_MEMORY_URL", None)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


def test_without_opentelemetry_the_library_imports_and_runs(tmp_path: Path) -> None:
    check = """
from langswarm.core.memory import _telemetry
assert not _telemetry.telemetry.on
assert not any(name.startswith("opentelemetry") for name in sys.modules)
print("ran without opentelemetry")
"""
    code = BLOCKED + "\ntry:\n    import opentelemetry\nexcept ImportError:\n    pass\n"
    code += "else:\n    raise SystemExit('the block did not hold')\n"
    result = run_python(code + WORKLOAD + check, str(tmp_path / "m.db"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ran without opentelemetry"


def test_importing_the_library_does_not_import_opentelemetry() -> None:
    code = """
import sys
import langswarm.core.memory
assert not any(name.startswith("opentelemetry") for name in sys.modules), "imported early"
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr


def test_the_global_providers_receive_reports_even_when_installed_late(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import anyio, sys
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from langswarm.core.memory import MemoryManager, Message, MessageRole

        async def main():
            memory = MemoryManager.from_config(
                memory={"backend": "sqlite", "config": {"db_path": sys.argv[1]}}
            )
            async with memory:  # reporting starts before the SDK is installed
                reader = InMemoryMetricReader()
                metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
                session = await memory.create_session("u", "s")
                for i in range(3):
                    await session.add_message(Message(MessageRole.USER, f"m{i}"))
                data = reader.get_metrics_data()
            found = {
                m.name: sum(p.value for p in m.data.data_points)
                for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
                if m.name in ("langswarm.memory.messages", "langswarm.memory.batches")
            }
            print(found["langswarm.memory.messages"], found["langswarm.memory.batches"])

        anyio.run(main)
        """
    )
    result = run_python(code, str(tmp_path / "m.db"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "4"]
