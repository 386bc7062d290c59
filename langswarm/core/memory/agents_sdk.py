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
``LangswarmSession`` itself also runs under trio. Whatever loop or thread the SDK calls from
(``Runner.run_sync`` in worker threads, say), the calls run on one loop: that of the manager's
``async with`` block while one runs, else a loop of the adapters on a daemon thread (see
``_adapters``).
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Generator, Mapping
from typing import Any

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

from ._adapters import AdaptedSession, plain_copy
from ._formats import messages_from_responses_format, messages_to_responses_format
from ._manager import MemoryManager
from ._validate import check_id
from .exceptions import MemoryValidationError
from .interfaces import Message, MessageRole

__all__ = ["DEFAULT_USER_ID", "LangswarmSession"]

#: The owner of sessions created without a ``user_id``.
DEFAULT_USER_ID = "agents-sdk"


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
        self._session = AdaptedSession(manager, self.session_id, self.user_id, DEFAULT_USER_ID)
        self._closed = False

    def __repr__(self) -> str:
        return f"<LangswarmSession {self.session_id!r} user={self.user_id!r}>"

    @property
    def manager(self) -> MemoryManager:
        """The manager holding the history (the global one unless one was given)."""
        return self._session.manager

    # -- the Session protocol ------------------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The history, oldest first; only the newest ``limit`` items when a limit is given
        here or in ``session_settings`` (0: none; a negative limit: all, as SQLiteSession)."""
        self._check_open()
        wanted = resolve_session_limit(limit, self.session_settings)
        if wanted == 0:
            return []
        newest = wanted if wanted is not None and wanted > 0 else None
        messages = await self._session.use(lambda s: s.get_messages(limit=newest), create=False)
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
        await self._session.use(lambda s: s.add_messages(messages), create=True)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the newest item and return it; ``None`` when the history is empty."""
        self._check_open()
        message = await self._session.use(lambda s: s.pop_message(), create=False)
        return None if message is None else _item_of(message)

    async def clear_session(self) -> None:
        """Drop every item (and summary); the session and its metadata stay."""
        self._check_open()
        await self._session.use(lambda s: s.clear(), create=False)

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

        message = await self._session.use(lambda s: s.pop_message(check=check), create=False)
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


class _Closed:
    """What ``close()`` returns: awaiting it does nothing more."""

    def __await__(self) -> Generator[None, None, None]:
        yield from ()


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
    return Message(MessageRole.ASSISTANT, item={key: plain_copy(v) for key, v in item.items()})


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
            copied = [plain_copy(item) for item in items]
        return copied
    return messages_to_responses_format(messages)


def _item_of(message: Message) -> TResponseInputItem:
    """The item a message stands for (the last, if it stands for several)."""
    return messages_to_responses_format([message])[-1]
