"""Checks applied to what callers hand in, before anything is sent anywhere.

Every backend stores and reads back exactly what these admit: ids and limits in range, and
structured values that are plain JSON-compatible data.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar, cast

from .exceptions import MemoryError, MemoryValidationError

__all__ = [
    "MAX_DEPTH",
    "MAX_ID_LENGTH",
    "MAX_LIMIT",
    "check_id",
    "check_limit",
    "check_mapping",
    "check_plain",
    "check_text",
    "member_of",
    "parse_choice",
    "plain_problem",
]

MAX_ID_LENGTH = 512
#: Largest limit (``max_messages`` and the like): every store keeps it exactly (Redis scripts
#: hold settings as Lua numbers, which are doubles).
MAX_LIMIT = 2**53 - 1
#: Deepest nesting of lists and dicts a structured value may have.
MAX_DEPTH = 64
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1

E = TypeVar("E", bound=Enum)


def check_id(name: str, value: object) -> str:
    """A session or user id: a non-empty string of at most ``MAX_ID_LENGTH`` characters,
    without lone surrogates (no store can encode them) or NUL (SQLite text ends there)."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise MemoryValidationError(
            f"{name} must be a non-empty string of at most {MAX_ID_LENGTH} chars"
        )
    check_text(name, value, key=True)
    return value


def check_text(what: str, text: str, *, key: bool = False) -> None:
    """``text`` must be encodable: no store can hold a lone surrogate. A ``key`` (an id) may
    not hold NUL either: SQLite text ends there."""
    if not _encodable(text):
        raise MemoryValidationError(f"{what} must not hold a lone surrogate")
    if key and "\0" in text:
        raise MemoryValidationError(f"{what} must not hold a NUL character")


def check_limit(name: str, value: object) -> int | None:
    """A positive int of at most ``MAX_LIMIT``, or ``None`` for no limit."""
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_LIMIT
    ):
        raise MemoryValidationError(
            f"{name} must be a positive int of at most {MAX_LIMIT} or None, not {value!r}"
        )
    return value


def check_plain(value: object, what: str) -> None:
    """``value`` must be JSON-compatible data: ``None``, bools, 64-bit ints, finite floats,
    strings, lists, and dicts with string keys."""
    problem = plain_problem(value)
    if problem is not None:
        raise MemoryValidationError(f"{what} must be plain JSON-compatible data: {problem}")


def plain_problem(value: object, depth: int = 0) -> str | None:
    """What makes ``value`` not plain JSON-compatible data (``None``: nothing)."""
    cls = value.__class__
    if cls is str:
        return None if _encodable(value) else "a string holds a lone surrogate"  # type: ignore[arg-type]
    if value is None or cls is bool:
        return None
    if cls is int:
        return None if _INT_MIN <= value <= _INT_MAX else f"{value} is out of 64-bit range"  # type: ignore[operator]
    if cls is float:
        return None if math.isfinite(value) else f"{value} is not a finite number"  # type: ignore[arg-type]
    if depth >= MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, list):
        for item in value:
            problem = plain_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if key.__class__ is not str:
                return f"key {key!r} is not a string"
            if not _encodable(key):
                return f"key {key!r} holds a lone surrogate"
            problem = plain_problem(item, depth + 1)
            if problem is not None:
                return f"{problem} (under {key!r})"
        return None
    return f"{type(value).__name__} is not allowed"


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@functools.cache
def _by_value(enum: type[Enum]) -> dict[object, Enum]:
    found: dict[object, Enum] = {member.value: member for member in enum}
    found.update((member, member) for member in enum)
    return found


def member_of(enum: type[E], value: object) -> E | None:
    """The member of ``enum`` with this value (or that member itself); ``None`` if none.

    One dict lookup: on Python 3.11 ``enum(value)`` and ``member.value`` cost 0.3-0.5 µs
    each, which converting every message's role would pay."""
    try:
        return cast("E | None", _by_value(enum).get(value))
    except TypeError:  # unhashable: no member has it as its value
        return None


def parse_choice(
    enum: type[E], value: object, what: str, error: type[MemoryError] = MemoryValidationError
) -> E:
    """The member of ``enum`` with this value; ``error`` says whether bad input is a call's
    fault (the default) or a configuration's."""
    member = member_of(enum, value)
    if member is not None:
        return member
    allowed = ", ".join(repr(member.value) for member in enum)
    raise error(f"{what} must be one of {allowed}, not {value!r}")


def check_mapping(value: object, what: str) -> Mapping[str, Any]:
    """``value`` must be a dict (of plain data)."""
    if not isinstance(value, dict):
        raise MemoryValidationError(f"{what} must be a dict, not {type(value).__name__}")
    check_plain(value, what)
    return value
