"""Managers over each storage backend, for tests that check the public API end to end on all
of them. Import the fixtures into a test module to use them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from langswarm.core.memory import MemoryManager

Factory = Callable[[], MemoryManager]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_memory(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """Builds managers over one storage; two managers from it see the same data."""
    options: dict[str, Any] = {"idle_timeout": 0, "sweep_interval": 3600, "shutdown_grace": 5}
    if request.param == "memory":
        from langswarm.core.memory.backends.memory import InMemoryBackend
        from tests.helpers import manager_on

        shared = InMemoryBackend()
        return lambda: manager_on(shared, **options)
    if request.param == "sqlite":
        config = {"db_path": str(tmp_path / "store.db")}
    else:
        config = {"url": request.getfixturevalue("redis_url")}
    memory = {"backend": request.param, "config": config, **options}
    return lambda: MemoryManager.from_config(memory=memory)


@pytest.fixture
async def memory(make_memory: Factory) -> AsyncIterator[MemoryManager]:
    async with make_memory() as manager:
        yield manager
