"""Encryption at rest: ``EncryptedBackend`` over memory, SQLite and Redis, on both loops.

What is stored holds no plaintext (the SQLite file and its WAL, every Redis key read back and
dumped); what is read equals what was written; rotating keys while writers run loses
nothing; a wrong, missing or moved key fails with ``MemoryEncryptionError``; listing, counts
and token accounting work on the stored data without any key. The protocol suite
(tests/backends/test_conformance.py) and the end-to-end suite (test_runtime_conformance.py)
also run here, over encrypted backends.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from langswarm.core.memory import MemoryManager, Message, MessageRole
from langswarm.core.memory._encryption import PREFIX, StaticKeyring
from langswarm.core.memory._tokens import count_message_tokens
from langswarm.core.memory.backends.base import Backend, SessionWrite
from langswarm.core.memory.backends.encrypted import INLINE_MESSAGES, EncryptedBackend
from langswarm.core.memory.backends.memory import InMemoryBackend
from langswarm.core.memory.backends.sqlite import SQLiteBackend
from langswarm.core.memory.exceptions import (
    MemoryConfigurationError,
    MemoryEncryptionError,
)
from tests import test_runtime_conformance as runtime_suite
from tests._servers import RedisServer
from tests.backends import test_conformance as protocol_suite
from tests.helpers import manager_on, passivate_all

pytestmark = pytest.mark.anyio

MARKER = "ZEBRA-7741"
#: The session metadata ``write_everything`` leaves (created, then updated).
SESSION_METADATA = {"topic": f"about {MARKER}", "note": {"text": MARKER, "n": [1.5, True]}}
OPTIONS: dict[str, Any] = {"idle_timeout": 0, "sweep_interval": 3600, "shutdown_grace": 5}
Store = Callable[[], Backend]


def new_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def keyring() -> StaticKeyring:
    return StaticKeyring({"k1": new_key()}, current="k1")


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Builds plain backends over one storage: two of them see the same data."""
    if request.param == "memory":
        shared = InMemoryBackend()
        return lambda: shared
    if request.param == "sqlite":
        return lambda: SQLiteBackend(str(tmp_path / "store.db"))
    from langswarm.core.memory.backends.redis import RedisBackend

    url = request.getfixturevalue("redis_url")
    return lambda: RedisBackend(url=url)


# -- the shared suites, over encrypted backends ---------------------------------------------


@pytest.fixture
async def backend(store: Store, keyring: StaticKeyring) -> AsyncIterator[Backend]:
    """For the protocol suite: an opened, empty encrypted backend."""
    encrypted = EncryptedBackend(store(), keyring)
    await encrypted.open()
    try:
        yield encrypted
    finally:
        await encrypted.close()


@pytest.fixture
def make_memory(store: Store, keyring: StaticKeyring) -> Callable[[], MemoryManager]:
    """For the end-to-end suite: managers over encrypted backends of one storage."""
    return lambda: manager_on(EncryptedBackend(store(), keyring), **OPTIONS)


def _adopt(module: Any, prefix: str) -> None:
    for name, test in vars(module).items():
        if name.startswith("test_") and callable(test):
            globals()[f"test_{prefix}_{name[5:]}"] = test


_adopt(protocol_suite, "protocol")
_adopt(runtime_suite, "runtime")


# -- what is written and read -----------------------------------------------------------------


