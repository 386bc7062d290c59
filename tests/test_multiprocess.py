"""Many processes, one store (DESIGN.md §12): every scenario runs real separate OS processes.

Each scenario drives two or more ``tests.multiprocess.driver`` children (one open manager
each, sessions held live between commands) on one SQLite file and on one Redis, with
``committed`` durability, every child on the test's own event loop. Children are coordinated
by request/reply lines, never by sleeping. What is stored is then read by this process
through a manager of its own, which has never seen the sessions. The last test runs the
multi-worker example server under ``uvicorn --workers 2``.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from langswarm.core.memory import MemoryManager
from tests.multiprocess.harness import Child, drivers, serve_uvicorn

pytestmark = pytest.mark.anyio

SID = "shared"
SESSION_ERRORS = ("SessionNotFoundError", "SessionOwnershipError")
#: Two processes race for brand-new ids in rounds that start both together; many rounds
#: make the race real whatever the start-up skew of one round.
RACE_ROUNDS, RACE_IDS = 20, 5


@pytest.fixture(params=["sqlite", "redis"])
def memory(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """``memory=`` for one SQLite file or one (flushed) Redis, shared by every process."""
    if request.param == "sqlite":
        config: dict[str, Any] = {"db_path": os.fspath(tmp_path / "memory.db")}
    else:
        config = {"url": request.getfixturevalue("redis_url")}
    return {"backend": request.param, "config": config, "durability": "committed"}


async def stored_many(memory: dict[str, Any], sids: list[str]) -> dict[str, dict[str, Any] | None]:
    """Sessions as a process that never saw them reads them: owner, status, metadata, texts,
    summary texts (``None`` for a session that does not exist)."""
    found: dict[str, dict[str, Any] | None] = {}
    async with MemoryManager.from_config(memory=memory) as fresh:
        for sid in sids:
            session = await fresh.get_session(sid)
            if session is None:
                found[sid] = None
                continue
            texts = [m.text() for m in await session.get_messages()]
            summaries = [s.summary_text for s in await session.get_summaries()]
            meta = session.metadata
            found[sid] = {
                "user": meta.user_id,
                "status": meta.status.value,
                "metadata": meta.metadata,
                "texts": texts,
                "summaries": summaries,
            }
    return found


async def stored(memory: dict[str, Any]) -> dict[str, Any] | None:
    return (await stored_many(memory, [SID]))[SID]


async def holding(child: Child, texts: list[str], user: str = "u", **options: Any) -> None:
    """``child`` creates the session, writes ``texts`` and reads them: it holds it live."""
    assert (await child.ask("open", sid=SID, user=user, how="create", options=options)).unwrap()
    (await child.ask("add", sid=SID, texts=texts)).unwrap()
    assert (await child.ask("read", sid=SID)).unwrap() == texts


async def joins(child: Child) -> None:
    assert (await child.ask("open", sid=SID, how="get")).unwrap() is not None


@pytest.mark.parametrize("writers", [2, 4])
async def test_concurrent_appends_to_one_session_keep_every_message_in_writer_order(
    memory: dict[str, Any], anyio_backend: str, tmp_path: Path, writers: int
) -> None:
    async with MemoryManager.from_config(memory=memory) as manager:
        await manager.create_session("u", SID)
    async with drivers(memory, anyio_backend, tmp_path, writers) as children:
        for child in children:
            await joins(child)
        sent = {c.name: [f"{c.name}-{i}" for i in range(200)] for c in children}
        for child in children:  # all start together; each awaits its 200 in order
            await child.send("add", sid=SID, texts=sent[child.name])
        acked = [(await c.reply()).unwrap() for c in children]
        views = {c.name: (await c.ask("read", sid=SID)).unwrap() for c in children}
    assert acked == [200] * writers
    result = await stored(memory)
    assert result is not None
    texts: list[str] = result["texts"]
    lost = sorted({t for batch in sent.values() for t in batch} - set(texts))
    duplicated = sorted(t for t, n in Counter(texts).items() if n > 1)
    assert {"stored": len(texts), "lost": len(lost), "duplicated": len(duplicated)} == {
        "stored": 200 * writers,
        "lost": 0,
        "duplicated": 0,
    }, f"{len(lost)} of {200 * writers} lost, e.g. {lost[:3]}; duplicated e.g. {duplicated[:3]}"
    for name, batch in sent.items():
        assert [t for t in texts if t.startswith(f"{name}-")] == batch, name
    disagree = {name: len(view) for name, view in views.items() if view != texts}
    assert disagree == {}, f"these processes read another order or count than stored ({len(texts)})"


async def test_live_session_sees_messages_another_process_appended(
    memory: dict[str, Any], anyio_backend: str, tmp_path: Path
) -> None:
    async with drivers(memory, anyio_backend, tmp_path, 2) as (a, b):
        await holding(a, ["a-0", "a-1"])
        await joins(b)
        (await b.ask("add", sid=SID, texts=["b-0", "b-1", "b-2"])).unwrap()
        read = (await a.ask("read", sid=SID)).unwrap()
        context = (await a.ask("context", sid=SID)).unwrap()
    everything = ["a-0", "a-1", "b-0", "b-1", "b-2"]
    assert {"get_messages": read, "context": context} == {
        "get_messages": everything,
        "context": everything,
    }


async def test_metadata_updates_from_two_processes_merge_per_key(
    memory: dict[str, Any], anyio_backend: str, tmp_path: Path
) -> None:
    async with drivers(memory, anyio_backend, tmp_path, 2) as (a, b):
        await holding(a, ["a-0"], metadata={"origin": "a"})
        await joins(b)
        (await b.ask("update", sid=SID, updates={"b_key": "from-b"})).unwrap()
        after_b = (await a.ask("meta", sid=SID)).unwrap()["metadata"]
        (await a.ask("update", sid=SID, updates={"a_key": "from-a"})).unwrap()
        after_own = (await a.ask("meta", sid=SID)).unwrap()["metadata"]
    result = await stored(memory)
    assert result is not None
    both = {"origin": "a", "a_key": "from-a", "b_key": "from-b"}
    assert {"stored": result["metadata"], "A after B": after_b, "A after own": after_own} == {
        "stored": both,
        "A after B": {"origin": "a", "b_key": "from-b"},
        "A after own": both,
    }


async def test_archive_by_another_process_refuses_the_live_holders_appends(
    memory: dict[str, Any], anyio_backend: str, tmp_path: Path
) -> None:
    async with drivers(memory, anyio_backend, tmp_path, 2) as (a, b):
        await holding(a, ["a-0"])
        await joins(b)
        (await b.ask("archive", sid=SID)).unwrap()
        append = await a.ask("add", sid=SID, texts=["a-1"])
    result = await stored(memory)
    assert result is not None
    assert {
        "A's append": append.refused("MemoryValidationError"),
        "says archived": "archived" in append.detail,
        "stored status": result["status"],
        "stored": result["texts"],
    } == {
        "A's append": "refused",
        "says archived": True,
        "stored status": "archived",
        "stored": ["a-0"],
    }


async def test_delete_by_another_process_is_not_undone_by_the_live_holder(
    memory: dict[str, Any], anyio_backend: str, tmp_path: Path
) -> None:
    async with drivers(memory, anyio_backend, tmp_path, 2) as (a, b):
        await holding(a, ["a-0"])
        await joins(b)
        (await b.ask("delete", sid=SID)).unwrap()
        append = await a.ask("add", sid=SID, texts=["a-1"])
    result = await stored(memory)
    async with MemoryManager.from_config(memory=memory) as fresh:
        listed = [m.session_id for m in await fresh.backend.list_sessions(user_id="u")]
    assert {
        "A's append": append.refused("SessionNotFoundError"),
        "stored": result,
        "listed": listed,
    } == {"A's append": "refused", "stored": None, "listed": []}


async def test_recreated_session_of_another_user_stays_out_of_the_old_holders_reach(
    memory: dict[str, Any], anyio_backend: str, tmp_path: Path
) -> None:
    async with drivers(memory, anyio_backend, tmp_path, 2) as (a, b):
        await holding(a, ["alice-0"], user="alice")
        await joins(b)
        (await b.ask("delete", sid=SID)).unwrap()
        assert (await b.ask("open", sid=SID, user="bob", how="create")).unwrap() == "bob"
        (await b.ask("add", sid=SID, texts=["bob-0"])).unwrap()
        read = await a.ask("read", sid=SID)
        append = await a.ask("add", sid=SID, texts=["alice-1"])
    result = await stored(memory)
    assert result is not None
    assert {
        "A's read": read.refused(*SESSION_ERRORS),
        "A's append": append.refused(*SESSION_ERRORS),
        "stored owner": result["user"],
        "stored": result["texts"],
    } == {
        "A's read": "refused",
        "A's append": "refused",
        "stored owner": "bob",
        "stored": ["bob-0"],
    }


async def test_summary_and_trim_keep_messages_no_summary_covers(
    memory: dict[str, Any], anyio_backend: str, tmp_path: Path
) -> None:
    """A trims to ``max_messages`` after a summary; B's messages that no stored summary
    covers must survive. The summarizer names what it saw, so "covered" means "seen"."""
    naming = "--naming-summarizer"
    async with drivers(memory, anyio_backend, tmp_path, 2, naming) as (a, b):
        await holding(a, ["a-0", "a-1", "a-2"], max_messages=10)
        await joins(b)
        b_texts = [f"b-{i}" for i in range(6)]  # B stays within max_messages itself
        (await b.ask("add", sid=SID, texts=b_texts)).unwrap()
        (await a.ask("add", sid=SID, texts=[f"a-{i}" for i in range(3, 9)])).unwrap()
        (await a.ask("summarize", sid=SID)).unwrap()
        (await a.ask("add", sid=SID, texts=[f"a-{i}" for i in range(9, 15)])).unwrap()
    result = await stored(memory)
    assert result is not None
    covered = {name for text in result["summaries"] for name in text.split()}
    gone = [t for t in b_texts if t not in result["texts"] and t not in covered]
    assert gone == [], f"stored {result['texts']}; summaries name {sorted(covered)}"


async def test_get_or_create_race_gives_each_new_id_one_owner(
    memory: dict[str, Any], anyio_backend: str, tmp_path: Path
) -> None:
    """Two users race for the same brand-new ids; each winner writes "<user>:<sid>"."""
    sids = [f"race-{i}" for i in range(RACE_ROUNDS * RACE_IDS)]
    users = {"A": "xavier", "B": "yvonne"}
    outcome: dict[str, dict[str, str]] = {"A": {}, "B": {}}
    async with drivers(memory, anyio_backend, tmp_path, 2) as children:
        for start in range(0, len(sids), RACE_IDS):  # each round starts both together
            for child in children:
                await child.send("race", user=users[child.name], sids=sids[start:][:RACE_IDS])
            for child in children:
                outcome[child.name].update((await child.reply()).unwrap())
        reads = [
            (users[c.name], sid, (await c.ask("read", sid=sid)).unwrap())
            for c in children
            for sid, result in outcome[c.name].items()
            if result == "won"
        ]
    found = await stored_many(memory, sids)
    winners = {sid: [users[n] for n in users if outcome[n][sid] == "won"] for sid in sids}
    contested = {sid: [outcome[n][sid] for n in users] for sid in sids if len(winners[sid]) != 1}
    unrefused = [
        (users[n], sid, outcome[n][sid])
        for sid in sids
        for n in users
        if winners[sid] and users[n] not in winners[sid] and outcome[n][sid] != "refused"
    ]
    # What the owner reads back: through the handle it won, and from storage afterwards.
    reads += [(r["user"], sid, r["texts"]) for sid, r in found.items() if r is not None]
    foreign = [(u, sid, texts) for u, sid, texts in reads if any(t != f"{u}:{sid}" for t in texts)]
    misowned = [
        (sid, r and r["user"], winners[sid])
        for sid, r in found.items()
        if r is None or [r["user"]] != winners[sid]
    ]
    assert {
        "ids not won by exactly one": len(contested),
        "losers not refused": len(unrefused),
        "reads of another user's messages": len(foreign),
        "stored owner is not the one winner": len(misowned),
    } == {
        "ids not won by exactly one": 0,
        "losers not refused": 0,
        "reads of another user's messages": 0,
        "stored owner is not the one winner": 0,
    }, f"e.g. {list(contested.items())[:2]} {unrefused[:2]} {foreign[:2]} {misowned[:2]}"


CHAT_TURNS, CHAT_SESSIONS, CHAT_CLIENTS = 2_000, 4, 16
CLOSE = {"Connection": "close"}


def chat_url(memory: dict[str, Any]) -> str:
    """The example's ``LANGSWARM_MEMORY_URL`` for the same store as ``memory``."""
    config = memory["config"]
    if memory["backend"] == "sqlite":
        return f"sqlite:///{config['db_path']}"  # an absolute path: sqlite:////tmp/...
    return str(config["url"])


