"""Storage handles: Huey's Redis keys and SQLite tables as the kit uses them.

Part of the seam (``huey_seam.USES`` lists what is used here). Each handle
holds one queue's connection and the layout the kit's stores share with
Huey: the queue, the schedule and the revoke flags. Moving due jobs from the
schedule to the queue lives here too (``KitHuey.move_due`` drives it): one
script on Redis, one transaction on SQLite, so that no moment exists where a
due job is on neither.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
from huey.storage import RedisStorage, SqliteStorage

from .. import wakeup
from ..queues import IDLE_POLL, Pick, redis_key, sqlite_name
from ..queues import of_raw as queue_of


class KitRedisStorage(RedisStorage):
    """Huey's Redis storage, whose enqueue goes to the message's named queue.

    Huey enqueues by itself only a retry that waits for nothing (the kit
    writes every dispatch and every due job itself, see ``history`` and
    ``KitHuey.move_due``): it goes back to the queue its job came from.
    """

    # The named queues to take from next (KitHuey sets it): Huey's own take,
    # when leases are off, serves them by weight too.
    picks: Callable[[], Pick] | None = None

    def enqueue(self, data: bytes, priority: float | None = None) -> None:
        queue = queue_of(data)
        self.conn.lpush(redis_key(self.queue_key, queue), data)

    def dequeue(self) -> bytes | None:
        """Huey's take (leases off): from the named queue the weights pick."""
        pick = self.picks() if self.picks else None
        if pick is None or pick.names == ("default",):
            return super().dequeue()
        keys = [redis_key(self.queue_key, name) for name in pick.names]
        pipe = self.conn.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        found = [name for name, size in zip(pick.names, pipe.execute(), strict=True) if size]
        chosen = pick.choose(found)
        if chosen is None:
            if self.blocking:  # Huey's worker loop comes straight back
                time.sleep(IDLE_POLL)
            return None
        return self.conn.rpop(keys[pick.names.index(chosen)])


class KitSqliteStorage(SqliteStorage):
    """Huey's SQLite storage, whose one connection is dropped after an error that sticks.

    SQLite silently opens a file it cannot write read-only: such a connection
    refuses writes long after the file system is writable again. An I/O error
    may leave stale file handles. The next use opens a fresh connection.

    A transaction that queued a job rings the workers sleeping on this host
    once it has committed (``wakeup.py``): every write to the queue goes
    through ``db``, Huey's own enqueue included.
    """

    picks: Callable[[], Pick] | None = None  # as KitRedisStorage's
    _queued = False  # the open transaction queued a job

    @functools.cached_property
    def wake_directory(self) -> str | None:
        """Where this file's sleeping workers listen; None: they only poll."""
        return wakeup.directory_for(self.filename)

    def queued(self) -> None:
        """The open transaction queues a job: ring the workers after its commit."""
        self._queued = True

    def dequeue(self) -> bytes | None:
        """Huey's take (leases off): from the named queue the weights pick."""
        pick = self.picks() if self.picks else None
        if pick is None or pick.names == ("default",):
            return super().dequeue()
        names = [sqlite_name(self.name, name) for name in pick.names]
        query = "select 1 from task where queue = ? limit 1"
        found = [
            n for n, q in zip(pick.names, names, strict=True) if self.sql(query, (q,), results=True)
        ]
        chosen = pick.choose(found)
        if chosen is None:
            return None
        queue = names[pick.names.index(chosen)]
        with self.db(commit=True) as curs:
            curs.execute(
                "select id, data from task where queue = ? order by priority desc, id limit 1",
                (queue,),
            )
            row = curs.fetchone()
            if row is not None:
                curs.execute("delete from task where id = ?", (row[0],))
                return row[1] if curs.rowcount == 1 else None
        return None

    def enqueue(self, data: bytes, priority: float | None = None) -> None:
        """Huey's enqueue, to the message's named queue (see ``KitRedisStorage``)."""
        queue = queue_of(data)
        name = sqlite_name(self.name, queue)
        with self.db(commit=True) as curs:
            curs.execute(
                "insert into task (queue, data, priority) values (?, ?, ?)",
                (name, self.to_blob(data), priority or 0),
            )
            self.queued()

    @contextlib.contextmanager
    def db(self, commit: bool = False, close: bool = False) -> Iterator[Any]:
        rings = False
        try:
            with super().db(commit, close) as cursor:
                try:
                    yield cursor
                finally:  # still under Huey's lock: the flag is this transaction's
                    rings, self._queued = self._queued, False
        except sqlite3.Error as exc:
            # READONLY, IOERR, CANTOPEN; a full disk or a lock passes by itself.
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in (8, 10, 14):
                self.close()
            raise
        if rings and commit and self.wake_directory is not None:
            wakeup.ring(self.wake_directory)  # committed: the job can be taken


