"""The lease manager: one per Huey instance, with per-process state.

It takes jobs with their leases (``take``), releases a lease when its run
is over (``finish``, or inside the history's last write, ``write_hook``),
puts a job back when a worker stops mid-run (``requeue``) or when its run
could not start (``finish``), and keeps a heartbeat thread per worker
process that renews the registration, retries what could not be put back,
and runs the reaper (``reaper.py``).

The rule that keeps jobs from being lost: a lease goes only when its run is
over. Whatever fails in between (the store going away during the revoke
check, a give-back that cannot be written) leaves the lease where it is,
in the store, and known to this process, which tries again; if the process
dies first, the reaper recovers the job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from huey import signals as S
from huey.api import Huey, Task

from .. import run_state
from ..huey_hooks import ConsumerStart
from ..portability import after_fork_in_child
from .ahead import PREFETCH_HOLD, TakenAhead
from .model import Lease, LeaseSettings, Outage, Recovery, RecoveryListener
from .reaper import Reaper
from .redis_store import RedisLeases
from .sqlite_store import SqliteLeases

log = logging.getLogger(__name__)

# Seconds between two registration renewals made by take() itself.
RENEW_ON_TAKE_EVERY = 1.0


_LAST_WRITE = frozenset({S.SIGNAL_COMPLETE, S.SIGNAL_SCHEDULED, S.SIGNAL_REVOKED, S.SIGNAL_EXPIRED})
_FAILURE = frozenset(
    {S.SIGNAL_ERROR, S.SIGNAL_TIMEOUT, S.SIGNAL_CANCELED, S.SIGNAL_LOCKED, S.SIGNAL_RATE_LIMITED}
)


class LeaseManager:
    """Takes, releases and recovers leases for one Huey instance.

    The web process builds one too but never uses it: only workers take
    jobs, and the heartbeat thread starts with a process's first worker.
    """

    def __init__(
        self,
        huey: Huey,
        store: RedisLeases | SqliteLeases,
        settings: LeaseSettings,
        lost_policy: Callable[[str], str] = lambda name: "retry",
    ):
        self.huey = huey
        self.store = store
        self.settings = settings
        self.outage = Outage(f"the queue ({store.label})")
        self.reaper = Reaper(store, settings, huey.serializer, self.outage, lost_policy)
        # Called for each recovered or parked job, *before* it is queued
        # again (the job history records "worker lost" there).
        self.listeners: list[RecoveryListener] = []
        # True once the consumer running this process began to shut down
        # (``consumer_started`` wires it to the consumer's stop flag).
        self.stopping: Callable[[], bool] = lambda: False
        self._reset()
        # A forked worker process starts with state of its own; a weak
        # reference, so that apps built and dropped (tests) can go.
        ref = weakref.ref(self)
        after_fork_in_child(lambda: (manager := ref()) and manager._reset())

    def _reset(self) -> None:
        """Per-process state: a forked worker starts afresh."""
        self._pid = os.getpid()
        self._worker = f"{socket.gethostname()}:{self._pid}:{secrets.token_hex(3)}"
        self._users = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._state_lock = threading.Lock()
        # Leases of jobs running in this process, by the store's identity.
        self._live: dict[Any, int] = {}
        self._suspects: set[Any] = set()
        # Leases whose release could not be written: their jobs are done,
        # so the heartbeat drops them rather than giving them back.
        self._done: set[Any] = set()
        # Jobs this process must put back on the queue but could not yet
        # (the store was unreachable): the heartbeat tries again.
        self._stranded: list[Lease] = []
        self._take_failures = 0
        self._renewed_at = 0.0  # when take() last renewed the registration
        # Jobs taken ahead (Redis), next first.
        self._ahead = TakenAhead()

    @property
    def worker(self) -> str:
        """This process's lease owner id: ``host:pid:<random>``."""
        if self._pid != os.getpid():
            self._reset()
        return self._worker

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """What the lease store raises when it is unreachable."""
        return self.store.errors

    def consumer_started(self, start: ConsumerStart) -> None:
        """A consumer listener (``KitHuey.hooks``): know when it begins to stop.

        Forked worker processes inherit the flag: once it is set, none of
        them starts a job it takes off the queue.
        """
        self.stopping = start.stopping

    def on_recovery(self, listener: RecoveryListener) -> RecoveryListener:
        self.listeners.append(listener)
        return listener

    # Huey's on_startup / on_shutdown hooks: once per worker thread or process.

    def worker_started(self) -> None:
        if self._pid != os.getpid():
            self._reset()
        with self._state_lock:
            self._users += 1
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._keep, name="lease-keeper", daemon=True)
            self._thread.start()

    def worker_stopped(self) -> None:
        with self._state_lock:
            self._users -= 1
            if self._users > 0:
                return
            self._stop.set()
        self.give_back_ahead()
        self.give_back_stranded()
        with contextlib.suppress(*self.store.errors):
            # A process that still holds a lease (a job it could not put
            # back) stays registered until that lapses; the reaper takes over.
            self.store.unregister(self.worker)

    # Taking and finishing jobs.

    def take(self) -> Task | None:
        """Huey's dequeue: the next job, together with a lease on it.

        On Redis, a worker takes up to ``WORKER_PREFETCH`` jobs in one round
        trip when the queue is deep, and runs them one after the other. Those
        it has not started go back to the front of the queue when it stops,
        or after ``PREFETCH_HOLD`` seconds behind a long job.
        """
        lease = self._ahead.next() or self._take_leases()
        if lease is None:
            return None
        if self.stopping():
            # A blocking pop that began before the shutdown can still bring
            # a job, such as the one another worker of this consumer just
            # put back: it goes back untouched, for a worker that stays,
            # in front of those taken ahead, as it was.
            self.give_back_ahead()
            self._give_back(lease)
            return None
        try:
            task = self.huey.deserialize_task(lease.raw)
        except Exception:
            log.exception("set aside a queue message no worker can read: %r", lease.raw[:500])
            self._untrack(lease)
            with contextlib.suppress(*self.store.errors):
                self.store.bury(lease)
            raise
        lease.priority = task.priority or 0
        # The run starts here: its state holds the lease until it is over.
        run_state.of(task).lease = lease
        return task

    def _take_leases(self) -> Lease | None:
        """Take the next job (and maybe more, ahead) from the lease store."""
        # The registration is renewed by the heartbeat, and here at most once
        # a second: a busy worker need not pay for it with every job.
        now = time.time()
        renew = now - self._renewed_at >= RENEW_ON_TAKE_EVERY
        ahead = self.settings.prefetch - 1 if self.store.prefetches else 0
        queues = getattr(self.huey, "queues", None)
        if queues is not None and queues.strict:
            ahead = 0  # strict priority is decided as each job starts: none taken ahead
        try:
            expires_at = now + self.settings.timeout if renew else None
            pick = queues.next_pick() if queues is not None else None
            leases = self.store.take(self.worker, expires_at, ahead, pick)
        except self.store.errors as exc:
            self.outage.failed(exc)
            self._take_failures += 1
            # Redis storage counts as "blocking", so Huey's worker loop would
            # come straight back: wait here instead, at most 2 s.
            time.sleep(min(2.0, 0.05 * 2 ** min(self._take_failures, 6)))
            return None
        self._take_failures = 0
        if renew:
            self._renewed_at = now
        self.outage.ok()
        if not leases:
            return None
        for lease in leases:
            self._track(lease)
        self._ahead.add(leases[1:])
        return leases[0]

    def give_back_ahead(self, older_than: float | None = None) -> int:
        """Put the jobs taken ahead back at the front of the queue, in order.

        With ``older_than``, only once they have waited that many seconds.
        Returns how many went back; one that could not stays here, to run.
        """
        leases = self._ahead.take_all(older_than)
        # The next take looks at the front: the job due last goes there first.
        kept = [lease for lease in reversed(leases) if not self._give_back(lease)]
        self._ahead.put_back(kept[::-1])
        return len(leases) - len(kept)

    def _give_back(self, lease: Lease) -> bool:
        """Put a job this worker took but will not run back at the front of the queue."""
        try:
            self.store.requeue(lease, front=True)
        except self.store.errors as exc:
            # The lease stays: the job runs here, or, if this worker stops
            # first, the reaper recovers it.
            log.error("could not put a job back on the queue: %s", exc)
            return False
        self._untrack(lease)
        return True

    def _give_back_later(self, lease: Lease) -> None:
        """Give a job back now if the store answers, else at a later heartbeat.

        Until then the lease stays in the store and tracked here, so the
        heartbeat's check does not take it for a leftover.
        """
        if not self._give_back(lease):
            log.warning("job kept by this worker until the queue is back, then given back")
            with self._state_lock:
                self._stranded.append(lease)

    def give_back_stranded(self) -> None:
        """Try again to put back the jobs that could not be given back before."""
        with self._state_lock:
            stranded, self._stranded = self._stranded, []
        for lease in stranded:
            self._give_back_later(lease)

    def _track(self, lease: Lease) -> None:
        key = self.store.identity(lease)
        with self._state_lock:
            self._live[key] = self._live.get(key, 0) + 1

    def _untrack(self, lease: Lease) -> bool:
        """Mark a lease as done here; False if it already was."""
        key = self.store.identity(lease)
        with self._state_lock:
            if lease.released:
                return False
            lease.released = True
            left = self._live.get(key, 0) - 1
            if left > 0:
                self._live[key] = left
            else:
                self._live.pop(key, None)
        return True

    def write_hook(self, signal: str, task: Task, handle: Any) -> None:
        """Release the lease inside the job history's write, when it is the last.

        The history writes once per signal, with Redis commands or an SQLite
        cursor that other bookkeeping may add to (``History.write_hooks``). A
        run's last write (complete, failed for good, its retry on the
        schedule) carries the release, so leases cost no round trip of their
        own. If that write fails, the heartbeat's check finds the lease. In
        a worker that write is usually made later, by the history's thread
        (``write_pending`` in the task's run state): ``finish`` leaves the
        lease to it.
        """
        lease = _lease_of(task)
        if lease is None:
            return
        if not (signal in _LAST_WRITE or (signal in _FAILURE and not task.retries)):
            return
        # A write that failed is made again with the same items: the release
        # goes with it again.
        if self._untrack(lease) or lease.release_in_write:
            lease.release_in_write = True
            self.store.add_release(handle, lease, task.id)

    def finish(self, task: Task, over: bool = True) -> None:
        """Release the task's lease: its run is over, whatever the outcome.

        Unless the history's last write for the run is still pending: the
        lease goes with it, so that no job ends with no record of its end.
        ``over=False`` is for a run that Huey gave up before its end, on an
        error in its own steps (its revoke check, writing a retry) rather
        than in the job: the job goes back to the front of the queue.
        """
        state = run_state.peek(task)
        if state is None or state.lease is None or state.write_pending:
            return
        lease = state.lease
        if not over:
            log.warning("job %s did not run to its end; it goes back to the queue", task.id)
            self._give_back_later(lease)
            return
        if not self._untrack(lease):
            return
        try:
            self.store.release(lease, task.id)
        except self.store.errors as exc:
            # The heartbeat's check drops it later; if this process dies
            # first, the job runs once more (at least once, never lost).
            log.warning("could not release the lease on job %s yet: %s", task.id, exc)
            with self._state_lock:
                self._done.add(self.store.identity(lease))

    def taken_flags(self, task: Any) -> dict[str, bytes | None] | None:
        """The revoke flags read with the job's take, once; None: ask the store."""
        lease = _lease_of(task)
        if lease is None or lease.revocations is None:
            return None
        flags, lease.revocations = lease.revocations, None
        return flags

    def clear_on_release(self, task: Task, key: str) -> bool:
        """Leave Huey's revoke flag ``key`` to the release of the task's lease.

        False if the lease is gone already: the caller clears it now.
        """
        lease = _lease_of(task)
        if lease is None or not self.store.clears_flags:
            return False
        with self._state_lock:
            # _untrack() marks a lease released under this lock: the flag
            # is either seen by the release or cleared by the caller.
            if lease.released:
                return False
            lease.clear_on_release = key
        return True

    def on_retrying(self, signal: str, task: Task, *args: Any) -> None:
        """Huey's "retrying" signal: clear the flag before the retry is queued.

        Huey clears a run's revoke flag before it queues the retry, which
        has the same id; so must the kit, or the retry would be skipped.
        """
        lease = _lease_of(task)
        if lease is None:
            return
        with self._state_lock:
            key, lease.clear_on_release = lease.clear_on_release, None
        if key is not None:
            self.huey.storage.delete_data(key)

    def requeue(self, task: Task) -> bool:
        """Put a job whose run was cut short back at the front of the queue, unchanged."""
        lease = _lease_of(task)
        if lease is None or lease.released:
            return False
        try:
            requeued = self.store.requeue(lease, front=True)
        except self.store.errors as exc:
            # The lease stays, tracked: the next heartbeat tries again, and
            # if this process exits first, the reaper recovers the job.
            log.error("could not requeue job %s yet: %s", task.id, exc)
            with self._state_lock:
                self._stranded.append(lease)
            return False
        self._untrack(lease)
        if requeued:
            run_state.of(task).requeued = True
            log.warning("job %s did not finish before shutdown; it is back on the queue", task.id)
        return requeued

    def on_interrupted(self, signal: str, task: Task, *args: Any) -> None:
        """Huey's "interrupted" signal: the worker is stopping mid-job."""
        self.requeue(task)

    # The heartbeat thread.

    def _keep(self) -> None:
        next_beat = next_reap = time.monotonic()  # look at once: this may be a restart
        # While jobs may be taken ahead, look at them twice per PREFETCH_HOLD.
        prefetching = self.store.prefetches and self.settings.prefetch > 1
        tick = PREFETCH_HOLD / 2 if prefetching else float("inf")
        while True:
            now = time.monotonic()
            if now >= next_beat:
                self.beat()
                next_beat = now + self.settings.heartbeat
            if now >= next_reap:
                self.reap()
                # Jitter keeps the workers of a fleet from waking together.
                next_reap = now + self.settings.reaper_interval * random.uniform(0.8, 1.0)
            if prefetching:
                self.give_back_ahead(older_than=PREFETCH_HOLD)
            wait = min(next_beat, next_reap, now + tick) - time.monotonic()
            if self._stop.wait(max(0.0, wait)):
                return

    def beat(self) -> None:
        """Renew this worker's registration; drop leases nobody here holds."""
        try:
            now = time.time()
            self.store.register(self.worker, now + self.settings.timeout)
            self._renewed_at = now
            self._check_own()
        except self.store.errors as exc:
            self.outage.failed(exc)
            return
        self.outage.ok()
        self.give_back_stranded()

    def _check_own(self) -> None:
        """Settle the leases of ours that no job in this process holds.

        Such a lease, found at two checks in a row, is left over (two checks,
        because a lease exists for a moment before the job that took it is
        tracked). If its release failed, its job is done: the lease goes.
        Otherwise no run here ever had it, say because the reply to a take
        was lost with the connection: its job goes back to the queue.
        """
        with self._state_lock:
            live = set(self._live)
        found = {self.store.identity(lease): lease for lease in self.store.own(self.worker)}
        orphans = set(found) - live
        stale = orphans & self._suspects
        self._suspects = orphans - stale
        with self._state_lock:
            self._done &= set(found)  # the releases that landed since are forgotten
            done = self._done & stale
            self._done -= done
        for key in stale:
            if key in done:
                log.warning("released a lease left over from a failed write")
                self.store.drop(found[key])
            else:
                log.warning("found a job this worker took but never ran; it goes back")
                self.store.requeue(found[key], front=True)

    # The reaper, run by the heartbeat thread (see reaper.py).

    def reap(self) -> list[Recovery]:
        """Recover the jobs of dead workers, unless another worker is at it."""
        return self.reaper.reap(self.worker, self.listeners)

    def judge(
        self, raw: bytes, worker: str, counted: bool = True
    ) -> tuple[bytes | None, Recovery] | None:
        """The reaper's verdict on one job whose worker died (see ``Reaper.judge``)."""
        return self.reaper.judge(raw, worker, counted)


def _lease_of(task: Any) -> Lease | None:
    """The lease a worker of this process took on ``task``, if any."""
    state = run_state.peek(task)
    return None if state is None else state.lease
