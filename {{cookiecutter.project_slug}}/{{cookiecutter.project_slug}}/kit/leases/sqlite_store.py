"""Leases on SQLite: tables in the queue's own file, next to Huey's ``task`` table."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from .. import queues
from ..backends import BACKEND_ERRORS
from ..huey_seam import SqliteQueue
from ..queues import Pick
from .model import Lease, Recovery

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
    errors: tuple[type[BaseException], ...] = BACKEND_ERRORS
    # One job per take: SQLite workers poll, and a poll is no round trip to
    # a server, so taking jobs ahead would save little.
    prefetches = False
    clears_flags = True  # Huey's flags are rows of its kv table, next to ours

    def __init__(self, tasks: SqliteQueue):
        self.tasks = tasks  # Huey's queue, in the same file
        self.queue = tasks.name
        self.db = tasks.db
        self.sql = tasks.sql
        with self.db(commit=True) as curs:
            for statement in SQLITE_DDL:
                curs.execute(statement)

    def register(self, worker: str, expires_at: float) -> None:
        self.sql(_SQLITE_REGISTER, (self.queue, worker, expires_at), commit=True)

    def take(
        self, worker: str, expires_at: float | None, ahead: int = 0, pick: Pick | None = None
    ) -> list[Lease]:
        """Move the next job of the queue ``pick`` chooses into this worker's leases."""
        pick = pick or Pick((queues.DEFAULT,), (1,), False, 0.0)
        if not pick.names:  # every queue this worker serves is paused
            return []
        # A cheap look first, as Huey's dequeue does, so that idle polling
        # never takes the write lock.
        names = {self.tasks.queue_name(name): name for name in pick.names}
        chosen = pick.choose([names[found] for found in self.tasks.has_queued(names)])
        if chosen is None:
            return []
        with self.db(commit=True) as curs:
            row = self.tasks.next_queued(curs, self.tasks.queue_name(chosen))
            if row is None:
                return []
            task_row, data, priority = row
            self.tasks.take(curs, task_row)
            curs.execute(
                "insert into kit_lease (queue, worker, data, priority) values (?, ?, ?, ?)",
                (self.queue, worker, data, priority),
            )
            lease = Lease(data, curs.lastrowid, priority)
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
            self.tasks.delete_flag(curs, lease.clear_on_release)

    def release(self, lease: Lease, job_id: str) -> None:
        with self.db(commit=True) as curs:
            self.add_release(curs, lease, job_id)

    def requeue(self, lease: Lease, front: bool = False) -> bool:
        with self.db(commit=True) as curs:
            curs.execute("delete from kit_lease where id = ?", (lease.ref,))
            if curs.rowcount != 1:
                return False
            self.tasks.enqueue(curs, lease.raw, lease.priority, front)
            return True

    def bury(self, lease: Lease) -> None:
        # No dead-letter table: the caller logs the message before this.
        self.drop(lease)

    @staticmethod
    def identity(lease: Lease) -> Any:
        return lease.ref

    def own(self, worker: str) -> list[Lease]:
        rows = self.sql(
            "select id, data, priority from kit_lease where queue = ? and worker = ? "
            "and rescued = 0",
            (self.queue, worker),
            results=True,
        )
        return [Lease(bytes(data), row_id, priority) for row_id, data, priority in rows]

    def drop(self, lease: Lease) -> None:
        self.sql("delete from kit_lease where id = ?", (lease.ref,), commit=True)

    def unregister(self, worker: str) -> bool:
        with self.db(commit=True) as curs:
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
        rows = self.sql(
            "select worker from kit_worker where queue = ? and expires_at <= ? and worker != ? "
            # A lease whose worker has no registration at all counts too.
            "union select distinct worker from kit_lease where queue = ? and worker != ? "
            "and worker not in (select worker from kit_worker where queue = ?)",
            (self.queue, now, me, self.queue, me, self.queue),
            results=True,
        )
        return [row[0] for row in rows]

    def adopt(self, worker: str, me: str) -> Iterator[Lease]:
        with self.db(commit=True) as curs:
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
        rows = self.sql(
            "select id, data, priority from kit_lease where queue = ? and worker = ? "
            "and rescued = 1 order by id",
            (self.queue, me),
            results=True,
        )
        for row_id, data, priority in rows:
            yield Lease(bytes(data), row_id, priority)

    def recoveries(self, job_id: str) -> int:
        rows = self.sql(
            "select count from kit_recovery where queue = ? and job_id = ?",
            (self.queue, job_id),
            results=True,
        )
        return rows[0][0] if rows else 0

    def settle(self, lease: Lease, new_raw: bytes | None, recovery: Recovery) -> None:
        with self.db(commit=True) as curs:
            curs.execute("delete from kit_lease where id = ?", (lease.ref,))
            if curs.rowcount != 1:
                return
            if new_raw is None:
                curs.execute(
                    "delete from kit_recovery where queue = ? and job_id = ?",
                    (self.queue, recovery.job_id),
                )
                return
            self.tasks.enqueue(curs, new_raw, lease.priority, front=True)
            curs.execute(
                "insert into kit_recovery (queue, job_id, count) values (?, ?, ?) "
                "on conflict (queue, job_id) do update set count = excluded.count",
                (self.queue, recovery.job_id, recovery.recoveries),
            )

    def forget(self, worker: str, now: float) -> None:
        with self.db(commit=True) as curs:
            curs.execute(
                "select 1 from kit_lease where queue = ? and worker = ? limit 1",
                (self.queue, worker),
            )
            if curs.fetchone() is None:
                curs.execute(
                    "delete from kit_worker where queue = ? and worker = ? and expires_at <= ?",
                    (self.queue, worker, now),
                )
