"""How sessions map onto Redis keys and values (see ``_scripts`` for the layout)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ... import exceptions
from ...exceptions import MemoryCorruptionError
from ...interfaces import Message, SessionMetadata, SessionStatus
from .._codec import pack_message, pack_summary, unpack_message
from .._rows import SETTINGS, Row
from ..base import ABSENT, REMOVED, SessionState, SessionWrite, WriteResult

__all__ = [
    "Keys",
    "control",
    "decode_result",
    "element",
    "message_of",
    "row_of",
]

_SHORT = dict(zip(SETTINGS, ("mm", "mt", "at"), strict=True))


class Keys:
    """Key names under one prefix."""

    __slots__ = ("all", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.all = f"{prefix}:idx:all"

    def session(self, session_id: str) -> list[str]:
        """meta, msgs, ids, sums of a session (one hash slot)."""
        base = f"{self.prefix}:{{{session_id}}}"
        return [f"{base}:meta", f"{base}:msgs", f"{base}:ids", f"{base}:sums"]

    def user(self, user_id: str) -> str:
        return f"{self.prefix}:idx:user:{user_id}"


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def element(message: Message) -> bytes:
    """A message as stored in the list: its id, a NUL byte, its packed form."""
    return message.message_id.encode() + b"\0" + pack_message(message)


def message_of(stored: bytes) -> Message:
    """The message of a list element (``REMOVED`` for the hole a removed one left)."""
    if not stored:
        return REMOVED
    _, _, payload = stored.partition(b"\0")
    return unpack_message(payload)


def control(write: SessionWrite, now: float) -> tuple[str, list[bytes]]:
    """The script's view of ``write``: its JSON, then the message elements and the packed
    summary that follow it. Absent parts are left out (JSON ``null`` is truthy in Lua)."""
    spec: dict[str, Any] = {"s": write.session_id, "i": write.incarnation, "w": write.writer}
    spec["n"] = len(write.messages)
    if write.messages:
        spec["ids"] = [m.message_id for m in write.messages]
    if write.delete:
        spec["d"] = True
    if write.create is not None:
        spec["c"] = _creation(write.create)
        spec["e"] = write.exclusive
        if write.start_seq:
            spec["ss"] = write.start_seq
    if write.clear:
        spec["clr"] = True
    if write.remove:
        spec["r"] = write.remove
    if write.expect_version is not None:
        spec["v"] = write.expect_version
    _add_updates(write, spec)
    extra = [element(m) for m in write.messages]
    if write.summary is not None:
        s = write.summary
        spec["sm"] = {
            "id": s.summary_id,
            "ct": s.covers_through,
            "b": write.summary_base,
            "sn": write.summary_seen,
        }
        extra.append(pack_summary(s))
    return _json(spec), extra


def _add_updates(write: SessionWrite, spec: dict[str, Any]) -> None:
    """Settings, metadata, status, touch, trim and summary claim, where the write has them."""
    if write.settings:
        spec["st"] = {_SHORT[k]: v or 0 for k, v in write.settings.items() if k in _SHORT}
    if write.custom:
        spec["x"] = {k: _json(v) for k, v in write.custom.items()}
    if write.status is not None:
        spec["status"] = write.status.value
    if write.touched is not None:
        spec["t"] = write.touched.timestamp()
    if write.trim_before is not None:
        spec["tr"], spec["tb"] = write.trim_before, write.trim_base
    if write.claim is not None:
        spec["cl"], spec["cs"] = write.claim, write.claim_seconds


def _creation(meta: SessionMetadata) -> dict[str, Any]:
    made: dict[str, Any] = {
        "u": meta.user_id,
        "ca": meta.created_at.timestamp(),
        "ua": meta.updated_at.timestamp(),
        "st": {_SHORT[k]: getattr(meta, k) or 0 for k in SETTINGS},
        "x": {k: _json(v) for k, v in meta.metadata.items()},
    }
    if meta.expires_at is not None:
        made["ea"] = meta.expires_at.timestamp()
    return made


_ERRORS = {
    "exists": ("SessionExistsError", "session {} already exists"),
    "owner": ("SessionOwnershipError", "session {} belongs to another user"),
    "notfound": ("SessionNotFoundError", "session {} was deleted"),
    "archived": ("MemoryValidationError", "session {} is {}; it accepts no messages"),
    "missing": ("MessageNotFoundError", "session {} holds no message {!r}"),
    "trimmed": (
        "MemoryValidationError",
        "session {}: a message to remove is part of the summary that holds trimmed messages; "
        "removing it would lose them{}",
    ),
    "corrupt": ("MemoryCorruptionError", "stored data of session {} is not ours: {}"),
}


def decode_result(session_id: str, reply: list[Any]) -> WriteResult:
    """A script's answer for one session, as a :class:`WriteResult`."""
    inc, owner, version, first, nxt, before, appended, created, stored, claimed, conflict = reply[
        :11
    ]
    state = ABSENT if not inc else SessionState(inc.decode(), owner.decode(), version, first, nxt)
    result = WriteResult(
        state,
        version_before=before,
        appended_at=None if appended < 0 else appended,
        created=bool(created),
        summary_stored=bool(stored),
        claimed=bool(claimed),
        conflict=bool(conflict),
    )
    kind = reply[11].decode() if reply[11] else ""
    if kind:
        name, text = _ERRORS[kind]
        detail = reply[12].decode() if reply[12] else ""
        result.error = getattr(exceptions, name)(text.format(session_id, detail))
    return result


def _number(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def row_of(session_id: str, fields: Mapping[bytes, bytes]) -> Row:
    """A session's row from its meta hash (``HGETALL``)."""
    try:
        h = {k.decode(): v for k, v in fields.items()}
        custom = {k[2:]: json.loads(v) for k, v in h.items() if k.startswith("x:")}
        expires = _number(h.get("ea"))
        return Row(
            session_id=session_id,
            owner=h["u"].decode(),
            incarnation=h["i"].decode(),
            version=int(h["v"]),
            status=SessionStatus(h["st"].decode()),
            created=float(h["ca"]),
            updated=float(h["ua"]),
            expires=expires,
            max_messages=_int(h.get("mm")),
            max_tokens=_int(h.get("mt")),
            auto_summarize_threshold=_int(h.get("at")),
            custom=custom,
            first_seq=int(h["f"]),
            next_seq=int(h["n"]),
            count=int(h["c"]),
            summary_id=h["si"].decode(),
            summary_end=int(h["se"]),
            claim=int(h["cl"]),
            claim_until=float(h["cu"]),
            writer=h["w"].decode(),
            writer_since=int(h["ws"]),
            cleared_at=int(h.get("cp", 0)),
            edited=int(h.get("ed", 0)),
        )
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise MemoryCorruptionError(
            f"stored metadata of session {session_id!r} is not ours: {exc!r}"
        ) from exc


def _int(value: bytes | None) -> int | None:
    return None if value is None else int(value)
