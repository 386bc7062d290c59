"""Bounded mailboxes with ``call`` (ask and wait) and ``cast`` (tell and go).

A command accepted into a mailbox is always handled, even if the caller that sent it is
cancelled while waiting for the reply: the reply slot is simply dropped. A caller cancelled
while blocked on a full mailbox sent nothing, so its command has no effect.
"""

from __future__ import annotations

import math
from typing import Any, Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..exceptions import MemoryOverloadError

__all__ = ["ActorStopped", "Envelope", "Mailbox", "Reply"]

C = TypeVar("C")


class ActorStopped(Exception):
    """Raised inside the runtime when a mailbox's actor has stopped; callers retry elsewhere."""


class Reply:
    """A single-use reply slot shared by a caller and the actor handling its command."""

    __slots__ = ("_done", "_error", "_value")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def set_result(self, value: Any) -> None:
        self._value = value
        self._done.set()

    def set_error(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def wait(self) -> Any:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


class Envelope(Generic[C]):
    """A command plus where its answer goes (``None`` for a cast)."""

    __slots__ = ("command", "reply")

    def __init__(self, command: C, reply: Reply | None) -> None:
        self.command = command
        self.reply = reply


class Mailbox(Generic[C]):
    """A bounded anyio memory object stream of envelopes."""

    def __init__(self, capacity: int) -> None:
        send, receive = anyio.create_memory_object_stream[Envelope[C]](capacity)
        self._send: MemoryObjectSendStream[Envelope[C]] = send
        self.receive: MemoryObjectReceiveStream[Envelope[C]] = receive

    @property
    def empty(self) -> bool:
        return self._send.statistics().current_buffer_used == 0

    def statistics(self) -> dict[str, int]:
        stats = self._send.statistics()
        return {
            "buffered": stats.current_buffer_used,
            "capacity": int(stats.max_buffer_size),
            "waiting_senders": stats.tasks_waiting_send,
        }

    async def call(self, command: C, timeout: float | None) -> Any:  # noqa: ASYNC109
        """Send ``command`` and wait for its reply, at most ``timeout`` seconds in all."""
        reply = Reply()
        with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
            try:
                await self._send.send(Envelope(command, reply))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                raise ActorStopped from None
            return await reply.wait()
        assert scope.cancelled_caught
        raise MemoryOverloadError(
            f"no reply within {timeout} s; the session is overloaded or its backend is stalled"
        )

    async def cast(self, command: C) -> None:
        """Send ``command`` without waiting for it to be handled."""
        try:
            await self._send.send(Envelope(command, None))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ActorStopped from None

    def cast_nowait(self, command: C) -> bool:
        """Send ``command`` if there is room; return whether it was sent."""
        try:
            self._send.send_nowait(Envelope(command, None))
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        return True

    def close(self) -> None:
        """Refuse further commands; the actor still drains what is queued."""
        self._send.close()
