"""A local stand-in for the OpenAI Chat Completions, OpenAI Responses and Anthropic Messages APIs.

It runs a stdlib HTTP server in a background thread on a free loopback port, so tests can
drive the official async SDK clients end to end (on asyncio and on trio) with no network.
Every request body is checked against the SDK's own request types (pydantic, unknown keys
rejected) plus the APIs' conversation rules (tool calls answered by the next turn, tool
results first in a user turn); a request that fails a check gets a 400 with an API-shaped
error body, as the live service would answer. Some checks are deliberately stricter than the
live Anthropic API, which merges consecutive same-role turns: our formats must alternate
roles, start with ``user`` and keep the system prompt out of the message list.

The Responses route answers with text, or with function calls scripted by :meth:`queue`. Its
ids are numbered from :meth:`reset` on, so two runs of the same conversation receive the same
answers and send the same requests.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic.types
import openai.types.chat
import openai.types.responses
from openai.types.responses import response_create_params
from pydantic import ConfigDict, TypeAdapter, ValidationError

__all__ = [
    "FunctionCall",
    "LLMStandIn",
    "RecordedRequest",
    "RequestRejected",
    "check_anthropic_request",
    "check_openai_request",
    "check_responses_request",
    "running_standin",
]

_STRICT = ConfigDict(extra="forbid")
_OPENAI_MESSAGES: TypeAdapter[list[Any]] = TypeAdapter(
    list[openai.types.chat.ChatCompletionMessageParam], config=_STRICT
)
_ANTHROPIC_MESSAGES: TypeAdapter[list[Any]] = TypeAdapter(
    list[anthropic.types.MessageParam], config=_STRICT
)
_ANTHROPIC_SYSTEM: TypeAdapter[Any] = TypeAdapter(
    str | list[anthropic.types.TextBlockParam], config=_STRICT
)
# TypedDicts take a config only inside a container, hence the one-element lists.
_RESPONSES_BODY: TypeAdapter[list[Any]] = TypeAdapter(
    list[response_create_params.ResponseCreateParamsNonStreaming], config=_STRICT
)
_RESPONSES_ITEM: TypeAdapter[list[Any]] = TypeAdapter(
    list[openai.types.responses.ResponseInputItemParam], config=_STRICT
)


class RequestRejected(Exception):
    """A request broke a rule of the API; the message is what the 400 body says."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request the stand-in received, and how it answered."""

    api: str  # "openai", "responses" or "anthropic"
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    error: str | None = None


@dataclass(frozen=True)
class FunctionCall:
    """A function call the Responses route answers with (see :meth:`LLMStandIn.queue`)."""

    name: str
    arguments: str = "{}"


#: One scripted Responses answer: a text, or function calls.
Scripted = str | tuple[FunctionCall, ...]


@dataclass
class _Behaviour:
    reply: str = "Summary: nothing to report."
    delay: float = 0.0
    fail_status: int | None = None
    fail_message: str = "The server had an error while processing your request."


def _materialize(value: Any) -> Any:
    """Walk a validated value, draining the lazy iterators pydantic makes for ``Iterable``.

    The SDKs type content lists as ``Iterable[...]``; pydantic validates those lazily, so an
    invalid block only fails once it is iterated.
    """
    if isinstance(value, dict):
        for item in value.values():
            _materialize(item)
    elif isinstance(value, Iterable) and not isinstance(value, str | bytes):
        for item in value:
            _materialize(item)
    return value


def _validate(adapter: TypeAdapter[Any], value: Any, what: str) -> None:
    try:
        _materialize(adapter.validate_python(value))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RequestRejected(f"{what}: {first['msg']} at {where}") from None


