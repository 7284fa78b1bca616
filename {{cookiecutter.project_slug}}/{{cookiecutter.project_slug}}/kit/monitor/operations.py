"""The monitor's operator controls: cancel, pause and resume, periodic jobs, audit log.

Pages: ``/monitor/periodic`` (every periodic job, its schedule in words,
last and next run, "Run now"), ``/monitor/pauses`` (pause or resume the
queue or one job name, with a reason) and ``/monitor/audit`` (who did what).
Actions are POST forms behind the monitor's login, CSRF and Origin checks,
like every other action, and each one is written to the audit log, as are
the retry, revoke and delete actions of ``views.py`` (see ``audit.py``).

Templates get two helpers: ``job_extras(job)`` (progress, logs, elapsed
time against the timeout, a pending cancel) for a job's page, and
``running_extras(rows)`` for the list of running jobs.
"""

import datetime
import time
from typing import Any

from flask import Response as FlaskResponse
from flask import abort, current_app, flash, g, jsonify, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from .. import registry
from ..controls import NotPeriodic
from ..controls.model import QUEUE
from ..queue import QueueUnavailable
from ..state import kit_state
from . import security
from .audit import controls, user
from .blueprint import bp
from .views import clamp, render

REASON_CHARS = 500


def job_timeout(name: str) -> float | None:
    """The timeout a job runs with (its own, else ``JOB_TIMEOUT``); None: no limit."""
    job = registry.get(name)
    if job is None:
        return None
    timeout = current_app.config.get("JOB_TIMEOUT") if job.timeout is None else job.timeout
    return float(timeout) if timeout else None


@bp.context_processor
def _operations_helpers() -> dict[str, Any]:
    return {
        "job_extras": job_extras,
        "running_extras": running_extras,
        "queue_pause": queue_pause,
        "describe_target": describe_target,
        "log_time": log_time,
        "number": number,
    }


def queue_pause() -> dict[str, Any] | None:
    """The whole queue's pause, for the banner on every page (None: running)."""
    if not g.get("monitor_user"):
        return None  # the login page, a refusal: say nothing about the queue
    # Read fresh (one small read per page): the cache workers use may lag
    # behind a pause just made through another web process.
    return controls().store.pauses().get(QUEUE)


def log_time(at: float | None) -> str:
    """A log line's time of day in UTC, to the millisecond."""
    if at is None:
        return ""
    moment = datetime.datetime.fromtimestamp(at, datetime.UTC)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def number(value: float | None) -> str:
    """12 for 12.0, 0.5 for 0.5: progress counts as people write them."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def job_extras(job: dict[str, Any]) -> dict[str, Any]:
    """What the job page adds to a record: progress, logs, time, a pending cancel."""
    now = time.time()
    extras = controls().extras([job["id"]], at=now)[job["id"]]
    logs = controls().logs(job["id"]) if extras["log_lines"] or extras["logs_cut"] else None
    by_attempt: dict[int, list[dict[str, Any]]] = {}
    for line in (logs or {}).get("lines", []):
        by_attempt.setdefault(int(line.get("attempt") or 0), []).append(line)
    running = job["status"] == "running"
    timeout = job_timeout(job["name"])
    elapsed = now - job["started_at"] if running and job.get("started_at") else None
    cancel = controls().cancel_request(job["id"]) if job["status"] in ACTIVE else None
    return {
        "progress": extras["progress"],
        "logs": logs,
        "logs_by_attempt": by_attempt,
        "elapsed": elapsed,
        "timeout": timeout,
        "over_time": elapsed is not None and timeout is not None and elapsed > timeout,
        "cancel": cancel,
        "cancellable": job["status"] in CANCELLABLE,
    }


ACTIVE = frozenset({"queued", "scheduled", "running", "retrying"})
# Queued and scheduled jobs have the Revoke button; Cancel is for these.
CANCELLABLE = frozenset({"running", "retrying"})


def running_extras(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Progress and elapsed time against the timeout, per running job."""
    now = time.time()
    found = controls().extras([row["id"] for row in rows], at=now)
    for row in rows:
        extra = found[row["id"]]
        extra["timeout"] = job_timeout(row["name"])
        extra["elapsed"] = now - row["started_at"] if row.get("started_at") else None
    return found


def describe_target(target: str) -> str:
    """An audit entry's target in words."""
    if target == QUEUE:
        return "the whole queue"
    if target.startswith("job:"):
        return f"job name {target[4:]}"
    if target.startswith("queue:"):
        return f"queue {target[6:]}"
    if target == "failed":
        return "failed jobs"
    return target


def back_to(default: str) -> str:
    """Where a form asked to return (a path of this site only), or ``default``."""
    return security.safe_next(request.form.get("next"), default)


# -- cancel ----------------------------------------------------------------------


