"""Start child processes, wait for their readiness lines, and talk to them in JSON lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
#: Longest wait for one reply or one readiness line; a wedged child fails the test, not CI.
REPLY_TIMEOUT = 90.0
_MAX_LINE = 1 << 24

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """One reply from a driver child: a value, or the class name of what the call raised."""

    value: Any = None
    error: str | None = None
    detail: str = ""
    done: int = 0

    def unwrap(self) -> Any:
        if self.error is not None:
            raise AssertionError(f"child call failed: {self.error}: {self.detail}")
        return self.value

    def refused(self, *errors: str) -> str:
        """``"refused"`` if the call raised one of ``errors``; else what it did instead."""
        if self.error in errors:
            return "refused"
        if self.error is None:
            return f"succeeded: {self.value!r}"
        return f"{self.error}: {self.detail}"


class Child:
    """A child process whose stdout carries one JSON object per line."""

    def __init__(self, name: str, process: Process, log: Path) -> None:
        assert process.stdout is not None
        self.name = name
        self.process = process
        self.log = log
        self._lines = BufferedByteReceiveStream(process.stdout)

    async def line(self) -> dict[str, Any]:
        with anyio.fail_after(REPLY_TIMEOUT):
            try:
                raw = await self._lines.receive_until(b"\n", _MAX_LINE)
            except (anyio.IncompleteRead, anyio.EndOfStream):
                raise AssertionError(f"{self.name} exited early:\n{self.log_tail()}") from None
        result: dict[str, Any] = json.loads(raw)
        return result

    async def send(self, op: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(json.dumps({"op": op, **fields}).encode() + b"\n")

    async def reply(self) -> Outcome:
        line = await self.line()
        if "error" in line:
            return Outcome(error=line["error"], detail=line["detail"], done=line["done"])
        return Outcome(value=line["ok"])

    async def ask(self, op: str, **fields: Any) -> Outcome:
        await self.send(op, **fields)
        return await self.reply()

    async def quit(self) -> None:
        """Close the child's manager (everything it acknowledged is flushed), then its exit."""
        await self.send("quit")
        assert (await self.line()) == {"ok": "closed"}, self.log_tail()
        with anyio.fail_after(REPLY_TIMEOUT):
            code = await self.process.wait()
        assert code == 0, f"{self.name} exited with {code}:\n{self.log_tail()}"

    async def close(self) -> None:
        """Kill the child if it still runs, and release its pipes."""
        with anyio.CancelScope(shield=True):
            if self.process.returncode is None:
                self.process.kill()
            await self.process.aclose()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


async def start_child(name: str, argv: list[str], log_dir: Path) -> Child:
    """Start ``python -m <argv>`` in the repository root, its stderr to a log file; return
    once it printed its readiness line."""
    log = log_dir / f"{name}.log"
    with log.open("wb") as stderr:
        process = await anyio.open_process(
            [sys.executable, "-m", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=ROOT,
        )
    child = Child(name, process, log)
    try:
        ready = await child.line()
        assert ready.get("ready") is True, ready
    except BaseException:
        await child.close()
        raise
    return child


@asynccontextmanager
async def drivers(
    memory: dict[str, Any], loop: str, log_dir: Path, count: int, *extra: str
) -> AsyncIterator[list[Child]]:
    """``count`` driver children (named A, B, ...) on one store, started in parallel.

    On a clean exit every child quits (flushing its manager) and must exit 0; otherwise the
    survivors are killed.
    """
    children: list[Child | None] = [None] * count
    argv = ["tests.multiprocess.driver", "--memory", json.dumps(memory), "--loop", loop, *extra]

    async def start(index: int) -> None:
        children[index] = await start_child(chr(ord("A") + index), argv, log_dir)

    started: list[Child] = []
    try:
        async with anyio.create_task_group() as tg:
            for index in range(count):
                tg.start_soon(start, index)
        started = [c for c in children if c is not None]
        yield started
        for child in started:
            await child.quit()
    finally:
        for maybe in children:
            if maybe is not None:
                await maybe.close()


class LineWatcher:
    """Reads a process's output line by line (so the pipe never fills) and lets a test wait
    for lines that say something."""

    def __init__(self, stream: ByteReceiveStream) -> None:
        self._stream = BufferedByteReceiveStream(stream)
        self.lines: list[str] = []
        self._changed = anyio.Event()
        self.closed = False

    async def run(self) -> None:
        try:
            while True:
                raw = await self._stream.receive_until(b"\n", _MAX_LINE)
                self.lines.append(raw.decode(errors="replace"))
                self._changed.set()
                self._changed = anyio.Event()
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.ClosedResourceError):
            self.closed = True
            self._changed.set()

    async def wait_for(self, match: Callable[[str], bool], count: int = 1) -> None:
        """Wait until ``count`` lines satisfy ``match``; fail if the stream ends first."""
        with anyio.fail_after(REPLY_TIMEOUT):
            while sum(1 for line in self.lines if match(line)) < count:
                if self.closed:
                    raise AssertionError("output ended early:\n" + "\n".join(self.lines[-40:]))
                await self._changed.wait()


def _worker_pids(lines: list[str]) -> set[str]:
    return {
        line.rsplit("[", 1)[1].strip("]\r ") for line in lines if "Started server process" in line
    }


async def serve_uvicorn(
    app: str,
    workers: int,
    env: dict[str, str],
    log_dir: Path,
    drive: Callable[[str, set[str]], Awaitable[T]],
) -> T:
    """Run ``uvicorn <app> --workers N`` until every worker has started its app, run
    ``drive(base_url, worker_pids)``, then stop it with SIGTERM as a deployment would and
    require a clean stop."""
    port = free_port()
    argv = ["uvicorn", app, "--workers", str(workers), "--host", "127.0.0.1"]
    process = await anyio.open_process(
        [sys.executable, "-m", *argv, "--port", str(port), "--no-access-log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, **env},
        start_new_session=True,  # its own process group: a failed test kills the workers too
    )
    assert process.stderr is not None
    log = LineWatcher(process.stderr)
    failure: Exception | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(log.run)
            try:
                await log.wait_for(lambda line: "Application startup complete" in line, workers)
                result = await drive(f"http://127.0.0.1:{port}", _worker_pids(log.lines))
            except Exception as exc:  # raised as is, below, not inside an exception group
                failure = exc
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.send_signal(signal.SIGTERM)
            with anyio.fail_after(REPLY_TIMEOUT):
                code = await process.wait()
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
            await process.aclose()
        (log_dir / "uvicorn.log").write_text("\n".join(log.lines))
    if failure is not None:
        raise failure
    # Some uvicorn releases re-raise the SIGTERM they handled; either way each worker must
    # have finished its lifespan shutdown (its memory manager closed and flushed).
    stopped = sum(1 for line in log.lines if "Application shutdown complete" in line)
    assert (code in (0, -signal.SIGTERM), stopped) == (True, workers), "\n".join(log.lines[-40:])
    return result
