"""Fixtures for the adapter tests: one manager factory per backend (memory, SQLite, Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from langswarm.core.memory import MemoryManager
from langswarm.core.memory.backends.memory import InMemoryBackend
from tests.helpers import manager_on

Factory = Callable[[], MemoryManager]

OPTIONS: dict[str, Any] = {"shutdown_grace": 5}


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_memory(request: pytest.FixtureRequest) -> Factory:
    """Builds managers over one store; every manager it builds sees the same data."""
    if request.param == "memory":
        shared = InMemoryBackend()
        return lambda: manager_on(shared, **OPTIONS)
    if request.param == "sqlite":
        config = {"db_path": request.getfixturevalue("sqlite_path")}
    else:
        config = {"url": request.getfixturevalue("redis_url")}
    memory = {"backend": request.param, "config": config, **OPTIONS}
    return lambda: MemoryManager.from_config(memory=memory)


@pytest.fixture
async def memory(make_memory: Factory) -> AsyncIterator[MemoryManager]:
    """A running manager (``async with``) over the test's store."""
    async with make_memory() as manager:
        yield manager
