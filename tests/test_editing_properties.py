"""History editing against a plain list model, on every backend and event loop.

A state machine appends plain messages and tool exchanges (OpenAI and Anthropic shapes), pops
(with and without a check), deletes, clears, forks, summarises, adds removed messages back
and reopens the store; after every step the session as its handle sees it, as storage holds
it (read by a second manager) and, at each reopening, as a fresh manager reads it, equals
the model (``tests._editing_model``), and no tool result is ever left without its call.
Hypothesis drives the machine from a worker thread; each step runs on the test's loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
)

from langswarm.core.memory import MemoryManager, MemorySession, Message, MessageRole
from langswarm.core.memory.exceptions import (
    MemoryValidationError,
    MessageNotFoundError,
    SessionExistsError,
)
from tests._editing_model import Builder, Covered, Entry, History, orphans, shape
from tests.fuzz._fixtures import bounded_shrinking as bounded_shrinking
from tests.fuzz._fixtures import store as store
from tests.fuzz._support import EXAMPLES, Outcome, Store, attempt, run_machine

pytestmark = pytest.mark.anyio

T = TypeVar("T")
#: Runs per case and steps per run; 6 cases (3 backends x 2 event loops).
RUNS, STEPS = 25, 24
STEP_SECONDS = 30.0
MAX_SESSIONS = 4
CLEAR_AT = 4
ROLES = (MessageRole.USER, MessageRole.ASSISTANT, MessageRole.SYSTEM)
CHECKS = ("none", "yes", "no", "role", "async")
EVERYTHING = 10**9  # a token budget every history here fits in
METADATA = {"topic": "editing", "n": 1}


async def _within(call: Callable[[], Awaitable[T]]) -> T:
    with anyio.fail_after(STEP_SECONDS):
        return await call()


async def _bounded(call: Callable[[], Awaitable[T]]) -> Outcome[T]:
    return await _within(partial(attempt, call))


def _messages(entries: list[Entry]) -> list[Message]:
    return [e.message for e in entries]


def _ids(messages: list[Message] | list[Entry]) -> list[str]:
    return [m.message_id if isinstance(m, Message) else m.id for m in messages]


def assert_history(read: list[Message], model: History, where: str) -> None:
    """``read`` is exactly the model's live messages, and no result lost its call."""
    assert _ids(read) == model.ids(), f"{where}: read {_ids(read)}, model {model.ids()}"
    for got, want in zip(read, model.entries, strict=True):
        assert shape(got) == shape(want.message), f"{where}: {got!r} != {want.message!r}"
    assert not orphans(read), f"{where}: results without their call: {orphans(read)}"


async def check_session(session: MemorySession, model: History, user: str, where: str) -> None:
    """Messages, count, owner, metadata, summaries and the summary-led context window."""
    assert_history(await session.get_messages(), model, where)
    meta = session.metadata
    assert meta.message_count == len(model.slots), f"{where}: count {meta.message_count}"
    assert (meta.user_id, meta.metadata) == (user, METADATA), f"{where}: {meta}"
    found = [Covered(s.covers_through, s.message_count) for s in await session.get_summaries()]
    assert found == model.summaries, f"{where}: summaries {found}, model {model.summaries}"
    window = await session.get_conversation_context(EVERYTHING, include_summaries=True)
    if model.summaries:
        head, *window = window
        assert head.metadata.get("covers_through") == model.covered(), f"{where}: {head}"
        assert _ids(window) == _ids(model.after_summary()), f"{where}: context {_ids(window)}"
    else:
        assert _ids(window) == model.ids(), f"{where}: context {_ids(window)}"


