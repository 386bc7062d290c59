"""Actor properties: cancellation, schedule points, errors, supervision, backpressure."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from anyio import wait_all_tasks_blocked

from langswarm.core.memory import MemoryManager, MemorySession
from langswarm.core.memory._loop import YIELD_EVERY
from langswarm.core.memory.actors.session import SessionActor
from langswarm.core.memory.backends.memory import InMemoryBackend
from langswarm.core.memory.exceptions import (
    MemoryError,
    MemoryValidationError,
    SessionFailedError,
)
from tests.helpers import GatedBackend, manager_on, user_message

pytestmark = pytest.mark.anyio

#: Longest any wait in these tests may take before the test fails.
SETTLE = 10


async def _actor(memory: MemoryManager, session_id: str) -> SessionActor:
    runtime = await memory._ensure()
    return runtime.registry.live[session_id]


def _queued(actor: SessionActor) -> int:
    stats = actor.mailbox_statistics()
    return 0 if stats is None else stats.buffered


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
        with anyio.fail_after(SETTLE):
            await backend.waiting.wait()
        actor = await _actor(memory, session.session_id)

        with anyio.fail_after(SETTLE):
            async with anyio.create_task_group() as tg:
                # Waits in the actor's task for flusher space; later commands queue behind it.
                tg.start_soon(session.add_message, user_message("blocked"))
                await wait_all_tasks_blocked()
                assert actor.mailbox_statistics() is not None
                caller = anyio.CancelScope()

                async def cancelled_caller() -> None:
                    with caller:
                        await session.update_metadata({"note": "from a cancelled caller"})

                tg.start_soon(cancelled_caller)
                await wait_all_tasks_blocked()
                assert _queued(actor) == 1
                caller.cancel()  # it is now waiting for its reply
                await wait_all_tasks_blocked()
                assert caller.cancelled_caught
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
        with anyio.fail_after(SETTLE):
            await backend.waiting.wait()
        actor = await _actor(memory, session.session_id)
        with anyio.fail_after(SETTLE):
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.add_message, user_message("waits for space"))
                await wait_all_tasks_blocked()
                tg.start_soon(session.update_metadata, {"queued": True})
                await wait_all_tasks_blocked()
                assert _queued(actor) == 1
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
            await session.update_metadata({"max_tokens": -5})  # checked before it is sent
        await session.add_message(user_message("ok"))
        await session.flush()
        backend.close_gate()
        await session.add_message(user_message("held"))
        with anyio.fail_after(SETTLE):
            await backend.waiting.wait()
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.add_message, user_message("queued"))
                await wait_all_tasks_blocked()
                tg.start_soon(session.archive_session)
                await wait_all_tasks_blocked()
                backend.gate.set()
                with pytest.raises(MemoryValidationError, match="archived"):
                    await session.add_message(user_message("refused"))  # by the actor's task
        assert [m.content for m in await session.get_messages()] == ["ok", "held", "queued"]
        assert session.metadata.status == "archived"


async def test_crashed_actor_is_restarted_and_keeps_its_messages() -> None:
    async with manager_on(InMemoryBackend()) as memory:
        session = await memory.create_session("u")
        for i in range(5):
            await session.add_message(user_message(f"m{i}"))
        await session.flush()
        actor = await _actor(memory, session.session_id)
        actor.tail.next += 1  # break the actor's invariants
        with pytest.raises(SessionFailedError):
            await session.add_message(user_message("refused"))
        messages = await session.get_messages()  # served by the rebuilt actor
        assert [m.content for m in messages] == [f"m{i}" for i in range(5)]
        await session.add_message(user_message("m5"))
        assert len(await session.get_messages()) == 6
        runtime = await memory._ensure()
        assert runtime.registry.restarts == 1


async def test_past_the_restart_limit_one_session_fails_and_others_keep_working() -> None:
    async with manager_on(InMemoryBackend(), max_restarts=2, restart_period=60) as memory:
        doomed = await memory.create_session("u")
        await doomed.add_message(user_message("before"))
        others = [await memory.create_session(f"user{i}") for i in range(100)]
        actor = await _actor(memory, doomed.session_id)
        for _ in range(3):
            await doomed.get_messages()  # answered once any rebuild has finished
            actor.tail.next += 1
            with pytest.raises(SessionFailedError):
                await doomed.add_message(user_message("crash"))
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

        with anyio.fail_after(SETTLE):
            async with anyio.create_task_group() as tg:
                for i in range(1_000):
                    tg.start_soon(writer, i)
                await backend.waiting.wait()
                await wait_all_tasks_blocked()
                stats = actor.mailbox_statistics()
                assert stats is not None and stats.waiting_senders > 0
                # Held: bounded buffers, blocked writers, nothing unbounded in between.
                assert runtime.flusher.pending <= capacity + 1
                assert stats.buffered <= mailbox
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

        with anyio.fail_after(SETTLE):
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


async def test_a_loop_of_fast_calls_lets_other_tasks_run() -> None:
    """Buffered appends served without suspending still yield to the event loop."""
    async with manager_on(InMemoryBackend(), durability="buffered") as memory:
        session = await memory.create_session("u")
        ran = 0
        started, stop = anyio.Event(), anyio.Event()

        async def other() -> None:
            nonlocal ran
            started.set()
            while not stop.is_set():
                ran += 1
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(other)
            with anyio.fail_after(SETTLE):
                await started.wait()
            before = ran
            for i in range(5_000):
                await session.add_message(user_message(f"m{i}"))
            during = ran - before
            stop.set()
        assert during >= 5_000 // 64


async def test_writers_released_by_one_commit_share_the_next_batch() -> None:
    """More committed writers than the yield budget, in step: every round is one batch. A
    budgeted yield taken right after a commit would put some of them behind the flusher's cut,
    and the two groups would alternate from then on, doubling the batches."""
    writers, rounds = 4 * YIELD_EVERY, 5
    async with manager_on(InMemoryBackend(), durability="committed") as memory:
        sessions = [await memory.create_session(f"u{i}") for i in range(writers)]
        flusher = (await memory._ensure()).flusher
        ready = 0
        go = anyio.Event()

        async def writer(session: MemorySession) -> None:
            nonlocal ready
            await session.add_message(user_message("first"))  # lines every writer up
            ready += 1
            if ready == writers:
                go.set()
            await go.wait()
            for i in range(rounds):
                await session.add_message(user_message(f"round {i}"))

        with anyio.fail_after(SETTLE):
            async with anyio.create_task_group() as tg:
                for session in sessions:
                    tg.start_soon(writer, session)
                await go.wait()
                before = flusher.batches
        assert flusher.batches - before == rounds
        for session in sessions:
            assert len(await session.get_messages()) == rounds + 1


@pytest.mark.parametrize("durability", ["buffered", "committed"])
async def test_a_call_in_a_cancelled_scope_raises_and_changes_nothing(durability: str) -> None:
    async with manager_on(InMemoryBackend(), durability=durability) as memory:
        session = await memory.create_session("u")
        await session.add_message(user_message("kept"))
        for _ in range(300):
            with anyio.CancelScope() as scope:
                scope.cancel()
                await session.add_message(user_message("cancelled"))
                raise AssertionError("a call in a cancelled scope returned")
            with anyio.CancelScope() as scope:
                scope.cancel()
                await session.update_metadata({"cancelled": True})
        assert [m.content for m in await session.get_messages()] == ["kept"]
        assert "cancelled" not in session.metadata.metadata
