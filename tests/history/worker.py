"""One worker process of the history tests: random calls on shared sessions, each one logged.

Run as ``python -m tests.history.worker --store URL --loop asyncio|trio --seed N
--process-id P --sessions s1,s2 --users u1,u2 --duration SECONDS --log FILE``. A few tasks
share one ``MemoryManager`` (as the request handlers of one server process would) and call
only the public API. Every call is logged as two JSON lines, written and flushed before and
after the call, with ``time.monotonic_ns()`` stamps (CLOCK_MONOTONIC is one clock for every
process on Linux), so a SIGKILL leaves a log that still shows which calls were acknowledged.
Every message says who wrote it: id ``user.pP.tT.n``, content ``user|pP|tT|n``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

import anyio

from langswarm.core.memory import (
    MemoryError,
    MemoryManager,
    MemorySession,
    Message,
    MessageRole,
)
from tests.history.checker import FinalSession, Op

__all__ = ["expected_content", "load_history", "main", "memory_config", "read_final_state"]

#: Relative weights of the operations a task picks while it holds a session handle
#: (``--churn`` scales archive and delete).
WEIGHTS: dict[str, float] = {
    "add_one": 30,
    "add_many": 12,
    "read": 22,
    "context": 12,
    "metadata": 7,
    "open": 6,
    "summarize": 3,
    "archive": 0.7,
    "delete": 1.3,
}
CONTEXT_BUDGETS = (120, 250, 500)
PAUSE = (0.004, 0.02)  # seconds between a task's calls: modest per-process rates
PROGRESS_EVERY = 20

Call = Callable[[], Awaitable[dict[str, Any]]]


def memory_config(store: str) -> dict[str, Any]:
    """The ``memory=`` dict for a store URL: ``sqlite:///path`` or a redis URL."""
    if store.startswith("sqlite:///"):
        return {"backend": "sqlite", "config": {"db_path": store[len("sqlite:///") :]}}
    if store.startswith(("redis://", "rediss://", "redis+cluster://")):
        return {"backend": "redis", "config": {"url": store}}
    raise ValueError(f"unknown store URL {store!r}")


def expected_content(message_id: str) -> str:
    """What a message with this id was written with."""
    return message_id.replace(".", "|")


def _mismatched(messages: list[Message]) -> list[str]:
    return [m.message_id for m in messages if m.content != expected_content(m.message_id)]


class HistoryLog:
    """JSON lines, each flushed as soon as it is written."""

    def __init__(self, file: TextIO) -> None:
        self._file = file

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()


def _op(invoke: dict[str, Any], done: dict[str, Any] | None) -> Op:
    keys = ("op_id", "process", "task", "seq", "op", "session", "user", "args")
    fields = {k: invoke[k] for k in keys}
    if done is None:
        return Op(**fields, inv=invoke["t"])
    error = done.get("error") or {}
    return Op(
        **fields,
        inv=invoke["t"],
        end=done["t"],
        ok=bool(done["ok"]),
        result=done.get("result") or {},
        error=error.get("type"),
        message=error.get("message", ""),
        ours=error.get("memory_error", True),
    )


def load_history(paths: Iterable[Path]) -> list[Op]:
    """Every call in the logs, by invocation time; a call with no ``complete`` line ended
    with its process. A torn last line (a killed writer) is ignored."""
    records: dict[str, dict[str, dict[str, Any]]] = {"invoke": {}, "complete": {}}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("kind") in records:
                records[record["kind"]][record["op_id"]] = record
    done = records["complete"]
    ops = [_op(invoke, done.get(op_id)) for op_id, invoke in records["invoke"].items()]
    return sorted(ops, key=lambda o: o.inv)


class Progress:
    """Counts calls begun and reports every few on stdout, just after logging the call and
    before making it: the test's trigger for a SIGKILL that lands while a call is in flight."""

    def __init__(self) -> None:
        self.begun = 0

    def tick(self) -> None:
        self.begun += 1
        if self.begun % PROGRESS_EVERY == 0:
            print(f"progress {self.begun}", flush=True)


