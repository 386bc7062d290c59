"""Tenant-scoped views: random calls through two tenants' views over one store, with the same
user and session ids in both, never return, list, count or change the other tenant's data.
On every backend and both loops."""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict

import anyio.from_thread
import anyio.to_thread
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langswarm.core.memory import MemoryManager, TenantView, create_openai_message
from langswarm.core.memory.exceptions import (
    MemoryValidationError,
    SessionExistsError,
    SessionOwnershipError,
)
from tests.store_fixtures import Factory

pytestmark = pytest.mark.anyio

TENANTS = ("acme", "globex")
USERS = ("ann", "bob")
SESSIONS = ("s1", "s2", "s3")

calls = st.lists(
    st.tuples(
        st.sampled_from(TENANTS),
        st.sampled_from(("create", "add", "delete", "erase")),
        st.sampled_from(USERS),
        st.sampled_from(SESSIONS),
    ),
    min_size=1,
    max_size=25,
)


class Model:
    """What each tenant should see: session -> (owner, message texts)."""

    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, tuple[str, list[str]]]] = defaultdict(dict)

    def apply(self, tenant: str, op: str, user: str, sid: str, text: str) -> None:
        mine = self.sessions[tenant]
        if op == "create" and sid not in mine:
            mine[sid] = (user, [])
        elif op == "add" and sid in mine and mine[sid][0] == user:
            mine[sid][1].append(text)
        elif op == "delete":
            mine.pop(sid, None)
        elif op == "erase":
            for gone in [s for s, (owner, _) in mine.items() if owner == user]:
                del mine[gone]


async def call(view: TenantView, op: str, user: str, sid: str, text: str) -> None:
    if op == "create":
        with contextlib.suppress(SessionExistsError):
            await view.create_session(user, sid)
    elif op == "add":
        try:
            session = await view.get_session(sid, user)
        except SessionOwnershipError:
            return
        if session is not None:
            await session.add_message(create_openai_message("user", text))
    elif op == "delete":
        await view.delete_session(sid)
    else:
        await view.erase_user(user)


async def observed(view: TenantView) -> dict[str, tuple[str, list[str]]]:
    seen = {}
    for meta in await view.list_sessions(limit=None):
        session = await view.get_session(view.local(meta.session_id))
        assert session is not None
        texts = [str(m.content) for m in await session.get_messages()]
        seen[view.local(meta.session_id)] = (view.local(meta.user_id), texts)
    for sid in SESSIONS:
        if sid not in seen:
            assert await view.get_session(sid) is None
    stats = await view.get_usage_stats()
    assert stats["total_sessions"] == len(seen)
    assert stats["total_messages"] == sum(len(texts) for _, texts in seen.values())
    return seen


async def test_tenants_never_see_each_other(make_memory: Factory) -> None:
    """Hypothesis runs in a worker thread, each example on this test's loop; every example
    uses fresh tenant names on one store, so earlier examples' tenants are neighbours too."""
    examples = itertools.count()

    async def example(memory: MemoryManager, sequence: list[tuple[str, str, str, str]]) -> None:
        n = next(examples)
        views = {t: memory.tenant(f"{t}{n}") for t in TENANTS}
        model = Model()
        for i, (tenant, op, user, sid) in enumerate(sequence):
            await call(views[tenant], op, user, sid, f"{tenant}-{i}")
            model.apply(tenant, op, user, sid, f"{tenant}-{i}")
        for tenant, view in views.items():
            assert await observed(view) == model.sessions[tenant]

    async with make_memory() as memory:

        @settings(max_examples=12, deadline=None, derandomize=True)
        @given(calls)
        def check(sequence: list[tuple[str, str, str, str]]) -> None:
            anyio.from_thread.run(example, memory, sequence)

        await anyio.to_thread.run_sync(check)
    assert next(examples) >= 12


def test_a_tenant_name_cannot_hold_the_separator() -> None:
    from langswarm.core.memory.backends.memory import InMemoryBackend
    from tests.helpers import manager_on

    with pytest.raises(MemoryValidationError, match="tenant"):
        manager_on(InMemoryBackend()).tenant("a/b")
