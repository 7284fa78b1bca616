"""The lease model: settings, a lease, the reaper's verdict, an outage log.

Plain data shared by the lease stores (``redis_store``, ``sqlite_store``),
the manager and the reaper; nothing here talks to a store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseSettings:
    """Timing of heartbeats and recovery, from the app config."""

    enabled: bool = True
    timeout: float = 30.0  # LEASE_TIMEOUT: silence after which a worker is dead
    heartbeat: float = 5.0  # LEASE_HEARTBEAT: how often a worker renews
    reaper_interval: float = 10.0  # REAPER_INTERVAL: how often each worker looks
    max_recoveries: int = 3  # MAX_RECOVERIES: the poison-pill cap
    prefetch: int = 8  # WORKER_PREFETCH: jobs a Redis worker takes per round trip

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LeaseSettings:
        def get(key: str, default: Any) -> Any:
            value = config.get(key)
            return default if value is None else value

        settings = cls(
            enabled=bool(get("LEASES_ENABLED", True)),
            timeout=float(get("LEASE_TIMEOUT", cls.timeout)),
            heartbeat=float(get("LEASE_HEARTBEAT", cls.heartbeat)),
            reaper_interval=float(get("REAPER_INTERVAL", cls.reaper_interval)),
            max_recoveries=int(get("MAX_RECOVERIES", cls.max_recoveries)),
            prefetch=int(get("WORKER_PREFETCH", cls.prefetch)),
        )
        if settings.heartbeat <= 0 or settings.timeout < 2 * settings.heartbeat:
            raise ValueError(
                "LEASE_TIMEOUT must be at least twice LEASE_HEARTBEAT, so that one late "
                f"heartbeat does not declare a live worker dead (got {settings.timeout} "
                f"and {settings.heartbeat})"
            )
        if settings.reaper_interval <= 0:
            raise ValueError("REAPER_INTERVAL must be positive")
        if settings.prefetch < 1:
            raise ValueError("WORKER_PREFETCH must be at least 1")
        return settings

    @property
    def recovery_bound(self) -> float:
        """Longest time from a worker's death to its jobs being queued again."""
        return self.timeout + self.reaper_interval


@dataclass
class Lease:
    """A worker's claim on one job it took off the queue."""

    raw: bytes  # the message exactly as it was queued
    ref: Any  # where the lease lives: a Redis list key, or a kit_lease row id
    priority: float = 0
    released: bool = False
    # Huey's revoke flags for this job (key -> value or None), read in the
    # same round trip as the take, so that Huey's check before the run costs
    # none of its own. Redis only; None when they were not read.
    revocations: dict[str, bytes | None] | None = None
    # Huey's per-run revoke flag, cleared together with the release
    # (KitHuey.delete, in huey_seam, explains why).
    clear_on_release: str | None = None
    # Taken ahead, with the job before it (see LeaseManager.take): it may
    # not have started when its worker died.
    prefetched: bool = False
    # Its release rides on the job history's last write for the run; if
    # that write fails, it is made again with the release.
    release_in_write: bool = False
    # The named queue it came from (a Redis list key), to go back to; None:
    # the queue written in the message (queues.of_raw).
    queue: str | None = None
    # Whether the job may have been lost before and still have its count of
    # recoveries stored, which its release then deletes. A Redis take that
    # brought jobs ahead found no count for any of them (see the take
    # script): their releases skip that command.
    maybe_recovered: bool = True


@dataclass(frozen=True)
class Recovery:
    """What the reaper did with one job whose worker died."""

    job_id: str
    job_name: str
    worker: str  # the dead worker, as "host:pid"
    requeued: bool  # False: parked as failed
    recoveries: int  # how many times this job has been lost so far
    retries_left: int
    reason: str
    # False for a job that its worker had taken ahead and maybe not started:
    # queued again as it was, the lost run not counted as an attempt.
    counted: bool = True


class Outage:
    """Log a backend outage once when it starts and once when it ends."""

    def __init__(self, what: str):
        self.what = what
        self.down_since: float | None = None
        self.back_at: float | None = None
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
        log.error("%s is unreachable (%s); retrying until it is back", self.what, exc)

    def ok(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            if self.down_since is None:
                return
            seconds = time.monotonic() - self.down_since
            self.down_since = None
            self.back_at = time.monotonic()
        log.warning("%s is reachable again after %.1f s", self.what, seconds)

    @property
    def is_down(self) -> bool:
        return self.down_since is not None


def display_name(worker: str) -> str:
    """``host:pid`` of a lease owner (its id adds a random suffix)."""
    return worker.rsplit(":", 1)[0]


# Told of each recovered or parked job, before it is queued again.
RecoveryListener = Callable[[Recovery], None]
