"""The export format: sessions as JSON Lines that any tool can read, versioned.

An export is UTF-8 text, one JSON object per line (keys sorted, no spaces): a header, then
for each session its ``session`` record, its ``summary`` records (oldest first) and its
``message`` records (in order), and last an ``end`` record counting them; an export without
one was cut short. That is the ``records`` layout, which streams a session of any size in
constant memory both ways. The ``sessions`` layout puts each session on one line instead,
its ``summaries`` and ``messages`` nested as arrays at the end (an importer then holds one
session at a time).

Times are ISO 8601 in UTC with microseconds; one without an offset reads as UTC. ``seq`` is
a message's position in its session: gaps are messages that were removed, and summaries name
the position they cover up to, so both are kept as they are. Readers refuse a higher
``version`` and ignore fields they do not know; a change that an older reader would misread
raises the version. ``docs/cli.md`` describes every field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, TextIO

from .exceptions import MemoryValidationError
from .interfaces import (
    ConversationSummary,
    Message,
    SessionMetadata,
    SessionStatus,
    SummaryType,
)

__all__ = [
    "FORMAT",
    "LAYOUTS",
    "VERSION",
    "End",
    "Event",
    "ExportWriter",
    "Layout",
    "SessionRecord",
    "dump",
    "iso",
    "message_fields",
    "meta_fields",
    "read_export",
    "session_fields",
    "summary_fields",
]

FORMAT: Final = "langswarm-memory"
VERSION: Final = 1
Layout = Literal["records", "sessions"]
LAYOUTS: Final[tuple[Layout, ...]] = ("records", "sessions")

#: JSON text of a value as exports hold it: compact, keys sorted, UTF-8 left as it is.
dump = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode
#: Message fields written only when set (absent reads as null, or {} for metadata).
_OPTIONAL = ("name", "function_call", "tool_calls", "tool_call_id", "item")
_SETTINGS = ("max_messages", "max_tokens", "auto_summarize_threshold")
_REQUIRED: Final = object()


@dataclass(slots=True)
class SessionRecord:
    """A session as exported: its metadata (``message_count`` as stored when it was read),
    the store's token for this incarnation of it, its numbering and its summaries."""

    meta: SessionMetadata
    incarnation: str
    first_seq: int
    next_seq: int
    summaries: list[ConversationSummary] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class End:
    """The closing record: what the export holds."""

    sessions: int
    messages: int
    summaries: int


# -- encoding -----------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """``moment`` in UTC, ISO 8601 with microseconds (naive times are the host's local time,
    as stored by older releases)."""
    if moment.tzinfo is UTC:
        return moment.isoformat(timespec="microseconds")
    return datetime.fromtimestamp(moment.timestamp(), UTC).isoformat(timespec="microseconds")


def meta_fields(meta: SessionMetadata) -> dict[str, Any]:
    """A session's metadata as JSON-ready fields."""
    return {
        "session_id": meta.session_id,
        "user_id": meta.user_id,
        "status": meta.status.value,
        "created_at": iso(meta.created_at),
        "updated_at": iso(meta.updated_at),
        "expires_at": None if meta.expires_at is None else iso(meta.expires_at),
        "max_messages": meta.max_messages,
        "max_tokens": meta.max_tokens,
        "auto_summarize_threshold": meta.auto_summarize_threshold,
        "metadata": meta.metadata,
        "message_count": meta.message_count,
    }


def session_fields(record: SessionRecord) -> dict[str, Any]:
    return {
        "type": "session",
        **meta_fields(record.meta),
        "summary_count": len(record.summaries),
        "incarnation": record.incarnation,
        "first_seq": record.first_seq,
        "next_seq": record.next_seq,
    }


def summary_fields(summary: ConversationSummary) -> dict[str, Any]:
    return {
        "summary_id": summary.summary_id,
        "summary_text": summary.summary_text,
        "summary_type": summary.summary_type.value,
        "covers_through": summary.covers_through,
        "message_count": summary.message_count,
        "token_count": summary.token_count,
        "created_at": iso(summary.created_at),
        "metadata": summary.metadata,
    }


def message_fields(seq: int, message: Message) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "seq": seq,
        "message_id": message.message_id,
        "role": message.role.value,
        "content": message.content,
        "timestamp": iso(message.timestamp),
        "token_count": message.token_count,
    }
    if message.metadata:
        fields["metadata"] = message.metadata
    for name in _OPTIONAL:
        value = getattr(message, name)
        if value is not None:
            fields[name] = value
    return fields


