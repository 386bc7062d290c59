"""LLM summarizers: OpenAI and Anthropic chat models through their official async clients.

Both send the same request (the previous summary and a transcript of the new messages, see
:func:`request_text`) with the same instructions, and trim the reply to the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import SummarizationError
from ..interfaces import ConversationSummary, Message
from ._budget import check_budget, truncate
from ._transcript import render_transcript

if TYPE_CHECKING:
    import anthropic
    import openai

__all__ = ["DEFAULT_PROMPT", "AnthropicSummarizer", "OpenAISummarizer", "request_text"]

DEFAULT_PROMPT = (
    "You keep a rolling summary of a conversation between a user and an assistant. Merge the "
    "previous summary (if any) and the new messages into one updated summary. Keep what a "
    "reader needs to continue the conversation: what the user asked for, decisions and "
    "commitments, names, and numbers, dates, amounts and identifiers copied exactly, and tool "
    "calls with their results. Drop greetings and repetition. Reply with the summary only, in "
    "plain text, at most {max_tokens} tokens."
)
"""The LLM summarizers' instructions; ``{max_tokens}`` is replaced by the token budget."""


def request_text(messages: Sequence[Message], previous: ConversationSummary | None) -> str:
    """What the model is asked to summarize: the previous summary, then the new messages."""
    earlier = previous.summary_text.strip() if previous and previous.summary_text else "(none)"
    return (
        f"<previous_summary>\n{earlier}\n</previous_summary>\n\n"
        f"<new_messages>\n{render_transcript(messages)}\n</new_messages>"
    )


def _instructions(prompt: str, max_tokens: int) -> str:
    # str.replace, not str.format: a custom prompt may hold other braces (JSON examples).
    return prompt.replace("{max_tokens}", str(max_tokens))


def _no_call_needed(
    messages: Sequence[Message], previous: ConversationSummary | None, max_tokens: int
) -> str | None:
    """The answer when there is nothing new to summarize, else ``None``."""
    if messages:
        return None
    return truncate(previous.summary_text if previous else "", max_tokens)


class _LLMSummarizer:
    """What the provider summarizers share: settings, budget checks, the final trim.

    ``max_output_tokens`` caps the model's reply (default: the summary budget); the reply is
    trimmed to the budget as counted here, since the provider's tokenizer may differ.
    """

    def __init__(self, client: Any, model: str, prompt: str, max_output_tokens: int | None) -> None:
        self.client = client
        self.model = model
        self.prompt = prompt
        self.max_output_tokens = max_output_tokens

    async def summarize(
        self,
        messages: Sequence[Message],
        *,
        previous: ConversationSummary | None,
        max_tokens: int,
    ) -> str:
        """Return a summary of ``previous`` plus ``messages`` in at most ``max_tokens`` tokens."""
        check_budget(max_tokens)
        if (done := _no_call_needed(messages, previous, max_tokens)) is not None:
            return done
        text = await self._complete(
            _instructions(self.prompt, max_tokens),
            request_text(messages, previous),
            self.max_output_tokens or max_tokens,
        )
        return truncate(text.strip(), max_tokens)

    async def _complete(self, instructions: str, request: str, max_output: int) -> str:
        """One model call; the reply's text, or ``SummarizationError``."""
        raise NotImplementedError


class OpenAISummarizer(_LLMSummarizer):
    """Summarizes with an OpenAI chat model through the official async client."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str = "gpt-4o-mini",
        prompt: str = DEFAULT_PROMPT,
        max_output_tokens: int | None = None,
    ) -> None:
        super().__init__(client, model, prompt, max_output_tokens)

    async def _complete(self, instructions: str, request: str, max_output: int) -> str:
        import openai

        try:
            response = await self.client.chat.completions.create(
                model=self.model,
                messages=[
                    {"role": "system", "content": instructions},
                    {"role": "user", "content": request},
                ],
                max_completion_tokens=max_output,
            )
        except openai.OpenAIError as exc:
            raise SummarizationError(f"OpenAI summarization failed: {exc}") from exc
        choice = response.choices[0] if response.choices else None
        text = choice.message.content if choice else None
        if not text or not text.strip():
            refusal = choice.message.refusal if choice else None
            raise SummarizationError(
                f"OpenAI returned no summary text (model {self.model!r}"
                + (f", refusal: {refusal!r})" if refusal else ")")
            )
        return str(text)


class AnthropicSummarizer(_LLMSummarizer):
    """Summarizes with a Claude model through the official async Anthropic client."""

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        model: str = "claude-haiku-4-5",
        prompt: str = DEFAULT_PROMPT,
        max_output_tokens: int | None = None,
    ) -> None:
        super().__init__(client, model, prompt, max_output_tokens)

    async def _complete(self, instructions: str, request: str, max_output: int) -> str:
        import anthropic

        try:
            response = await self.client.messages.create(
                model=self.model,
                system=instructions,
                messages=[{"role": "user", "content": request}],
                max_tokens=max_output,
            )
        except anthropic.AnthropicError as exc:
            raise SummarizationError(f"Anthropic summarization failed: {exc}") from exc
        text = "".join(block.text for block in response.content if block.type == "text")
        if not text.strip():
            raise SummarizationError(
                f"Anthropic returned no summary text (model {self.model!r}, "
                f"stop reason {response.stop_reason!r})"
            )
        return text
