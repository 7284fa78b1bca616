"""At-least-once delivery: leases on running jobs, heartbeats and a reaper.

Huey takes a job off the queue for good before running it, so a worker that
is SIGKILLed, OOM-killed or loses its machine loses the job it was running,
without a trace. The kit closes that gap:

* Taking a job off the queue and taking a *lease* on it are one atomic step.
  On Redis the message moves from the queue into the worker's own lease list
  (a script, or ``BLMOVE`` to wait on an empty queue); on SQLite the row
  moves into the ``kit_lease`` table in the same transaction. At no moment
  is a job in neither place. From a deep Redis queue a worker takes several
  jobs in that step and runs them in turn (``WORKER_PREFETCH``).
* Each worker process registers itself with an expiry time, renewed by every
  dequeue and by a heartbeat thread. While the process lives, its leases
  stay valid, however long its job runs.
* When a run is over (complete, failed for good, or its retry safely on the
  schedule) the lease is released. A shutdown that cannot wait for a job
  puts it back on the queue instead.
* A reaper runs in every worker process; a lock lets only one act at a time.
  It adopts the leases of workers whose registration lapsed and puts their
  jobs back on the queue, counting the lost run as a failed attempt ("worker
  lost"): the job's retry policy applies and a job with no retries left is
  parked as failed. A job recovered ``MAX_RECOVERIES`` times already is
  parked too, as a poison pill, instead of killing worker after worker.

A dead worker's jobs are back on the queue at most ``LEASE_TIMEOUT`` +
``REAPER_INTERVAL`` seconds after its last sign of life (30 + 10 s by
default), whether or not a worker restarts on that machine, as long as one
worker runs somewhere. Recovered jobs run again, so jobs must be idempotent.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import random
import secrets
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from huey import RedisHuey, SqliteHuey
from huey import signals as S
from huey.api import Huey, Task
from huey.constants import EmptyData
from huey.storage import RedisStorage, SqliteStorage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseSettings:
    """Timing of heartbeats and recovery, from the app config."""

    enabled: bool = True
    timeout: float = 30.0  # LEASE_TIMEOUT: silence after which a worker is dead
    heartbeat: float = 5.0  # LEASE_HEARTBEAT: how often a worker renews
    reaper_interval: float = 10.0  # REAPER_INTERVAL: how often each worker looks
    max_recoveries: int = 3  # MAX_RECOVERIES: the poison-pill cap
    prefetch: int = 8  # WORKER_PREFETCH: jobs a Redis worker takes per round trip

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LeaseSettings:
        def get(key: str, default: Any) -> Any:
            value = config.get(key)
            return default if value is None else value

        settings = cls(
            enabled=bool(get("LEASES_ENABLED", True)),
            timeout=float(get("LEASE_TIMEOUT", cls.timeout)),
            heartbeat=float(get("LEASE_HEARTBEAT", cls.heartbeat)),
            reaper_interval=float(get("REAPER_INTERVAL", cls.reaper_interval)),
            max_recoveries=int(get("MAX_RECOVERIES", cls.max_recoveries)),
            prefetch=int(get("WORKER_PREFETCH", cls.prefetch)),
        )
        if settings.heartbeat <= 0 or settings.timeout < 2 * settings.heartbeat:
            raise ValueError(
                "LEASE_TIMEOUT must be at least twice LEASE_HEARTBEAT, so that one late "
                f"heartbeat does not declare a live worker dead (got {settings.timeout} "
                f"and {settings.heartbeat})"
            )
        if settings.reaper_interval <= 0:
            raise ValueError("REAPER_INTERVAL must be positive")
        if settings.prefetch < 1:
            raise ValueError("WORKER_PREFETCH must be at least 1")
        return settings

    @property
    def recovery_bound(self) -> float:
        """Longest time from a worker's death to its jobs being queued again."""
        return self.timeout + self.reaper_interval


@dataclass
class Lease:
    """A worker's claim on one job it took off the queue."""

    raw: bytes  # the message exactly as it was queued
    ref: Any  # where the lease lives: a Redis list key, or a kit_lease row id
    priority: float = 0
    released: bool = False
    # Huey's revoke flags for this job (key -> value or None), read in the
    # same round trip as the take, so that Huey's check before the run costs
    # none of its own. Redis only; None when they were not read.
    revocations: dict[str, bytes | None] | None = None
    # Huey's per-run revoke flag, cleared together with the release
    # (LeasingHuey.delete explains why).
    clear_on_release: str | None = None
    # Taken ahead, with the job before it (see LeaseManager.take): it may
    # not have started when its worker died.
    prefetched: bool = False


@dataclass(frozen=True)
class Recovery:
    """What the reaper did with one job whose worker died."""

    job_id: str
    job_name: str
    worker: str  # the dead worker, as "host:pid"
    requeued: bool  # False: parked as failed
    recoveries: int  # how many times this job has been lost so far
    retries_left: int
    reason: str
    # False for a job that its worker had taken ahead and maybe not started:
    # queued again as it was, the lost run not counted as an attempt.
    counted: bool = True


