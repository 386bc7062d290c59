"""Reaching Redis: where the server (or cluster) is, one client per event loop, and driver
errors mapped to ours.

redis.asyncio clients belong to the asyncio loop that made them. An asyncio host gets a
client of its own loop (no thread hop); a trio host reaches the server through a private
asyncio loop in a helper thread, whose client that loop owns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import hiredis
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.typing import EncodableT

from ...exceptions import (
    MemoryBackendError,
    MemoryConfigurationError,
    MemoryConnectionError,
    TransientBackendError,
)

__all__ = ["Client", "Target", "map_error", "redact"]

log = logging.getLogger("langswarm.memory.redis")

Client = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster

_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")


class _FastPack:
    """Packs commands with hiredis (C) instead of redis-py's Python packer."""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        name = args[0]
        if isinstance(name, str) and " " in name:
            args = (*name.split(), *args[1:])
        return [hiredis.pack_command(args)]  # type: ignore[arg-type]  # stub says 1-tuple


class _Connection(_FastPack, redis.asyncio.Connection):
    pass


class _SSLConnection(_FastPack, redis.asyncio.SSLConnection):
    pass


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None and "@" not in parts.netloc:
        return url
    credentials, _, hosts = parts.netloc.rpartition("@")
    user = credentials.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{hosts}").geturl()


@dataclass(frozen=True, slots=True)
class Target:
    """Where the server is and how to talk to it."""

    nodes: tuple[tuple[str, int], ...]
    cluster: bool = False
    ssl: bool = False
    db: int = 0
    username: str | None = None
    password: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # from the URL's query
    where: str = ""

    @classmethod
    def parse(cls, url: str | None, host: str, port: int, db: int, password: str | None) -> Target:
        if url is None:
            return cls(((host, port),), db=db, password=password, where=f"{host}:{port}/{db}")
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise MemoryConfigurationError(
                f"redis url must start with one of {', '.join(s + '://' for s in _SCHEMES)}, "
                f"got {redact(url)!r}"
            )
        credentials, _, hosts = parts.netloc.rpartition("@")
        user, _, secret = credentials.partition(":")
        nodes = tuple(_node(item) for item in hosts.split(",") if item)
        if not nodes:
            raise MemoryConfigurationError(f"redis url {redact(url)!r} names no host")
        path = parts.path.strip("/")
        return cls(
            nodes,
            cluster=parts.scheme.endswith("+cluster"),
            ssl=parts.scheme.startswith("rediss"),
            db=int(path) if path else db,
            username=unquote(user) or None,
            password=unquote(secret) if secret else password,
            options=dict(parse_qsl(parts.query)),
            where=redact(url),
        )

    def client_options(self, timeout: float, socket_timeout: float) -> dict[str, Any]:
        options: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_timeout": socket_timeout,
            "username": self.username,
            "password": self.password,
            "protocol": 2,
        }
        if self.ssl:
            options.update((k, v) for k, v in self.options.items() if k.startswith("ssl_"))
        if self.ssl and self.cluster:
            options["ssl"] = True
        return options

    def connect(self, pool_size: int, timeout: float, socket_timeout: float) -> Client:
        """An asyncio client, for the running loop. The runtime retries, not the client."""
        options = self.client_options(timeout, socket_timeout)
        if self.cluster:
            nodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in self.nodes]
            client = redis.asyncio.cluster.RedisCluster(
                startup_nodes=nodes,
                max_connections=pool_size,
                retry=AsyncRetry(NoBackoff(), 0),
                **options,
            )
            _track_connections(client, _SSLConnection if self.ssl else _Connection)
            return client
        host, port = self.nodes[0]
        connection_class = _SSLConnection if self.ssl else _Connection
        if self.ssl:
            options.setdefault("ssl_cert_reqs", "required")
        pool = redis.asyncio.BlockingConnectionPool(
            host=host,
            port=port,
            db=self.db,
            max_connections=pool_size,
            timeout=None,  # wait for a free connection; each command is time-bounded
            retry=AsyncRetry(NoBackoff(), 0),
            connection_class=connection_class,
            **options,
        )
        return redis.asyncio.Redis(connection_pool=pool)

    def ping(self, timeout: float) -> None:
        """PING with a synchronous client (for the preflight check)."""
        options = self.client_options(timeout, timeout)
        client: redis.Redis | redis.cluster.RedisCluster
        if self.cluster:
            nodes = [redis.cluster.ClusterNode(h, p) for h, p in self.nodes]  # type: ignore[no-untyped-call]
            client = redis.cluster.RedisCluster(
                startup_nodes=nodes, retry=Retry(NoBackoff(), 0), **options
            )
        else:
            host, port = self.nodes[0]
            client = redis.Redis(
                host=host,
                port=port,
                db=self.db,
                ssl=self.ssl,
                retry=Retry(NoBackoff(), 0),
                **options,
            )
        try:
            client.ping()
        finally:
            client.close()


