"""What a worker process is running right now, and its heartbeat.

Writing "running" the moment each job starts would cost every job a second
round trip to the store, about a fifth of a Huey worker's throughput. So a
worker only notes the start in memory; a background thread publishes jobs
that are still running after ``HISTORY_RUNNING_PUBLISH_DELAY`` seconds, in
one write together with the heartbeat. A job that finishes sooner is written
once, when it finishes, start included. Outside a worker (the web app,
immediate mode) there is no thread and starts are written at once.
"""

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import model

log = logging.getLogger(__name__)

# How often the background thread wakes up, at most.
TICK_SECONDS = 0.25


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
        settings: model.Settings,
    ):
        self.publish = publish
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
            thread.join(timeout=5)
            return True
        return False

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
        while not self._stop.wait(TICK_SECONDS):
            self._safe_tick()

    def _safe_tick(self) -> None:
        try:
            self.tick(model.now())
        except Exception:  # a store outage must not kill the thread
            if not self._failing:
                # Once per outage, not four times a second.
                log.exception("could not publish running jobs and heartbeat; will retry")
            self._failing = True
        else:
            if self._failing:
                log.warning("running jobs and heartbeat are published again")
            self._failing = False

    def tick(self, at: float) -> None:
        """Publish jobs running longer than the delay; beat when due."""
        delay = self.settings.running_publish_delay
        with self._lock:
            due = [r for r in self._jobs.values() if not r.published and at - r.started_at >= delay]
            beat_due = at - self._last_beat >= self.settings.heartbeat_seconds
            if not due and not beat_due:
                return
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
