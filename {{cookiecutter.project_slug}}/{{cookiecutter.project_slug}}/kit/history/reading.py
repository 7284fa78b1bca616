"""The history's read side: what ``GET /jobs/<id>`` and the monitor show.

``History`` (``__init__.py``) records; these are its reads, each one a read
of its store made presentable: every field present on both backends, a
failure explained by its newest error, overview counters summed up.
"""

from typing import Any

from huey import Huey

from ..queues import DEFAULT as DEFAULT_QUEUE
from . import model
from .redis_store import RedisStore
from .sqlite_store import SqliteStore


class Reading:
    """The reads of a job history (``History`` is one)."""

    huey: Huey
    store: RedisStore | SqliteStore
    settings: model.Settings

    @property
    def backend(self) -> str:
        return self.store.backend

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job as ``GET /jobs/<id>`` shows it (no timeline)."""
        record = self.store.get(job_id)
        if record is None:
            return None
        events = model.parse_events(record.pop("events", None))
        record = self._complete(record, events)
        if record["error"] is not None:
            # The newest event that carries an error explains the failure
            # (a "worker_lost" park, or a "failed" attempt with its traceback).
            failures = [e for e in events if e.get("error")]
            if failures:
                record["error"] = failures[-1]["error"]
        return record

    def detail(self, job_id: str) -> dict[str, Any] | None:
        """The job with its timeline and attempts, for the monitor."""
        record = self.store.get(job_id)
        if record is None:
            return None
        record["events"] = model.parse_events(record.get("events"))
        record = self._complete(record, record["events"])
        record["attempts"] = model.attempts(record["events"])
        return record

    def _complete(self, record: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
        """Every field present, None when unknown: the same shape on both backends."""
        # The named queue the job was sent to; records from before named queues: the default.
        record["queue"] = model.from_dispatch(events, "queue") or DEFAULT_QUEUE
        record["api_key_name"] = model.api_key_name(events)
        for key in model.RECORD_FIELDS:
            record.setdefault(key, None)
        record["attempt"] = record["attempt"] or 0
        record["recovered"] = record["recovered"] or 0
        return record

    def counts(self, name: str | None = None) -> dict[str, int]:
        return self.store.counts(name)

    def page(
        self, status: str, name: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[dict[str, Any]], str | None, int]:
        return self.store.page(status, name, cursor, limit)

    def search_failed(
        self,
        text: str,
        name: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
        budget: int = 10_000,
    ):
        return self.store.search_failed(text, name, cursor, limit, budget)

    def workers(self, at: float | None = None) -> list[dict[str, Any]]:
        """Worker processes by latest heartbeat; stale ones are marked dead."""
        at = model.now() if at is None else at
        found = self.store.workers()
        for worker in found:
            worker["alive"] = at - worker["beat_at"] <= self.settings.worker_dead_after
        return found

    def overview(self, hours: int = 24) -> dict[str, Any]:
        """Counts, latency, throughput and per-job statistics in one read."""
        at = model.now()
        raw = self.store.overview(at, hours=hours)
        totals: dict[str, int] = {}
        per_name: dict[str, dict[str, Any]] = {}
        for bucket in raw["per_hour"]:
            for field, amount in bucket.items():
                name, _, metric = field.rpartition("|")
                if name == model.ALL_JOBS:
                    totals[metric] = totals.get(metric, 0) + amount
                    continue
                stats = per_name.setdefault(name, {"complete": 0, "failed": 0, "hist": {}})
                if metric.startswith("d"):
                    index = int(metric[1:])
                    stats["hist"][index] = stats["hist"].get(index, 0) + amount
                elif metric in ("complete", "failed"):
                    stats[metric] += amount
        jobs = []
        for name in sorted(per_name):
            stats = per_name[name]
            runs = stats["complete"] + stats["failed"]
            jobs.append(
                {
                    "name": name,
                    "complete": stats["complete"],
                    "failed": stats["failed"],
                    "failure_rate": stats["failed"] / runs if runs else 0.0,
                    "p50_ms": model.percentile_ms(stats["hist"], 0.50),
                    "p95_ms": model.percentile_ms(stats["hist"], 0.95),
                }
            )
        oldest = raw["oldest_queued_at"]
        return {
            "at": at,
            "backend": self.backend,
            "counts": raw["counts"],
            "queue_depth": raw["queue_depth"],
            "schedule_depth": raw["schedule_depth"],
            "latency": max(0.0, at - oldest) if oldest else 0.0,
            "per_minute": raw["per_minute"],
            "hours": hours,
            "complete": totals.get("complete", 0),
            "failed": totals.get("failed", 0),
            "recovered": totals.get("recovered", 0),
            "jobs": jobs,
        }
