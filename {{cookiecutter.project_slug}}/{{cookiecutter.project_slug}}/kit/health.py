"""Health checks for load balancers and orchestrators.

``/healthz`` says the process is up (restart it if not); ``/readyz`` says it
can do its work, that is, reach the queue and write to it (send it traffic
only if so).
"""

from flask import Blueprint, Response, jsonify

from .queue import QueueUnavailable, backend_name, check_writable, ping

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    backend = backend_name()
    try:
        ping()
        check_writable()
    except QueueUnavailable as exc:
        return jsonify(status="unavailable", queue=backend, error=str(exc)), 503
    return jsonify(status="ready", queue=backend)
