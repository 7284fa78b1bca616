"""The recorder: counts what happens to jobs in this process, in batches.

Every process (web or worker) has one per app. It adds counts up in memory
and a daemon thread writes them to the queue's backend (``stores``) every
``METRICS_FLUSH_INTERVAL`` seconds, with the heartbeat of the workers the
process runs. Keys are the event, the job name and, for the duration
histogram, the bucket, joined by ``SEP``; ``collector`` reads them back.
"""

import atexit
import bisect
import collections
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

from huey import signals as S
from huey.api import Task

from .. import run_state
from ..backends import BACKEND_ERRORS
from ..portability import after_fork_in_child
from .stores import MetricsStore

log = logging.getLogger(__name__)

SEP = "\t"  # between the parts of a stored key: event, job name, bucket


def _key(*parts: str) -> str:
    return SEP.join(parts)


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


class Recorder:
    """Counts what happens to jobs in this process and writes it in batches.

    One per app (so per Huey instance). Recording is a dict update under a
    lock; a daemon thread per process writes the batch to the backend.
    """

    def __init__(self, store: MetricsStore, buckets: Iterable[float], flush_interval: float):
        # Where the counts go: the backend's metrics store (backends/).
        self.store = store
        self.buckets = (*sorted(float(b) for b in buckets), float("inf"))
        self.bucket_names = tuple(_bound(b) for b in self.buckets)
        self.flush_interval = float(flush_interval)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: collections.Counter[str] = collections.Counter()
        self._slots = 0  # huey workers (threads) running in this process
        self._announced = False  # whether a heartbeat for this process is stored
        self._owner_pid: int | None = None  # the process whose thread flushes
        self._failing = False
        _recorders.add(self)

    # -- recording -----------------------------------------------------

    def count(self, event: str, job_name: str, amount: int = 1) -> None:
        self._start_flusher()
        with self._lock:
            self._pending[_key(event, job_name)] += amount

    def observe(self, job_name: str, seconds: float) -> None:
        index = bisect.bisect_left(self.buckets, seconds)
        self._start_flusher()
        with self._lock:
            self._pending[_key("duration_count", job_name)] += 1
            self._pending[_key("duration_sum_us", job_name)] += round(seconds * 1_000_000)
            self._pending[_key("duration_bucket", job_name, self.bucket_names[index])] += 1

    def on_signal(self, signal: str, task: Task, *args: Any) -> None:
        """Huey signal handler: runs in the worker for each job transition."""
        if signal == S.SIGNAL_EXECUTING:
            run_state.of(task).started = time.monotonic()
            return
        name = task.name
        if signal == S.SIGNAL_COMPLETE:
            self.count("completed", name)
        elif signal in (S.SIGNAL_ERROR, S.SIGNAL_TIMEOUT):
            if signal == S.SIGNAL_TIMEOUT:
                self.count("timed_out", name)
            # Huey decides to retry after this signal, from task.retries.
            if not task.retries:
                self.count("failed", name)
        elif signal == S.SIGNAL_RETRYING:
            self.count("retried", name)
        else:
            return
        state = run_state.peek(task)
        started = None if state is None else state.started
        if started is not None and signal != S.SIGNAL_RETRYING:
            self.observe(name, time.monotonic() - started)

    def job_recovered(self, recovery: Any) -> None:
        """Lease reaper listener: a job whose worker died was dealt with.

        Queued again, it counts as recovered; parked (out of attempts or
        recoveries), it failed for good.
        """
        self.count("recovered" if recovery.requeued else "failed", recovery.job_name)

    def worker_started(self) -> None:
        """Huey startup hook: one more worker runs in this process."""
        self._start_flusher()
        with self._lock:
            self._slots += 1
            self._announced = True
        self.flush()

    def worker_stopped(self) -> None:
        """Huey shutdown hook: write the counts; the last worker signs off."""
        with self._lock:
            self._slots = max(0, self._slots - 1)
        self.flush()

    # -- writing -------------------------------------------------------

    def _start_flusher(self) -> None:
        # Once per process: after_fork() clears the owner in a forked child.
        if self._owner_pid is not None:
            return
        with self._lock:
            if self._owner_pid is not None:
                return
            pid = self._owner_pid = os.getpid()
            self.worker_id = f"{socket.gethostname()}:{pid}"
        thread = threading.Thread(target=self._run, name="metrics-flush", daemon=True)
        thread.start()

    def _run(self) -> None:
        pid = os.getpid()
        while self._owner_pid == pid:
            time.sleep(self.flush_interval)
            self.flush()

    def after_fork(self) -> None:
        # A forked child starts with a copy of the parent's unwritten counts
        # (the parent writes them) and with no flushing thread.
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending = collections.Counter()
        self._slots = 0
        self._announced = False
        self._owner_pid = None

    def flush(self) -> None:
        """Write this process's counts (and worker heartbeat) to the backend."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, collections.Counter()
                slots, announced = self._slots, self._announced
                self._announced = slots > 0
            if not pending and not announced:
                return
            # slots == 0 removes this process's heartbeat: its workers stopped.
            heartbeat = (self.worker_id, slots, time.time()) if announced else None
            try:
                self.store.add(pending, heartbeat)
            except BACKEND_ERRORS as exc:
                with self._lock:
                    self._pending.update(pending)  # try again next time
                    self._announced = self._announced or announced
                if not self._failing:
                    log.warning("could not write job metrics, will retry: %s", exc)
                self._failing = True
            else:
                self._failing = False


_recorders: "weakref.WeakSet[Recorder]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for recorder in list(_recorders):
        recorder.after_fork()


def _flush_all_at_exit() -> None:
    for recorder in list(_recorders):
        if recorder._owner_pid == os.getpid():
            recorder.flush()


after_fork_in_child(_after_fork_in_child)
atexit.register(_flush_all_at_exit)
