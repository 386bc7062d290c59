"""Read-only dicts and lists for the structured parts of stored messages and summaries.

A message is shared between the caller, the session's memory and the flusher. Freezing its
dicts and lists when it is built keeps all of them seeing what storage holds: changing what
was added, or what a read returned, raises instead of silently forking the history. Frozen
values are ``dict`` and ``list`` subclasses, so JSON, msgpack and the SDKs take them as they
are; ``thaw`` makes plain, mutable deep copies for callers who want to edit.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ._validate import plain_problem
from .exceptions import MemoryValidationError

__all__ = ["EMPTY", "FrozenDict", "FrozenList", "freeze", "thaw"]

_READ_ONLY = (
    "stored message data is read-only: copy it (dict(value), list(value), or the "
    "messages_to_*_format converters) and build a new Message to change it"
)


class FrozenDict(dict[str, Any]):
    """A dict that refuses changes."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(_READ_ONLY)

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))


class FrozenList(list[Any]):
    """A list that refuses changes."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(_READ_ONLY)

    __setitem__ = __delitem__ = _refuse
    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __iadd__ = __imul__ = _refuse

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenList:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))


EMPTY: FrozenDict = FrozenDict()


def freeze(value: Any, what: str) -> Any:
    """A read-only copy of plain JSON-compatible ``value`` (frozen values are returned as
    they are); ``MemoryValidationError`` naming ``what`` if it is not plain data."""
    cls = value.__class__
    if cls is FrozenDict or cls is FrozenList:
        return value
    problem = plain_problem(value)
    if problem is not None:
        raise MemoryValidationError(f"{what} must be plain JSON-compatible data: {problem}")
    return _frozen(value)


def _frozen(value: Any) -> Any:
    cls = value.__class__
    if cls is FrozenDict or cls is FrozenList:
        return value
    if isinstance(value, dict):
        return FrozenDict({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return FrozenList([_frozen(v) for v in value])
    return value


def thaw(value: Any) -> Any:
    """A plain, mutable deep copy of ``value`` (dicts and lists copied, the rest shared)."""
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [thaw(v) for v in value]
    return value
