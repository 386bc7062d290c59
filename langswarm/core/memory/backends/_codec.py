"""msgpack encoding of messages, session metadata and summaries, with a schema version.

Each payload is a msgpack array whose first element is the schema version, so a reader can
refuse (or migrate) data written by a newer release instead of misreading it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgpack

from ..exceptions import MemoryCorruptionError
from ..interfaces import (
    ConversationSummary,
    Message,
    MessageRole,
    SessionMetadata,
    SessionStatus,
    SummaryType,
)

__all__ = [
    "SCHEMA_VERSION",
    "pack_message",
    "pack_meta",
    "pack_summary",
    "unpack_message",
    "unpack_meta",
    "unpack_summary",
]

SCHEMA_VERSION = 1

_packb: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=True, datetime=False).pack
_fromts = datetime.fromtimestamp


def _unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else _fromts(value)


# Roles to their stored text by dict: ``.value`` costs ~0.3 µs on Python 3.11, per message.
_ROLE_TEXT = {r: r.value for r in MessageRole}


def pack_message(m: Message) -> bytes:
    return _packb(
        (
            SCHEMA_VERSION,
            _ROLE_TEXT[m.role],
            m.content,
            m.timestamp.timestamp(),
            m.message_id,
            m.metadata or None,
            m.token_count,
            m.name,
            m.function_call,
            m.tool_calls,
            m.tool_call_id,
            m.item,
        )
    )


def unpack_message(data: bytes) -> Message:
    try:
        fields = _unpackb(data)
        # Payloads written before the ``item`` field have one element fewer.
        item = fields.pop() if len(fields) == 12 else None
        (
            version,
            role,
            content,
            ts,
            message_id,
            metadata,
            token_count,
            name,
            function_call,
            tool_calls,
            tool_call_id,
        ) = fields
        _check_version(version)
        return Message(
            role=MessageRole(role),
            content=content,
            timestamp=_fromts(ts),
            message_id=message_id,
            metadata=metadata or {},
            token_count=token_count,
            name=name,
            function_call=function_call,
            tool_calls=tool_calls,
            tool_call_id=tool_call_id,
            item=item,
        )
    except MemoryCorruptionError:
        raise
    except Exception as exc:
        raise MemoryCorruptionError(f"undecodable stored message: {exc}") from exc


def pack_meta(meta: SessionMetadata) -> bytes:
    return _packb(
        (
            SCHEMA_VERSION,
            meta.session_id,
            meta.user_id,
            meta.status.value,
            meta.created_at.timestamp(),
            meta.updated_at.timestamp(),
            meta.max_messages,
            meta.max_tokens,
            meta.auto_summarize_threshold,
            meta.metadata,
            meta.message_count,
            _ts(meta.expires_at),
        )
    )


def unpack_meta(data: bytes) -> SessionMetadata:
    try:
        (
            version,
            session_id,
            user_id,
            status,
            created_at,
            updated_at,
            max_messages,
            max_tokens,
            threshold,
            metadata,
            message_count,
            expires_at,
        ) = _unpackb(data)
        _check_version(version)
        return SessionMetadata(
            session_id=session_id,
            user_id=user_id,
            status=SessionStatus(status),
            created_at=_fromts(created_at),
            updated_at=_fromts(updated_at),
            max_messages=max_messages,
            max_tokens=max_tokens,
            auto_summarize_threshold=threshold,
            metadata=metadata,
            message_count=message_count,
            expires_at=_dt(expires_at),
        )
    except MemoryCorruptionError:
        raise
    except Exception as exc:
        raise MemoryCorruptionError(f"undecodable stored session metadata: {exc}") from exc


def pack_summary(s: ConversationSummary) -> bytes:
    return _packb(
        (
            SCHEMA_VERSION,
            s.summary_id,
            s.session_id,
            s.summary_text,
            s.message_count,
            s.token_count,
            s.created_at.timestamp(),
            s.summary_type.value,
            s.covers_through,
            s.metadata or None,
        )
    )


def unpack_summary(data: bytes) -> ConversationSummary:
    try:
        (
            version,
            summary_id,
            session_id,
            text,
            message_count,
            token_count,
            created_at,
            summary_type,
            covers_through,
            metadata,
        ) = _unpackb(data)
        _check_version(version)
        return ConversationSummary(
            summary_id=summary_id,
            session_id=session_id,
            summary_text=text,
            message_count=message_count,
            token_count=token_count,
            created_at=_fromts(created_at),
            summary_type=SummaryType(summary_type),
            covers_through=covers_through,
            metadata=metadata or {},
        )
    except MemoryCorruptionError:
        raise
    except Exception as exc:
        raise MemoryCorruptionError(f"undecodable stored summary: {exc}") from exc


def _check_version(version: object) -> None:
    if version != SCHEMA_VERSION:
        raise MemoryCorruptionError(
            f"stored schema version {version!r} is not supported (this release reads "
            f"version {SCHEMA_VERSION})"
        )
