"""Encryption at rest: a backend that stores what another one would, with the secrets sealed.

``EncryptedBackend(inner, keyring)`` seals, in every write, message content (text, content
blocks, tool results), tool and function call arguments, Responses items, message, summary
and session metadata values and summary texts, with AES-GCM (see ``_encryption``), and opens
them again on every read. Each value is bound to its session, record and field, so a value
copied elsewhere in the store does not open. What storage needs to order, list, count and
expire sessions stays readable: ids, roles, timestamps, statuses, limits, metadata keys,
message and token counts. Token counts are taken from the plaintext before it is sealed.

The keyring names the key new values are sealed with; each value carries its key id, so
rotating to a new key needs no downtime as long as the keyring still holds the old keys.
A value that cannot be opened raises ``MemoryEncryptionError``, never garbage.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import fields, replace
from datetime import datetime
from typing import Any, TypeVar

import anyio

from .._encryption import (
    Cipher,
    KeyFunction,
    Keyring,
    Opener,
    Sealer,
    StaticKeyring,
    is_sealed,
)
from .._tokens import ensure_counted
from ..exceptions import MemoryEncryptionError
from ..interfaces import (
    ConversationSummary,
    Message,
    MessageContent,
    SessionMetadata,
    SessionStatus,
)
from .base import REMOVED, Backend, SessionSnapshot, SessionWrite, WriteResult

__all__ = ["EncryptedBackend", "KeyFunction", "Keyring", "StaticKeyring"]

#: The one key of a Responses item stored sealed (next to its plain ``type``).
SEALED_ITEM = "$sealed"
#: Tool call fields that identify rather than say something; stored as they are.
_CALL_IDS = frozenset({"id", "type"})

#: Seals or opens one value: ``(value, place, fixed)`` (``fixed``: see ``Sealer.seal``).
Transform = Callable[[Any, str, bool], Any]
#: Messages a batch may hold to be sealed on the event loop (about 40 µs each with their
#: token count); bigger batches are sealed in a worker thread.
INLINE_MESSAGES = 512


R = TypeVar("R")
Record = TypeVar("Record", Message, ConversationSummary)


@functools.cache
def _layout(cls: Any) -> tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]:
    names: tuple[str, ...] = cls.__slots__
    return names, operator.attrgetter(*names)


def sealed_copy(record: R, **changes: Any) -> R:
    """A copy of ``record`` (a dataclass with slots) with ``changes``, made without running
    its ``__init__`` (checking and freezing again would cost more than sealing): sealed
    copies come from records already checked, and only storage reads them."""
    cls: Any = type(record)
    names, values = _layout(cls)
    copy: R = object.__new__(cls)
    set_ = object.__setattr__
    for name, value in zip(names, values(record), strict=True):
        set_(copy, name, value)
    for name, value in changes.items():
        set_(copy, name, value)
    return copy


#: A write's constructor arguments, read from a write.
_WRITE_ARGS = operator.attrgetter(*(f.name for f in fields(SessionWrite) if f.init))


def _write_copy(write: SessionWrite, **changes: Any) -> SessionWrite:
    """``write`` with ``changes`` (its constructor only assigns: the cheapest copy)."""
    copy = SessionWrite(*_WRITE_ARGS(write))
    for name, value in changes.items():
        setattr(copy, name, value)
    return copy


class _Records:
    """Seals (or opens) the secret values of one session's records, each bound to its place:
    the session, the record (message or summary id) and the field."""

    __slots__ = ("_sealing", "_session", "_value")

    def __init__(self, session_id: str, value: Transform, *, sealing: bool) -> None:
        self._session = f"{len(session_id)}:{session_id}\0"
        self._value = value
        self._sealing = sealing

    def _rebuild(self, record: Record, **changes: Any) -> Record:
        # Opened records are built anew, so that their values are checked and frozen.
        return sealed_copy(record, **changes) if self._sealing else replace(record, **changes)

    def custom(self, values: dict[str, Any]) -> dict[str, Any]:
        """Session metadata values (as created or as updated). The store merges them key by
        key and counts a change only if a value differs, so the same value seals the same."""
        return self._mapping(values, f"{self._session}s\0", fixed=True)

    def message(self, m: Message) -> Message:
        if m is REMOVED:
            return m
        place = f"{self._session}m{len(m.message_id)}:{m.message_id}\0"
        calls = m.tool_calls
        return self._rebuild(
            m,
            content=self._content(m.content, place + "content"),
            metadata=self._mapping(m.metadata, place + "meta\0") if m.metadata else {},
            function_call=self._call(m.function_call, place + "fc\0"),
            tool_calls=None
            if calls is None
            else [self._tool_call(c, f"{place}tc{i}\0") for i, c in enumerate(calls)],
            item=None if m.item is None else self._item(m.item, place + "item"),
        )

    def summary(self, s: ConversationSummary) -> ConversationSummary:
        place = f"{self._session}y{len(s.summary_id)}:{s.summary_id}\0"
        return self._rebuild(
            s,
            summary_text=self._value(s.summary_text, place + "text", False),
            metadata=self._mapping(s.metadata, place + "meta\0") if s.metadata else {},
        )

    def _mapping(
        self, values: dict[str, Any], place: str, *, fixed: bool = False
    ) -> dict[str, Any]:
        value = self._value
        return {key: value(item, place + key, fixed) for key, item in values.items()}

    def _content(self, content: MessageContent, place: str) -> MessageContent:
        """Text is sealed as it is; a list of blocks as one text block holding all of it, so
        its shape stays valid content and tells nothing (types, tool names, ids)."""
        if content is None or (not content and not isinstance(content, str)):
            return content
        if self._sealing:
            sealed = self._value(content, place, False)
            return sealed if isinstance(content, str) else [{"type": "text", "text": sealed}]
        if isinstance(content, list) and len(content) == 1:
            block = content[0]
            if block.keys() == {"type", "text"} and is_sealed(block["text"]):
                return self._value(block["text"], place, False)  # type: ignore[no-any-return]
        return self._value(content, place, False)  # type: ignore[no-any-return]

    def _call(self, call: dict[str, Any] | None, place: str) -> dict[str, Any] | None:
        """A function call: its name stays, its arguments (and anything else) are sealed."""
        if call is None:
            return None
        value = self._value
        return {k: v if k == "name" else value(v, place + k, False) for k, v in call.items()}

    def _tool_call(self, call: dict[str, Any], place: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in call.items():
            if key in _CALL_IDS:
                out[key] = item
            elif key == "function" and isinstance(item, dict):
                out[key] = self._call(item, place + "fn\0")
            else:
                out[key] = self._value(item, place + key, False)
        return out

    def _item(self, item: dict[str, Any], place: str) -> dict[str, Any]:
        if self._sealing:
            sealed = {SEALED_ITEM: self._value(item, place, False)}
            return {"type": item["type"], **sealed} if "type" in item else sealed
        if is_sealed(item.get(SEALED_ITEM)):
            return self._value(item[SEALED_ITEM], place, False)  # type: ignore[no-any-return]
        return self._value(item, place, False)  # type: ignore[no-any-return]


def _has_secrets(write: SessionWrite) -> bool:
    create = write.create
    return bool(
        write.messages
        or write.custom
        or write.summary is not None
        or (create is not None and create.metadata)
    )


def _seal_write(write: SessionWrite, sealer: Sealer) -> SessionWrite:
    """``write`` with its secrets sealed (a new write: the flusher may send the same one
    again after a failure, and each attempt seals afresh)."""
    if not _has_secrets(write):
        return write

    def seal(value: Any, place: str, fixed: bool) -> str:
        return sealer.seal(value, place.encode(), fixed=fixed)

    records = _Records(write.session_id, seal, sealing=True)
    changes: dict[str, Any] = {}
    if write.messages:
        changes["messages"] = [records.message(m) for m in write.messages]
    if write.custom:
        changes["custom"] = records.custom(write.custom)
    if write.summary is not None:
        changes["summary"] = records.summary(write.summary)
    if write.create is not None and write.create.metadata:
        changes["create"] = sealed_copy(
            write.create, metadata=records.custom(write.create.metadata)
        )
    return _write_copy(write, **changes)


class EncryptedBackend:
    """``inner`` with every secret it stores sealed under keys from ``keyring``.

    ``keyring``: a :class:`Keyring` (``current()`` and ``get(key_id)``, e.g.
    :class:`StaticKeyring`) or a :data:`KeyFunction`. ``allow_plaintext``: values stored
    before encryption was turned on are read as they are (with ``False``, they raise
    ``MemoryEncryptionError``).
    """

    def __init__(
        self,
        inner: Backend,
        keyring: Keyring | KeyFunction,
        *,
        allow_plaintext: bool = True,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.persistent = inner.persistent
        self.shared = inner.shared
        self.ttl_seconds = inner.ttl_seconds
        self._cipher = Cipher(keyring)
        self._allow_plaintext = allow_plaintext

    # -- lifecycle --------------------------------------------------------------------------

    def preflight(self) -> None:
        self.inner.preflight()

    async def open(self) -> None:
        """Open ``inner``, then check that the keyring gives a usable current key."""
        await self.inner.open()
        try:
            await anyio.to_thread.run_sync(self._cipher.sealer)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.inner.close()
            raise

    async def close(self) -> None:
        await self.inner.close()

    # -- writes ----------------------------------------------------------------------------

    def apply(self, batch: Sequence[SessionWrite]) -> Awaitable[list[WriteResult]]:
        """Seal now (on the event loop, about 15 µs a message plus its token count) and hand
        the sealed batch to ``inner`` at once, so a backend that starts at the call still
        does; a batch too big to seal without stalling the loop is counted and sealed in a
        worker thread first. Sealing in a thread every time measured slower: the sealing is
        Python code that holds the GIL, so the loop waits for it anyway."""
        writes = list(batch)
        size = sum(len(w.messages) for w in writes if w.messages)
        if size > INLINE_MESSAGES:
            return self._apply_later(writes)
        if any(_has_secrets(w) for w in writes):
            writes = self._seal_batch(writes)
        return self.inner.apply(writes)

    async def _apply_later(self, batch: list[SessionWrite]) -> list[WriteResult]:
        sealed = await anyio.to_thread.run_sync(self._seal_batch, batch)
        return await self.inner.apply(sealed)

    def _seal_batch(self, batch: list[SessionWrite]) -> list[SessionWrite]:
        if self.persistent:
            # Counted on the plaintext (and recorded on the caller's messages), where the
            # store would count ciphertext; in memory, the runtime counts when it needs to.
            ensure_counted([m for w in batch for m in w.messages if m.token_count is None])
        sealer = self._cipher.sealer()
        return [_seal_write(write, sealer) for write in batch]

    # -- reads -----------------------------------------------------------------------------

    def _records(self, session_id: str, opener: Opener) -> _Records:
        allow_plaintext = self._allow_plaintext

        def open_(value: Any, place: str, fixed: bool) -> Any:
            if is_sealed(value):
                return opener.open(value, place.encode(), session_id)
            if allow_plaintext:
                return value
            raise MemoryEncryptionError(f"session {session_id!r} holds an unencrypted value")

        return _Records(session_id, open_, sealing=False)

    def _open_snapshot(self, snapshot: SessionSnapshot) -> SessionSnapshot:
        opener = self._cipher.opener()
        records = self._records(snapshot.meta.session_id, opener)
        return replace(
            snapshot,
            meta=self._open_meta(snapshot.meta, opener),
            messages=[records.message(m) for m in snapshot.messages],
            summaries=[records.summary(s) for s in snapshot.summaries],
        )

    def _open_meta(self, meta: SessionMetadata, opener: Opener) -> SessionMetadata:
        if not meta.metadata:
            return meta
        opened = self._records(meta.session_id, opener).custom(meta.metadata)
        return replace(meta, metadata=opened)

    def _open_metas(self, metas: list[SessionMetadata]) -> list[SessionMetadata]:
        opener = self._cipher.opener()
        return [self._open_meta(meta, opener) for meta in metas]

    def _open_messages(self, session_id: str, messages: list[Message]) -> list[Message]:
        records = self._records(session_id, self._cipher.opener())
        return [records.message(m) for m in messages]

    async def load_session(self, session_id: str, *, tail: int) -> SessionSnapshot | None:
        snapshot = await self.inner.load_session(session_id, tail=tail)
        if snapshot is None:
            return None
        if not (snapshot.messages or snapshot.summaries or snapshot.meta.metadata):
            return snapshot
        return await anyio.to_thread.run_sync(self._open_snapshot, snapshot)

    async def load_messages(self, session_id: str, *, start: int, stop: int) -> list[Message]:
        messages = await self.inner.load_messages(session_id, start=start, stop=stop)
        if not messages:
            return messages
        return await anyio.to_thread.run_sync(self._open_messages, session_id, messages)

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int | None = 100,
        updated_before: datetime | None = None,
    ) -> list[SessionMetadata]:
        found = await self.inner.list_sessions(
            user_id=user_id, status=status, limit=limit, updated_before=updated_before
        )
        if not any(meta.metadata for meta in found):
            return found
        return await anyio.to_thread.run_sync(self._open_metas, found)

    async def get_usage_stats(self) -> dict[str, Any]:
        return await self.inner.get_usage_stats()

    async def delete_sessions(
        self, session_ids: Sequence[str], *, idle_before: datetime | None = None
    ) -> int:
        return await self.inner.delete_sessions(session_ids, idle_before=idle_before)
