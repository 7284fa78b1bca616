"""One seam to the queue's backends: Redis or SQLite, picked once per app.

Beside Huey's queue the kit keeps its own state, in the same backend so that
one server (or one file) holds everything: job history, job controls
(progress, logs, pauses, audit), metrics counters, unique-job claims,
idempotency keys and leases. Each has a Redis and a SQLite implementation. :func:`open_backend`
looks at the queue's storage once and returns the backend that builds all of
them, so no other part of the kit asks which backend it runs on.

Immediate mode (tests) has no queue backend: Huey keeps tasks in memory. The
SQLite backend then keeps the kit's state in a private in-memory database,
and has no leases (nothing is ever taken off a queue).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import redis
from huey import Huey

if TYPE_CHECKING:
    from .redis import RedisBackend
    from .sqlite import SqliteBackend

    Backend = RedisBackend | SqliteBackend

# What a broken backend raises, wherever the kit talks to it: turned into
# "503, try again later" for a request, a retry later for a worker.
BACKEND_ERRORS = (redis.RedisError, sqlite3.Error, OSError)


def open_backend(huey: Huey) -> Backend:
    """The backend that holds ``huey``'s queue, with a factory for every store."""
    # Imported here, not at the top: the stores' modules import
    # BACKEND_ERRORS from this package.
    from ..huey_seam import redis_queue, sqlite_queue
    from .redis import RedisBackend
    from .sqlite import SqliteBackend

    storage = huey.storage
    if (queue := redis_queue(storage)) is not None:
        return RedisBackend(queue)
    if huey.immediate:
        return SqliteBackend(storage, tasks=None)
    if (tasks := sqlite_queue(storage)) is not None:
        return SqliteBackend(storage, tasks)
    raise TypeError(f"the job kit supports Redis and SQLite, not {type(storage).__name__}")
