"""Actor properties: cancellation, errors, supervision, backpressure."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from anyio import wait_all_tasks_blocked

from langswarm.core.memory import MemoryManager, MemorySession
from langswarm.core.memory.actors import commands as c
from langswarm.core.memory.backends.memory import InMemoryBackend
from langswarm.core.memory.exceptions import (
    MemoryError,
    MemoryValidationError,
    SessionFailedError,
)
from tests.helpers import GatedBackend, manager_on, user_message

pytestmark = pytest.mark.anyio


async def _actor(memory: MemoryManager, session_id: str):  # type: ignore[no-untyped-def]
    runtime = await memory._ensure()
    assert runtime.registry is not None
    return runtime.registry.live[session_id]


async def test_cancelled_waiting_caller_does_not_wedge_the_actor() -> None:
    """A caller cancelled after its command entered the mailbox: the command still takes
    effect (documented in actors/mailbox.py) and the actor goes on serving."""
    backend = GatedBackend(InMemoryBackend())
    async with manager_on(backend, flush_capacity=4) as memory:
        session = await memory.create_session("u")
        await session.flush()
        backend.close_gate()
        for i in range(4):  # fill the flusher; the gate holds it
            await session.add_message(user_message(f"fill {i}"))
        await backend.waiting.wait()
        actor = await _actor(memory, session.session_id)

        # Blocks in the actor (waiting for flusher space); later commands queue behind it.
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.add_message, user_message("blocked"))
            while not actor.busy:
                await anyio.lowlevel.checkpoint()
            caller = anyio.CancelScope()

            async def cancelled_caller() -> None:
                with caller:
                    await session.update_metadata({"note": "from a cancelled caller"})

            tg.start_soon(cancelled_caller)
            while actor.mailbox.statistics()["buffered"] < 1:
                await anyio.lowlevel.checkpoint()
            caller.cancel()  # it is now waiting for its reply
            await anyio.lowlevel.checkpoint()
            assert caller.cancelled_caught or caller.cancel_called
            backend.gate.set()
        await memory.backend.list_sessions()  # read-your-writes barrier
        assert session.metadata.metadata["note"] == "from a cancelled caller"
        contents = [m.content for m in await session.get_messages()]
        assert contents == ["fill 0", "fill 1", "fill 2", "fill 3", "blocked"]
        await session.add_message(user_message("after"))
        assert (await session.get_messages(limit=1))[0].content == "after"


async def test_caller_cancelled_on_a_full_mailbox_sends_nothing() -> None:
    backend = GatedBackend(InMemoryBackend())
    async with manager_on(backend, flush_capacity=1, mailbox_size=1) as memory:
        session = await memory.create_session("u")
        await session.flush()
        backend.close_gate()
        await session.add_message(user_message("held"))
        await backend.waiting.wait()
        actor = await _actor(memory, session.session_id)
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.add_message, user_message("waits for space"))
            while not actor.busy:
                await anyio.lowlevel.checkpoint()
            tg.start_soon(session.update_metadata, {"queued": True})
            while actor.mailbox.statistics()["buffered"] < 1:
                await anyio.lowlevel.checkpoint()
            with anyio.move_on_after(0.05):
                await session.update_metadata({"never": True})  # mailbox full: blocks
            backend.gate.set()
        meta = session.metadata.metadata
        assert meta.get("queued") is True
        assert "never" not in meta


async def test_an_error_reaches_its_caller_and_the_actor_serves_the_next() -> None:
    backend = GatedBackend(InMemoryBackend())
    async with manager_on(backend, flush_capacity=1) as memory:
        session = await memory.create_session("u")
        with pytest.raises(MemoryValidationError):
            await session.update_metadata({"max_tokens": -5})  # direct dispatch
        await session.add_message(user_message("ok"))
        await session.flush()
        backend.close_gate()
        await session.add_message(user_message("held"))
        await backend.waiting.wait()
        actor = await _actor(memory, session.session_id)
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.add_message, user_message("queued"))
            while not actor.busy:
                await anyio.lowlevel.checkpoint()
            with pytest.raises(MemoryValidationError):  # through the mailbox
                with anyio.fail_after(5):
                    backend.gate.set()
                    await session.update_metadata({"max_messages": "many"})
        assert [m.content for m in await session.get_messages()] == ["ok", "held", "queued"]
        assert session.metadata.max_messages is None


async def test_crashed_actor_is_restarted_and_keeps_its_messages() -> None:
    async with manager_on(InMemoryBackend()) as memory:
        session = await memory.create_session("u")
        for i in range(5):
            await session.add_message(user_message(f"m{i}"))
        actor = await _actor(memory, session.session_id)
        with pytest.raises(SessionFailedError):
            await actor.call(c.Crash())
        messages = await session.get_messages()  # served by the restarted actor
        assert [m.content for m in messages] == [f"m{i}" for i in range(5)]
        await session.add_message(user_message("m5"))
        assert len(await session.get_messages()) == 6
        runtime = await memory._ensure()
        assert runtime.registry is not None and runtime.registry.restarts == 1


async def test_past_the_restart_limit_one_session_fails_and_others_keep_working() -> None:
    async with manager_on(InMemoryBackend(), max_restarts=2, restart_period=60) as memory:
        doomed = await memory.create_session("u")
        await doomed.add_message(user_message("before"))
        others = [await memory.create_session(f"user{i}") for i in range(100)]
        actor = await _actor(memory, doomed.session_id)
        for _ in range(3):
            with pytest.raises(SessionFailedError):
                await actor.call(c.Crash())
        with pytest.raises(MemoryError) as raised:
            await doomed.add_message(user_message("after"))
        assert isinstance(raised.value, SessionFailedError)
        with pytest.raises(SessionFailedError):
            await doomed.get_messages()

        async def use(i: int) -> None:
            await others[i].add_message(user_message(f"hello {i}"))
            assert [m.content for m in await others[i].get_messages()] == [f"hello {i}"]

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(use, i)
        stats = await memory.get_system_stats()
        assert stats["total_messages"] == 101


async def test_a_flood_of_writes_meets_backpressure() -> None:
    backend = GatedBackend(InMemoryBackend())
    capacity, mailbox = 64, 8
    async with manager_on(backend, flush_capacity=capacity, mailbox_size=mailbox) as memory:
        session = await memory.create_session("u")
        runtime = await memory._ensure()
        actor = await _actor(memory, session.session_id)
        await session.flush()
        backend.close_gate()
        done = 0

        async def writer(i: int) -> None:
            nonlocal done
            await session.add_message(user_message(f"w{i}"))
            done += 1

        async with anyio.create_task_group() as tg:
            for i in range(1_000):
                tg.start_soon(writer, i)
            await backend.waiting.wait()
            while actor.mailbox.statistics()["waiting_senders"] == 0:
                await anyio.lowlevel.checkpoint()
            # Held: bounded buffers, blocked writers, nothing unbounded in between.
            assert runtime.flusher.pending <= capacity + 1
            assert actor.mailbox.statistics()["buffered"] <= mailbox
            assert done < 1_000
            assert len(actor.tail) <= capacity + 1
            backend.gate.set()
        assert done == 1_000
        contents = [m.content for m in await session.get_messages()]
        assert sorted(contents) == sorted(f"w{i}" for i in range(1_000))
        assert len(set(contents)) == 1_000


async def test_the_next_batch_is_stored_while_the_last_ones_writers_resume() -> None:
    """Group commit is a two-stage pipeline: when a batch is stored, the flusher hands the
    backend the next batch before it wakes the writers of the stored one."""
    log: list[str] = []

    class Recording(GatedBackend):
        def apply(self, batch):  # type: ignore[no-untyped-def]
            log.append("store " + " ".join(w.session_id for w in batch if w.messages))
            return super().apply(batch)

    backend = Recording(InMemoryBackend())
    async with manager_on(backend, durability="committed") as memory:
        a = await memory.create_session("u", "a")
        b = await memory.create_session("u", "b")
        backend.close_gate()
        log.clear()

        async def write(session: MemorySession) -> None:
            await session.add_message(user_message("hello"))
            log.append(f"{session.session_id} resumed")

        async with anyio.create_task_group() as tg:
            tg.start_soon(write, a)
            await backend.waiting.wait()  # a's batch is at the gate
            tg.start_soon(write, b)
            await wait_all_tasks_blocked()  # b's message is queued behind it
            assert log == ["store a"]
            backend.gate.set()
        # b's batch went to the backend before a (or anyone) resumed.
        assert log[:2] == ["store a", "store b"]
        assert sorted(log[2:]) == ["a resumed", "b resumed"]
