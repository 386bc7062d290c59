"""The test deployments are real: a three-master cluster, TLS-only servers and ACL users.

Every check uses a real redis-py client. redis.asyncio runs only on asyncio, so on trio the
same checks drive the sync clients from worker threads.
"""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
import redis.retry
import sniffio
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import AuthenticationError, NoPermissionError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests._servers import (
    APP_PASSWORD,
    APP_USER,
    RedisCluster,
    RedisReplyError,
    RedisServer,
    RedisTLSServer,
)

pytestmark = pytest.mark.anyio


class Client:
    """Runs redis-py client methods: awaited on asyncio, in a worker thread on trio."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        bound = partial(getattr(self.client, method), *args, **kwargs)
        if sniffio.current_async_library() == "trio":
            return await anyio.to_thread.run_sync(bound)
        result = bound()
        return await result if inspect.isawaitable(result) else result


@asynccontextmanager
async def connect(url: str, *, cluster: bool = False, **options: Any) -> AsyncIterator[Client]:
    """A redis-py client for ``url``; single-node clients do not retry, so failures show."""
    kind: Any
    if sniffio.current_async_library() == "trio":
        kind = redis.cluster.RedisCluster if cluster else redis.Redis
        if not cluster:
            options.setdefault("retry", redis.retry.Retry(NoBackoff(), 0))
        client = await anyio.to_thread.run_sync(partial(kind.from_url, url, **options))
        try:
            yield Client(client)
        finally:
            await anyio.to_thread.run_sync(client.close)
    else:
        kind = redis.asyncio.cluster.RedisCluster if cluster else redis.asyncio.Redis
        if not cluster:
            options.setdefault("retry", redis.asyncio.retry.Retry(NoBackoff(), 0))
        client = kind.from_url(url, **options)
        try:
            yield Client(client)
        finally:
            await client.aclose()


def one_key_per_node(cluster: RedisCluster) -> list[str]:
    """Keys ``langswarm:k<n>``, the i-th hashing to a slot that ``cluster.nodes[i]`` serves."""
    keys: dict[int, str] = {}
    for n in itertools.count():
        key = f"langswarm:k{n}"
        keys.setdefault(cluster.slot_owner(key_slot(key.encode())), key)
        if len(keys) == len(cluster.nodes):
            return [keys[i] for i in range(len(cluster.nodes))]
    raise AssertionError("unreachable")


def moved_replies(node: RedisServer) -> int:
    """How many MOVED redirections ``node`` has answered so far."""
    info = node.call("INFO", "errorstats")
    assert isinstance(info, bytes)
    found = re.search(rb"errorstat_MOVED:count=(\d+)", info)
    return int(found.group(1)) if found else 0


# -- cluster ---------------------------------------------------------------------------------


def test_cluster_url_names_every_master(
    redis_cluster: RedisCluster, redis_cluster_url: str
) -> None:
    parts = urlsplit(redis_cluster_url)
    assert parts.scheme == "redis+cluster"
    assert parts.netloc.split(",") == redis_cluster.startup_nodes
    assert redis_cluster.node_url == redis_cluster.urls[0]
    for url in redis_cluster.urls:
        with redis.Redis.from_url(url) as node:
            info = node.cluster("INFO")
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_size"]) == int(info["cluster_known_nodes"]) == 3


async def test_cluster_keys_land_on_every_master(
    redis_cluster: RedisCluster, redis_cluster_url: str
) -> None:
    keys = one_key_per_node(redis_cluster)
    async with connect(redis_cluster.node_url, cluster=True) as call:
        for key in keys:
            assert await call("set", key, key.upper())
        assert [await call("get", key) for key in keys] == [k.upper().encode() for k in keys]
    for i, (node, key) in enumerate(zip(redis_cluster.nodes, keys, strict=True)):
        assert node.call("GET", key) == key.upper().encode()
        assert node.call("DBSIZE") == 1
        with pytest.raises(RedisReplyError, match="MOVED"):
            redis_cluster.nodes[(i + 1) % 3].call("GET", key)


async def test_cluster_clients_follow_moved(
    redis_cluster: RedisCluster, redis_cluster_url: str
) -> None:
    key = "langswarm:moved"
    slot = key_slot(key.encode())
    source = redis_cluster.slot_owner(slot)
    old, new = redis_cluster.nodes[source], redis_cluster.nodes[(source + 1) % 3]
    async with connect(redis_cluster.node_url, cluster=True) as call:
        assert await call("set", key, "before")
        redis_cluster.move_slot(slot, (source + 1) % 3)
        try:
            assert new.call("GET", key) == b"before"
            redirected = moved_replies(old)
            assert await call("get", key) == b"before"
            assert moved_replies(old) == redirected + 1
            assert await call("set", key, "after")
            assert moved_replies(old) == redirected + 1  # the client now asks ``new`` directly
            assert new.call("GET", key) == b"after"
        finally:
            redis_cluster.move_slot(slot, source)
    assert old.call("GET", key) == b"after"


async def test_paused_node_stalls_until_resumed(
    redis_cluster: RedisCluster, redis_cluster_url: str
) -> None:
    async with connect(redis_cluster.urls[2], socket_timeout=0.25) as call:
        assert await call("ping") is True
        redis_cluster.pause_node(2)
        try:
            with pytest.raises(RedisTimeoutError):
                await call("ping")
        finally:
            redis_cluster.resume_node(2)
        assert await call("ping") is True


def test_killed_node_refuses_until_healed(
    redis_cluster: RedisCluster, redis_cluster_url: str
) -> None:
    key = one_key_per_node(redis_cluster)[1]
    redis_cluster.kill_node(1)
    assert not redis_cluster.nodes[1].alive()
    with (
        redis.Redis.from_url(redis_cluster.urls[1], retry=redis.retry.Retry(NoBackoff(), 0)) as r,
        pytest.raises(RedisConnectionError),
    ):
        r.ping()
    redis_cluster.heal()
    assert redis_cluster.states() == ["ok"] * 3
    with redis.cluster.RedisCluster.from_url(redis_cluster.node_url) as client:
        assert client.set(key, "back")
    assert redis_cluster.nodes[1].call("GET", key) == b"back"


# -- TLS -------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_tls_client_trusting_the_ca_connects(redis_tls: RedisTLSServer, host: str) -> None:
    assert redis_tls.url == f"rediss://127.0.0.1:{redis_tls.port}/0"
    url = redis_tls.url.replace("127.0.0.1", host)
    async with connect(url, ssl_ca_certs=str(redis_tls.ca_file)) as call:
        assert await call("ping") is True
        assert await call("set", "langswarm:tls", host)
        assert await call("get", "langswarm:tls") == host.encode()


async def test_tls_refuses_untrusting_and_plaintext_clients(redis_tls: RedisTLSServer) -> None:
    async with connect(redis_tls.url) as call:
        with pytest.raises(RedisConnectionError, match="certificate verify failed"):
            await call("ping")
    async with connect(f"redis://127.0.0.1:{redis_tls.port}/0") as call:
        with pytest.raises(RedisConnectionError):
            await call("ping")


async def test_mtls_requires_a_client_certificate(redis_mtls: RedisTLSServer) -> None:
    ca = str(redis_mtls.ca_file)
    async with connect(redis_mtls.url, ssl_ca_certs=ca) as call:
        with pytest.raises(RedisConnectionError):
            await call("ping")
    cert, key = (str(path) for path in redis_mtls.client_cert)
    async with connect(redis_mtls.url, ssl_ca_certs=ca, ssl_certfile=cert, ssl_keyfile=key) as call:
        assert await call("ping") is True


# -- ACL -------------------------------------------------------------------------------------


async def test_acl_user_is_confined_to_its_prefix(redis_acl: RedisServer) -> None:
    async with connect(redis_acl.acl_url(APP_USER, APP_PASSWORD)) as call:
        assert await call("acl_whoami") == APP_USER
        assert await call("set", "langswarm:x", "1")
        with pytest.raises(NoPermissionError):
            await call("set", "other:x", "1")
        sha = await call("script_load", "return redis.call('GET', KEYS[1])")
        assert await call("evalsha", sha, 1, "langswarm:x") == b"1"
        with pytest.raises(NoPermissionError):
            await call("evalsha", sha, 1, "other:x")
        with pytest.raises(NoPermissionError):
            await call("flushall")
    assert redis_acl.call("EXISTS", "other:x") == 0


async def test_acl_refuses_missing_and_wrong_passwords(redis_acl: RedisServer) -> None:
    for url in (
        redis_acl.url,
        redis_acl.acl_url(APP_USER, "wrong"),
        redis_acl.acl_url("nobody", APP_PASSWORD),
    ):
        async with connect(url) as call:
            with pytest.raises(AuthenticationError):
                await call("ping")
