"""Content blocks and tool calls for the fuzz strategies: OpenAI parts, Anthropic blocks
(tool results nesting blocks of their own), ``tool_calls`` and ``function_call``, and list
items that are none of these."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import strategies as st

from tests.fuzz._data import (
    S,
    clean_texts,
    junk_keys,
    junk_scalars,
    plain_dicts,
    put,
    tainted_dicts,
    texts,
)

__all__ = [
    "ANTHROPIC_KINDS",
    "anthropic_blocks",
    "arguments",
    "contents",
    "function_calls",
    "functions",
    "junk_blocks",
    "openai_parts",
    "tool_calls",
]


# -- content blocks, tool calls -----------------------------------------------------------


def _b64() -> S[str]:
    return st.binary(max_size=12).map(lambda raw: base64.b64encode(raw).decode())


def _urls() -> S[str]:
    return st.one_of(
        st.builds("https://example.com/{}.png".format, clean_texts(8)),
        st.builds("data:image/png;base64,{}".format, _b64()),
    )


def _block(kind: str, **fields: S[Any]) -> S[dict[str, Any]]:
    return st.fixed_dictionaries({"type": st.just(kind), **fields})


def openai_parts(*, valid: bool = False) -> S[dict[str, Any]]:
    """OpenAI chat content parts: text, image_url, input_audio, refusal, file."""
    text = texts(valid=valid)
    image = st.fixed_dictionaries(
        {"url": _urls()}, optional={"detail": st.sampled_from(["auto", "low", "high"])}
    )
    audio = st.fixed_dictionaries({"data": _b64(), "format": st.sampled_from(["wav", "mp3"])})
    file = st.fixed_dictionaries(
        {}, optional={"file_id": texts(12, valid=valid), "filename": text, "file_data": _b64()}
    )
    return st.one_of(
        _block("text", text=text),
        _block("image_url", image_url=image),
        _block("input_audio", input_audio=audio),
        _block("refusal", refusal=text),
        _block("file", file=file),
    )


ANTHROPIC_KINDS = ("text", "image", "tool_use", "tool_result")


def anthropic_blocks(
    *, valid: bool = False, kinds: tuple[str, ...] = ANTHROPIC_KINDS
) -> S[dict[str, Any]]:
    """Anthropic content blocks of ``kinds``: text, image, tool_use, and tool_result holding
    text or a list of text and image blocks."""
    text = _block("text", text=texts(valid=valid))
    media = st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp"])
    source = st.one_of(_block("base64", media_type=media, data=_b64()), _block("url", url=_urls()))
    image = _block("image", source=source)
    ident = texts(12, valid=valid).filter(bool)
    tool_use = _block("tool_use", id=ident, name=ident, input=plain_dicts())
    result = st.fixed_dictionaries(
        {
            "type": st.just("tool_result"),
            "tool_use_id": ident,
            "content": st.one_of(texts(valid=valid), st.lists(text | image, max_size=3)),
        },
        optional={"is_error": st.booleans()},
    )
    made = {"text": text, "image": image, "tool_use": tool_use, "tool_result": result}
    return st.one_of([made[kind] for kind in kinds])


def junk_blocks() -> S[object]:
    """List items that are no documented content block."""
    text = _block("text", text=clean_texts())
    return st.one_of(
        st.integers(),
        clean_texts(),
        st.none(),
        st.fixed_dictionaries({"text": clean_texts()}),
        st.fixed_dictionaries({"type": st.integers(), "text": clean_texts()}),
        st.builds(put, text, junk_keys(), st.integers()),
        st.builds(put, text, st.just("text"), junk_scalars()),
        st.tuples(st.just("type"), st.just("text")),
        tainted_dicts(),
    )


def contents(*, valid: bool = False) -> S[object]:
    """Message content: None, text, or a list of content blocks of either provider."""
    blocks = openai_parts(valid=valid) | anthropic_blocks(valid=valid)
    options: list[S[object]] = [
        st.none(),
        texts(200, valid=valid),
        st.lists(blocks, min_size=1, max_size=4),
    ]
    if not valid:
        junk: list[object] = [b"bytes", 1, ("a",), {"type": "text", "text": "x"}, []]
        options += [
            st.lists(blocks | junk_blocks(), min_size=1, max_size=4),
            st.lists(st.integers(), min_size=1, max_size=4),
            st.sampled_from(junk),
        ]
    return st.one_of(options)


def arguments(*, valid: bool = False) -> S[str]:
    """Tool-call ``arguments``: JSON-object text; unless ``valid``, also any text."""
    good = st.builds(json.dumps, plain_dicts())
    return good if valid else good | texts()


def functions(*, valid: bool = False) -> S[dict[str, Any]]:
    """A function call: ``{"name": ..., "arguments": ...}``."""
    name = texts(12, valid=valid).filter(bool)
    return st.fixed_dictionaries({"name": name, "arguments": arguments(valid=valid)})


def tool_calls(*, valid: bool = False) -> S[object]:
    """OpenAI ``tool_calls`` lists."""
    call = st.fixed_dictionaries(
        {
            "id": texts(12, valid=valid),
            "type": st.just("function"),
            "function": functions(valid=valid),
        }
    )
    calls = st.lists(call, min_size=1, max_size=3)
    if valid:
        return st.none() | calls
    junk: list[object] = [[1], ["x"], [None], [{"id": 1}], [{"function": "x"}], {"id": "a"}, "x"]
    return st.one_of(
        st.none(),
        calls,
        st.sampled_from(junk),
        st.lists(call | junk_blocks(), min_size=1, max_size=3),
    )


def function_calls(*, valid: bool = False) -> S[object]:
    """OpenAI's legacy ``function_call`` dict."""
    good = st.none() | functions(valid=valid)
    if valid:
        return good
    junk: list[object] = ["x", 1, [], {"name": 1}, {"arguments": {}}]
    return st.one_of(good, st.sampled_from(junk), tainted_dicts())