@bp.post("/job/<job_id>/cancel")
def cancel_job(job_id: str) -> BaseResponse:
    outcome = controls().cancel(job_id, user(), request.remote_addr)
    messages = {
        "requested": (
            "ok",
            "Cancel requested: the job stops at its next progress report or check "
            "(a job that never reports runs to its end).",
        ),
        "revoked": ("ok", "Cancelled: a worker will drop this job instead of running it."),
        "finished": ("error", "This job has finished already: there is nothing to cancel."),
        "unknown": ("error", f"No job has the id {job_id}."),
    }
    category, message = messages[outcome]
    flash(message, category)
    return redirect(back_to(url_for("monitor.job", job_id=job_id)))


# -- pause and resume ------------------------------------------------------------------


@bp.get("/pauses")
def pauses() -> str:
    return render("pauses.html", "_pauses.html", **pauses_context())


def pauses_context() -> dict[str, Any]:
    state = controls().pauses()
    return {
        "queue": state["queue"],
        "paused_jobs": state["jobs"],
        "held": state["held"],
        "job_names": sorted(registry.all_jobs()),
        "check_seconds": controls().settings.pause_check,
    }


def target_name() -> str | None:
    """The job name a pause form is about; None for the whole queue."""
    name = (request.form.get("name") or "").strip()
    if name and registry.get(name) is None:
        abort(404)
    return name or None


@bp.post("/pause")
def pause() -> BaseResponse:
    name = target_name()
    reason = (request.form.get("reason") or "").strip()[:REASON_CHARS]
    what = f"job {name}" if name else "the queue"
    if not reason:
        flash(f"Say why you pause {what}: the reason is shown to everyone.", "error")
    elif controls().pause(name, user(), reason, request.remote_addr):
        flash(
            f"Paused {what}. Workers stop taking {'its' if name else 'new'} jobs within "
            f"{controls().settings.pause_check:g} s; queued jobs wait, nothing is lost.",
            "ok",
        )
    else:
        flash(f"{what[0].upper()}{what[1:]} is paused already.", "error")
    return redirect(back_to(url_for("monitor.pauses")))


@bp.post("/resume")
def resume() -> BaseResponse:
    name = target_name()
    was_paused, moved = controls().resume(name, user(), request.remote_addr)
    what = f"job {name}" if name else "the queue"
    if was_paused or moved:
        extra = f"; {moved} held job{'' if moved == 1 else 's'} queued again" if moved else ""
        flash(f"Resumed {what}{extra}.", "ok")
    else:
        flash(f"{what[0].upper()}{what[1:]} was not paused.", "error")
    return redirect(back_to(url_for("monitor.pauses")))


# -- periodic jobs ---------------------------------------------------------------------


@bp.get("/periodic")
def periodic() -> str:
    jobs_now = controls().periodic_jobs()
    return render("periodic.html", "_periodic.html", periodic_jobs=jobs_now)


@bp.post("/periodic/<name>/run")
def run_periodic(name: str) -> BaseResponse:
    try:
        job_id = controls().run_now(name, user(), request.remote_addr)
    except NotPeriodic:
        abort(404)
    except QueueUnavailable as exc:
        flash(f"The queue is unreachable, nothing was queued: {exc}", "error")
        return redirect(url_for("monitor.periodic"))
    flash(f"Queued {name} now, as job {job_id}.", "ok")
    return redirect(url_for("monitor.job", job_id=job_id))


# -- audit log -------------------------------------------------------------------------


@bp.get("/audit")
def audit_log() -> str:
    cursor = request.args.get("cursor") or None
    limit = clamp(request.args.get("limit"), 50, 1, 200)
    entries, next_cursor, total = controls().audit_page(cursor, limit)
    return render(
        "audit.html",
        "_audit.html",
        entries=entries,
        next_cursor=next_cursor,
        total=total,
        cursor=cursor,
        limit=limit,
    )


# -- JSON API (read-only, like the rest of /monitor/api) ----------------------------------


@bp.get("/api/periodic")
def api_periodic() -> FlaskResponse:
    return jsonify(periodic=controls().periodic_jobs())


@bp.get("/api/pauses")
def api_pauses() -> FlaskResponse:
    return jsonify(controls().pauses())


@bp.get("/api/audit")
def api_audit() -> FlaskResponse:
    limit = clamp(request.args.get("limit"), 50, 1, 200)
    entries, next_cursor, total = controls().audit_page(request.args.get("cursor"), limit)
    return jsonify(entries=entries, next_cursor=next_cursor, total=total)


@bp.get("/api/job/<job_id>/logs")
def api_job_logs(job_id: str) -> FlaskResponse | tuple[FlaskResponse, int]:
    if kit_state().history.get(job_id) is None:
        return jsonify(error="not_found", message=f"no job has the id {job_id!r}"), 404
    return jsonify(controls().logs(job_id))
