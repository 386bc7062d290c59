"""Append argv[2] messages "child{i}", one batch each, to session "s" of the SQLite file
argv[1] once a line arrives on stdin; argv[3] is the event loop (asyncio or trio)."""

import sys

import anyio

from langswarm.core.memory.backends.base import SessionWrite
from langswarm.core.memory.backends.sqlite import SQLiteBackend
from langswarm.core.memory.interfaces import Message, MessageRole


async def main(path: str, n: int) -> None:
    backend = SQLiteBackend(path, busy_timeout=30)
    await backend.open()
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(n):
        m = Message(MessageRole.USER, f"child{i}", message_id=f"child{i}", token_count=1)
        [result] = await backend.apply([SessionWrite("s", "i1", "child", messages=[m])])
        assert result.error is None and result.appended_at is not None, result
    await backend.close()


anyio.run(main, sys.argv[1], int(sys.argv[2]), backend=sys.argv[3])
