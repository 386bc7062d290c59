"""Redis-only behaviour: key layout, TTL, foreign data, unreachable servers, server restarts.

The protocol itself is covered by test_conformance.py; these tests look at what only Redis has,
against real redis-server processes, and inspect the server with a plain client of their own.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from langswarm.core.memory import exceptions
from langswarm.core.memory._retry import RetryPolicy
from langswarm.core.memory.backends.base import Backend, SessionWrite
from langswarm.core.memory.backends.redis import RedisBackend
from langswarm.core.memory.backends.retrying import RetryingBackend
from langswarm.core.memory.exceptions import (
    MemoryConfigurationError,
    MemoryConnectionError,
    MemoryCorruptionError,
)
from langswarm.core.memory.interfaces import (
    ConversationSummary,
    Message,
    MessageRole,
    SessionMetadata,
    SummaryType,
)
from tests.conftest import RedisServer, free_port

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 5, 1, 12, 0, 0)


def meta(session_id: str, user_id: str = "alice", updated: int = 0) -> SessionMetadata:
    return SessionMetadata(
        session_id=session_id,
        user_id=user_id,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=updated),
    )


def texts(n: int, start: int = 0, prefix: str = "m") -> list[Message]:
    return [Message(role=MessageRole.USER, content=f"{prefix}{i}") for i in range(start, start + n)]


def summary(session_id: str, covers: int) -> ConversationSummary:
    return ConversationSummary(
        summary_id=f"sum-{covers}",
        session_id=session_id,
        summary_text="so far",
        message_count=covers,
        token_count=3,
        created_at=T0,
        summary_type=SummaryType.AUTOMATIC,
        covers_through=covers,
    )


def session_keys(session_id: str, prefix: str = "langswarm") -> list[str]:
    return [f"{prefix}:{{{session_id}}}:{part}" for part in ("meta", "msgs", "sums")]


async def raw(url: str, *command: Any) -> Any:
    """Run one command with a plain client of the test's own, off the event loop."""

    def call() -> Any:
        with redis.Redis.from_url(url) as client:
            return client.execute_command(*command)

    return await anyio.to_thread.run_sync(call)


async def contents(backend: Backend, session_id: str) -> list[object]:
    snap = await backend.load_session(session_id, tail=10_000)
    assert snap is not None
    return [m.content for m in snap.messages]


