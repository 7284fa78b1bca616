"""Who may use the monitor, and the checks every request goes through.

Job monitors are often deployed wide open (Flower, rq-dashboard and asynqmon
all are by default), and they can re-run jobs and read their payloads. This
one is closed by default:

* Credentials come from configuration (``MONITOR_USERNAME`` and
  ``MONITOR_PASSWORD``) and are compared in constant time. A browser logs in
  with a form; scripts send HTTP Basic. An address that gets them wrong
  ``MONITOR_LOGIN_ATTEMPTS`` times within ``MONITOR_LOGIN_WINDOW`` seconds is
  refused (429) until the window has passed, so a password cannot be guessed
  at the speed of the web server. With no credentials configured the
  monitor refuses everyone and says how to set them, unless
  ``MONITOR_OPEN_IN_DEBUG`` is on *and* the app runs in debug mode.
* Every POST carries a CSRF token tied to the session, and is refused when the
  browser says it comes from another site (``Sec-Fetch-Site``, ``Origin``).
* Every response forbids inline script and framing (Content-Security-Policy),
  so even a payload that slipped past escaping could not run.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import math
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.exceptions import TooManyRequests
from werkzeug.wrappers import Request, Response

from ..state import kit_state

log = logging.getLogger(__name__)

CSRF_FIELD = "csrf_token"
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


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with no work for requests without one.

    Only the monitor keeps a session, but Flask builds the cookie's signing
    serializer for every request, cookie or not: a cost on each API call,
    health check and metrics scrape. With no cookie, the session is empty
    either way.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def prepare_secret_key(app: Flask) -> str | None:
    """Make sure sessions can be signed; return why the monitor is off, if it is.

    In debug and testing a missing ``SECRET_KEY`` is replaced by a random one
    for this process (logins then last until the process restarts). In
    production it must come from the environment: a key generated per process
    would differ between gunicorn workers and log people out at random.
    """
    if app.secret_key:
        return None
    if app.debug or app.testing:
        app.secret_key = secrets.token_hex(32)
        log.warning(
            "FLASK_SECRET_KEY is not set: using a random key for this process "
            "(fine for development; set it in production)"
        )
        return None
    reason = (
        "The monitor is off because FLASK_SECRET_KEY is not set. Generate one with "
        '`python -c "import secrets; print(secrets.token_hex(32))"` and set it in the '
        "environment of the web app."
    )
    # Not logged here: workers build the same app but never serve the
    # monitor. The first request to it logs the reason instead.
    return reason


def access_mode() -> str:
    """Return "login" when credentials are configured, else "open" or "locked"."""
    config = current_app.config
    if config.get("MONITOR_USERNAME") and config.get("MONITOR_PASSWORD"):
        return "login"
    if config.get("MONITOR_OPEN_IN_DEBUG") and current_app.debug:
        return "open"
    return "locked"


class LoginThrottle:
    """Failed sign-ins per client address, counted in this web process.

    Each process counts on its own, so with N gunicorn workers an address
    gets at most N times the limit per window: slow enough to stop a password
    being guessed, with no shared store to reach first.
    """

    def __init__(self, limit: int, window: float, max_addresses: int = 10_000):
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        # address -> times of its recent failures, least recently failed first
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LoginThrottle:
        # A limit below one counts as one: there is no "never try".
        limit = max(1, int(config["MONITOR_LOGIN_ATTEMPTS"]))
        return cls(limit, float(config["MONITOR_LOGIN_WINDOW"]))

    def wait(self, address: str, now: float) -> float:
        """Seconds before ``address`` may try again (0: it may now)."""
        with self._lock:
            recent = self._recent(address, now)
            if len(recent) < self.limit:
                return 0.0
            return recent[-self.limit] + self.window - now

    def failed(self, address: str, now: float) -> None:
        with self._lock:
            recent = self._recent(address, now)
            self._failures.pop(address, None)  # re-inserted last: the newest
            # Only the last ``limit`` failures decide how long to wait.
            self._failures[address] = [*recent[max(0, len(recent) - self.limit + 1) :], now]
            while len(self._failures) > self.max_addresses:
                del self._failures[next(iter(self._failures))]

    def _recent(self, address: str, now: float) -> list[float]:
        return [t for t in self._failures.get(address, ()) if now - t < self.window]


def check_credentials(username: str, password: str) -> bool:
    """Compare both values in constant time, so timing reveals neither.

    Raises ``TooManyRequests`` (429, with ``Retry-After``) for an address that
    failed too often lately, even when the credentials are right.
    """
    config = current_app.config
    limiter: LoginThrottle = kit_state().login_throttle
    address, now = request.remote_addr or "unknown", time.monotonic()
    wait = limiter.wait(address, now)
    if wait > 0:
        raise TooManyRequests(
            "Too many failed sign-ins from this address: try again later.",
            retry_after=math.ceil(wait),
        )
    user_ok = hmac.compare_digest(
        username.encode(), str(config.get("MONITOR_USERNAME") or "").encode()
    )
    password_ok = hmac.compare_digest(
        password.encode(), str(config.get("MONITOR_PASSWORD") or "").encode()
    )
    if not (user_ok and password_ok):
        log.warning("failed monitor sign-in from %s", address)
        limiter.failed(address, now)
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


def session_user() -> str | None:
    """The user logged in with the form, if the login has not expired."""
    user, logged_in_at = session.get("monitor_user"), session.get("monitor_login_at", 0)
    max_age = float(current_app.config["MONITOR_SESSION_HOURS"]) * 3600
    if user and time.time() - logged_in_at < max_age:
        return user
    return None


def log_in(username: str) -> None:
    # A fresh CSRF token at login: a token planted before login is useless.
    session["monitor_user"] = username
    session["monitor_login_at"] = time.time()
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def log_out() -> None:
    for key in ("monitor_user", "monitor_login_at", CSRF_FIELD):
        session.pop(key, None)


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
    # Compared with the Host the request was sent to; behind a proxy, make it
    # pass the original Host (werkzeug's ProxyFix) or this check refuses.
    return urlsplit(origin).netloc == request.host


def safe_next(target: str | None, default: str) -> str:
    """Only redirect to a path of this site after login (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def add_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response
