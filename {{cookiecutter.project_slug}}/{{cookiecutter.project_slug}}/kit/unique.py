"""Unique jobs: at most one job per uniqueness key within a time window.

A job declared with ``unique_key`` and ``unique_for`` (see ``registry.job``)
claims its key when it is dispatched. A second dispatch with the same key
while the claim lasts queues nothing and gets the first job's id back. The
window starts at the first dispatch and does not end when that job
finishes: it is a de-duplication window, like an idempotency key.

Claims carry their own expiry, so they work on any Redis (Huey's lock TTLs
need Redis 7.4+): a ``SET key id NX PX window`` on Redis, a row with an
expiry time in the queue's SQLite file, a dict in immediate mode (tests).
"""

from __future__ import annotations

import threading
import time

from .huey_seam import RedisQueue, SqliteQueue

# Delete a claim only if it still names the job that made it.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisClaims:
    def __init__(self, queue: RedisQueue):
        self.conn = queue.conn
        self.prefix = f"huey.unique.{queue.name}"
        self._release = self.conn.register_script(_RELEASE_LUA)

    def _key(self, job_name: str, key: str) -> str:
        return f"{self.prefix}.{job_name}.{key}"

    def claim(self, job_name: str, key: str, job_id: str, window: float) -> str | None:
        name = self._key(job_name, key)
        px = max(1, int(window * 1000))
        for _ in range(5):
            if self.conn.set(name, job_id, nx=True, px=px):
                return None
            holder = self.conn.get(name)
            if holder is not None:
                return holder.decode()
            # The claim expired between the two commands: try again.
        raise RuntimeError(f"could not claim the unique key of {job_name}")

    def release(self, job_name: str, key: str, job_id: str) -> None:
        self._release(keys=[self._key(job_name, key)], args=[job_id])


class SqliteClaims:
    DDL = (
        "create table if not exists kit_unique (queue text not null, key text not null, "
        "job_id text not null, expires_at real not null, primary key (queue, key))"
    )

    def __init__(self, tasks: SqliteQueue):
        # Claims live in the queue's file, on Huey's connection.
        self.db, self.sql = tasks.db, tasks.sql
        self.queue = tasks.name
        self.sql(self.DDL, commit=True)

    def claim(self, job_name: str, key: str, job_id: str, window: float) -> str | None:
        now = time.time()
        name = f"{job_name}.{key}"
        with self.db(commit=True) as curs:
            curs.execute(
                "delete from kit_unique where queue = ? and key = ? and expires_at <= ?",
                (self.queue, name, now),
            )
            curs.execute(
                "insert or ignore into kit_unique (queue, key, job_id, expires_at) "
                "values (?, ?, ?, ?)",
                (self.queue, name, job_id, now + window),
            )
            if curs.rowcount == 1:
                # Now and then, sweep claims that expired without a re-dispatch.
                if hash(job_id) % 64 == 0:
                    curs.execute(
                        "delete from kit_unique where queue = ? and expires_at <= ?",
                        (self.queue, now),
                    )
                return None
            curs.execute(
                "select job_id from kit_unique where queue = ? and key = ?", (self.queue, name)
            )
            return curs.fetchone()[0]

    def release(self, job_name: str, key: str, job_id: str) -> None:
        self.sql(
            "delete from kit_unique where queue = ? and key = ? and job_id = ?",
            (self.queue, f"{job_name}.{key}", job_id),
            commit=True,
        )


class MemoryClaims:
    """Immediate mode: claims live as long as the process."""

    def __init__(self) -> None:
        self._claims: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def claim(self, job_name: str, key: str, job_id: str, window: float) -> str | None:
        now = time.monotonic()
        with self._lock:
            holder = self._claims.get(f"{job_name}.{key}")
            if holder is not None and holder[1] > now:
                return holder[0]
            self._claims[f"{job_name}.{key}"] = (job_id, now + window)
            return None

    def release(self, job_name: str, key: str, job_id: str) -> None:
        with self._lock:
            if self._claims.get(f"{job_name}.{key}", ("",))[0] == job_id:
                del self._claims[f"{job_name}.{key}"]


Claims = RedisClaims | SqliteClaims | MemoryClaims
