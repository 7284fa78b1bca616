"""The Prometheus collector: one scrape's :class:`Snapshot` as metric families."""

import collections
import time
from collections.abc import Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .. import queues
from ..huey_seam.storage import QueueSize
from .recorder import SEP, Recorder
from .stores import Snapshot

COUNTERS = {
    "enqueued": "Jobs queued, by the HTTP API, the CLI or code.",
    "completed": "Jobs whose run finished without an error.",
    "failed": "Jobs that failed for good: an attempt raised or timed out with no retry left.",
    "retried": "Failed attempts that were scheduled to run again.",
    "recovered": "Jobs put back in the queue because the worker running them died.",
    "timed_out": "Attempts stopped because they ran past the job's timeout.",
}


class JobsCollector(Collector):
    """Turns one :class:`Snapshot` into Prometheus metric families.

    Every job series carries the ``queue`` label: the named queue its job
    declares (``@job(queue=...)``), as the depth and age gauges carry theirs.
    """

    def __init__(
        self,
        snapshot: Snapshot,
        recorder: Recorder,
        namespace: str,
        job_queues: Mapping[str, str],
        sizes: Mapping[str, QueueSize],
    ):
        self.snapshot = snapshot
        self.recorder = recorder
        # job name -> its named queue; a name no job has (any more) counts as "default".
        self.job_queues = job_queues
        # named queue -> its depth and next message, read for this scrape.
        self.sizes = sizes
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
        queue_of = {name: self.job_queues.get(name, queues.DEFAULT) for name in job_names}
        for event, help_text in COUNTERS.items():
            family = CounterMetricFamily(f"{prefix}{event}", help_text, labels=per_job)
            for job_name in job_names:
                count = per_event[event].get(job_name, 0)
                family.add_metric([queue_of[job_name], job_name], count)
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
            total = total_us / 1_000_000
            histogram.add_metric([queue_of[job_name], job_name], cumulative, total)
        yield histogram

        depth = GaugeMetricFamily(
            f"{prefix}queue_depth", "Jobs waiting for a worker.", labels=["queue"]
        )
        age = GaugeMetricFamily(
            f"{prefix}oldest_queued_age_seconds",
            "Seconds the next job to start has been waiting (0 when none waits).",
            labels=["queue"],
        )
        now = time.time()
        for name, size in self.sizes.items():
            depth.add_metric([name], size.depth)
            since = queues.waiting_since(size.next_message)
            if size.next_message is None:
                age.add_metric([name], 0.0)
            elif since is not None:  # else queued by code that bypasses enqueue()
                age.add_metric([name], max(0.0, now - since))
        yield depth
        yield age
        # Not per queue: the schedule and the workers are the app's.
        workers = sum(slots for slots, _ in self.snapshot.workers.values())
        for name, help_text, value in (
            ("scheduled", "Jobs waiting for a later time: retries, ETAs.", self.snapshot.scheduled),
            ("workers_alive", "Huey workers with a recent heartbeat.", workers),
        ):
            gauge = GaugeMetricFamily(f"{prefix}{name}", help_text)
            gauge.add_metric([], value)
            yield gauge
