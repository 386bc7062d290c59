"""Hypothesis strategies for what callers hand the public memory API, valid and invalid.

Every strategy with a ``valid`` flag draws, when it is true, only well-formed values (what a
careful caller passes); otherwise it mixes in what the one validation step has to refuse
(lone surrogates, non-string keys, out-of-range numbers, wrong types, bad ids). The flag only
shapes the mix: the suites never assume an input is accepted, they check what the library
decided. Inputs that name sessions or users are :class:`Ident` templates rendered with the
example's number, so an example replayed while shrinking never meets what an earlier one stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from langswarm.core.memory import (
    Durability,
    Message,
    MessageRole,
    SessionStatus,
    create_anthropic_message,
    create_openai_message,
)
from tests.fuzz._blocks import (
    anthropic_blocks,
    contents,
    function_calls,
    functions,
    openai_parts,
    tool_calls,
)
from tests.fuzz._data import (
    CHARS,
    CONFIG_KEYS,
    INT64_MAX,
    S,
    clean_texts,
    junk_keys,
    limits,
    metadata,
    plain_dicts,
    put,
    repeat,
    tainted_dicts,
    texts,
    timestamps,
)

__all__ = [
    "CONFIG_KEYS",
    "Ident",
    "MessageSpec",
    "ReadSpec",
    "SessionSpec",
    "UpdateSpec",
    "message_batches",
    "message_specs",
    "reads",
    "session_specs",
    "update_specs",
]


# -- messages -----------------------------------------------------------------------------


def roles(*, valid: bool = False) -> S[object]:
    good = st.sampled_from(list(MessageRole)) | st.sampled_from([r.value for r in MessageRole])
    if valid:
        return good
    return good | st.sampled_from(["robot", "USER", "", 1, None, b"user"])


def _optional_texts(*, valid: bool) -> S[object]:
    """``name`` and ``tool_call_id``: text or None."""
    good = st.none() | texts(16, valid=valid)
    if valid:
        return good
    return good | st.sampled_from([1, b"x", ["a"], {"a": 1}, 1.5])


def token_counts(*, valid: bool = False) -> S[object]:
    good = st.none() | st.integers(0, 10_000)
    if valid:
        return good
    edges: list[object] = [INT64_MAX, 2**63, 2**64, 2**70, -1, -(2**70), True, 1.5, "3"]
    return good | st.sampled_from(edges)


def message_ids(*, valid: bool = False) -> S[object]:
    good = texts(24, valid=valid).filter(bool)
    if valid:
        return good
    sized = st.builds(repeat, CHARS, st.sampled_from([511, 512, 513, 5000]))
    return st.one_of(good, sized, st.sampled_from(["", 1, b"id", None, "a\x00b"]))


@dataclass(frozen=True, eq=False)
class MessageSpec:
    """One message to build: which public factory, and the arguments handed to it."""

    factory: str  # "Message", "openai" (create_openai_message), "anthropic"
    fields: dict[str, Any]

    def build(self) -> Message:
        fields = dict(self.fields)
        if self.factory == "Message":
            return Message(**fields)
        role = fields.pop("role")
        content = fields.pop("content", None)
        if self.factory == "openai":
            fields.pop("token_count", None)
            return create_openai_message(role, content, **fields)
        kept = {k: fields[k] for k in ("metadata", "message_id", "timestamp") if k in fields}
        return create_anthropic_message(role, content, **kept)

    def id_key(self) -> object:
        """What makes two specs of one batch name the same message."""
        return self.fields.get("message_id", id(self))


def _message_fields(*, valid: bool) -> S[dict[str, Any]]:
    optional = {
        "content": contents(valid=valid),
        "timestamp": timestamps(valid=valid),
        "message_id": message_ids(valid=valid),
        "metadata": metadata(valid=valid),
        "token_count": token_counts(valid=valid),
        "name": _optional_texts(valid=valid),
        "function_call": function_calls(valid=valid),
        "tool_calls": tool_calls(valid=valid),
        "tool_call_id": _optional_texts(valid=valid),
    }
    return st.fixed_dictionaries({"role": roles(valid=valid)}, optional=optional)


def _shaped(role: str, required: dict[str, S[object]], **optional: S[object]) -> S[dict[str, Any]]:
    """Factory arguments for ``role``: ``required`` ones, then the common optional ones."""
    common = {
        "metadata": metadata(valid=True),
        "message_id": message_ids(valid=True),
        "timestamp": timestamps(valid=True),
    }
    return st.fixed_dictionaries({"role": st.just(role), **required}, optional=common | optional)


def _openai_fields() -> S[dict[str, Any]]:
    """What ``create_openai_message`` accepts: each role with the fields OpenAI allows it."""
    text = texts(200, valid=True)
    name = texts(16, valid=True).filter(bool)
    parts = st.lists(openai_parts(valid=True), min_size=1, max_size=3)
    calls = st.lists(
        st.fixed_dictionaries(
            {"id": name, "type": st.just("function"), "function": functions(valid=True)}
        ),
        min_size=1,
        max_size=3,
    )
    return st.one_of(
        _shaped("system", {"content": text}),
        _shaped("user", {"content": text | parts}, name=name),
        _shaped("assistant", {"content": text}, name=name),
        _shaped("assistant", {"content": st.none(), "tool_calls": calls}),
        _shaped("assistant", {"content": st.none(), "function_call": functions(valid=True)}),
        _shaped("tool", {"content": text, "tool_call_id": name}),
        _shaped("function", {"content": text, "name": name}),
    )


def _anthropic_fields() -> S[dict[str, Any]]:
    """What ``create_anthropic_message`` accepts: user turns (tool results too), assistant
    turns (tool uses too)."""
    text = texts(200, valid=True).filter(str.strip)

    def turns(*kinds: str) -> S[object]:
        blocks = anthropic_blocks(valid=True, kinds=kinds)
        return text | st.lists(blocks, min_size=1, max_size=3)

    return st.one_of(
        _shaped("user", {"content": turns("text", "image", "tool_result")}),
        _shaped("assistant", {"content": turns("text", "tool_use")}),
    )


def message_specs() -> S[MessageSpec]:
    """Well-formed messages from each factory, and messages with bad fields."""
    factories = st.sampled_from(["Message", "Message", "openai", "anthropic"])
    return st.one_of(
        st.builds(MessageSpec, st.just("Message"), _message_fields(valid=True)),
        st.builds(MessageSpec, st.just("openai"), _openai_fields()),
        st.builds(MessageSpec, st.just("anthropic"), _anthropic_fields()),
        st.builds(MessageSpec, factories, _message_fields(valid=False)),
    )


def message_batches() -> S[list[MessageSpec]]:
    """One message (``add_message``) or a few with distinct ids (``add_messages``)."""
    return st.lists(message_specs(), min_size=1, max_size=3, unique_by=MessageSpec.id_key)


# -- sessions, metadata updates, reads ----------------------------------------------------


def victim(n: int) -> str:
    """The user whose default session a ``squat`` id of example ``n`` names."""
    return f"victim~{n}"


@dataclass(frozen=True)
class Ident:
    """A user or session id as a function of the example number ``n``.

    ``text``: ``value`` then ``~n``; ``sized``: exactly ``size`` characters (``value``
    repeated, then ``~n~``); ``exact``: ``value`` itself (empty, or not a string);
    ``own-default``: the user's own default session id; ``squat``: another user's default
    session id, which must be refused.
    """

    kind: str
    value: object = ""
    size: int = 0

    def render(self, n: int, user: object = None) -> object:
        if self.kind == "text":
            return f"{self.value}~{n}"
        if self.kind == "sized":
            tail = f"~{n}~"
            return str(self.value) * (self.size - len(tail)) + tail
        if self.kind == "own-default":
            return f"default:{user}"
        if self.kind == "squat":
            return f"default:{victim(n)}"
        return self.value


def idents() -> S[Ident]:
    """User or session ids: ordinary, with lone surrogates or NULs, ``default:``-prefixed,
    at and past the length limit, empty, or not strings."""
    junk: list[object] = ["", 1, None, b"id", ["a"], "default:"]
    return st.one_of(
        st.builds(Ident, st.just("text"), clean_texts(16)),
        st.builds(Ident, st.just("text"), texts(16)),
        st.builds(Ident, st.just("text"), st.builds("default:{}".format, clean_texts(8))),
        st.builds(Ident, st.just("sized"), CHARS, st.sampled_from([64, 511, 512, 513, 4096])),
        st.builds(Ident, st.just("exact"), st.sampled_from(junk)),
    )


@dataclass(frozen=True)
class SessionSpec:
    """``create_session`` (op ``create``) or ``get_or_create_session`` with these ids and
    keyword options (limits, ``metadata``, ``durability``)."""

    op: str
    user: Ident
    session: Ident | None
    options: dict[str, Any]


def durabilities() -> S[object]:
    choices: list[object] = [None, "committed", "buffered", *Durability, "eventual", "SYNC", 1]
    return st.sampled_from(choices)


def session_specs() -> S[SessionSpec]:
    session_ids = st.one_of(
        st.none(), idents(), st.sampled_from([Ident("own-default"), Ident("squat")])
    )
    optional: dict[str, S[object]] = {key: limits() for key in CONFIG_KEYS}
    optional |= {"metadata": metadata(optional=True), "durability": durabilities()}
    options = st.fixed_dictionaries({}, optional=optional)
    ops = st.sampled_from(["create", "get_or_create"])
    return st.builds(SessionSpec, ops, idents(), session_ids, options)


@dataclass(frozen=True)
class UpdateSpec:
    """A session created with ``initial`` metadata, then ``update_metadata(update)``."""

    initial: dict[str, Any]
    update: object


def _merged(config: dict[str, Any], custom: dict[Any, Any]) -> dict[Any, Any]:
    return {**custom, **config}


def update_specs() -> S[UpdateSpec]:
    """Settings and application keys together, tainted dicts, and arguments that are no dict."""
    config = st.fixed_dictionaries({}, optional={key: limits() for key in CONFIG_KEYS})
    junk: list[object] = ["x", [1], None, 1, [("a", 1)], ("a",), b"x"]
    updates = st.one_of(
        st.builds(_merged, config, plain_dicts()),
        st.builds(_merged, config, plain_dicts()),
        st.builds(_merged, config, tainted_dicts()),
        st.builds(put, plain_dicts(), junk_keys(), st.integers()),
        st.sampled_from(junk),
    )
    return st.builds(UpdateSpec, plain_dicts(), updates)


#: The session (and its user) that read examples query; the suite fills it first.
READ_SESSION, READ_USER = "fuzz-reads", "fuzz-reads-user"


@dataclass(frozen=True)
class ReadSpec:
    """A read: ``messages`` (get_messages), ``context`` (get_conversation_context),
    ``recent`` (get_recent_messages), ``list`` (backend.list_sessions) or ``get``
    (get_session), with these keyword arguments."""

    op: str
    kwargs: dict[str, Any]


def _read_limits() -> S[object]:
    edges: list[object] = [2**63, 2**70, 1.5, "3", True, None]
    return st.one_of(st.integers(-3, 12), st.integers(0, 100_000), st.sampled_from(edges))


def _raw_ids() -> S[object]:
    known: list[object] = [READ_SESSION, READ_USER, "", 1, None, "x" * 513, "default:x"]
    return st.one_of(texts(16), st.sampled_from(known))


def _read(op: str, required: dict[str, S[object]], **optional: S[object]) -> S[ReadSpec]:
    kwargs = st.fixed_dictionaries(required, optional=optional)
    return st.builds(ReadSpec, st.just(op), kwargs)


def reads() -> S[ReadSpec]:
    statuses: list[object] = [None, *SessionStatus, "active", "archived", "bogus", 1]
    some_roles = st.one_of(
        st.none(),
        st.lists(st.sampled_from([*MessageRole, "user", "tool", "robot", 1]), max_size=3),
        st.sampled_from(["user", MessageRole.ASSISTANT, "robot"]),
    )
    flags = st.sampled_from([True, False, 1, "yes", None])
    return st.one_of(
        _read("messages", {}, limit=_read_limits(), since=timestamps(), roles=some_roles),
        _read("context", {}, max_tokens=_read_limits(), include_summaries=flags),
        _read("recent", {"token_limit": _read_limits()}),
        _read("list", {}, user_id=_raw_ids(), status=st.sampled_from(statuses), limit=limits()),
        _read("get", {"session_id": _raw_ids()}, user_id=_raw_ids()),
    )