class Outage:
    """Log a backend outage once when it starts and once when it ends."""

    def __init__(self, what: str):
        self.what = what
        self.down_since: float | None = None
        self.back_at: float | None = None
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
        log.error("%s is unreachable (%s); retrying until it is back", self.what, exc)

    def ok(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            if self.down_since is None:
                return
            seconds = time.monotonic() - self.down_since
            self.down_since = None
            self.back_at = time.monotonic()
        log.warning("%s is reachable again after %.1f s", self.what, seconds)

    @property
    def is_down(self) -> bool:
        return self.down_since is not None


def display_name(worker: str) -> str:
    """``host:pid`` of a lease owner (its id adds a random suffix)."""
    return worker.rsplit(":", 1)[0]


# --------------------------------------------------------------------------
# Redis


# Take the next messages without blocking: renew the worker's registration
# (when ARGV[2] is set), move the next message into the worker's lease list,
# and read Huey's two revoke flags for it (this run's and its task type's),
# so that starting a job costs one round trip instead of two. The flags'
# keys come from the message, which the kit's JSON serializer writes as
# {"__huey__": "message", "fields": [id, task name, ...]}; a message in
# another shape is taken all the same, and Huey reads the flags itself.
#
# When more than ARGV[3] messages are left, up to that many more are taken
# ahead into the worker's "ahead" list (never more than half of what is
# left), so that a deep queue costs one round trip per batch. A job that was
# recovered before (it has an entry in the recoveries hash) is never part of
# a batch, neither behind another job nor with others behind it: if it is
# what kills workers, it dies alone.
#
# The reply holds five items per message: the message, then each flag's key
# and value (false, so nil in the reply, when the flags were not read).
_TAKE_LUA = """
if ARGV[2] ~= '' then
    redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
end

local function job_of(raw)
    local ok, message = pcall(cjson.decode, raw)
    if ok and type(message) == 'table' and type(message.fields) == 'table' then
        local id, name = message.fields[1], message.fields[2]
        if type(id) == 'string' and type(name) == 'string' then
            return id, name
        end
    end
    return nil, nil
end

local reply = {}
local function add(raw, id, name)
    if id and KEYS[4] ~= '' then
        local keys = {'r:' .. id, 'rt:' .. name}
        local flags = redis.call('HMGET', KEYS[4], keys[1], keys[2])
        -- A missing flag is false here, and nil in the reply.
        table.insert(reply, raw)
        table.insert(reply, keys[1])
        table.insert(reply, flags[1])
        table.insert(reply, keys[2])
        table.insert(reply, flags[2])
    else
        table.insert(reply, raw)
        for _ = 1, 4 do table.insert(reply, false) end
    end
end

local raw = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
if not raw then
    return false
end
local id, name = job_of(raw)
add(raw, id, name)
if not id or redis.call('HEXISTS', KEYS[6], id) == 1 then
    return reply
end
local most, left = tonumber(ARGV[3]), redis.call('LLEN', KEYS[1])
if left <= most then
    return reply
end
for _ = 1, math.min(most, math.floor(left / 2)) do
    raw = redis.call('LINDEX', KEYS[1], -1)
    id, name = job_of(raw)
    if not id or redis.call('HEXISTS', KEYS[6], id) == 1 then
        break
    end
    redis.call('LMOVE', KEYS[1], KEYS[5], 'RIGHT', 'LEFT')
    add(raw, id, name)
end
return reply
"""

# Put a leased message back on the queue, but only if this lease still holds
# it: if a reaper recovered the job meanwhile, it must not be queued twice.
_REQUEUE_LUA = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
    if ARGV[2] == 'front' then
        redis.call('RPUSH', KEYS[2], ARGV[1])
    else
        redis.call('LPUSH', KEYS[2], ARGV[1])
    end
    return 1
end
return 0
"""

# The reaper's verdict on an adopted job: drop the lease and, if the job gets
# another run, queue its updated message and count the recovery.
_SETTLE_LUA = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
    return 0
end
if ARGV[2] ~= '' then
    redis.call('LPUSH', KEYS[2], ARGV[2])
    redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
else
    redis.call('HDEL', KEYS[3], ARGV[3])
end
return 1
"""

# Forget a worker that holds no lease: at a clean exit (ARGV[2] == ''), or
# when the reaper is done with it and it has not come back to life since.
_FORGET_LUA = """
for i = 2, 4 do
    if redis.call('LLEN', KEYS[i]) > 0 then
        return 0
    end
end
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and expiry and tonumber(expiry) > tonumber(ARGV[2]) then
    return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""

_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# Move an unreadable message out of a lease into the dead-letter list.
_BURY_LUA = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
    redis.call('LPUSH', KEYS[2], ARGV[1])
end
return 1
"""


class RedisLeases:
    """Leases on Redis, next to Huey's own keys for the queue.

    ``huey.lease.<queue>.workers``  sorted set: worker id -> registration expiry
    ``huey.lease.<queue>.held.<worker id>``  list: the messages that worker runs
    ``huey.lease.<queue>.ahead.<worker id>``  list: the messages it took ahead
    ``huey.lease.<queue>.rescue.<worker id>``  list: jobs it adopted as reaper
    ``huey.lease.<queue>.recoveries``  hash: job id -> times lost so far
    ``huey.lease.<queue>.reaper``  the reaper lock
    ``huey.lease.<queue>.dead``  list: messages no worker could read
    """

    label = "Redis"
    errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
    prefetches = True

    def __init__(self, storage: RedisStorage):
        self.storage = storage
        self.conn: redis.Redis = storage.conn
        self.prefix = prefix = f"huey.lease.{storage.name}"
        self.workers_key = f"{prefix}.workers"
        self.recoveries_key = f"{prefix}.recoveries"
        self.lock_key = f"{prefix}.reaper"
        self.dead_key = f"{prefix}.dead"
        self._take = self.conn.register_script(_TAKE_LUA)
        # Huey's RedisStorage keeps revoke flags in its results hash, where
        # the take script reads them; other storages keep them elsewhere.
        self.flags_key = storage.result_key if isinstance(storage.result_key, str) else ""
        self.clears_flags = bool(self.flags_key)
        self._requeue = self.conn.register_script(_REQUEUE_LUA)
        self._settle = self.conn.register_script(_SETTLE_LUA)
        self._forget = self.conn.register_script(_FORGET_LUA)
        self._unlock = self.conn.register_script(_UNLOCK_LUA)
        self._bury = self.conn.register_script(_BURY_LUA)

    def held_key(self, worker: str) -> str:
        return f"{self.prefix}.held.{worker}"

    def rescue_key(self, worker: str) -> str:
        return f"{self.prefix}.rescue.{worker}"

    def ahead_key(self, worker: str) -> str:
        return f"{self.prefix}.ahead.{worker}"

    # A worker's side -----------------------------------------------------

    def register(self, worker: str, expires_at: float) -> None:
        self.conn.zadd(self.workers_key, {worker: expires_at})

    def take(self, worker: str, expires_at: float | None, ahead: int = 0) -> list[Lease]:
        """Move the next message (and up to ``ahead`` more) into this worker's leases.

        With ``expires_at``, the worker's registration is renewed in the
        same round trip, before the move, so that a lease never exists
        without a registration to expire.
        """
        storage, key, ahead_key = self.storage, self.held_key(worker), self.ahead_key(worker)
        keys = [
            storage.queue_key,
            key,
            self.workers_key,
            self.flags_key,
            ahead_key,
            self.recoveries_key,
        ]
        renew = "" if expires_at is None else expires_at
        reply = self._take(keys=keys, args=[worker, renew, ahead])
        if reply is not None:
            leases = []
            for i in range(0, len(reply), 5):
                lease = Lease(reply[i], key if i == 0 else ahead_key, prefetched=i > 0)
                if reply[i + 1] is not None:
                    lease.revocations = {
                        reply[i + 1].decode(): reply[i + 2],
                        reply[i + 3].decode(): reply[i + 4],
                    }
                leases.append(lease)
            return leases
        if not storage.blocking:
            return []
        # Nothing queued: wait for a message as Huey's dequeue does (BRPOP
        # takes from the same end). Huey reads this job's revoke flags itself.
        move = ("BLMOVE", storage.queue_key, key, "RIGHT", "LEFT", storage.read_timeout)
        raw = self.conn.execute_command(*move)
        return [] if raw is None else [Lease(raw, key)]

    def add_release(self, pipe: Any, lease: Lease, job_id: str) -> None:
        """Add the commands that release ``lease`` to a pipeline.

        Another writer (say, the job history's last write for the run) can
        carry them, so that releasing costs no round trip of its own: any
        object with a pipeline's ``execute_command`` will do.
        """
        pipe.execute_command("LREM", lease.ref, 1, lease.raw)
        pipe.execute_command("HDEL", self.recoveries_key, job_id)
        if lease.clear_on_release:
            pipe.execute_command("HDEL", self.flags_key, lease.clear_on_release)

    def release(self, lease: Lease, job_id: str) -> None:
        pipe = self.conn.pipeline(transaction=False)
        self.add_release(pipe, lease, job_id)
        pipe.execute()

    def requeue(self, lease: Lease, front: bool = False) -> bool:
        """Move a leased message back to the queue: its back, or its front."""
        end = "front" if front else "back"
        keys = [lease.ref, self.storage.queue_key]
        return bool(self._requeue(keys=keys, args=[lease.raw, end]))

    def bury(self, lease: Lease) -> None:
        self._bury(keys=[lease.ref, self.dead_key], args=[lease.raw])

    @staticmethod
    def identity(lease: Lease) -> Any:
        return lease.raw

    def own(self, worker: str) -> list[Lease]:
        """The leases this worker holds for jobs it runs (not rescued ones)."""
        pipe = self.conn.pipeline(transaction=False)
        keys = (self.held_key(worker), self.ahead_key(worker))
        for key in keys:
            pipe.lrange(key, 0, -1)
        found = pipe.execute()
        return [Lease(raw, key) for key, raws in zip(keys, found, strict=True) for raw in raws]

    def drop(self, lease: Lease) -> None:
        self.conn.lrem(lease.ref, 1, lease.raw)

    def unregister(self, worker: str) -> bool:
        return bool(self._forget(keys=self._worker_keys(worker), args=[worker, ""]))

    def _worker_keys(self, worker: str) -> list[str]:
        return [
            self.workers_key,
            self.held_key(worker),
            self.rescue_key(worker),
            self.ahead_key(worker),
        ]

    # The reaper's side ---------------------------------------------------

    def lock(self, token: str, ttl: float) -> bool:
        return bool(self.conn.set(self.lock_key, token, nx=True, px=max(1, int(ttl * 1000))))

    def unlock(self, token: str) -> None:
        self._unlock(keys=[self.lock_key], args=[token])

    def lapsed(self, now: float, me: str) -> list[str]:
        workers = self.conn.zrangebyscore(self.workers_key, "-inf", now)
        return [w.decode() for w in workers if w.decode() != me]

    def adopt(self, worker: str, me: str) -> Iterator[Lease]:
        """Move a dead worker's leases, one by one, into this reaper's care.

        The message is always somewhere: if this reaper dies halfway, the
        job sits in its rescue list and the next reaper adopts it from there.
        """
        mine = self.rescue_key(me)
        sources = (
            (self.held_key(worker), False),
            (self.rescue_key(worker), False),
            # Taken ahead: maybe never started. Should this reaper die
            # halfway, the next one counts them as lost runs (the safe side).
            (self.ahead_key(worker), True),
        )
        for source, prefetched in sources:
            while True:
                raw = self.conn.lmove(source, mine, "RIGHT", "LEFT")
                if raw is None:
                    break
                yield Lease(raw, mine, prefetched=prefetched)

    def leftovers(self, me: str) -> Iterator[Lease]:
        """Jobs this reaper adopted earlier but could not settle."""
        key = self.rescue_key(me)
        for raw in self.conn.lrange(key, 0, -1):
            yield Lease(raw, key)

    def recoveries(self, job_id: str) -> int:
        return int(self.conn.hget(self.recoveries_key, job_id) or 0)

    def settle(self, lease: Lease, new_raw: bytes | None, recovery: Recovery) -> None:
        self._settle(
            keys=[lease.ref, self.storage.queue_key, self.recoveries_key],
            args=[lease.raw, new_raw or b"", recovery.job_id, recovery.recoveries],
        )

    def forget(self, worker: str, now: float) -> None:
        self._forget(keys=self._worker_keys(worker), args=[worker, repr(now)])


# --------------------------------------------------------------------------
# SQLite


SQLITE_DDL = (
    "create table if not exists kit_lease ("
    "id integer not null primary key, queue text not null, worker text not null, "
    "rescued integer not null default 0, data blob not null, "
    "priority real not null default 0)",
    "create index if not exists kit_lease_worker on kit_lease (queue, worker)",
    "create table if not exists kit_worker ("
    "queue text not null, worker text not null, expires_at real not null, "
    "primary key (queue, worker))",
    "create table if not exists kit_recovery ("
    "queue text not null, job_id text not null, count integer not null, "
    "primary key (queue, job_id))",
)

_SQLITE_REGISTER = (
    "insert into kit_worker (queue, worker, expires_at) values (?, ?, ?) "
    "on conflict (queue, worker) do update set expires_at = excluded.expires_at"
)


class SqliteLeases:
    """Leases in the queue's SQLite file, next to Huey's ``task`` table.

    Each step is one transaction on Huey's own connection, in the same file
    as the queue, so moving a job between the queue and a lease is atomic.
    SQLite serializes writers, so the transaction that adopts a dead worker's
    leases is also what keeps two reapers from adopting the same job.
    """

    label = "SQLite"
    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    # One job per take: SQLite workers poll, and a poll is no round trip to
    # a server, so taking jobs ahead would save little.
    prefetches = False
    clears_flags = True  # Huey's flags are rows of its kv table, next to ours

    def __init__(self, storage: SqliteStorage):
        self.storage = storage
        self.queue = storage.name
        with storage.db(commit=True) as curs:
            for statement in SQLITE_DDL:
                curs.execute(statement)

    def register(self, worker: str, expires_at: float) -> None:
        self.storage.sql(_SQLITE_REGISTER, (self.queue, worker, expires_at), commit=True)

    def take(self, worker: str, expires_at: float | None, ahead: int = 0) -> list[Lease]:
        storage = self.storage
        # A cheap look first, as Huey's dequeue does, so that idle polling
        # never takes the write lock.
        if not storage.sql(
            "select 1 from task where queue = ? limit 1", (self.queue,), results=True
        ):
            return []
        with storage.db(commit=True) as curs:
            curs.execute(
                "select id, data, priority from task where queue = ? "
                "order by priority desc, id limit 1",
                (self.queue,),
            )
            row = curs.fetchone()
            if row is None:
                return []
            task_row, data, priority = row
            curs.execute("delete from task where id = ?", (task_row,))
            curs.execute(
                "insert into kit_lease (queue, worker, data, priority) values (?, ?, ?, ?)",
                (self.queue, worker, data, priority),
            )
            lease = Lease(bytes(data), curs.lastrowid, priority)
            if expires_at is not None:
                curs.execute(_SQLITE_REGISTER, (self.queue, worker, expires_at))
            return [lease]

    def add_release(self, curs: sqlite3.Cursor, lease: Lease, job_id: str) -> None:
        """Release ``lease`` inside another writer's transaction."""
        curs.execute("delete from kit_lease where id = ?", (lease.ref,))
        curs.execute(
            "delete from kit_recovery where queue = ? and job_id = ?", (self.queue, job_id)
        )
        if lease.clear_on_release:
            curs.execute(
                "delete from kv where queue = ? and key = ?", (self.queue, lease.clear_on_release)
            )

    def release(self, lease: Lease, job_id: str) -> None:
        with self.storage.db(commit=True) as curs:
            self.add_release(curs, lease, job_id)

    def requeue(self, lease: Lease, front: bool = False) -> bool:
        with self.storage.db(commit=True) as curs:
            curs.execute("delete from kit_lease where id = ?", (lease.ref,))
            if curs.rowcount != 1:
                return False
            self._enqueue(curs, lease.raw, lease.priority, front)
            return True

    def bury(self, lease: Lease) -> None:
        # No dead-letter table: the caller logs the message before this.
        self.drop(lease)

    @staticmethod
    def identity(lease: Lease) -> Any:
        return lease.ref

    def own(self, worker: str) -> list[Lease]:
        rows = self.storage.sql(
            "select id, data, priority from kit_lease where queue = ? and worker = ? "
            "and rescued = 0",
            (self.queue, worker),
            results=True,
        )
        return [Lease(bytes(data), row_id, priority) for row_id, data, priority in rows]

    def drop(self, lease: Lease) -> None:
        self.storage.sql("delete from kit_lease where id = ?", (lease.ref,), commit=True)

    def unregister(self, worker: str) -> bool:
        with self.storage.db(commit=True) as curs:
            curs.execute(
                "select 1 from kit_lease where queue = ? and worker = ? limit 1",
                (self.queue, worker),
            )
            if curs.fetchone() is not None:
                return False
            curs.execute(
                "delete from kit_worker where queue = ? and worker = ?", (self.queue, worker)
            )
            return True

    def lock(self, token: str, ttl: float) -> bool:
        return True  # adoption is one exclusive transaction (see the class doc)

    def unlock(self, token: str) -> None:
        pass

    def lapsed(self, now: float, me: str) -> list[str]:
        rows = self.storage.sql(
            "select worker from kit_worker where queue = ? and expires_at <= ? and worker != ? "
            # A lease whose worker has no registration at all counts too.
            "union select distinct worker from kit_lease where queue = ? and worker != ? "
            "and worker not in (select worker from kit_worker where queue = ?)",
            (self.queue, now, me, self.queue, me, self.queue),
            results=True,
        )
        return [row[0] for row in rows]

    def adopt(self, worker: str, me: str) -> Iterator[Lease]:
        with self.storage.db(commit=True) as curs:
            curs.execute(
                "select id, data, priority from kit_lease where queue = ? and worker = ? "
                "order by id",
                (self.queue, worker),
            )
            rows = curs.fetchall()
            curs.execute(
                "update kit_lease set worker = ?, rescued = 1 where queue = ? and worker = ?",
                (me, self.queue, worker),
            )
        for row_id, data, priority in rows:
            yield Lease(bytes(data), row_id, priority)

    def leftovers(self, me: str) -> Iterator[Lease]:
        rows = self.storage.sql(
            "select id, data, priority from kit_lease where queue = ? and worker = ? "
            "and rescued = 1 order by id",
            (self.queue, me),
            results=True,
        )
        for row_id, data, priority in rows:
            yield Lease(bytes(data), row_id, priority)

    def recoveries(self, job_id: str) -> int:
        rows = self.storage.sql(
            "select count from kit_recovery where queue = ? and job_id = ?",
            (self.queue, job_id),
            results=True,
        )
        return rows[0][0] if rows else 0

    def settle(self, lease: Lease, new_raw: bytes | None, recovery: Recovery) -> None:
        with self.storage.db(commit=True) as curs:
            curs.execute("delete from kit_lease where id = ?", (lease.ref,))
            if curs.rowcount != 1:
                return
            if new_raw is None:
                curs.execute(
                    "delete from kit_recovery where queue = ? and job_id = ?",
                    (self.queue, recovery.job_id),
                )
                return
            self._enqueue(curs, new_raw, lease.priority)
            curs.execute(
                "insert into kit_recovery (queue, job_id, count) values (?, ?, ?) "
                "on conflict (queue, job_id) do update set count = excluded.count",
                (self.queue, recovery.job_id, recovery.recoveries),
            )

    def forget(self, worker: str, now: float) -> None:
        with self.storage.db(commit=True) as curs:
            curs.execute(
                "select 1 from kit_lease where queue = ? and worker = ? limit 1",
                (self.queue, worker),
            )
            if curs.fetchone() is None:
                curs.execute(
                    "delete from kit_worker where queue = ? and worker = ? and expires_at <= ?",
                    (self.queue, worker, now),
                )

    def _enqueue(
        self, curs: sqlite3.Cursor, raw: bytes, priority: float, front: bool = False
    ) -> None:
        # The same row Huey's SqliteStorage.enqueue writes. Huey takes the
        # highest priority first, then the lowest row id: a row id below all
        # others puts the message at the front of its priority.
        row_id = "(select coalesce(min(id), 1) - 1 from task)" if front else "null"
        curs.execute(
            f"insert into task (id, queue, data, priority) values ({row_id}, ?, ?, ?)",
            (self.queue, raw, priority or 0),
        )


# --------------------------------------------------------------------------
# The manager: one per Huey instance, with per-process state.

RecoveryListener = Callable[[Recovery], None]

# Seconds between two registration renewals made by take() itself.
RENEW_ON_TAKE_EVERY = 1.0
# Seconds that jobs taken ahead may wait behind a running job before they go
# back to the queue, for other workers: a long job holds up nothing else.
PREFETCH_HOLD = 1.0
# Seconds after which the revoke flags read with a job taken ahead are too
# old to go by: Huey reads them again before the run.
PREFETCH_FRESH = 0.05


class LeaseManager:
    """Takes, releases and recovers leases for one Huey instance.

    The web process builds one too but never uses it: only workers take
    jobs, and the heartbeat thread starts with a process's first worker.
    """

    def __init__(self, huey: Huey, backend: RedisLeases | SqliteLeases, settings: LeaseSettings):
        self.huey = huey
        self.backend = backend
        self.settings = settings
        self.outage = Outage(f"the queue ({backend.label})")
        # Called for each recovered or parked job, *before* it is queued
        # again (the job history records "worker lost" there).
        self.listeners: list[RecoveryListener] = []
        # True once the consumer running this process began to shut down
        # (LeasingHuey.create_consumer wires it to the consumer's stop flag).
        self.stopping: Callable[[], bool] = lambda: False
        self._reset()
        # A forked worker process starts with state of its own; a weak
        # reference, so that apps built and dropped (tests) can go.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (manager := ref()) and manager._reset())

    def _reset(self) -> None:
        """Per-process state: a forked worker starts afresh."""
        self._pid = os.getpid()
        self._worker = f"{socket.gethostname()}:{self._pid}:{secrets.token_hex(3)}"
        self._users = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._state_lock = threading.Lock()
        # Leases of jobs running in this process, by backend identity.
        self._live: dict[Any, int] = {}
        self._suspects: set[Any] = set()
        self._take_failures = 0
        self._renewed_at = 0.0  # when take() last renewed the registration
        # Jobs taken ahead (Redis), next first, with when they were taken.
        self._ahead: collections.deque[tuple[Lease, float]] = collections.deque()
        self._ahead_lock = threading.Lock()

    @property
    def worker(self) -> str:
        """This process's lease owner id: ``host:pid:<random>``."""
        if self._pid != os.getpid():
            self._reset()
        return self._worker

    def on_recovery(self, listener: RecoveryListener) -> RecoveryListener:
        self.listeners.append(listener)
        return listener

    # Huey's on_startup / on_shutdown hooks: once per worker thread or process.

    def worker_started(self) -> None:
        if self._pid != os.getpid():
            self._reset()
        with self._state_lock:
            self._users += 1
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._keep, name="lease-keeper", daemon=True)
            self._thread.start()

    def worker_stopped(self) -> None:
        with self._state_lock:
            self._users -= 1
            if self._users > 0:
                return
            self._stop.set()
        self.give_back_ahead()
        with contextlib.suppress(*self.backend.errors):
            # A process that still holds a lease (a job it could not put
            # back) stays registered until that lapses; the reaper takes over.
            self.backend.unregister(self.worker)

    # Taking and finishing jobs.

    def take(self) -> Task | None:
        """Huey's dequeue: the next job, together with a lease on it.

        On Redis, a worker takes up to ``WORKER_PREFETCH`` jobs in one round
        trip when the queue is deep, and runs them one after the other. Those
        it has not started go back to the front of the queue when it stops,
        or after ``PREFETCH_HOLD`` seconds behind a long job.
        """
        lease = self._next_ahead() or self._take_leases()
        if lease is None:
            return None
        if self.stopping():
            # A blocking pop that began before the shutdown can still bring
            # a job, such as the one another worker of this consumer just
            # put back: it goes back untouched, for a worker that stays,
            # in front of those taken ahead, as it was.
            self.give_back_ahead()
            self._give_back(lease)
            return None
        try:
            task = self.huey.deserialize_task(lease.raw)
        except Exception:
            log.exception("set aside a queue message no worker can read: %r", lease.raw[:500])
            self._untrack(lease)
            with contextlib.suppress(*self.backend.errors):
                self.backend.bury(lease)
            raise
        lease.priority = task.priority or 0
        task.kit_lease = lease
        return task

    def _take_leases(self) -> Lease | None:
        """Take the next job (and maybe more, ahead) from the backend."""
        # The registration is renewed by the heartbeat, and here at most once
        # a second: a busy worker need not pay for it with every job.
        now = time.time()
        renew = now - self._renewed_at >= RENEW_ON_TAKE_EVERY
        ahead = self.settings.prefetch - 1 if self.backend.prefetches else 0
        try:
            expires_at = now + self.settings.timeout if renew else None
            leases = self.backend.take(self.worker, expires_at, ahead)
        except self.backend.errors as exc:
            self.outage.failed(exc)
            self._take_failures += 1
            # Redis storage counts as "blocking", so Huey's worker loop would
            # come straight back: wait here instead, at most 2 s.
            time.sleep(min(2.0, 0.05 * 2 ** min(self._take_failures, 6)))
            return None
        self._take_failures = 0
        if renew:
            self._renewed_at = now
        self.outage.ok()
        if not leases:
            return None
        for lease in leases:
            self._track(lease)
        if len(leases) > 1:
            taken_at = time.monotonic()
            with self._ahead_lock:
                self._ahead.extend((lease, taken_at) for lease in leases[1:])
        return leases[0]

    def _next_ahead(self) -> Lease | None:
        with self._ahead_lock:
            if not self._ahead:
                return None
            lease, taken_at = self._ahead.popleft()
        if time.monotonic() - taken_at > PREFETCH_FRESH:
            lease.revocations = None  # too old to go by: Huey reads the flags
        return lease

    def give_back_ahead(self, older_than: float | None = None) -> int:
        """Put the jobs taken ahead back at the front of the queue, in order.

        With ``older_than``, only once they have waited that many seconds.
        Returns how many went back; one that could not stays here, to run.
        """
        with self._ahead_lock:
            if not self._ahead:
                return 0
            if older_than is not None and time.monotonic() - self._ahead[0][1] < older_than:
                return 0
            leases = [lease for lease, _ in self._ahead]
            self._ahead.clear()
        # The next take looks at the front: the job due last goes there first.
        kept = [lease for lease in reversed(leases) if not self._give_back(lease)]
        if kept:
            now = time.monotonic()
            with self._ahead_lock:
                self._ahead.extendleft((lease, now) for lease in kept)
        return len(leases) - len(kept)

    def _give_back(self, lease: Lease) -> bool:
        """Put a job this worker took but will not run back at the front of the queue."""
        try:
            self.backend.requeue(lease, front=True)
        except self.backend.errors as exc:
            # The lease stays: the job runs here, or, if this worker stops
            # first, the reaper recovers it.
            log.error("could not put a job back on the queue: %s", exc)
            return False
        self._untrack(lease)
        return True

    def _track(self, lease: Lease) -> None:
        key = self.backend.identity(lease)
        with self._state_lock:
            self._live[key] = self._live.get(key, 0) + 1

    def _untrack(self, lease: Lease) -> bool:
        """Mark a lease as done here; False if it already was."""
        key = self.backend.identity(lease)
        with self._state_lock:
            if lease.released:
                return False
            lease.released = True
            left = self._live.get(key, 0) - 1
            if left > 0:
                self._live[key] = left
            else:
                self._live.pop(key, None)
        return True

    def write_hook(self, signal: str, task: Task, handle: Any) -> None:
        """Release the lease inside the job history's write, when it is the last.

        The history writes once per signal, with Redis commands or an SQLite
        cursor that other bookkeeping may add to (``History.write_hooks``). A
        run's last write (complete, failed for good, its retry on the
        schedule) carries the release, so leases cost no round trip of their
        own. If that write fails, the heartbeat's check finds the lease. In
        a worker that write is usually made later, by the history's thread
        (``kit_write_pending`` on the task): ``finish`` leaves the lease to it.
        """
        lease: Lease | None = getattr(task, "kit_lease", None)
        if lease is None or lease.released:
            return
        last = signal in _LAST_WRITE or (signal in _FAILURE and not task.retries)
        if last and self._untrack(lease):
            self.backend.add_release(handle, lease, task.id)

    def finish(self, task: Task) -> None:
        """Release the task's lease: its run is over, whatever the outcome.

        Unless the history's last write for the run is still pending: the
        lease goes with it, so that no job ends with no record of its end.
        """
        lease: Lease | None = getattr(task, "kit_lease", None)
        if lease is None or getattr(task, "kit_write_pending", False):
            return
        if not self._untrack(lease):
            return
        try:
            self.backend.release(lease, task.id)
        except self.backend.errors as exc:
            # The heartbeat's check releases it later; if this process dies
            # first, the job runs once more (at least once, never lost).
            log.warning("could not release the lease on job %s yet: %s", task.id, exc)

    def clear_on_release(self, task: Task, key: str) -> bool:
        """Leave Huey's revoke flag ``key`` to the release of the task's lease.

        False if the lease is gone already: the caller clears it now.
        """
        lease: Lease | None = getattr(task, "kit_lease", None)
        if lease is None or not self.backend.clears_flags:
            return False
        with self._state_lock:
            # _untrack() marks a lease released under this lock: the flag
            # is either seen by the release or cleared by the caller.
            if lease.released:
                return False
            lease.clear_on_release = key
        return True

    def on_retrying(self, signal: str, task: Task, *args: Any) -> None:
        """Huey's "retrying" signal: clear the flag before the retry is queued.

        Huey clears a run's revoke flag before it queues the retry, which
        has the same id; so must the kit, or the retry would be skipped.
        """
        lease: Lease | None = getattr(task, "kit_lease", None)
        if lease is None:
            return
        with self._state_lock:
            key, lease.clear_on_release = lease.clear_on_release, None
        if key is not None:
            self.huey.storage.delete_data(key)

    def requeue(self, task: Task) -> bool:
        """Put a job whose run was cut short back on the queue, unchanged."""
        lease: Lease | None = getattr(task, "kit_lease", None)
        if lease is None or not self._untrack(lease):
            return False
        try:
            requeued = self.backend.requeue(lease)
        except self.backend.errors as exc:
            log.error("could not requeue job %s (%s); the reaper will recover it", task.id, exc)
            return False
        if requeued:
            task.kit_requeued = True
            log.warning("job %s did not finish before shutdown; it is back on the queue", task.id)
        return requeued

    def on_interrupted(self, signal: str, task: Task, *args: Any) -> None:
        """Huey's "interrupted" signal: the worker is stopping mid-job."""
        self.requeue(task)

    # The heartbeat thread.

    def _keep(self) -> None:
        next_beat = next_reap = time.monotonic()  # look at once: this may be a restart
        # While jobs may be taken ahead, look at them twice per PREFETCH_HOLD.
        prefetching = self.backend.prefetches and self.settings.prefetch > 1
        tick = PREFETCH_HOLD / 2 if prefetching else float("inf")
        while True:
            now = time.monotonic()
            if now >= next_beat:
                self.beat()
                next_beat = now + self.settings.heartbeat
            if now >= next_reap:
                self.reap()
                # Jitter keeps the workers of a fleet from waking together.
                next_reap = now + self.settings.reaper_interval * random.uniform(0.8, 1.0)
            if prefetching:
                self.give_back_ahead(older_than=PREFETCH_HOLD)
            wait = min(next_beat, next_reap, now + tick) - time.monotonic()
            if self._stop.wait(max(0.0, wait)):
                return

    def beat(self) -> None:
        """Renew this worker's registration; drop leases nobody here holds."""
        try:
            now = time.time()
            self.backend.register(self.worker, now + self.settings.timeout)
            self._renewed_at = now
            self._check_own()
        except self.backend.errors as exc:
            self.outage.failed(exc)
            return
        self.outage.ok()

    def _check_own(self) -> None:
        """Release leases left behind by a release that could not be written.

        A lease of ours that no job in this process holds, at two checks in
        a row, is left over: its job is done. (Two checks, because a lease
        exists for a moment before the job that took it is tracked.)
        """
        with self._state_lock:
            live = set(self._live)
        found = {self.backend.identity(lease): lease for lease in self.backend.own(self.worker)}
        orphans = set(found) - live
        stale = orphans & self._suspects
        self._suspects = orphans - stale
        for key in stale:
            log.warning("released a lease left over from a failed write")
            self.backend.drop(found[key])

    def reap(self) -> list[Recovery]:
        """Recover the jobs of dead workers, unless another worker is at it."""
        outage = self.outage
        if outage.is_down:
            return []
        if outage.back_at is not None and time.monotonic() - outage.back_at < self.settings.timeout:
            # The queue was just unreachable for us, so probably for every
            # worker: give them one lease period to renew before judging.
            return []
        token = secrets.token_hex(8)
        backend, me = self.backend, self.worker
        done: list[Recovery] = []
        try:
            if not backend.lock(token, self.settings.timeout):
                return []
            try:
                for lease in list(backend.leftovers(me)):
                    self._recover(lease, me, done)
                for worker in backend.lapsed(time.time(), me):
                    for lease in backend.adopt(worker, me):
                        self._recover(lease, worker, done)
                    backend.forget(worker, time.time())
            finally:
                backend.unlock(token)
        except backend.errors as exc:
            self.outage.failed(exc)
        return done

    def _recover(self, lease: Lease, worker: str, done: list[Recovery]) -> None:
        verdict = self.judge(lease.raw, worker, counted=not lease.prefetched)
        if verdict is None:
            self.backend.bury(lease)
            return
        new_raw, recovery = verdict
        for listener in self.listeners:
            try:
                listener(recovery)
            except Exception:
                log.exception("recovery listener failed for job %s", recovery.job_id)
        self.backend.settle(lease, new_raw, recovery)
        if recovery.requeued:
            log.warning(
                "recovered job %s (%s): %s", recovery.job_id, recovery.job_name, recovery.reason
            )
        else:
            log.error(
                "parked job %s (%s) as failed: %s",
                recovery.job_id,
                recovery.job_name,
                recovery.reason,
            )
        done.append(recovery)

    def judge(
        self, raw: bytes, worker: str, counted: bool = True
    ) -> tuple[bytes | None, Recovery] | None:
        """Decide what happens to a job whose worker died.

        Returns the message to queue (None: park the job as failed) and a
        description, or None when the message cannot be read at all.
        ``counted=False`` is for a job the worker had taken ahead, which
        it may never have started: it is queued again as it was.
        """
        try:
            message = self.huey.serializer.deserialize(raw)
            job_id, job_name, retries = message.id, message.name, message.retries or 0
        except Exception:
            log.exception("dropped a leased message no worker can read: %r", raw[:500])
            return None
        job_name = job_name.rsplit(".", 1)[-1]  # Huey's "module.name"
        before = self.backend.recoveries(job_id)
        dead = display_name(worker)
        if not counted:
            # Settling it leaves an entry in the recoveries, which keeps the
            # job out of batches: should it be what kills workers, it dies
            # alone next time, and that loss is counted.
            reason = f"worker {dead} was lost holding it, maybe before it started; queued again"
            recovery = Recovery(
                job_id, job_name, dead, True, before, retries, reason, counted=False
            )
            return raw, recovery
        lost = before + 1
        cap = self.settings.max_recoveries
        if lost > cap:
            reason = (
                f"worker {dead} was lost while running it, for the {_nth(lost)} time; "
                f"parked as a poison pill (MAX_RECOVERIES is {cap})"
            )
            return None, Recovery(job_id, job_name, dead, False, lost, retries, reason)
        if retries <= 0:
            reason = f"worker {dead} was lost while running it, and no retries are left"
            return None, Recovery(job_id, job_name, dead, False, lost, 0, reason)
        # The lost run counts as a failed attempt: one retry fewer.
        new_raw = self.huey.serializer.serialize(message._replace(retries=retries - 1))
        reason = f"worker {dead} was lost while running it; queued again"
        return new_raw, Recovery(job_id, job_name, dead, True, lost, retries - 1, reason)


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


