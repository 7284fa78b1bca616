"""What running jobs report (progress, log lines), and what they are told (cancel).

A job never waits for the store: :func:`progress.report` and the log handler
only update memory. A background thread in each worker process writes what
changed, for all its running jobs together, every ``JOB_PROGRESS_INTERVAL``
seconds (one round trip), and in the same trip reads the cancel requests of
the jobs that look for them. Whatever a job reported after the last write
rides on the history's final write for that run (no trip of its own).
"""

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..history.model import to_json
from .model import Flush, LogLimits

log = logging.getLogger(__name__)

# A finished run whose final write never came (the history write failed) is
# flushed by the thread and forgotten after this many seconds.
LINGER_SECONDS = 10.0
# The thread stops after this long with no job to look after.
IDLE_SECONDS = 5.0
# Rate estimates use the samples of this many recent seconds.
RATE_WINDOW = 30.0


@dataclass
class Run:
    """One attempt of one job, in this process."""

    job_id: str
    name: str
    attempt: int
    recorder: "Recorder"
    task: Any = None
    progress: dict[str, Any] | None = None
    progress_dirty: bool = False
    samples: collections.deque = field(default_factory=lambda: collections.deque(maxlen=64))
    lines: list[str] = field(default_factory=list)
    seq: int = 0
    cut: int = 0  # lines dropped before being written (over JOB_LOGS_MAX_LINES)
    watch: bool = False  # the job asks whether it was cancelled
    cancel: dict[str, Any] | None = None
    ended_at: float | None = None


class Recorder:
    """The running jobs of this process and the thread that writes for them."""

    def __init__(
        self,
        store: Any,
        interval: float,
        limits: LogLimits,
        errors: tuple[type[BaseException], ...],
        level: int = logging.INFO,
    ):
        self.store = store
        self.interval = max(0.05, float(interval))
        self.limits = limits
        self.errors = errors
        self.level = level  # log records below it are not kept
        self._reset()

    def _reset(self) -> None:
        # A forked worker process starts with nothing of its parent's.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._thread: threading.Thread | None = None
        self._failing = False

    # -- called from the job's thread -------------------------------------------

    def begin(self, job_id: str, name: str, attempt: int, task: Any = None) -> Run:
        if self._pid != os.getpid():
            self._reset()
        run = Run(job_id, name, attempt, self, task)
        with self._lock:
            self._runs[job_id] = run
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="job-controls", daemon=True)
                self._thread.start()
        return run

    def end(self, run: Run) -> None:
        """The job's code returned (or raised); its final write comes next."""
        with self._lock:
            run.ended_at = time.time()

    def report(
        self, run: Run, done: float, total: float | None, message: str | None
    ) -> dict[str, Any] | None:
        """Note the job's progress; returns its cancel request, if one was seen."""
        now = time.time()
        with self._lock:
            samples = run.samples
            if not samples or now - samples[-1][0] >= 0.2 or done < samples[-1][1]:
                if samples and done < samples[-1][1]:
                    samples.clear()  # counting restarted: so does the rate
                samples.append((now, done))
            while len(samples) > 2 and now - samples[0][0] > RATE_WINDOW:
                samples.popleft()
            rate = None
            first_at, first_done = samples[0]
            if now - first_at > 0 and done > first_done:
                rate = (done - first_done) / (now - first_at)
            run.progress = {
                "done": done,
                "total": total,
                "message": message,
                "at": now,
                "rate": rate,
                "attempt": run.attempt,
            }
            run.progress_dirty = True
            run.watch = True
            return run.cancel

    def watch(self, run: Run) -> dict[str, Any] | None:
        """The job asks about cancellation; returns the request, if one was seen."""
        with self._lock:
            run.watch = True
            return run.cancel

    def add_line(self, run: Run, entry: dict[str, Any]) -> None:
        with self._lock:
            if run.ended_at is not None:
                return
            run.seq += 1
            entry["seq"] = run.seq
            run.lines.append(to_json(entry))
            if len(run.lines) > self.limits.lines:
                # The store keeps only the newest lines anyway.
                excess = len(run.lines) - self.limits.lines
                del run.lines[:excess]
                run.cut += excess

    # -- called from the history's final write of a run -------------------------

    def take_final(self, job_id: str) -> Flush | None:
        """Forget a finished run and return what it reported since the last write."""
        with self._lock:
            run = self._runs.pop(job_id, None)
            if run is None:
                return None
            return self._pending(run)

    def _pending(self, run: Run) -> Flush:
        """What to write for a run now (call with the lock held)."""
        progress = run.progress if run.progress_dirty else None
        run.progress_dirty = False
        lines, run.lines = run.lines, []
        cut, run.cut = run.cut, 0
        return Flush(run.job_id, progress, lines, cut)

    # -- the background thread --------------------------------------------------

    def _loop(self) -> None:
        idle_since = None
        while True:
            time.sleep(self.interval)
            with self._lock:
                if not self._runs:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > IDLE_SECONDS:
                        self._thread = None
                        return
                    continue
            idle_since = None
            try:
                self.flush()
            except Exception:  # the thread must survive anything
                log.exception("could not write job progress and logs")

    def flush(self) -> None:
        """Write what changed for every run, and read their cancel requests."""
        now = time.time()
        with self._lock:
            items, runs = [], {}
            for run in list(self._runs.values()):
                if run.ended_at is not None and now - run.ended_at > LINGER_SECONDS:
                    del self._runs[run.job_id]
                item = self._pending(run)
                wants_cancel = run.watch and run.cancel is None and run.ended_at is None
                if item.progress or item.lines or wants_cancel:
                    items.append(item)
                    runs[run.job_id] = run
        if not items:
            return
        try:
            answers = self.store.flush(items)
        except self.errors as exc:
            if not self._failing:
                log.warning("job progress and logs not written, will retry: %s", exc)
            self._failing = True
            self._restore(items, runs)
            return
        if self._failing:
            log.info("job progress and logs are written again")
            self._failing = False
        with self._lock:
            for job_id, request in answers.items():
                run = runs[job_id]
                if request and run.cancel is None:
                    run.cancel = request

    def _restore(self, items: list[Flush], runs: dict[str, Run]) -> None:
        """A write failed: keep its data for the next one."""
        with self._lock:
            for item in items:
                run = runs[item.job_id]
                if item.progress and not run.progress_dirty:
                    run.progress_dirty = True
                run.lines[:0] = item.lines
                run.cut += item.cut
                if len(run.lines) > self.limits.lines:
                    excess = len(run.lines) - self.limits.lines
                    del run.lines[:excess]
                    run.cut += excess

    def running(self) -> list[str]:
        with self._lock:
            return [job_id for job_id, run in self._runs.items() if run.ended_at is None]
