"""Backend fixtures: the same protocol tests run against every storage backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from langswarm.core.memory.backends.base import Backend


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def backend(
    backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Backend]:
    """An opened, empty backend of each kind."""
    store: Backend
    if backend_kind == "memory":
        from langswarm.core.memory.backends.memory import InMemoryBackend

        store = InMemoryBackend()
    elif backend_kind == "sqlite":
        from langswarm.core.memory.backends.sqlite import SQLiteBackend

        store = SQLiteBackend(db_path=str(tmp_path / "conformance.db"))
    else:
        from langswarm.core.memory.backends.redis import RedisBackend

        url = request.getfixturevalue("redis_url")
        store = RedisBackend(url=url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
