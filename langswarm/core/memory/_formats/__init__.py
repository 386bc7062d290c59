"""Provider message formats: OpenAI chat completions, Anthropic messages, Responses-API items.

A :class:`Message` is provider-neutral. It carries OpenAI's fields (``name``, ``tool_calls``,
``tool_call_id``, legacy ``function_call``, the ``tool`` and ``function`` roles) and content
blocks of either provider, kept as given: OpenAI ``text``/``image_url``/``refusal`` parts and
Anthropic ``text``/``image``/``tool_use``/``tool_result`` blocks. One session can therefore hold
messages from both providers; the converters translate on the way out. Responses-API items
are kept verbatim beside the fields they fill (``_responses.py`` says how).

``create_openai_message`` and ``create_anthropic_message`` check a message against its
provider's rules and raise :class:`MemoryValidationError` before anything is stored.

SDK objects are accepted wherever a dict is: a message, a content block, a tool call or an
item may be the ``openai`` or ``anthropic`` package's pydantic object, read as the JSON of
the fields it was given (``model_dump(mode="json", exclude_unset=True)``, what the SDKs send
when handed their own objects). The SDKs are never imported at run time. Keys that describe
a response rather than the conversation are ignored, because a later request does not send
them back: a ``ChatCompletionMessage``'s ``annotations`` (its citations); everything of an
Anthropic response (``type == "message"``) but ``role`` and ``content`` (``id``, ``model``,
``stop_reason``, ``stop_sequence``, ``usage``, ``container``...), as ``Message.to_param()``
keeps; the ``created_by`` of a Responses output object. A chat response's ``refusal`` text is
kept as a ``refusal`` part. Any other key with a value is rejected rather than dropped.

``messages_to_openai_format``: ``tool_use`` blocks become ``tool_calls`` (input as JSON
arguments); each ``tool_result`` block becomes a ``tool`` message, and images inside tool
results, which tool messages cannot hold, go to a ``user`` message right after. Anthropic's
``is_error`` has no OpenAI field and is dropped, as are tool messages' ``name``.

``messages_to_anthropic_request``: system messages leave the list and are joined into the
separate system text. ``tool_calls`` and ``function_call`` become ``tool_use`` blocks;
``tool``/``function`` messages become ``tool_result`` blocks in a user turn. A legacy
``function_call`` has no id, so its ``tool_use`` id is ``call_<message_id>`` and the next
``function`` message with the same name answers it. Whitespace-only text is dropped (the API
rejects it) and so are turns left empty; consecutive same-role turns are merged, with
``tool_result`` blocks first in their user turn; a final assistant turn loses trailing
whitespace (the API rejects it). A list that would start with an assistant turn gets a user
turn reading :data:`ANTHROPIC_CONTINUATION_TEXT` first. Tool ids with characters Anthropic
does not allow are rewritten, identically wherever they appear. ``name`` has no Anthropic
counterpart and is dropped. Pairing calls with results is the caller's part: converters do not
invent or delete tool calls.

The converters' return types are the SDKs' request types (``ChatCompletionMessageParam``,
``MessageParam``, ``ResponseInputItemParam``), imported for type checkers only.
"""

from ._anthropic import ANTHROPIC_CONTINUATION_TEXT as ANTHROPIC_CONTINUATION_TEXT
from ._anthropic import AnthropicRequest as AnthropicRequest
from ._anthropic import messages_to_anthropic_format as messages_to_anthropic_format
from ._anthropic import messages_to_anthropic_request as messages_to_anthropic_request
from ._common import SupportsModelDump as SupportsModelDump
from ._create import create_anthropic_message as create_anthropic_message
from ._create import create_openai_message as create_openai_message
from ._create import messages_from_anthropic_format as messages_from_anthropic_format
from ._create import messages_from_openai_format as messages_from_openai_format
from ._openai import messages_to_openai_format as messages_to_openai_format
from ._responses import messages_from_responses_format as messages_from_responses_format
from ._responses import messages_to_responses_format as messages_to_responses_format

__all__ = [
    "ANTHROPIC_CONTINUATION_TEXT",
    "AnthropicRequest",
    "SupportsModelDump",
    "create_anthropic_message",
    "create_openai_message",
    "messages_from_anthropic_format",
    "messages_from_openai_format",
    "messages_from_responses_format",
    "messages_to_anthropic_format",
    "messages_to_anthropic_request",
    "messages_to_openai_format",
    "messages_to_responses_format",
]
