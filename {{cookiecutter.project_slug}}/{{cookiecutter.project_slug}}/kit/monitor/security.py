"""Who may use the monitor, and the checks every request goes through.

Job monitors are often deployed wide open (Flower, rq-dashboard and asynqmon
all are by default), and they can re-run jobs and read their payloads. This
one is closed by default:

* Credentials come from configuration (``MONITOR_USERNAME`` and
  ``MONITOR_PASSWORD``) and are compared in constant time. A browser logs in
  with a form; scripts send HTTP Basic. An address that gets them wrong
  ``MONITOR_LOGIN_ATTEMPTS`` times within ``MONITOR_LOGIN_WINDOW`` seconds is
  refused (429) until the window has passed, so a password cannot be guessed
  at the speed of the web server; the failures are counted in the queue's
  backend, for every web process at once (``throttle.py``). A browser's
  login is a session cookie bound to the credentials, which logging out
  revokes (``sessions.py``). With no credentials configured the
  monitor refuses everyone and says how to set them, unless
  ``MONITOR_OPEN_IN_DEBUG`` is on *and* the app runs in debug mode.
* Every POST carries a CSRF token tied to the session, and is refused when the
  browser says it comes from another site (``Sec-Fetch-Site``, ``Origin``).
* After login or an action, the monitor goes back only to a path of this
  site (``safe_next``): never to a URL another site slipped into ``next``.
* Every response forbids inline script and framing (Content-Security-Policy),
  so even a payload that slipped past escaping could not run.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import secrets
from urllib.parse import urljoin, urlsplit

from flask import current_app, request, session
from werkzeug.urls import iri_to_uri
from werkzeug.wrappers import Response

from ..state import kit_state
from .sessions import CSRF_FIELD
from .throttle import LoginThrottle

log = logging.getLogger(__name__)

CSRF_HEADER = "X-CSRF-Token"

# No inline script or style, nothing from other origins, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Pages hold payloads and tracebacks: never keep them in a shared cache.
    "Cache-Control": "no-store",
}


def access_mode() -> str:
    """Return "login" when credentials are configured, else "open" or "locked"."""
    config = current_app.config
    if config.get("MONITOR_USERNAME") and config.get("MONITOR_PASSWORD"):
        return "login"
    if config.get("MONITOR_OPEN_IN_DEBUG") and current_app.debug:
        return "open"
    return "locked"


def check_credentials(username: str, password: str) -> bool:
    """Compare both values in constant time, so timing reveals neither.

    Raises ``TooManyRequests`` (429, with ``Retry-After``) for an address that
    failed too often lately, even when the credentials are right.
    """
    config = current_app.config
    throttle: LoginThrottle = kit_state().login_throttle
    address = request.remote_addr or "unknown"
    throttle.check(address)
    user_ok = hmac.compare_digest(
        username.encode(), str(config.get("MONITOR_USERNAME") or "").encode()
    )
    password_ok = hmac.compare_digest(
        password.encode(), str(config.get("MONITOR_PASSWORD") or "").encode()
    )
    if not (user_ok and password_ok):
        log.warning("failed monitor sign-in from %s", address)
        throttle.failed(address)
        return False
    return True


def basic_auth_user() -> str | None:
    """The user named by a valid ``Authorization: Basic`` header, if any."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, _, password = decoded.partition(":")
    return username if check_credentials(username, password) else None


def csrf_token() -> str:
    """This session's CSRF token, created on first use."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return session[CSRF_FIELD]


def csrf_ok() -> bool:
    expected = session.get(CSRF_FIELD)
    given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def same_origin() -> bool:
    """False when the browser says this request comes from another site.

    ``Sec-Fetch-Site`` is sent by current browsers; ``Origin`` by older ones
    on POST. Clients that send neither (curl, scripts) are not browsers and
    cannot ride on a user's session without knowing the CSRF token.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    # Scheme, host and port must all match the URL the request was sent to:
    # http://host is another origin than https://host. Behind a proxy, make
    # it pass the original Host and scheme (X-Forwarded-Proto), or this
    # check refuses.
    return origin_of(origin) == origin_of(request.host_url)


def origin_of(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of a URL, the port spelled out; None if unreadable."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:  # a port that is not a number, a broken IPv6 address
        return None
    if not parts.hostname or port is None:
        return None  # "null" (a sandboxed page, a redirect) is no origin at all
    return parts.scheme.lower(), parts.hostname.lower(), port


# Characters a browser or Python's URL parser drops or bends before reading a
# URL (tab, CR, LF and the other C0 controls, DEL, the C1 controls) and the
# backslash, which browsers read as "/": a path holding one could mean
# another host once they are gone, so it is never a safe place to go.
UNSAFE_IN_NEXT = frozenset(map(chr, [*range(0x20), 0x7F, *range(0x80, 0xA0)])) | {"\\"}
MAX_NEXT = 2000


def safe_next(target: str | None, default: str) -> str:
    """Where to go after login or an action: a path of this site, else ``default``.

    ``target`` is read the way the response will write it: Werkzeug turns
    the ``Location`` header into a URI (``iri_to_uri``: Python's parser
    drops tabs and newlines, non-ASCII is percent-encoded, host names go to
    Punycode). What comes out must be a plain path (one "/", no scheme, no
    host) that resolves to this site. That form is returned, so the header
    says exactly what was checked.
    """
    if not target or len(target) > MAX_NEXT or not UNSAFE_IN_NEXT.isdisjoint(target):
        return default
    if not target.startswith("/") or target.startswith("//"):
        return default  # "//host" and "///host" name another host in a browser
    try:
        uri = iri_to_uri(target)
        parts = urlsplit(uri)
    except (ValueError, UnicodeError):
        return default
    if parts.scheme or parts.netloc or not uri.startswith("/") or uri.startswith("//"):
        return default
    if urlsplit(urljoin("http://this.site/", uri)).netloc != "this.site":
        return default
    return uri


def add_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response
