"""``LangswarmSession``: langswarm memory as the session store of the OpenAI Agents SDK.

    from agents import Runner
    from langswarm.core.memory.agents_sdk import LangswarmSession

    session = LangswarmSession("conversation-1", manager=manager, user_id="alice")
    result = await Runner.run(agent, "Hello", session=session)

It implements the SDK's ``Session`` protocol (``session_id``, ``session_settings``,
``get_items``, ``add_items``, ``pop_item``, ``clear_session``) on any backend of a
:class:`MemoryManager` (the global one unless ``manager`` is given). Needs the ``agents``
extra (``openai-agents``); importing ``langswarm.core.memory`` alone never imports the SDK.

Each item is stored as one message (:func:`messages_from_responses_format`) and read back
exactly as given (:func:`messages_to_responses_format`): same JSON, same key order. What is
stored and what is handed out are copies, so the SDK may change either without changing the
history. As with the SDK's own stores, any JSON object is accepted: one the format cannot
read (the SDK's ``EncryptedSession`` envelopes, an item type or field newer than this
library, a malformed item) is kept verbatim as an assistant message with no content; what is
not a JSON object of plain data is refused before anything is stored.

The session is created on the first ``add_items``, for ``user_id`` (``"agents-sdk"`` when
none is given); until then reads find it empty. ``clear_session`` drops the messages and
summaries and keeps the session with its metadata. The Agents SDK runs on asyncio only;
``LangswarmSession`` itself also runs under trio. Calls made on another thread's loop than
that of the ``async with manager:`` block holding the runtime (``Runner.run_sync`` in a
worker thread, say) are handed to the block's loop.
"""

from __future__ import annotations

import asyncio
import marshal
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, TypeVar, cast

import anyio
import anyio.to_thread

try:
    from agents.items import TResponseInputItem
    from agents.memory.session_settings import (
        SessionSettings,
        coerce_session_settings,
        resolve_session_limit,
    )
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "langswarm.core.memory.agents_sdk needs the OpenAI Agents SDK: "
        "pip install 'langswarm-memory-runtime[agents]'"
    ) from exc

from ._formats import messages_from_responses_format, messages_to_responses_format
from ._loop import loop_key, on_asyncio
from ._manager import MemoryManager, get_global_memory_manager
from ._session import MemorySession
from ._validate import check_id
from .exceptions import MemoryValidationError, SessionNotFoundError
from .interfaces import Message, MessageRole

__all__ = ["DEFAULT_USER_ID", "LangswarmSession"]

#: The owner of sessions created without a ``user_id``.
DEFAULT_USER_ID = "agents-sdk"

R = TypeVar("R")
#: Values ``_copy`` hands on as they are.
_LEAVES = frozenset({str, int, float, bool, type(None)})


