"""The agent-traffic model: what a benchmark run does, and a seeded generator of its steps.

A run has ``sessions`` sessions spread over ``users`` users. Each session repeats *steps*.
A step is either an agent turn or, with probability ``read_ratio``, a read-only history view
(``get_messages(limit=20)``, as a UI listing the conversation would do). An agent turn is

    add user message -> get context (token budget) -> add assistant message

and, with probability ``tool_calls``, the assistant first calls a tool:

    add user message -> get context -> add assistant tool call -> add tool result
    -> get context -> add assistant message

Each session draws its steps from its own random stream seeded by ``(seed, session index)``,
so a session's traffic does not depend on scheduling, concurrency or the event loop.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Final

__all__ = [
    "ADD_ASSISTANT",
    "ADD_TOOL_CALL",
    "ADD_TOOL_RESULT",
    "ADD_USER",
    "BACKENDS",
    "GET_CONTEXT",
    "GET_MESSAGES",
    "HISTORY_LIMIT",
    "LOOPS",
    "OPERATIONS",
    "TURN",
    "Action",
    "SessionPlan",
    "Step",
    "Workload",
    "WorkloadGenerator",
]

ADD_USER: Final = "add_user"
GET_CONTEXT: Final = "get_context"
ADD_ASSISTANT: Final = "add_assistant"
ADD_TOOL_CALL: Final = "add_tool_call"
ADD_TOOL_RESULT: Final = "add_tool_result"
GET_MESSAGES: Final = "get_messages"
#: A whole agent turn, timed from building its first message to its last acknowledgement.
TURN: Final = "turn"
#: Every operation the engine times, in report order.
OPERATIONS: Final = (
    TURN,
    ADD_USER,
    GET_CONTEXT,
    ADD_TOOL_CALL,
    ADD_TOOL_RESULT,
    ADD_ASSISTANT,
    GET_MESSAGES,
)
WRITES: Final = frozenset({ADD_USER, ADD_ASSISTANT, ADD_TOOL_CALL, ADD_TOOL_RESULT})

BACKENDS: Final = ("memory", "sqlite", "redis")
LOOPS: Final = ("asyncio", "trio")
DURABILITIES: Final = ("buffered", "committed")
#: How many messages a read-only history view asks for.
HISTORY_LIMIT: Final = 20
TOOL_NAME: Final = "lookup_order"

_VOCABULARY = (
    "the agent checked order status shipping address customer invoice number delivery "
    "thursday lisbon warehouse refund policy account balance payment card expired update "
    "subscription plan monthly annual discount code support ticket priority escalate manager "
    "schedule meeting calendar reminder travel flight hotel booking confirm cancel change seat "
    "window aisle baggage allowance weather forecast rain sunny temperature report summary "
    "quarter revenue growth forecast budget approve review document draft contract clause "
    "legal compliance audit log error retry timeout server database query index cache "
    "latency request response token context budget model prompt tool result search web page "
    "link title abstract paper author citation dataset metric accuracy benchmark run "
    "and or but with for from into over under about after before during while because so"
)
_WORDS = tuple(_VOCABULARY.split())


@dataclass(frozen=True, slots=True)
class Workload:
    """Everything that defines a benchmark run. Validated on construction (``ValueError``).

    ``users`` defaults to 100 (fewer if there are fewer sessions). ``turns`` is per session:
    the run ends when every session has done that many turns, or after ``duration`` seconds,
    whichever comes first (``duration`` defaults to 10 s when neither is given).
    ``concurrency`` is how many sessions are driven at once (default: all); with fewer, each
    driver serves its share of the sessions round-robin.
    """

    backend: str = "memory"
    sqlite_path: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    durability: str | None = None
    loop: str = "asyncio"
    sessions: int = 1_000
    users: int | None = None
    turns: int | None = None
    duration: float | None = None
    concurrency: int | None = None
    message_chars: int = 200
    context_tokens: int = 4_000
    tool_calls: float = 0.0
    think_ms: float = 0.0
    read_ratio: float = 0.0
    summarize_every: int = 0
    prefill: int = 0
    seed: int = 1

    def __post_init__(self) -> None:
        _one_of("backend", self.backend, BACKENDS)
        _one_of("loop", self.loop, LOOPS)
        if self.durability is not None:
            _one_of("durability", self.durability, DURABILITIES)
        _positive("sessions", self.sessions)
        if self.users is not None:
            _positive("users", self.users)
        if self.users is not None and self.users > self.sessions:
            raise ValueError(f"users ({self.users}) cannot exceed sessions ({self.sessions})")
        if self.turns is not None:
            _positive("turns", self.turns)
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f"duration must be a positive number of seconds, not {self.duration}")
        if self.concurrency is not None:
            _positive("concurrency", self.concurrency)
        _positive("message_chars", self.message_chars)
        _positive("context_tokens", self.context_tokens)
        _ratio("tool_calls", self.tool_calls, closed=True)
        _ratio("read_ratio", self.read_ratio, closed=False)
        if not self.think_ms >= 0:
            raise ValueError(f"think_ms must not be negative, not {self.think_ms}")
        _non_negative("summarize_every", self.summarize_every)
        _non_negative("prefill", self.prefill)
        if self.sqlite_path is not None and self.backend != "sqlite":
            raise ValueError("sqlite_path only applies to the sqlite backend")

    @property
    def user_count(self) -> int:
        """Users the sessions belong to (default: 100, or one per session if fewer)."""
        return self.users if self.users is not None else min(100, self.sessions)

    @property
    def drivers(self) -> int:
        """How many sessions are driven concurrently."""
        return min(self.concurrency or self.sessions, self.sessions)

    @property
    def time_limit(self) -> float | None:
        """Seconds the measured phase may last (``None``: until every session is done)."""
        if self.duration is None and self.turns is None:
            return 10.0
        return self.duration

    @property
    def total_turns(self) -> int | None:
        return None if self.turns is None else self.turns * self.sessions

    def memory_config(self, **backend_config: Any) -> dict[str, Any]:
        """The ``memory=`` dict for ``MemoryManager.from_config``; ``backend_config`` is merged
        into the backend's ``config`` (the engine adds a scratch SQLite path, a key prefix)."""
        config: dict[str, Any] = {}
        if self.backend == "sqlite":
            config["db_path"] = self.sqlite_path
            config["enable_wal"] = True
        elif self.backend == "redis":
            config["url"] = self.redis_url
        config.update(backend_config)
        memory: dict[str, Any] = {"backend": self.backend}
        if config:
            memory["config"] = config
        if self.durability is not None:
            memory["durability"] = self.durability
        return memory

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def _positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


