"""The reaper: what happens to the jobs of a worker that died.

Every worker process runs it from its heartbeat thread (``LeaseManager``);
a lock (Redis) or the write lock (SQLite) lets one act at a time. It adopts
the leases of workers whose registration lapsed and settles each job: back
at the front of the queue, its retries untouched (the worker died, not the
job), or parked as failed when the job opts out of running twice
(``on_worker_lost="fail"``) or was lost ``MAX_RECOVERIES`` times already (a
poison pill, which would otherwise kill worker after worker).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from .model import Lease, LeaseSettings, Outage, Recovery, RecoveryListener, display_name
from .redis_store import RedisLeases
from .sqlite_store import SqliteLeases

log = logging.getLogger(__name__)


class Reaper:
    """Adopts and settles the leases of dead workers, for one queue."""

    def __init__(
        self,
        store: RedisLeases | SqliteLeases,
        settings: LeaseSettings,
        serializer: Any,
        outage: Outage,
        lost_policy: Callable[[str], str] = lambda name: "retry",
    ):
        self.store = store
        self.settings = settings
        self.serializer = serializer  # the queue's (Huey's) message serializer
        # A job's on_worker_lost, by name: "retry" or "fail".
        self.lost_policy = lost_policy
        # Shared with the manager: a reaper does not judge while the queue
        # is down, or has just come back.
        self.outage = outage

    def reap(self, me: str, listeners: list[RecoveryListener]) -> list[Recovery]:
        """Recover the jobs of dead workers, unless another worker is at it.

        ``me`` is the worker doing it; ``listeners`` are told of each job
        before it is queued again.
        """
        outage = self.outage
        if outage.is_down:
            return []
        if outage.back_at is not None and time.monotonic() - outage.back_at < self.settings.timeout:
            # The queue was just unreachable for us, so probably for every
            # worker: give them one lease period to renew before judging.
            return []
        token = secrets.token_hex(8)
        store = self.store
        done: list[Recovery] = []
        try:
            if not store.lock(token, self.settings.timeout):
                return []
            try:
                for lease in list(store.leftovers(me)):
                    self._recover(lease, me, done, listeners)
                for worker in store.lapsed(time.time(), me):
                    for lease in store.adopt(worker, me):
                        self._recover(lease, worker, done, listeners)
                    store.forget(worker, time.time())
            finally:
                store.unlock(token)
        except store.errors as exc:
            self.outage.failed(exc)
        return done

    def _recover(
        self,
        lease: Lease,
        worker: str,
        done: list[Recovery],
        listeners: list[RecoveryListener],
    ) -> None:
        verdict = self.judge(lease.raw, worker, counted=not lease.prefetched)
        if verdict is None:
            self.store.bury(lease)
            return
        new_raw, recovery = verdict
        for listener in listeners:
            try:
                listener(recovery)
            except Exception:
                log.exception("recovery listener failed for job %s", recovery.job_id)
        self.store.settle(lease, new_raw, recovery)
        if recovery.requeued:
            log.warning(
                "recovered job %s (%s): %s", recovery.job_id, recovery.job_name, recovery.reason
            )
        else:
            log.error(
                "parked job %s (%s) as failed: %s",
                recovery.job_id,
                recovery.job_name,
                recovery.reason,
            )
        done.append(recovery)

    def judge(
        self, raw: bytes, worker: str, counted: bool = True
    ) -> tuple[bytes | None, Recovery] | None:
        """Decide what happens to a job whose worker died.

        Returns the message to queue (None: park the job as failed) and a
        description, or None when the message cannot be read at all.
        ``counted=False`` is for a job the worker had taken ahead, which
        it may never have started: it is queued again as it was.
        """
        try:
            message = self.serializer.deserialize(raw)
            job_id, job_name, retries = message.id, message.name, message.retries or 0
        except Exception:
            log.exception("dropped a leased message no worker can read: %r", raw[:500])
            return None
        job_name = job_name.rsplit(".", 1)[-1]  # Huey's "module.name"
        before = self.store.recoveries(job_id)
        dead = display_name(worker)
        if not counted:
            # Settling it leaves an entry in the recoveries, which keeps the
            # job out of batches: should it be what kills workers, it dies
            # alone next time, and that loss is counted.
            reason = f"worker {dead} was lost holding it, maybe before it started; queued again"
            recovery = Recovery(
                job_id, job_name, dead, True, before, retries, reason, counted=False
            )
            return raw, recovery
        lost = before + 1
        cap = self.settings.max_recoveries
        if lost > cap:
            reason = (
                f"worker {dead} was lost while running it, for the {_nth(lost)} time; "
                f"parked as a poison pill (MAX_RECOVERIES is {cap})"
            )
            return None, Recovery(job_id, job_name, dead, False, lost, retries, reason)
        if self.lost_policy(job_name) == "fail":
            reason = (
                f"worker {dead} was lost while running it; not run again, "
                'as the job asks (on_worker_lost="fail")'
            )
            return None, Recovery(job_id, job_name, dead, False, lost, retries, reason)
        # The job did not fail, its worker did: the message goes back as it
        # was, with its retries untouched.
        reason = f"worker {dead} was lost while running it; queued again, retries untouched"
        return raw, Recovery(job_id, job_name, dead, True, lost, retries, reason)


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
