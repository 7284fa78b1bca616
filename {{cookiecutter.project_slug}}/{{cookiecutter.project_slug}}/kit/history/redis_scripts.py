"""The Lua scripts of the Redis history store, and how they are called.

``APPLY_LUA`` makes every write (see ``redis_store`` for why a script);
``QUEUE_NEW_LUA`` is its short form for a dispatch; ``SEARCH_LUA`` looks
for text in failures' errors. Each is called by its SHA (:class:`Script`).
"""

import hashlib
from typing import Any

import redis

# Shared by every write. ARGV: 1 key prefix, 2 the changes (a JSON list),
# 3 Huey's queue key and 4 a message to push onto it (or ""), 5 a worker
# heartbeat (JSON, or ""), then commands that other parts of the kit add to
# the write (a job's lease release, its cancel request), each as its number
# of words followed by the words. If any change's ``only_from`` does not
# match, none of the changes is written and the script returns 0; the
# commands run either way, and an error in one of them fails nothing else.
APPLY_LUA = r"""
local P = ARGV[1]
local changes = cjson.decode(ARGV[2])

local function run_commands()
  local i = 6
  while i <= #ARGV do
    local n = tonumber(ARGV[i])
    redis.pcall(unpack(ARGV, i + 1, i + n))
    i = i + n + 1
  end
end

local function job_key(id) return P .. ':job:' .. id end
local function index_key(status, name)
  if name then return P .. ':state:' .. status .. ':' .. name end
  return P .. ':state:' .. status
end

local function allowed(change, status)
  if #change.only_from == 0 then return true end
  for _, s in ipairs(change.only_from) do
    if s == status then return true end
  end
  return false
end

-- The timeline with new lines appended; past the size cap, drop the oldest
-- lines but keep the first one (when and how the job was queued).
local function events_text(key, exists, lines, max_bytes)
  local text = lines
  if exists then text = (redis.call('HGET', key, 'events') or '') .. lines end
  if #text > max_bytes then
    local first_end = string.find(text, '\n', 1, true)
    local cut = string.find(text, '\n', first_end + #text - max_bytes, true)
    if cut then text = string.sub(text, 1, first_end) .. string.sub(text, cut + 1) end
  end
  return text
end

-- Drop at most `limit` records of a final status that are older than the
-- cutoff or beyond the count. Each new final record pays for removing up
-- to two old ones, so the history converges to its bounds without a sweeper.
local function prune(status, cutoff, max_count, limit)
  local idx = index_key(status)
  local victims = redis.call('ZRANGEBYSCORE', idx, '-inf', cutoff, 'LIMIT', 0, limit)
  local excess = redis.call('ZCARD', idx) - #victims - max_count
  if excess > 0 and #victims < limit then
    local stop = #victims + math.min(excess, limit - #victims) - 1
    for _, id in ipairs(redis.call('ZRANGE', idx, #victims, stop)) do
      victims[#victims + 1] = id
    end
  end
  for _, id in ipairs(victims) do
    local name = redis.call('HGET', job_key(id), 'name')
    redis.call('DEL', job_key(id), job_key(id) .. ':x')
    redis.call('ZREM', idx, id)
    if name then redis.call('ZREM', index_key(status, name), id) end
  end
end

-- Counters and pruning are gathered over all the changes, then written once
-- per rollup key and once per status: a batch of many jobs' ends costs a
-- few commands for them, not a few per job.
local bumps, ttls, prunes = {}, {}, {}
local function add_bumps(key, counters, ttl)
  for field, amount in pairs(counters) do
    bumps[key] = bumps[key] or {}
    bumps[key][field] = (bumps[key][field] or 0) + amount
    ttls[key] = ttl
  end
end

local current = {}
for i, change in ipairs(changes) do
  current[i] = redis.call('HMGET', job_key(change.id), 'status', 'name')
  if not allowed(change, current[i][1]) then
    run_commands()
    return 0
  end
end

-- The message goes first: should a write below fail, the job is queued
-- with an incomplete record, never recorded as queued without a message.
if ARGV[4] ~= '' then redis.call('LPUSH', ARGV[3], ARGV[4]) end

for i, c in ipairs(changes) do
  local key = job_key(c.id)
  local old, name = current[i][1], current[i][2] or c.name
  if not old and c.status == '' and not c.delete then
    -- no record to attach this change to: write nothing
  elseif c.delete then
    redis.call('DEL', key, key .. ':x')
    if old then
      redis.call('ZREM', index_key(old), c.id)
      redis.call('ZREM', index_key(old, name), c.id)
    end
  else
    -- Every field in one HSET: a new record's name and its create fields
    -- first, so that the change's own fields win over them.
    local fields = {}
    local function put(field, value)
      fields[#fields + 1] = field
      fields[#fields + 1] = value
    end
    if not old then
      put('name', name)
      for field, value in pairs(c.create) do put(field, value) end
    end
    for field, value in pairs(c.set) do put(field, value) end
    if c.events ~= '' then put('events', events_text(key, old, c.events, c.events_max)) end
    if c.status ~= '' then
      put('status', c.status)
      put('state_at', c.at)
    end
    if #fields > 0 then redis.call('HSET', key, unpack(fields)) end
    for _, field in ipairs(c.unset) do redis.call('HDEL', key, field) end
    if c.attempt == 'always' or (c.attempt == 'if_queued' and old == 'queued') then
      redis.call('HINCRBY', key, 'attempt', 1)
    end
    if c.fill_duration then
      local started = redis.call('HGET', key, 'started_at')
      if started then redis.call('HSET', key, 'duration', tonumber(c.at) - tonumber(started)) end
    end
    if c.recovered then redis.call('HINCRBY', key, 'recovered', 1) end
    if c.status ~= '' then
      if old and old ~= c.status then
        redis.call('ZREM', index_key(old), c.id)
        redis.call('ZREM', index_key(old, name), c.id)
      end
      redis.call('ZADD', index_key(c.status), c.score, c.id)
      redis.call('ZADD', index_key(c.status, name), c.score, c.id)
      if c.keep then
        local p = prunes[c.status]
        if p then
          p.cutoff = math.max(p.cutoff, tonumber(c.keep.cutoff))
          p.limit = p.limit + 2
        else
          prunes[c.status] = {cutoff = tonumber(c.keep.cutoff), count = c.keep.count, limit = 2}
        end
      end
    end
    add_bumps(P .. ':m:' .. c.minute, c.per_minute, c.minute_ttl)
    add_bumps(P .. ':h:' .. c.hour, c.per_hour, c.hour_ttl)
  end
end

for status, p in pairs(prunes) do prune(status, p.cutoff, p.count, p.limit) end
for key, counters in pairs(bumps) do
  for field, amount in pairs(counters) do redis.call('HINCRBY', key, field, amount) end
  redis.call('EXPIRE', key, ttls[key])
end

if ARGV[5] ~= '' then
  local beat = cjson.decode(ARGV[5])
  redis.call('SET', P .. ':worker:' .. beat.id, ARGV[5], 'EX', beat.forget_after)
  redis.call('ZADD', P .. ':workers', beat.beat_at, beat.id)
  redis.call('ZREMRANGEBYSCORE', P .. ':workers', '-inf', beat.beat_at - beat.forget_after)
end
run_commands()
return 1
"""

