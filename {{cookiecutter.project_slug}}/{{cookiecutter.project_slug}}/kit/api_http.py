"""HTTP correctness for the jobs API: JSON errors, honest ``Allow`` headers,
and no dispatch on a browser's behalf from another site.

Werkzeug already does most of HTTP right: ``HEAD`` for every ``GET``,
``OPTIONS`` answered with ``Allow``, 405 with ``Allow``. The API keeps that
and changes two things:

* Errors are JSON with a stable ``error`` code, and keep the headers
  Werkzeug gave them (``Allow`` on a 405, ``WWW-Authenticate`` on a 401,
  ``Retry-After`` on a 429 or a 503), which RFC 9110 requires.
* ``/jobs/<segment>`` is one URL shape for two resources: a job's name,
  where ``POST`` queues that job, and a job's id, where ``GET`` reads it.
  Werkzeug cannot tell them apart and would allow both methods on both;
  the registry can, so ``Allow`` lists only what the resource takes.

And one refusal: :func:`refuse_cross_site`.
"""

import re
from collections.abc import Iterable

from flask import Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, SecurityError

from . import registry

PREFIX = "/jobs/"

# Stable codes for the errors Werkzeug raises: clients match on these, so
# they do not follow Werkzeug's reason phrases, which RFC 9110 renamed.
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "invalid_payload",
    429: "too_many_requests",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
}

# Headers that describe the HTML body Werkzeug would have sent, not ours.
BODY_HEADERS = {"content-type", "content-length"}


def error_code(exc: HTTPException) -> str:
    """The stable ``error`` code of a Werkzeug error."""
    if isinstance(exc, SecurityError):
        return "untrusted_host"  # a Host outside TRUSTED_HOSTS
    code = exc.code or 500
    return ERROR_CODES.get(code) or re.sub(r"[^a-z0-9]+", "_", exc.name.lower()).strip("_")


def json_error(exc: HTTPException) -> Response:
    """``exc`` as a JSON body, with the headers Werkzeug gave it."""
    response = jsonify(error=error_code(exc), message=exc.description or exc.name)
    response.status_code = exc.code or 500
    for name, value in exc.get_headers(request.environ):
        if name.lower() not in BODY_HEADERS:
            response.headers.add(name, value)
    if "Allow" in response.headers:
        allowed = response.headers["Allow"].split(", ")
        response.headers["Allow"] = ", ".join(allowed_methods(request.path, allowed))
    return response


def json_number(text: str) -> int | float:
    """A JSON number with a decimal point, read as JSON Schema reads it.

    ``30.0`` is the integer 30 to JSON Schema (and so to the OpenAPI
    document and every client built from it); Python's ``json`` reads a
    float, which a strict marshmallow ``Integer`` refuses. Exact integers
    only: past 2**53 a float is not one.
    """
    value = float(text)
    if value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def allowed_methods(path: str, methods: Iterable[str]) -> list[str]:
    """Werkzeug's allowed ``methods`` for ``path``, narrowed to its resource.

    Only ``/jobs/<segment>`` is narrowed: a registered job's name takes
    ``POST`` (no ``GET``: it is not a job), anything else is read with
    ``GET`` (no ``POST``: no job has that name).
    """
    methods = sorted(set(methods))
    segment = path[len(PREFIX) :] if path.startswith(PREFIX) else ""
    if not segment or "/" in segment:
        return methods
    dropped = {"GET", "HEAD"} if registry.get(segment) is not None else {"POST"}
    return [method for method in methods if method not in dropped]


def job_name_is_not_a_job(name: str) -> None:
    """Refuse ``GET /jobs/<a job's name>`` with a 405: that URL is for ``POST``."""
    if registry.get(name) is not None:
        raise MethodNotAllowed(valid_methods=["OPTIONS", "POST"])


def narrow_options_allow(response: Response) -> Response:
    """An ``OPTIONS`` answer under ``/jobs/`` lists only its resource's methods."""
    # The environ is cheaper to read than request.method, on every response.
    if request.environ["REQUEST_METHOD"] != "OPTIONS":
        return response
    if request.path.startswith(PREFIX) and response.allow:
        narrowed = allowed_methods(request.path, response.allow)
        response.headers["Allow"] = ", ".join(narrowed)
    return response


# -- requests from other sites ---------------------------------------------------

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values of a request this site's own pages, or the user, made.
OWN_SITE = frozenset({"same-origin", "none"})
DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def refuse_cross_site() -> Response | None:
    """``before_request`` of the jobs API: a browser may dispatch a job only
    from this site's own pages.

    The body is read as JSON whatever its Content-Type (so ``curl -d`` works),
    and a ``text/plain`` form is a request any web page can make a visitor's
    browser send, with no preflight. Browsers say where a request comes from:

    * ``Sec-Fetch-Site`` (every current browser): only ``same-origin`` and
      ``none`` (typed by the user) pass. ``same-site`` is refused too: it
      covers sibling subdomains, and another port of the same host, which
      are other apps, not this one.
    * ``Origin`` (older browsers, on POST): it must be this site, compared by
      scheme, host and port. ``null`` (a sandboxed frame, a ``data:`` page)
      is refused.

    curl and scripts send neither and pass, as before. Two environ lookups on
    the dispatch path; the comparison only runs for browsers.
    """
    environ = request.environ
    if environ["REQUEST_METHOD"] in SAFE_METHODS:
        return None
    site = environ.get("HTTP_SEC_FETCH_SITE")
    origin = environ.get("HTTP_ORIGIN")
    if site is None and origin is None:
        return None
    # A browser's own word first: it is right behind a TLS proxy too.
    if site is not None and site in OWN_SITE:
        return None
    if site is None and normal_origin(origin or "") == own_origin():
        return None
    response = jsonify(
        error="cross_site_request",
        message="a page of another site asked the browser to send this request: refused",
    )
    response.status_code = 403
    return response


def normal_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lowercase, without the scheme's default port."""
    origin = origin.strip().lower()
    scheme = origin.partition("://")[0]
    port = DEFAULT_PORTS.get(scheme)
    return origin[: -len(port)] if port and origin.endswith(port) else origin


def own_origin() -> str:
    """This request's own origin: its scheme and the host it was sent to.

    Behind a proxy, the proxy must pass the original scheme and host
    (``X-Forwarded-Proto``/``-Host``, read by Werkzeug's ``ProxyFix``).
    """
    return normal_origin(f"{request.scheme}://{request.host}")
