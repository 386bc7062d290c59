"""The Lua script that applies a batch of session writes on the server: creations, appends
numbered by the store, metadata merged per key, status, summaries and their claims, trims and
history edits, each session's write all or nothing and refused when built on a stale copy."""

__all__ = ["APPLY_TEXT"]

APPLY_TEXT = r"""
-- KEYS: meta, msgs, ids, sums of each session in turn.  ARGV[1]: index prefix ('' when the
-- caller keeps the indexes), ARGV[2]: ttl (0: none), ARGV[3]: now; then per session its write
-- (JSON), its message elements, and its summary's packed form when it has one.
local IDX, TTL, NOW = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local WANT = {'hash', 'list', 'hash', 'hash'}
local ROW = {'i', 'u', 'v', 'st', 'f', 'n', 'c', 'si', 'se', 'cl', 'cu', 'w', 'ws', 'ua', 'cp',
             'ed'}

local function row(meta)
  local h = redis.pcall('HMGET', meta, unpack(ROW))
  if h.err or not h[1] then return nil end
  return {i = h[1], u = h[2], v = tonumber(h[3]), st = h[4], f = tonumber(h[5]),
          n = tonumber(h[6]), c = tonumber(h[7]), si = h[8], se = tonumber(h[9]),
          cl = tonumber(h[10]), cu = tonumber(h[11]), w = h[12], ws = tonumber(h[13]),
          ua = tonumber(h[14]), cp = tonumber(h[15]) or 0, ed = tonumber(h[16]) or 0}
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
  local start = w.ss or 0
  redis.call('HSET', meta, 'i', w.i, 'u', c.u, 'v', 1, 'st', 'active',
             'ca', string.format('%.17g', c.ca), 'ua', string.format('%.17g', c.ua),
             'f', start, 'n', start, 'c', 0, 'si', '', 'se', 0, 'cl', 0, 'cu', 0, 'w', w.w,
             'ws', 0, 'cp', w.sm and 0 or start)
  if c.ea then redis.call('HSET', meta, 'ea', string.format('%.17g', c.ea)) end
  for k, v in pairs(c.st) do
    if v ~= 0 then redis.call('HSET', meta, k, v) end
  end
  for k, v in pairs(c.x) do redis.call('HSET', meta, 'x:' .. k, v) end
end

-- Sequence numbers of the write's messages not stored yet (by id), and how many.
local function number(keys, w, cur, cleared)
  local fresh, count = {}, 0
  for k = 1, w.n do
    local id = w.ids[k]
    if not fresh[id] and (cleared or redis.call('HEXISTS', keys[3], id) == 0) then
      fresh[id] = cur.n + count
      count = count + 1
    end
  end
  return fresh, count
end

local function append(keys, w, a, cur, fresh)
  local items, seq = {}, cur.n
  for k = 1, w.n do
    local id = w.ids[k]
    if fresh[id] == seq then
      redis.call('HSET', keys[3], id, seq)
      items[#items + 1] = ARGV[a + k - 1]
      seq = seq + 1
    end
  end
  if #items == 0 then return -1 end
  push('RPUSH', keys[2], items)
  redis.call('HSET', keys[1], 'n', seq, 'c', cur.c + #items)
  cur.n, cur.c = seq, cur.c + #items
  return seq - #items
end

-- The latest summary ending at or before cut: id and end ('' and 0 for none).
local function summary_before(keys, cut)
  local best, best_end = '', -1
  local all = redis.call('HGETALL', keys[4])
  for k = 1, #all, 2 do
    local ct = cmsgpack.unpack(all[k + 1])[9]
    if ct <= cut and ct > best_end then best, best_end = all[k], ct end
  end
  return best, math.max(best_end, 0)
end

-- What removing w.r takes out, decided before anything changes: nil and an error kind and
-- detail if refused.
local function removal(keys, w, cur, fresh, count, cleared)
  local gone, low = {}, nil
  for _, id in ipairs(w.r) do
    local seq = fresh[id]
    if seq == nil and not cleared then seq = tonumber(redis.call('HGET', keys[3], id)) end
    if seq == nil then return nil, 'missing', id end
    gone[seq] = id
    if low == nil or seq < low then low = seq end
  end
  local f, top = cleared and cur.n or cur.f, cur.n + count - 1
  while top >= f and (gone[top] or (top < cur.n and
        redis.call('LINDEX', keys[2], top - cur.f) == '')) do
    top = top - 1
  end
  local plan = {gone = gone, n = math.max(top + 1, f)}
  plan.cut = math.min(low, plan.n)
  local se = cleared and cur.n or cur.se
  if plan.cut < se then
    local id, e = summary_before(keys, plan.cut)
    if cleared or id == '' then id, e = '', cleared and cur.n or cur.cp end
    if e < f then return nil, 'trimmed', '' end
    plan.si, plan.se = id, e
  end
  return plan
end

local function clear(keys, cur)
  redis.call('DEL', keys[2], keys[3], keys[4])
  redis.call('HSET', keys[1], 'f', cur.n, 'se', cur.n, 'cp', cur.n, 'si', '', 'c', 0)
  cur.f, cur.se, cur.cp, cur.si, cur.c = cur.n, cur.n, cur.n, '', 0
end

local function take_out(keys, plan, cur)
  local ids, removed = {}, 0
  for seq, id in pairs(plan.gone) do
    redis.call('LSET', keys[2], seq - cur.f, '')
    ids[#ids + 1] = id
    removed = removed + 1
  end
  push('HDEL', keys[3], ids)
  if plan.n > cur.f then
    redis.call('LTRIM', keys[2], 0, plan.n - cur.f - 1)
  else
    redis.call('DEL', keys[2])
  end
  if plan.si then
    local all = redis.call('HGETALL', keys[4])
    for k = 1, #all, 2 do
      if cmsgpack.unpack(all[k + 1])[9] > plan.cut then redis.call('HDEL', keys[4], all[k]) end
    end
    redis.call('HSET', keys[1], 'si', plan.si, 'se', plan.se)
    cur.si, cur.se = plan.si, plan.se
  end
  cur.n, cur.c = plan.n, cur.c - removed
  redis.call('HSET', keys[1], 'n', cur.n, 'c', cur.c)
end

-- Clear, append and remove; a refusal (error kind and detail) is decided before any change.
local function edit(keys, w, a, cur, out, vb)
  local cleared = w.clr and true or false
  local fresh, count = number(keys, w, cur, cleared)
  local plan
  if w.r then
    local kind, detail
    plan, kind, detail = removal(keys, w, cur, fresh, count, cleared)
    if not plan then return kind, detail end
  end
  if cleared or plan then
    redis.call('HSET', keys[1], 'ed', vb + 1)
    cur.ed = vb + 1
  end
  if cleared then clear(keys, cur) end
  if count > 0 then out[7] = append(keys, w, a, cur, fresh) end
  if plan then take_out(keys, plan, cur) end
  return nil
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
    if cut then ids[#ids + 1] = string.sub(gone[k], 1, cut - 1) end
  end
  push('HDEL', keys[3], ids)
  redis.call('LTRIM', keys[2], drop, -1)
  cur.c = math.max(cur.c - #ids, 0)
  redis.call('HSET', keys[1], 'f', target, 'c', cur.c)
  return true
end

local function summarise(keys, w, a, cur)
  local s = w.sm
  if cur.si ~= s.b or s.ct <= cur.se or s.ct > cur.n or s.sn < cur.ed then return false end
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
  return w.n > 0 or w.st or w.x or w.status or w.t or w.sm or w.tr or w.cl or w.r or w.clr
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
    if w.e and cur.i ~= w.i then return refuse(meta, vb, 'exists', '') end  -- not a retry
    if cur.u ~= w.c.u then return refuse(meta, vb, 'owner', '') end
  end
  local fresh = w.c and not cur
  local mine = fresh or (cur and cur.i == w.i)
  if not mine then
    if wants_more(w) then return refuse(meta, vb, 'notfound', '') end
  elseif not fresh and w.v and cur.v ~= w.v then
    return answer(meta, vb, {0, 0, 0, 0, 0, 0, -1, 0, 0, 0, 1, '', ''})
  elseif not fresh and (w.n > 0 or w.r or w.clr) and cur.st ~= 'active' then
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
  if w.n > 0 or w.r or w.clr then
    local kind, detail = edit(keys, w, a, cur, out, vb)
    if kind then return refuse(meta, vb, kind, detail) end
    changed = out[7] >= 0 or w.r ~= nil or w.clr ~= nil
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