def _non_negative(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")


def _ratio(name: str, value: float, *, closed: bool) -> None:
    ok = 0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0
    if not ok:
        bound = "between 0 and 1" if closed else "at least 0 and below 1"
        raise ValueError(f"{name} must be {bound}, not {value!r}")


@dataclass(frozen=True, slots=True)
class Action:
    """One call on a session: ``op`` is one of the operation names; writes carry their text
    (``None`` for a tool call) and tool messages the id that pairs call and result."""

    op: str
    text: str | None = None
    call_id: str | None = None

    def openai_fields(self) -> dict[str, Any]:
        """Keyword arguments for ``create_openai_message`` that build this write."""
        if self.op == ADD_USER:
            return {"role": "user", "content": self.text}
        if self.op == ADD_ASSISTANT:
            return {"role": "assistant", "content": self.text}
        if self.op == ADD_TOOL_CALL:
            call = {
                "id": self.call_id,
                "type": "function",
                "function": {"name": TOOL_NAME, "arguments": json.dumps({"query": self.text})},
            }
            return {"role": "assistant", "content": None, "tool_calls": [call]}
        if self.op == ADD_TOOL_RESULT:
            return {"role": "tool", "content": self.text, "tool_call_id": self.call_id}
        raise ValueError(f"{self.op} is not a write")


@dataclass(frozen=True, slots=True)
class Step:
    """What a session does next: a turn or a read, then ``think_s`` seconds of quiet."""

    kind: str  # "turn" or "read"
    actions: tuple[Action, ...]
    think_s: float

    @property
    def uses_tool(self) -> bool:
        return any(a.op == ADD_TOOL_CALL for a in self.actions)

    @property
    def writes(self) -> int:
        return sum(a.op in WRITES for a in self.actions)


class WorkloadGenerator:
    """Builds each session's seeded stream of steps, and the texts they carry."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        corpus_rng = random.Random(f"corpus:{workload.seed}")
        words: list[str] = []
        size = 0
        while size < 65_536 + workload.message_chars:
            word = corpus_rng.choice(_WORDS)
            words.append(word)
            size += len(word) + 1
        self._corpus = " ".join(words)
        self._span = len(self._corpus) - workload.message_chars

    def user_id(self, index: int) -> str:
        """Sessions are dealt to users round-robin."""
        return f"user-{index % self.workload.user_count}"

    def plan(self, index: int) -> SessionPlan:
        """The step stream of session ``index`` (the same for the same seed, always)."""
        return SessionPlan(self, index)

    def prefill(self, index: int) -> list[Action]:
        """``prefill`` user/assistant exchanges to store before the clock starts."""
        rng = random.Random(f"{self.workload.seed}:{index}:prefill")
        actions: list[Action] = []
        for _ in range(self.workload.prefill):
            actions.append(Action(ADD_USER, self._text(rng.random())))
            actions.append(Action(ADD_ASSISTANT, self._text(rng.random())))
        return actions

    def _text(self, r: float) -> str:
        start = int(r * self._span)
        return self._corpus[start : start + self.workload.message_chars]


class SessionPlan:
    """An endless iterator over one session's steps."""

    __slots__ = ("_gen", "_index", "_n", "_rng")

    def __init__(self, generator: WorkloadGenerator, index: int) -> None:
        self._gen = generator
        self._index = index
        self._rng = random.Random(f"{generator.workload.seed}:{index}")
        self._n = 0

    def __iter__(self) -> Iterator[Step]:
        return self

    def __next__(self) -> Step:
        w = self._gen.workload
        text = self._gen._text
        rand = self._rng.random
        self._n += 1
        read = w.read_ratio > 0 and rand() < w.read_ratio
        tool = not read and w.tool_calls > 0 and rand() < w.tool_calls
        think = w.think_ms / 1000 * (0.5 + rand()) if w.think_ms else 0.0
        if read:
            return Step("read", (Action(GET_MESSAGES),), think)
        if not tool:
            actions: tuple[Action, ...] = (
                Action(ADD_USER, text(rand())),
                Action(GET_CONTEXT),
                Action(ADD_ASSISTANT, text(rand())),
            )
            return Step("turn", actions, think)
        call_id = f"call_{self._index}_{self._n}"
        actions = (
            Action(ADD_USER, text(rand())),
            Action(GET_CONTEXT),
            Action(ADD_TOOL_CALL, text(rand())[:48], call_id),
            Action(ADD_TOOL_RESULT, text(rand()), call_id),
            Action(GET_CONTEXT),
            Action(ADD_ASSISTANT, text(rand())),
        )
        return Step("turn", actions, think)
