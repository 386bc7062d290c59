"""Bounded mailboxes with ``call`` (ask and wait) and ``cast`` (tell and go), and reply slots.

A command accepted into a mailbox is always handled, even if the caller that sent it is
cancelled while waiting for the reply: the reply slot is simply dropped. A caller cancelled
while blocked on a full mailbox sent nothing, so its command has no effect.
"""

from __future__ import annotations

import math
from typing import Any, Generic, NamedTuple, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._loop import suspending
from ..exceptions import MemoryOverloadError

__all__ = ["ActorStopped", "Envelope", "Mailbox", "MailboxStatistics", "Reply"]

C = TypeVar("C")
T = TypeVar("T")


class ActorStopped(Exception):
    """Inside the runtime only: the actor has stopped; the caller re-resolves the session."""


class Reply(Generic[T]):
    """A single-use answer slot shared by whoever waits for it and whoever fills it."""

    __slots__ = ("_error", "_event", "_set", "_value")

    def __init__(self) -> None:
        self._event: anyio.Event | None = None
        self._set = False
        self._value: Any = None
        self._error: BaseException | None = None

    @classmethod
    def of(cls, value: T) -> Reply[T]:
        """A reply already holding ``value``."""
        reply: Reply[T] = cls()
        reply.set_result(value)
        return reply

    def set_result(self, value: T) -> None:
        self._value = value
        self._resolve()

    def set_error(self, error: BaseException) -> None:
        self._error = error
        self._resolve()

    def _resolve(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()

    async def wait(self, timeout: float | None = None) -> T:  # noqa: ASYNC109
        """The value (or raise the error), waiting at most ``timeout`` seconds for it."""
        if not self._set:
            if self._event is None:
                self._event = anyio.Event()
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                await self._event.wait()
            if not self._set:
                raise MemoryOverloadError(
                    f"no answer within {timeout} s; the session is overloaded or its backend "
                    "is stalled"
                )
        if self._error is not None:
            raise self._error
        value: T = self._value
        return value


class Envelope(Generic[C]):
    """A command plus where its answer goes (``None`` for a cast)."""

    __slots__ = ("command", "reply")

    def __init__(self, command: C, reply: Reply[Any] | None) -> None:
        self.command = command
        self.reply = reply


class MailboxStatistics(NamedTuple):
    buffered: int  # envelopes waiting to be handled
    capacity: int  # envelopes the mailbox holds before senders wait
    waiting_senders: int  # callers blocked on a full mailbox


class Mailbox(Generic[C]):
    """A bounded anyio memory object stream of envelopes."""

    __slots__ = ("_receive", "_send")

    def __init__(self, capacity: int) -> None:
        send, receive = anyio.create_memory_object_stream[Envelope[C]](capacity)
        self._send: MemoryObjectSendStream[Envelope[C]] = send
        self._receive: MemoryObjectReceiveStream[Envelope[C]] = receive

    def statistics(self) -> MailboxStatistics:
        stats = self._send.statistics()
        return MailboxStatistics(
            stats.current_buffer_used, int(stats.max_buffer_size), stats.tasks_waiting_send
        )

    async def call(self, command: C, timeout: float | None) -> Any:  # noqa: ASYNC109
        """Send ``command`` and wait for its reply, at most ``timeout`` seconds in all."""
        reply: Reply[Any] = Reply()
        envelope = Envelope(command, reply)
        with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
            try:
                # Handed over without yielding first when there is room: the actor's task
                # retires an empty mailbox, and must not do so between our check and send.
                self._send.send_nowait(envelope)
            except anyio.WouldBlock:
                await self._send.send(envelope)  # full: the task is busy and stays
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                raise ActorStopped from None
            suspending()
            return await reply.wait()
        assert scope.cancelled_caught
        raise MemoryOverloadError(
            f"no reply within {timeout} s; the session is overloaded or its backend is stalled"
        )

    def cast_nowait(self, command: C) -> bool:
        """Send ``command`` without waiting for it, if there is room; say whether it was sent."""
        try:
            self._send.send_nowait(Envelope(command, None))
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        return True

    def take_nowait(self) -> Envelope[C] | None:
        """The next envelope, or ``None`` when none is queued (or the mailbox is closed)."""
        try:
            return self._receive.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return None

    async def take(self) -> Envelope[C] | None:
        """The next envelope, waiting for one; ``None`` once the mailbox is closed."""
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None

    def close(self) -> list[Envelope[C]]:
        """Refuse further commands and return those still queued."""
        self._send.close()
        left: list[Envelope[C]] = []
        while (envelope := self.take_nowait()) is not None:
            left.append(envelope)
        self._receive.close()
        return left
