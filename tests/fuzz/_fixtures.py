"""Fixtures the property suites share (the fuzz suites here, and the editing suite beside
them): one store of each backend kind, and shrinking bounded in time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.internal.conjecture.engine as engine
import pytest

from tests.fuzz._support import Store

__all__ = ["SHRINK_SECONDS", "bounded_shrinking", "store"]

#: Seconds hypothesis may spend shrinking one failure (its default, five minutes, is longer
#: than the per-test timeout); the engine keeps this limit monkeypatchable for that purpose.
SHRINK_SECONDS = 5


@pytest.fixture(autouse=True)
def bounded_shrinking(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(engine, "MAX_SHRINKING_SECONDS", SHRINK_SECONDS)
    yield


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """An empty store: in memory, a SQLite file, or the test redis-server (flushed)."""
    config: dict[str, Any] = {}
    if request.param == "sqlite":
        # The suites check what is stored, not what survives power loss: skip the fsyncs.
        config = {"db_path": str(tmp_path / "fuzz.db"), "synchronous": "NORMAL"}
    elif request.param == "redis":
        config = {"url": request.getfixturevalue("redis_url")}
    return Store(str(request.param), config)