def rich_messages(marker: str) -> list[Message]:
    """A message of each shape, each carrying ``marker`` where an application puts text."""
    call = {"id": "call_1", "type": "function"}
    return [
        Message(MessageRole.SYSTEM, f"be brief {marker}", metadata={"src": [marker, 1, None]}),
        Message(
            MessageRole.USER,
            [
                {"type": "text", "text": f"look {marker}"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
            ],
        ),
        Message(
            MessageRole.ASSISTANT,
            None,
            tool_calls=[{**call, "function": {"name": "find", "arguments": f'{{"q":"{marker}"}}'}}],
        ),
        Message(MessageRole.TOOL, f"found {marker}", tool_call_id="call_1", name="find"),
        Message(
            MessageRole.ASSISTANT,
            [{"type": "tool_use", "id": "tu_1", "name": "look", "input": {"q": marker, "n": 3}}],
        ),
        Message(
            MessageRole.USER,
            [
                {
                    "type": "tool_result",
                    "tool_use_id": "tu_1",
                    "content": [{"type": "text", "text": f"saw {marker}"}],
                }
            ],
        ),
        Message(MessageRole.ASSISTANT, None, function_call={"name": "old", "arguments": marker}),
        Message(
            MessageRole.ASSISTANT,
            f"done {marker}",
            item={
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": f"done {marker}"}],
            },
        ),
    ]


async def write_everything(manager: MemoryManager, marker: str) -> list[Message]:
    """Messages of every shape, session metadata (created and updated), a summary and a
    fork, all carrying ``marker``; returns the messages of session ``s``."""
    session = await manager.create_session("u", "s", metadata={"topic": f"about {marker}"})
    assert marker == MARKER, "SESSION_METADATA names MARKER"
    messages = rich_messages(marker)
    await session.add_messages(messages)
    await session.update_metadata({"note": {"text": marker, "n": [1.5, True]}})
    summary = await session.create_summary()
    assert marker in summary.summary_text
    await session.fork("f")
    await session.flush()
    return messages


def uncounted(messages: list[Message]) -> list[Message]:
    """``messages`` without token counts (in memory, a count is stored only once needed)."""
    return [replace(m, token_count=None) for m in messages]


async def test_round_trip_equals_what_was_written(store: Store, keyring: StaticKeyring) -> None:
    async with manager_on(EncryptedBackend(store(), keyring), **OPTIONS) as manager:
        written = await write_everything(manager, MARKER)
        summaries = await (await manager.get_session("s")).get_summaries()  # type: ignore[union-attr]
    async with manager_on(EncryptedBackend(store(), keyring), **OPTIONS) as manager:
        for sid in ("s", "f"):
            session = await manager.get_session(sid)
            assert session is not None
            assert uncounted(await session.get_messages()) == uncounted(written)
            assert session.metadata.metadata == SESSION_METADATA
            found = await session.get_summaries()
            assert [x.summary_text for x in found] == [x.summary_text for x in summaries]
            assert sid == "f" or found == summaries
        [listed_f, listed_s] = sorted(
            await manager.backend.list_sessions("u"), key=lambda m: m.session_id
        )
        assert listed_s.metadata == listed_f.metadata == SESSION_METADATA
        assert listed_s.message_count == len(written)


class ThreadsKeyring(StaticKeyring):
    """Notes the thread that asks for the current key."""

    threads: set[str]

    def current(self) -> tuple[str, bytes]:
        self.threads.add(threading.current_thread().name)
        return super().current()


async def test_a_batch_too_big_for_the_loop_is_sealed_in_a_thread(store: Store) -> None:
    keyring = ThreadsKeyring({"k1": new_key()}, current="k1")
    keyring.threads = set()
    texts = [f"{MARKER} {i}" for i in range(INLINE_MESSAGES + 1)]
    async with manager_on(EncryptedBackend(store(), keyring), **OPTIONS) as manager:
        session = await manager.create_session("u", "s")
        keyring.threads.clear()
        await session.add_messages([Message(MessageRole.USER, text) for text in texts])
        await session.flush()
        assert keyring.threads and threading.current_thread().name not in keyring.threads
    async with manager_on(EncryptedBackend(store(), keyring), **OPTIONS) as manager:
        reloaded = await manager.get_session("s")
        assert reloaded is not None
        assert [m.content for m in await reloaded.get_messages()] == texts
    plain = store()
    await plain.open()
    try:
        snapshot = await plain.load_session("s", tail=len(texts))
        assert snapshot is not None and len(snapshot.messages) == len(texts)
        assert all(str(m.content).startswith(PREFIX) for m in snapshot.messages)
    finally:
        await plain.close()


async def test_counts_listing_and_stats_need_no_key(store: Store, keyring: StaticKeyring) -> None:
    async with manager_on(EncryptedBackend(store(), keyring), **OPTIONS) as manager:
        written = await write_everything(manager, MARKER)
        encrypted_stats = await manager.backend.get_usage_stats()
    plain = store()  # the same storage, read without any key
    await plain.open()
    try:
        snapshot = await plain.load_session("s", tail=100)
        assert snapshot is not None
        stored = snapshot.messages
        assert [m.message_id for m in stored] == [m.message_id for m in written]
        # Counted on the plaintext, before sealing: the stored counts are the real ones (in
        # memory, as unencrypted, a count is stored once the runtime has needed it).
        real = [count_message_tokens(m) for m in written]
        counts = [m.token_count for m in stored]
        assert (
            counts == real
            if plain.persistent
            else all(n in (None, r) for n, r in zip(counts, real, strict=True))
        )
        assert all(MARKER not in repr(m) for m in stored)
        listed = await plain.list_sessions(user_id="u")
        assert sorted(m.session_id for m in listed) == ["f", "s"]
        assert {m.message_count for m in listed} == {len(written)}
        assert all(v.startswith(PREFIX) for m in listed for v in m.metadata.values())
        stats = await plain.get_usage_stats()
        assert stats["total_sessions"] == encrypted_stats["total_sessions"] == 2
        assert stats["total_messages"] == 2 * len(written)
    finally:
        await plain.close()


# -- nothing readable at rest ------------------------------------------------------------------


def sqlite_bytes(directory: Path) -> bytes:
    """Every file SQLite keeps for the database (main file, WAL, shared memory, journal)."""
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())


