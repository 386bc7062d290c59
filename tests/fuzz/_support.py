"""What the fuzz suites share: stores, call outcomes, and a world in which every example runs
beside a canary writer of another user.

Hypothesis runs in a worker thread; each example runs on the test's event loop (asyncio or
trio) through ``anyio.from_thread``. Managers are used the way the guide's global API uses
them (the runtime starts on first use and stops at ``close()``), since one example's task
starts what another's may have to close.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import sniffio
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from langswarm.core.memory import (
    MemoryManager,
    MemorySession,
    Message,
    MessageRole,
    SessionMetadata,
)
from langswarm.core.memory._validate import plain_problem
from langswarm.core.memory.exceptions import MemoryValidationError
from tests.fuzz._compare import Expected, Wrote, assert_messages, assert_reopened, meta_problem

__all__ = [
    "EXAMPLES",
    "Outcome",
    "Store",
    "World",
    "attempt",
    "run_examples",
]

T = TypeVar("T")

#: Examples run per suite case (shrinking included), for the run's summary line.
EXAMPLES: Counter[str] = Counter()
#: Multiplies every suite's example budget (a longer local run: ``LANGSWARM_FUZZ_SCALE=10``).
SCALE = float(os.environ.get("LANGSWARM_FUZZ_SCALE", "1"))
#: Mixed into every seed; runs are reproducible for one value (default: the empty salt).
SALT = os.environ.get("LANGSWARM_FUZZ_SEED", "")
#: Longest one example may take before it counts as hung.
EXAMPLE_SECONDS = 30.0
#: Longest a failed example's world may take to close before it is left behind.
ABANDON_SECONDS = 5.0
FUZZ = settings(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


# -- outcomes -------------------------------------------------------------------------------


@dataclass
class Outcome(Generic[T]):
    """What one call did: returned ``value`` or raised ``error``."""

    value: T | None = None
    error: Exception | None = None

    def refused(self, *also: type[Exception]) -> bool:
        """Whether the call was refused with ``MemoryValidationError`` (or one of ``also``);
        ``False`` if it succeeded. Any other error fails the test."""
        error = self.error
        if error is None:
            return False
        if isinstance(error, (MemoryValidationError, *also)):
            return True
        raise AssertionError(
            f"expected success or MemoryValidationError, got {type(error).__name__}: {error}"
        ) from error

    def result(self) -> T:
        assert self.error is None, f"unexpected {self.error!r}"
        return self.value  # type: ignore[return-value]


async def attempt(call: Callable[[], Awaitable[T]]) -> Outcome[T]:
    try:
        return Outcome(value=await call())
    except Exception as exc:
        return Outcome(error=exc)


# -- stores and worlds ----------------------------------------------------------------------


@dataclass
class Store:
    """A backend kind and where its data lives. In memory, "reopening" reuses the one manager
    that holds the data; elsewhere each manager is new and reads the store afresh."""

    kind: str
    config: dict[str, Any]
    _kept: MemoryManager | None = field(default=None, init=False, repr=False)
    _spawned: itertools.count[int] = field(
        default_factory=lambda: itertools.count(1), init=False, repr=False
    )

    @property
    def persistent(self) -> bool:
        return self.kind != "memory"

    def fresh(self) -> Store:
        """An empty store of the same kind: a new file, a new key prefix, a new backend."""
        tag = next(self._spawned)
        config = dict(self.config)
        if self.kind == "sqlite":
            config["db_path"] = f"{config['db_path']}.{tag}"
        elif self.kind == "redis":
            config["key_prefix"] = f"{config.get('key_prefix', 'langswarm')}.{tag}"
        return Store(self.kind, config)

    def manager(self, durability: str = "committed", **options: Any) -> MemoryManager:
        memory: dict[str, Any] = {"backend": self.kind, "config": self.config}
        memory |= {"durability": durability, "shutdown_grace": 2.0, **options}
        if self.persistent:
            return MemoryManager.from_config(memory=memory)
        if self._kept is None:
            self._kept = MemoryManager.from_config(memory=memory)
        return self._kept


class World:
    """A writer manager with a canary session of its own user, a reader manager on the same
    store (in memory: the writer), and what every session must hold."""

    def __init__(self, store: Store, durability: str) -> None:
        self.store, self.durability = store, durability
        self.writer = store.manager(durability)
        self.reader = store.manager(durability) if store.persistent else self.writer
        self.sessions: dict[str, Expected] = {}
        self.canary_user = f"canary-{secrets.token_hex(6)}"
        self.canary_sent: list[Wrote] = []
        self._canary: MemorySession | None = None
        self._numbers = itertools.count()

    def number(self) -> int:
        """A number no other example of this world has."""
        return next(self._numbers)

    async def start(self) -> None:
        self._canary = await self.writer.create_session(self.canary_user, self.canary_user)
        self.sessions[self.canary_user] = Expected(self.canary_user, messages=self.canary_sent)

    async def close(self) -> None:
        await self.writer.close()
        await self.reader.close()

    async def beside_canary(self, call: Callable[[], Awaitable[T]]) -> Outcome[T]:
        """Run ``call`` while the canary writes one message (both started together, so they
        reach the flusher together); the canary's write must succeed and be stored."""
        assert self._canary is not None
        canary = self._canary
        message = Message(role=MessageRole.USER, content=f"canary {len(self.canary_sent)}")
        wrote = Wrote.of(message)
        outcomes: dict[str, Outcome[Any]] = {}

        async def run(key: str, fn: Callable[[], Awaitable[Any]]) -> None:
            outcomes[key] = await attempt(fn)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "canary", lambda: canary.add_message(message))
            tg.start_soon(run, "call", call)
        error = outcomes["canary"].error
        if error is not None:
            raise AssertionError(f"the canary's write failed beside this example: {error!r}")
        self.canary_sent.append(wrote)
        await self._check_canary(canary)
        return outcomes["call"]

    async def _check_canary(self, canary: MemorySession) -> None:
        [stored] = await self.stored(self.canary_user)
        assert stored.message_count == len(self.canary_sent), (
            f"canary: {len(self.canary_sent)} writes acknowledged, {stored.message_count} stored"
        )
        live = await canary.get_messages(limit=1)
        assert_messages(live, self.canary_sent[-1:], "canary (live)")

    async def stored(self, user_id: object) -> list[SessionMetadata]:
        """``user_id``'s sessions as storage holds them (after every write made so far)."""
        backend = self.writer.backend
        return await backend.list_sessions(user_id=user_id, limit=None)  # type: ignore[arg-type]

    async def check_session(self, session: MemorySession, sid: str, want: Expected) -> None:
        """``sid`` holds ``want``: in storage's listing, live, and read afresh by the reader."""
        listed = [meta for meta in await self.stored(want.user_id) if meta.session_id == sid]
        assert len(listed) == 1, f"{sid!r} is listed {len(listed)} times for its user"
        problem = meta_problem(listed[0], sid, want)
        assert problem is None, f"stored: {problem}"
        problem = meta_problem(session.metadata, sid, want)
        assert problem is None, f"live: {problem}"
        assert_messages(await session.get_messages(), want.messages, f"{sid!r} (live)")
        if self.reader is not self.writer:
            fresh = await self.reader.get_session(sid)
            assert fresh is not None, f"{sid!r} is not found by a second manager"
            problem = meta_problem(fresh.metadata, sid, want)
            assert problem is None, f"read afresh: {problem}"
            assert_messages(await fresh.get_messages(), want.messages, f"{sid!r} (read afresh)")

    async def check_nothing_stored(self, user: object, sid: object) -> None:
        """A refused call left no session behind for ``user`` or under ``sid``. (A user id
        no store can encode is looked for among every session: what listing by such an id
        does is a case of its own.)"""
        if isinstance(user, str):
            query = user if plain_problem(user) is None else None
            listed = await attempt(lambda: self.stored(query))
            if not listed.refused():
                extra = [
                    m.session_id
                    for m in listed.result()
                    if m.user_id == user and m.session_id not in self.sessions
                ]
                assert not extra, f"refused, yet stored for {user!r}: {extra}"
        if isinstance(sid, str) and sid not in self.sessions:
            found = await attempt(lambda: self.writer.get_session(sid))
            if not found.refused():
                assert found.result() is None, f"refused, yet session {sid!r} exists"

    async def verify_reopened(self) -> None:
        """Closed and opened again, every session holds exactly what it must, and nothing
        else was stored."""
        await self.close()
        fresh = self.store.manager(self.durability)
        try:
            await assert_reopened(fresh, self.sessions)
        finally:
            await fresh.close()


