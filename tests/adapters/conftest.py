"""Fixtures for the adapter tests: one manager factory per backend (memory, SQLite, Redis);
the ``memory`` fixture of tests/store_fixtures.py enters the managers it builds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from langswarm.core.memory import MemoryManager
from langswarm.core.memory._adapters import run_blocking
from tests.store_fixtures import Factory, manager_factory


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_memory(request: pytest.FixtureRequest) -> Factory:
    """Builds managers over one store; every manager it builds sees the same data."""
    return manager_factory(request, Path(request.getfixturevalue("sqlite_path")), shutdown_grace=5)


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
