"""The Redis backend: every store of the kit on the queue's Redis."""

from __future__ import annotations

from ..controls.model import LogLimits
from ..controls.redis_store import RedisControlStore
from ..history.model import Settings as HistorySettings
from ..history.redis_store import RedisStore
from ..huey_seam import RedisQueue
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

    def check_writable(self) -> None:
        """Nothing beyond the readiness ping: /readyz stays one round trip on Redis.

        A Redis that answers refuses writes only when full under
        ``noeviction`` or after failed snapshots (``stop-writes-on-bgsave-error``);
        a write here would catch those at the cost of a second round trip.
        """