class EditingMachine(RuleBasedStateMachine):
    """Each run starts on an empty store with one session; ``models`` is what every live
    session holds, ``owners`` who owns it."""

    root: ClassVar[Store]
    case: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        EXAMPLES[self.case] += 1
        self.store = self.root.fresh()
        self.builder = Builder("e")
        self.models: dict[str, History] = {}
        self.owners: dict[str, str] = {}
        self.handles: dict[str, MemorySession] = {}
        self.removed: dict[str, list[list[Entry]]] = {}
        self.durability = "committed"
        self.writer: MemoryManager | None = None
        self.reader: MemoryManager | None = None
        self.forks = 0

    # -- plumbing -------------------------------------------------------------------------

    def run(self, call: Callable[[], Awaitable[T]]) -> Outcome[T]:
        """``call()`` on the test's event loop."""
        return anyio.from_thread.run(_bounded, call)

    def _open(self) -> MemoryManager:
        self.writer = self.store.manager(self.durability)
        self.reader = self.store.manager(self.durability) if self.store.persistent else None
        return self.writer

    def _pick(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.models)), label="session")

    def call(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` on the test's event loop; what it raises fails the step."""
        return anyio.from_thread.run(_within, call)

    def _verify(self, *sids: str) -> None:
        """The sessions, live and as storage holds them, equal their models."""
        self.call(lambda: self._compare(sids))

    async def _compare(self, sids: tuple[str, ...]) -> None:
        for sid in sids:
            handle, model, owner = self.handles[sid], self.models[sid], self.owners[sid]
            stored = None
            if self.reader is not None:
                stored = await self.reader.get_session(sid)
                assert stored is not None, f"{sid} is not found by a second manager"
                await stored.flush()
                await handle.flush()
            await check_session(handle, model, owner, f"{sid} live")
            if stored is not None:
                await check_session(stored, model, owner, f"{sid} stored")

    def _through(self, sid: str, elsewhere: bool) -> MemorySession:
        """The session's handle, or (``elsewhere``, on a store two managers can share) one
        from the second manager, as another process would edit it."""
        if not elsewhere or self.reader is None:
            return self.handles[sid]
        found = self.call(partial(self.reader.get_session, sid))
        assert found is not None, f"{sid} is not found by a second manager"
        return found

    def teardown(self) -> None:
        try:
            if self.writer is not None:
                self.reopen()
        finally:
            self.call(self._close)

    async def _close(self) -> None:
        for manager in (self.writer, self.reader):
            if manager is not None:
                await manager.close()

    def _adopt(self, session: MemorySession, model: History, owner: str) -> None:
        sid = session.session_id
        self.models[sid], self.owners[sid], self.handles[sid] = model, owner, session
        self.removed[sid] = []

    # -- rules ----------------------------------------------------------------------------

    @initialize(durability=st.sampled_from(["committed", "buffered"]))
    def start(self, durability: str) -> None:
        self.durability = durability
        writer = self._open()
        made = self.call(lambda: writer.create_session("owner", "main", metadata=METADATA))
        self._adopt(made, History(), "owner")
        self._verify("main")

    @rule(data=st.data(), role=st.sampled_from(ROLES), elsewhere=st.booleans())
    def append_text(self, data: st.DataObject, role: MessageRole, elsewhere: bool) -> None:
        sid = self._pick(data)
        entry = self.builder.text(role)
        handle = self._through(sid, elsewhere)
        self.call(lambda: handle.add_message(entry.message))
        self.models[sid].append([entry])
        self._verify(sid)

    @rule(
        data=st.data(),
        style=st.sampled_from(["openai", "anthropic"]),
        calls=st.integers(1, 3),
        groups=st.integers(1, 3),
        together=st.booleans(),
    )
    def append_exchange(
        self, data: st.DataObject, style: str, calls: int, groups: int, together: bool
    ) -> None:
        """A tool call and its results, in one ``add_messages`` or one message at a time."""
        sid = self._pick(data)
        entries = self.builder.exchange(style, calls, groups)
        self._add(sid, entries, together)

    def _add(self, sid: str, entries: list[Entry], together: bool) -> None:
        handle = self.handles[sid]
        messages = [e.message for e in entries]

        async def one_by_one() -> None:
            for message in messages:
                await handle.add_message(message)

        self.call(lambda: handle.add_messages(messages) if together else one_by_one())
        self.models[sid].append(entries)
        self._verify(sid)

    @rule(
        data=st.data(),
        check=st.sampled_from(CHECKS),
        role=st.sampled_from(ROLES),
        elsewhere=st.booleans(),
    )
    def pop(self, data: st.DataObject, check: str, role: MessageRole, elsewhere: bool) -> None:
        """``pop_message``, unconditional or with a check (plain or async) that sees the
        newest message."""
        sid = self._pick(data)
        handle = self._through(sid, elsewhere)
        model = self.models[sid]
        newest = model.entries[-1] if model.slots else None
        seen: list[str] = []

        def verdict(message: Message) -> bool:
            seen.append(message.message_id)
            return check == "yes" or (check == "role" and message.role is role)

        async def later(message: Message) -> bool:
            await anyio.lowlevel.checkpoint()
            seen.append(message.message_id)
            return True

        how: Any = {"none": None, "async": later}.get(check, verdict)
        popped = self.call(lambda: handle.pop_message(check=how))
        if check != "none" and newest is not None:
            assert seen and set(seen) == {newest.id}, f"the check saw {seen}, newest {newest.id}"
        takes = newest is not None and (
            check in ("none", "yes", "async") or (check == "role" and newest.message.role is role)
        )
        if not takes:
            assert popped is None, f"pop_message({check}) removed {popped!r}"
        else:
            assert newest is not None and popped is not None, f"pop_message({check}): None"
            assert shape(popped) == shape(newest.message), (popped, newest.message)
            model.pop()
            self.removed[sid].append([newest])
        self._verify(sid)

    @rule(data=st.data(), gone=st.booleans(), elsewhere=st.booleans())
    def delete(self, data: st.DataObject, gone: bool, elsewhere: bool) -> None:
        """``delete_message`` of a live message (its whole exchange goes), or of one that
        is not there any more."""
        sid = self._pick(data)
        handle = self._through(sid, elsewhere)
        model = self.models[sid]
        absent = [e.id for group in self.removed[sid] for e in group if not model.holds(e.id)]
        choices = absent if gone and absent else model.ids() or absent or ["never-stored"]
        target = data.draw(st.sampled_from(choices), label="message")
        outcome = self.run(lambda: handle.delete_message(target))
        if not model.holds(target):
            assert isinstance(outcome.error, MessageNotFoundError), outcome
        else:
            exchange = model.exchange(target)
            removed = outcome.result()
            assert _ids(removed) == _ids(exchange), f"removed {_ids(removed)}"
            model.remove(e.id for e in exchange)
            self.removed[sid].append(exchange)
        self._verify(sid)

    @precondition(lambda self: any(len(m.slots) >= CLEAR_AT for m in self.models.values()))
    @rule(data=st.data(), elsewhere=st.booleans())
    def clear(self, data: st.DataObject, elsewhere: bool) -> None:
        """``clear`` (of a session with a few messages, so that histories grow)."""
        full = sorted(sid for sid, m in self.models.items() if len(m.slots) >= CLEAR_AT)
        sid = data.draw(st.sampled_from(full), label="session")
        self.call(self._through(sid, elsewhere).clear)
        model = self.models[sid]
        self.removed[sid].append(model.entries)
        model.clear()
        self._verify(sid)

    @rule(
        data=st.data(),
        through_manager=st.booleans(),
        other_owner=st.booleans(),
        onto_taken=st.sampled_from([False, False, False, True]),
    )
    def fork(
        self, data: st.DataObject, through_manager: bool, other_owner: bool, onto_taken: bool
    ) -> None:
        """A fork at the end, at a message, or at one no longer there; one inside a tool
        exchange is refused, and so is one onto a session id that is taken."""
        sid = self._pick(data)
        model, writer = self.models[sid], self.writer
        assert writer is not None
        if onto_taken or len(self.models) >= MAX_SESSIONS:
            points = [None, *(i for i in model.ids() if not model.fork_refused(i))]
            new_id = self._pick(data)
        else:
            gone = [e.id for group in self.removed[sid] for e in group if not model.holds(e.id)]
            points = [None, *model.ids(), *gone[-1:]]
            self.forks += 1
            new_id = f"fork{self.forks}"
        at = data.draw(st.sampled_from(points), label="at")
        owner = "other" if other_owner else None

        async def make() -> MemorySession:
            if through_manager:
                return await writer.fork_session(sid, new_id, at=at, user_id=owner)
            return await self.handles[sid].fork(new_id, at=at, user_id=owner)

        outcome = self.run(make)
        if new_id in self.models:
            assert isinstance(outcome.error, SessionExistsError), outcome
        elif at is not None and not model.holds(at):
            assert isinstance(outcome.error, MessageNotFoundError), outcome
        elif at is not None and model.fork_refused(at):
            assert type(outcome.error) is MemoryValidationError, outcome
            assert "tool call" in str(outcome.error), outcome.error
        else:
            self._adopt(outcome.result(), model.fork(at), owner or self.owners[sid])
            self._verify(new_id)
        self._verify(sid)

    @rule(data=st.data(), elsewhere=st.booleans())
    def summarize(self, data: st.DataObject, elsewhere: bool) -> None:
        """``create_summary``: everything not yet covered, short of an open tool exchange at
        the end; nothing changes when there is nothing to cover."""
        sid = self._pick(data)
        handle = self._through(sid, elsewhere)
        model = self.models[sid]
        start = model.covered()
        made = self.call(handle.create_summary)
        expected = model.summarize()
        got = Covered(made.covers_through, made.message_count)
        if expected is None:
            assert made.covers_through == start, f"nothing to cover from {start}, got {got}"
        else:
            assert got == expected, f"summary {got}, model {expected}"
        self._verify(sid)

    @precondition(lambda self: any(self.removed.values()))
    @rule(data=st.data(), together=st.booleans())
    def add_back(self, data: st.DataObject, together: bool) -> None:
        """Add the latest removed group again (the same ids), if it stands on its own (plain
        messages, whole exchanges): it is stored again, at the end."""
        sid = data.draw(st.sampled_from(sorted(s for s, r in self.removed.items() if r)))
        group = self.removed[sid].pop()
        model = self.models[sid]
        if not group or any(model.holds(e.id) for e in group) or orphans(_messages(group)):
            return
        self._add(sid, group, together)

    @rule()
    def reopen(self) -> None:
        """Close everything, then a fresh manager on the same store (in memory: the same one,
        restarted) reads every session and nothing else."""
        self.call(self._close)
        writer = self._open()
        for sid in self.models:
            found = self.call(partial(writer.get_session, sid))
            assert found is not None, f"session {sid} is gone after reopening"
            self.handles[sid] = found
        self._verify(*self.models)
        stats = self.call(writer.backend.get_usage_stats)
        total = sum(len(model.slots) for model in self.models.values())
        assert (stats["total_sessions"], stats["total_messages"]) == (len(self.models), total)


async def test_editing_agrees_with_a_list_model(store: Store, anyio_backend: str) -> None:
    class Machine(EditingMachine):
        root = store
        case = f"editing-{store.kind}[{anyio_backend}]"

    await run_machine(Machine, RUNS, STEPS)
