"""The SQLite backend: every store of the kit in the queue's database file.

With ``tasks=None`` (immediate mode) there is no queue file: history and
controls (and idempotency keys) share a private in-memory database, metrics
and unique claims live in this process, and there are no leases.
"""

from __future__ import annotations

import time
from typing import Any

from ..controls.model import LogLimits
from ..controls.sqlite_store import SqliteControlStore
from ..history.model import Settings as HistorySettings
from ..history.sqlite_store import SqliteStore
from ..huey_seam import SqliteQueue
from ..idempotency import SqliteKeys
from ..leases.sqlite_store import SqliteLeases
from ..metrics.stores import MemoryMetricsStore, SqliteMetricsStore
from ..monitor.stores import MemoryAuthStore, SqliteAuthStore
from ..unique import MemoryClaims, SqliteClaims

# The readiness check's one row per queue: when it last wrote (check_writable).
READY_TABLE = "create table if not exists kit_ready (queue text primary key, at real not null)"
READY_WRITE = (
    "insert into kit_ready (queue, at) values (?, ?) "
    "on conflict (queue) do update set at = excluded.at"
)


class SqliteBackend:
    """Stores that share the queue's SQLite file (or, in tests, memory)."""

    name = "sqlite"

    def __init__(self, storage: Any, tasks: SqliteQueue | None):
        self.storage = storage
        self.tasks = tasks
        self._ready_table = False

    def history_store(self, settings: HistorySettings) -> SqliteStore:
        return SqliteStore(self.storage.name, settings, self.tasks)

    def control_store(self, history: SqliteStore, limits: LogLimits) -> SqliteControlStore:
        # Controls live in the history's database: its file, or its memory.
        return SqliteControlStore(history.db, self.storage.name, limits, self.tasks)

    def metrics_store(self) -> SqliteMetricsStore | MemoryMetricsStore:
        if self.tasks is None:
            return MemoryMetricsStore(self.storage)
        return SqliteMetricsStore(self.storage, self.tasks)

    def auth_store(self) -> SqliteAuthStore | MemoryAuthStore:
        # Failed sign-ins and logged-out sessions (monitor/stores.py).
        return MemoryAuthStore() if self.tasks is None else SqliteAuthStore(self.tasks)

    def claims(self) -> SqliteClaims | MemoryClaims:
        return MemoryClaims() if self.tasks is None else SqliteClaims(self.tasks)

    def idempotency_keys(self, history: SqliteStore, window: float) -> SqliteKeys:
        # In the history's database: the queue's file, or in immediate mode
        # its memory, where the dispatch's transaction writes.
        return SqliteKeys(history.db, self.storage.name, window)

    def leases(self) -> SqliteLeases | None:
        return None if self.tasks is None else SqliteLeases(self.tasks)

    def check_writable(self) -> None:
        """Commit one small write: reading the queue is not enough to be ready.

        A full disk or a read-only file system still lets SQLite read, so the
        web app would answer every dispatch with 503 while /readyz said 200.
        One row per queue, updated in a write transaction like a dispatch's,
        fails as a dispatch would: SQLITE_FULL, or SQLITE_READONLY.
        """
        if self.tasks is None:  # immediate mode: memory always takes writes
            return
        with self.tasks.db(commit=True) as curs:
            if not self._ready_table:
                curs.execute(READY_TABLE)
            curs.execute(READY_WRITE, (self.tasks.name, time.time()))
        self._ready_table = True