def check_openai_request(body: Any) -> dict[str, Any]:
    """``body``, if it is a valid chat completions request; else :class:`RequestRejected`."""
    if not isinstance(body, dict):
        raise RequestRejected("request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise RequestRejected("you must provide a model parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestRejected("'messages' must be a non-empty array")
    _validate(_OPENAI_MESSAGES, messages, "invalid 'messages'")
    for key in ("max_tokens", "max_completion_tokens"):
        if key in body and (not isinstance(body[key], int) or body[key] < 1):
            raise RequestRejected(f"'{key}' must be a positive integer")
    pending: list[str] = []
    for i, message in enumerate(messages):
        role = message["role"]
        if role == "tool":
            if message["tool_call_id"] not in pending:
                raise RequestRejected(
                    f"messages[{i}]: messages with role 'tool' must be a response to a "
                    "preceding message with 'tool_calls'"
                )
            pending.remove(message["tool_call_id"])
            continue
        if pending:
            raise RequestRejected(
                "an assistant message with 'tool_calls' must be followed by tool messages "
                f"responding to each 'tool_call_id'; missing: {', '.join(pending)}"
            )
        if role == "assistant" and message.get("tool_calls"):
            pending = [call["id"] for call in message["tool_calls"]]
    if pending:
        raise RequestRejected(
            f"tool calls without tool messages at the end of 'messages': {', '.join(pending)}"
        )
    return body


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    return [] if isinstance(content, str) else list(content)


def check_anthropic_request(body: Any) -> dict[str, Any]:
    """``body``, if it is a valid messages request; else :class:`RequestRejected`."""
    if not isinstance(body, dict):
        raise RequestRejected("request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise RequestRejected("model: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
        raise RequestRejected("max_tokens: Field required (a non-negative integer)")
    if "system" in body:
        _validate(_ANTHROPIC_SYSTEM, body["system"], "system")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestRejected("messages: at least one message is required")
    _validate(_ANTHROPIC_MESSAGES, messages, "messages")
    expected = "user"
    pending: set[str] = set()
    for i, message in enumerate(messages):
        role = message["role"]
        if role not in ("user", "assistant"):
            raise RequestRejected(
                f"messages.{i}.role: unexpected role {role!r}; put the system prompt in the "
                "top-level 'system' parameter"
            )
        if role != expected:
            raise RequestRejected(
                f"messages.{i}: roles must alternate between 'user' and 'assistant', "
                "starting with 'user'"
            )
        blocks = _blocks(message)
        if role == "user":
            kinds = [b.get("type") for b in blocks]
            if "tool_result" in kinds[kinds.count("tool_result") :]:
                raise RequestRejected(
                    f"messages.{i}: `tool_result` blocks must come first in the content, "
                    "before any other block"
                )
            answered = {b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"}
            if pending - answered:
                raise RequestRejected(
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(sorted(pending - answered))}"
                )
            if answered - pending:
                raise RequestRejected(
                    f"messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{', '.join(sorted(answered - pending))}"
                )
            pending = set()
            expected = "assistant"
        else:
            pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
            expected = "user"
    if pending:
        # Every tool_use needs its tool_result in the next user turn, and there is none.
        raise RequestRejected(
            f"`tool_use` ids were found without `tool_result` blocks immediately after: "
            f"{', '.join(sorted(pending))}"
        )
    return body


def _item_problem(item: Any) -> str | None:
    """Why ``item`` is no Responses input item, as said by the item type it claims to be: the
    union member without a ``type`` or ``role`` mismatch that has the fewest errors."""
    try:
        _materialize(_RESPONSES_ITEM.validate_python([item]))
    except ValidationError as exc:
        by_member: dict[str, list[Any]] = {}
        for error in exc.errors():
            by_member.setdefault(str(error["loc"][1:2]), []).append(error)
        claimed = [
            errors
            for errors in by_member.values()
            if not any(e["loc"][2:3] in (("type",), ("role",)) for e in errors)
        ]
        best = min(claimed or by_member.values(), key=len)[0]
        where = ".".join(str(p) for p in best["loc"][2:])
        return f"{best['msg']} at {where}" if where else str(best["msg"])
    return None


def _check_tool_exchange(items: list[dict[str, Any]]) -> None:
    """Every function call is answered later in the input; every output answers a call."""
    calls: dict[str, int] = {}
    ids: set[str] = set()
    for i, item in enumerate(items):
        item_id = item.get("id")
        if isinstance(item_id, str):
            if item_id in ids:
                raise RequestRejected(f"Duplicate item found with id {item_id}.")
            ids.add(item_id)
        kind = item.get("type")
        if kind == "function_call":
            calls[item["call_id"]] = i
        elif kind == "function_call_output" and calls.pop(item["call_id"], None) is None:
            raise RequestRejected(
                f"input[{i}]: No tool call found for function call output with call_id "
                f"{item['call_id']}."
            )
    if calls:
        raise RequestRejected(f"No tool output found for function call {next(iter(calls))}.")


def check_responses_request(body: Any) -> dict[str, Any]:
    """``body``, if it is a valid (non-streaming) responses request; else
    :class:`RequestRejected`."""
    if not isinstance(body, dict):
        raise RequestRejected("request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise RequestRejected("Missing required parameter: 'model'.")
    if body.get("stream"):
        raise RequestRejected("the stand-in answers non-streaming requests only")
    items = body.get("input")
    if isinstance(items, list):
        for i, item in enumerate(items):
            problem = _item_problem(item)
            if problem is not None:
                raise RequestRejected(f"Invalid 'input[{i}]': {problem}")
        if not body.get("previous_response_id"):
            _check_tool_exchange(items)
    elif not isinstance(items, str):
        raise RequestRejected("'input' must be a string or an array of input items")
    try:
        _materialize(_RESPONSES_BODY.validate_python([{**body, "input": ""}]))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:])
        raise RequestRejected(f"Invalid request: {first['msg']} at {where}") from None
    return body


def _words(body: Any) -> int:
    return len(json.dumps(body).split())


def _openai_reply(body: dict[str, Any], text: str) -> dict[str, Any]:
    prompt, completion = _words(body["messages"]), len(text.split())
    return {
        "id": f"chatcmpl-standin{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
        "system_fingerprint": "fp_standin",
    }


def _anthropic_reply(body: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "id": f"msg_standin{time.monotonic_ns()}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": _words(body["messages"]), "output_tokens": len(text.split())},
    }


