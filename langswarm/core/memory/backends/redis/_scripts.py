"""The Lua scripts the Redis backend runs: each applies its changes atomically on the server.

``APPLY`` carries out the rules of :func:`..._rows.plan` for one or more sessions (all in one
hash slot on a cluster); one session's refusal never stops the others. Layout, for prefix ``P``
and session ``S`` (the ``{S}`` hash tag keeps a session's keys on one cluster slot)::

    P:{S}:meta   hash: i incarnation, u owner, v version, st status, ca/ua/ea created, updated
                 and expiry times, mm/mt/at settings, f/n first and next sequence number,
                 c message count, si/se latest summary id and end, cl/cu summary claim and
                 until when, w/ws latest writer and since which version, cp where the latest
                 clear cut and ed the version the latest removal or clear made (absent: 0);
                 x:<key> the application's metadata, one JSON value
                 per key
    P:{S}:msgs   list: message id, a NUL byte, the packed message ('' for a removed one);
                 seq = f + index
    P:{S}:ids    hash: message id -> seq (a message is stored once per session)
    P:{S}:sums   hash: summary id -> packed summary
    P:idx:all    sorted set of session ids scored by updated_at; P:idx:user:U per user
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from ...exceptions import MemoryBackendError, MemoryCorruptionError
from ._apply_script import APPLY_TEXT as _APPLY
from ._connect import Client

__all__ = [
    "APPLY",
    "DELETE",
    "LOAD",
    "PRUNE",
    "RANGE",
    "SCRIPTS",
    "Script",
    "load_scripts",
    "run_scripts",
]


@dataclass(frozen=True, slots=True)
class Script:
    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.text.encode()).hexdigest())


_LOAD = r"""
-- KEYS: meta, msgs, sums.  ARGV[1]: how many of the newest messages.  One consistent read:
-- {meta fields and values, newest message elements, summaries}; {} for no session.
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return {} end
local tail, elements = tonumber(ARGV[1]), {}
if tail > 0 then elements = redis.call('LRANGE', KEYS[2], -tail, -1) end
return {fields, elements, redis.call('HVALS', KEYS[3])}
"""

_RANGE = r"""
-- KEYS: meta, msgs.  ARGV: start, stop (sequence numbers).  Elements start <= seq < stop.
local f = tonumber(redis.call('HGET', KEYS[1], 'f'))
if not f then return {} end
local lo = math.max(tonumber(ARGV[1]) - f, 0)
local hi = tonumber(ARGV[2]) - f
if hi <= lo then return {} end
return redis.call('LRANGE', KEYS[2], lo, hi - 1)
"""

_DELETE = r"""
-- KEYS: meta, msgs, ids, sums.  ARGV[1]: delete only if updated before this ('' always).
-- Returns {deleted (0/1), owner}.
local owner = redis.call('HGET', KEYS[1], 'u')
if not owner then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return {0, ''}
end
if ARGV[1] ~= '' and tonumber(redis.call('HGET', KEYS[1], 'ua')) >= tonumber(ARGV[1]) then
  return {0, owner}
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return {1, owner}
"""

_PRUNE = r"""
-- KEYS: an index.  ARGV: member, score pairs seen pointing at no (or another user's)
-- session.  A member whose score changed since was re-indexed by a write: keep it.
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""

APPLY, LOAD, RANGE, DELETE, PRUNE = SCRIPTS = tuple(
    map(Script, (_APPLY, _LOAD, _RANGE, _DELETE, _PRUNE))
)


async def load_scripts(client: Client) -> None:
    for script in SCRIPTS:
        await client.script_load(script.text)


async def run_scripts(
    client: Client, script: Script, calls: list[tuple[list[str], list[Any]]], width: int
) -> list[Any]:
    """Run ``script`` once per (keys, args): in one pipeline on a server; on a cluster (whose
    client routes each call to its slot's node) ``width`` at a time, side by side, as its
    per-node connection pools refuse to wait for a free connection. Reload scripts once if
    the server lost them (restarted or flushed)."""
    for attempt in range(2):
        if isinstance(client, RedisCluster):
            replies: list[Any] = []
            for i in range(0, len(calls), width):
                replies += await asyncio.gather(
                    *(client.evalsha(script.sha, len(k), *k, *a) for k, a in calls[i : i + width]),
                    return_exceptions=True,
                )
        else:
            pipe = client.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
        lost = any(isinstance(r, redis.exceptions.NoScriptError) for r in replies)
        if attempt or not lost:
            return [_checked(r) for r in replies]
        await load_scripts(client)
    raise AssertionError("unreachable")


def _checked(reply: Any) -> Any:
    if isinstance(reply, redis.exceptions.ResponseError):
        text = str(reply).split(" script:")[0]
        if "WRONGTYPE" in text:
            return MemoryCorruptionError(f"a key holds data that is not ours: {text}")
        return MemoryBackendError(f"redis refused a script call: {text}")
    if isinstance(reply, Exception):
        raise reply
    return reply
