"""Managers over each storage backend, for tests that check the public API end to end on all
of them. Import the fixtures into a test module to use them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from langswarm.core.memory import MemoryManager

Factory = Callable[[], MemoryManager]


def manager_factory(request: pytest.FixtureRequest, path: Path, **options: Any) -> Factory:
    """Builds managers with runtime ``options`` over the store ``request.param`` names
    (memory, an SQLite file at ``path``, or the test's Redis database)."""
    if request.param == "memory":
        from langswarm.core.memory.backends.memory import InMemoryBackend
        from tests.helpers import manager_on

        shared = InMemoryBackend()
        return lambda: manager_on(shared, **options)
    if request.param == "sqlite":
        config = {"db_path": str(path)}
    else:
        config = {"url": request.getfixturevalue("redis_url")}
    memory = {"backend": request.param, "config": config, **options}
    return lambda: MemoryManager.from_config(memory=memory)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_memory(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """Builds managers over one storage; two managers from it see the same data."""
    return manager_factory(
        request, tmp_path / "store.db", idle_timeout=0, sweep_interval=3600, shutdown_grace=5
    )


@pytest.fixture
async def memory(make_memory: Factory) -> AsyncIterator[MemoryManager]:
    async with make_memory() as manager:
        yield manager
