"""The summary budget: checking it, and cutting text down to it."""

from __future__ import annotations

from .._tokens import count_text_tokens, get_encoding
from ..exceptions import MemoryValidationError

__all__ = ["check_budget", "truncate"]


def check_budget(max_tokens: int) -> None:
    """``max_tokens`` must be a positive int (a bool is not one)."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise MemoryValidationError(f"max_tokens must be a positive int, not {max_tokens!r}")


def truncate(text: str, max_tokens: int, *, ellipsis: str = "") -> str:
    """``text`` cut to ``max_tokens``, at a line, sentence or word end when one is near."""
    if count_text_tokens(text) <= max_tokens:
        return text
    encoding = get_encoding()
    tokens = encoding.encode_ordinary(text)
    keep = max_tokens - (count_text_tokens(ellipsis) if ellipsis else 0)
    while keep > 0:
        cut = encoding.decode(tokens[:keep])
        for mark in ("\n", ". ", "; ", ", ", " "):
            end = cut.rfind(mark)
            if end >= len(cut) // 2:
                cut = cut[: end + (1 if mark == ". " else 0)]
                break
        cut = cut.rstrip() + ellipsis if cut.strip() else ""
        if cut and count_text_tokens(cut) <= max_tokens:
            return cut
        keep -= 1
    return ""
