"""Throwaway storage for a run: a temporary SQLite file or a private Redis key prefix."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import anyio
import anyio.to_thread

from .workload import Workload

__all__ = ["scratch_config"]


@contextlib.asynccontextmanager
async def scratch_config(workload: Workload) -> AsyncIterator[dict[str, Any]]:
    """Backend config the run adds, removed afterwards even if the run fails: a
    throwaway SQLite file, or a private Redis key prefix."""
    w = workload
    if w.backend == "redis":
        prefix = f"lsbench-{os.urandom(6).hex()}"
        try:
            yield {"key_prefix": prefix}
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_delete_redis_keys, w.redis_url, prefix)
    elif w.backend == "sqlite" and w.sqlite_path is None:
        directory = tempfile.mkdtemp(prefix="langswarm-bench-")
        try:
            yield {"db_path": os.path.join(directory, "bench.db")}
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(partial(shutil.rmtree, directory, True))
    else:
        yield {}


def _delete_redis_keys(url: str, prefix: str) -> None:
    """Remove every key a run wrote under its private prefix; best effort, since it also
    runs after a failed run, when the server may be unreachable."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1_000):
            batch.append(key)
            if len(batch) >= 1_000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    except redis.RedisError:
        pass
    finally:
        client.close()