@dataclass
class QueueSize:
    """One named queue: how many wait, the next to be taken, how many are scheduled."""

    depth: int
    next_message: bytes | None
    scheduled: int = 0


def _count_scheduled(sizes: dict[str, QueueSize], messages: list[bytes]) -> None:
    for raw in messages:
        size = sizes.get(queue_of(raw))
        if size is not None:
            size.scheduled += 1


@dataclass(frozen=True)
class DueMove:
    """One due message on the schedule, and what goes on the queue for it."""

    ref: Any  # where it is: the message itself (Redis), or its row id (SQLite)
    raw: bytes  # the message as it is on the schedule
    message: bytes  # what to queue: the same bytes, unless its expiry was resolved anew
    priority: float = 0
    queue: str = "default"  # the named queue it goes to (kit/queues.py)


# Move due messages from Huey's schedule (KEYS[1], a sorted set scored by
# eta) to their queues: each message ARGV[i] that is still on the schedule,
# and due by ARGV[1], leaves it and its replacement ARGV[i + 1] is LPUSHed
# onto the list ARGV[i + 2] (Huey's queue, KEYS[2], or a named queue's), as
# Huey's enqueue does, in the order given. Returns a 1 or a 0 per message:
# moved, or gone (another scheduler moved it first).
_MOVE_DUE_LUA = """
local due, moved = tonumber(ARGV[1]), {}
for i = 2, #ARGV, 3 do
    local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if score and tonumber(score) <= due then
        redis.call('ZREM', KEYS[1], ARGV[i])
        redis.call('LPUSH', ARGV[i + 2], ARGV[i + 1])
        table.insert(moved, 1)
    else
        table.insert(moved, 0)
    end
end
return moved
"""


@dataclass(frozen=True)
class RedisQueue:
    """Huey's Redis storage of one queue: the connection and keys the kit shares.

    The queue is a list: Huey LPUSHes new messages and pops from the right
    (BRPOP), so the next message is at index -1 and RPUSH puts one in front.
    The schedule is a sorted set of messages, scored by their eta as
    ``schedule_score`` (Huey's ``convert_ts``) gives it.
    """

    conn: redis.Redis
    name: str
    queue_key: str
    schedule_key: str
    flags_key: str  # the hash of results and revoke flags; "" if they live elsewhere
    blocking: bool
    read_timeout: float
    schedule_score: Callable[[datetime.datetime], float]

    def due(self, now: datetime.datetime, limit: int) -> list[tuple[Any, bytes]]:
        """The first ``limit`` messages due by ``now``, as Huey reads them: eta order."""
        score = self.schedule_score(now)
        found = self.conn.zrangebyscore(self.schedule_key, "-inf", score, start=0, num=limit)
        return [(raw, raw) for raw in found]

    def move_due(self, moves: list[DueMove], now: datetime.datetime) -> list[bool]:
        """Move these due messages to the back of the queue, in order, in one step."""
        if not moves:
            return []
        args: list[Any] = [self.schedule_score(now)]
        for move in moves:
            args += [move.raw, move.message, redis_key(self.queue_key, move.queue)]
        flags = self._move_due_script(keys=[self.schedule_key, self.queue_key], args=args)
        return [bool(flag) for flag in flags]

    def named_sizes(self, names: list[str], scan: int) -> dict[str, QueueSize]:
        """Each named queue's depth and next message, and its jobs on the schedule.

        The schedule holds every queue's jobs: the first ``scan`` are read
        and counted by queue (``QueueSize.scheduled`` is a lower bound past that).
        """
        pipe = self.conn.pipeline(transaction=False)
        for name in names:
            key = redis_key(self.queue_key, name)
            pipe.llen(key)
            pipe.lindex(key, -1)  # LPUSH in, pop right: the tail is next
        pipe.zrange(self.schedule_key, 0, scan - 1)
        found = pipe.execute()
        sizes = {name: QueueSize(found[2 * i], found[2 * i + 1]) for i, name in enumerate(names)}
        _count_scheduled(sizes, found[-1])
        return sizes

    @functools.cached_property
    def _move_due_script(self) -> Any:
        return self.conn.register_script(_MOVE_DUE_LUA)