@pytest.fixture
async def backend(redis_url: str) -> AsyncIterator[RedisBackend]:
    store = RedisBackend(url=redis_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# -- layout and lifecycle ------------------------------------------------------------------


async def test_one_hash_tagged_key_family_per_session(redis_url: str) -> None:
    store = RedisBackend(url=redis_url, key_prefix="app")
    await store.open()
    try:
        await store.apply(
            [
                SessionWrite(
                    "s1", meta=meta("s1", "u1"), messages=texts(3), summaries=[summary("s1", 2)]
                )
            ]
        )
        keys = sorted(k.decode() for k in await raw(redis_url, "KEYS", "*"))
        assert keys == sorted([*session_keys("s1", "app"), "app:idx:all", "app:idx:user:u1"])
        assert await raw(redis_url, "TYPE", "app:{s1}:msgs") == b"list"
        assert await raw(redis_url, "LLEN", "app:{s1}:msgs") == 3
        assert await raw(redis_url, "ZRANGE", "app:idx:user:u1", 0, -1) == [b"s1"]
    finally:
        await store.close()


async def test_prefixes_isolate_backends(redis_url: str) -> None:
    one, two = RedisBackend(url=redis_url, key_prefix="one"), RedisBackend(url=redis_url)
    try:
        await one.apply([SessionWrite("s", meta=meta("s"), messages=texts(2))])
        assert await two.load_session("s", tail=5) is None
        assert await two.list_sessions() == []
        assert (await two.get_usage_stats())["total_sessions"] == 0
        assert (await one.get_usage_stats())["total_messages"] == 2
    finally:
        await one.close()
        await two.close()


async def test_close_is_idempotent_and_the_backend_reopens(redis_url: str) -> None:
    store = RedisBackend(url=redis_url)
    await store.close()  # never opened
    await store.open()
    await store.apply([SessionWrite("s", meta=meta("s"), messages=texts(1))])
    await store.close()
    await store.close()

    await store.open()
    try:
        assert await contents(store, "s") == ["m0"]
    finally:
        await store.close()


async def test_host_and_port_configuration(redis_server: RedisServer, redis_url: str) -> None:
    store = RedisBackend(host="127.0.0.1", port=redis_server.port, db=1, key_prefix="cfg")
    try:
        await store.apply([SessionWrite("s", meta=meta("s"))])
        assert await raw(redis_url.replace("/0", "/1"), "EXISTS", "cfg:{s}:meta") == 1
        assert await raw(redis_url, "EXISTS", "cfg:{s}:meta") == 0
    finally:
        await store.close()


async def test_user_indexes_follow_ownership(backend: RedisBackend, redis_url: str) -> None:
    await backend.apply([SessionWrite("s", meta=meta("s", "u1"), messages=texts(2))])
    # Deleted and re-created for the same user in one write: still listed for that user.
    await backend.apply([SessionWrite("s", delete=True, meta=meta("s", "u1", updated=1))])
    assert [m.session_id for m in await backend.list_sessions(user_id="u1")] == ["s"]

    await backend.apply([SessionWrite("s", meta=meta("s", "u2", updated=2))])
    assert await backend.list_sessions(user_id="u1") == []
    assert [m.session_id for m in await backend.list_sessions(user_id="u2")] == ["s"]
    assert await raw(redis_url, "EXISTS", "langswarm:idx:user:u1") == 0

    assert await backend.delete_sessions(["s"]) == 1
    assert await raw(redis_url, "KEYS", "langswarm:*") == []


async def test_large_batches_span_several_script_calls(
    backend: RedisBackend, redis_url: str
) -> None:
    big = [Message(role=MessageRole.USER, content=f"x{i}") for i in range(9_000)]
    sums = [summary("big", i) for i in range(2_500)]
    writes = [SessionWrite(f"s{i}", meta=meta(f"s{i}"), messages=texts(2)) for i in range(250)]
    writes[120] = SessionWrite("big", meta=meta("big"), messages=big, summaries=sums)
    await raw(redis_url, "SET", "langswarm:{s230}:sums", "foreign")

    with pytest.raises(MemoryCorruptionError, match="s230"):
        await backend.apply(writes)
    await backend.apply(writes[:230])  # re-sent: nothing is added twice

    snap = await backend.load_session("big", tail=10_000)
    assert snap is not None
    assert [m.content for m in snap.messages] == [m.content for m in big]
    assert len(snap.summaries) == 2_500
    stats = await backend.get_usage_stats()
    assert stats["total_sessions"] == 249
    assert stats["total_messages"] == 9_000 + 2 * 248
    assert await backend.load_session("s230", tail=5) is None


def test_bad_configuration_is_rejected() -> None:
    with pytest.raises(MemoryConfigurationError):
        RedisBackend(url="http://localhost:6379")
    with pytest.raises(MemoryConfigurationError):
        RedisBackend(pool_size=0)
    with pytest.raises(MemoryConfigurationError):
        RedisBackend(ttl_seconds=0)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[RedisServer, int, Path]]:
    """A redis-server with a TLS port, its certificate signed for 127.0.0.1."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    tls_port = free_port()
    server = RedisServer(
        port=free_port(),
        directory=tmp_path,
        extra_args=(
            "--tls-port", str(tls_port), "--tls-cert-file", str(cert),
            "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
            "--tls-auth-clients", "no",
        ),
    )  # fmt: skip
    server.start()
    yield server, tls_port, cert
    server.stop()


async def test_rediss_url(tls_server: tuple[RedisServer, int, Path]) -> None:
    _, tls_port, cert = tls_server
    url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}"
    store = RedisBackend(url=url)
    try:
        await anyio.to_thread.run_sync(store.preflight)
        await store.apply([SessionWrite("s", meta=meta("s"), messages=texts(2))])
        assert await contents(store, "s") == ["m0", "m1"]
    finally:
        await store.close()

    untrusted = RedisBackend(url=f"rediss://127.0.0.1:{tls_port}/0")
    with pytest.raises(MemoryConnectionError):
        await anyio.to_thread.run_sync(untrusted.preflight)
    with pytest.raises(MemoryConnectionError):
        await untrusted.open()
    await untrusted.close()


# -- TTL -------------------------------------------------------------------------------------


async def test_ttl_expires_every_key_and_the_listings_agree(redis_url: str) -> None:
    store = RedisBackend(url=redis_url, ttl_seconds=1)
    durable = RedisBackend(url=redis_url)  # same prefix, writes without a TTL
    try:
        await store.apply(
            [
                SessionWrite(
                    "brief",
                    meta=meta("brief", "u1"),
                    messages=texts(4),
                    summaries=[summary("brief", 2)],
                )
            ]
        )
        await durable.apply([SessionWrite("kept", meta=meta("kept", "u2"), messages=texts(2))])
        for key in session_keys("brief"):
            assert 0 < await raw(redis_url, "PTTL", key) <= 1000
        assert await raw(redis_url, "PTTL", "langswarm:idx:user:u1") > 0
        assert len(await store.list_sessions()) == 2

        deadline = time.monotonic() + 5
        while await raw(redis_url, "EXISTS", *session_keys("brief")):
            assert time.monotonic() < deadline, "session keys outlived their TTL"
            await anyio.sleep(0.05)

        assert [m.session_id for m in await store.list_sessions()] == ["kept"]
        assert await store.list_sessions(user_id="u1") == []
        assert await store.load_session("brief", tail=5) is None
        stats = await store.get_usage_stats()
        assert (stats["total_sessions"], stats["total_messages"], stats["total_summaries"]) == (
            1,
            2,
            0,
        )
        # The stale index entry was pruned, not just skipped.
        assert await raw(redis_url, "ZRANGE", "langswarm:idx:all", 0, -1) == [b"kept"]
        assert await raw(redis_url, "EXISTS", "langswarm:idx:user:u1") == 0
    finally:
        await store.close()
        await durable.close()


async def test_ttl_is_refreshed_by_each_write(redis_url: str) -> None:
    store = RedisBackend(url=redis_url, ttl_seconds=5)
    try:
        await store.apply([SessionWrite("s", meta=meta("s"), messages=texts(1))])
        await raw(redis_url, "PEXPIRE", "langswarm:{s}:meta", 200)
        await raw(redis_url, "PEXPIRE", "langswarm:{s}:msgs", 200)

        await store.apply([SessionWrite("s", messages=texts(1, start=1), first_seq=1)])

        for key in session_keys("s")[:2]:
            assert await raw(redis_url, "PTTL", key) > 4000
        assert await contents(store, "s") == ["m0", "m1"]
    finally:
        await store.close()


# -- foreign and corrupt data -------------------------------------------------------------


async def test_wrong_key_type_fails_that_session_only(
    backend: RedisBackend, redis_url: str
) -> None:
    await backend.apply([SessionWrite("good", meta=meta("good"), messages=texts(2))])
    await raw(redis_url, "SET", "langswarm:{bad}:msgs", "not a list")

    with pytest.raises(MemoryCorruptionError, match="bad"):
        await backend.apply(
            [
                SessionWrite("good", messages=texts(1, start=2), first_seq=2),
                SessionWrite("bad", meta=meta("bad"), messages=texts(3)),
                SessionWrite("other", meta=meta("other"), messages=texts(1)),
            ]
        )

    # The foreign key is untouched and nothing of the failed write was stored.
    assert await raw(redis_url, "GET", "langswarm:{bad}:msgs") == b"not a list"
    assert await raw(redis_url, "EXISTS", "langswarm:{bad}:meta") == 0
    assert await contents(backend, "good") == ["m0", "m1", "m2"]
    assert await contents(backend, "other") == ["m0"]
    # Without metadata there is no session, whatever else its keys hold.
    assert await backend.load_session("bad", tail=5) is None
    assert await backend.load_messages("bad", start=0, stop=5) == []
    await raw(redis_url, "SET", "langswarm:{bad2}:meta", "not a hash")
    with pytest.raises(MemoryCorruptionError, match="bad2"):
        await backend.load_session("bad2", tail=5)
    with pytest.raises(MemoryCorruptionError, match="bad2"):
        await backend.load_messages("bad2", start=0, stop=5)

    await raw(redis_url, "SET", "langswarm:{other}:sums", "oops")
    with pytest.raises(MemoryCorruptionError, match="other"):
        await backend.load_session("other", tail=5)
    assert await contents(backend, "good") == ["m0", "m1", "m2"]

    stats = await backend.get_usage_stats()
    assert stats["total_sessions"] == 2  # "good", and "other" whose summaries are foreign
    assert sorted(m.session_id for m in await backend.list_sessions()) == ["good", "other"]


async def test_corrupt_blobs_fail_that_session_only(backend: RedisBackend, redis_url: str) -> None:
    await backend.apply(
        [
            SessionWrite("good", meta=meta("good", updated=1), messages=texts(3)),
            SessionWrite("torn", meta=meta("torn", updated=2), messages=texts(3)),
            SessionWrite("garbled", meta=meta("garbled", updated=3), messages=texts(1)),
            SessionWrite("offset", meta=meta("offset", updated=4), messages=texts(1)),
        ]
    )
    await raw(redis_url, "LSET", "langswarm:{torn}:msgs", 1, b"\xc1\x00junk")
    await raw(redis_url, "HSET", "langswarm:{garbled}:meta", "m", b"\x93\x63\x00")
    await raw(redis_url, "HSET", "langswarm:{offset}:meta", "f", "twelve")

    with pytest.raises(MemoryCorruptionError, match="torn"):
        await backend.load_session("torn", tail=10)
    with pytest.raises(MemoryCorruptionError, match="torn"):
        await backend.load_messages("torn", start=0, stop=3)
    assert [m.content for m in await backend.load_messages("torn", start=2, stop=3)] == ["m2"]
    with pytest.raises(MemoryCorruptionError, match="garbled"):
        await backend.load_session("garbled", tail=10)
    with pytest.raises(MemoryCorruptionError, match="offset"):
        await backend.load_session("offset", tail=10)
    with pytest.raises(MemoryCorruptionError, match="offset"):
        await backend.apply([SessionWrite("offset", messages=texts(1, start=1), first_seq=1)])

    assert await contents(backend, "good") == ["m0", "m1", "m2"]
    listed = [m.session_id for m in await backend.list_sessions()]
    assert listed == ["offset", "torn", "good"]  # undecodable metadata is skipped
    stats = await backend.get_usage_stats()
    assert (stats["total_sessions"], stats["corrupt_sessions"]) == (3, 1)

    # Deleting is how an operator clears a corrupt session.
    assert await backend.delete_sessions(["garbled", "torn"]) == 2
    assert await raw(redis_url, "EXISTS", *session_keys("garbled"), *session_keys("torn")) == 0
    assert (await backend.get_usage_stats())["corrupt_sessions"] == 0


async def test_delete_in_a_batch_clears_foreign_data(backend: RedisBackend, redis_url: str) -> None:
    await raw(redis_url, "SET", "langswarm:{s}:msgs", "junk")

    await backend.apply([SessionWrite("s", delete=True, meta=meta("s"), messages=texts(2))])

    assert await contents(backend, "s") == ["m0", "m1"]


# -- unreachable servers ---------------------------------------------------------------------


@pytest.mark.parametrize("target", ["refusing-port", "unresolvable-host", "url-with-password"])
def test_preflight_fails_fast(target: str) -> None:
    store = {
        "refusing-port": lambda: RedisBackend(host="127.0.0.1", port=free_port()),
        "unresolvable-host": lambda: RedisBackend(host="unreachable-host.invalid"),
        "url-with-password": lambda: RedisBackend(
            url=f"redis://user:s3cret@127.0.0.1:{free_port()}/0"
        ),
    }[target]()
    started = time.monotonic()
    with pytest.raises(MemoryConnectionError) as caught:
        store.preflight(timeout=2.0)
    assert time.monotonic() - started <= 2.5
    assert "s3cret" not in str(caught.value)


def test_preflight_passes_against_a_live_server(redis_url: str) -> None:
    RedisBackend(url=redis_url).preflight(timeout=2.0)


async def test_an_unreachable_server_is_reported_at_once_and_retried_within_a_budget() -> None:
    """The backend never retries by itself: it says the failure is worth retrying, and the
    runtime's one retry policy decides how long to (here through ``RetryingBackend``)."""
    store = RedisBackend(host="127.0.0.1", port=free_port())
    retrying = RetryingBackend(store, RetryPolicy(budget=0.5))
    try:
        with pytest.raises(MemoryConnectionError):
            await store.open()
        with pytest.raises(exceptions.TransientBackendError) as transient:
            await store.apply([SessionWrite("s", meta=meta("s"))])
        assert transient.value.unreachable
        started = time.monotonic()
        with pytest.raises(MemoryConnectionError, match="kept failing"):
            await retrying.load_session("s", tail=1)
        assert 0.4 <= time.monotonic() - started < 3
    finally:
        await store.close()


