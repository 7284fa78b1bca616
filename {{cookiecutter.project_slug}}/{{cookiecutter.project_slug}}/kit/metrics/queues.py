"""Per named queue gauges (kit/queues.py): how many jobs wait in each, and for how long.

Kept apart from ``<namespace>_jobs_queue_depth`` and ``..._oldest_queued_age_seconds``,
whose ``queue`` label is the app's ``QUEUE_NAME`` and whose values cover all
of its named queues together: these families break them down, one series
per named queue, labelled ``queue`` with that queue's name.
"""

import time
from collections.abc import Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import queues
from ..huey_seam.storage import QueueSize


class NamedQueuesCollector(Collector):
    """One scrape's per-queue depth and oldest age, from ``backend.queue_sizes``."""

    def __init__(self, sizes: Mapping[str, QueueSize], namespace: str) -> None:
        self.sizes = sizes
        # The same name prefix as the other series (METRICS_NAMESPACE).
        self.prefix = f"{namespace}_jobs_" if namespace else "jobs_"

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            f"{self.prefix}named_queue_depth", "Jobs waiting in each named queue.", labels=["queue"]
        )
        age = GaugeMetricFamily(
            f"{self.prefix}named_queue_oldest_age_seconds",
            "Seconds the next job of each named queue has been waiting (0 when none waits).",
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
