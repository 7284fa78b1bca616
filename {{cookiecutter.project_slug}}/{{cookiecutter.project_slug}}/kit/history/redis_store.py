"""The history store on Redis: one Lua script per write, so one round trip.

Keys, all under ``huey.history.<queue name>``:

* ``:job:<id>`` (hash): the record. ``events`` holds the timeline as JSON
  lines; ``payload``, ``result`` and ``error`` hold JSON text.
* ``:state:<status>`` and ``:state:<status>:<job name>`` (sorted sets): the
  ids in each status, scored by time. A list page is one ZRANGE, and a count
  is one ZCARD, whatever the size of the history.
* ``:m:<minute>`` and ``:h:<hour>`` (hashes with a TTL): throughput counters
  per job name (``jobModelo|complete``) and, per hour, a duration histogram
  (``jobModelo|d6``). ``*`` stands for all jobs.
* ``:workers`` (sorted set, by last heartbeat) and ``:worker:<id>`` (the
  heartbeat as JSON, with a TTL).
* ``:job:<id>:x`` (hash): the job's progress and captured logs, written by
  ``controls``; deleted with the record, so it follows the same retention.

Why a script rather than MULTI: moving a job between indexes needs its
current status, and retention needs to read which records to drop. A script
does the read and the writes on the server, atomically, in the same single
round trip a pipeline would cost. Each job key is derived inside the script,
which standalone Redis allows (Redis Cluster would not; Huey does not support
it either).
"""

import hashlib
import json
from collections.abc import Callable
from typing import Any

import redis
from huey import Huey