async def test_close_ends_calls_still_retrying() -> None:
    store = RedisBackend(host="127.0.0.1", port=free_port())
    retrying = RetryingBackend(store, RetryPolicy(budget=30))
    outcome: list[BaseException] = []

    async def read() -> None:
        try:
            await retrying.load_session("s", tail=1)
        except exceptions.MemoryError as exc:
            outcome.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await anyio.sleep(0.3)
            await store.close()
    assert len(outcome) == 1 and "closed" in str(outcome[0])


# -- restarts ------------------------------------------------------------------------------

SESSIONS = [f"s{i}" for i in range(20)]
PER_BATCH = 5


def batch(number: int) -> list[SessionWrite]:
    """Batch ``number`` appends messages b{number}-0..4 to every session."""
    return [
        SessionWrite(
            sid,
            meta=meta(sid, updated=number),
            messages=texts(PER_BATCH, prefix=f"b{number}-"),
            first_seq=number * PER_BATCH,
        )
        for sid in SESSIONS
    ]


def expected(batches: int) -> list[object]:
    return [f"b{n}-{i}" for n in range(batches) for i in range(PER_BATCH)]


async def test_sigkill_and_restart_lose_nothing_acknowledged(durable_server: RedisServer) -> None:
    store = RedisBackend(url=durable_server.url)
    policy = RetryPolicy(budget=10)
    outcomes: dict[int, str] = {}
    warmed_up, restarted = anyio.Event(), anyio.Event()

    async def writer() -> None:
        number = 0
        after_restart = 0
        while after_restart < 3:
            try:
                await policy.run(lambda n=number: store.apply(batch(n)), "a batch")
                outcomes[number] = "applied"
            except MemoryConnectionError:
                outcomes[number] = "failed"
            if restarted.is_set():
                after_restart += 1
            number += 1
            if number == 5:
                warmed_up.set()

    try:
        await store.open()
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            await warmed_up.wait()
            await anyio.to_thread.run_sync(durable_server.kill)
            killed_at = len(outcomes)
            await anyio.sleep(1)
            await anyio.to_thread.run_sync(durable_server.start)
            restarted.set()

        total = len(outcomes)
        assert total > killed_at
        # Every batch either succeeded (typically retried across the restart) or said so.
        assert set(outcomes.values()) <= {"applied", "failed"}
        for number, outcome in sorted(outcomes.items()):
            if outcome == "failed":
                await store.apply(batch(number))
        for sid in SESSIONS:
            assert await contents(store, sid) == expected(total)

        # Re-applying acknowledged batches after the reconnect duplicates nothing.
        for number in (0, killed_at - 1, killed_at, total - 1):
            await store.apply(batch(number))
        for sid in SESSIONS:
            assert await contents(store, sid) == expected(total)
        stats = await store.get_usage_stats()
        assert stats["total_messages"] == len(SESSIONS) * total * PER_BATCH
    finally:
        await store.close()


async def test_acknowledged_writes_survive_a_kill_while_idle(durable_server: RedisServer) -> None:
    store = RedisBackend(url=durable_server.url)
    try:
        for number in range(3):
            await store.apply(batch(number))
        await anyio.to_thread.run_sync(durable_server.kill)
        await anyio.to_thread.run_sync(durable_server.start)

        # The pooled connections are dead: the first call fails as worth retrying, and the
        # retry reconnects.
        retrying = RetryingBackend(store, RetryPolicy(budget=5))
        for sid in SESSIONS:
            assert await contents(retrying, sid) == expected(3)
        assert len(await retrying.list_sessions(limit=None)) == len(SESSIONS)
    finally:
        await store.close()
