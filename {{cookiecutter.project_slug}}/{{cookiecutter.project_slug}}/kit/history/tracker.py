"""What a worker process is running right now, its heartbeat, and its writes.

Writing "running" the moment each job starts would cost every job a second
round trip to the store, about a fifth of a Huey worker's throughput. So a
worker only notes the start in memory; a background thread publishes jobs
that are still running after ``HISTORY_RUNNING_PUBLISH_DELAY`` seconds, in
one write together with the heartbeat. A job that finishes sooner is written
once, when it finishes, start included.

That one write, the end of a run, is not made by the job's worker either: it
hands the write to the same thread and takes its next job. The thread writes
what it was handed as soon as it can, all of it in one round trip, so a busy
worker pays one round trip for many jobs (a group commit). The job's lease is
released in that same write, so a worker that dies before it lands loses no
job: the job runs again. Outside a worker (the web app, immediate mode) there
is no thread, and every write is made at once.
"""

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import model

log = logging.getLogger(__name__)

# How often the background thread looks at running jobs and the heartbeat.
TICK_SECONDS = 0.25
# The shortest time between two writes of deferred items, in seconds. Each
# write costs a few hundred microseconds of the worker's CPU (and a script
# run in Redis) whatever it holds: a busy worker's batch should hold several
# jobs' ends. An idle worker's job is written at once all the same.
WRITE_INTERVAL = 0.025
# Deferred writes kept while the store is unreachable; beyond that the oldest
# are dropped (their jobs' leases stay, so those jobs run again).
MAX_PENDING = 10_000


@dataclass
class Running:
    job_id: str
    name: str
    started_at: float
    published: bool = False


