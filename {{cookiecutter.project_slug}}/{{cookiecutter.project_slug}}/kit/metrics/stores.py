"""Where the counts live: the queue's own backend, read whole at each scrape.

A Redis hash (and one for worker heartbeats) next to Huey's keys, or two
tables in Huey's SQLite file; in immediate mode (tests), Huey's in-memory
storage. Each store adds a batch of counts in one round trip and reads
the counts and heartbeats a scrape shows as one :class:`Snapshot`.
"""

import collections
import json
import time
from dataclasses import dataclass, field
from typing import Any

from huey.storage import SqliteStorage

from ..huey_seam import RedisQueue, SqliteQueue


@dataclass
class Snapshot:
    """Everything one scrape reads, in one round trip where possible."""

    counters: dict[str, int] = field(default_factory=dict)
    workers: dict[str, tuple[int, float]] = field(default_factory=dict)  # id → (slots, seen)
    # Queue depths and ages are read per named queue (backend.queue_sizes).
    scheduled: int = 0


class RedisMetricsStore:
    def __init__(self, queue: RedisQueue):
        self.queue = queue
        self.key = f"huey.metrics.{queue.name}"
        self.workers_key = f"huey.metrics.{queue.name}.workers"

    def add(self, counts: dict[str, int], heartbeat: tuple[str, int, float] | None) -> None:
        pipe = self.queue.conn.pipeline(transaction=False)
        for key, amount in counts.items():
            pipe.hincrby(self.key, key, amount)
        if heartbeat:
            worker, slots, seen = heartbeat
            if slots:
                pipe.hset(self.workers_key, worker, json.dumps([slots, seen]))
            else:
                pipe.hdel(self.workers_key, worker)
        pipe.execute()

    def read(self, stale_after: float) -> Snapshot:
        pipe = self.queue.conn.pipeline(transaction=False)
        pipe.hgetall(self.key)
        pipe.hgetall(self.workers_key)
        pipe.zcard(self.queue.schedule_key)
        counters, workers, scheduled = pipe.execute()
        snapshot = Snapshot(
            counters={k.decode(): int(v) for k, v in counters.items()},
            scheduled=scheduled,
        )
        snapshot.workers, gone = _split_workers(
            {k.decode(): json.loads(v) for k, v in workers.items()}, stale_after
        )
        if gone:
            self.queue.conn.hdel(self.workers_key, *gone)
        return snapshot


class SqliteMetricsStore:
    DDL = (
        "create table if not exists metrics_counter (queue text not null, key text not null,"
        " value integer not null default 0, primary key (queue, key))",
        "create table if not exists metrics_worker (queue text not null, worker text not null,"
        " slots integer not null, seen real not null, primary key (queue, worker))",
    )

    def __init__(self, storage: SqliteStorage, tasks: SqliteQueue):
        self.storage = storage
        self.tasks = tasks
        with self.tasks.db(commit=True) as cursor:
            for statement in self.DDL:
                cursor.execute(statement)

    def add(self, counts: dict[str, int], heartbeat: tuple[str, int, float] | None) -> None:
        name = self.storage.name
        with self.tasks.db(commit=True) as cursor:
            cursor.executemany(
                "insert into metrics_counter (queue, key, value) values (?, ?, ?)"
                " on conflict (queue, key) do update set value = value + excluded.value",
                [(name, key, amount) for key, amount in counts.items()],
            )
            if heartbeat and heartbeat[1]:
                cursor.execute(
                    "insert or replace into metrics_worker (queue, worker, slots, seen)"
                    " values (?, ?, ?, ?)",
                    (name, *heartbeat),
                )
            elif heartbeat:
                cursor.execute(
                    "delete from metrics_worker where queue = ? and worker = ?",
                    (name, heartbeat[0]),
                )

    def read(self, stale_after: float) -> Snapshot:
        name = self.storage.name
        with self.tasks.db() as cursor:
            counters = cursor.execute(
                "select key, value from metrics_counter where queue = ?", (name,)
            ).fetchall()
            workers = cursor.execute(
                "select worker, slots, seen from metrics_worker where queue = ?", (name,)
            ).fetchall()
        snapshot = Snapshot(counters=dict(counters), scheduled=self.storage.schedule_size())
        snapshot.workers, gone = _split_workers(
            {worker: [slots, seen] for worker, slots, seen in workers}, stale_after
        )
        if gone:
            marks = ",".join("?" * len(gone))
            self.tasks.sql(
                f"delete from metrics_worker where queue = ? and worker in ({marks})",
                (name, *gone),
                commit=True,
            )
        return snapshot


class MemoryMetricsStore:
    """Immediate mode (tests): Huey's in-memory storage, this process only."""

    def __init__(self, storage: Any):
        self.storage = storage
        self.counters: collections.Counter[str] = collections.Counter()
        self.workers: dict[str, list] = {}

    def add(self, counts: dict[str, int], heartbeat: tuple[str, int, float] | None) -> None:
        counters, workers = self.counters, self.workers
        counters.update(counts)
        if heartbeat and heartbeat[1]:
            workers[heartbeat[0]] = [heartbeat[1], heartbeat[2]]
        elif heartbeat:
            workers.pop(heartbeat[0], None)

    def read(self, stale_after: float) -> Snapshot:
        counters, workers = self.counters, self.workers
        snapshot = Snapshot(counters=dict(counters), scheduled=self.storage.schedule_size())
        snapshot.workers, _ = _split_workers(dict(workers), stale_after)
        return snapshot


# What a metrics store is, whichever backend holds it.
MetricsStore = RedisMetricsStore | SqliteMetricsStore | MemoryMetricsStore

# Heartbeats older than this are deleted when read, not just ignored.
FORGET_WORKERS_AFTER = 24 * 3600


def _split_workers(
    raw: dict[str, list], stale_after: float
) -> tuple[dict[str, tuple[int, float]], list[str]]:
    now = time.time()
    alive = {w: (int(s), float(t)) for w, (s, t) in raw.items() if now - t <= stale_after}
    gone = [w for w, (_, t) in raw.items() if now - t > FORGET_WORKERS_AFTER]
    return alive, gone
