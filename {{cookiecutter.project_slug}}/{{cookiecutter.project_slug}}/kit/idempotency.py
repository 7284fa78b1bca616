"""Idempotency keys: a client's retry of a dispatch queues nothing new.

A client that sends ``POST /jobs/<name>`` with an ``Idempotency-Key`` header
(the IETF httpapi draft "The Idempotency-Key HTTP Header Field") and never
sees the answer, because of a timeout or a dropped connection, can send the
same request again with the same key. Within ``IDEMPOTENCY_WINDOW`` seconds
of the first, it gets the first job's id back (200, ``"duplicate": true``)
instead of a second job. The same key with another payload, or for another
job, is a client's bug: 422 ``idempotency_key_reused``. After the window the
key is free again.

The key is recorded in the very write that queues its job: the job's record,
its queue message and the key, all or nothing (one Lua call on Redis, one
transaction on SQLite; see :class:`RedisGuard` and :meth:`SqliteKeys.guard`).
So no job is queued without its key, no key is kept without its job, and a
queue that is down records neither. Unique jobs (``unique.py``) claim their
key before that write and release it if the write fails; an idempotency key
cannot be claimed apart, since a claim without its job would answer a retry
with the id of a job that never existed.

Keys are shared by every job and every caller of a queue: the record keeps
the job's name, so a key sent for two different jobs is caught as reused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from .huey_seam import RedisQueue

HEADER = "Idempotency-Key"
ENVIRON_KEY = "HTTP_IDEMPOTENCY_KEY"
# Long enough for a UUID, a ULID or a hash with a prefix; short enough to
# keep as a Redis key or a SQLite primary key.
MAX_LENGTH = 255
# A key's characters: printable ASCII, as in a Structured Fields string.
KEY = re.compile(r"[\x20-\x7e]+")
# The header's value: a Structured Fields string ("..."), as the draft
# specifies, or the bare key that most clients send. A bare key has no
# space, no quote, no backslash and no comma (which joins repeated headers).
QUOTED = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
BARE = re.compile(r"[\x21\x23-\x2b\x2d-\x5b\x5d-\x7e]+")


class InvalidIdempotencyKey(ValueError):
    """The key is empty, too long, or has characters other than printable ASCII."""


class IdempotencyKeyReused(ValueError):
    """The key was sent before, within the window, for a different request."""


class KeyHeld(Exception):
    """The write found its key held: it wrote nothing. ``value`` is what holds it."""

    def __init__(self, value: str):
        super().__init__(value)
        self.value = value


def from_environ(environ: dict[str, Any]) -> str | None:
    """The request's ``Idempotency-Key``, or None; :class:`InvalidIdempotencyKey` if malformed.

    Read from the WSGI environ, cheaper than the parsed headers. A server
    joins repeated headers with commas, which no bare key may hold.
    """
    value = environ.get(ENVIRON_KEY)
    if value is None:
        return None
    value = value.strip(" \t")
    if quoted := QUOTED.fullmatch(value):
        value = re.sub(r"\\(.)", r"\1", quoted[1])
    elif not BARE.fullmatch(value):
        raise InvalidIdempotencyKey(
            f"the {HEADER} header must be a key of printable ASCII characters, bare "
            'or as a quoted string ("..."), with no space, quote, backslash or comma when bare'
        )
    return check_key(value)


def check_key(key: str) -> str:
    """``key`` if it is a valid idempotency key, else :class:`InvalidIdempotencyKey`."""
    if not isinstance(key, str) or len(key) > MAX_LENGTH or not KEY.fullmatch(key):
        raise InvalidIdempotencyKey(
            f"an idempotency key is 1 to {MAX_LENGTH} printable ASCII characters"
        )
    return key


class Claim(NamedTuple):
    """A dispatch's idempotency key, and the request it stands for."""

    key: str
    job: str
    # The validated payload as canonical JSON, hashed: two payloads that
    # load to the same data are the same request.
    fingerprint: str

    @classmethod
    def of(cls, key: str, job: str, data: Mapping[str, Any]) -> Claim:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return cls(check_key(key), job, hashlib.sha256(text.encode()).hexdigest())

    def value(self, job_id: str) -> str:
        """What the key holds once its job is queued."""
        return json.dumps({"id": job_id, "job": self.job, "payload": self.fingerprint})

    def first_id(self, held: str) -> str:
        """The id of the job the key holds, if it was queued for this very request."""
        first = json.loads(held)
        if first["job"] != self.job:
            other = f"for another job ({first['job']})"
        elif first["payload"] != self.fingerprint:
            other = "with a different payload"
        else:
            return first["id"]
        raise IdempotencyKeyReused(
            f"the {HEADER} {self.key!r} was already used {other}: a new request needs a new key"
        )