def _track_connections(
    client: redis.asyncio.cluster.RedisCluster, base: type[redis.asyncio.Connection]
) -> None:
    """Have every connection ``client`` opens recorded, so that closing it closes them all.

    A cluster client that refreshes its node map after redirects or failures drops node
    objects with their connections still open; ``aclose`` no longer reaches those.
    """
    opened: weakref.WeakSet[redis.asyncio.Connection] = weakref.WeakSet()

    class Tracked(base):  # type: ignore[valid-type,misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            opened.add(self)

    client.nodes_manager.connection_kwargs["connection_class"] = Tracked
    for node in client.nodes_manager.startup_nodes.values():
        node.connection_class = Tracked
    _opened[client] = opened


_opened: weakref.WeakKeyDictionary[Client, weakref.WeakSet[redis.asyncio.Connection]] = (
    weakref.WeakKeyDictionary()
)


async def _close(client: Client) -> None:
    await client.aclose()
    if isinstance(client, redis.asyncio.Redis):  # a pool we made is ours to close
        await client.connection_pool.disconnect()
    for connection in list(_opened.pop(client, ())):
        if connection.is_connected:
            await connection.disconnect(nowait=True)


def _node(item: str) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    if not host:
        return item, 6379
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise MemoryConfigurationError(f"bad redis host:port {item!r}") from None


class Clients:
    """One client per asyncio loop that uses the backend (made on first use there)."""

    def __init__(self, target: Target, pool_size: int, timeout: float, socket: float) -> None:
        self._target = target
        self._options = (pool_size, timeout, socket)
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Client] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def current(self) -> Client:
        """The running loop's client."""
        loop = asyncio.get_running_loop()
        client = self._by_loop.get(loop)
        if client is None:
            with self._lock:
                client = self._by_loop.get(loop)
                if client is None:
                    client = self._by_loop[loop] = self._target.connect(*self._options)
                    log.debug(
                        "new redis client for %s (pool of %d connections)",
                        self._target.where,
                        self._options[0],
                        extra={"backend": "redis"},
                    )
        return client

    async def close_current(self) -> None:
        """Close the running loop's client, if it has one."""
        client = self._by_loop.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await _close(client)


def map_error(exc: BaseException, where: str) -> BaseException:
    """A driver error as ours; other errors unchanged.

    A dropped connection or a timeout is worth retrying (every call is idempotent); a timeout
    or a reset after the request went out may have been applied. A refused login is not.
    """
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.AuthorizationError):
        return MemoryConnectionError(f"redis at {where} refused us: {exc}")
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return MemoryConnectionError(f"redis at {where} does not allow it: {exc}")
    if isinstance(exc, redis.exceptions.ClusterDownError | redis.exceptions.TryAgainError):
        return TransientBackendError(f"redis cluster at {where} is not ready: {exc}")
    if isinstance(exc, redis.exceptions.ClusterError):  # redirected too often: slots moving
        return TransientBackendError(f"redis cluster at {where} kept redirecting us: {exc}")
    if isinstance(exc, redis.exceptions.RedisClusterException):  # no node answers
        return TransientBackendError(f"redis cluster at {where}: {exc}", unreachable=True)
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError):
        sent = isinstance(exc, redis.TimeoutError) or "reset" in str(exc).lower()
        return TransientBackendError(
            f"redis at {where} is unreachable: {exc}", unreachable=True, maybe_applied=sent
        )
    if isinstance(exc, redis.RedisError):
        return MemoryBackendError(f"redis at {where} failed: {exc}")
    return exc