class Task:
    """One sequential stream of calls; it keeps a handle per session, as a server would."""

    def __init__(
        self, manager: MemoryManager, args: argparse.Namespace, index: int, log: HistoryLog
    ) -> None:
        self.manager = manager
        self.process: int = args.process_id
        self.index = index
        self.log = log
        self.sessions: list[str] = args.sessions
        self.users: list[str] = args.users
        self.rng = random.Random(args.seed * 1_000_003 + self.process * 101 + index)
        churn = {"archive": args.churn, "delete": args.churn}
        self.ops = list(WEIGHTS)
        self.weights = [WEIGHTS[op] * churn.get(op, 1.0) for op in self.ops]
        self.handles: dict[str, tuple[str, MemorySession]] = {}
        self.user_for: dict[str, str] = {
            sid: self.users[i % len(self.users)] for i, sid in enumerate(self.sessions)
        }
        self.archived: set[str] = set()
        self.deleted_by_me: set[str] = set()
        self.calls = 0
        self.written = 0
        self.meta_value = 0

    # -- choosing -------------------------------------------------------------------------

    def _choose(self, sid: str) -> str:
        if sid not in self.handles:
            return "open"
        if sid in self.archived and self.rng.random() < 0.25:
            return "delete"
        return self.rng.choices(self.ops, weights=self.weights)[0]

    def _open_user(self, sid: str) -> str:
        """Usually the user last seen owning ``sid``; now and then (often after this task
        deleted it) another one, so sessions get re-created by other users."""
        user = self.user_for[sid]
        switch = 0.5 if sid in self.deleted_by_me else 0.1
        if self.rng.random() < switch:
            user = self.rng.choice(self.users)
        return user

    def _messages(self, user: str, count: int) -> list[Message]:
        out: list[Message] = []
        for _ in range(count):
            self.written += 1
            mid = f"{user}.p{self.process}.t{self.index}.{self.written}"
            role = self.rng.choice((MessageRole.USER, MessageRole.ASSISTANT))
            out.append(Message(role=role, content=expected_content(mid), message_id=mid))
        return out

    # -- calls ----------------------------------------------------------------------------

    def _plan(self, op: str, sid: str, user: str) -> tuple[dict[str, Any], Call]:
        """The logged arguments of ``op`` and the call that performs it."""
        if op == "open":
            return {}, lambda: self._open(sid, user)
        handle = self.handles[sid][1]
        if op in ("add_one", "add_many"):
            batch = self._messages(user, 1 if op == "add_one" else self.rng.randint(2, 4))
            return {"ids": [m.message_id for m in batch]}, lambda: self._add(handle, batch)
        if op == "read":
            return {}, lambda: self._read(handle)
        if op == "context":
            budget = self.rng.choice(CONTEXT_BUDGETS)
            return {"max_tokens": budget}, lambda: self._context(handle, budget)
        if op == "metadata":
            self.meta_value += 1
            key, value = f"k_p{self.process}t{self.index}", self.meta_value
            return {"key": key, "value": value}, lambda: self._metadata(handle, key, value)
        if op == "summarize":
            return {}, lambda: self._summarize(handle)
        if op == "archive":
            return {}, lambda: self._archive(handle)
        assert op == "delete", op
        return {}, lambda: self._delete(handle)

    async def _open(self, sid: str, user: str) -> dict[str, Any]:
        session = await self.manager.get_or_create_session(user, sid)
        self.handles[sid] = (user, session)
        meta = session.metadata
        return {"owner": meta.user_id, "status": meta.status.value}

    async def _add(self, handle: MemorySession, batch: list[Message]) -> dict[str, Any]:
        if len(batch) == 1:
            await handle.add_message(batch[0])
        else:
            await handle.add_messages(batch)
        return {}

    async def _read(self, handle: MemorySession) -> dict[str, Any]:
        found = await handle.get_messages()
        return {"ids": [m.message_id for m in found], "bad": _mismatched(found)}

    async def _context(self, handle: MemorySession, budget: int) -> dict[str, Any]:
        found = await handle.get_conversation_context(max_tokens=budget)
        return {"ids": [m.message_id for m in found], "bad": _mismatched(found)}

    async def _metadata(self, handle: MemorySession, key: str, value: int) -> dict[str, Any]:
        await handle.update_metadata({key: value})
        return {"metadata": handle.metadata.metadata}

    async def _summarize(self, handle: MemorySession) -> dict[str, Any]:
        summary = await handle.create_summary()
        return {"covers_through": summary.covers_through, "count": summary.message_count}

    async def _archive(self, handle: MemorySession) -> dict[str, Any]:
        await handle.archive_session()
        return {}

    async def _delete(self, handle: MemorySession) -> dict[str, Any]:
        await handle.delete_session()
        return {}

    # -- the loop -------------------------------------------------------------------------

    def _after(self, op: str, sid: str, user: str, error: Exception | None) -> None:
        """Bookkeeping from a call's outcome: learn owners, drop handles of deleted sessions,
        remember archived ones (a task that finds one archived soon deletes it)."""
        kind = None if error is None else type(error).__name__
        if kind == "SessionOwnershipError":
            self.user_for[sid] = self.rng.choice([u for u in self.users if u != user] or [user])
        elif op == "open" and kind is None:
            self.user_for[sid] = user
            self.deleted_by_me.discard(sid)
        if kind == "SessionNotFoundError" or (op == "delete" and kind is None):
            self.handles.pop(sid, None)
            self.archived.discard(sid)
            if op == "delete" and kind is None:
                self.deleted_by_me.add(sid)
        elif (op == "archive" and kind is None) or (
            op in ("add_one", "add_many") and kind == "MemoryValidationError"
        ):
            self.archived.add(sid)

    async def step(self, progress: Progress) -> None:
        sid = self.rng.choice(self.sessions)
        op = self._choose(sid)
        user = self._open_user(sid) if op == "open" else self.handles[sid][0]
        args, call = self._plan(op, sid, user)
        self.calls += 1
        op_id = f"p{self.process}t{self.index}o{self.calls}"
        base = {"op_id": op_id, "process": self.process, "task": self.index, "seq": self.calls}
        self.log.write(
            {
                "kind": "invoke",
                **base,
                "op": op,
                "session": sid,
                "user": user,
                "args": args,
                "t": time.monotonic_ns(),
            }
        )
        progress.tick()
        error: Exception | None = None
        try:
            result = await call()
        except Exception as exc:
            done = time.monotonic_ns()
            error = exc
            outcome: dict[str, Any] = {
                "ok": False,
                "error": {
                    "type": type(exc).__name__,
                    "message": str(exc)[:300],
                    "memory_error": isinstance(exc, MemoryError),
                },
            }
        else:
            done = time.monotonic_ns()
            outcome = {"ok": True, "result": result}
        self.log.write({"kind": "complete", "op_id": op_id, "t": done, **outcome})
        self._after(op, sid, user, error)

    async def run(self, deadline: float, progress: Progress) -> None:
        while time.monotonic() < deadline:
            await self.step(progress)
            await anyio.sleep(self.rng.uniform(*PAUSE))