async def run_machine(machine: type[RuleBasedStateMachine], runs: int, steps: int) -> None:
    """Run ``machine`` ``runs`` times (scaled like every fuzz case) of up to ``steps`` steps,
    on a worker thread: its rules call back into the test's event loop."""
    options = settings(
        FUZZ,
        max_examples=max(1, round(runs * SCALE)),
        stateful_step_count=steps,
        derandomize=not SALT,
    )
    await anyio.to_thread.run_sync(lambda: run_state_machine_as_test(machine, settings=options))


Example = Callable[[World, T], Awaitable[None]]
Setup = Callable[[World], Awaitable[None]]


class Arena:
    """The world examples run in. An example that fails leaves its world behind (its state
    may be what broke) and the next one starts in a fresh, empty store, so each example,
    shrinking included, runs in a world no earlier failure touched."""

    def __init__(self, store: Store, durability: str, setup: Setup | None) -> None:
        self._root, self._durability, self._setup = store, durability, setup
        self._world: World | None = None
        self._used_root = False

    async def current(self) -> World:
        if self._world is None:
            store = self._root if not self._used_root else self._root.fresh()
            self._used_root = True
            world = World(store, self._durability)
            await world.start()
            if self._setup is not None:
                await self._setup(world)
            self._world = world
        return self._world

    async def run(self, example: Example[T], value: T) -> None:
        world = await self.current()
        try:
            with anyio.fail_after(EXAMPLE_SECONDS):
                await example(world, value)
        except BaseException:
            self._world = None
            await _abandon(world)
            raise

    async def close(self) -> None:
        if self._world is not None:
            world, self._world = self._world, None
            await _abandon(world)


