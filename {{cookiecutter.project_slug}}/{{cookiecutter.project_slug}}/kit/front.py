"""The front door, ``GET /``: the app's name and where to go from there.

A small HTML page, or JSON for a client that asks for it (``Accept:
application/json``), linking to the monitor, the jobs API, its OpenAPI
document and the health check.

Your app's own ``/`` wins: this one is registered on a converter that
matches only the empty path, and Werkzeug tries a URL's static rules
before its converters, so a view of yours at ``/`` takes the URL whether it
was registered before or after the kit.
"""

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    render_template,
    request,
    url_for,
)
from werkzeug.routing import BaseConverter

bp = Blueprint("jobkit_front", __name__, template_folder="templates")

# Answers vary with Accept: caches must keep the HTML and the JSON apart.
VARY = "Accept"
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"


class EmptyPath(BaseConverter):
    """Matches only the empty string: ``/<front_door:page>`` is ``/`` alone."""

    regex = ""


def init_app(app: Flask) -> None:
    app.url_map.converters["front_door"] = EmptyPath
    app.register_blueprint(bp)


@bp.get("/<front_door:page>")
def index(page: str) -> Response:
    name = current_app.config.get("APP_NAME") or current_app.name
    links = {
        "monitor": url_for("monitor.overview"),
        "jobs": url_for("jobs.list_jobs"),
        "openapi": url_for("jobs_openapi.openapi_json"),
        "health": url_for("health.healthz"),
    }
    accept = request.accept_mimetypes
    if accept.best_match(["text/html", "application/json"]) == "application/json":
        response = jsonify(name=name, links=links)
    else:
        response = Response(render_template("jobkit/front.html", name=name, links=links))
        response.headers["Content-Security-Policy"] = CSP
    response.vary.add(VARY)
    return response
