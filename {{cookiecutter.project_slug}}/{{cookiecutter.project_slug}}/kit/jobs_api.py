"""The jobs HTTP API: dispatch a job, then follow it by id.

``POST /jobs/<name>`` answers 202 Accepted: the job is queued, not done.
Its ``status_url`` (``GET /jobs/<id>``) tells when it is. A unique job sent
again within its window answers 200 with the id of the job already there,
and so does a request sent again with its ``Idempotency-Key`` (idempotency.py).
Every request is checked against the API keys first (``api_keys.py``).
``?delay=<seconds>`` or ``?at=<ISO 8601 time with offset>`` schedules the job
instead (``delays.py``): 202 with ``"status": "scheduled"`` and its ``eta``.
"""

import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from . import api_http, api_keys, delays, idempotency, job_ids, payloads, registry
from .backends import BACKEND_ERRORS
from .queue import NotReplicated, QueueUnavailable
from .queue import dispatch as dispatch_job
from .state import kit_state

bp = Blueprint("jobs", __name__, url_prefix="/jobs")
# OPTIONS answers list the methods of the resource, not of the URL shape.
bp.after_app_request(api_http.narrow_options_allow)
# API keys: who may dispatch and read which jobs (see api_keys.py).
bp.record_once(api_keys.setup)


@bp.before_request
def check_caller() -> Response | None:
    """Refuse a request a page of another site made (see api_http.py), then
    one without a key that may do this (see api_keys.py).

    In that order, so that a forged request never counts as a failed sign-in.
    """
    return api_http.refuse_cross_site() or api_keys.guard()