class Tracker:
    """The in-flight jobs of this process, and the thread that publishes them."""

    def __init__(
        self,
        publish: Callable[[list[Running], dict[str, Any]], None],
        write: Callable[[list[Any]], None],
        settings: model.Settings,
    ):
        self.publish = publish
        # Writes deferred items, oldest first, in as few round trips as it can.
        self.write = write
        self.settings = settings
        self.worker_type = "thread"
        self.workers = 1
        # Called with the ids of the running jobs after each heartbeat.
        self.heartbeat_hooks: list[Callable[[list[str]], None]] = []
        self._reset()

    def _reset(self) -> None:
        # After a fork (process workers) nothing of the parent's state is ours.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._jobs: dict[str, Running] = {}
        self._users = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = model.now()
        self._last_beat = 0.0
        self._failing = False
        self._pending: list[Any] = []
        self._wake = threading.Condition()  # guards _pending; wakes the thread
        self._write_lock = threading.Lock()  # batches are written one at a time, in order

    # -- Huey worker hooks ------------------------------------------------

    def worker_started(self) -> None:
        """``on_startup``: runs once per worker thread, or in each worker process."""
        if self._pid != os.getpid():
            self._reset()
        with self._lock:
            self._users += 1
            if self._thread is not None:
                return
            self._started_at = model.now()
            self._thread = threading.Thread(target=self._run, name="job-history", daemon=True)
        # Show up on the workers page at once, then beat from the thread.
        self._safe_tick()
        self._thread.start()

    def worker_stopped(self) -> bool:
        """``on_shutdown``: the last worker of the process stops the thread.

        Returns True when this process has no worker left, so the caller
        can remove it from the workers list.
        """
        with self._lock:
            self._users -= 1
            last = self._users <= 0 and self._thread is not None
            thread, self._thread = self._thread, None
        if last and thread is not None:
            self._stop.set()
            with self._wake:
                self._wake.notify()
            thread.join(timeout=5)  # it writes what is still pending first
            return True
        return False

    # -- deferred writes ------------------------------------------------------

    @property
    def writes_behind(self) -> bool:
        """True in a worker process, whose thread can write for its jobs."""
        return self._thread is not None and self._pid == os.getpid()

    def defer(self, item: Any) -> None:
        """Hand a write to the thread; it lands within a round trip or so."""
        with self._wake:
            self._pending.append(item)
            if len(self._pending) > MAX_PENDING:
                del self._pending[0]
                log.error("job history store unreachable: dropped its oldest pending write")
            self._wake.notify()

    def drain(self) -> bool:
        """Write everything deferred so far, now; False if there was nothing.

        For a write that must come after them, and for tests.
        """
        with self._write_lock:
            with self._wake:
                items, self._pending = self._pending, []
            if not items:
                return False
            try:
                self.write(items)
            except BaseException:
                with self._wake:
                    self._pending[:0] = items  # kept, in order, for the next try
                raise
            return True

    # -- called from signal handlers --------------------------------------

    def started(self, job_id: str, name: str, at: float) -> Running:
        """Note a start in memory (its end needs it for the duration).

        ``published`` comes back True when there is no thread to publish
        it: the caller must write the start itself, at once.
        """
        if self._pid != os.getpid():
            self._reset()
        running = Running(job_id, name, at, published=self._thread is None)
        with self._lock:
            self._jobs[job_id] = running
        return running

    def finished(self, job_id: str) -> Running | None:
        """Forget a job; says whether its start was already published.

        Taking the lock orders this after any publish in progress, so a job's
        "running" can never be written after its end.
        """
        with self._lock:
            return self._jobs.pop(job_id, None)

    # -- the background thread -----------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic() + TICK_SECONDS
        while True:
            with self._wake:
                if not self._pending and not self._stop.is_set():
                    self._wake.wait(max(0.0, next_tick - time.monotonic()))
            stopping = self._stop.is_set()
            wrote_at = time.monotonic()
            if not self._safely(self.drain) and not stopping:
                self._stop.wait(TICK_SECONDS)  # the store is down: no busy loop
            if stopping:
                return
            # At most one write per WRITE_INTERVAL: an idle worker's job is
            # written at once, a busy worker's jobs are gathered into batches.
            self._stop.wait(WRITE_INTERVAL - (time.monotonic() - wrote_at))
            if time.monotonic() >= next_tick:
                self._safe_tick()
                next_tick = time.monotonic() + TICK_SECONDS

    def _safe_tick(self) -> None:
        self._safely(lambda: self.tick(model.now()))

    def _safely(self, write: Callable[[], bool]) -> bool:
        """Run ``write``, logging an outage once; False if it failed."""
        try:
            wrote = write()
        except Exception:  # a store outage must not kill the thread
            if not self._failing:
                # Once per outage, not four times a second.
                log.exception("could not write to the job history; will retry")
            self._failing = True
            return False
        if wrote and self._failing:
            log.warning("the job history is written again")
            self._failing = False
        return True

    def tick(self, at: float) -> bool:
        """Publish jobs running longer than the delay; beat when due.

        Returns whether it wrote anything.
        """
        delay = self.settings.running_publish_delay
        with self._lock:
            due = [r for r in self._jobs.values() if not r.published and at - r.started_at >= delay]
            beat_due = at - self._last_beat >= self.settings.heartbeat_seconds
            if not due and not beat_due:
                return False
            beat = self.heartbeat(at)
            # Holding the lock while writing keeps finished() waiting, which
            # is what orders "running" before the end of the same job.
            self.publish(due, beat)
            for running in due:
                running.published = True
            self._last_beat = at
            ids = list(self._jobs)
        for hook in self.heartbeat_hooks:
            hook(ids)
        return True

    def heartbeat(self, at: float) -> dict[str, Any]:
        """This process as the workers page shows it."""
        return {
            "id": model.worker_id(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "type": self.worker_type,
            "workers": self.workers,
            "started_at": self._started_at,
            "beat_at": at,
            "forget_after": int(self.settings.worker_forget_after),
            "jobs": [
                {"id": r.job_id, "name": r.name, "started_at": r.started_at}
                for r in self._jobs.values()
            ],
        }
