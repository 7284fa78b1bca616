"""Monitor logins that end: on logout, on a credential change, after a while.

A login is Flask's signed session cookie. Signed is not enough on its own:
the cookie would stay valid for as long as the secret key does. So a
session holds four things, and all four are checked on every request:

* ``monitor_user`` and ``monitor_fp``, a fingerprint of the configured
  username and password (an HMAC under the secret key, so the cookie, which
  anyone holding it can read, reveals nothing about the password). Change
  the username or the password and every older cookie stops working, even
  with the same ``SECRET_KEY``.
* ``monitor_login_at``: a login lasts ``MONITOR_SESSION_HOURS``, counted
  from this time; a time in the future is refused, so a cookie cannot claim
  to be younger than it is.
* ``monitor_sid``, a random id: logging out records it in the queue's
  backend as revoked until the session would have expired anyway, so a copy
  of the cookie is useless afterwards, on every web process. Checking it is
  the one read a logged-in request costs.

The secret key itself must be strong: with a short or well-known key anyone
can sign a cookie of their own offline. Outside debug mode such a key keeps
the monitor off (:func:`prepare_secret_key`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time

from flask import Flask, current_app, has_request_context, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.wrappers import Request

from ..state import kit_state

log = logging.getLogger(__name__)

CSRF_FIELD = "csrf_token"
SESSION_KEYS = ("monitor_user", "monitor_login_at", "monitor_sid", "monitor_fp", CSRF_FIELD)
# Web machines' clocks may differ a little; more than this in the future is a lie.
CLOCK_SKEW = 60.0

MIN_SECRET_BYTES = 32
HOW_TO_GENERATE = (
    'Generate one with `python -c "import secrets; print(secrets.token_hex(32))"` '
    "and set it as FLASK_SECRET_KEY in the environment of the web app."
)
# Words found in sample keys of tutorials and .env templates. A key holding
# one was typed by a person, not drawn at random.
PLACEHOLDERS = re.compile(
    r"changeme|changethis|replaceme|yoursecret|secretkey|mysecret|insecure|notsecret"
    r"|placeholder|example|default|password|development"
)


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without work for requests that have none.

    Only the monitor keeps a session, but Flask builds the cookie's signing
    serializer for every request, cookie or not: a cost on each API call,
    health check and metrics scrape. With no cookie the session is empty
    either way.

    The cookie is ``Secure`` whenever the request came over HTTPS, as well as
    always when ``SESSION_COOKIE_SECURE`` is on: behind a proxy, the server
    must know the original scheme (gunicorn trusts ``X-Forwarded-Proto`` from
    the addresses in ``FORWARDED_ALLOW_IPS``, 127.0.0.1 by default).
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        if super().get_cookie_secure(app):
            return True
        return has_request_context() and request.is_secure


def weak_secret(key: str | bytes) -> str | None:
    """Why ``key`` is too weak to sign logins with; None if it is not."""
    raw = key.encode() if isinstance(key, str) else key
    if len(raw) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes"
    if len(set(raw)) < 8:
        return "repeats a few characters"
    if PLACEHOLDERS.search(re.sub(rb"[^a-z]", b"", raw.lower()).decode()):
        return "looks like a placeholder from an example"
    return None


def prepare_secret_key(app: Flask) -> str | None:
    """Make sure sessions can be signed safely; return why the monitor is off, if it is.

    In debug and testing a missing ``SECRET_KEY`` is replaced by a random one
    for this process (logins then last until the process restarts). In
    production it must come from the environment, and be strong: a key
    generated per process would differ between gunicorn workers, and a weak
    one lets anyone forge a login. A weak key is tolerated in debug mode only.
    """
    if not app.secret_key:
        if app.debug or app.testing:
            app.secret_key = secrets.token_hex(32)
            log.warning(
                "FLASK_SECRET_KEY is not set: using a random key for this process "
                "(fine for development; set it in production)"
            )
            return None
        return f"The monitor is off because FLASK_SECRET_KEY is not set. {HOW_TO_GENERATE}"
    weakness = weak_secret(app.secret_key)
    if weakness is None:
        return None
    if app.debug:
        log.warning("FLASK_SECRET_KEY %s: fine in debug mode, refused in production", weakness)
        return None
    # Not logged here: workers build the same app but never serve the
    # monitor. The first request to it logs the reason instead.
    return (
        f"The monitor is off because FLASK_SECRET_KEY {weakness}: anyone could sign a "
        f"login cookie with it. {HOW_TO_GENERATE}"
    )


def lifetime() -> float:
    return float(current_app.config["MONITOR_SESSION_HOURS"]) * 3600


def fingerprint(username: str) -> str:
    """The configured credentials, as a session may hold them (see the module's doc)."""
    secret = current_app.secret_key
    key = secret.encode() if isinstance(secret, str) else secret
    password = str(current_app.config.get("MONITOR_PASSWORD") or "")
    message = b"monitor-login\0" + username.encode() + b"\0"
    message += hashlib.sha256(password.encode()).digest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def session_user() -> str | None:
    """The user logged in with the form, if that login still holds."""
    user, at = session.get("monitor_user"), session.get("monitor_login_at")
    sid, fp = session.get("monitor_sid"), session.get("monitor_fp")
    if not (isinstance(user, str) and isinstance(sid, str) and isinstance(fp, str)):
        return None
    if isinstance(at, bool) or not isinstance(at, int | float):
        return None
    if not -CLOCK_SKEW <= time.time() - at < lifetime():
        return None  # expired, or claims a login that has not happened yet
    if user != current_app.config.get("MONITOR_USERNAME"):
        return None
    if not hmac.compare_digest(fp.encode(), fingerprint(user).encode()):
        return None  # the password changed since
    if kit_state().auth_store.is_revoked(sid):
        return None  # logged out
    return user


def log_in(username: str) -> None:
    # A fresh session id and CSRF token: nothing planted before login survives it.
    session["monitor_user"] = username
    session["monitor_login_at"] = time.time()
    session["monitor_sid"] = secrets.token_urlsafe(18)
    session["monitor_fp"] = fingerprint(username)
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def log_out() -> None:
    """End this login everywhere: its id is revoked until it would have expired."""
    sid, at = session.get("monitor_sid"), session.get("monitor_login_at")
    if isinstance(sid, str) and isinstance(at, int | float):
        kit_state().auth_store.revoke(sid, at + lifetime() + CLOCK_SKEW)
    for key in SESSION_KEYS:
        session.pop(key, None)