@pytest.mark.parametrize("encrypted", [True, False])
async def test_sqlite_files_hold_no_plaintext(
    tmp_path: Path, keyring: StaticKeyring, encrypted: bool
) -> None:
    directory = tmp_path / "db"
    directory.mkdir()
    inner = SQLiteBackend(str(directory / "store.db"))
    backend: Backend = EncryptedBackend(inner, keyring) if encrypted else inner
    async with manager_on(backend, **OPTIONS) as manager:
        await write_everything(manager, MARKER)
        assert (directory / "store.db-wal").exists()
        while_open = sqlite_bytes(directory)  # the WAL holds the latest pages
    after_close = sqlite_bytes(directory)
    found = [MARKER.encode() in data for data in (while_open, after_close)]
    # Unencrypted, the same writes leave the marker in the files: the check can fail.
    assert found == ([False, False] if encrypted else [True, True])


def redis_contents(server: RedisServer) -> tuple[bytes, bytes]:
    """Every key of the server read back by type, and every key's DUMP."""
    readers = {
        b"string": ("GET",),
        b"hash": ("HGETALL",),
        b"list": ("LRANGE", 0, -1),
        b"set": ("SMEMBERS",),
        b"zset": ("ZRANGE", 0, -1, "WITHSCORES"),
        b"stream": ("XRANGE", "-", "+"),
    }
    keys: list[bytes] = []
    cursor: bytes = b"0"
    while True:
        reply = server.call("SCAN", cursor, "COUNT", 1000)
        assert isinstance(reply, list) and isinstance(reply[0], bytes)
        assert isinstance(reply[1], list)
        cursor = reply[0]
        keys += [key for key in reply[1] if isinstance(key, bytes)]
        if cursor == b"0":
            break
    assert keys, "nothing was stored"
    read, dumped = [], []
    for key in keys:
        kind = server.call("TYPE", key)
        assert isinstance(kind, bytes) and kind.lstrip(b"+") in readers, kind
        command = readers[kind.lstrip(b"+")]
        read.append(repr(server.call(command[0], key, *command[1:])).encode())
        dumped.append(repr(server.call("DUMP", key)).encode())
    return b"".join(read), b"".join(dumped)