class RedisGuard(NamedTuple):
    """A key for the Redis history store's dispatch script to check and set.

    The script answers with the key's value if it is held, writing nothing;
    else it queues the job and sets the key last (``SET key value PX px``),
    so a write that fails halfway never leaves the key behind.
    """

    key: str
    value: str
    px: int


# What a guarded dispatch hands the history store: a RedisGuard on Redis, on
# SQLite a function that claims the key with the transaction's cursor.
Guard = RedisGuard | Callable[[sqlite3.Cursor], None]


class RedisKeys:
    """Keys as Redis strings with their own expiry: ``huey.idempotency.<queue>.<key>``."""

    def __init__(self, queue: RedisQueue, window: float):
        self.conn = queue.conn
        self.prefix = f"huey.idempotency.{queue.name}"
        self.window = window

    def guard(self, claim: Claim, job_id: str) -> RedisGuard:
        px = max(1, int(self.window * 1000))
        return RedisGuard(f"{self.prefix}.{claim.key}", claim.value(job_id), px)

    def held(self, key: str) -> str | None:
        """What the key holds, or None if it is free."""
        value = self.conn.get(f"{self.prefix}.{key}")
        return None if value is None else value.decode()


class SqliteKeys:
    """Keys as rows with an expiry time, in the history's database (the queue's file)."""

    DDL = (
        "create table if not exists kit_idempotency (queue text not null, key text not null, "
        "value text not null, expires_at real not null, primary key (queue, key))",
        "create index if not exists kit_idempotency_expiry on kit_idempotency (queue, expires_at)",
    )

    def __init__(self, db: Callable[..., Any], queue: str, window: float):
        self.db, self.queue, self.window = db, queue, window
        with self.db(commit=True) as cur:
            for statement in self.DDL:
                cur.execute(statement)

    def guard(self, claim: Claim, job_id: str) -> Callable[[sqlite3.Cursor], None]:
        return functools.partial(self._claim, claim.key, claim.value(job_id))

    def _claim(self, key: str, value: str, cur: sqlite3.Cursor) -> None:
        """Record the key in the dispatch's transaction, or raise KeyHeld (rolling it back)."""
        now = time.time()
        cur.execute(
            "delete from kit_idempotency where queue = ? and key = ? and expires_at <= ?",
            (self.queue, key, now),
        )
        cur.execute(
            "insert or ignore into kit_idempotency (queue, key, value, expires_at) "
            "values (?, ?, ?, ?)",
            (self.queue, key, value, now + self.window),
        )
        if cur.rowcount != 1:
            cur.execute(
                "select value from kit_idempotency where queue = ? and key = ?", (self.queue, key)
            )
            raise KeyHeld(cur.fetchone()[0])
        # Each new key removes up to two expired ones, so the table keeps to
        # the keys of one window without a sweeper.
        cur.execute(
            "delete from kit_idempotency where rowid in (select rowid from kit_idempotency "
            "where queue = ? and expires_at <= ? limit 2)",
            (self.queue, now),
        )

    def held(self, key: str) -> str | None:
        """What the key holds, or None if it is free."""
        with self.db() as cur:
            cur.execute(
                "select value from kit_idempotency where queue = ? and key = ? and expires_at > ?",
                (self.queue, key, time.time()),
            )
            row = cur.fetchone()
        return None if row is None else row[0]


Keys = RedisKeys | SqliteKeys
