"""The Prometheus collector: one scrape's :class:`Snapshot` as metric families."""

import collections
import datetime
import logging
import time
from collections.abc import Iterator

from huey import Huey
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .recorder import SEP, Recorder
from .stores import Snapshot

log = logging.getLogger(__name__)

COUNTERS = {
    "enqueued": "Jobs queued, by the HTTP API, the CLI or code.",
    "completed": "Jobs whose run finished without an error.",
    "failed": "Jobs that failed for good: an attempt raised or timed out with no retry left.",
    "retried": "Failed attempts that were scheduled to run again.",
    "recovered": "Jobs put back in the queue because the worker running them died.",
    "timed_out": "Attempts stopped because they ran past the job's timeout.",
}


def queue_label(huey: Huey) -> str:
    """The ``queue`` label of every series read from this Huey's backend.

    Counts are kept per queue (the stores key them by its name), so one
    snapshot is one queue's. The one place that names it: were jobs spread
    over several queues, a snapshot per queue would be labelled from here.
    """
    return huey.name


class JobsCollector(Collector):
    """Turns one :class:`Snapshot` into Prometheus metric families."""

    def __init__(self, huey: Huey, snapshot: Snapshot, recorder: Recorder, namespace: str):
        self.huey = huey
        self.snapshot = snapshot
        self.recorder = recorder
        self.queue = queue_label(huey)
        # "acme_jobs" gives acme_jobs_jobs_completed_total; "" gives jobs_completed_total.
        self.prefix = f"{namespace}_jobs_" if namespace else "jobs_"

    def collect(self) -> Iterator[Metric]:
        per_event: dict[str, dict[str, int]] = collections.defaultdict(dict)
        buckets: dict[str, dict[str, int]] = collections.defaultdict(dict)
        for key, value in self.snapshot.counters.items():
            event, _, rest = key.partition(SEP)
            if event == "duration_bucket":
                job_name, _, bound = rest.rpartition(SEP)
                buckets[job_name][bound] = value
            else:
                per_event[event][rest] = value
        job_names = sorted({n for counts in per_event.values() for n in counts} | set(buckets))

        prefix, per_job = self.prefix, ["queue", "job_name"]
        for event, help_text in COUNTERS.items():
            family = CounterMetricFamily(f"{prefix}{event}", help_text, labels=per_job)
            for job_name in job_names:
                family.add_metric([self.queue, job_name], per_event[event].get(job_name, 0))
            yield family

        histogram = HistogramMetricFamily(
            f"{prefix}duration_seconds", "How long job attempts ran.", labels=per_job
        )
        for job_name in sorted(buckets):
            stored = buckets[job_name]
            bounds = sorted(set(stored) | set(self.recorder.bucket_names), key=float)
            running, cumulative = 0, []
            for bound in bounds:
                running += stored.get(bound, 0)
                cumulative.append((bound, running))
            total_us = per_event["duration_sum_us"].get(job_name, 0)
            histogram.add_metric([self.queue, job_name], cumulative, total_us / 1_000_000)
        yield histogram

        labels = ["queue"]
        workers = sum(slots for slots, _ in self.snapshot.workers.values())
        scheduled = self.snapshot.scheduled
        for name, help_text, value in (
            ("queue_depth", "Jobs waiting for a worker.", self.snapshot.depth),
            ("scheduled", "Jobs waiting for a later time: retries, ETAs.", scheduled),
            ("workers_alive", "Huey workers with a recent heartbeat.", workers),
        ):
            gauge = GaugeMetricFamily(f"{prefix}{name}", help_text, labels=labels)
            gauge.add_metric([self.queue], value)
            yield gauge
        age = GaugeMetricFamily(
            f"{prefix}oldest_queued_age_seconds",
            "Seconds the next job to start has been waiting (0 when none waits).",
            labels=labels,
        )
        waited = self.oldest_age()
        if waited is not None:
            age.add_metric([self.queue], waited)
        yield age

    def oldest_age(self) -> float | None:
        if self.snapshot.oldest is None:
            return 0.0
        try:
            message = self.huey.serializer.deserialize(self.snapshot.oldest)
        except (ValueError, TypeError) as exc:
            log.warning("could not read the oldest queued job: %s", exc)
            return None
        meta = (message.kwargs or {}).get("meta") or {}
        since = meta.get("enqueued_at")
        if since is None:  # queued by code that bypasses the kit's enqueue()
            return None
        eta = message.eta
        if eta is not None:  # a retry or a scheduled job: it waits since then
            if eta.tzinfo is None:  # Huey keeps naive UTC times (utc=True)
                eta = eta.replace(tzinfo=datetime.UTC)
            since = max(since, eta.timestamp())
        return max(0.0, time.time() - since)