class ExportWriter:
    """Writes an export to ``out``: :meth:`session`, then that session's :meth:`messages`
    (in order, any number of calls), for each session; :meth:`close` writes the end record."""

    def __init__(self, out: TextIO, layout: Layout = "records") -> None:
        if layout not in LAYOUTS:
            raise MemoryValidationError(f"unknown export layout {layout!r}")
        self._out = out
        self._records = layout == "records"
        self._line_open, self._first = False, True  # a sessions-layout line awaits messages
        self._counts = [0, 0, 0]  # sessions, messages, summaries
        header = {"type": "header", "format": FORMAT, "version": VERSION, "layout": layout}
        out.write(dump(header) + "\n")

    def session(self, record: SessionRecord) -> None:
        self._end_line()
        self._counts[0] += 1
        self._counts[2] += len(record.summaries)
        head = dump(session_fields(record))
        sid = record.meta.session_id
        if self._records:
            lines = [head]
            for summary in record.summaries:
                fields = {"type": "summary", "session_id": sid, **summary_fields(summary)}
                lines.append(dump(fields))
            self._out.write("\n".join(lines) + "\n")
            return
        summaries = dump([summary_fields(s) for s in record.summaries])
        self._out.write(f'{head[:-1]},"summaries":{summaries},"messages":[')
        self._line_open, self._first = True, True

    def messages(self, session_id: str, messages: Iterable[tuple[int, Message]]) -> None:
        """Messages of the session last given to :meth:`session`, with their ``seq``."""
        encoded = [dump(self._message(session_id, seq, m)) for seq, m in messages]
        if not encoded:
            return
        self._counts[1] += len(encoded)
        if self._records:
            self._out.write("\n".join(encoded) + "\n")
            return
        text = ",".join(encoded)
        self._out.write(text if self._first else "," + text)
        self._first = False

    def _message(self, session_id: str, seq: int, message: Message) -> dict[str, Any]:
        fields = message_fields(seq, message)
        if self._records:
            fields["type"], fields["session_id"] = "message", session_id
        return fields

    def close(self) -> End:
        """Finish the last session and write the end record."""
        self._end_line()
        end = End(*self._counts)
        fields = {"type": "end", "sessions": end.sessions, "messages": end.messages}
        self._out.write(dump({**fields, "summaries": end.summaries}) + "\n")
        return end

    def _end_line(self) -> None:
        if self._line_open:
            self._out.write("]}\n")
            self._line_open = False


# -- decoding -----------------------------------------------------------------------------