from . import model
from .model import Change, Settings

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
QUEUE_NEW_LUA = r"""
local P, id, name, at = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = P .. ':job:' .. id
if redis.call('EXISTS', key) == 1 then return 0 end
redis.call('LPUSH', ARGV[5], ARGV[6])
-- The same order as APPLY_LUA: the create fields, then the change's own.
local fields = {'name', name, unpack(ARGV, 8)}
for _, value in ipairs({'events', ARGV[7], 'status', 'queued', 'state_at', at}) do
  fields[#fields + 1] = value
end
redis.call('HSET', key, unpack(fields))
redis.call('ZADD', P .. ':state:queued', at, id)
redis.call('ZADD', P .. ':state:queued:' .. name, at, id)
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

# Fields a list page shows; the timeline and payload stay on the server.
LIST_FIELDS = (
    "name",
    "status",
    "enqueued_at",
    "state_at",
    "started_at",
    "finished_at",
    "duration",
    "attempt",
    "worker",
    "error",
    "eta",
    "retry_of",
    "retried_by",
    "recovered",
)
NUMBER_FIELDS = {
    "enqueued_at",
    "state_at",
    "started_at",
    "finished_at",
    "duration",
    "eta",
}
INT_FIELDS = {"attempt", "recovered"}
JSON_FIELDS = {"payload", "result", "error"}

# Oldest-first for the statuses that form a queue, newest-first otherwise.
ASCENDING = frozenset({model.QUEUED, model.SCHEDULED, model.RUNNING, model.RETRYING})


class Script:
    """A Lua script called by its SHA, loaded again if Redis forgot it."""

    def __init__(self, conn: redis.Redis, source: str):
        self.conn = conn
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, keys: list[str], args: list[Any]) -> Any:
        try:
            return self.conn.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            # Redis restarted (scripts are not persisted): load and run again.
            # Nothing was written, since the script never started.
            self.conn.script_load(self.source)
            return self.conn.evalsha(self.sha, len(keys), *keys, *args)


class Commands(list):
    """Redis commands that write hooks add to a history write.

    It has a pipeline's ``execute_command``, so code that adds commands can
    be given either.
    """

    scripted = False  # True once a command is a script call (EVAL, EVALSHA)

    def execute_command(self, *words: Any) -> None:
        if str(words[0]).upper() in ("EVAL", "EVALSHA"):
            self.scripted = True
        self.append(words)


class RedisStore:
    backend = "redis"

    def __init__(self, huey: Huey, settings: Settings):
        storage = huey.storage
        self.settings = settings
        self.conn: redis.Redis = storage.conn
        self.prefix = f"huey.history.{storage.name}"
        self.queue_key = storage.queue_key
        self.schedule_key = storage.schedule_key
        self._apply = Script(self.conn, APPLY_LUA)
        self._queue_new = Script(self.conn, QUEUE_NEW_LUA)
        self._search = Script(self.conn, SEARCH_LUA)

    # -- writes ---------------------------------------------------------

    def apply(
        self,
        changes: list[Change],
        message: bytes | None = None,
        heartbeat: dict[str, Any] | None = None,
        priority: float = 0,
        extra: Callable[[Commands], None] | None = None,
    ) -> bool:
        """Write changes (and push a queue message, and a heartbeat) at once.

        ``extra`` may add commands of its own to the same round trip: it
        gets a ``Commands`` list, run by the script after the changes, or
        by a pipeline right after it if one of them is a script itself.
        ``priority`` is accepted for symmetry with SQLite; Huey's Redis
        queue has none.
        """
        # A dispatch (one new job and its message) takes a shorter script.
        dispatch = self._is_dispatch(changes, message, heartbeat, extra)
        if dispatch and self._queue_new_job(changes[0], message):
            return True
        specs = json.dumps([self._spec(change) for change in changes])
        beat = json.dumps(heartbeat) if heartbeat else ""
        args = [self.prefix, specs, self.queue_key, message or b"", beat]
        commands = Commands()
        if extra is not None:
            extra(commands)
        if not commands.scripted:
            for command in commands:
                args.append(len(command))
                args.extend(command)
            return bool(self._apply([], args))
        # Redis does not let a script call another one: pipeline them.
        pipe = self.conn.pipeline(transaction=False)
        pipe.evalsha(self._apply.sha, 0, *args)
        for command in commands:
            pipe.execute_command(*command)
        applied = pipe.execute(raise_on_error=False)[0]
        if isinstance(applied, redis.exceptions.NoScriptError):
            applied = self._apply([], args)
        elif isinstance(applied, Exception):
            raise applied
        return bool(applied)

    def _is_dispatch(
        self,
        changes: list[Change],
        message: bytes | None,
        heartbeat: dict[str, Any] | None,
        extra: Callable[[Commands], None] | None,
    ) -> bool:
        """One new job's record and its message, with nothing else to do."""
        if not message or heartbeat or extra is not None or len(changes) != 1:
            return False
        change = changes[0]
        return (
            change.status == model.QUEUED
            and change.score is None
            and not (change.fields or change.only_from or change.counters or change.new_attempt)
            and not (change.delete or change.count_recovered)
            and change.duration_ms is None
        )

    def _queue_new_job(self, change: Change, message: bytes) -> bool:
        """Write a new job's record and message with QUEUE_NEW_LUA.

        The record is what APPLY_LUA would write for the same change.
        False if the record exists already: nothing was written.
        """
        events = model.event_lines(change.events)
        if len(events) > self.settings.events_max_bytes:
            return False  # the general path trims the timeline
        args = [
            self.prefix,
            change.job_id,
            change.name,
            repr(change.at),
            self.queue_key,
            message,
            events,
        ]
        for field, value in change.create.items():
            if value is not None:
                args += [field, encode(value)]
        return bool(self._queue_new([], args))

    def _spec(self, change: Change) -> dict[str, Any]:
        s = self.settings
        per_minute, per_hour = rollup_fields(change)
        keep = s.retention(change.status) if change.status else None
        return {
            "id": change.job_id,
            "name": change.name,
            "at": repr(change.at),
            "score": repr(change.index_score),
            "status": change.status or "",
            "delete": change.delete,
            "set": {k: encode(v) for k, v in change.fields.items() if v is not None},
            "unset": [k for k, v in change.fields.items() if v is None],
            "create": {k: encode(v) for k, v in change.create.items() if v is not None},
            "attempt": change.new_attempt,
            "only_from": list(change.only_from),
            "fill_duration": "duration" not in change.fields and change.status in FINISHING,
            "recovered": change.count_recovered,
            "events": model.event_lines(change.events),
            "events_max": s.events_max_bytes,
            # JSON null would be truthy in Lua, hence False.
            "keep": {"cutoff": repr(change.at - keep.max_age), "count": keep.max_count}
            if keep
            else False,
            "minute": int(change.at // 60) * 60,
            "hour": int(change.at // 3600) * 3600,
            "minute_ttl": int(s.minute_rollups_age),
            "hour_ttl": int(s.hour_rollups_age),
            "per_minute": per_minute,
            "per_hour": per_hour,
        }

    def remove_worker(self, worker_id: str) -> None:
        pipe = self.conn.pipeline(transaction=False)
        pipe.zrem(f"{self.prefix}:workers", worker_id)
        pipe.delete(f"{self.prefix}:worker:{worker_id}")
        pipe.execute()

    # -- reads ----------------------------------------------------------

    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = self.conn.hgetall(f"{self.prefix}:job:{job_id}")
        if not raw:
            return None
        return decode_record(job_id, {k.decode(): v.decode() for k, v in raw.items()})

    def counts(self, name: str | None = None) -> dict[str, int]:
        pipe = self.conn.pipeline(transaction=False)
        for status in model.STATUSES:
            pipe.zcard(self._index(status, name))
        return dict(zip(model.STATUSES, pipe.execute(), strict=True))

    def page(
        self, status: str, name: str | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None, int]:
        """One page of a status list, the next page's cursor, and the total."""
        start = int(cursor) if cursor and cursor.isdigit() else 0
        index = self._index(status, name)
        pipe = self.conn.pipeline(transaction=False)
        if status in ASCENDING:
            pipe.zrange(index, start, start + limit)
        else:
            pipe.zrevrange(index, start, start + limit)
        pipe.zcard(index)
        ids, total = pipe.execute()
        more = len(ids) > limit
        rows = self._rows([i.decode() for i in ids[:limit]])
        return rows, str(start + limit) if more else None, total

    def search_failed(
        self, needle: str, name: str | None, cursor: str | None, limit: int, budget: int
    ) -> tuple[list[dict[str, Any]], str | None, int]:
        """Failures whose error type or message contains ``needle``.

        Text search has no index, so it is bounded: at most ``budget``
        records are read per call, newest first. Returns the rows, the cursor
        to continue from, and how many records were examined.
        """
        start = int(cursor) if cursor and cursor.isdigit() else 0
        index = self._index(model.FAILED, name)
        ids, rank, examined = self._search(
            [index], [self.prefix, needle.lower(), start, budget, limit]
        )
        rows = self._rows([i.decode() for i in ids])
        finished = examined < budget and len(ids) < limit
        return rows, None if finished else str(rank), examined

    def _rows(self, ids: list[str]) -> list[dict[str, Any]]:
        pipe = self.conn.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(f"{self.prefix}:job:{job_id}", LIST_FIELDS)
        rows = []
        for job_id, values in zip(ids, pipe.execute(), strict=True):
            fields = {
                f: v.decode() for f, v in zip(LIST_FIELDS, values, strict=True) if v is not None
            }
            if fields:  # pruned between the two reads: skip it
                rows.append(decode_record(job_id, fields))
        return rows

    def overview(self, at: float, minutes: int = 60, hours: int = 24) -> dict[str, Any]:
        """Everything the overview page shows, in one pipelined round trip."""
        this_minute = int(at // 60) * 60
        this_hour = int(at // 3600) * 3600
        minute_starts = [this_minute - 60 * i for i in range(minutes - 1, -1, -1)]
        hour_starts = [this_hour - 3600 * i for i in range(hours - 1, -1, -1)]
        pipe = self.conn.pipeline(transaction=False)
        for status in model.STATUSES:
            pipe.zcard(self._index(status))
        pipe.llen(self.queue_key)
        pipe.zcard(self.schedule_key)
        pipe.zrange(self._index(model.QUEUED), 0, 0, withscores=True)
        for start in minute_starts:
            pipe.hmget(f"{self.prefix}:m:{start}", ["*|complete", "*|failed"])
        for start in hour_starts:
            pipe.hgetall(f"{self.prefix}:h:{start}")
        results = pipe.execute()
        counts = dict(zip(model.STATUSES, results[: len(model.STATUSES)], strict=True))
        rest = results[len(model.STATUSES) :]
        depth, scheduled, oldest = rest[0], rest[1], rest[2]
        per_minute = rest[3 : 3 + minutes]
        per_hour = rest[3 + minutes :]
        return {
            "counts": counts,
            "queue_depth": depth,
            "schedule_depth": scheduled,
            "oldest_queued_at": oldest[0][1] if oldest else None,
            "per_minute": [
                {"start": start, "complete": int(c or 0), "failed": int(f or 0)}
                for start, (c, f) in zip(minute_starts, per_minute, strict=True)
            ],
            "per_hour": [{k.decode(): int(v) for k, v in bucket.items()} for bucket in per_hour],
        }

    def workers(self) -> list[dict[str, Any]]:
        ids = self.conn.zrevrange(f"{self.prefix}:workers", 0, -1)
        if not ids:
            return []
        beats = self.conn.mget([f"{self.prefix}:worker:{i.decode()}" for i in ids])
        return [json.loads(beat) for beat in beats if beat]

    def _index(self, status: str, name: str | None = None) -> str:
        key = f"{self.prefix}:state:{status}"
        return f"{key}:{name}" if name else key

    def clear(self) -> None:
        """Delete every history key (tests and the benchmark use this)."""
        cursor = 0
        while True:
            cursor, keys = self.conn.scan(cursor, match=f"{self.prefix}:*", count=1000)
            if keys:
                self.conn.delete(*keys)
            if cursor == 0:
                return


# Statuses that end an attempt: their duration can be derived from started_at.
FINISHING = frozenset({model.COMPLETE, model.FAILED, model.RETRYING})


def rollup_fields(change: Change) -> tuple[dict[str, int], dict[str, int]]:
    """The counters a change bumps in its minute bucket and hour bucket."""
    per_minute: dict[str, int] = {}
    for metric, amount in change.counters.items():
        per_minute[f"{change.name}|{metric}"] = amount
        per_minute[f"{model.ALL_JOBS}|{metric}"] = amount
    per_hour = dict(per_minute)
    if change.duration_ms is not None:
        per_hour[f"{change.name}|d{model.duration_bucket(change.duration_ms)}"] = 1
    return per_minute, per_hour


def encode(value: Any) -> str:
    """Record fields are strings in Redis; JSON fields arrive already encoded."""
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else str(value)


def decode_record(job_id: str, raw: dict[str, str]) -> dict[str, Any]:
    """Turn a record's strings back into numbers and JSON values."""
    record: dict[str, Any] = {"id": job_id}
    for key, value in raw.items():
        if value == "":
            record[key] = None
        elif key in NUMBER_FIELDS:
            record[key] = float(value)
        elif key in INT_FIELDS:
            record[key] = int(value)
        elif key in JSON_FIELDS:
            record[key] = json.loads(value)
        else:
            record[key] = value
    return record
