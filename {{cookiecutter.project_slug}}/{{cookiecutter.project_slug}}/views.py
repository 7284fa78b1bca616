"""Your own views: queueing a job from your code.

The kit already serves ``POST /jobs/<name>`` for any job. This view shows
the other way in: a view of yours does its own part of the work, hands the
slow part to a job with ``enqueue()``, and answers at once with the job's
id. Replace it with your own views.
"""

from flask import Blueprint, Response, jsonify, request
from marshmallow import ValidationError

from .kit import QueueUnavailable, enqueue, status_url

bp = Blueprint("views", __name__)


@bp.post("/pessoas")
def cadastrar_pessoa() -> tuple[Response, int]:
    """Sign a person up and queue their welcome (the ``jobModelo`` job)."""
    pessoa = request.get_json(silent=True)
    if not isinstance(pessoa, dict):
        return jsonify(error="invalid_payload", message="the body must be a JSON object"), 400
    # Your own work would go here: save the person, say.
    try:
        # enqueue() validates the payload against the job's schema, queues
        # the job and returns its id. When it raises, nothing was queued.
        job_id = enqueue("jobModelo", pessoa)
    except ValidationError as exc:
        return jsonify(error="invalid_payload", fields=exc.messages), 422
    except QueueUnavailable:
        response = jsonify(error="queue_unavailable", message="try again in a few seconds")
        response.headers["Retry-After"] = "5"
        return response, 503
    # 202 Accepted: the welcome is queued, not done yet; status_url follows it.
    return jsonify(status="queued", job_id=job_id, status_url=status_url(job_id)), 202
