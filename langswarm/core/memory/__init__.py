"""Conversation memory for LLM agents: an actor-based session runtime for asyncio and trio.

Each live session is an actor that owns its messages and serialises every call made to it;
a write-behind flusher persists batches to the backend (in memory, SQLite or Redis). Start
with :func:`initialize_memory` and :class:`MemorySessionContext`, or run a
:class:`MemoryManager` inside ``async with`` for explicit control of its lifetime.
"""

import logging as _logging

from ._backend_view import BackendView as BackendView
from ._context import MemorySessionContext as MemorySessionContext
from ._formats import AnthropicRequest as AnthropicRequest
from ._formats import create_anthropic_message as create_anthropic_message
from ._formats import create_openai_message as create_openai_message
from ._formats import messages_from_anthropic_format as messages_from_anthropic_format
from ._formats import messages_from_openai_format as messages_from_openai_format
from ._formats import messages_from_responses_format as messages_from_responses_format
from ._formats import messages_to_anthropic_format as messages_to_anthropic_format
from ._formats import messages_to_anthropic_request as messages_to_anthropic_request
from ._formats import messages_to_openai_format as messages_to_openai_format
from ._formats import messages_to_responses_format as messages_to_responses_format
from ._manager import MemoryManager as MemoryManager
from ._manager import get_global_memory_manager as get_global_memory_manager
from ._manager import initialize_memory as initialize_memory
from ._session import MemorySession as MemorySession
from ._summarizers import AnthropicSummarizer as AnthropicSummarizer
from ._summarizers import ExtractiveSummarizer as ExtractiveSummarizer
from ._summarizers import OpenAISummarizer as OpenAISummarizer
from ._tenant import TenantView as TenantView
from .exceptions import MemoryConnectionError as MemoryConnectionError
from .exceptions import MemoryError as MemoryError
from .interfaces import ConversationSummary as ConversationSummary
from .interfaces import Durability as Durability
from .interfaces import Message as Message
from .interfaces import MessageRole as MessageRole
from .interfaces import SessionMetadata as SessionMetadata
from .interfaces import SessionStatus as SessionStatus
from .interfaces import Summarizer as Summarizer
from .interfaces import SummaryType as SummaryType

# Every logger of the package is below this one; the application decides where logs go.
_logging.getLogger("langswarm.memory").addHandler(_logging.NullHandler())

__all__ = [
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
]