def error(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    """A JSON error body: a stable ``error`` code and a human ``message``."""
    return jsonify(error=code, message=message, **extra), status


@bp.get("")
def list_jobs() -> Response:
    """The registered jobs and the fields each payload takes: those the key may use."""
    jobs = registry.all_jobs().values()
    return jsonify(jobs=[describe(job) for job in jobs if api_keys.may_use(job.name)])


@bp.post("/<name>")
def dispatch(name: str) -> tuple[Response, int]:
    job = registry.get(name)
    if job is None:
        return error(
            404, "unknown_job", f"no job is called {name!r}", jobs=list(registry.all_jobs())
        )
    try:
        idempotency_key = idempotency.from_environ(request.environ)
    except idempotency.InvalidIdempotencyKey as exc:
        return error(400, "invalid_idempotency_key", str(exc))
    try:
        # The body is parsed as JSON whatever its Content-Type, so a plain
        # ``curl -d '{...}'`` works too.
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        return error(413, "payload_too_large", f"the body is over {limit} bytes")
    try:
        # Refuses nesting too deep and lone surrogates too (see payloads.py).
        payload = payloads.parse(body)
    except payloads.Refused as exc:
        return error(400, exc.code, str(exc))
    if not isinstance(payload, dict):
        return error(400, "invalid_payload", "the body must be a JSON object")
    try:
        # Most dispatches have no query string: no parsing then.
        query = request.args if request.environ.get("QUERY_STRING") else {}
        delay, at = when(query)
        queue = query.get("queue")
        if queue is not None and queue not in (job.queue, *job.queues):
            allowed = ", ".join((job.queue, *job.queues))
            message = f"{name} may go to these queues only: {allowed}"
            return error(422, "invalid_queue", message, fields={"queue": [message]})
        dispatched = dispatch_job(
            name,
            payload,
            idempotency_key=idempotency_key,
            api_key_name=api_keys.key_name(),
            queue=queue,
            delay=delay,
            eta=at,
        )
    except delays.BadSchedule as exc:
        return error(422, "invalid_schedule", exc.message, fields={exc.field: [exc.message]})
    except ValidationError as exc:
        return error(
            422,
            "invalid_payload",
            "the payload does not match the job's schema",
            fields=exc.messages,
        )
    except idempotency.IdempotencyKeyReused as exc:
        return error(422, "idempotency_key_reused", str(exc))
    except NotReplicated:
        # REDIS_WAIT_REPLICAS: on the master, not yet safe from its loss.
        response, status = error(
            503,
            "not_replicated",
            "the job was queued but not copied to enough Redis replicas in time; it may "
            "or may not run: send it again with the same Idempotency-Key to find out",
        )
        response.headers["Retry-After"] = "1"
        return response, status
    except QueueUnavailable:
        response, status = error(
            503, "queue_unavailable", "the job queue is unreachable; nothing was queued, try again"
        )
        response.headers["Retry-After"] = "5"
        return response, status
    # Built by hand: url_for(_external=True) converts the whole URL again
    # (IDNA and all), which costs as much as the rest of the response.
    path = f"{request.root_path}{bp.url_prefix}/{dispatched.id}"
    url = f"{request.scheme}://{request.host}{path}"
    body = {"id": dispatched.id, "name": name, "status": "queued", "status_url": url}
    if dispatched.eta is not None:
        eta = datetime.datetime.fromtimestamp(dispatched.eta, datetime.UTC)
        body.update(status="scheduled", eta=eta.isoformat(timespec="milliseconds"))
    code = 202
    if not dispatched.created:
        # A unique job already dispatched within its window: that job.
        try:
            record = kit_state().history.get(dispatched.id) or {}
        except BACKEND_ERRORS:
            record = {}
        body.update(status=record.get("status", "queued"), duplicate=True)
        if body["status"] == "scheduled" and isinstance(record.get("eta"), int | float):
            eta = datetime.datetime.fromtimestamp(record["eta"], datetime.UTC)
            body["eta"] = eta.isoformat(timespec="milliseconds")
        code = 200
    response = jsonify(body)
    # Without scheme and host, as Flask's own redirects are: Werkzeug would
    # convert an absolute Location on every response.
    response.headers["Location"] = path
    return response, code


def when(args: Any) -> tuple[float | None, datetime.datetime | None]:
    """The ``delay`` and ``at`` query parameters, parsed; BadSchedule if malformed."""
    delay, at = args.get("delay"), args.get("at")
    return (
        None if delay is None else delays.parse_delay(delay),
        None if at is None else delays.parse_at(at),
    )


@bp.get("/<job_id>")
@api_keys.allow_anonymous
def status(job_id: str) -> Response | tuple[Response, int]:
    api_http.job_name_is_not_a_job(job_id)
    if not job_ids.is_job_id(job_id):
        # Checked before any key is built from it: "<id>:x" names another key.
        return error(404, "unknown_job_id", f"{job_ids.shown(job_id)} is not a job id")
    try:
        record = kit_state().history.get(job_id)
        if record is not None:
            # What the job last reported (see progress.py), or None.
            record["progress"] = kit_state().controls.progress(job_id)
    except BACKEND_ERRORS:
        return error(503, "queue_unavailable", "the job store is unreachable, try again")
    if record is None:
        return error(404, "unknown_job_id", f"no job has the id {job_id!r}")
    # All of it for a key that may read this job, else only public fields.
    response = jsonify(api_keys.status_view(record))
    response.vary.add("Authorization")
    return response


def status_url(job_id: str) -> str:
    """The absolute URL of ``GET /jobs/<job_id>``, where a client follows a job."""
    return url_for("jobs.status", job_id=job_id, _external=True)


def describe(job: registry.Job) -> dict[str, Any]:
    """A job's name, docstring summary and payload fields, for humans."""
    fields = {
        field_name: {"type": type(field).__name__, "required": field.required}
        for field_name, field in job.schema().fields.items()
    }
    return {
        "name": job.name,
        "description": job.description,
        "fields": fields,
        "retries": job.retries,
        "timeout": job.timeout,
        "unique_for": job.unique_for or None,
        "queue": job.queue,
        "schedule": describe_schedule(job.schedule),
    }


def describe_schedule(schedule: Any) -> dict[str, Any] | None:
    """A periodic job's schedule as a crontab line and in words (UTC)."""
    if schedule is None:
        return None
    describe = getattr(schedule, "describe", None)
    return {
        "cron": getattr(schedule, "expression", None),
        "description": describe() if describe else "a custom schedule",
    }


@bp.app_errorhandler(HTTPException)
def http_error(exc: HTTPException) -> HTTPException | Response:
    """Errors under /jobs are JSON, like the rest of the API, and keep their
    headers (``Allow``, ``WWW-Authenticate``, ``Retry-After``).

    Registered app-wide because routing errors (404, 405) happen before
    Flask knows which blueprint a URL belongs to.
    """
    if not request.path.startswith(bp.url_prefix or "/") or exc.response is not None:
        return exc
    return api_http.json_error(exc)
