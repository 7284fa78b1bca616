"""Job controls on Redis: progress, logs, cancel flags, pauses, audit log.

Keys next to the job history's (``huey.history.<queue>``) and Huey's own:

* ``huey.history.<queue>:job:<id>:x`` (hash): a job's ``progress`` (JSON)
  and captured ``logs`` (JSON lines, bounded). It lives and dies with the
  job's history record: the history store deletes both together, whether
  an operator deletes the record or retention prunes it.
* ``huey.control.<queue>.cancel.<id>``: a cancel request (JSON, with a TTL).
* ``huey.control.<queue>.pause`` (hash): ``queue`` when the whole queue is
  paused, ``job:<name>`` per paused job name; values say who, when and why.
* ``huey.control.<queue>.held.<name>`` (list): queued messages of a paused
  job name, taken off the queue by a worker and kept until it is resumed.
* ``huey.control.<queue>.periodic`` (hash): the last run of each periodic job;
  ``huey.control.<queue>.run.<name>.<minute>``: a scheduler's claim on one
  periodic run (an hour's TTL), so several workers queue it once.
* ``huey.control.<queue>.audit`` (list, newest first, capped): operator actions.
"""

import json
from typing import Any

import redis

from .. import queues
from ..queues import QUEUE_KEY_OF_LUA
from .model import Flush, LogLimits

# Write a job's progress and append its log lines, if its record exists;
# answer with its cancel request, if any. KEYS: 1 extras hash, 2 history
# record, 3 cancel flag. ARGV: 1 progress JSON or "", 2 its timestamp,
# 3 log lines (JSON lines) or "", 4 how many, 5 max lines, 6 max bytes,
# 7 how many older lines were already dropped before this write.
# Progress is written only if newer than the stored one: two writers (the
# background flusher and the job's final write) may land in either order.
FLUSH_LUA = r"""
if redis.call('EXISTS', KEYS[2]) == 0 then return redis.call('GET', KEYS[3]) end
if ARGV[1] ~= '' then
  local stored = tonumber(redis.call('HGET', KEYS[1], 'progress_at') or '-1')
  if tonumber(ARGV[2]) >= stored then
    redis.call('HSET', KEYS[1], 'progress', ARGV[1], 'progress_at', ARGV[2])
  end
end
if ARGV[3] ~= '' then
  local text = (redis.call('HGET', KEYS[1], 'logs') or '') .. ARGV[3]
  local lines = tonumber(redis.call('HGET', KEYS[1], 'logs_lines') or '0') + tonumber(ARGV[4])
  local max_lines, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6])
  -- Over a bound: drop the oldest whole lines, found without copying.
  local start, cut = 1, 0
  while lines - cut > max_lines or #text - start + 1 > max_bytes do
    local newline = string.find(text, '\n', start, true)
    if not newline then start = #text + 1; cut = lines; break end
    start = newline + 1
    cut = cut + 1
  end
  if start > 1 then text = string.sub(text, start) end
  redis.call('HSET', KEYS[1], 'logs', text, 'logs_lines', lines - cut)
  cut = cut + tonumber(ARGV[7])
  if cut > 0 then redis.call('HINCRBY', KEYS[1], 'logs_cut', cut) end
end
return redis.call('GET', KEYS[3])
"""

# Keep a message of a paused job name aside, or, if the name was resumed in
# the meantime, put it straight back at the head of its named queue.
# KEYS: 1 pause hash, 2 held list, 3 Huey's queue. ARGV: 1 field, 2 message.
HOLD_LUA = (
    QUEUE_KEY_OF_LUA
    + r"""
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
redis.call('RPUSH', queue_key_of(ARGV[2], KEYS[3]), ARGV[2])
return 0
"""
)

