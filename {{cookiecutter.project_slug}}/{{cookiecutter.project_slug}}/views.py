"""Your own views: queueing a job from your code.

The kit already serves ``POST /jobs/<name>`` for any job. This view shows
the other way, the Go guide's "directly in code": a view of yours does its
own part of the work, hands the slow part to a job with ``enqueue()``, and
answers at once with the job's id. Replace it with your own views.
"""

from flask import Blueprint, Response, jsonify, request, url_for
from marshmallow import ValidationError

from .kit import QueueUnavailable, UnknownJob, enqueue

bp = Blueprint("views", __name__)


@bp.post("/pessoas")
def cadastrar_pessoa() -> tuple[Response, int]:
    """Sign a person up and queue their welcome (the ``jobModelo`` job)."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify(error="invalid_json", message="send a JSON object"), 400
    # Your own work would go here: save the person, say.
    try:
        # enqueue() validates the payload against the job's schema, queues
        # the job and returns its id. Nothing is queued if it raises.
        job_id = enqueue("jobModelo", {"nome": data.get("nome"), "idade": data.get("idade")})
    except ValidationError as exc:
        return jsonify(error="validation_failed", fields=exc.messages), 422
    except UnknownJob:
        return jsonify(error="unknown_job", message="jobModelo is not defined"), 404
    except QueueUnavailable:
        response = jsonify(error="queue_unavailable", message="try again in a few seconds")
        response.headers["Retry-After"] = "5"
        return response, 503
    # 202 Accepted: the welcome is queued, not done; its status is at status_url.
    status_url = url_for("jobs.status", job_id=job_id, _external=True)
    return jsonify(status="queued", job_id=job_id, status_url=status_url), 202