async def _abandon(world: World) -> None:
    """Close a world whose state may be broken, without letting that fail or hang the test."""
    # The example's own failure is what gets reported; closing is best effort.
    with anyio.move_on_after(ABANDON_SECONDS, shield=True), contextlib.suppress(Exception):
        await world.close()


async def run_examples(
    name: str,
    store: Store,
    strategy: st.SearchStrategy[T],
    example: Example[T],
    max_examples: int,
    *,
    durability: str = "committed",
    setup: Setup | None = None,
) -> None:
    """Check ``example`` on ``max_examples`` inputs drawn from ``strategy`` (hypothesis in a
    worker thread, each example on this event loop), then that every session the last world
    stored reads back after reopening. Seeded per case, so a run is reproducible."""
    case = f"{name}-{store.kind}[{sniffio.current_async_library()}]"
    arena = Arena(store, durability, setup)

    @seed(zlib.crc32(f"{case}{SALT}".encode()))
    @settings(FUZZ, max_examples=max(1, round(max_examples * SCALE)))
    @given(strategy)
    def check(value: T) -> None:
        EXAMPLES[case] += 1
        anyio.from_thread.run(arena.run, example, value)

    try:
        await anyio.to_thread.run_sync(check)
        world = await arena.current()
    except BaseException:
        await arena.close()
        raise
    await world.verify_reopened()
