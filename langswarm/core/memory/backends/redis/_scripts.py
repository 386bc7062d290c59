"""The Lua scripts the Redis backend runs: each applies its changes atomically on the server.

``APPLY`` carries out the rules of :func:`..._rows.plan` for one or more sessions (all in one
hash slot on a cluster); one session's refusal never stops the others. Layout, for prefix ``P``
and session ``S`` (the ``{S}`` hash tag keeps a session's keys on one cluster slot)::

    P:{S}:meta   hash: i incarnation, u owner, v version, st status, ca/ua/ea created, updated
                 and expiry times, mm/mt/at settings, f/n first and next sequence number,
                 c message count, si/se latest summary id and end, cl/cu summary claim and
                 until when, w/ws latest writer and since which version; x:<key> the
                 application's metadata, one JSON value per key
    P:{S}:msgs   list: message id, a NUL byte, the packed message; seq = f + index
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


_APPLY = r"""
-- KEYS: meta, msgs, ids, sums of each session in turn.  ARGV[1]: index prefix ('' when the
-- caller keeps the indexes), ARGV[2]: ttl (0: none), ARGV[3]: now; then per session its write
-- (JSON), its message elements, and its summary's packed form when it has one.
local IDX, TTL, NOW = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local WANT = {'hash', 'list', 'hash', 'hash'}
local ROW = {'i', 'u', 'v', 'st', 'f', 'n', 'c', 'si', 'se', 'cl', 'cu', 'w', 'ws', 'ua'}

local function row(meta)
  local h = redis.pcall('HMGET', meta, unpack(ROW))
  if h.err or not h[1] then return nil end
  return {i = h[1], u = h[2], v = tonumber(h[3]), st = h[4], f = tonumber(h[5]),
          n = tonumber(h[6]), c = tonumber(h[7]), si = h[8], se = tonumber(h[9]),
          cl = tonumber(h[10]), cu = tonumber(h[11]), w = h[12], ws = tonumber(h[13]),
          ua = tonumber(h[14])}
end

local function foreign(keys)
  for k = 1, 4 do
    local t = redis.call('TYPE', keys[k]).ok
    if t ~= 'none' and t ~= WANT[k] then return keys[k] .. ' holds a ' .. t end
  end
  if redis.call('EXISTS', keys[1]) == 0 then return nil end
  local h = redis.call('HMGET', keys[1], 'i', 'v', 'f', 'n', 'c', 'se', 'cl', 'cu', 'ws')
  if not h[1] then return keys[1] .. ' is not a session this release can read' end
  for k = 2, #h do
    if not tonumber(h[k]) then return keys[1] .. ' has a field that is not a number' end
  end
  return nil
end

local function answer(meta, vb, out)
  local r = out[12] ~= 'corrupt' and row(meta)
  if r then
    out[1], out[2], out[3], out[4], out[5] = r.i, r.u, r.v, r.f, r.n
  else
    out[1], out[2], out[3], out[4], out[5] = '', '', 0, 0, 0
  end
  out[6] = vb
  return out
end

local function refuse(meta, vb, kind, text)
  return answer(meta, vb, {0, 0, 0, 0, 0, 0, -1, 0, 0, 0, 0, kind, text})
end

