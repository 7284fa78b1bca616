"""The Huey classes whose workers lease every job they take."""

from __future__ import annotations

import threading
from typing import Any

from huey import RedisHuey, SqliteHuey
from huey.api import Task
from huey.constants import EmptyData

from .manager import LeaseManager
from .model import Lease

# The job each worker thread is running, for LeasingHuey.delete.
_running = threading.local()


class LeasingHuey:
    """Mix-in for a Huey class: every job a worker takes is leased."""

    lease_manager: LeaseManager | None = None
    # The consumer class create_consumer() builds; the kit's worker entry
    # point sets its own (consumer.GracefulConsumer), huey_consumer does not.
    consumer_class: type | None = None

    def create_consumer(self, **options: Any) -> Any:
        if self.consumer_class is None:
            consumer = super().create_consumer(**options)  # type: ignore[misc]
        else:
            consumer = self.consumer_class(self, **options)
        if self.lease_manager is not None:
            # Forked worker processes inherit the flag: once it is set, none
            # of them starts a job it takes off the queue.
            self.lease_manager.stopping = consumer.stop_flag.is_set
        return consumer

    def dequeue(self) -> Task | None:
        manager = self.lease_manager
        if manager is None:
            return super().dequeue()  # type: ignore[misc]
        return manager.take()

    def execute(self, task: Task, timestamp: Any = None) -> Any:
        _running.task = task
        try:
            return super().execute(task, timestamp)  # type: ignore[misc]
        finally:
            _running.task = None
            # Whatever the run led to (a retry on the schedule, a result) is
            # written by now; only then may the lease go.
            if self.lease_manager is not None:
                self.lease_manager.finish(task)

    def is_revoked(self, task: Any, timestamp: Any = None, peek: bool = True) -> bool:
        """Huey's revoke check, from the flags the take read when it can.

        Huey checks once before each run (``peek=False``); the lease carries
        the flags as they were a moment ago, when the job was taken, which is
        what Huey's own read after its dequeue would see.
        """
        lease: Lease | None = getattr(task, "kit_lease", None)
        flags = lease.revocations if lease is not None else None
        if flags is None or peek or list(flags) != self._revoke_keys(task):  # type: ignore[attr-defined]
            return super().is_revoked(task, timestamp, peek)  # type: ignore[misc]
        lease.revocations = None  # read once: a later check asks the storage
        for key, value in flags.items():
            stored = EmptyData if value is None else value
            revoked, restore = self._check_revoked(stored, timestamp, peek)  # type: ignore[attr-defined]
            if restore:
                self.delete(key)
            if revoked:
                return True
        return False

    def delete(self, key: str) -> bool:
        """Huey's delete, except for the running job's own revoke flag.

        After every run Huey deletes the job's revoke flag, in case the job
        was revoked while it ran: a round trip per job that almost never
        deletes anything. The kit clears it together with the release of
        the job's lease, which the run's last write carries anyway (or
        before a retry is queued, see ``LeaseManager.on_retrying``).
        """
        task = getattr(_running, "task", None)
        manager = self.lease_manager
        if (
            task is not None
            and manager is not None
            and key == task.revoke_id
            and manager.clear_on_release(task, key)
        ):
            return True
        return super().delete(key)  # type: ignore[misc]

    def read_schedule(self, timestamp: Any = None) -> list[Task]:
        """The consumer's scheduler, once a second: quiet while Redis is down.

        Huey would log a traceback every second of an outage; this logs its
        start and its end.
        """
        manager = self.lease_manager
        if manager is None:
            return super().read_schedule(timestamp)  # type: ignore[misc]
        try:
            due = super().read_schedule(timestamp)  # type: ignore[misc]
        except manager.backend.errors as exc:
            manager.outage.failed(exc)
            return []
        manager.outage.ok()
        return due


class LeasingRedisHuey(LeasingHuey, RedisHuey):
    pass


class LeasingSqliteHuey(LeasingHuey, SqliteHuey):
    pass