class LangswarmSession:
    """An Agents SDK session whose history lives in langswarm memory.

    ``session_settings`` (a ``SessionSettings`` or a dict of its fields) gives the default
    ``limit`` of :meth:`get_items`, as with the SDK's own sessions.
    """

    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        *,
        manager: MemoryManager | None = None,
        user_id: str | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        self.session_id = check_id("session_id", session_id)
        self.user_id = None if user_id is None else check_id("user_id", user_id)
        self.session_settings = (
            SessionSettings()
            if session_settings is None
            else coerce_session_settings(session_settings)
        )
        self._manager = manager
        self._handle: tuple[object, MemorySession] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<LangswarmSession {self.session_id!r} user={self.user_id!r}>"

    @property
    def manager(self) -> MemoryManager:
        """The manager holding the history (the global one unless one was given)."""
        return self._manager or get_global_memory_manager()

    # -- the Session protocol ------------------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The history, oldest first; only the newest ``limit`` items when a limit is given
        here or in ``session_settings`` (0: none; a negative limit: all, as SQLiteSession)."""
        self._check_open()
        wanted = resolve_session_limit(limit, self.session_settings)
        if wanted == 0:
            return []
        newest = wanted if wanted is not None and wanted > 0 else None
        messages = await self._use(lambda s: s.get_messages(limit=newest), create=False)
        items = _items_of(messages or [])
        if newest is not None and len(items) > newest:
            # A message stored through another API may stand for several items.
            items = items[-newest:]
        return items

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` as one unit: all are stored, in order, or none is."""
        self._check_open()
        if not items:
            return
        messages = to_messages(items)
        await self._use(lambda s: s.add_messages(messages), create=True)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the newest item and return it; ``None`` when the history is empty."""
        self._check_open()
        message = await self._use(lambda s: s.pop_message(), create=False)
        return None if message is None else _item_of(message)

    async def clear_session(self) -> None:
        """Drop every item (and summary); the session and its metadata stay."""
        self._check_open()
        await self._use(lambda s: s.clear(), create=False)

    # -- beyond the protocol -------------------------------------------------------------

    async def _pop_item_with_validation(
        self, validate: Callable[[TResponseInputItem], None] | None = None
    ) -> TResponseInputItem | None:
        """Pop the newest item only if ``validate(item)`` returns; if it raises, the item
        stays where it is and the exception propagates. The check and the removal are one
        atomic step (the hook ``EncryptedSession`` uses on the SDK's SQLite store)."""
        self._check_open()
        failure: list[Exception] = []

        def check(message: Message) -> bool:
            if validate is not None:
                try:
                    validate(_item_of(message))
                except Exception as exc:
                    failure.append(exc)
                    return False
            return True

        message = await self._use(lambda s: s.pop_message(check=check), create=False)
        if failure:
            raise failure[0]
        return None if message is None else _item_of(message)

    def close(self) -> _Closed:
        """Refuse further calls. Nothing to release (the manager owns the storage); here so
        that code written for the SDK's stores runs unchanged, whether it calls ``close()``
        (``SQLiteSession``) or awaits it (``RedisSession``, ``AsyncSQLiteSession``)."""
        self._closed = True
        return _Closed()

    # -- plumbing ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:  # named as the SDK's stores name themselves, subclasses included
            raise RuntimeError(f"{type(self).__name__} is closed")

    async def _use(
        self, call: Callable[[MemorySession], Awaitable[R]], *, create: bool
    ) -> R | None:
        """``call`` on the session, on the loop that hosts the manager's runtime."""
        cached = self._handle
        if cached is not None and cached[0] is loop_key():  # the common case, made short
            try:
                return await call(cached[1])
            except SessionNotFoundError:
                self._handle = None
        manager = self.manager
        host = _foreign_host(manager)
        if host is None:
            return await self._use_here(manager, call, create)
        return await _hop(host, lambda: self._use_here(manager, call, create))

    async def _use_here(
        self,
        manager: MemoryManager,
        call: Callable[[MemorySession], Awaitable[R]],
        create: bool,
    ) -> R | None:
        """``call`` on the session (created first if ``create``); ``None`` when there is no
        session to read. A handle on a session deleted meanwhile is dropped and found again."""
        for attempt in (1, 2):
            handle = await self._open(manager, create)
            if handle is None:
                return None
            try:
                return await call(handle)
            except SessionNotFoundError:
                self._handle = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _open(self, manager: MemoryManager, create: bool) -> MemorySession | None:
        """The session handle for the running loop (a handle serves the loop it was got on)."""
        key = loop_key()
        cached = self._handle
        if cached is not None and cached[0] is key:
            return cached[1]
        handle = await manager.get_session(self.session_id, self.user_id)
        if handle is None and create:
            owner = self.user_id or DEFAULT_USER_ID
            handle = await manager.get_or_create_session(owner, self.session_id)
        self._handle = None if handle is None else (key, handle)
        return handle


class _Closed:
    """What ``close()`` returns: awaiting it does nothing more."""

    def __await__(self) -> Generator[None, None, None]:
        yield from ()


# -- calls from another event loop ----------------------------------------------------------


def _foreign_host(manager: MemoryManager) -> object | None:
    """The loop (asyncio) or run token (trio) of ``manager``'s runtime when an ``async with``
    block on another loop (in another thread) owns it: calls go there. A runtime started on
    first use lives only as long as its loop, which may stop at any time (``Runner.run_sync``
    runs one call's loop), so the caller's own loop serves the call instead."""
    runtime = manager._runtime
    if manager._structured is None or runtime is None or not runtime.running:
        return None
    host = runtime.key
    return None if host is loop_key() else host


async def _hop(host: object, call: Callable[[], Awaitable[R]]) -> R:
    """Run ``call()`` on ``host`` (see :func:`_foreign_host`) and wait for it here."""

    async def main() -> R:
        return await call()

    if isinstance(host, asyncio.AbstractEventLoop):
        future = asyncio.run_coroutine_threadsafe(main(), host)
        if on_asyncio():
            return await asyncio.wrap_future(future)
        return await anyio.to_thread.run_sync(future.result)
    import trio

    token = cast("trio.lowlevel.TrioToken", host)
    return await anyio.to_thread.run_sync(lambda: trio.from_thread.run(main, trio_token=token))


def to_messages(items: list[TResponseInputItem] | list[Any]) -> list[Message]:
    """Messages for ``items``: Responses items through the format, any other JSON object
    (or an item the format cannot read) kept verbatim (see the module docstring)."""
    try:
        return messages_from_responses_format(items)
    except MemoryValidationError:
        pass  # find the items to keep verbatim, one by one
    out: list[Message] = []
    for index, item in enumerate(items):
        try:
            out.append(_message_of(item))
        except MemoryValidationError as exc:
            detail = str(exc).removeprefix("items[0]: ")
            raise MemoryValidationError(f"items[{index}]: {detail}") from None
    return out


def _message_of(item: Any) -> Message:
    try:
        (message,) = messages_from_responses_format([item])
    except MemoryValidationError:
        if not isinstance(item, Mapping):
            raise
        return _opaque(item)
    return message


def _opaque(item: Mapping[str, Any]) -> Message:
    if not all(isinstance(key, str) for key in item):
        raise MemoryValidationError("an item must be a JSON object (string keys)")
    return Message(MessageRole.ASSISTANT, item={key: _copy(v) for key, v in item.items()})


def _copy(value: Any) -> Any:
    """A plain, mutable deep copy of JSON-like data (read-only dicts and lists included)."""
    if value.__class__ in _LEAVES:
        return value
    if isinstance(value, dict):
        return {k: v if v.__class__ in _LEAVES else _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [v if v.__class__ in _LEAVES else _copy(v) for v in value]
    return value


def _items_of(messages: list[Message]) -> list[TResponseInputItem]:
    """The items the messages stand for, as fresh, plain copies.

    Items are plain data (checked when a message is built), so one ``marshal`` round trip
    copies them all: an order of magnitude cheaper than copying item by item. Read-only
    (frozen) dicts and lists are subclasses that ``marshal`` refuses; they are copied by walking.
    """
    if all(message.item is not None for message in messages):
        items = [message.item for message in messages]
        try:
            copied: list[TResponseInputItem] = marshal.loads(marshal.dumps(items))
        except ValueError:
            copied = [_copy(item) for item in items]
        return copied
    return messages_to_responses_format(messages)


def _item_of(message: Message) -> TResponseInputItem:
    """The item a message stands for (the last, if it stands for several)."""
    return messages_to_responses_format([message])[-1]
