"""The Redis backend: every store of the kit on the queue's Redis."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from .. import queues
from ..controls.model import LogLimits
from ..controls.redis_store import RedisControlStore
from ..history.model import Settings as HistorySettings
from ..history.redis_store import RedisStore
from ..huey_seam import RedisQueue
from ..huey_seam.storage import QueueSize
from ..idempotency import RedisKeys
from ..leases.redis_store import RedisLeases
from ..metrics.stores import RedisMetricsStore
from ..monitor.stores import RedisAuthStore
from ..unique import RedisClaims


class RedisBackend:
    """Stores that share the queue's connection pool and key prefix."""

    name = "redis"

    def __init__(self, queue: RedisQueue):
        self.queue = queue

    def history_store(self, settings: HistorySettings) -> RedisStore:
        return RedisStore(self.queue, settings)

    def control_store(self, history: RedisStore, limits: LogLimits) -> RedisControlStore:
        return RedisControlStore(self.queue.conn, self.queue.name, self.queue.queue_key, limits)

    def metrics_store(self) -> RedisMetricsStore:
        return RedisMetricsStore(self.queue)

    def auth_store(self) -> RedisAuthStore:
        return RedisAuthStore(self.queue)

    def claims(self) -> RedisClaims:
        return RedisClaims(self.queue)

    def idempotency_keys(self, history: RedisStore, window: float) -> RedisKeys:
        return RedisKeys(self.queue, window)

    def leases(self) -> RedisLeases:
        return RedisLeases(self.queue)

    def schedule_write(self, message: bytes, eta: datetime.datetime) -> Callable[[Any], None]:
        """What puts ``message`` on Huey's schedule inside a history write (delays.py).

        ``eta`` is Huey's (naive, UTC); the score is the one Huey's own
        ``add_to_schedule`` would give it.
        """
        key, score = self.queue.schedule_key, self.queue.schedule_score(eta)
        return lambda commands: commands.append(("ZADD", key, score, message))

    def queue_sizes(self, names: list[str], scan: int) -> dict[str, QueueSize]:
        """Depth, next message and scheduled jobs of each named queue (kit/queues.py)."""
        return self.queue.named_sizes(names, scan)

    def count_queues(self, history: RedisStore, names: list[str]) -> None:
        """Let the history's overview count every named queue's list in its depth."""
        history.queue_keys = [queues.redis_key(self.queue.queue_key, name) for name in names]

    def check_writable(self) -> None:
        """Nothing beyond the readiness ping: /readyz stays one round trip on Redis.

        A Redis that answers refuses writes only when full under
        ``noeviction`` or after failed snapshots (``stop-writes-on-bgsave-error``);
        a write here would catch those at the cost of a second round trip.
        """