@pytest.mark.parametrize("encrypted", [True, False])
async def test_redis_keys_hold_no_plaintext(
    redis_server: RedisServer, redis_url: str, keyring: StaticKeyring, encrypted: bool
) -> None:
    from langswarm.core.memory.backends.redis import RedisBackend

    inner = RedisBackend(url=redis_url)
    backend: Backend = EncryptedBackend(inner, keyring) if encrypted else inner
    async with manager_on(backend, **OPTIONS) as manager:
        await write_everything(manager, MARKER)
    # DUMP compresses long strings by default, which could hide a marker; not here.
    await anyio.to_thread.run_sync(redis_server.call, "CONFIG", "SET", "rdbcompression", "no")
    try:
        read, dumped = await anyio.to_thread.run_sync(redis_contents, redis_server)
    finally:
        await anyio.to_thread.run_sync(redis_server.call, "CONFIG", "SET", "rdbcompression", "yes")
    found = [MARKER.encode() in data for data in (read, dumped)]
    assert found == ([False, False] if encrypted else [True, True])


# -- keys: rotation, wrong and missing keys, moved values ---------------------------------------


async def test_rotation_under_load_loses_nothing(store: Store, keyring: StaticKeyring) -> None:
    """Writers run while the current key changes twice; every acknowledged message reads
    back with the keyring holding all three keys, and each key sealed some of them."""
    acked: dict[str, list[str]] = {f"w{i}": [] for i in range(6)}
    goals = [(n, anyio.Event()) for n in (40, 80, 120)]
    stop = anyio.Event()

    async def writer(manager: MemoryManager, sid: str) -> None:
        session = await manager.create_session("u", sid)
        while not stop.is_set():
            text = f"{sid} {len(acked[sid])}"
            await session.add_message(Message(MessageRole.USER, text))
            acked[sid].append(text)
            total = sum(map(len, acked.values()))
            for goal, reached in goals:
                if total >= goal:
                    reached.set()

    backend = EncryptedBackend(store(), keyring)
    manager = manager_on(backend, durability="committed", **OPTIONS)
    async with manager, anyio.create_task_group() as tg:
        for sid in acked:
            tg.start_soon(writer, manager, sid)
        for key_id, (_, reached) in zip(("k2", "k3", None), goals, strict=True):
            await reached.wait()
            if key_id is not None:
                keyring.rotate(key_id, new_key())
        stop.set()
    async with manager_on(EncryptedBackend(store(), keyring), **OPTIONS) as manager:
        for sid, texts in acked.items():
            session = await manager.get_session(sid)
            assert session is not None
            assert [m.content for m in await session.get_messages()] == texts
    plain = store()
    await plain.open()
    try:
        used: set[str] = set()
        for sid in acked:
            snapshot = await plain.load_session(sid, tail=10_000)
            assert snapshot is not None
            used |= {str(m.content).split(":")[2] for m in snapshot.messages}
    finally:
        await plain.close()
    assert used == {"k1", "k2", "k3"}
    assert sum(map(len, acked.values())) >= 120


async def open_with(store: Store, keyring: Any) -> MemoryEncryptionError:
    """The error reading session ``s`` through ``keyring`` raises."""
    async with manager_on(EncryptedBackend(store(), keyring), **OPTIONS) as manager:
        with pytest.raises(MemoryEncryptionError) as caught:
            await manager.get_session("s")
    return caught.value


async def test_a_wrong_or_missing_key_is_a_clear_error(
    store: Store, keyring: StaticKeyring
) -> None:
    async with manager_on(EncryptedBackend(store(), keyring), **OPTIONS) as manager:
        await write_everything(manager, MARKER)
    wrong = await open_with(store, StaticKeyring({"k1": new_key()}, current="k1"))
    assert "'s'" in str(wrong) and "'k1'" in str(wrong) and "wrong" in str(wrong)
    missing = await open_with(store, StaticKeyring({"k2": new_key()}, current="k2"))
    assert "key 'k1' is not in the keyring" in str(missing)
    lost = StaticKeyring({"k2": new_key()}, current="k2")
    async with manager_on(EncryptedBackend(store(), lost), **OPTIONS) as manager:
        with pytest.raises(MemoryEncryptionError, match="key 'k1'"):
            await manager.backend.list_sessions("u")
        assert (await manager.backend.get_usage_stats())["total_sessions"] == 2
    # The right key still opens everything afterwards: nothing was damaged.
    async with manager_on(EncryptedBackend(store(), keyring), **OPTIONS) as manager:
        session = await manager.get_session("s")
        assert session is not None and len(await session.get_messages()) == 8


