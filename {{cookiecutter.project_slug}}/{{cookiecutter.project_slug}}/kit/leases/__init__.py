"""At-least-once delivery: leases on running jobs, heartbeats and a reaper.

Huey takes a job off the queue for good before running it, so a worker that
is SIGKILLed, OOM-killed or loses its machine loses the job it was running,
without a trace. The kit closes that gap:

* Taking a job off the queue and taking a *lease* on it are one atomic step.
  On Redis the message moves from the queue into the worker's own lease list
  (a script, or ``BLMOVE`` to wait on an empty queue); on SQLite the row
  moves into the ``kit_lease`` table in the same transaction. At no moment
  is a job in neither place. From a deep Redis queue a worker takes several
  jobs in that step and runs them in turn (``WORKER_PREFETCH``).
* Each worker process registers itself with an expiry time, renewed by every
  dequeue and by a heartbeat thread. While the process lives, its leases
  stay valid, however long its job runs.
* When a run is over (complete, failed for good, or its retry safely on the
  schedule) the lease is released. A shutdown that cannot wait for a job
  puts it back at the front of the queue instead.
* A reaper runs in every worker process; a lock lets only one act at a time.
  It adopts the leases of workers whose registration lapsed and puts their
  jobs back at the front of the queue, as they were: a run lost with its
  worker is not the job's failure and uses none of its retries. A job that
  must never run twice opts out (``on_worker_lost="fail"``) and is parked as
  failed instead; so is a job lost ``MAX_RECOVERIES`` times already (a
  poison pill), instead of killing worker after worker.
* A run that never started (Huey's revoke check or another step before the
  run failed, say because Redis went away) is not over: its job goes back to
  the front of the queue. If even that fails, the worker keeps the lease and
  tries again at each heartbeat; should it die first, the reaper recovers
  the job. A lease is only ever released by the end of a run.

A dead worker's jobs are back at the front of the queue at most
``LEASE_TIMEOUT`` + ``REAPER_INTERVAL`` seconds after its last sign of life
(30 + 10 s by default), whether or not a worker restarts on that machine, as
long as one worker runs somewhere; at the front, they run next, not after
the backlog. Recovered jobs run again, so jobs must be idempotent.

The package: ``model`` (settings, a lease, a recovery), one lease store per
backend (``redis_store`` with its Lua scripts, ``sqlite_store``), the
``manager`` (per-process state, taking and releasing, the heartbeat), the
jobs a worker took ``ahead``, and the ``reaper``.
"""

from __future__ import annotations

from collections.abc import Callable

from huey import signals as S

from ..huey_seam import KitHuey
from .manager import LeaseManager
from .model import Lease, LeaseSettings, Outage, Recovery, RecoveryListener, display_name
from .reaper import Reaper
from .redis_store import RedisLeases
from .sqlite_store import SqliteLeases

__all__ = [
    "Lease",
    "LeaseManager",
    "LeaseSettings",
    "Outage",
    "Reaper",
    "Recovery",
    "RecoveryListener",
    "RedisLeases",
    "SqliteLeases",
    "display_name",
    "install",
]


def install(
    huey: KitHuey,
    settings: LeaseSettings,
    store: RedisLeases | SqliteLeases | None,
    lost_policy: Callable[[str], str] = lambda name: "retry",
) -> LeaseManager | None:
    """Give ``huey`` its lease manager: the delivery its dequeue and runs go through.

    ``store`` is the backend's lease store; None (immediate mode) or leases
    turned off (``LEASES_ENABLED``) leave Huey's own at-most-once delivery.
    ``lost_policy`` gives a job's ``on_worker_lost`` by name.
    """
    if not settings.enabled or store is None:
        return None
    manager = LeaseManager(huey, store, settings, lost_policy)
    huey.hooks.delivery = manager
    huey.hooks.consumer_listeners.append(manager.consumer_started)
    huey.on_startup("kit_leases")(manager.worker_started)
    huey.on_shutdown("kit_leases")(manager.worker_stopped)
    huey.signal(S.SIGNAL_INTERRUPTED)(manager.on_interrupted)
    huey.signal(S.SIGNAL_RETRYING)(manager.on_retrying)
    return manager
