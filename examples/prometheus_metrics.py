"""Export langswarm memory's metrics to Prometheus, and answer readiness probes.

    pip install 'opentelemetry-sdk' 'opentelemetry-exporter-prometheus'
    python examples/prometheus_metrics.py [--port 9464] [--db chat.db] [--serve]

The library reports through ``opentelemetry-api`` to whatever meter provider the application
installs; here that is the SDK with a Prometheus reader, served by ``prometheus_client`` on
``http://127.0.0.1:PORT/metrics``. The script runs a few agent turns, then prints the
``langswarm_memory_*`` series a scrape returns and the ``health()`` report a readiness probe
would use. With ``--serve`` it keeps the endpoint up (and the sessions live) until Ctrl-C.

Prometheus names follow the OpenTelemetry ones: ``langswarm.memory.messages`` becomes
``langswarm_memory_messages_total``, ``langswarm.memory.commit.duration`` (seconds)
``langswarm_memory_commit_duration_seconds_bucket|sum|count``; see docs/observability.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import urllib.request
from pathlib import Path

import anyio
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import start_http_server

from langswarm.core.memory import MemoryManager, create_openai_message


def install_prometheus(port: int) -> str:
    """Serve every OpenTelemetry metric of this process at ``/metrics``; return its URL."""
    server, _ = start_http_server(port, addr="127.0.0.1")
    metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
    return f"http://127.0.0.1:{server.server_port}/metrics"


async def agent_turns(memory: MemoryManager, users: int, turns: int) -> None:
    async def user(i: int) -> None:
        session = await memory.get_or_create_session(f"user{i}", f"chat:{i}")
        for turn in range(turns):
            await session.add_message(create_openai_message("user", f"question {turn}"))
            await session.get_conversation_context(max_tokens=2000)
            await session.add_message(create_openai_message("assistant", f"answer {turn}"))

    async with anyio.create_task_group() as tg:
        for i in range(users):
            tg.start_soon(user, i)


def scrape(url: str) -> list[str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text: str = response.read().decode()
    return [line for line in text.splitlines() if line.startswith("langswarm_memory_")]


async def main(port: int, db: Path, serve: bool) -> None:
    url = install_prometheus(port)
    memory = MemoryManager.from_config(memory={"backend": "sqlite", "config": {"db_path": str(db)}})
    async with memory:
        await agent_turns(memory, users=20, turns=5)
        print(f"# scraped from {url}")
        for line in await anyio.to_thread.run_sync(scrape, url):
            print(line)
        print("# memory.health()")
        print(json.dumps(await memory.health(), indent=2))
        if serve:
            print(f"serving {url}; Ctrl-C to stop")
            await anyio.sleep_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--db", type=Path, default=None, help="SQLite file (default: temporary)")
    parser.add_argument("--serve", action="store_true", help="keep serving until Ctrl-C")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, args.port, args.db or Path(tmp) / "memory.db", args.serve)