async def test_a_moved_or_altered_value_does_not_open(store: Store, keyring: StaticKeyring) -> None:
    from tests.backends.conftest import meta

    encrypted = EncryptedBackend(store(), keyring)
    await encrypted.open()
    try:
        plain = encrypted.inner
        message = Message(MessageRole.USER, MARKER, message_id="m1")
        create = meta("a", metadata={"x": "one", "y": "two"})
        [result] = await encrypted.apply(
            [SessionWrite("a", "i1", "w", create=create, messages=[message])]
        )
        assert result.created
        stored = await plain.load_session("a", tail=10)
        assert stored is not None
        sealed = stored.messages[0]
        # The same sealed message stored in another session.
        await plain.apply([SessionWrite("b", "i2", "w", create=meta("b"), messages=[sealed])])
        with pytest.raises(MemoryEncryptionError, match="'b'"):
            await encrypted.load_session("b", tail=10)
        # A metadata value moved to another key of the same session.
        await plain.apply([SessionWrite("a", "i1", "w", custom={"x": stored.meta.metadata["y"]})])
        with pytest.raises(MemoryEncryptionError, match="'a'"):
            await encrypted.load_session("a", tail=10)
        # One character of a sealed value changed.
        text = str(sealed.content)
        flipped = text[:-3] + ("A" if text[-3] != "A" else "B") + text[-2:]
        altered = replace(sealed, content=flipped)
        await plain.apply([SessionWrite("c", "i3", "w", create=meta("c"), messages=[altered])])
        with pytest.raises(MemoryEncryptionError):
            await encrypted.load_messages("c", start=0, stop=10)
    finally:
        await encrypted.close()


# -- keyrings -----------------------------------------------------------------------------------


async def test_a_key_function_is_a_keyring() -> None:
    keys = {"a": new_key(), "b": new_key()}
    current = ["a"]

    def provider(key_id: str | None) -> tuple[str, bytes] | None:
        key_id = current[0] if key_id is None else key_id
        return (key_id, keys[key_id]) if key_id in keys else None

    backend = EncryptedBackend(InMemoryBackend(), provider)
    async with manager_on(backend, durability="committed", **OPTIONS) as manager:
        session = await manager.create_session("u", "s")
        await session.add_message(Message(MessageRole.USER, "one"))
        current[0] = "b"
        await session.add_message(Message(MessageRole.USER, "two"))
        await passivate_all(manager)
        reloaded = await manager.get_session("s")
        assert reloaded is not None
        assert [m.content for m in await reloaded.get_messages()] == ["one", "two"]
        del keys["a"]
        await passivate_all(manager)
        with pytest.raises(MemoryEncryptionError, match="key 'a' is not in the keyring"):
            again = await manager.get_session("s")  # no metadata: the messages load later
            assert again is not None
            await again.get_messages()


class FlakyKeyring(StaticKeyring):
    """Fails to give the current key ``failures`` times (a key service that is down)."""

    failures = 0

    def current(self) -> tuple[str, bytes]:
        if self.failures:
            self.failures -= 1
            raise OSError("key service unreachable")
        return super().current()


async def test_a_keyring_outage_on_write_is_retried(tmp_path: Path) -> None:
    keyring = FlakyKeyring({"k1": new_key()}, current="k1")
    backend = EncryptedBackend(SQLiteBackend(str(tmp_path / "s.db")), keyring)
    async with manager_on(backend, retry_budget=30, **OPTIONS) as manager:
        session = await manager.create_session("u", "s")
        keyring.failures = 3
        await session.add_message(Message(MessageRole.USER, "kept"))
        assert keyring.failures == 0
        await passivate_all(manager)
        reloaded = await manager.get_session("s")
        assert reloaded is not None
        assert [m.content for m in await reloaded.get_messages()] == ["kept"]


