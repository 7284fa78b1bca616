"""Job history: every job's life, kept in the queue's own backend.

Huey forgets a job once a worker has taken it, so the kit records each job
from Huey's signals: queued (written together with the queue message, so a
failed enqueue leaves no trace), scheduled, running, then complete or failed,
attempt by attempt. ``GET /jobs/<id>`` and the ``/monitor`` pages read it.

Where it lives follows the queue: Redis keys next to Huey's (see
``redis_store``), or tables in the same SQLite file (``sqlite_store``); in
immediate mode (tests), an in-memory SQLite database.

Every write is one round trip (one Lua call, or one transaction). In a
worker, a job that finishes quickly costs no write of its own: its end joins
other jobs' ends in one write from a background thread (see ``tracker``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from huey import Huey
from huey import signals as S
from huey.api import Task

from .. import queues, run_state
from ..huey_hooks import ConsumerStart
from ..huey_seam import emit
from . import model
from .model import Change, Settings, event
from .reading import Reading
from .tracker import Running, Tracker

if TYPE_CHECKING:
    from ..backends import Backend
    from ..idempotency import Guard

__all__ = ["History", "Settings", "model"]

# Changes per round trip, at most.
MAX_BATCH = 100

# The end of a run, which a worker hands to its tracker's thread (see
# tracker.py). Other writes are made at once, after the deferred ones.
WRITTEN_BEHIND = frozenset({model.COMPLETE, model.FAILED, model.CANCELLED})

# Failure signals: (error type to record, final status when no retry is left).
FAILURES = {
    S.SIGNAL_TIMEOUT: ("TaskTimeout", model.FAILED),
    S.SIGNAL_LOCKED: ("TaskLocked", model.FAILED),
    S.SIGNAL_RATE_LIMITED: ("RateLimited", model.FAILED),
    S.SIGNAL_CANCELED: ("Cancelled", model.CANCELLED),
    S.SIGNAL_INTERRUPTED: ("Interrupted", model.FAILED),
}


class History(Reading):
    """Records jobs from Huey's signals and answers questions about them (``reading``)."""

    def __init__(self, huey: Huey, config: Mapping[str, Any] | None, backend: Backend):
        self.huey = huey
        self.settings = Settings.from_config(config or {})
        self.store = backend.history_store(self.settings)
        self.tracker = Tracker(self._publish, self._write_all, self.settings)
        huey.on_startup("job_history")(self.tracker.worker_started)
        huey.on_shutdown("job_history")(self._worker_stopped)
        huey.post_execute("job_history")(_keep_result)
        # hook(signal, task, handle) runs inside each signal's write: with the
        # Redis commands (redis_store.Commands) or the SQLite cursor of that
        # same round trip, so other bookkeeping (releasing a lease) costs no
        # trip of its own.
        self.write_hooks: list[Callable[[str, Task, Any], None]] = []

    # -- queueing -----------------------------------------------------------

    def enqueue(
        self, task: Task, payload: Any, retry_of: str | None = None, guard: Guard | None = None
    ) -> bool:
        """Record a new job and queue its message in one atomic write.

        With ``retry_of``, the failed job of that id is marked "retried" in
        the same write; if it is no longer failed (someone retried it already),
        nothing is written or queued and False is returned. ``guard``: an
        idempotency key written in the same write (see ``idempotency``).
        """
        at = model.now()
        changes = [self._queued(task, payload, at, retry_of)]
        if retry_of:
            changes.insert(0, self._retried(retry_of, task, at))
        if self.huey.immediate:
            # Immediate mode runs the job inside huey.enqueue(), so the record
            # must exist first; there is no queue message to write with it.
            if not self.store.apply(changes, guard=guard):
                return False
            run_state.of(task).recorded = True
            self.huey.enqueue(task)
            return True
        if task.expires:
            task.resolve_expires(self.huey.utc)  # as huey.enqueue() would
        message = self.huey.serialize_task(task)
        queue = queues.of_task(task)  # its named queue (kit/queues.py)
        priority = task.priority or 0
        if not self.store.apply(changes, message, None, priority, guard=guard, queue=queue):
            return False
        # Huey fires "enqueued" before it writes (so listeners see jobs that
        # may never be queued); ours fires after the write succeeded.
        run_state.of(task).recorded = True
        emit(self.huey, S.SIGNAL_ENQUEUED, task)
        return True

    def job_enqueued(self, task: Task, payload: Any) -> None:
        """Write only the "queued" record (for code that queues by itself)."""
        self.store.apply([self._queued(task, payload, model.now())])
        run_state.of(task).recorded = True

    def _queued(self, task: Task, payload: Any, at: float, retry_of: str | None = None) -> Change:
        # The named queue, and the HTTP API key that queued the job if one did (queue.py).
        meta = task.kwargs.get("meta") or {}
        detail = {key: meta.get(key) for key in ("queue", "api_key_name")}
        detail["message"] = f"retry of {retry_of}" if retry_of else None
        return Change(
            task.id,
            task.name,
            at,
            status=model.QUEUED,
            create={"payload": model.to_json(payload), "enqueued_at": at, "retry_of": retry_of},
            events=[event("queued", at, **detail)],
        )

    def _retried(self, job_id: str, new: Task, at: float) -> Change:
        return Change(
            job_id,
            new.name,
            at,
            status=model.RETRIED,
            only_from=(model.FAILED,),
            fields={"retried_by": new.id},
            events=[event("retried", at, job=new.id)],
        )

    # -- Huey signals --------------------------------------------------------

    def on_signal(self, signal: str, task: Task, exc: BaseException | None = None) -> None:
        """Huey signal receiver: ``huey.signal()(history.on_signal)``."""
        at = model.now()
        state = run_state.peek(task)
        if signal == S.SIGNAL_ENQUEUED:
            if state is not None and state.recorded:
                state.recorded = False  # written with the message; a retry is not
            else:
                # Queued by Huey itself (a retry), or a due job by the kit's scheduler.
                change = self._queued(task, job_payload(task), at)
                if state is not None and state.from_schedule:
                    change.only_from = (model.SCHEDULED, model.RETRYING)
                self._write(signal, task, change)
        elif signal == S.SIGNAL_SCHEDULED:
            eta = eta_timestamp(task.eta, self.huey.utc)
            self._write(
                signal,
                task,
                Change(
                    task.id,
                    task.name,
                    at,
                    status=model.SCHEDULED,
                    score=eta,
                    fields={"eta": eta},
                    create=self._create(task, at),
                    events=[event("scheduled", at, eta=eta)],
                ),
            )
        elif signal == S.SIGNAL_EXECUTING:
            running = self.tracker.started(task.id, task.name, at)
            if running.published:  # no worker thread to publish it later
                self._write(signal, task, self._running(running))
        elif signal == S.SIGNAL_COMPLETE:
            value = None
            if state is not None:
                value, state.result = state.result, None
            result = model.preview(value, self.settings.result_preview_chars)
            self._finish(
                signal,
                task,
                at,
                model.COMPLETE,
                event("completed", at),
                {"result": result},
                counter="complete",
            )
        elif signal == S.SIGNAL_ERROR or signal in FAILURES:
            self._failed(signal, task, at, exc)
        elif signal == S.SIGNAL_RETRYING:
            if state is not None and state.retry_noted:
                state.retry_noted = False  # the failure said so already
            else:
                # RetryTask: the job asked to run again, which is not a failure.
                ending = event("retrying", at)
                self._finish(signal, task, at, model.RETRYING, ending, {}, counter=None)
        elif signal in (S.SIGNAL_REVOKED, S.SIGNAL_EXPIRED):
            status = model.REVOKED if signal == S.SIGNAL_REVOKED else model.EXPIRED
            self._write(
                signal,
                task,
                Change(
                    task.id,
                    task.name,
                    at,
                    status=status,
                    fields={"finished_at": at},
                    create=self._create(task, at),
                    events=[event(status, at)],
                ),
            )

    def _failed(self, signal: str, task: Task, at: float, exc: BaseException | None) -> None:
        kind, final_status = FAILURES.get(signal, ("Error", model.FAILED))
        state = run_state.peek(task)
        if signal == S.SIGNAL_TIMEOUT and exc is None and state is not None:
            exc, state.exception = state.exception, None
        error = model.describe_error(exc, kind, self.settings.traceback_chars)
        if signal == S.SIGNAL_INTERRUPTED and state is not None and state.requeued:
            # The worker stopped mid-job and put it back on the queue as it
            # was (leases/): not a failure, and it will run again.
            ending = event("failed", at, error=error, message="back on the queue")
            self._finish(signal, task, at, model.QUEUED, ending, {}, counter=None)
            return
        if signal == S.SIGNAL_CANCELED and not task.retries:
            # Stopped on purpose, not a failure: an operator's cancel
            # (progress.JobCancelled) says who asked.
            request = (state.cancelled_by if state is not None else None) or {}
            user = request.get("user")
            message = f"cancelled by {user}" if user else error["message"]
            ending = event("cancelled", at, message=message, by=user, asked_at=request.get("at"))
            short = model.to_json({"type": "Cancelled", "message": message})
            self._finish(signal, task, at, model.CANCELLED, ending, {"error": short}, counter=None)
            return
        # Huey retries while task.retries > 0 (a PermanentError sets it to 0);
        # an interrupted job is never retried by Huey itself.
        final = not task.retries or signal == S.SIGNAL_INTERRUPTED
        if not final:
            run_state.of(task).retry_noted = True
        ending = event("failed", at, error=error, message=None if final else "will be retried")
        short = model.to_json({"type": error["type"], "message": error["message"]})
        self._finish(
            signal,
            task,
            at,
            final_status if final else model.RETRYING,
            ending,
            {"error": short},
            counter="failed",
        )

    def _finish(
        self,
        signal: str,
        task: Task,
        at: float,
        status: str,
        ending: dict[str, Any],
        fields: dict[str, Any],
        counter: str | None,
    ) -> None:
        """Write the end of an attempt, and its start if that was not written yet."""
        running = self.tracker.finished(task.id)
        change = Change(task.id, task.name, at, status=status, create=self._create(task, at))
        change.fields = {"finished_at": at, **fields}
        if running is not None:
            duration = at - running.started_at
            change.fields["duration"] = duration
            change.duration_ms = duration * 1000
            ending["duration"] = round(duration, 6)
            if not running.published:
                start = self._running(running)
                change.fields = {**start.fields, **change.fields}
                change.new_attempt = "always"
                change.events.extend(start.events)
        change.events.append(ending)
        if counter:
            change.counters = {counter: 1}
        else:
            change.duration_ms = None
        self._write(signal, task, change)

    def _write(self, signal: str, task: Task, change: Change) -> None:
        """One signal, one write; write hooks may add to the same round trip.

        In a worker, the end of a run goes to the tracker's thread, which
        writes many jobs' ends in one round trip; any other write is made
        at once, after those, so a job's changes land in the order they
        happened.
        """
        if self.tracker.writes_behind:
            if change.status in WRITTEN_BEHIND and signal != S.SIGNAL_INTERRUPTED:
                # That write releases the job's lease (leases/), so nothing else may.
                run_state.of(task).write_pending = True
                self.tracker.defer((signal, task, change))
                return
            self.tracker.drain()
        self._write_all([(signal, task, change)])

    def _write_all(self, items: list[tuple[str, Task, Change]]) -> None:
        """Write ``(signal, task, change)`` items, as few round trips as possible.

        A backend reads every job's record before it writes any, so a batch
        holds each job once; a second change to the same job starts another.
        Batches are capped, to keep each Lua call or transaction short.
        """
        start = 0
        while start < len(items):
            ids: set[str] = set()
            end = start
            while end < len(items) and len(ids) < MAX_BATCH and items[end][2].job_id not in ids:
                ids.add(items[end][2].job_id)
                end += 1
            self._write_batch(items[start:end])
            start = end

    def _write_batch(self, items: list[tuple[str, Task, Change]]) -> None:
        changes = [change for _, _, change in items]
        if not self.write_hooks:
            self.store.apply(changes)
            return

        def extra(handle: Any) -> None:
            for signal, task, _ in items:
                for hook in self.write_hooks:
                    hook(signal, task, handle)

        self.store.apply(changes, extra=extra)

    def _running(self, running: Running) -> Change:
        worker = model.worker_id()
        return Change(
            running.job_id,
            running.name,
            running.started_at,
            status=model.RUNNING,
            fields={"started_at": running.started_at, "finished_at": None, "worker": worker},
            new_attempt="always",
            events=[event("started", running.started_at, worker=worker)],
        )

    def _create(self, task: Task, at: float) -> dict[str, Any]:
        # Fields for a record that does not exist yet: a job queued by code
        # that bypassed the kit. A job the kit queued carries its ``meta``
        # (queue.py) and was recorded with its message, so it needs none,
        # which spares every job's last write a copy of its payload.
        if "meta" in task.kwargs:
            return {}
        return {"payload": model.to_json(job_payload(task)), "enqueued_at": at}

    def _publish(self, running: list[Running], heartbeat: dict[str, Any]) -> None:
        self.store.apply([self._running(r) for r in running], heartbeat=heartbeat)

    def _worker_stopped(self) -> None:
        if self.tracker.worker_stopped():
            self.store.remove_worker(model.worker_id())

    # -- hooks for other parts of the kit ------------------------------------

    def record_recovered(self, task_or_id: Task | str, reason: str, counted: bool = True) -> bool:
        """Record that a job's worker died and the job goes back to the queue.

        For the lease reaper: call it *before* re-enqueueing the job. The lost
        run counts as an attempt ("worker lost" on the timeline, not a
        failure: the job's retries are untouched) and in the overview's
        recovered count; with ``counted=False`` (a job its worker had only
        taken ahead) it is not an attempt.
        Returns False when the record is not running or queued any more
        (then nothing is written).
        """
        return self._worker_lost(task_or_id, reason, recovered=True, counted=counted)

    def record_parked(self, task_or_id: Task | str, reason: str) -> bool:
        """Record that a job's worker died and the job is parked as failed.

        For the lease reaper, when the job must not run twice
        (``on_worker_lost="fail"``) or was lost too often (a poison pill).
        Like :meth:`record_recovered`, but final.
        """
        return self._worker_lost(task_or_id, reason, recovered=False)

    def _worker_lost(
        self, task_or_id: Task | str, reason: str, recovered: bool, counted: bool = True
    ) -> bool:
        """End a run whose worker died: back to the queue, or parked as failed.

        Either way the lost run counts as an attempt, and a start that was
        never published still was an attempt, unless ``counted`` is False:
        then only a start that was published is one.
        """
        job_id = getattr(task_or_id, "id", task_or_id)
        record = self.store.get(job_id)
        if record is None:
            return False
        at = model.now()
        fields: dict[str, Any] = {"finished_at": at}
        error = None
        if not recovered:
            error = {"type": "WorkerLost", "message": reason}
            fields["error"] = model.to_json(error)
        lost = event("worker_lost", at, message=reason, worker=record.get("worker"), error=error)
        # A job queued again was recovered; only a parked one failed.
        counters = {"recovered": 1} if recovered else {"failed": 1}
        change = Change(
            job_id,
            record["name"],
            at,
            status=model.QUEUED if recovered else model.FAILED,
            only_from=(model.RUNNING, model.QUEUED),
            new_attempt="if_queued" if counted else "",
            count_recovered=recovered,
            fields=fields,
            events=[lost],
            counters=counters,
        )
        return self.store.apply([change])

    def record_event(
        self, job_id: str, kind: str, message: str | None = None, **detail: Any
    ) -> bool:
        """Add an entry to a job's timeline (one write); False if no such job."""
        at = model.now()
        change = Change(
            job_id,
            "",
            at,
            only_from=model.STATUSES,
            events=[event(kind, at, message=message, **detail)],
        )
        return self.store.apply([change])

    def flush(self) -> None:
        """Write now what this worker process handed to its tracker's thread.

        Reads see a finished job within a round trip or so anyway; this is
        for code (and tests) that must read it back at once.
        """
        self.tracker.drain()

    def consumer_started(self, start: ConsumerStart) -> None:
        """A consumer listener (``KitHuey.hooks``): the heartbeat reports its options."""
        self.tracker.worker_type = start.worker_type
        self.tracker.workers = start.workers

    def on_heartbeat(self, hook: Callable[[list[str]], None]) -> None:
        """Call ``hook(running_job_ids)`` after each heartbeat of a worker process."""
        self.tracker.heartbeat_hooks.append(hook)

    # -- operator actions ----------------------------------------------------

    def revoke(self, job_id: str) -> bool:
        """Ask Huey to drop a queued or scheduled job when a worker reaches it."""
        record = self.store.get(job_id)
        if record is None or record["status"] not in (model.QUEUED, model.SCHEDULED):
            return False
        self.huey.revoke_by_id(job_id)
        return self.record_event(job_id, "revoke_requested")

    def delete(self, job_id: str) -> bool:
        """Delete a finished job's record; active jobs must be revoked first."""
        final = tuple(s for s in model.STATUSES if s not in model.ACTIVE)
        change = Change(job_id, "", model.now(), delete=True, only_from=final)
        return self.store.apply([change])

    def forget(self, job_id: str) -> None:
        """Delete a record whatever its status."""
        self.store.apply([Change(job_id, "", model.now(), delete=True)])


def _keep_result(task: Task, value: Any, exc: BaseException | None) -> None:
    """Huey runs post-execute hooks just before the "complete" signal."""
    if exc is None:
        run_state.of(task).result = value


def job_payload(task: Task) -> Any:
    """A kit job's payload is its one positional argument (see queue.py)."""
    if len(task.args) == 1:
        return task.args[0]
    return {"args": list(task.args)}


def eta_timestamp(eta: datetime.datetime | None, utc: bool) -> float:
    """Huey's ETAs are naive datetimes, in UTC when ``huey.utc`` is set."""
    if eta is None:
        return model.now()
    if eta.tzinfo is None and utc:
        eta = eta.replace(tzinfo=datetime.UTC)
    return eta.timestamp()
