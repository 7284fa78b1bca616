"""Operator controls over jobs: progress, logs, cancel, pause, periodic runs, audit.

:class:`Controls` (``kit_state().controls``) ties together:

* progress and per-job logs (``progress.py`` for jobs, ``recorder.py`` for
  the writing), kept with each job's history record;
* cancelling: a queued or scheduled job is revoked; a running one is asked
  to stop, and stops at its next progress report or check;
* pausing a whole queue or one job name: workers stop taking (those) jobs,
  which stay queued until resumed. Every worker process looks the pauses up
  at most once per ``PAUSE_CHECK_INTERVAL``, so it costs nothing per job;
* periodic jobs: their last run (Huey stores nothing about them) and "run now";
* the audit log of what operators did, and who.

State lives in the queue's own backend (``redis_store``, ``sqlite_store``),
so every web process and worker sees the same pauses and requests.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from huey import Huey
from huey import signals as S
from huey.api import PeriodicTask, Task, TaskWrapper

from .. import registry
from ..backends import BACKEND_ERRORS
from ..history import History
from ..history import model as history_model
from ..huey_seam import KitHuey
from ..queues import check_name as check_queue_name
from . import model
from .model import QUEUE, QUEUE_PREFIX, Flush, LogLimits, job_target, parse_lines, present_progress
from .recorder import Recorder

if TYPE_CHECKING:
    from ..backends import Backend

log = logging.getLogger(__name__)

# Signals that end a run that may have reported progress or logged.
RUN_ENDINGS = frozenset(
    {
        S.SIGNAL_COMPLETE,
        S.SIGNAL_ERROR,
        S.SIGNAL_TIMEOUT,
        S.SIGNAL_CANCELED,
        S.SIGNAL_INTERRUPTED,
        S.SIGNAL_LOCKED,
        S.SIGNAL_RATE_LIMITED,
        S.SIGNAL_RETRYING,
    }
)
# Signals after which a job will not run again: its cancel request is moot.
JOB_ENDINGS = frozenset({S.SIGNAL_COMPLETE, S.SIGNAL_CANCELED, S.SIGNAL_REVOKED, S.SIGNAL_EXPIRED})
# Statuses a cancel turns into a revoke (the job is not running now).
REVOCABLE = frozenset({history_model.QUEUED, history_model.SCHEDULED, history_model.RETRYING})

ACTIONS = ("cancel", "pause", "resume", "run_now", "retry", "retry_all", "delete", "revoke")


@dataclass(frozen=True)
class ControlSettings:
    """The knobs, from the app config (defaults in ``settings.py``)."""

    progress_interval: float = 0.5
    logs: LogLimits = field(default_factory=LogLimits)
    log_level: int = logging.INFO
    pause_check: float = 1.0
    audit_keep: int = 10_000
    cancel_ttl: int = 7 * 86400

    @classmethod
    def from_config(cls, config: Any) -> ControlSettings:
        def get(key: str, default: Any) -> Any:
            value = config.get(key)
            return default if value is None else value

        d = cls()
        level = get("JOB_LOGS_LEVEL", "INFO")
        numeric = logging.getLevelName(str(level).upper()) if not isinstance(level, int) else level
        if not isinstance(numeric, int):
            raise ValueError(f"JOB_LOGS_LEVEL must be a logging level name, not {level!r}")
        settings = cls(
            progress_interval=float(get("JOB_PROGRESS_INTERVAL", d.progress_interval)),
            logs=LogLimits(
                lines=int(get("JOB_LOGS_MAX_LINES", d.logs.lines)),
                bytes=int(get("JOB_LOGS_MAX_BYTES", d.logs.bytes)),
            ),
            log_level=numeric,
            pause_check=float(get("PAUSE_CHECK_INTERVAL", d.pause_check)),
            audit_keep=int(get("AUDIT_MAX_ENTRIES", d.audit_keep)),
        )
        if settings.logs.lines < 1 or settings.logs.bytes < 1024:
            raise ValueError("JOB_LOGS_MAX_LINES must be >= 1 and JOB_LOGS_MAX_BYTES >= 1024")
        if settings.progress_interval <= 0 or settings.pause_check <= 0:
            raise ValueError("JOB_PROGRESS_INTERVAL and PAUSE_CHECK_INTERVAL must be positive")
        return settings


class NotPeriodic(LookupError):
    """No periodic job has this name."""


class Controls:
    """Progress, logs, cancel, pause, periodic runs and audit for one Huey."""

    def __init__(self, huey: KitHuey, history: History, config: Any, backend: Backend):
        self.huey = huey
        self.history = history
        self.settings = ControlSettings.from_config(config)
        self.store = backend.control_store(history.store, self.settings.logs)
        self.recorder = Recorder(
            self.store,
            self.settings.progress_interval,
            self.settings.logs,
            BACKEND_ERRORS,
            self.settings.log_level,
        )
        self._pauses = PauseCache(self.store, self.settings.pause_check)

    def install(self) -> Controls:
        """Hook into the history's writes, Huey's signals, its dequeue and scheduler."""
        from ..progress import install_log_handler

        self.history.write_hooks.append(self._write_hook)
        self.huey.signal(S.SIGNAL_ENQUEUED)(self._periodic_enqueued)
        if not self.huey.immediate:
            self.huey.hooks.gate = PauseGate(self)
            self.huey.hooks.periodic_claim = self.claim_periodic_runs
        install_log_handler()
        return self

    # -- reading -------------------------------------------------------------

    def extras(self, job_ids: list[str], at: float | None = None) -> dict[str, dict[str, Any]]:
        """Progress (with percent and ETA) and log size of several jobs."""
        found = self.store.extras(list(job_ids))
        for extra in found.values():
            extra["progress"] = present_progress(extra["progress"], at)
        return found

    def progress(self, job_id: str) -> dict[str, Any] | None:
        return self.extras([job_id])[job_id]["progress"]

    def logs(self, job_id: str) -> dict[str, Any]:
        """A job's captured log lines, oldest first, and how many were not kept."""
        lines, cut = self.store.logs(job_id)
        return {"lines": parse_lines(lines), "cut": cut}

    def cancel_request(self, job_id: str) -> dict[str, Any] | None:
        return self.store.cancel_request(job_id)

    # -- cancel --------------------------------------------------------------

    def cancel(self, job_id: str, user: str, ip: str | None = None) -> str:
        """Cancel a job; returns what happened.

        "revoked": it was queued or scheduled; a worker will drop it.
        "requested": it is running; it stops at its next progress report or
        check. "finished": too late, it is over. "unknown": no such job.
        """
        record = self.history.get(job_id)
        if record is None:
            return "unknown"
        status = record["status"]
        at = time.time()
        request = {"user": user, "at": at}
        if status in REVOCABLE:
            # One run only: the flag goes once a worker has dropped the job.
            self.huey.revoke_by_id(job_id, revoke_once=True)
            # A worker may be starting it right now: ask that run to stop too.
            self.store.request_cancel(job_id, request, self.settings.cancel_ttl)
            outcome = "revoked"
            note = "revoked: a worker will drop it instead of running it"
        elif status == history_model.RUNNING:
            self.store.request_cancel(job_id, request, self.settings.cancel_ttl)
            outcome = "requested"
            note = "the job stops at its next progress report or check"
        else:
            return "finished"
        self.history.record_event(job_id, "cancel_requested", message=note, by=user)
        self.audit("cancel", job_id, user, ip, name=record["name"], outcome=outcome)
        return outcome

    # -- pause and resume ----------------------------------------------------

    def pause(
        self, name: str | None, user: str, reason: str, ip: str | None = None, queue: str = ""
    ) -> bool:
        """Pause all queues (``name`` None), one job name, or one named ``queue``.

        False if it already was.
        """
        if name is not None and registry.get(name) is None:
            raise LookupError(name)
        target = _target(name, queue)
        reason = reason.strip()[:500]
        paused = self.store.pause(target, {"user": user, "at": time.time(), "reason": reason})
        if paused:
            self._pauses.forget()
            self.audit("pause", target, user, ip, reason=reason)
        return paused

    def resume(
        self, name: str | None, user: str, ip: str | None = None, queue: str = ""
    ) -> tuple[bool, int]:
        """Lift a pause; returns whether it was paused and how many held jobs were queued."""
        target = _target(name, queue)
        was_paused, moved = self.store.resume(target, name)
        if was_paused or moved:
            self._pauses.forget()
            self.audit("resume", target, user, ip, requeued=moved)
        return was_paused, moved

    def pauses(self) -> dict[str, Any]:
        """What is paused now (read fresh): the queue, job names, held job counts."""
        found = self.store.pauses()
        names = [key.split(":", 1)[1] for key in found if key.startswith("job:")]
        named = {
            key.removeprefix(QUEUE_PREFIX): info
            for key, info in found.items()
            if key.startswith(QUEUE_PREFIX)
        }
        return {
            "queue": found.get(QUEUE),
            "queues": named,  # paused named queues (kit/queues.py)
            "jobs": {name: found[job_target(name)] for name in names},
            "held": self.store.held_counts(sorted(set(names) | set(registry.all_jobs()))),
        }

    def paused_now(self) -> dict[str, Any]:
        """The pauses as workers see them: cached for ``PAUSE_CHECK_INTERVAL``."""
        return self._pauses.get()

    def put_back(self, task: Task) -> bool:
        """Return a job taken just as the queue was paused; False: run it after all."""
        try:
            self.store.requeue(self.huey.serialize_task(task), task.priority or 0)
        except BACKEND_ERRORS as exc:
            log.warning("could not put job %s back while paused, running it: %s", task.id, exc)
            return False
        self._release(task)
        return True

    def _release(self, task: Task) -> None:
        """The job is back in the backend's hands: drop this worker's lease on it."""
        delivery = self.huey.hooks.delivery
        if delivery is not None:
            delivery.finish(task)

    def hold(self, task: Task, target: str) -> bool:
        """Set a dequeued job of a paused name aside; False means run it after all."""
        message = self.huey.serialize_task(task)
        try:
            held = self.store.hold(target, task.name, message, task.priority or 0)
        except BACKEND_ERRORS as exc:
            # Better run a paused job than lose it.
            log.warning("could not set job %s aside while paused, running it: %s", task.id, exc)
            return False
        # Either set aside or queued again: this worker is done with it.
        self._release(task)
        if held:
            reason = (self.paused_now().get(target) or {}).get("reason")
            note = f"held: job {task.name} is paused" + (f" ({reason})" if reason else "")
            try:
                self.history.record_event(task.id, "held", message=note)
            except BACKEND_ERRORS:
                log.warning("job %s is held, but its timeline could not say so", task.id)
        return True

    # -- periodic jobs -------------------------------------------------------

    def periodic_jobs(self, at: float | None = None) -> list[dict[str, Any]]:
        """Every periodic job: schedule in words, last run, next run."""
        at = time.time() if at is None else at
        runs = self.store.last_runs()
        pauses = self.store.pauses()
        found = []
        for job in registry.all_jobs().values():
            if job.schedule is None:
                continue
            last = runs.get(job.name)
            if last is not None:
                record = self.history.get(last["id"])
                last = {**last, "status": record["status"] if record else None}
            schedule = job.schedule
            describe = getattr(schedule, "describe", None)
            found.append(
                {
                    "name": job.name,
                    "description": job.description,
                    "expression": getattr(schedule, "expression", None),
                    "schedule": describe() if describe else "a custom schedule",
                    "next_run": self.next_run(schedule, at),
                    "last_run": last,
                    "paused": pauses.get(job_target(job.name)) or pauses.get(QUEUE),
                }
            )
        return found

    def next_run(self, schedule: Any, at: float) -> float | None:
        next_after = getattr(schedule, "next_after", None)
        if next_after is None:
            return None
        if self.huey.utc:
            now = datetime.datetime.fromtimestamp(at, datetime.UTC).replace(tzinfo=None)
            moment = next_after(now)
            return None if moment is None else moment.replace(tzinfo=datetime.UTC).timestamp()
        moment = next_after(datetime.datetime.fromtimestamp(at))
        return None if moment is None else moment.timestamp()

    def run_now(self, name: str, user: str, ip: str | None = None) -> str:
        """Queue a periodic job at once, outside its schedule; returns its id."""
        from ..queue import dispatch

        job = registry.get(name)
        if job is None or job.schedule is None:
            raise NotPeriodic(name)
        job_id = dispatch(name, {}).id
        self.store.set_last_run(name, {"id": job_id, "at": time.time(), "by": user})
        self.audit("run_now", name, user, ip, job=job_id)
        return job_id

    def claim_periodic_runs(self, tasks: list[Task], at: datetime.datetime) -> list[Task]:
        """Let each periodic run be queued once, however many schedulers there are.

        Every worker (``huey_consumer``) runs a scheduler that queues periodic
        jobs when they are due; with several workers each would queue each
        run. Before queuing, a scheduler claims the run (job name and minute)
        in the backend; only the one that gets it queues it.
        """
        minute = at.strftime("%Y%m%d%H%M")
        try:
            return [task for task in tasks if self.store.claim_run(task.name, minute)]
        except BACKEND_ERRORS as exc:
            # Queuing would fail just the same: skip this minute, quietly.
            log.warning("periodic jobs not queued this minute, the queue is unreachable: %s", exc)
            return []

    def _periodic_enqueued(self, signal: str, task: Task, *args: Any) -> None:
        """Huey keeps nothing about periodic runs (fresh id, no result): note each."""
        if isinstance(task, PeriodicTask):
            self.store.set_last_run(task.name, {"id": task.id, "at": time.time()})

    # -- audit log -----------------------------------------------------------

    def audit(
        self, action: str, target: str, user: str, ip: str | None = None, **detail: Any
    ) -> None:
        """Record an operator action: who did what to which job, queue or name."""
        entry = {"at": time.time(), "user": user, "action": action, "target": target}
        if ip:
            entry["ip"] = ip
        entry.update({key: value for key, value in detail.items() if value not in (None, "")})
        self.store.audit_add(entry, self.settings.audit_keep)

    def audit_page(
        self, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[dict[str, Any]], str | None, int]:
        return self.store.audit_page(cursor, limit)

    # -- hooks ---------------------------------------------------------------

    def _write_hook(self, signal: str, task: Task, handle: Any) -> None:
        """Ride on the history's write for a signal (same round trip).

        At the end of a run: what it reported since the background thread's
        last write. When the job will not run again: drop its cancel request.
        """
        item = self.recorder.take_final(task.id) if signal in RUN_ENDINGS else None
        final_failure = signal in (S.SIGNAL_ERROR, S.SIGNAL_TIMEOUT) and not task.retries
        clear = signal in JOB_ENDINGS or final_failure
        if item is not None or clear:
            self.store.add_final(handle, item or Flush(task.id), clear)