def redis_queue(storage: Any) -> RedisQueue | None:
    """The Redis handle of ``storage``; None if it is not Huey's Redis storage."""
    if not isinstance(storage, RedisStorage):
        return None
    flags = storage.result_key if isinstance(storage.result_key, str) else ""
    return RedisQueue(
        storage.conn,
        storage.name,
        storage.queue_key,
        storage.schedule_key,
        flags,
        storage.blocking,
        storage.read_timeout,
        storage.convert_ts,
    )


class SqliteQueue:
    """Huey's SQLite storage of one queue, and its tables as the kit uses them.

    ``db(commit=False)`` is a cursor in one transaction (exclusive when
    committing) on Huey's own connection, under its lock; ``sql(query,
    params, commit, results)`` runs one statement. Huey's tables: ``task``
    (the queue; the next message has the highest priority, then the lowest
    row id), ``schedule`` (its ``timestamp`` is the eta's ``timestamp()``)
    and ``kv`` (results and revoke flags).
    """

    def __init__(self, storage: SqliteStorage):
        self.name: str = storage.name
        self.db: Callable[..., contextlib.AbstractContextManager[Any]] = storage.db
        self.sql: Callable[..., Any] = storage.sql
        # Tells the storage to ring the sleeping workers after the commit.
        self.queued: Callable[[], None] = getattr(storage, "queued", _nothing)

    def queue_name(self, queue: str) -> str:
        """The ``task.queue`` value of a named queue."""
        return sqlite_name(self.name, queue)

    def has_queued(self, names: Iterable[str] | None = None) -> list[str]:
        """Which of these ``task.queue`` values have rows (Huey's queue's by default).

        A cheap look that takes no write lock, as Huey's dequeue starts.
        """
        names = [self.name] if names is None else list(names)
        query = " union all ".join(
            ["select ? where exists (select 1 from task where queue = ?)"] * len(names)
        )
        rows = self.sql(query, [v for name in names for v in (name, name)], results=True)
        return [row[0] for row in rows]

    def next_queued(self, curs: Any, name: str | None = None) -> tuple[int, bytes, float] | None:
        """The row id, message and priority that Huey would dequeue next."""
        curs.execute(
            "select id, data, priority from task where queue = ? "
            "order by priority desc, id limit 1",
            (name or self.name,),
        )
        row = curs.fetchone()
        return None if row is None else (row[0], bytes(row[1]), row[2])

    def take(self, curs: Any, row_id: int) -> None:
        curs.execute("delete from task where id = ?", (row_id,))

    def enqueue(
        self,
        curs: Any,
        raw: bytes,
        priority: float,
        front: bool = False,
        queue: str | None = None,
    ) -> None:
        """The row Huey's enqueue writes; ``front``: first in line at its priority.

        ``queue``: the named queue; None, the one written in the message.
        """
        row_id = "(select coalesce(min(id), 1) - 1 from task)" if front else "null"
        curs.execute(
            f"insert into task (id, queue, data, priority) values ({row_id}, ?, ?, ?)",
            (self.queue_name(queue or queue_of(raw)), raw, priority or 0),
        )
        self.queued()

    def enqueue_all(self, curs: Any, messages: Iterable[tuple[bytes, float]]) -> int:
        """Queue messages in order, behind what is queued; returns how many."""
        rows = [(self.queue_name(queue_of(raw)), raw, priority or 0) for raw, priority in messages]
        curs.executemany("insert into task (queue, data, priority) values (?, ?, ?)", rows)
        if rows:
            self.queued()
        return len(rows)

    def add_to_schedule(self, curs: Any, raw: bytes, eta: datetime.datetime) -> None:
        """The row Huey's ``add_to_schedule`` writes, for Huey's eta (naive UTC)."""
        curs.execute(
            "insert into schedule (queue, data, timestamp) values (?, ?, ?)",
            (self.name, raw, eta.timestamp()),
        )

    def delete_flag(self, curs: Any, key: str) -> None:
        """Delete a revoke flag (a row of Huey's key/value table)."""
        curs.execute("delete from kv where queue = ? and key = ?", (self.name, key))

    def named_sizes(self, names: list[str], scan: int) -> dict[str, QueueSize]:
        """Each named queue's depth and next message, and its jobs on the schedule."""
        sizes = {}
        with self.db() as curs:
            for name in names:
                queue = self.queue_name(name)
                curs.execute("select count(*) from task where queue = ?", (queue,))
                depth = curs.fetchone()[0]
                row = self.next_queued(curs, queue) if depth else None
                sizes[name] = QueueSize(depth, row[1] if row else None)
            curs.execute(
                "select data from schedule where queue = ? order by timestamp limit ?",
                (self.name, scan),
            )
            _count_scheduled(sizes, [bytes(row[0]) for row in curs.fetchall()])
        return sizes

    def sizes(self, curs: Any) -> tuple[int, int]:
        """How many messages are queued, and how many scheduled."""
        curs.execute(
            "select count(*) from task where queue = ? or queue glob ?",
            (self.name, f"{self.name}.q.*"),
        )
        queued = curs.fetchone()[0]
        curs.execute("select count(*) from schedule where queue = ?", (self.name,))
        return queued, curs.fetchone()[0]

    def due(self, now: datetime.datetime, limit: int) -> list[tuple[Any, bytes]]:
        """The first ``limit`` messages due by ``now``, as Huey reads them: eta order."""
        rows = self.sql(
            "select id, data from schedule where queue = ? and timestamp <= ? "
            "order by timestamp, id limit ?",
            (self.name, now.timestamp(), limit),
            results=True,
        )
        return [(row_id, bytes(data)) for row_id, data in rows]

    def move_due(self, moves: list[DueMove], now: datetime.datetime) -> list[bool]:
        """Move these due messages to the back of the queue, in order, in one transaction."""
        moved = []
        with self.db(commit=True) as curs:
            for move in moves:
                # Still there, and still the same message: once a row is gone
                # (another scheduler moved it), SQLite may give its id to a new one.
                curs.execute(
                    "delete from schedule where id = ? and queue = ? and data = ?",
                    (move.ref, self.name, move.raw),
                )
                moved.append(curs.rowcount == 1)
                if moved[-1]:
                    self.enqueue(curs, move.message, move.priority, queue=move.queue)
        return moved


def _nothing() -> None:
    pass


def sqlite_queue(storage: Any) -> SqliteQueue | None:
    """The SQLite handle of ``storage``; None if it is not Huey's SQLite storage."""
    return SqliteQueue(storage) if isinstance(storage, SqliteStorage) else None
