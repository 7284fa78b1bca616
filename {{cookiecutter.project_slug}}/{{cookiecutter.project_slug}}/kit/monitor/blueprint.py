"""The monitor's blueprint: access control, headers and error pages.

The pages and API routes register themselves on ``bp`` in ``views.py``,
``operations.py`` and ``api.py``; ``__init__.py`` imports them.
"""

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import TooManyRequests
from werkzeug.wrappers import Response as BaseResponse

from .. import job_ids
from ..backends import BACKEND_ERRORS
from ..state import kit_state
from . import present, security, sessions
from .throttle import LoginThrottle

# The monitor ships its own templates and static files, so that the app's
# templates/ and static/ folders stay the project's own.
bp = Blueprint(
    "monitor",
    __name__,
    url_prefix="/monitor",
    template_folder="templates",
    static_folder="static",
)


@bp.record_once
def _setup(state) -> None:
    app = state.app
    kit = kit_state(app)
    kit.monitor_off = sessions.prepare_secret_key(app)
    app.session_interface = sessions.CookieSessions()
    # Created here, once per app and process, before any request can race;
    # shared with /metrics and the jobs API's keys.
    kit.auth_store = kit.backend.auth_store()
    kit.login_throttle = LoginThrottle.from_config(app.config, kit.auth_store)


@bp.context_processor
def _helpers() -> dict:
    return {"fmt": present, "csrf_token": security.csrf_token, "user": g.get("monitor_user")}


def is_api() -> bool:
    return request.path.startswith(f"{bp.url_prefix}/api/")


def refuse(status: int, title: str, message: str) -> Response:
    """A refusal as JSON for the API, as a page for browsers."""
    if is_api():
        response = jsonify(error=title, message=message)
    else:
        page = render_template("monitor/refused.html", title=title, message=message)
        response = make_response(page)
    response.status_code = status
    return response


@bp.before_request
def _guard() -> BaseResponse | None:
    """Authentication, then Origin and CSRF checks on anything but GET."""
    if request.endpoint == "monitor.static":
        return None  # the stylesheet and script, which the login page needs too
    kit = kit_state()
    off = kit.monitor_off
    if off:
        if not kit.monitor_off_logged:
            kit.monitor_off_logged = True
            current_app.logger.error(off)
        return refuse(503, "Monitor off", off)
    mode = security.access_mode()
    if mode == "locked":
        return refuse(
            403,
            "Monitor locked",
            "No credentials are configured. Set FLASK_MONITOR_USERNAME and "
            "FLASK_MONITOR_PASSWORD in the web app's environment (see .env.example), "
            "then restart it.",
        )
    if mode == "open":
        g.monitor_user = "anyone (debug mode)"
    else:
        g.monitor_user = sessions.session_user() or security.basic_auth_user()
        if g.monitor_user is None and request.endpoint != "monitor.login":
            if is_api() or request.args.get("partial"):
                response = refuse(401, "Login required", "Log in again, or send HTTP Basic.")
                response.headers["WWW-Authenticate"] = 'Basic realm="monitor"'
                return response
            return redirect(url_for("monitor.login", next=request.full_path.rstrip("?")))
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        if not security.same_origin():
            return refuse(403, "Cross-site request refused", "This form was sent by another site.")
        if not security.csrf_ok():
            return refuse(
                403, "Form expired", "The form's security token is missing or stale: reload it."
            )
    return None


@bp.before_request
def _job_id_shape() -> None:
    """A ``<job_id>`` in the URL that is not a job id is a 404, before any
    view builds a storage key from it (see job_ids.py). Registered after
    ``_guard``, so a stranger still meets the login first."""
    job_id = (request.view_args or {}).get("job_id")
    if job_id is not None and not job_ids.is_job_id(job_id):
        if is_api():
            message = f"{job_ids.shown(job_id)} is not a job id"
            abort(make_response(jsonify(error="not_found", message=message), 404))
        abort(404)


@bp.after_request
def _headers(response: Response) -> Response:
    return security.add_headers(response)


@bp.errorhandler(404)
def _not_found(exc: Exception) -> Response:
    return refuse(404, "Not found", "There is no such job or page (it may have been pruned).")


@bp.errorhandler(TooManyRequests)
def _too_many(exc: TooManyRequests) -> Response:
    response = refuse(429, "Too many attempts", str(exc.description))
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _unavailable(exc: Exception) -> Response:
    return refuse(503, "Job store unreachable", f"The queue backend did not answer: {exc}")


for _error in BACKEND_ERRORS:
    bp.register_error_handler(_error, _unavailable)
