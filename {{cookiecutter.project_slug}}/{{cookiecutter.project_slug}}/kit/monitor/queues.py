"""``/monitor/queues``: each named queue's depth, age, schedule, weight and pause.

One row per queue the app knows of (``WORKER_QUEUES`` and the queues its
jobs name, see ``kit/queues.py``): how many jobs wait and for how long the
next one has waited, how many are on the schedule for it, its weight as
this app's config gives it (each worker's ``--queues`` may differ), whether
it is paused (with a form to pause or resume it) and how many of its jobs
ended in the last hour. ``/monitor/api/queues`` serves the same as JSON.
"""

import time
from typing import Any

from flask import Response, abort, current_app, flash, jsonify, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from .. import queues, registry
from ..state import kit_state
from .audit import controls, user
from .blueprint import bp
from .views import render

# Scheduled jobs read per look to count them by queue: past this many, the
# counts are lower bounds.
SCHEDULE_SCAN = 10_000


def queue_rows() -> list[dict[str, Any]]:
    """Every known queue, heaviest first, with what the page shows."""
    kit = kit_state()
    jobs = list(registry.all_jobs().values())
    names = queues.known_queues(current_app.config, jobs)
    weights = queues.parse_weights(current_app.config.get("WORKER_QUEUES") or {"default": 1})
    sizes = kit.backend.queue_sizes(names, SCHEDULE_SCAN)
    paused = controls().pauses()["queues"]
    ended = {name: {"complete": 0, "failed": 0} for name in names}
    home = {job.name: job.queue for job in jobs}
    for stats in kit.history.overview(hours=1)["jobs"]:
        counts = ended.get(home.get(stats["name"], ""))
        if counts is not None:
            counts["complete"] += stats["complete"]
            counts["failed"] += stats["failed"]
    now = time.time()
    rows = []
    for name in names:
        size = sizes[name]
        since = queues.waiting_since(size.next_message)
        rows.append(
            {
                "name": name,
                "depth": size.depth,
                "oldest_age": None if since is None else max(0.0, now - since),
                "scheduled": size.scheduled,
                "weight": weights.get(name),
                "paused": paused.get(name),
                "last_hour": ended[name],
                "jobs": sorted(job.name for job in jobs if job.queue == name),
            }
        )
    return sorted(rows, key=lambda row: -(row["weight"] or 0))


@bp.get("/queues")
def queues_page() -> str:
    return render(
        "queues.html",
        "_queues.html",
        rows=queue_rows(),
        strict=bool(current_app.config.get("STRICT_PRIORITY")),
    )


@bp.get("/api/queues")
def api_queues() -> Response:
    return jsonify(queues=queue_rows())


def queue_name() -> str:
    name = (request.form.get("queue") or "").strip()
    if not queues.NAME.match(name):
        abort(404)
    return name


@bp.post("/queues/pause")
def pause_queue() -> BaseResponse:
    name = queue_name()
    reason = (request.form.get("reason") or "").strip()[:500]
    if not reason:
        flash(f"Say why you pause queue {name}: the reason is shown to everyone.", "error")
    elif controls().pause(None, user(), reason, request.remote_addr, queue=name):
        flash(f"Paused queue {name}: workers take none of its jobs; nothing is lost.", "ok")
    else:
        flash(f"Queue {name} is paused already.", "error")
    return redirect(url_for("monitor.queues_page"))


@bp.post("/queues/resume")
def resume_queue() -> BaseResponse:
    name = queue_name()
    was_paused, _ = controls().resume(None, user(), request.remote_addr, queue=name)
    flash(f"Resumed queue {name}." if was_paused else f"Queue {name} was not paused.",
          "ok" if was_paused else "error")  # fmt: skip
    return redirect(url_for("monitor.queues_page"))