_LAST_WRITE = frozenset({S.SIGNAL_COMPLETE, S.SIGNAL_SCHEDULED, S.SIGNAL_REVOKED, S.SIGNAL_EXPIRED})
_FAILURE = frozenset(
    {S.SIGNAL_ERROR, S.SIGNAL_TIMEOUT, S.SIGNAL_CANCELED, S.SIGNAL_LOCKED, S.SIGNAL_RATE_LIMITED}
)


# The job each worker thread is running, for LeasingHuey.delete.
_running = threading.local()


class LeasingHuey:
    """Mix-in for a Huey class: every job a worker takes is leased."""

    lease_manager: LeaseManager | None = None
    # The consumer class create_consumer() builds; the kit's worker entry
    # point sets its own (consumer.GracefulConsumer), huey_consumer does not.
    consumer_class: type | None = None

    def create_consumer(self, **options: Any) -> Any:
        if self.consumer_class is None:
            consumer = super().create_consumer(**options)  # type: ignore[misc]
        else:
            consumer = self.consumer_class(self, **options)
        if self.lease_manager is not None:
            # Forked worker processes inherit the flag: once it is set, none
            # of them starts a job it takes off the queue.
            self.lease_manager.stopping = consumer.stop_flag.is_set
        return consumer

    def dequeue(self) -> Task | None:
        manager = self.lease_manager
        if manager is None:
            return super().dequeue()  # type: ignore[misc]
        return manager.take()

    def execute(self, task: Task, timestamp: Any = None) -> Any:
        _running.task = task
        try:
            return super().execute(task, timestamp)  # type: ignore[misc]
        finally:
            _running.task = None
            # Whatever the run led to (a retry on the schedule, a result) is
            # written by now; only then may the lease go.
            if self.lease_manager is not None:
                self.lease_manager.finish(task)

    def is_revoked(self, task: Any, timestamp: Any = None, peek: bool = True) -> bool:
        """Huey's revoke check, from the flags the take read when it can.

        Huey checks once before each run (``peek=False``); the lease carries
        the flags as they were a moment ago, when the job was taken, which is
        what Huey's own read after its dequeue would see.
        """
        lease: Lease | None = getattr(task, "kit_lease", None)
        flags = lease.revocations if lease is not None else None
        if flags is None or peek or list(flags) != self._revoke_keys(task):  # type: ignore[attr-defined]
            return super().is_revoked(task, timestamp, peek)  # type: ignore[misc]
        lease.revocations = None  # read once: a later check asks the storage
        for key, value in flags.items():
            stored = EmptyData if value is None else value
            revoked, restore = self._check_revoked(stored, timestamp, peek)  # type: ignore[attr-defined]
            if restore:
                self.delete(key)
            if revoked:
                return True
        return False

    def delete(self, key: str) -> bool:
        """Huey's delete, except for the running job's own revoke flag.

        After every run Huey deletes the job's revoke flag, in case the job
        was revoked while it ran: a round trip per job that almost never
        deletes anything. The kit clears it together with the release of
        the job's lease, which the run's last write carries anyway (or
        before a retry is queued, see ``LeaseManager.on_retrying``).
        """
        task = getattr(_running, "task", None)
        manager = self.lease_manager
        if (
            task is not None
            and manager is not None
            and key == task.revoke_id
            and manager.clear_on_release(task, key)
        ):
            return True
        return super().delete(key)  # type: ignore[misc]

    def read_schedule(self, timestamp: Any = None) -> list[Task]:
        """The consumer's scheduler, once a second: quiet while Redis is down.

        Huey would log a traceback every second of an outage; this logs its
        start and its end.
        """
        manager = self.lease_manager
        if manager is None:
            return super().read_schedule(timestamp)  # type: ignore[misc]
        try:
            due = super().read_schedule(timestamp)  # type: ignore[misc]
        except manager.backend.errors as exc:
            manager.outage.failed(exc)
            return []
        manager.outage.ok()
        return due


class LeasingRedisHuey(LeasingHuey, RedisHuey):
    pass


class LeasingSqliteHuey(LeasingHuey, SqliteHuey):
    pass


def install(huey: Huey, settings: LeaseSettings) -> LeaseManager | None:
    """Give ``huey`` (built from a Leasing* class) its lease manager."""
    if not settings.enabled or not isinstance(huey, LeasingHuey) or huey.immediate:
        return None
    storage = huey.storage
    if isinstance(storage, RedisStorage):
        backend: RedisLeases | SqliteLeases = RedisLeases(storage)
    elif isinstance(storage, SqliteStorage):
        backend = SqliteLeases(storage)
    else:
        return None
    manager = LeaseManager(huey, backend, settings)
    huey.lease_manager = manager
    huey.on_startup("kit_leases")(manager.worker_started)
    huey.on_shutdown("kit_leases")(manager.worker_stopped)
    huey.signal(S.SIGNAL_INTERRUPTED)(manager.on_interrupted)
    huey.signal(S.SIGNAL_RETRYING)(manager.on_retrying)
    return manager
