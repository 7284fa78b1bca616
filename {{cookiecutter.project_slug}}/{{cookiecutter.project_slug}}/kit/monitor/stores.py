"""What sign-ins share between web processes: failed attempts and ended sessions.

Every gunicorn worker, on every machine, answers the monitor and
``/metrics``. If each counted failed sign-ins on its own, N processes would
allow N times the limit; if each remembered logouts on its own, a cookie
would still work on the processes that did not see the logout. So both live
in the queue's backend, next to the jobs:

* failures: the times of an address's recent failed attempts, at most
  ``limit`` of them, forgotten after the window (a Redis sorted set with an
  expiry, or rows of a SQLite table);
* revoked sessions: the id of each session that logged out, kept until the
  session would have expired anyway (a Redis key with an expiry, or a row).

Addresses are stored as hashes: a forwarded address is whatever the client
wrote, and must not choose the shape of a Redis key.

Immediate mode (tests) has no shared backend: :class:`MemoryAuthStore`
keeps both in this process.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

from ..huey_seam import RedisQueue, SqliteQueue


def address_key(address: str) -> str:
    """A fixed-size name for a client address, whatever it holds."""
    return hashlib.sha256(address.encode("utf-8", "replace")).hexdigest()[:32]


class RedisAuthStore:
    """Failures and revocations as short-lived keys beside the queue's."""

    def __init__(self, queue: RedisQueue):
        self.conn = queue.conn
        self.prefix = f"huey.auth.{queue.name}"

    def failures(self, address: str, since: float) -> list[float]:
        """Times of ``address``'s failures after ``since``, oldest first."""
        key = f"{self.prefix}.failed.{address_key(address)}"
        found = self.conn.zrangebyscore(key, f"({since}", "+inf", withscores=True)
        return [score for _, score in found]

    def add_failure(self, address: str, at: float, window: float, keep: int) -> None:
        key = f"{self.prefix}.failed.{address_key(address)}"
        pipe = self.conn.pipeline(transaction=True)
        pipe.zadd(key, {f"{at}:{secrets.token_hex(4)}": at})
        pipe.zremrangebyscore(key, "-inf", at - window)
        pipe.zremrangebyrank(key, 0, -keep - 1)  # only the newest ``keep`` matter
        pipe.expire(key, max(1, int(window) + 1))
        pipe.execute()

    def revoke(self, session_id: str, until: float) -> None:
        ttl = max(1, int(until - time.time()) + 1)
        self.conn.set(f"{self.prefix}.revoked.{session_id}", b"1", ex=ttl)

    def is_revoked(self, session_id: str) -> bool:
        return bool(self.conn.exists(f"{self.prefix}.revoked.{session_id}"))


class SqliteAuthStore:
    """Failures and revocations as rows in the queue's SQLite file."""

    DDL = (
        "create table if not exists auth_failure (queue text not null,"
        " address text not null, at real not null)",
        "create index if not exists auth_failure_address on auth_failure (queue, address, at)",
        "create table if not exists auth_revoked (queue text not null,"
        " session text not null, until real not null, primary key (queue, session))",
    )

    def __init__(self, tasks: SqliteQueue):
        self.tasks = tasks
        self.queue = tasks.name
        with tasks.db(commit=True) as cursor:
            for statement in self.DDL:
                cursor.execute(statement)

    def failures(self, address: str, since: float) -> list[float]:
        rows = self.tasks.sql(
            "select at from auth_failure where queue = ? and address = ? and at > ? order by at",
            (self.queue, address_key(address), since),
            results=True,
        )
        return [at for (at,) in rows]

    def add_failure(self, address: str, at: float, window: float, keep: int) -> None:
        with self.tasks.db(commit=True) as cursor:
            cursor.execute(
                "insert into auth_failure (queue, address, at) values (?, ?, ?)",
                (self.queue, address_key(address), at),
            )
            # Failures are rare: forgetting old ones here keeps the table small.
            cursor.execute(
                "delete from auth_failure where queue = ? and at <= ?", (self.queue, at - window)
            )
            cursor.execute(
                "delete from auth_failure where queue = ? and address = ? and at not in"
                " (select at from auth_failure where queue = ? and address = ?"
                " order by at desc limit ?)",
                (self.queue, address_key(address), self.queue, address_key(address), keep),
            )

    def revoke(self, session_id: str, until: float) -> None:
        with self.tasks.db(commit=True) as cursor:
            cursor.execute(
                "delete from auth_revoked where queue = ? and until < ?", (self.queue, time.time())
            )
            cursor.execute(
                "insert or replace into auth_revoked (queue, session, until) values (?, ?, ?)",
                (self.queue, session_id, until),
            )

    def is_revoked(self, session_id: str) -> bool:
        rows = self.tasks.sql(
            "select 1 from auth_revoked where queue = ? and session = ?",
            (self.queue, session_id),
            results=True,
        )
        return bool(rows)


class MemoryAuthStore:
    """This process only: immediate mode, and unit tests of the throttle."""

    def __init__(self, max_addresses: int = 10_000):
        self.max_addresses = max_addresses
        # address -> its recent failure times; the least recently failed first
        self._failures: dict[str, list[float]] = {}
        self._revoked: dict[str, float] = {}
        self._lock = threading.Lock()

    def failures(self, address: str, since: float) -> list[float]:
        with self._lock:
            return [t for t in self._failures.get(address, ()) if t > since]

    def add_failure(self, address: str, at: float, window: float, keep: int) -> None:
        with self._lock:
            recent = [t for t in self._failures.pop(address, ()) if t > at - window]
            self._failures[address] = [*recent, at][-keep:]  # re-inserted last: the newest
            while len(self._failures) > self.max_addresses:
                del self._failures[next(iter(self._failures))]

    def revoke(self, session_id: str, until: float) -> None:
        with self._lock:
            now = time.time()
            self._revoked = {s: u for s, u in self._revoked.items() if u >= now}
            self._revoked[session_id] = until

    def is_revoked(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._revoked


# What an auth store is, whichever backend holds it.
AuthStore = RedisAuthStore | SqliteAuthStore | MemoryAuthStore
