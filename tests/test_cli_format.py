"""The export format on its own: what is written reads back as it was (both layouts, any
message), times are UTC, and a reader refuses what is out of order, cut short or newer, naming
the line."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langswarm.core.memory._export import (
    End,
    ExportWriter,
    Layout,
    SessionRecord,
    iso,
    read_export,
)
from langswarm.core.memory.exceptions import MemoryValidationError
from langswarm.core.memory.interfaces import (
    ConversationSummary,
    Message,
    MessageRole,
    SessionMetadata,
    SessionStatus,
    SummaryType,
)

T0 = datetime(2025, 3, 30, 1, 59, 59, 999_999, tzinfo=UTC)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
blocks = st.lists(st.dictionaries(st.text(), json_values, max_size=3), max_size=3)
messages = st.builds(
    Message,
    role=st.sampled_from(list(MessageRole)),
    content=st.none() | st.text() | blocks,
    timestamp=st.datetimes(
        min_value=datetime(1980, 1, 1), max_value=datetime(2199, 12, 30), timezones=st.just(UTC)
    ),
    message_id=st.text(
        st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), min_size=1
    ),
    metadata=st.dictionaries(st.text(), json_values, max_size=3),
    token_count=st.none() | st.integers(0, 10**6),
    name=st.none() | st.text(),
    tool_calls=st.none()
    | st.lists(st.dictionaries(st.text(), json_values, max_size=2), max_size=2),
    tool_call_id=st.none() | st.text(),
    item=st.none() | st.dictionaries(st.text(), json_values, min_size=1, max_size=2),
)


def record(session_id: str = "s1", next_seq: int = 3, summaries: int = 1) -> SessionRecord:
    meta = SessionMetadata(
        session_id,
        "u1",
        SessionStatus.ARCHIVED,
        T0,
        T0 + timedelta(hours=1),
        max_tokens=100,
        metadata={"k": ["v", 1.5]},
        message_count=2,
    )
    made = [
        ConversationSummary(
            f"{session_id}:{n}",
            session_id,
            f"text {n}",
            n,
            5,
            T0,
            SummaryType.AUTOMATIC,
            n,
            {"trigger_seq": n},
        )
        for n in range(1, summaries + 1)
    ]
    return SessionRecord(meta, "inc-1", 0, next_seq, made)


def write(layout: Layout, sessions: list[tuple[SessionRecord, list[tuple[int, Message]]]]) -> str:
    out = io.StringIO()
    writer = ExportWriter(out, layout)
    for rec, said in sessions:
        writer.session(rec)
        for i in range(0, len(said), 2):  # in pages
            writer.messages(rec.meta.session_id, said[i : i + 2])
    writer.close()
    return out.getvalue()


@pytest.mark.parametrize("layout", ["records", "sessions"])
@settings(max_examples=40, deadline=None)
@given(said=st.lists(messages, max_size=5, unique_by=lambda m: m.message_id))
def test_what_is_written_reads_back(layout: Layout, said: list[Message]) -> None:
    numbered = [(2 * i + 1, m) for i, m in enumerate(said)]  # with gaps
    first, second = record("s1", 2 * len(said) + 1), record("s2", 0, 0)
    text = write(layout, [(first, numbered), (second, [])])
    lines = text.split("\n")[:-1]  # JSON Lines end lines with \n, and only there
    events = list(read_export(lines))
    assert events == [first, *numbered, second, End(2, len(said), 1)]
    assert len(lines) == (2 + 2 + 1 + len(said) if layout == "records" else 4)
    assert text == write(layout, [(first, numbered), (second, [])])


def test_times_are_utc() -> None:
    naive = datetime(2025, 1, 31, 12, 0, 0, 5)
    assert iso(naive) == datetime.fromtimestamp(naive.timestamp(), UTC).isoformat()
    assert iso(naive).endswith("+00:00") and iso(naive)[-13:-6] == ".000005"
    east = datetime(2025, 1, 31, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert iso(east) == "2025-01-31T12:00:00.000000+00:00"


def lines_of(*objects: dict[str, Any], header: bool = True) -> list[str]:
    head = {"type": "header", "format": "langswarm-memory", "version": 1, "layout": "records"}
    return [json.dumps(o) for o in ([head] if header else []) + list(objects)]


SESSION = json.loads(write("records", [(record(), [])]).split("\n")[1])
MESSAGE = {
    "type": "message",
    "session_id": "s1",
    "seq": 0,
    "message_id": "m0",
    "role": "user",
    "content": "hi",
    "timestamp": "2025-01-31T12:00:00",
}
END = {"type": "end", "sessions": 1, "messages": 1, "summaries": 0}


def test_a_reader_takes_naive_times_as_utc_and_skips_unknown_fields() -> None:
    events = list(read_export(lines_of(SESSION, {**MESSAGE, "future": 1}, END)))
    assert isinstance(events[1], tuple)
    seq, message = events[1]
    # Messages keep their time as local time: the same moment.
    moment = datetime(2025, 1, 31, 12, tzinfo=UTC)
    assert seq == 0 and message.timestamp.timestamp() == moment.timestamp()


@pytest.mark.parametrize(
    ("objects", "problem"),
    [
        ([SESSION, {**MESSAGE, "seq": 3}], "line 3: message seq 3 is out of order"),
        ([SESSION, MESSAGE, MESSAGE], "line 4: message seq 0 is out of order"),
        ([SESSION, {**MESSAGE, "session_id": "s2"}], "a message of another session"),
        ([SESSION, MESSAGE, {**SESSION, "type": "summary"}], "a summary must follow its session"),
        ([MESSAGE], "line 2: a message before any session"),
        ([SESSION, {**MESSAGE, "role": "robot"}], "line 3: unknown message role 'robot'"),
        ([SESSION, {**MESSAGE, "timestamp": "yesterday"}], "'timestamp' is not an ISO 8601 time"),
        ([{**SESSION, "next_seq": -1}], "line 2: field 'next_seq' is negative"),
        ([{**SESSION, "user_id": 7}], "field 'user_id' is missing or not of the right type"),
        ([SESSION, MESSAGE, END, END], "line 5: a line after the end record"),
        ([SESSION, MESSAGE], "line 3: the export ends without its end record"),
    ],
)
def test_a_reader_names_the_line_of_the_problem(
    objects: list[dict[str, Any]], problem: str
) -> None:
    with pytest.raises(MemoryValidationError, match=r"^export, line ") as caught:
        list(read_export(lines_of(*objects)))
    assert problem in str(caught.value)


def test_a_reader_refuses_what_is_not_an_export_it_reads() -> None:
    with pytest.raises(MemoryValidationError, match="line 1: not a langswarm-memory export"):
        list(read_export(lines_of(SESSION, header=False)))
    newer = {"type": "header", "format": "langswarm-memory", "version": 2, "layout": "records"}
    with pytest.raises(MemoryValidationError, match="upgrade langswarm-memory to import it"):
        list(read_export([json.dumps(newer)]))