# Lift a pause and put the held messages back at the head of their named
# queues, in their original order. KEYS: 1 pause hash, 2 held list, 3 Huey's
# queue. ARGV: 1 field.
RESUME_LUA = (
    QUEUE_KEY_OF_LUA
    + r"""
local existed = redis.call('HDEL', KEYS[1], ARGV[1])
local moved = 0
while true do
  local message = redis.call('LPOP', KEYS[2])
  if not message then break end
  redis.call('RPUSH', queue_key_of(message, KEYS[3]), message)
  moved = moved + 1
end
return {existed, moved}
"""
)


class RedisControlStore:
    backend = "redis"

    def __init__(self, conn: redis.Redis, queue_name: str, queue_key: str, limits: LogLimits):
        self.conn = conn
        self.limits = limits
        self.queue_key = queue_key
        self.history_prefix = f"huey.history.{queue_name}"
        self.prefix = prefix = f"huey.control.{queue_name}"
        self.pause_key = f"{prefix}.pause"
        self.periodic_key = f"{prefix}.periodic"
        self.audit_key = f"{prefix}.audit"
        self._flush = conn.register_script(FLUSH_LUA)
        self._hold = conn.register_script(HOLD_LUA)
        self._resume = conn.register_script(RESUME_LUA)

    # -- keys ---------------------------------------------------------------

    def record_key(self, job_id: str) -> str:
        return f"{self.history_prefix}:job:{job_id}"

    def extras_key(self, job_id: str) -> str:
        return f"{self.record_key(job_id)}:x"

    def cancel_key(self, job_id: str) -> str:
        return f"{self.prefix}.cancel.{job_id}"

    def held_key(self, name: str) -> str:
        return f"{self.prefix}.held.{name}"

    # -- progress, logs and cancel flags --------------------------------------

    def _flush_args(self, item: Flush) -> tuple[list[str], list[Any]]:
        keys = [self.extras_key(item.job_id), self.record_key(item.job_id)]
        keys.append(self.cancel_key(item.job_id))
        progress = json.dumps(item.progress) if item.progress else ""
        at = repr(item.progress["at"]) if item.progress else "0"
        lines = "".join(line + "\n" for line in item.lines)
        args = [
            progress,
            at,
            lines,
            len(item.lines),
            self.limits.lines,
            self.limits.bytes,
            item.cut,
        ]
        return keys, args

    def flush(self, items: list[Flush]) -> dict[str, dict | None]:
        """Write several jobs' progress and logs in one round trip.

        Returns each job's cancel request (None if there is none).
        """
        if not items:
            return {}
        pipe = self.conn.pipeline(transaction=False)
        for item in items:
            keys, args = self._flush_args(item)
            if item.progress or item.lines:
                self._flush(keys=keys, args=args, client=pipe)
            else:
                pipe.get(keys[2])
        answers = pipe.execute()
        return {item.job_id: _json(raw) for item, raw in zip(items, answers, strict=True)}

    def add_final(self, pipe: Any, item: Flush, clear_cancel: bool) -> None:
        """Add a job's last progress and log lines to another writer's commands.

        ``pipe`` is a pipeline or the history's ``Commands``. EVAL rather
        than EVALSHA: the history reports only its own command's errors, so
        this one must not depend on a cached script.
        """
        if item.progress or item.lines:
            keys, args = self._flush_args(item)
            pipe.execute_command("EVAL", FLUSH_LUA, len(keys), *keys, *args)
        if clear_cancel:
            pipe.execute_command("DEL", self.cancel_key(item.job_id))

    def extras(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Progress (and log counts) of several jobs, in one round trip."""
        pipe = self.conn.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(self.extras_key(job_id), ["progress", "logs_lines", "logs_cut"])
        found = {}
        for job_id, (progress, lines, cut) in zip(job_ids, pipe.execute(), strict=True):
            found[job_id] = {
                "progress": _json(progress),
                "log_lines": int(lines or 0),
                "logs_cut": int(cut or 0),
            }
        return found

    def logs(self, job_id: str) -> tuple[list[str], int]:
        text, cut = self.conn.hmget(self.extras_key(job_id), ["logs", "logs_cut"])
        lines = text.decode().splitlines() if text else []
        return lines, int(cut or 0)

    def request_cancel(self, job_id: str, request: dict[str, Any], ttl: int) -> None:
        self.conn.set(self.cancel_key(job_id), json.dumps(request), ex=ttl)

    def cancel_request(self, job_id: str) -> dict | None:
        return _json(self.conn.get(self.cancel_key(job_id)))

    # -- pause and resume -----------------------------------------------------

    def pauses(self) -> dict[str, dict[str, Any]]:
        """Paused targets: "queue" and "job:<name>", with who, when and why."""
        raw = self.conn.hgetall(self.pause_key)
        return {key.decode(): json.loads(value) for key, value in raw.items()}

    def pause(self, target: str, info: dict[str, Any]) -> bool:
        """Pause a target; False if it was paused already (then nothing changes)."""
        return bool(self.conn.hsetnx(self.pause_key, target, json.dumps(info)))

    def resume(self, target: str, name: str | None) -> tuple[bool, int]:
        """Lift a pause; for a job name, queue its held messages again.

        Returns whether it was paused and how many messages went back.
        """
        held = self.held_key(name) if name else f"{self.prefix}.held-none"
        existed, moved = self._resume(keys=[self.pause_key, held, self.queue_key], args=[target])
        return bool(existed), int(moved)

    def hold(self, target: str, name: str, message: bytes, priority: float) -> bool:
        """Keep a message aside while ``target`` is paused; False: it was queued again."""
        keys = [self.pause_key, self.held_key(name), self.queue_key]
        return bool(self._hold(keys=keys, args=[target, message]))

    def requeue(self, message: bytes, priority: float) -> None:
        """Put a message back at the head of its named queue (the next one taken)."""
        self.conn.rpush(queues.redis_key(self.queue_key, queues.of_raw(message)), message)

    def held_counts(self, names: list[str]) -> dict[str, int]:
        pipe = self.conn.pipeline(transaction=False)
        for name in names:
            pipe.llen(self.held_key(name))
        return {name: n for name, n in zip(names, pipe.execute(), strict=True) if n}

    # -- periodic jobs ---------------------------------------------------------

    def set_last_run(self, name: str, run: dict[str, Any]) -> None:
        self.conn.hset(self.periodic_key, name, json.dumps(run))

    def claim_run(self, name: str, minute: str) -> bool:
        """Claim a periodic run (job name, minute): True for the first scheduler only."""
        key = f"{self.prefix}.run.{name}.{minute}"
        return bool(self.conn.set(key, "1", nx=True, ex=3600))

    def last_runs(self) -> dict[str, dict[str, Any]]:
        raw = self.conn.hgetall(self.periodic_key)
        return {key.decode(): json.loads(value) for key, value in raw.items()}

    # -- audit log -------------------------------------------------------------

    def audit_add(self, entry: dict[str, Any], keep: int) -> None:
        pipe = self.conn.pipeline(transaction=False)
        pipe.lpush(self.audit_key, json.dumps(entry))
        pipe.ltrim(self.audit_key, 0, keep - 1)
        pipe.execute()

    def audit_page(
        self, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None, int]:
        """Newest first. The cursor is a position in the list."""
        start = int(cursor) if cursor and cursor.isdigit() else 0
        pipe = self.conn.pipeline(transaction=False)
        pipe.lrange(self.audit_key, start, start + limit)
        pipe.llen(self.audit_key)
        raw, total = pipe.execute()
        rows = [json.loads(item) for item in raw[:limit]]
        return rows, str(start + limit) if len(raw) > limit else None, total

    def clear(self) -> None:
        """Delete every control key of this queue (tests use this)."""
        cursor = 0
        while True:
            cursor, keys = self.conn.scan(cursor, match=f"{self.prefix}.*", count=1000)
            if keys:
                self.conn.delete(*keys)
            if cursor == 0:
                return


def _json(raw: bytes | str | None) -> Any:
    return None if raw is None else json.loads(raw)
