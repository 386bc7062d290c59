"""Plain data for the fuzz strategies: text, JSON-compatible values, junk that is not,
metadata dicts, limits and timestamps (see ``strategies`` for how they are used)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from langswarm.core.memory import MessageRole

__all__ = [
    "CHARS",
    "CONFIG_KEYS",
    "INT64_MAX",
    "INT64_MIN",
    "S",
    "clean_texts",
    "junk_keys",
    "junk_scalars",
    "limits",
    "metadata",
    "plain_dicts",
    "plain_values",
    "put",
    "repeat",
    "splice",
    "tainted_dicts",
    "texts",
    "timestamps",
]
S = st.SearchStrategy
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: ``update_metadata`` keys that are session settings rather than the application's own.
CONFIG_KEYS = ("max_messages", "max_tokens", "auto_summarize_threshold")

CHARS = st.characters(codec="utf-8")  # every code point except lone surrogates
_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


# -- text and plain data ------------------------------------------------------------------


def splice(text: str, char: str) -> str:
    middle = len(text) // 2
    return text[:middle] + char + text[middle:]


def repeat(char: str, size: int) -> str:
    return char * size


def put(base: dict[Any, Any], key: object, value: object) -> dict[Any, Any]:
    out = dict(base)
    out[key] = value
    return out


def clean_texts(max_size: int = 20) -> S[str]:
    """Text with no lone surrogate (NUL, controls and astral characters included)."""
    return st.text(CHARS, max_size=max_size)


def texts(max_size: int = 20, *, valid: bool = False) -> S[str]:
    """Mostly clean text; unless ``valid``, now and then with a lone surrogate spliced in."""
    clean = clean_texts(max_size)
    if valid:
        return clean
    return st.one_of(clean, clean, st.builds(splice, clean, _SURROGATES))


def plain_values() -> S[object]:
    """JSON-compatible data: None, bools, 64-bit ints, finite floats, text, lists, dicts."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(INT64_MIN, INT64_MAX),
        st.sampled_from([INT64_MIN, INT64_MAX, 0.0, -0.0, 5e-324, 1.7976931348623157e308]),
        st.floats(allow_nan=False, allow_infinity=False),
        clean_texts(),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(clean_texts(8), inner, max_size=3)
        ),
        max_leaves=8,
    )


def plain_dicts(max_size: int = 3) -> S[dict[str, Any]]:
    return st.dictionaries(clean_texts(8), plain_values(), max_size=max_size)


def junk_scalars() -> S[object]:
    """Values that are not plain data, or would not read back as what was written."""
    return st.one_of(
        st.sampled_from([2**63, 2**64, 2**70, -(2**63) - 1, -(2**70)]),
        st.integers(min_value=2**63),
        st.sampled_from([math.inf, -math.inf, math.nan]),
        st.binary(max_size=6),
        st.sets(st.integers(0, 9), max_size=3),
        st.frozensets(clean_texts(3), max_size=2),
        st.tuples(st.integers(0, 9), clean_texts(3)),
        st.sampled_from([Decimal("1.5"), 1j, date(2024, 1, 1), MessageRole.USER, bytearray(b"x")]),
        st.datetimes(),
        st.builds(splice, clean_texts(), _SURROGATES),
    )


def junk_keys() -> S[object]:
    """Dict keys that are not (encodable) strings."""
    return st.one_of(
        st.tuples(st.integers(0, 3), st.integers(0, 3)),
        st.none(),
        st.integers(),
        st.booleans(),
        st.floats(allow_nan=False),
        st.binary(max_size=4),
        st.frozensets(st.integers(0, 3), max_size=2),
        st.builds(splice, clean_texts(6), _SURROGATES),
    )


def _nested(depth: int) -> object:
    value: object = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def tainted_dicts() -> S[dict[Any, Any]]:
    """A dict with one bad key or value: at the top, in a nested dict, or in a list."""
    bad_key = st.builds(put, plain_dicts(), junk_keys(), plain_values())
    bad_value = st.builds(put, plain_dicts(), clean_texts(8), junk_scalars())
    one = st.one_of(bad_key, bad_value)
    nested = st.builds(put, plain_dicts(), clean_texts(8), one)
    listed = st.builds(put, plain_dicts(), clean_texts(8), st.lists(one, min_size=1, max_size=2))
    deep = st.builds(put, plain_dicts(), clean_texts(8), st.integers(60, 70).map(_nested))
    return st.one_of(one, nested, listed, deep)


def metadata(*, valid: bool = False, optional: bool = False) -> S[object]:
    """Metadata dicts; unless ``valid``, also tainted ones and non-dicts."""
    options: list[S[object]] = [plain_dicts(), plain_dicts()]
    if optional:
        options.append(st.none())
    if not valid:
        junk: list[object] = ["x", [1], 1, ("a", 1), [("a", 1)], b"x"]
        options += [tainted_dicts(), st.sampled_from(junk)]
        if not optional:
            options.append(st.none())
    return st.one_of(options)


def limits(*, valid: bool = False) -> S[object]:
    """Session limits (``max_messages`` and the like): a positive int or None."""
    good = st.one_of(st.none(), st.integers(1, 10_000), st.sampled_from([1, 2**31, INT64_MAX]))
    if valid:
        return good
    edges: list[object] = [0, -1, 2**63, 2**64, 2**70, True, False, 1.5, "5", math.inf]
    return st.one_of(good, st.sampled_from(edges), st.integers(max_value=0))


# -- timestamps ---------------------------------------------------------------------------

_OFFSETS = st.integers(-1439, 1439).map(lambda minutes: timezone(timedelta(minutes=minutes)))
_EDGE_TIMES = [
    datetime.min,
    datetime.max,
    datetime.min.replace(tzinfo=UTC),
    datetime.max.replace(tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
    datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=14))),
    datetime(1970, 1, 1),
    datetime(1969, 12, 31, 23, 59, 59, 999999),
    datetime(2038, 1, 19, 3, 14, 8),
    datetime(2024, 2, 29, 12, 0, 0, 123457),
]


def timestamps(*, valid: bool = False) -> S[object]:
    """Naive and aware datetimes over the whole range (year 1 to 9999); unless ``valid``,
    also values that are not datetimes."""
    everyday = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1))
    options: list[S[object]] = [
        everyday,
        everyday,
        st.datetimes(timezones=st.one_of(st.just(UTC), _OFFSETS)),
        st.datetimes(),
        st.sampled_from(_EDGE_TIMES),
    ]
    if valid:
        options = options[:3]
    else:
        options.append(st.sampled_from(["2024-01-01T00:00:00", 0, 1.5, date(2024, 1, 1), None]))
    return st.one_of(options)