async def _warm_up(manager: MemoryManager, process: int) -> None:
    """Use a private session once, so no logged call pays for loading the tokenizer or for
    the first connections (four processes loading it at once stall for seconds)."""
    session = await manager.get_or_create_session("warm-up", f"warm-up-p{process}")
    await session.add_message(Message(role=MessageRole.USER, content="warm-up"))
    await session.get_conversation_context(max_tokens=100)
    await session.delete_session()


async def _serve(args: argparse.Namespace, log: HistoryLog) -> None:
    manager = MemoryManager.from_config(
        memory=memory_config(args.store), durability=args.durability
    )
    async with manager:
        await _warm_up(manager, args.process_id)
        print("ready", flush=True)
        if args.wait_for_go:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if line.strip() != "go":
                raise SystemExit(f"expected 'go' on stdin, got {line!r}")
        log.write({"kind": "go", "process": args.process_id, "t": time.monotonic_ns()})
        deadline = time.monotonic() + args.duration
        progress = Progress()
        async with anyio.create_task_group() as tg:
            for index in range(args.tasks):
                tg.start_soon(Task(manager, args, index, log).run, deadline, progress)
    log.write({"kind": "end", "process": args.process_id, "t": time.monotonic_ns()})


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="One worker process of the history tests.")
    parser.add_argument("--store", required=True)
    parser.add_argument("--loop", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--sessions", type=lambda s: s.split(","), default=["s0", "s1", "s2"])
    parser.add_argument("--users", type=lambda s: s.split(","), default=["u0", "u1"])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument(
        "--churn", type=float, default=1.0, help="scales how often sessions are archived/deleted"
    )
    parser.add_argument("--log", required=True)
    parser.add_argument("--durability", choices=("committed", "buffered"), default="committed")
    parser.add_argument(
        "--wait-for-go", action="store_true", help="print 'ready', then wait for 'go' on stdin"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    with open(args.log, "a", encoding="utf-8") as file:
        log = HistoryLog(file)
        log.write(
            {
                "kind": "start",
                "process": args.process_id,
                "store": args.store,
                "loop": args.loop,
                "seed": args.seed,
                "t": time.monotonic_ns(),
            }
        )
        try:
            anyio.run(_serve, args, log, backend=args.loop)
        except Exception as exc:
            log.write({"kind": "fatal", "process": args.process_id, "error": repr(exc)[:500]})
            raise
    return 0


async def read_final_state(store: str, sessions: list[str]) -> dict[str, FinalSession | None]:
    """Every session as a fresh process sees it once the workers are gone."""
    final: dict[str, FinalSession | None] = {}
    async with MemoryManager.from_config(memory=memory_config(store)) as manager:
        for sid in sessions:
            session = await manager.get_session(sid)
            if session is None:
                final[sid] = None
                continue
            found = await session.get_messages()
            meta = session.metadata
            final[sid] = FinalSession(
                owner=meta.user_id,
                status=meta.status.value,
                metadata=dict(meta.metadata),
                ids=[m.message_id for m in found],
                bad=_mismatched(found),
            )
    return final


if __name__ == "__main__":
    sys.exit(main())