def _responses_output(answer: Scripted, n: int) -> list[dict[str, Any]]:
    if isinstance(answer, str):
        part = {"type": "output_text", "text": answer, "annotations": [], "logprobs": []}
        return [
            {
                "type": "message",
                "id": f"msg_standin_{n}",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        ]
    return [
        {
            "type": "function_call",
            "id": f"fc_standin_{n}_{k}",
            "call_id": f"call_standin_{n}_{k}",
            "name": call.name,
            "arguments": call.arguments,
            "status": "completed",
        }
        for k, call in enumerate(answer)
    ]


def _responses_reply(body: dict[str, Any], answer: Scripted, n: int) -> dict[str, Any]:
    """Response number ``n`` since the last reset: ids depend on ``n`` only."""
    output = _responses_output(answer, n)
    prompt, completion = _words(body["input"]), _words(output)
    return {
        "id": f"resp_standin_{n}",
        "object": "response",
        "created_at": 1_700_000_000 + n,
        "status": "completed",
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata", {}),
        "error": None,
        "incomplete_details": None,
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        },
    }


def _error_body(api: str, status: int, message: str) -> dict[str, Any]:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "api_error")
    if api == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


_ROUTES = {
    "/v1/chat/completions": "openai",
    "/v1/responses": "responses",
    "/v1/messages": "anthropic",
}


class LLMStandIn:
    """The stand-in server: start it, point SDK clients at its base URLs, inspect requests."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._behaviour = _Behaviour()
        self._queued: deque[Scripted] = deque()
        self._responses_served = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="llm-standin", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    def configure(
        self,
        *,
        reply: str | None = None,
        delay: float | None = None,
        fail_status: int | None = None,
        fail_message: str | None = None,
    ) -> None:
        """Set the reply text, a delay before answering, or an HTTP status to fail with.

        Unset options keep their value, except ``fail_status``: leaving it out answers normally.
        """
        with self._lock:
            b = self._behaviour
            if reply is not None:
                b.reply = reply
            if delay is not None:
                b.delay = delay
            b.fail_status = fail_status
            if fail_message is not None:
                b.fail_message = fail_message

    def queue(self, *answers: str | FunctionCall | Sequence[FunctionCall]) -> None:
        """Script the next Responses answers, one per valid request, in order: a text, or
        one or more function calls. Once they are used up, answers are the reply text."""
        with self._lock:
            for answer in answers:
                if isinstance(answer, str):
                    self._queued.append(answer)
                elif isinstance(answer, FunctionCall):
                    self._queued.append((answer,))
                else:
                    self._queued.append(tuple(answer))

    def reset(self) -> None:
        """Forget recorded requests and scripted answers, go back to the default behaviour
        and number Responses ids from 1 again."""
        with self._lock:
            self.requests.clear()
            self._behaviour = _Behaviour()
            self._queued.clear()
            self._responses_served = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LLMStandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        with self._lock:
            behaviour = replace(self._behaviour)
        api = _ROUTES.get(path)
        status, error, reply = 200, None, None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if api is None:
            status, error = 404, f"no route for POST {path}"
        elif behaviour.fail_status is not None:
            status, error = behaviour.fail_status, behaviour.fail_message
        else:
            try:
                self._check_auth(api, headers)
                reply = self._answer(api, body, behaviour.reply)
            except _Unauthorized as exc:
                status, error = 401, str(exc)
            except RequestRejected as exc:
                status, error = 400, str(exc)
        with self._lock:
            self.requests.append(
                RecordedRequest(api or "unknown", path, headers, body, status, error)
            )
        if behaviour.delay:
            time.sleep(behaviour.delay)
        if error is not None:
            return status, _error_body(api or "openai", status, error)
        return status, reply

    def _answer(self, api: str, body: Any, text: str) -> dict[str, Any]:
        if api == "openai":
            return _openai_reply(check_openai_request(body), text)
        if api == "anthropic":
            return _anthropic_reply(check_anthropic_request(body), text)
        checked = check_responses_request(body)
        with self._lock:
            answer = self._queued.popleft() if self._queued else text
            self._responses_served += 1
            n = self._responses_served
        return _responses_reply(checked, answer, n)

    @staticmethod
    def _check_auth(api: str, headers: dict[str, str]) -> None:
        if api in ("openai", "responses"):
            if not headers.get("authorization", "").startswith("Bearer "):
                raise _Unauthorized("You didn't provide an API key.")
        else:
            if not (headers.get("x-api-key") or headers.get("authorization")):
                raise _Unauthorized("x-api-key header is required")
            if not headers.get("anthropic-version"):
                raise RequestRejected("anthropic-version: header is required")


class _Unauthorized(Exception):
    pass


def _make_handler(standin: LLMStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = standin._handle(self.path.split("?")[0], headers, raw)
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_standin{time.monotonic_ns()}")
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test); nothing to answer

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


def running_standin() -> Iterator[LLMStandIn]:
    """Start a stand-in, yield it, stop it: the body of a pytest fixture."""
    with LLMStandIn() as standin:
        yield standin