def conversation(turn: int) -> tuple[str, str]:
    n = turn % CHAT_SESSIONS
    return f"user{n}", f"chat{n}"


async def chat_turns(client: httpx.AsyncClient, served: Counter[str], failed: list[str]) -> None:
    """``CHAT_TURNS`` chat turns from ``CHAT_CLIENTS`` concurrent clients, each turn on a new
    connection, so that either worker may accept it."""

    async def one_client(first: int) -> None:
        for turn in range(first, CHAT_TURNS, CHAT_CLIENTS):
            user, sid = conversation(turn)
            body = {"message": f"turn-{turn}"}
            response = await client.post(f"/chat/{user}/{sid}", json=body, headers=CLOSE)
            served[response.headers["x-worker-pid"]] += 1
            if response.status_code != 200:
                failed.append(f"turn-{turn}: {response.status_code} {response.text}")

    async with anyio.create_task_group() as tg:
        for first in range(CHAT_CLIENTS):
            tg.start_soon(one_client, first)


async def views(client: httpx.AsyncClient, workers: set[str]) -> dict[str, dict[str, list[str]]]:
    """Each session's history as each worker shows it (new connections until both answered)."""
    shown: dict[str, dict[str, list[str]]] = {}
    for n in range(CHAT_SESSIONS):
        user, sid = conversation(n)
        by_worker = shown[sid] = {}
        for _ in range(200):
            response = await client.get(f"/history/{user}/{sid}", headers=CLOSE)
            messages = response.json()["messages"]
            by_worker[response.headers["x-worker-pid"]] = [m["content"] for m in messages]
            if set(by_worker) == workers:
                break
    return shown


