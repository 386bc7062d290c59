"""Exceptions raised by langswarm memory.

Everything the library raises derives from :class:`MemoryError` (this module's, not the
builtin of the same name), so one ``except MemoryError`` handles every memory failure.
"""

from __future__ import annotations

__all__ = [
    "MemoryBackendError",
    "MemoryConfigurationError",
    "MemoryConnectionError",
    "MemoryCorruptionError",
    "MemoryEncryptionError",
    "MemoryError",
    "MemoryOutcomeUnknownError",
    "MemoryOverloadError",
    "MemoryValidationError",
    "MessageNotFoundError",
    "SessionExistsError",
    "SessionFailedError",
    "SessionNotFoundError",
    "SessionOwnershipError",
    "SummarizationError",
    "TransientBackendError",
]


class MemoryError(Exception):  # noqa: A001 - the guide's name; deliberately not the builtin
    """Base class of every error raised by langswarm memory."""


class MemoryConfigurationError(MemoryError, ValueError):
    """Unknown profile, unknown backend or malformed configuration."""


class MemoryValidationError(MemoryError, ValueError):
    """A message, session option or argument was rejected before anything was stored."""


class MessageNotFoundError(MemoryValidationError, LookupError):
    """No message with the given id is stored in the session."""


class MemoryConnectionError(MemoryError, ConnectionError):
    """The storage backend could not be reached."""


class MemoryBackendError(MemoryError):
    """The storage backend failed permanently; the affected writes were not acknowledged."""


class TransientBackendError(MemoryBackendError):
    """A storage failure worth retrying: lock contention, a dropped connection, an I/O hiccup.

    ``unreachable``: the store could not be reached at all (rather than being busy);
    ``maybe_applied``: the request may have reached the store before the failure.
    """

    def __init__(
        self, message: str, *, unreachable: bool = False, maybe_applied: bool = False
    ) -> None:
        super().__init__(message)
        self.unreachable = unreachable
        self.maybe_applied = maybe_applied


class MemoryOutcomeUnknownError(MemoryBackendError):
    """A write may or may not have been stored (storage failed or stalled after it was sent);
    sending it again with the same message ids stores nothing twice."""


class MemoryCorruptionError(MemoryBackendError):
    """Stored data for a session could not be decoded.

    ``session_ids`` names the affected sessions when a batch write was refused for them
    alone (the rest of the batch was stored).
    """

    def __init__(self, message: str, *, session_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.session_ids = session_ids


class MemoryOverloadError(MemoryError):
    """The runtime is at capacity and could not accept the request in time."""


class SessionNotFoundError(MemoryError, LookupError):
    """No session with the given id exists (or it was deleted or expired)."""


class SessionExistsError(MemoryError):
    """A session with the given id already exists."""


class SessionOwnershipError(MemoryError, PermissionError):
    """The session belongs to another user."""


class SessionFailedError(MemoryError):
    """The session's actor crashed more often than its restart limit allows."""


class SummarizationError(MemoryError):
    """A summary could not be produced."""


class MemoryEncryptionError(MemoryError):
    """A stored value cannot be decrypted (its key is missing or wrong, or it was altered),
    or the keyring gave an unusable key."""
