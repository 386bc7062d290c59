"""Redis-only behaviour: key layout, TTL, foreign data, TLS and ACL users, unreachable servers,
restarts, lost scripts, and a three-master cluster (slots, MOVED, paused nodes).

The protocol itself is covered by test_conformance.py (on every deployment kind); these tests
look at what only Redis has, against real redis-server processes, and inspect the servers
past the backend with the test harness's own client.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import anyio
import pytest
import trio
from redis.crc import key_slot

from langswarm.core.memory._retry import Backoff, RetryPolicy
from langswarm.core.memory.backends.base import ABSENT, SessionWrite
from langswarm.core.memory.backends.redis import RedisBackend
from langswarm.core.memory.backends.retrying import RetryingBackend
from langswarm.core.memory.exceptions import (
    MemoryBackendError,
    MemoryConfigurationError,
    MemoryConnectionError,
    MemoryCorruptionError,
    MemoryError,
    TransientBackendError,
)
from langswarm.core.memory.interfaces import Message, MessageRole, SessionMetadata, SessionStatus
from tests._servers import (
    APP_PASSWORD,
    APP_USER,
    RedisCluster,
    RedisServer,
    RedisTLSServer,
    Reply,
    free_port,
)
from tests.backends.conftest import (
    apply1,
    contents,
    create,
    load,
    meta,
    redis_url_of,
    summary,
    texts,
)

pytestmark = pytest.mark.anyio

INDEX = "langswarm:idx:all"


def family(session_id: str, prefix: str = "langswarm") -> list[str]:
    """A session's keys: one hash tag, so one cluster slot."""
    return [f"{prefix}:{{{session_id}}}:{part}" for part in ("meta", "msgs", "ids", "sums")]


def ids(sessions: list[SessionMetadata]) -> list[str]:
    return [m.session_id for m in sessions]


def names(reply: Reply) -> list[str]:
    assert isinstance(reply, list), reply
    return sorted(item.decode() for item in reply if isinstance(item, bytes))


@dataclass
class Deployed:
    """A deployment under test: the URL the backend is given, and the harness's own access
    to the node that holds each key."""

    url: str
    nodes: list[RedisServer]
    cluster: RedisCluster | None = None

    def node_of(self, key: str) -> RedisServer:
        if self.cluster is None:
            return self.nodes[0]
        return self.nodes[self.cluster.slot_owner(key_slot(key.encode()))]

    async def call(self, *command: object) -> Reply:
        """Run a command whose first argument is a key on the node holding that key."""
        node = self.node_of(str(command[1]))
        return await anyio.to_thread.run_sync(functools.partial(node.call, *command))

    async def everywhere(self, *command: object) -> list[Reply]:
        return [
            await anyio.to_thread.run_sync(functools.partial(node.call, *command))
            for node in self.nodes
        ]

    async def dbsize(self) -> int:
        return sum(int(str(n)) for n in await self.everywhere("DBSIZE"))

    def ids_on(self, node: int, count: int, prefix: str = "s") -> list[str]:
        """``count`` session ids whose keys live on ``nodes[node]``."""
        assert self.cluster is not None
        found: list[str] = []
        for i in itertools.count():
            sid = f"{prefix}{i}"
            if self.cluster.slot_owner(key_slot(family(sid)[0].encode())) == node:
                found.append(sid)
                if len(found) == count:
                    return found
        raise AssertionError("unreachable")


@pytest.fixture
def server(redis_server: RedisServer, redis_url: str) -> Deployed:
    """The shared single server, flushed."""
    return Deployed(redis_url, [redis_server])


@pytest.fixture
def cluster(redis_cluster: RedisCluster, redis_cluster_url: str) -> Deployed:
    """The shared three-master cluster, healed and flushed."""
    return Deployed(redis_cluster_url, redis_cluster.nodes, redis_cluster)


@pytest.fixture(params=["redis", "redis-cluster"])
def deployed(request: pytest.FixtureRequest) -> Deployed:
    """A single server, then the cluster."""
    if request.param == "redis":
        return Deployed(redis_url_of("redis", request), [request.getfixturevalue("redis_server")])
    where: RedisCluster = request.getfixturevalue("redis_cluster")
    return Deployed(redis_url_of("redis-cluster", request), where.nodes, where)


