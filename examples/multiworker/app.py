"""A chat server with several worker processes sharing one conversation store.

    LANGSWARM_MEMORY_URL=sqlite:///chat.db uvicorn examples.multiworker.app:app --workers 2
    LANGSWARM_MEMORY_URL=redis://localhost:6379/0 uvicorn examples.multiworker.app:app --workers 2

``POST /chat/{user}/{session}`` with ``{"message": "..."}`` stores the user's turn, reads the
context an LLM call would get, and stores a canned reply. ``GET /history/{user}/{session}``
returns the stored conversation. Every response names the worker that served it in the
``X-Worker-PID`` header. Each worker runs its own memory manager for the lifetime of the app.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from langswarm.core.memory import MemoryManager, create_openai_message
from langswarm.core.memory.exceptions import (
    MemoryValidationError,
    SessionNotFoundError,
    SessionOwnershipError,
)

URL_ENV = "LANGSWARM_MEMORY_URL"
DEFAULT_URL = "sqlite:///multiworker-chat.db"
CONTEXT_TOKENS = 4_000


def memory_config(url: str) -> dict[str, Any]:
    """``initialize_memory``'s ``memory=`` dict for a ``sqlite:///path`` or ``redis://`` URL.

    ``sqlite:///chat.db`` is relative to the working directory, ``sqlite:////srv/chat.db``
    absolute. An in-memory SQLite database would give each worker its own store, so it is
    refused.
    """
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        path = rest.removeprefix("/")
        if not rest.startswith("/") or not path or path == ":memory:":
            raise ValueError(f"{URL_ENV} needs a file: sqlite:///relative or sqlite:////absolute")
        return {"backend": "sqlite", "config": {"db_path": path}}
    if scheme in ("redis", "rediss"):
        return {"backend": "redis", "config": {"url": url}}
    raise ValueError(f"{URL_ENV} must start with sqlite:/// or redis://, not {scheme!r}")


class State(TypedDict):
    memory: MemoryManager


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[State]:
    config = memory_config(os.environ.get(URL_ENV, DEFAULT_URL))
    async with MemoryManager.from_config(memory=config) as memory:
        yield {"memory": memory}


def respond(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"X-Worker-PID": str(os.getpid())})


def answer(question: str, context_size: int) -> str:
    """The canned reply, standing in for an LLM call on the context."""
    return f"({context_size} messages in context) You said: {question}"


async def chat(request: Request) -> JSONResponse:
    user, session_id = request.path_params["user"], request.path_params["session"]
    body = await request.json()
    text = body.get("message") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text:
        return respond({"error": 'send {"message": "..."}'}, 422)
    memory: MemoryManager = request.state.memory
    try:
        session = await memory.get_or_create_session(user, session_id)
        await session.add_message(create_openai_message("user", text))
        context = await session.get_conversation_context(max_tokens=CONTEXT_TOKENS)
        reply = answer(text, len(context))
        await session.add_message(create_openai_message("assistant", reply))
    except SessionOwnershipError:
        return respond({"error": "this session belongs to another user"}, 403)
    except SessionNotFoundError:
        return respond({"error": "this session was deleted"}, 404)
    except MemoryValidationError as exc:  # e.g. the session was archived
        return respond({"error": str(exc)}, 409)
    return respond({"reply": reply})


async def history(request: Request) -> JSONResponse:
    user, session_id = request.path_params["user"], request.path_params["session"]
    memory: MemoryManager = request.state.memory
    try:
        session = await memory.get_session(session_id, user_id=user)
        if session is None:
            return respond({"error": "no such session"}, 404)
        messages = await session.get_messages()
    except SessionOwnershipError:
        return respond({"error": "this session belongs to another user"}, 403)
    except SessionNotFoundError:
        return respond({"error": "no such session"}, 404)
    return respond({"messages": [{"role": m.role.value, "content": m.text()} for m in messages]})


app = Starlette(
    routes=[
        Route("/chat/{user}/{session}", chat, methods=["POST"]),
        Route("/history/{user}/{session}", history, methods=["GET"]),
    ],
    lifespan=lifespan,
)