# The common case of APPLY_LUA, cut down: a new job's "queued" record and its
# queue message, nothing else. Arguments by position instead of a JSON spec,
# and as few of them as will do (redis-py packs each one in Python), so a
# dispatch costs little on either side. ARGV: 1 key prefix, 2 job id, 3 job
# name, 4 time, 5 Huey's queue key, 6 the message, 7 the timeline, then the
# record's create fields as name, value pairs. Returns 0, writing nothing, if
# the record exists already (the caller then takes the general path).
# With a key that guards the dispatch (KEYS[1], an idempotency key), ARGV 8
# and 9 are its value and its expiry in ms, and the create fields come after.
# If the key is held, the script returns its value and writes nothing; else
# it sets the key last, so an error halfway never leaves the key behind.
QUEUE_NEW_LUA = r"""
if KEYS[1] then
  local held = redis.call('GET', KEYS[1])
  if held then return held end
end
local P, id, name, at = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = P .. ':job:' .. id
if redis.call('EXISTS', key) == 1 then return 0 end
redis.call('LPUSH', ARGV[5], ARGV[6])
-- The same order as APPLY_LUA: the create fields, then the change's own.
local fields = {'name', name, unpack(ARGV, KEYS[1] and 10 or 8)}
for _, value in ipairs({'events', ARGV[7], 'status', 'queued', 'state_at', at}) do
  fields[#fields + 1] = value
end
redis.call('HSET', key, unpack(fields))
redis.call('ZADD', P .. ':state:queued', at, id)
redis.call('ZADD', P .. ':state:queued:' .. name, at, id)
if KEYS[1] then redis.call('SET', KEYS[1], ARGV[8], 'PX', ARGV[9]) end
return 1
"""

# Finds failures whose error text contains a string, scanning at most
# ARGV[4] records from rank ARGV[3] of index KEYS[1], newest first; stops
# after ARGV[5] matches. Returns the matching ids and the rank to resume at.
SEARCH_LUA = r"""
local P, needle = ARGV[1], ARGV[2]
local start, budget, want = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ids = redis.call('ZREVRANGE', KEYS[1], start, start + budget - 1)
local found = {}
local rank = start
for _, id in ipairs(ids) do
  rank = rank + 1
  local err = redis.call('HGET', P .. ':job:' .. id, 'error')
  if err and string.find(string.lower(err), needle, 1, true) then
    found[#found + 1] = id
    if #found >= want then break end
  end
end
return {found, rank, #ids}
"""


class Script:
    """A Lua script called by its SHA, loaded again if Redis forgot it."""

    def __init__(self, conn: redis.Redis, source: str):
        self.conn = conn
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, keys: list[str], args: list[Any]) -> Any:
        # Redis restarted or failed over (scripts are neither persisted nor
        # replicated): load and run again. Nothing was written, since the
        # script never started. Twice: a call that meets a demoted master
        # (READONLY) is sent on to the new one, which may not know it either.
        for _ in range(2):
            try:
                return self.conn.evalsha(self.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                self.conn.script_load(self.source)
        return self.conn.evalsha(self.sha, len(keys), *keys, *args)