async def test_multiworker_chat_server_stores_every_turn_once(
    memory: dict[str, Any], anyio_backend: str, tmp_path: Path
) -> None:
    served: Counter[str] = Counter()
    failed: list[str] = []

    async def drive(base: str, workers: set[str]) -> dict[str, dict[str, list[str]]]:
        limits = httpx.Limits(max_connections=CHAT_CLIENTS)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
            await chat_turns(client, served, failed)
            assert set(served) == workers, f"turns served by {served}, workers {workers}"
            return await views(client, workers)

    env = {"LANGSWARM_MEMORY_URL": chat_url(memory)}
    shown = await serve_uvicorn("examples.multiworker.app:app", 2, env, tmp_path, drive)
    found = await stored_many(memory, list(shown))
    sent: dict[str, list[str]] = {}
    for turn in range(CHAT_TURNS):
        sent.setdefault(conversation(turn)[1], []).append(f"turn-{turn}")
    tally = Counter[str]()
    differ: list[str] = []
    for sid, texts in sent.items():
        stored_texts = (found[sid] or {"texts": []})["texts"]
        counts = Counter(stored_texts)
        replies = Counter(t.rsplit("You said: ", 1)[-1] for t in stored_texts if ":" in t)
        tally["user messages lost"] += sum(1 for t in texts if counts[t] == 0)
        tally["user messages stored more than once"] += sum(1 for t in texts if counts[t] > 1)
        tally["replies lost"] += sum(1 for t in texts if replies[t] == 0)
        tally["sessions not shown by both workers"] += len(shown[sid]) != 2
        differ += [
            f"{sid} on {pid}: {len(view)} messages, stored {len(stored_texts)}"
            for pid, view in shown[sid].items()
            if view != stored_texts
        ]
    tally["worker views that differ from storage"] = len(differ)
    tally["failed turns"] = len(failed)
    assert +tally == Counter(), f"of {CHAT_TURNS} turns; e.g. {failed[:3]} {differ[:4]}"