local function push(cmd, key, items)
  -- Lua 5.1 unpack() is bounded by the C stack: send long runs in slices.
  for i = 1, #items, 4000 do
    redis.call(cmd, key, unpack(items, i, math.min(i + 3999, #items)))
  end
end

local function index(sid, owner, score, gone)
  if IDX == '' then return end
  local user = IDX .. ':idx:user:' .. owner
  if gone then
    redis.call('ZREM', IDX .. ':idx:all', sid)
    redis.call('ZREM', user, sid)
  else
    redis.call('ZADD', IDX .. ':idx:all', score, sid)
    redis.call('ZADD', user, score, sid)
    if TTL > 0 then redis.call('EXPIRE', user, TTL) end
  end
end

local function create(meta, w)
  local c = w.c
  -- Times as %.17g: Lua would write numbers with 14 digits, dropping the microseconds.
  redis.call('HSET', meta, 'i', w.i, 'u', c.u, 'v', 1, 'st', 'active',
             'ca', string.format('%.17g', c.ca), 'ua', string.format('%.17g', c.ua),
             'f', 0, 'n', 0, 'c', 0, 'si', '', 'se', 0, 'cl', 0, 'cu', 0, 'w', w.w, 'ws', 0)
  if c.ea then redis.call('HSET', meta, 'ea', string.format('%.17g', c.ea)) end
  for k, v in pairs(c.st) do
    if v ~= 0 then redis.call('HSET', meta, k, v) end
  end
  for k, v in pairs(c.x) do redis.call('HSET', meta, 'x:' .. k, v) end
end

local function append(keys, w, a, cur)
  local fresh, seq = {}, cur.n
  for k = 1, w.n do
    if redis.call('HSETNX', keys[3], w.ids[k], seq) == 1 then
      fresh[#fresh + 1] = ARGV[a + k - 1]
      seq = seq + 1
    end
  end
  if #fresh == 0 then return -1 end
  push('RPUSH', keys[2], fresh)
  redis.call('HSET', keys[1], 'n', seq, 'c', cur.c + #fresh)
  cur.n, cur.c = seq, cur.c + #fresh
  return seq - #fresh
end

local function set_fields(meta, w)
  local changed = false
  for k, v in pairs(w.st or {}) do
    if v == 0 then
      if redis.call('HDEL', meta, k) == 1 then changed = true end
    elseif tonumber(redis.call('HGET', meta, k)) ~= v then
      redis.call('HSET', meta, k, v)
      changed = true
    end
  end
  for k, v in pairs(w.x or {}) do
    if redis.call('HGET', meta, 'x:' .. k) ~= v then
      redis.call('HSET', meta, 'x:' .. k, v)
      changed = true
    end
  end
  if w.status and redis.call('HGET', meta, 'st') ~= w.status then
    redis.call('HSET', meta, 'st', w.status)
    changed = true
  end
  if w.t and tonumber(redis.call('HGET', meta, 'ua')) ~= w.t then
    redis.call('HSET', meta, 'ua', string.format('%.17g', w.t))
    changed = true
  end
  return changed
end

local function trim(keys, w, cur, vb, before)
  if not (vb == w.tb or (before.w == w.w and before.ws <= w.tb)) then return false end
  local target = math.min(w.tr, cur.se, cur.n)
  if target <= cur.f then return false end
  local drop = target - cur.f
  local gone = redis.call('LRANGE', keys[2], 0, drop - 1)
  local ids = {}
  for k = 1, #gone do
    local cut = string.find(gone[k], '\0', 1, true)
    ids[k] = string.sub(gone[k], 1, cut - 1)
  end
  push('HDEL', keys[3], ids)
  redis.call('LTRIM', keys[2], drop, -1)
  cur.c = math.max(cur.c - drop, 0)
  redis.call('HSET', keys[1], 'f', target, 'c', cur.c)
  return true
end

local function summarise(keys, w, a, cur)
  local s = w.sm
  if cur.si ~= s.b or s.ct <= cur.se or s.ct > cur.n then return false end
  redis.call('HSET', keys[4], s.id, ARGV[a + w.n])
  redis.call('HSET', keys[1], 'si', s.id, 'se', s.ct)
  cur.si, cur.se = s.id, s.ct
  return true
end

local function claim(meta, w, cur)
  if cur.cl >= w.cl and cur.cu > NOW then return false end
  redis.call('HSET', meta, 'cl', w.cl, 'cu', string.format('%.17g', NOW + w.cs))
  return true
end

local function wants_more(w)
  return w.n > 0 or w.st or w.x or w.status or w.t or w.sm or w.tr or w.cl
end

local function apply(keys, sid, w, a)
  local meta = keys[1]
  local bad = foreign(keys)
  if bad then return refuse(meta, 0, 'corrupt', bad) end
  local r = row(meta)
  local vb = r and r.v or 0
  if w.d and r and w.i ~= '*' and w.i ~= r.i then return refuse(meta, vb, 'notfound', '') end
  local gone = w.d and r and (w.i == '*' or w.i == r.i)
  local cur = r
  if gone then cur = nil end
  if w.c and cur then
    if w.e then return refuse(meta, vb, 'exists', '') end
    if cur.u ~= w.c.u then return refuse(meta, vb, 'owner', '') end
  end
  local fresh = w.c and not cur
  local mine = fresh or (cur and cur.i == w.i)
  if not mine then
    if wants_more(w) then return refuse(meta, vb, 'notfound', '') end
  elseif not fresh and w.v and cur.v ~= w.v then
    return answer(meta, vb, {0, 0, 0, 0, 0, 0, -1, 0, 0, 0, 1, '', ''})
  elseif not fresh and w.n > 0 and cur.st ~= 'active' then
    return refuse(meta, vb, 'archived', cur.st)
  end
  if gone then
    redis.call('DEL', keys[1], keys[2], keys[3], keys[4])
    index(sid, r.u, 0, true)
  end
  if fresh then create(meta, w) end
  local out = {0, 0, 0, 0, 0, 0, -1, fresh and 1 or 0, 0, 0, 0, '', ''}
  if not mine then return answer(meta, vb, out) end
  local before = row(meta)
  cur = row(meta)
  local changed = false
  if w.n > 0 then
    out[7] = append(keys, w, a, cur)
    changed = out[7] >= 0
  end
  changed = set_fields(meta, w) or changed
  if w.sm and summarise(keys, w, a, cur) then out[9], changed = 1, true end
  if w.tr and trim(keys, w, cur, vb, before) then changed = true end
  if w.cl and claim(meta, w, cur) then out[10], changed = 1, true end
  if changed and not fresh then redis.call('HINCRBY', meta, 'v', 1) end
  if (changed or fresh) and before.w ~= w.w then
    redis.call('HSET', meta, 'w', w.w, 'ws', vb)
  end
  if changed or fresh then
    if TTL > 0 then
      for k = 1, 4 do redis.call('EXPIRE', keys[k], TTL) end
    end
    index(sid, cur.u, tonumber(redis.call('HGET', meta, 'ua')), false)
  end
  return answer(meta, vb, out)
end

local out, a = {}, 4
for s = 1, #KEYS, 4 do
  local w = cjson.decode(ARGV[a])
  out[#out + 1] = apply({KEYS[s], KEYS[s + 1], KEYS[s + 2], KEYS[s + 3]}, w.s, w, a + 1)
  a = a + 1 + w.n + (w.sm and 1 or 0)
end
return out
"""

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
