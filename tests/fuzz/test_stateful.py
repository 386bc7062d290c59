"""The library against a plain-Python model of sessions, driven by a state machine.

Sessions are created (with or without an id), found or created per user, written to, read,
summarised into context, updated, archived, deleted, listed, and the manager is closed and
reopened; after every step the library and the model must agree. Runs on every backend and
event loop: hypothesis drives the machine from a worker thread, each step runs on the loop.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    multiple,
    rule,
)

from langswarm.core.memory import MemorySession, Message, MessageRole, SessionStatus
from langswarm.core.memory.exceptions import (
    SessionExistsError,
    SessionNotFoundError,
    SessionOwnershipError,
)
from tests.fuzz._compare import (
    Expected,
    Wrote,
    assert_messages,
    assert_reopened,
    message_problem,
    meta_problem,
)
from tests.fuzz._data import clean_texts, plain_dicts
from tests.fuzz._support import EXAMPLES, Outcome, Store, attempt, run_machine

pytestmark = pytest.mark.anyio

T = TypeVar("T")
USERS = ("alice", "bob", "carol")
SESSION_IDS = ("s1", "s2", "s3")
ROLES = (MessageRole.USER, MessageRole.ASSISTANT, MessageRole.SYSTEM)
STEP_SECONDS = 30.0


async def _bounded(call: Callable[[], Awaitable[T]]) -> Outcome[T]:
    with anyio.fail_after(STEP_SECONDS):
        return await attempt(call)


class SessionsMachine(RuleBasedStateMachine):
    """Each run starts on an empty store; ``model`` is what every live session holds."""

    root: ClassVar[Store]
    case: ClassVar[str]
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        EXAMPLES[self.case] += 1
        self.store = self.root.fresh()
        self.manager = self.store.manager("committed")
        self.model: dict[str, Expected] = {}
        self.handles: dict[str, MemorySession] = {}
        self.last: dict[str, Message] = {}

    def run(self, call: Callable[[], Awaitable[T]]) -> Outcome[T]:
        """``call()`` on the test's event loop."""
        return anyio.from_thread.run(_bounded, call)

    def teardown(self) -> None:
        self.run(self.manager.close)

    def _adopt(self, session: MemorySession, want: Expected) -> str:
        self.model[session.session_id] = want
        self.handles[session.session_id] = session
        return session.session_id

    # -- sessions ---------------------------------------------------------------------------

    @rule(
        target=sessions,
        user=st.sampled_from(USERS),
        sid=st.sampled_from([*SESSION_IDS, None]),
        metadata=plain_dicts(2),
    )
    def create(self, user: str, sid: str | None, metadata: dict[str, Any]) -> object:
        asked = copy.deepcopy(metadata)
        outcome = self.run(lambda: self.manager.create_session(user, sid, metadata=metadata))
        if sid is not None and sid in self.model:
            assert isinstance(outcome.error, SessionExistsError), outcome
            return multiple()
        return self._adopt(outcome.result(), Expected(user, metadata=asked))

    @rule(target=sessions, user=st.sampled_from(USERS), sid=st.sampled_from([*SESSION_IDS, None]))
    def get_or_create(self, user: str, sid: str | None) -> object:
        target = sid if sid is not None else f"default:{user}"
        outcome = self.run(lambda: self.manager.get_or_create_session(user, sid))
        kept = self.model.get(target)
        if kept is not None and kept.user_id != user:
            assert isinstance(outcome.error, SessionOwnershipError), outcome
            return multiple()
        session = outcome.result()
        assert session.session_id == target
        if kept is None:
            return self._adopt(session, Expected(user))
        self.handles[target] = session
        return target

    # -- writes ---------------------------------------------------------------------------

    @rule(
        sid=sessions,
        contents=st.lists(clean_texts(40), min_size=1, max_size=3),
        role=st.sampled_from(ROLES),
    )
    def add(self, sid: str, contents: list[str], role: MessageRole) -> None:
        handle, kept = self.handles.get(sid), self.model.get(sid)
        if handle is None or kept is None:
            return
        batch = [Message(role=role, content=content) for content in contents]
        wrote = [Wrote.of(message) for message in batch]
        if len(batch) == 1:
            outcome: Outcome[Any] = self.run(lambda: handle.add_message(batch[0]))
        else:
            outcome = self.run(lambda: handle.add_messages(batch))
        if kept.status is SessionStatus.ARCHIVED:
            assert outcome.refused(), "an archived session accepted a message"
            return
        outcome.result()
        kept.messages += wrote
        self.last[sid] = batch[-1]

    @rule(sid=sessions)
    def add_again(self, sid: str) -> None:
        """Sending the newest message again (same id) stores nothing twice."""
        handle, kept, last = self.handles.get(sid), self.model.get(sid), self.last.get(sid)
        if handle is None or kept is None or last is None:
            return
        if kept.status is SessionStatus.ACTIVE:
            self.run(lambda: handle.add_message(last)).refused()

    @rule(sid=sessions, custom=plain_dicts(2))
    def update(self, sid: str, custom: dict[str, Any]) -> None:
        handle, kept = self.handles.get(sid), self.model.get(sid)
        if handle is None or kept is None:
            return
        asked = copy.deepcopy(custom)
        self.run(lambda: handle.update_metadata(custom)).result()
        kept.metadata.update(asked)

    @rule(sid=sessions)
    def archive(self, sid: str) -> None:
        handle, kept = self.handles.get(sid), self.model.get(sid)
        if handle is None or kept is None:
            return
        self.run(handle.archive_session).result()
        kept.status = SessionStatus.ARCHIVED

    @rule(sid=sessions, through_handle=st.booleans())
    def delete(self, sid: str, through_handle: bool) -> None:
        kept, handle = self.model.pop(sid, None), self.handles.pop(sid, None)
        self.last.pop(sid, None)
        if through_handle and handle is not None:
            self.run(handle.delete_session).result()
        else:
            existed = self.run(lambda: self.manager.backend.delete_session(sid)).result()
            assert existed == (kept is not None), (sid, existed)
        if handle is not None:
            late = self.run(lambda: handle.add_message(Message(role=MessageRole.USER)))
            assert isinstance(late.error, SessionNotFoundError), late

    # -- reads ----------------------------------------------------------------------------

    @rule(sid=sessions, as_user=st.sampled_from([None, *USERS]))
    def read(self, sid: str, as_user: str | None) -> None:
        outcome = self.run(lambda: self.manager.get_session(sid, user_id=as_user))
        kept = self.model.get(sid)
        if kept is not None and as_user is not None and as_user != kept.user_id:
            assert isinstance(outcome.error, SessionOwnershipError), outcome
            return
        found = outcome.result()
        if kept is None:
            assert found is None, f"deleted session {sid!r} is still found"
            return
        assert found is not None, f"session {sid!r} is not found"
        problem = meta_problem(found.metadata, sid, kept)
        assert problem is None, problem
        assert_messages(self.run(found.get_messages).result(), kept.messages, sid)

    @rule(sid=sessions, budget=st.integers(1, 400))
    def context(self, sid: str, budget: int) -> None:
        handle, kept = self.handles.get(sid), self.model.get(sid)
        if handle is None or kept is None:
            return
        result = self.run(lambda: handle.get_conversation_context(max_tokens=budget)).result()
        remaining = iter(kept.messages)  # the context is a subsequence of the conversation
        for message in result:
            assert any(message_problem(message, w) is None for w in remaining), message

    @rule(
        user=st.sampled_from(USERS),
        status=st.sampled_from([None, SessionStatus.ACTIVE, SessionStatus.ARCHIVED]),
    )
    def list_sessions(self, user: str, status: SessionStatus | None) -> None:
        backend = self.manager.backend
        listed = self.run(lambda: backend.list_sessions(user, status, limit=None)).result()
        want = {
            sid
            for sid, kept in self.model.items()
            if kept.user_id == user and status in (None, kept.status)
        }
        assert sorted(meta.session_id for meta in listed) == sorted(want)
        for meta in listed:
            problem = meta_problem(meta, meta.session_id, self.model[meta.session_id])
            assert problem is None, f"listed: {problem}"

    # -- lifecycle ------------------------------------------------------------------------

    @rule()
    def restart(self) -> None:
        """Close the manager; the next call starts its runtime again from storage."""
        self.run(self.manager.close).result()

    @rule()
    def reopen_elsewhere(self) -> None:
        """A second manager on the same store (in memory: the same one, restarted) sees
        exactly the model, and nothing more."""
        self.run(self.manager.close).result()
        self.run(self._compare_fresh).result()

    async def _compare_fresh(self) -> None:
        fresh = self.store.manager("committed")
        try:
            await assert_reopened(fresh, self.model)
        finally:
            await fresh.close()


#: Runs per case and steps per run; each test has 6 cases (3 backends x 2 event loops).
RUNS, STEPS = 15, 30


async def test_sessions_agree_with_a_model(store: Store, anyio_backend: str) -> None:
    class Machine(SessionsMachine):
        root = store
        case = f"stateful-{store.kind}[{anyio_backend}]"

    await run_machine(Machine, RUNS, STEPS)