class PauseCache:
    """The pauses, looked up at most once per ``ttl`` seconds per process."""

    def __init__(self, store: Any, ttl: float):
        self.store = store
        self.ttl = ttl
        self._lock = threading.Lock()
        self._value: dict[str, Any] = {}
        self._read_at = -float("inf")
        self._pid = os.getpid()

    def get(self) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._read_at < self.ttl and self._pid == os.getpid():
            return self._value
        with self._lock:
            if now - self._read_at < self.ttl and self._pid == os.getpid():
                return self._value
            try:
                self._value = self.store.pauses()
            except BACKEND_ERRORS as exc:
                # Keep the last known state; the dequeue right after will
                # report the outage itself.
                log.debug("could not read the pauses: %s", exc)
            self._read_at, self._pid = now, os.getpid()
            return self._value

    def forget(self) -> None:
        self._read_at = -float("inf")


class PauseGate:
    """The workers' dequeue, honouring pauses (``KitHuey.hooks.gate``).

    While the queue is paused a worker takes nothing, waiting instead of
    spinning; a job of a paused name is set aside (``Controls.hold``) until
    that name resumes.
    """

    def __init__(self, controls: Controls):
        self.controls = controls
        self.idle_wait = controls.settings.pause_check
        self._seen: dict[str, Any] | None = None  # the pauses last passed on

    def is_open(self) -> bool:
        pauses = self.controls.paused_now()
        # Paused named queues are left out of the next takes' pick. The
        # cache hands back the same dict until it reads the pauses again:
        # only a new one is worth looking through (this runs for every job).
        if pauses is not self._seen:
            named = frozenset(
                key.removeprefix(QUEUE_PREFIX) for key in pauses if key.startswith(QUEUE_PREFIX)
            )
            self.controls.huey.queues.set_paused(named)
            self._seen = pauses
        return QUEUE not in pauses

    def admit(self, task: Task) -> Task | None:
        """The job a worker just took, or None if it went back or aside."""
        controls = self.controls
        # Again: on Redis the take may have waited a second for a job, and
        # the pauses may have changed meanwhile (this read is cached too).
        pauses = controls.paused_now()
        if QUEUE in pauses and controls.put_back(task):
            return None
        target = job_target(task.name)
        if target in pauses and controls.hold(task, target):
            return None
        return task


def _target(name: str | None, queue: str) -> str:
    if queue:
        return model.queue_target(check_queue_name(queue))
    return QUEUE if name is None else job_target(name)


def register_periodic(
    huey: Huey, job: registry.Job, run: Any, timeout: float | None
) -> TaskWrapper:
    """Register a periodic job's run function on Huey's scheduler.

    Huey calls periodic tasks with no arguments; "run now" and
    ``POST /jobs/<name>`` queue them with an empty payload like any job.
    """

    def run_periodic(payload: dict | None = None, task: Task | None = None, **kwargs: Any) -> Any:
        return run({} if payload is None else payload, task=task, **kwargs)

    run_periodic.__module__ = job.module
    run_periodic.__qualname__ = run_periodic.__name__ = job.name
    return huey.periodic_task(
        job.schedule,
        name=job.name,
        retries=job.retries,
        retry_delay=job.retry_delay,
        timeout=timeout,
        context=True,
    )(run_periodic)


__all__ = ["ACTIONS", "ControlSettings", "Controls", "NotPeriodic", "model", "register_periodic"]
