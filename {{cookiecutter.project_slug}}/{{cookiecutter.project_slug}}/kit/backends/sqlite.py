"""The SQLite backend: every store of the kit in the queue's database file.

With ``tasks=None`` (immediate mode) there is no queue file: history and
controls share a private in-memory database, metrics and unique claims live
in this process, and there are no leases.
"""

from __future__ import annotations

from typing import Any

from ..controls.model import LogLimits
from ..controls.sqlite_store import SqliteControlStore
from ..history.model import Settings as HistorySettings
from ..history.sqlite_store import SqliteStore
from ..huey_seam import SqliteQueue
from ..leases.sqlite_store import SqliteLeases
from ..metrics.stores import MemoryMetricsStore, SqliteMetricsStore
from ..unique import MemoryClaims, SqliteClaims


class SqliteBackend:
    """Stores that share the queue's SQLite file (or, in tests, memory)."""

    name = "sqlite"

    def __init__(self, storage: Any, tasks: SqliteQueue | None):
        self.storage = storage
        self.tasks = tasks

    def history_store(self, settings: HistorySettings) -> SqliteStore:
        return SqliteStore(self.storage.name, settings, self.tasks)

    def control_store(self, history: SqliteStore, limits: LogLimits) -> SqliteControlStore:
        # Controls live in the history's database: its file, or its memory.
        return SqliteControlStore(history.db, self.storage.name, limits, self.tasks)

    def metrics_store(self) -> SqliteMetricsStore | MemoryMetricsStore:
        if self.tasks is None:
            return MemoryMetricsStore(self.storage)
        return SqliteMetricsStore(self.storage, self.tasks)

    def claims(self) -> SqliteClaims | MemoryClaims:
        return MemoryClaims() if self.tasks is None else SqliteClaims(self.tasks)

    def leases(self) -> SqliteLeases | None:
        return None if self.tasks is None else SqliteLeases(self.tasks)