@asynccontextmanager
async def opened(url: str, **options: Any) -> AsyncIterator[RedisBackend]:
    store = RedisBackend(url=url, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def append(session_id: str, messages: list[Message]) -> SessionWrite:
    return SessionWrite(session_id, "i1", "w1", messages=messages)


# -- layout and lifecycle ------------------------------------------------------------------


async def test_one_hash_tagged_key_family_per_session(server: Deployed) -> None:
    async with opened(server.url, key_prefix="app") as store:
        await apply1(
            store,
            SessionWrite(
                "s1",
                "i1",
                "w1",
                create=meta("s1", "u1", metadata={"topic": "été"}),
                messages=texts(3),
                summary=summary("s1", "sum", 2),
            ),
        )

    keys = family("s1", "app")
    assert names(await server.call("KEYS", "*")) == sorted(
        [*keys, "app:idx:all", "app:idx:user:u1"]
    )
    assert len({key_slot(k.encode()) for k in keys}) == 1
    types = [await server.call("TYPE", k) for k in keys]
    assert types == [b"hash", b"list", b"hash", b"hash"]
    fields = await server.call("HMGET", keys[0], "i", "u", "v", "f", "n", "c", "si", "x:topic")
    assert fields == [b"i1", b"u1", b"1", b"0", b"3", b"3", b"sum", '"été"'.encode()]
    assert await server.call("HGETALL", keys[2]) == [b"m0", b"0", b"m1", b"1", b"m2", b"2"]
    first = await server.call("LINDEX", keys[1], 0)
    assert isinstance(first, bytes) and first.startswith(b"m0\0")
    assert await server.call("HKEYS", keys[3]) == [b"sum"]
    assert await server.call("ZRANGE", "app:idx:user:u1", 0, -1) == [b"s1"]


async def test_prefixes_isolate_backends(server: Deployed) -> None:
    async with opened(server.url, key_prefix="one") as one, opened(server.url) as two:
        await apply1(one, SessionWrite("s", "i1", "w1", create=meta("s"), messages=texts(2)))

        assert await two.load_session("s", tail=5) is None
        assert await two.list_sessions() == []
        assert (await two.get_usage_stats())["total_sessions"] == 0
        assert (await one.get_usage_stats())["total_messages"] == 2


async def test_close_is_idempotent_and_the_backend_reopens(server: Deployed) -> None:
    store = RedisBackend(url=server.url)
    await store.close()  # never opened
    await store.open()
    await create(store, "s", 1)
    await store.close()
    await store.close()

    await store.open()
    try:
        assert contents((await load(store, "s")).messages) == ["m0"]
    finally:
        await store.close()


async def test_host_and_port_configuration(server: Deployed) -> None:
    port = server.nodes[0].port
    async with opened(server.url.replace("/0", "/1"), key_prefix="cfg") as check:
        store = RedisBackend(host="127.0.0.1", port=port, db=1, key_prefix="cfg")
        try:
            await create(store, "s")
            assert await check.load_session("s", tail=1) is not None
        finally:
            await store.close()
    assert await server.call("EXISTS", "cfg:{s}:meta") == 0  # not in db 0


async def turn(store: RedisBackend, session_id: str) -> None:
    """Open ``store`` on the running loop, store two messages, read them back, close."""
    await store.open()
    try:
        await apply1(store, SessionWrite(session_id, "i1", "w1", create=meta(session_id)))
        await apply1(store, append(session_id, texts(2)))
        assert contents((await load(store, session_id)).messages) == ["m0", "m1"]
    finally:
        await store.close()


def test_loops_one_after_another_each_open_use_and_close_the_backend(server: Deployed) -> None:
    store = RedisBackend(url=server.url)

    for sid in ("a", "b"):
        asyncio.run(turn(store, sid))
    trio.run(turn, store, "c")
    asyncio.run(turn(store, "d"))

    assert server.nodes[0].call("DBSIZE") == 4 * 3 + 2  # four sessions, two indexes
    clients = server.nodes[0].call("CLIENT", "LIST")
    assert isinstance(clients, bytes) and len(clients.splitlines()) == 1  # this very call


def test_a_loop_closing_the_backend_leaves_it_open_for_the_other_loops(server: Deployed) -> None:
    """Threads each run their own loop over one backend, as the runtime does (open, work,
    close): the loop that finishes first must not close the backend under the others."""
    store = RedisBackend(url=server.url)
    all_in, first_out = threading.Barrier(3), threading.Event()
    failures: list[BaseException] = []

    async def life(index: int) -> None:
        sid = f"t{index}"
        await store.open()
        try:
            await apply1(store, SessionWrite(sid, "i1", "w1", create=meta(sid)))
            all_in.wait(timeout=10)
            if index > 0:
                first_out.wait(timeout=10)
                await apply1(store, append(sid, texts(2)))
        finally:
            await store.close()
            first_out.set()

    def in_thread(index: int) -> None:
        try:
            asyncio.run(life(index))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=in_thread, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert failures == []
    assert [server.nodes[0].call("LLEN", family(f"t{i}")[1]) for i in range(3)] == [0, 2, 2]


async def test_user_indexes_follow_ownership(deployed: Deployed) -> None:
    async with opened(deployed.url) as store:
        await apply1(
            store, SessionWrite("s", "i1", "w1", create=meta("s", "u1"), messages=texts(2))
        )
        # Deleted and re-created for the same user in one write: still listed for that user.
        await apply1(
            store, SessionWrite("s", "i1", "w1", delete=True, create=meta("s", "u1", updated=1))
        )
        assert ids(await store.list_sessions(user_id="u1")) == ["s"]

        await apply1(
            store, SessionWrite("s", "i1", "w2", delete=True, create=meta("s", "u2", updated=2))
        )
        assert await store.list_sessions(user_id="u1") == []
        assert ids(await store.list_sessions(user_id="u2")) == ["s"]
        assert await deployed.call("EXISTS", "langswarm:idx:user:u1") == 0

        assert await store.delete_sessions(["s"]) == 1
        assert await deployed.dbsize() == 0


async def test_large_batches_span_several_script_calls(deployed: Deployed) -> None:
    big = [
        Message(role=MessageRole.USER, content=f"x{i}", message_id=f"x{i}", token_count=1)
        for i in range(9_000)
    ]
    writes = [
        SessionWrite(f"s{i}", "i1", "w1", create=meta(f"s{i}"), messages=texts(2))
        for i in range(250)
    ]
    writes[120] = SessionWrite(
        "big", "i1", "w1", create=meta("big"), messages=big, summary=summary("big", "sum", 8_000)
    )
    await deployed.call("SET", "langswarm:{s230}:sums", "foreign")

    async with opened(deployed.url) as store:
        results = await store.apply(writes)
        again = await store.apply(writes)  # re-sent: nothing is stored twice

        bad = results.pop(230)
        assert isinstance(bad.error, MemoryCorruptionError) and "s230" in str(bad.error)
        assert [r.error for r in results] == [None] * 249
        assert results[120].appended_at == 0 and results[120].summary_stored
        assert [r.appended_at for i, r in enumerate(again) if i != 230] == [None] * 249
        snap = await load(store, "big", tail=10_000)
        assert contents(snap.messages) == [m.content for m in big]
        assert [s.summary_id for s in snap.summaries] == ["sum"]
        stats = await store.get_usage_stats()
        assert (stats["total_sessions"], stats["total_messages"]) == (249, 9_000 + 2 * 248)
        assert await store.load_session("s230", tail=5) is None
    assert await deployed.call("GET", "langswarm:{s230}:sums") == b"foreign"


def test_bad_configuration_is_rejected() -> None:
    for url in (
        "http://user:s3cret@localhost:6379",
        "redis://user:s3cret@127.0.0.1:port/0",
        "redis+cluster://user:s3cret@/0",
    ):
        with pytest.raises(MemoryConfigurationError) as caught:
            RedisBackend(url=url)
        assert "s3cret" not in str(caught.value)
    with pytest.raises(MemoryConfigurationError):
        RedisBackend(pool_size=0)
    with pytest.raises(MemoryConfigurationError):
        RedisBackend(ttl_seconds=0)


# -- TLS and ACL users -----------------------------------------------------------------------


def tls_url(server: RedisTLSServer, *, client_cert: bool = False) -> str:
    """The server's ``rediss://`` URL trusting its CA (and presenting its client certificate)."""
    options = {"ssl_ca_certs": server.ca_file}
    if client_cert:
        options["ssl_certfile"], options["ssl_keyfile"] = server.client_cert
    return f"{server.url}?{urlencode(options)}"


async def refused(url: str) -> MemoryConnectionError:
    """Check that both the preflight and ``open()`` refuse ``url``; the preflight's error."""
    store = RedisBackend(url=url)
    try:
        with pytest.raises(MemoryConnectionError) as caught:
            await anyio.to_thread.run_sync(store.preflight)
        with pytest.raises(MemoryConnectionError):
            await store.open()
    finally:
        await store.close()
    return caught.value


async def test_rediss_with_the_servers_ca_and_refused_without(
    redis_tls: RedisTLSServer, request: pytest.FixtureRequest
) -> None:
    url = redis_url_of("redis-tls", request)
    await anyio.to_thread.run_sync(RedisBackend(url=url).preflight)
    async with opened(url) as store:
        await create(store, "s", 2)
        assert contents((await load(store, "s")).messages) == ["m0", "m1"]

    await refused(redis_tls.url)  # the system's trust store does not know the test CA


async def test_mutual_tls_presents_the_client_certificate(redis_mtls: RedisTLSServer) -> None:
    redis_mtls.flushall()
    url = tls_url(redis_mtls, client_cert=True)
    await anyio.to_thread.run_sync(RedisBackend(url=url).preflight)
    async with opened(url) as store:
        await create(store, "s", 1)
        assert contents(await store.load_messages("s", start=0, stop=5)) == ["m0"]

    await refused(tls_url(redis_mtls))


@pytest.mark.parametrize("login", ["no-credentials", "wrong-password"])
async def test_a_client_the_server_does_not_know_is_refused(
    redis_acl: RedisServer, login: str
) -> None:
    url = redis_acl.url if login == "no-credentials" else redis_acl.acl_url(APP_USER, "guess-me")

    error = await refused(url)

    assert "guess-me" not in str(error)


async def test_the_limited_user_works_under_its_prefix_only(redis_acl: RedisServer) -> None:
    """The conformance suite runs as this user too; here: its data lands under the prefix it
    may touch, and a backend configured with another prefix is refused, storing nothing."""
    redis_acl.flushall()
    acl = Deployed(redis_acl.acl_url(APP_USER, APP_PASSWORD), [redis_acl])
    async with opened(acl.url) as store:
        await create(store, "s", 2)
        assert (await store.get_usage_stats())["storage_size_mb"] > 0
    assert await acl.call("EXISTS", *family("s")[:3]) == 3

    async with opened(acl.url, key_prefix="elsewhere") as outside:
        with pytest.raises(MemoryError, match=r"(?i)permission"):
            await outside.apply([SessionWrite("t", "i1", "w1", create=meta("t"))])
        with pytest.raises(MemoryError, match=r"(?i)permission"):
            await outside.list_sessions()
    assert await acl.dbsize() == 5  # meta, msgs and ids of s, and the two indexes


# -- TTL -------------------------------------------------------------------------------------


def brief_session() -> SessionWrite:
    return SessionWrite(
        "brief",
        "i1",
        "w1",
        create=meta("brief", "u1"),
        messages=texts(4),
        summary=summary("brief", "sum", 2),
    )


async def test_ttl_expires_every_key_and_the_listings_agree(deployed: Deployed) -> None:
    async with opened(deployed.url, ttl_seconds=1) as store, opened(deployed.url) as durable:
        await apply1(store, brief_session())
        await apply1(durable, SessionWrite("kept", "i1", "w1", create=meta("kept", "u2")))
        for key in family("brief"):
            assert 0 < int(str(await deployed.call("PTTL", key))) <= 1000, key
        assert await deployed.call("PTTL", family("kept")[0]) == -1
        assert len(await store.list_sessions()) == 2

        deadline = time.monotonic() + 5
        while await deployed.call("EXISTS", *family("brief")):
            assert time.monotonic() < deadline, "session keys outlived their TTL"
            await anyio.sleep(0.05)

        assert ids(await store.list_sessions()) == ["kept"]
        assert await store.list_sessions(user_id="u1") == []
        assert await store.load_session("brief", tail=5) is None
        stats = await store.get_usage_stats()
        assert [stats[f"total_{k}"] for k in ("sessions", "messages", "summaries")] == [1, 0, 0]
        # The stale index entries were pruned, not just skipped.
        assert await deployed.call("ZRANGE", INDEX, 0, -1) == [b"kept"]
        assert await deployed.call("EXISTS", "langswarm:idx:user:u1") == 0


async def test_a_users_index_expires_with_the_sessions_in_it(deployed: Deployed) -> None:
    """With a TTL, a user who never comes back leaves no index behind (nothing else would
    ever list that user to prune it)."""
    async with opened(deployed.url, ttl_seconds=5) as store:
        await apply1(store, brief_session())

        assert 0 < int(str(await deployed.call("PTTL", "langswarm:idx:user:u1"))) <= 5000


async def test_ttl_is_refreshed_by_each_write(server: Deployed) -> None:
    async with opened(server.url, ttl_seconds=5) as store:
        await create(store, "s", 1)
        for key in family("s")[:3]:
            await server.call("PEXPIRE", key, 200)

        await apply1(store, append("s", texts(1, start=1)))

        for key in family("s")[:3]:
            assert int(str(await server.call("PTTL", key))) > 4000, key
        assert contents((await load(store, "s")).messages) == ["m0", "m1"]


# -- foreign and corrupt data ----------------------------------------------------------------


@pytest.mark.parametrize("part", ["meta", "msgs", "ids", "sums"])
async def test_a_key_of_the_wrong_type_fails_that_session_only(
    deployed: Deployed, part: str
) -> None:
    foreign = f"langswarm:{{bad}}:{part}"
    async with opened(deployed.url) as store:
        await create(store, "good", 2)
        await deployed.call("SET", foreign, "not ours")

        good, bad, other = await store.apply(
            [
                append("good", texts(1, start=2)),
                SessionWrite("bad", "i1", "w1", create=meta("bad"), messages=texts(3)),
                SessionWrite("other", "i1", "w1", create=meta("other"), messages=texts(1)),
            ]
        )

        assert good.error is None and good.appended_at == 2
        assert isinstance(bad.error, MemoryCorruptionError) and "bad" in str(bad.error)
        assert bad.state == ABSENT and not bad.created and bad.appended_at is None
        assert other.error is None and other.created and other.appended_at == 0
        # The foreign key is untouched and nothing of the refused write was stored.
        assert await deployed.call("GET", foreign) == b"not ours"
        assert await deployed.call("EXISTS", *family("bad")) == 1
        assert contents((await load(store, "good")).messages) == ["m0", "m1", "m2"]
        assert contents((await load(store, "other")).messages) == ["m0"]


async def test_reads_of_a_session_with_a_key_of_the_wrong_type_fail_alone(
    deployed: Deployed,
) -> None:
    async with opened(deployed.url) as store:
        for sid in ("good", "other"):
            await create(store, sid, 2)
        await deployed.call("SET", "langswarm:{bad}:msgs", "not a list")
        await deployed.call("SET", "langswarm:{bad2}:meta", "not a hash")
        await deployed.call("SET", "langswarm:{other}:sums", "not a hash")

        # Without metadata there is no session, whatever else its keys hold.
        assert await store.load_session("bad", tail=5) is None
        assert await store.load_messages("bad", start=0, stop=5) == []
        with pytest.raises(MemoryCorruptionError, match="bad2"):
            await store.load_session("bad2", tail=5)
        with pytest.raises(MemoryCorruptionError, match="bad2"):
            await store.load_messages("bad2", start=0, stop=5)
        with pytest.raises(MemoryCorruptionError, match="other"):
            await store.load_session("other", tail=5)
        assert contents((await load(store, "good")).messages) == ["m0", "m1"]
        assert contents(await store.load_messages("other", start=0, stop=5)) == ["m0", "m1"]
        stats = await store.get_usage_stats()
        assert (stats["total_sessions"], stats["total_messages"]) == (2, 4)
        assert sorted(ids(await store.list_sessions())) == ["good", "other"]


async def corrupt_sessions(store: RedisBackend, deployed: Deployed) -> None:
    """good, torn (an undecodable message), garbled (a version that is not a number) and
    offset (a next sequence number that is not one), updated in that order."""
    await store.apply(
        [
            SessionWrite(sid, "i1", "w1", create=meta(sid, updated=i), messages=texts(3))
            for i, sid in enumerate(("good", "torn", "garbled", "offset"))
        ]
    )
    await deployed.call("LSET", "langswarm:{torn}:msgs", 1, b"m1\0\xc1junk")
    await deployed.call("HSET", "langswarm:{garbled}:meta", "v", "x")
    await deployed.call("HSET", "langswarm:{offset}:meta", "n", "twelve")


async def test_corrupt_stored_data_fails_reads_of_that_session_only(deployed: Deployed) -> None:
    async with opened(deployed.url) as store:
        await corrupt_sessions(store, deployed)

        with pytest.raises(MemoryCorruptionError, match="torn"):
            await store.load_session("torn", tail=10)
        with pytest.raises(MemoryCorruptionError, match="torn"):
            await store.load_messages("torn", start=0, stop=3)
        assert contents(await store.load_messages("torn", start=2, stop=3)) == ["m2"]
        for sid in ("garbled", "offset"):
            with pytest.raises(MemoryCorruptionError, match=sid):
                await store.load_session(sid, tail=10)

        assert contents((await load(store, "good")).messages) == ["m0", "m1", "m2"]
        stats = await store.get_usage_stats()
        assert (stats["total_sessions"], stats["corrupt_sessions"]) == (2, 2)
        assert ids(await store.list_sessions()) == ["torn", "good"]  # undecodable: skipped

        # Deleting is how an operator clears a corrupt session.
        assert await store.delete_sessions(["garbled", "torn", "offset"]) == 3
        for sid in ("garbled", "torn", "offset"):
            assert await deployed.call("EXISTS", *family(sid)) == 0
        assert (await store.get_usage_stats())["corrupt_sessions"] == 0


async def test_a_listing_keeps_corrupt_sessions_indexed(deployed: Deployed) -> None:
    """A listing skips a session it cannot decode; it must not drop it from the index as if
    it were gone (stats would stop counting it and nothing would find it to clean it up)."""
    async with opened(deployed.url) as store:
        await corrupt_sessions(store, deployed)

        assert ids(await store.list_sessions()) == ["torn", "good"]

        assert (await store.get_usage_stats())["corrupt_sessions"] == 2
        assert names(await deployed.call("ZRANGE", INDEX, 0, -1)) == [
            "garbled",
            "good",
            "offset",
            "torn",
        ]


async def test_a_write_to_a_session_with_corrupt_fields_fails_that_session_only(
    deployed: Deployed,
) -> None:
    async with opened(deployed.url) as store:
        await corrupt_sessions(store, deployed)

        results = await store.apply(
            [
                SessionWrite("before", "i1", "w1", create=meta("before")),
                append("offset", texts(1, start=3)),
                SessionWrite("after", "i1", "w1", create=meta("after")),
            ]
        )

        assert [r.created for r in results] == [True, False, True]
        assert isinstance(results[1].error, MemoryCorruptionError)
        assert "offset" in str(results[1].error)
        assert await deployed.call("LLEN", "langswarm:{offset}:msgs") == 3


async def test_deleting_a_session_clears_foreign_data_in_its_keys(deployed: Deployed) -> None:
    async with opened(deployed.url) as store:
        await deployed.call("SET", "langswarm:{s}:msgs", "junk")
        refused_create = await apply1(store, SessionWrite("s", "i1", "w1", create=meta("s")))
        assert isinstance(refused_create.error, MemoryCorruptionError)

        assert await store.delete_sessions(["s"]) == 0  # there was no session to delete

        assert await deployed.call("EXISTS", "langswarm:{s}:msgs") == 0
        await create(store, "s", 2)
        assert contents((await load(store, "s")).messages) == ["m0", "m1"]


async def test_scripts_are_loaded_again_when_the_server_lost_them(deployed: Deployed) -> None:
    """SCRIPT FLUSH before each kind of call: each script is reloaded (NOSCRIPT) and runs."""
    async with opened(deployed.url) as store:
        await store.apply(
            [
                SessionWrite("s", "i1", "w1", create=meta("s", updated=2), messages=texts(2)),
                SessionWrite("ghost", "i1", "w1", create=meta("ghost", updated=1)),
            ]
        )
        await deployed.call("DEL", *family("ghost"))  # as if expired: its index entry stays
        flush = functools.partial(deployed.everywhere, "SCRIPT", "FLUSH")

        await flush()
        assert (await apply1(store, append("s", texts(1, start=2)))).appended_at == 2
        await flush()
        assert (await load(store, "s")).next_seq == 3
        await flush()
        assert contents(await store.load_messages("s", start=1, stop=3)) == ["m1", "m2"]
        await flush()
        assert ids(await store.list_sessions()) == ["s"]
        assert await deployed.call("ZRANGE", INDEX, 0, -1) == [b"s"]  # the ghost was pruned
        await flush()
        assert await store.delete_sessions(["s"]) == 1


# -- unreachable servers ---------------------------------------------------------------------


PREFLIGHT_TARGETS: dict[str, Callable[[], RedisBackend]] = {
    "refusing-port": lambda: RedisBackend(host="127.0.0.1", port=free_port()),
    "unresolvable-host": lambda: RedisBackend(host="unreachable-host.invalid"),
    "url-with-password": lambda: RedisBackend(url=f"redis://user:s3cret@127.0.0.1:{free_port()}"),
    "cluster-url-with-password": lambda: RedisBackend(
        url=f"redis+cluster://user:s3cret@127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    ),
}


@pytest.mark.parametrize("target", list(PREFLIGHT_TARGETS))
def test_preflight_fails_fast_and_never_shows_the_password(target: str) -> None:
    store = PREFLIGHT_TARGETS[target]()
    started = time.monotonic()
    with pytest.raises(MemoryConnectionError) as caught:
        store.preflight(timeout=2.0)
    assert time.monotonic() - started <= 2.5
    assert "s3cret" not in str(caught.value)


def test_preflight_passes_against_live_deployments(deployed: Deployed) -> None:
    RedisBackend(url=deployed.url).preflight(timeout=2.0)


def dead(kind: str) -> RedisBackend:
    if kind == "server":
        return RedisBackend(host="127.0.0.1", port=free_port())
    return RedisBackend(url=f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}")


@pytest.mark.parametrize("kind", ["server", "cluster"])
async def test_an_unreachable_store_is_reported_at_once_and_retried_within_a_budget(
    kind: str,
) -> None:
    """The backend never retries by itself: it says the failure is worth retrying, and the
    runtime's one retry policy decides how long to (here through ``RetryingBackend``)."""
    store = dead(kind)
    retrying = RetryingBackend(store, RetryPolicy(budget=0.5))
    try:
        with pytest.raises(MemoryConnectionError):
            await store.open()
        started = time.monotonic()
        with pytest.raises(TransientBackendError) as transient:
            await store.apply([SessionWrite("s", "i1", "w1", create=meta("s"))])
        assert transient.value.unreachable
        assert time.monotonic() - started < 0.5
        started = time.monotonic()
        with pytest.raises(MemoryConnectionError, match="kept failing"):
            await retrying.load_session("s", tail=1)
        assert 0.4 <= time.monotonic() - started < 3
    finally:
        await store.close()


class SignallingBackoff(Backoff):
    """A backoff that sets ``retrying`` when its operation is about to be retried."""

    def __init__(self, policy: RetryPolicy, retrying: anyio.Event) -> None:
        super().__init__(policy)
        self.retrying = retrying

    def next_delay(self) -> float | None:
        self.retrying.set()
        return super().next_delay()


@dataclass(frozen=True)
class SignallingPolicy(RetryPolicy):
    """The retry policy, with an event set once an operation under it is being retried."""

    retrying: anyio.Event = field(default_factory=anyio.Event)

    def start(self) -> Backoff:
        return SignallingBackoff(self, self.retrying)


async def test_close_ends_calls_still_retrying() -> None:
    store = RedisBackend(host="127.0.0.1", port=free_port())
    policy = SignallingPolicy(budget=30)
    retrying = RetryingBackend(store, policy)
    outcome: list[BaseException] = []

    async def read() -> None:
        try:
            await retrying.load_session("s", tail=1)
        except MemoryError as exc:
            outcome.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await policy.retrying.wait()
            await store.close()
    assert len(outcome) == 1 and "closed" in str(outcome[0])
    assert isinstance(outcome[0], MemoryBackendError)


# -- restarts --------------------------------------------------------------------------------

SESSIONS = [f"s{i}" for i in range(20)]
PER_BATCH = 5


def batch(number: int) -> list[SessionWrite]:
    """Batch ``number`` appends messages b{number}-0..4 to every session (creating it)."""
    return [
        SessionWrite(
            sid, "i1", "w1", create=meta(sid), messages=texts(PER_BATCH, prefix=f"b{number}-")
        )
        for sid in SESSIONS
    ]


def expected(batches: int) -> list[object]:
    return [f"b{n}-{i}" for n in range(batches) for i in range(PER_BATCH)]


async def test_sigkill_and_restart_lose_nothing_acknowledged(durable_server: RedisServer) -> None:
    policy = RetryPolicy(budget=10)
    acknowledged: list[int] = []
    warmed_up, restarted = anyio.Event(), anyio.Event()

    async def writer(store: RedisBackend) -> None:
        after_restart = 0
        for number in itertools.count():
            results = await policy.run(functools.partial(store.apply, batch(number)), "a batch")
            assert [r.error for r in results] == [None] * len(SESSIONS)
            acknowledged.append(number)
            after_restart += restarted.is_set()
            if number == 4:
                warmed_up.set()
            if after_restart == 3:
                return

    async with opened(durable_server.url) as store:
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer, store)
            await warmed_up.wait()
            await anyio.to_thread.run_sync(durable_server.kill)
            killed_at = len(acknowledged)
            await anyio.to_thread.run_sync(durable_server.start)
            restarted.set()

        total = len(acknowledged)
        assert acknowledged == list(range(total)) and total > killed_at
        for sid in SESSIONS:
            assert contents((await load(store, sid, tail=10_000)).messages) == expected(total)

        # Re-applying acknowledged batches (as a retry would) duplicates nothing.
        for number in (0, killed_at - 1, killed_at, total - 1):
            results = await store.apply(batch(number))
            assert [r.appended_at for r in results] == [None] * len(SESSIONS)
        stats = await store.get_usage_stats()
        assert stats["total_messages"] == len(SESSIONS) * total * PER_BATCH


async def test_acknowledged_writes_survive_a_kill_while_idle(durable_server: RedisServer) -> None:
    async with opened(durable_server.url) as store:
        for number in range(3):
            await store.apply(batch(number))
        await anyio.to_thread.run_sync(durable_server.kill)
        await anyio.to_thread.run_sync(durable_server.start)

        # The pooled connections are dead: the first call fails as worth retrying, and the
        # retry reconnects.
        retrying = RetryingBackend(store, RetryPolicy(budget=5))
        for sid in SESSIONS:
            snap = await retrying.load_session(sid, tail=100)
            assert snap is not None and contents(snap.messages) == expected(3)
        assert len(await retrying.list_sessions(limit=None)) == len(SESSIONS)


# -- cluster ---------------------------------------------------------------------------------


async def test_a_batch_spanning_all_three_masters_applies_in_one_call(cluster: Deployed) -> None:
    placed = {node: cluster.ids_on(node, 4) for node in range(3)}
    everyone = [sid for sids in placed.values() for sid in sids]

    async with opened(cluster.url) as store:
        results = await store.apply(
            [
                SessionWrite(
                    sid,
                    "i1",
                    "w1",
                    create=meta(sid, updated=i),
                    messages=texts(3),
                    summary=summary(sid, "sum", 2),
                )
                for i, sid in enumerate(everyone)
            ]
        )

        assert all(r.error is None and r.created and r.summary_stored for r in results)
        assert [r.appended_at for r in results] == [0] * len(everyone)
        for sid in everyone:
            assert await cluster.call("EXISTS", *family(sid)) == 4, sid
        indexes = [cluster.node_of(k) for k in (INDEX, "langswarm:idx:user:alice")]
        sizes = [4 * 4 + indexes.count(node) for node in cluster.nodes]
        assert await cluster.everywhere("DBSIZE") == sizes  # nothing anywhere else
        assert ids(await store.list_sessions(limit=None)) == everyone[::-1]
        for sid in everyone:
            assert contents((await load(store, sid)).messages) == ["m0", "m1", "m2"]


def creations(session_ids: list[str]) -> list[SessionWrite]:
    return [SessionWrite(s, "i1", "w1", create=meta(s), messages=texts(1)) for s in session_ids]


async def test_a_batch_over_more_slots_of_a_node_than_the_pool_has_connections(
    cluster: Deployed,
) -> None:
    """A batch goes out as one script call per slot: more slots on one node than the
    connection pool holds must wait for connections, not fail."""
    placed = cluster.ids_on(0, 6)

    async with opened(cluster.url, pool_size=2) as store:
        results = await store.apply(creations(placed))

        assert [(r.error, r.created) for r in results] == [(None, True)] * len(placed)
        assert sorted(ids(await store.list_sessions())) == sorted(placed)


async def test_deleting_more_sessions_of_a_node_than_the_pool_has_connections(
    cluster: Deployed,
) -> None:
    placed = cluster.ids_on(0, 6)

    async with opened(cluster.url, pool_size=2) as store:
        for pair in (placed[:2], placed[2:4], placed[4:]):
            await store.apply(creations(pair))

        assert await store.delete_sessions(placed) == len(placed)
        assert await store.list_sessions() == []


async def test_writes_to_one_session_keep_their_order_within_a_batch(deployed: Deployed) -> None:
    """Several writes to one session in one batch apply in batch order (a repeated session
    starts a new script call: those calls must run in order). On a cluster the calls went
    out side by side on fresh connections, a race: each round starts a new backend."""
    for rounds in range(10):
        sid = f"s{rounds}"
        async with opened(deployed.url, pool_size=100) as store:
            await create(store, sid)
            results = await store.apply([append(sid, texts(1, start=i)) for i in range(30)])

            assert [r.appended_at for r in results] == list(range(30))
            assert contents((await load(store, sid)).messages) == [f"m{i}" for i in range(30)]


async def test_moved_after_a_slot_migration_is_followed(cluster: Deployed) -> None:
    assert cluster.cluster is not None
    moving, staying = cluster.ids_on(0, 1, "a")[0], cluster.ids_on(1, 1, "b")[0]
    slots = [key_slot(family(moving)[0].encode()), key_slot(INDEX.encode())]
    homes = [cluster.cluster.slot_owner(slot) for slot in slots]

    async with opened(cluster.url) as store:
        await store.apply(
            [
                SessionWrite(s, "i1", "w1", create=meta(s), messages=texts(2))
                for s in (moving, staying)
            ]
        )
        try:
            for slot, home in zip(slots, homes, strict=True):
                cluster.cluster.move_slot(slot, (home + 1) % 3)
            # The backend's client still holds the old slot map: each call meets MOVED.
            results = await store.apply(
                [
                    append(moving, texts(2, start=2)),
                    append(staying, texts(1, start=2)),
                    SessionWrite("c", "i1", "w1", create=meta("c", updated=5)),
                ]
            )
            assert [(r.error, r.appended_at) for r in results] == [
                (None, 2),
                (None, 2),
                (None, None),
            ]
            assert cluster.node_of(family(moving)[0]) is cluster.nodes[(homes[0] + 1) % 3]
            assert await cluster.call("EXISTS", *family(moving)) == 3
            assert contents((await load(store, moving)).messages) == ["m0", "m1", "m2", "m3"]
            assert contents((await load(store, staying)).messages) == ["m0", "m1", "m2"]
            assert sorted(ids(await store.list_sessions())) == sorted(["c", moving, staying])
            assert (await store.get_usage_stats())["total_messages"] == 7
        finally:
            for slot, home in zip(slots, homes, strict=True):
                cluster.cluster.move_slot(slot, home)


async def test_listings_stats_and_deletes_work_across_nodes(cluster: Deployed) -> None:
    alice = [cluster.ids_on(node, 1, f"a{node}-")[0] for node in range(3)]
    bob = [cluster.ids_on(node, 1, f"b{node}-")[0] for node in range(3)]
    everyone = [*alice, *bob]  # updated in this order
    async with opened(cluster.url) as store:
        await store.apply(
            [
                SessionWrite(s, "i1", "w1", create=meta(s, owner, updated=i), messages=texts(i + 1))
                for i, (s, owner) in enumerate(
                    zip(everyone, ["alice"] * 3 + ["bob"] * 3, strict=True)
                )
            ]
        )
        await store.apply(
            [
                SessionWrite(alice[1], "i1", "w1", status=SessionStatus.ARCHIVED),
                SessionWrite(bob[2], "i1", "w1", summary=summary(bob[2], "sum", 3)),
            ]
        )

        assert ids(await store.list_sessions()) == everyone[::-1]
        assert ids(await store.list_sessions(user_id="alice")) == alice[::-1]
        assert ids(await store.list_sessions(status=SessionStatus.ARCHIVED)) == [alice[1]]
        assert ids(await store.list_sessions(user_id="bob", limit=2)) == [bob[2], bob[1]]
        stats = await store.get_usage_stats()
        assert (stats["total_sessions"], stats["total_messages"]) == (6, 21)
        assert stats["total_summaries"] == 1 and stats["storage_size_mb"] > 0
        assert stats["sessions_by_status"] == {"active": 5, "archived": 1}

        await cluster.call("DEL", *family(bob[0]))  # as if expired: its index entries stay
        assert ids(await store.list_sessions(user_id="bob")) == [bob[2], bob[1]]
        assert (await store.get_usage_stats())["total_sessions"] == 5
        assert names(await cluster.call("ZRANGE", INDEX, 0, -1)) == sorted([*alice, *bob[1:]])

        assert await store.delete_sessions([alice[0], bob[1], alice[2], bob[0]]) == 3
        assert ids(await store.list_sessions()) == [bob[2], alice[1]]
        assert names(await cluster.call("ZRANGE", INDEX, 0, -1)) == sorted([bob[2], alice[1]])
        assert (await store.get_usage_stats())["total_messages"] == 2 + 6


async def test_a_paused_node_fails_writes_to_its_slots_as_transient_while_others_work(
    cluster: Deployed,
) -> None:
    """Batches on the other nodes carry on; a batch touching the paused node fails as a
    whole, as worth retrying (what it wrote elsewhere stays: its retry stores nothing twice)."""
    assert cluster.cluster is not None
    busy = {
        cluster.cluster.slot_owner(key_slot(k.encode()))
        for k in (INDEX, "langswarm:idx:user:alice")
    }
    paused = min({0, 1, 2} - busy)
    frozen = cluster.ids_on(paused, 1, "f")[0]
    healthy = [cluster.ids_on(node, 1, "h")[0] for node in range(3) if node != paused]
    everyone = [frozen, *healthy]
    mixed = [append(s, texts(1, prefix="x")) for s in everyone]

    async with opened(cluster.url, socket_timeout=0.5) as store:
        await store.apply(
            [SessionWrite(s, "i1", "w1", create=meta(s), messages=texts(1)) for s in everyone]
        )
        cluster.cluster.pause_node(paused)  # kept well under the cluster's node timeout
        try:
            results = await store.apply([append(s, texts(1, start=1)) for s in healthy])
            assert [r.appended_at for r in results] == [1, 1]
            assert (await load(store, healthy[0])).next_seq == 2
            started = time.monotonic()
            with pytest.raises(TransientBackendError) as caught:
                await store.apply(mixed)
            assert caught.value.unreachable and time.monotonic() - started < 2
        finally:
            cluster.cluster.resume_node(paused)

        await RetryPolicy(budget=10).run(lambda: store.apply(mixed), "the batch again")
        assert contents((await load(store, frozen)).messages) == ["m0", "x0"]
        for sid in healthy:
            assert contents((await load(store, sid)).messages) == ["m0", "m1", "x0"]


async def test_a_slot_that_keeps_redirecting_fails_as_transient_and_leaks_nothing(
    cluster: Deployed,
) -> None:
    """A slot left half-migrated bounces the client between two nodes until it gives up: worth
    retrying, and closing the store still closes every connection the client opened (redis-py
    drops node objects with open connections when it refreshes its map)."""
    assert cluster.cluster is not None
    slot = key_slot(INDEX.encode())
    source = cluster.nodes[cluster.cluster.slot_owner(slot)]
    target = next(node for node in cluster.nodes if node is not source)
    source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target.call("CLUSTER", "MYID"))
    try:
        async with opened(cluster.url) as store:
            with pytest.raises(TransientBackendError, match="kept redirecting"):
                await store.list_sessions()
    finally:
        source.call("CLUSTER", "SETSLOT", slot, "STABLE")
    gc.collect()  # an unclosed connection warns here, and the suite makes warnings errors


@pytest.mark.parametrize("form", ["some-nodes-url", "node-url-and-flag", "host-port-and-flag"])
async def test_the_cluster_is_found_from_any_node(cluster: Deployed, form: str) -> None:
    assert cluster.cluster is not None
    node, some = cluster.nodes[2], ",".join(cluster.cluster.startup_nodes[1:])
    store = {
        "some-nodes-url": lambda: RedisBackend(url=f"redis+cluster://{some}"),
        "node-url-and-flag": lambda: RedisBackend(url=node.url, cluster=True),
        "host-port-and-flag": lambda: RedisBackend(host="127.0.0.1", port=node.port, cluster=True),
    }[form]()
    placed = [cluster.ids_on(n, 1)[0] for n in range(3)]
    try:
        await anyio.to_thread.run_sync(store.preflight)
        await store.open()
        results = await store.apply([SessionWrite(s, "i1", "w1", create=meta(s)) for s in placed])
        assert all(r.created for r in results)
        assert sorted(ids(await store.list_sessions())) == sorted(placed)
    finally:
        await store.close()
