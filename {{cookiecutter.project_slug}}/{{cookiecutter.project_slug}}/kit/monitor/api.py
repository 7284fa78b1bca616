"""``/monitor/api/...``: the monitor's data as JSON, for scripts and deploy hooks.

Same credentials as the pages (HTTP Basic works), same redaction, read-only::

    curl -u "$USER:$PASSWORD" http://127.0.0.1:5000/monitor/api/counts
    # {"counts": {"running": 3, "queued": 12, ...}, "queue_depth": 12, ...}
"""

from flask import Response, abort, jsonify

from ..history import model
from .blueprint import bp
from .operations import job_extras, running_extras
from .views import history, list_filters, query_list, queue_depths, redacted


@bp.get("/api/counts")
def api_counts() -> Response:
    """Jobs per status right now: "how many are running?" in one request."""
    data = history().overview(hours=1)
    return jsonify(
        counts=data["counts"],
        queue_depth=data["queue_depth"],
        latency_seconds=data["latency"],
    )


@bp.get("/api/overview")
def api_overview() -> Response:
    data = history().overview()
    data["workers"] = history().workers()
    data["queue_depths"] = queue_depths()
    return jsonify(data)


@bp.get("/api/jobs/<status>")
def api_jobs(status: str) -> Response:
    """A page of a status list; pass ``next_cursor`` back as ``cursor``."""
    if status not in model.STATUSES:
        abort(404)
    rows, cursor, total, examined = query_list(status, list_filters(status))
    if examined is not None:
        return jsonify(jobs=rows, next_cursor=cursor, examined=examined)
    if status == model.RUNNING and rows:
        # How far each got, and its time against its timeout.
        extras = running_extras(rows)
        for row in rows:
            extra = extras[row["id"]]
            row.update(progress=extra["progress"], elapsed=extra["elapsed"])
            row["timeout"] = extra["timeout"]
    return jsonify(jobs=rows, next_cursor=cursor, total=total)


@bp.get("/api/job/<job_id>")
def api_job(job_id: str) -> Response | tuple[Response, int]:
    record = history().detail(job_id)
    if record is None:
        return jsonify(error="not_found", message=f"no job has the id {job_id!r}"), 404
    record["payload"] = redacted(record.get("payload"))
    record["result"] = redacted(record.get("result"))
    extra = job_extras(record)
    record.update({key: extra[key] for key in ("progress", "logs", "elapsed", "timeout")})
    record["cancel_requested"] = extra["cancel"]
    return jsonify(record)


@bp.get("/api/workers")
def api_workers() -> Response:
    return jsonify(workers=history().workers())
