"""The metadata a new session starts with, and the ids reserved for default sessions."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from ._validate import check_id, check_limit, check_plain
from .exceptions import MemoryValidationError, SessionOwnershipError
from .interfaces import SessionMetadata

__all__ = ["DEFAULT_PREFIX", "new_meta"]

DEFAULT_PREFIX = "default:"
"""Ids with this prefix name a user's default session, ``default:<user_id>``; no other user
may take one."""


def new_meta(
    user_id: str,
    session_id: str | None,
    max_messages: int | None,
    max_tokens: int | None,
    auto_summarize_threshold: int | None,
    metadata: dict[str, Any] | None,
) -> SessionMetadata:
    """The metadata of a new session, every option checked before anything is sent."""
    check_id("user_id", user_id)
    if session_id is not None:
        check_id("session_id", session_id)
        if session_id.startswith(DEFAULT_PREFIX) and session_id != DEFAULT_PREFIX + user_id:
            raise SessionOwnershipError(
                f"session ids starting with {DEFAULT_PREFIX!r} are reserved: "
                f"{session_id!r} is the default session of another user"
            )
    check_limit("max_messages", max_messages)
    check_limit("max_tokens", max_tokens)
    check_limit("auto_summarize_threshold", auto_summarize_threshold)
    if metadata is not None and not isinstance(metadata, dict):
        raise MemoryValidationError("metadata must be a dict")
    custom = dict(metadata or {})
    check_plain(custom, "metadata")
    now = datetime.now()
    return SessionMetadata(
        session_id=session_id or f"session_{os.urandom(12).hex()}",
        user_id=user_id,
        created_at=now,
        updated_at=now,
        max_messages=max_messages,
        max_tokens=max_tokens,
        auto_summarize_threshold=auto_summarize_threshold,
        metadata=custom,
    )