class BadKeyring:
    def current(self) -> tuple[str, bytes]:
        return "k1", b"too short"

    def get(self, key_id: str) -> bytes | None:
        return None


async def test_an_unusable_key_fails_at_start(tmp_path: Path) -> None:
    backend = EncryptedBackend(SQLiteBackend(str(tmp_path / "s.db")), BadKeyring())
    with pytest.raises(MemoryEncryptionError, match="16, 24 or 32 bytes"):
        async with manager_on(backend, **OPTIONS):
            pass


def test_keyrings_refuse_bad_keys() -> None:
    with pytest.raises(MemoryConfigurationError, match="32 bytes"):
        StaticKeyring({"k1": b"short"}, current="k1")
    with pytest.raises(MemoryConfigurationError, match="key id"):
        StaticKeyring({"k:1": new_key()}, current="k:1")
    with pytest.raises(MemoryConfigurationError, match="not among the keys"):
        StaticKeyring({"k1": new_key()}, current="k2")
    keyring = StaticKeyring({"k1": new_key()}, current="k1")
    with pytest.raises(MemoryConfigurationError, match="another key"):
        keyring.rotate("k1", new_key())
    with pytest.raises(MemoryConfigurationError, match="keyring must"):
        EncryptedBackend(InMemoryBackend(), 42)  # type: ignore[arg-type]


# -- turning encryption on for a store that has data ----------------------------------------------


async def test_plaintext_written_before_reads_back_unless_refused(
    store: Store, keyring: StaticKeyring
) -> None:
    async with manager_on(store(), **OPTIONS) as manager:
        session = await manager.create_session("u", "s", metadata={"old": "plain"})
        await session.add_message(Message(MessageRole.USER, "before"))
    async with manager_on(EncryptedBackend(store(), keyring), **OPTIONS) as manager:
        found = await manager.get_session("s")
        assert found is not None
        await found.add_message(Message(MessageRole.USER, "after"))
        await found.update_metadata({"new": "sealed"})
        await passivate_all(manager)
        reloaded = await manager.get_session("s")
        assert reloaded is not None
        assert [m.content for m in await reloaded.get_messages()] == ["before", "after"]
        assert reloaded.metadata.metadata == {"old": "plain", "new": "sealed"}
    strict = EncryptedBackend(store(), keyring, allow_plaintext=False)
    async with manager_on(strict, **OPTIONS) as manager:
        with pytest.raises(MemoryEncryptionError, match="unencrypted"):
            await manager.get_session("s")


def files_of(folder: Path, name: str) -> bytes:
    """The bytes of the SQLite file ``name`` with its WAL and shared-memory files."""
    return b"".join(p.read_bytes() for p in folder.glob(f"{name}*"))


async def test_encryption_from_the_memory_config(tmp_path: Path) -> None:
    path = tmp_path / "configured.db"
    ring = StaticKeyring({"k1": os.urandom(32)}, current="k1")
    encryption = {"keyring": ring}
    config = {"backend": "sqlite", "config": {"db_path": str(path)}, "encryption": encryption}
    async with MemoryManager.from_config(memory=config) as memory:
        session = await memory.create_session("u", "s")
        await session.add_message(Message(role=MessageRole.USER, content="configured-marker"))
    assert b"configured-marker" not in files_of(tmp_path, "configured.db")
    async with MemoryManager.from_config(memory=config) as memory:
        found = await memory.get_session("s")
        assert found is not None
        assert [m.content for m in await found.get_messages()] == ["configured-marker"]
    with pytest.raises(MemoryConfigurationError, match="encryption"):
        MemoryManager.from_config(memory={"backend": "memory", "encryption": {"key": 1}})