class _Fields:
    """Typed access to one decoded object; errors name the line and the field."""

    __slots__ = ("_data", "where")

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise MemoryValidationError(f"{where}: expected a JSON object")
        self._data: dict[str, Any] = data
        self.where = where

    def fail(self, problem: str) -> MemoryValidationError:
        return MemoryValidationError(f"{self.where}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = _REQUIRED) -> Any:
        """The field ``key`` of type ``kind``; ``default`` if it is absent or null (required
        when no default is given)."""
        value = self._data.get(key)
        if value is None and default is not _REQUIRED:
            return default
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(f"field {key!r} is missing or not of the right type")
        return value

    def text(self, key: str) -> str:
        value: str = self.get(key, str)
        if not value:
            raise self.fail(f"field {key!r} is empty")
        return value

    def count(self, key: str) -> int:
        value: int = self.get(key, int)
        if value < 0:
            raise self.fail(f"field {key!r} is negative")
        return value

    def time(self, key: str) -> datetime:
        value = self.get(key, str)
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise self.fail(f"field {key!r} is not an ISO 8601 time: {value!r}") from None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

    def choice(self, key: str, kind: type[SessionStatus] | type[SummaryType]) -> Any:
        value = self.get(key, str)
        try:
            return kind(value)
        except ValueError:
            raise self.fail(f"field {key!r} has an unknown value {value!r}") from None


def _session(f: _Fields) -> SessionRecord:
    settings = {key: f.get(key, int, None) for key in _SETTINGS}
    meta = SessionMetadata(
        session_id=f.text("session_id"),
        user_id=f.text("user_id"),
        status=f.choice("status", SessionStatus),
        created_at=f.time("created_at"),
        updated_at=f.time("updated_at"),
        metadata=f.get("metadata", dict, {}),
        message_count=f.count("message_count"),
        expires_at=None if f.get("expires_at", str, None) is None else f.time("expires_at"),
        **settings,
    )
    first, nxt = f.count("first_seq"), f.count("next_seq")
    if nxt < first:
        raise f.fail("next_seq is below first_seq")
    return SessionRecord(meta, f.text("incarnation"), first, nxt)


def _summary(f: _Fields, session_id: str) -> ConversationSummary:
    return ConversationSummary(
        summary_id=f.text("summary_id"),
        session_id=session_id,
        summary_text=f.get("summary_text", str),
        message_count=f.count("message_count"),
        token_count=f.count("token_count"),
        created_at=f.time("created_at"),
        summary_type=f.choice("summary_type", SummaryType),
        covers_through=f.count("covers_through"),
        metadata=f.get("metadata", dict, {}),
    )


def _message(f: _Fields) -> tuple[int, Message]:
    try:
        message = Message(
            role=f.get("role", str),
            content=f.get("content", (str, list), None),
            timestamp=f.time("timestamp"),
            message_id=f.text("message_id"),
            metadata=f.get("metadata", dict, {}),
            token_count=f.get("token_count", int, None),
            name=f.get("name", str, None),
            function_call=f.get("function_call", dict, None),
            tool_calls=f.get("tool_calls", list, None),
            tool_call_id=f.get("tool_call_id", str, None),
            item=f.get("item", dict, None),
        )
    except MemoryValidationError as exc:
        raise f.fail(str(exc)) from None
    return f.count("seq"), message


# -- reading ------------------------------------------------------------------------------

Event = SessionRecord | tuple[int, Message] | End


class _Reader:
    """Checks the order of an export's records while turning them into events."""

    def __init__(self) -> None:
        self.layout: Layout | None = None
        self.current: SessionRecord | None = None
        self.held: SessionRecord | None = None  # given out once its summaries are read
        self.next_seq = 0
        self.counts = [0, 0, 0]  # sessions, messages, summaries
        self.ended = False

    def header(self, f: _Fields) -> None:
        if f.get("type", str, "") != "header" or f.get("format", str, "") != FORMAT:
            raise f.fail(f"not a {FORMAT} export (its first line is no {FORMAT} header)")
        if (version := f.get("version", int)) > VERSION:
            raise f.fail(
                f"export format version {version} is newer than this release reads ({VERSION}); "
                "upgrade langswarm-memory to import it"
            )
        layout = f.get("layout", str)
        if layout not in LAYOUTS:
            raise f.fail(f"unknown layout {layout!r}")
        self.layout = layout

    def session(self, f: _Fields) -> Iterator[Event]:
        yield from self.release()
        record = _session(f)
        self.counts[0] += 1
        self.current, self.next_seq = record, record.first_seq
        if self.layout == "records":
            self.held = record
            return
        for i, item in enumerate(f.get("summaries", list, [])):
            self.summary(_Fields(item, f"{f.where}, summary {i}"), record)
        yield record
        for i, item in enumerate(f.get("messages", list, [])):
            yield self.message(_Fields(item, f"{f.where}, message {i}"), record)

    def summary(self, f: _Fields, record: SessionRecord | None) -> None:
        if record is None or (self.layout == "records" and self.held is None):
            raise f.fail("a summary must follow its session, before the messages")
        if self.layout == "records" and f.get("session_id", str) != record.meta.session_id:
            raise f.fail("a summary of another session than the one before it")
        record.summaries.append(_summary(f, record.meta.session_id))
        self.counts[2] += 1

    def message(self, f: _Fields, record: SessionRecord | None) -> tuple[int, Message]:
        if record is None:
            raise f.fail("a message before any session")
        if self.layout == "records" and f.get("session_id", str) != record.meta.session_id:
            raise f.fail("a message of another session than the one before it")
        seq, message = _message(f)
        if not self.next_seq <= seq < record.next_seq:
            expected = f"{self.next_seq} to {record.next_seq - 1}"
            raise f.fail(f"message seq {seq} is out of order (expected {expected})")
        self.next_seq = seq + 1
        self.counts[1] += 1
        return seq, message

    def release(self) -> Iterator[Event]:
        if self.held is not None:
            yield self.held
            self.held = None

    def end(self, f: _Fields) -> Iterator[Event]:
        yield from self.release()
        end, held = End(f.count("sessions"), f.count("messages"), f.count("summaries")), self.counts
        if [end.sessions, end.messages, end.summaries] != held:
            raise f.fail(
                f"the end record counts {end.sessions} sessions, {end.messages} messages and "
                f"{end.summaries} summaries, but the export has {held[0]}, {held[1]} and {held[2]}"
            )
        self.ended = True
        yield end


def read_export(lines: Iterable[str], name: str = "export") -> Iterator[Event]:
    """The sessions (each with its summaries), messages (``(seq, message)``) and finally the
    :class:`End` of an export, in order; ``MemoryValidationError`` naming the line of the
    first problem (what came before it has been given out). One line is held at a time."""
    reader = _Reader()
    number = 0
    for number, line in enumerate(lines, 1):
        where = f"{name}, line {number}"
        if reader.ended:
            raise MemoryValidationError(f"{where}: a line after the end record")
        try:
            f = _Fields(json.loads(line), where)
        except ValueError as exc:
            raise MemoryValidationError(f"{where}: not JSON ({exc})") from None
        if reader.layout is None:
            reader.header(f)
            continue
        yield from _dispatch(reader, f)
    if not reader.ended:
        where = f"{name}, line {number}"
        what = "is empty" if number == 0 else "ends without its end record (cut short?)"
        raise MemoryValidationError(f"{where}: the export {what}")


def _dispatch(reader: _Reader, f: _Fields) -> Iterator[Event]:
    kind = f.get("type", str)
    if kind == "session":
        yield from reader.session(f)
    elif kind == "end":
        yield from reader.end(f)
    elif reader.layout != "records":
        raise f.fail(f"a {kind!r} record in the sessions layout")
    elif kind == "summary":
        reader.summary(f, reader.held)
    elif kind == "message":
        yield from reader.release()
        yield reader.message(f, reader.current)
    else:
        raise f.fail(f"unknown record type {kind!r}")
