"""Fixtures for the adapter tests: one manager factory per backend (memory, SQLite, Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from langswarm.core.memory import MemoryManager
from langswarm.core.memory._adapters import run_blocking
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


@pytest.fixture
def unentered(make_memory: Factory) -> Iterator[Factory]:
    """Builds managers that are never entered (no ``async with``): the adapters serve them on
    their home loop, where the runtimes they start are closed after the test."""
    made: list[MemoryManager] = []

    def make() -> MemoryManager:
        made.append(make_memory())
        return made[-1]

    yield make
    for manager in made:
        run_blocking(manager, manager.close, "closing on its own loop")
