"""Summarizers: the offline extractive default and LLM summarizers for OpenAI and Anthropic.

Every summarizer is rolling: it folds ``previous.summary_text`` into the new summary, so one
summary always covers the session from its start, and its output fits ``max_tokens`` as
counted by ``_tokens.count_text_tokens``.

Modules: ``_extractive`` (the extractive summarizer and its choice of sentences) reads
``_candidates`` (messages cut into valued sentences), which reads ``_sentences`` (splitting,
facts, names); ``_llm`` (the OpenAI and Anthropic summarizers) sends ``_transcript``'s
rendering of the messages; both fit their output with ``_budget``.
"""

from ._extractive import ExtractiveSummarizer as ExtractiveSummarizer
from ._llm import DEFAULT_PROMPT as DEFAULT_PROMPT
from ._llm import AnthropicSummarizer as AnthropicSummarizer
from ._llm import OpenAISummarizer as OpenAISummarizer
from ._transcript import render_transcript as render_transcript

__all__ = [
    "DEFAULT_PROMPT",
    "AnthropicSummarizer",
    "ExtractiveSummarizer",
    "OpenAISummarizer",
    "render_transcript",
]
