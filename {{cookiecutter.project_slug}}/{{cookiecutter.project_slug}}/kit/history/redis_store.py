"""The history store on Redis: one Lua script per write, so one round trip.

Keys, all under ``huey.history.<queue name>``:

* ``:job:<id>`` (hash): the record. ``events`` holds the timeline as JSON
  lines; ``payload``, ``result`` and ``error`` hold JSON text. Once the job
  is finished, the record is packed into a string of a third of the size
  (``redis_codec``); reads go through a script that takes either form.
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
it either). The scripts are in ``redis_scripts``.
"""

import json
from collections.abc import Callable
from typing import Any

import redis

from .. import queues
from ..backends import sentinel
from ..huey_seam import RedisQueue
from ..idempotency import KeyHeld, RedisGuard
from . import model
from .model import ASCENDING, FINISHING, Change, Settings, rollup_fields
from .redis_codec import READ_LUA
from .redis_scripts import APPLY_LUA, QUEUE_NEW_LUA, SEARCH_LUA, Script

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

    def __init__(self, queue: RedisQueue, settings: Settings):
        self.settings = settings
        self.conn: redis.Redis = queue.conn
        self.prefix = f"huey.history.{queue.name}"
        self.queue_key = queue.queue_key
        # Every named queue's list, for the overview's depth (backends.count_queues).
        self.queue_keys = [queue.queue_key]
        self.schedule_key = queue.schedule_key
        self._apply = Script(self.conn, APPLY_LUA)
        self._queue_new = Script(self.conn, QUEUE_NEW_LUA)
        self._search = Script(self.conn, SEARCH_LUA)
        self._read = Script(self.conn, READ_LUA)

    # -- writes ---------------------------------------------------------

    def apply(
        self,
        changes: list[Change],
        message: bytes | None = None,
        heartbeat: dict[str, Any] | None = None,
        priority: float = 0,
        extra: Callable[[Commands], None] | None = None,
        guard: RedisGuard | None = None,
        queue: str = "default",
    ) -> bool:
        """Write changes (and push a queue message, and a heartbeat) at once.

        ``extra`` may add commands of its own to the same round trip: it
        gets a ``Commands`` list, run by the script after the changes, or
        by a pipeline right after it if one of them is a script itself.
        ``priority`` is accepted for symmetry with SQLite; Huey's Redis
        queue has none. ``guard``: a key to set with the job (a dispatch,
        or a delayed one), unless it is held (``KeyHeld``, nothing written).
        """
        # A dispatch (one new job and its message) takes a shorter script.
        dispatch = self._is_dispatch(changes, message, heartbeat, extra)
        # The message goes to its named queue's list (kit/queues.py).
        queue_key = queues.redis_key(self.queue_key, queue)
        if dispatch and self._queue_new_job(changes[0], message, guard, queue_key):
            return True
        specs = model.to_ascii_json([self._spec(change) for change in changes])
        beat = json.dumps(heartbeat) if heartbeat else ""
        args = [self.prefix, specs, queue_key, message or b"", beat]
        commands = Commands()
        if extra is not None:
            extra(commands)
        if guard is not None:
            if commands.scripted:
                raise ValueError("a guarded write cannot carry a script call")
            commands.execute_command("SET", guard.key, guard.value, "PX", guard.px)
        if not commands.scripted:
            for command in commands:
                args.append(len(command))
                args.extend(command)
            applied = self._apply([guard.key] if guard else [], args)
            if isinstance(applied, bytes):  # the guard's key is held: its value
                raise KeyHeld(applied.decode())
            return bool(applied)
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

    def _queue_new_job(
        self, change: Change, message: bytes, guard: RedisGuard | None, queue_key: str
    ) -> bool:
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
            queue_key,
            message,
            events,
        ]
        if guard is not None:
            args += [guard.value, guard.px]
        for field, value in change.create.items():
            if value is not None:
                args += [field, encode(value)]
        keys = [guard.key] if guard else []
        if self.settings.wait_replicas:
            written = self._queue_new_replicated(keys, args)
        else:
            written = self._queue_new(keys, args)
        if isinstance(written, bytes):  # the guard's key is held: its value
            raise KeyHeld(written.decode())
        return bool(written)

    def _queue_new_replicated(self, keys: list[str], args: list[Any]) -> Any:
        """QUEUE_NEW_LUA, then Redis WAIT for the replicas: one round trip.

        WAIT counts the replicas that have this connection's writes so far,
        hence the pipeline (one connection). A dispatch that wrote nothing (a
        duplicate) makes a small write of its own, so that the wait covers
        the first dispatch's write too: the replication stream is in order.
        Raises ``ReplicasBehind`` when too few replicas answer in time.
        """
        wanted, timeout_ms = self.settings.wait_replicas, self.settings.wait_timeout_ms
        for _ in range(2):  # a second time if Redis forgot the script
            pipe = self.conn.pipeline(transaction=False)
            pipe.evalsha(self._queue_new.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", wanted, timeout_ms)
            written, acked = pipe.execute(raise_on_error=False)
            if not isinstance(written, redis.exceptions.NoScriptError):
                break
            self.conn.script_load(self._queue_new.source)
        for reply in (written, acked):
            if isinstance(reply, Exception):
                raise reply
        if written == 0 or isinstance(written, bytes):
            pipe = self.conn.pipeline(transaction=False)
            pipe.set(f"{self.prefix}.wait", "1", px=60_000)
            pipe.execute_command("WAIT", wanted, timeout_ms)
            acked = pipe.execute()[1]
        if acked < wanted:
            raise sentinel.ReplicasBehind(acked, wanted)
        return written

    def _spec(self, change: Change) -> dict[str, Any]:
        # Built for every change a worker writes: plain loops, no helper
        # calls that a comprehension would do anyway.
        s = self.settings
        per_minute, per_hour = rollup_fields(change)
        status = change.status
        at = change.at
        keep = s.retention(status) if status else None
        values, unset = {}, []
        for key, value in change.fields.items():
            if value is None:
                unset.append(key)
            else:
                values[key] = repr(value) if type(value) is float else encode(value)
        create = change.create
        return {
            "id": change.job_id,
            "name": change.name,
            "at": repr(at),
            "score": repr(at if change.score is None else change.score),
            "status": status or "",
            "delete": change.delete,
            "set": values,
            "unset": unset,
            "create": {k: encode(v) for k, v in create.items() if v is not None} if create else {},
            "attempt": change.new_attempt,
            "only_from": list(change.only_from),
            "fill_duration": "duration" not in change.fields and status in FINISHING,
            "recovered": change.count_recovered,
            "events": model.event_lines(change.events),
            "events_max": s.events_max_bytes,
            # JSON null would be truthy in Lua, hence False.
            "keep": {"cutoff": repr(at - keep.max_age), "count": keep.max_count} if keep else False,
            "minute": int(at // 60) * 60,
            "hour": int(at // 3600) * 3600,
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
        flat = self._read([f"{self.prefix}:job:{job_id}"], [])[0]
        if not flat:
            return None
        raw = {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}
        return decode_record(job_id, raw)

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
        if not ids:
            return []
        keys = [f"{self.prefix}:job:{job_id}" for job_id in ids]
        rows = []
        for job_id, values in zip(ids, self._read(keys, LIST_FIELDS), strict=True):
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
        for key in self.queue_keys:
            pipe.llen(key)
        pipe.zcard(self.schedule_key)
        pipe.zrange(self._index(model.QUEUED), 0, 0, withscores=True)
        for start in minute_starts:
            pipe.hmget(f"{self.prefix}:m:{start}", ["*|complete", "*|failed"])
        for start in hour_starts:
            pipe.hgetall(f"{self.prefix}:h:{start}")
        results = pipe.execute()
        counts = dict(zip(model.STATUSES, results[: len(model.STATUSES)], strict=True))
        rest = results[len(model.STATUSES) :]
        depth = sum(rest[: len(self.queue_keys)])
        rest = rest[len(self.queue_keys) - 1 :]
        scheduled, oldest = rest[1], rest[2]
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
