"""The public surface is exactly what is meant to be public."""

from __future__ import annotations

import langswarm.core.memory as memory
from langswarm.core.memory import exceptions, interfaces

EXPECTED = {
    "AnthropicRequest",
    "AnthropicSummarizer",
    "BackendView",
    "ConversationSummary",
    "Durability",
    "ExtractiveSummarizer",
    "MemoryConnectionError",
    "MemoryError",
    "MemoryManager",
    "MemorySession",
    "MemorySessionContext",
    "Message",
    "MessageRole",
    "OpenAISummarizer",
    "SessionMetadata",
    "SessionStatus",
    "Summarizer",
    "SummaryType",
    "TenantView",
    "create_anthropic_message",
    "create_openai_message",
    "get_global_memory_manager",
    "initialize_memory",
    "messages_from_anthropic_format",
    "messages_from_openai_format",
    "messages_from_responses_format",
    "messages_to_anthropic_format",
    "messages_to_anthropic_request",
    "messages_to_openai_format",
    "messages_to_responses_format",
}


def test_package_exports_exactly_the_public_names() -> None:
    assert set(memory.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(memory, name) is not None


def test_public_modules_export_what_they_define() -> None:
    for module in (exceptions, interfaces):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type):
                assert value.__module__ == module.__name__, name


def test_every_error_derives_from_our_memory_error() -> None:
    for name in exceptions.__all__:
        error = getattr(exceptions, name)
        assert issubclass(error, exceptions.MemoryError)
    assert exceptions.MemoryError is not __builtins__["MemoryError"]  # type: ignore[index]
    assert memory.MemoryError is exceptions.MemoryError
