"""Monitor logins end: at logout, when the credentials change, when they expire.

A login is a signed cookie. These tests replay cookies the way an attacker
who copied one would: after its user logged out, after the password was
changed, with a login time pushed into the future, or signed offline with
a weak secret key.
"""

import secrets
import time

import pytest
from flask import Flask

from acme_jobs import create_app
from acme_jobs.kit.monitor import sessions
from support import SECRET_KEY, unique_queue_name

from .monitor_helpers import PASSWORD, USERNAME, MonitorClient

COOKIE = "session"


def settings(**extra) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": SECRET_KEY,
        "MONITOR_USERNAME": USERNAME,
        "MONITOR_PASSWORD": PASSWORD,
        **extra,
    }


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path) -> dict:
    """Where two web processes of one deployment keep the queue: the same place."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return {"REDIS_URL": url, "QUEUE_NAME": unique_queue_name()}
    return {"REDIS_URL": None, "SQLITE_PATH": str(tmp_path / "q.db")}


def replay(app: Flask, cookie: str) -> int:
    """The status of ``/monitor/`` for a browser that shows ``cookie``."""
    client = app.test_client()
    client.set_cookie(COOKIE, cookie)
    return client.get("/monitor/").status_code


def logged_in_cookie(app: Flask) -> str:
    browser = MonitorClient(app)
    assert browser.log_in().status_code == 302
    return browser.client.get_cookie(COOKIE).value


def test_a_cookie_copied_before_logout_is_refused_after_it(backend):
    app = create_app(settings(**backend))
    browser = MonitorClient(app)
    browser.log_in()
    copied = browser.client.get_cookie(COOKIE).value
    assert replay(app, copied) == 200

    browser.post("/monitor/logout")

    assert replay(app, copied) == 302


def test_a_logout_on_one_web_process_ends_the_login_on_every_other(backend):
    first, second = create_app(settings(**backend)), create_app(settings(**backend))
    browser = MonitorClient(first)
    browser.log_in()
    copied = browser.client.get_cookie(COOKIE).value
    assert replay(second, copied) == 200

    browser.post("/monitor/logout")

    assert replay(second, copied) == 302


def test_logging_out_ends_only_that_login(backend):
    app = create_app(settings(**backend))
    laptop, phone = MonitorClient(app), MonitorClient(app)
    laptop.log_in()
    phone.log_in()

    laptop.post("/monitor/logout")

    assert phone.get("/monitor/").status_code == 200


@pytest.mark.parametrize(
    "rotated",
    [{"MONITOR_PASSWORD": "a new password"}, {"MONITOR_USERNAME": "someone-else"}],
)
def test_changing_the_credentials_ends_older_logins_under_the_same_secret_key(backend, rotated):
    cookie = logged_in_cookie(create_app(settings(**backend)))
    unchanged = create_app(settings(**backend))
    after_rotation = create_app(settings(**backend, **rotated))

    assert replay(unchanged, cookie) == 200
    assert replay(after_rotation, cookie) == 302


def test_the_session_cookie_does_not_reveal_the_password(sqlite_app):
    browser = MonitorClient(sqlite_app)
    browser.log_in()

    with browser.client.session_transaction() as session:
        assert PASSWORD not in repr(dict(session))
        assert len(session["monitor_fp"]) == 32


@pytest.mark.parametrize("claimed", [3600, 8 * 3600, 10 * 365 * 86400])
def test_a_login_time_in_the_future_is_refused(sqlite_app, claimed):
    browser = MonitorClient(sqlite_app)
    browser.log_in()
    with browser.client.session_transaction() as session:
        session["monitor_login_at"] = time.time() + claimed

    assert browser.get("/monitor/").status_code == 302


@pytest.mark.parametrize("claimed", [None, "0", True, [1], float("nan")])
def test_a_login_time_that_is_not_a_time_is_refused(sqlite_app, claimed):
    browser = MonitorClient(sqlite_app)
    browser.log_in()
    with browser.client.session_transaction() as session:
        session["monitor_login_at"] = claimed

    assert browser.get("/monitor/").status_code == 302


def test_a_login_older_than_the_session_lifetime_is_refused(sqlite_app):
    browser = MonitorClient(sqlite_app)
    browser.log_in()
    with browser.client.session_transaction() as session:
        session["monitor_login_at"] = time.time() - 8 * 3600 - 1

    assert browser.get("/monitor/").status_code == 302


# -- the secret key ------------------------------------------------------------------

WEAK_KEYS = [
    "changeme",
    "secret",
    "dev",
    "a-secret-key-for-tests",
    "x" * 64,
    "changeme" * 4,
    "please-change-this-development-key-0001",
    "your-secret-key-goes-here-1234567890",
]


def forged_cookie(app: Flask, **claims) -> str:
    """A login cookie signed offline with ``app``'s key, as an attacker would."""
    with app.test_request_context():
        data = {
            "monitor_user": USERNAME,
            "monitor_login_at": time.time(),
            "monitor_sid": "forged",
            "monitor_fp": sessions.fingerprint(USERNAME),
            **claims,
        }
        return app.session_interface.get_signing_serializer(app).dumps(data)


@pytest.mark.parametrize("key", WEAK_KEYS)
def test_outside_debug_a_weak_secret_key_keeps_the_monitor_off_and_says_why(tmp_path, key):
    app = create_app(
        settings(TESTING=False, SECRET_KEY=key, REDIS_URL=None, SQLITE_PATH=str(tmp_path / "q"))
    )

    response = app.test_client().get("/monitor/")

    assert response.status_code == 503
    assert "FLASK_SECRET_KEY" in response.text
    assert "secrets.token_hex(32)" in response.text


def test_a_cookie_forged_offline_under_a_weak_key_opens_nothing(tmp_path):
    app = create_app(
        settings(
            TESTING=False, SECRET_KEY="changeme", REDIS_URL=None, SQLITE_PATH=str(tmp_path / "q")
        )
    )

    assert replay(app, forged_cookie(app)) == 503


def test_in_debug_mode_a_weak_key_is_tolerated(tmp_path):
    app = create_app(
        settings(DEBUG=True, SECRET_KEY="changeme", REDIS_URL=None, SQLITE_PATH=str(tmp_path / "q"))
    )

    assert MonitorClient(app).log_in().status_code == 302


@pytest.mark.parametrize("key", [secrets.token_hex(32), secrets.token_urlsafe(32)])
def test_a_generated_key_is_strong_enough(key):
    assert sessions.weak_secret(key) is None


# -- the Secure flag ---------------------------------------------------------------


def login_cookie_header(app: Flask, base_url: str) -> str:
    browser = MonitorClient(app)
    token = browser.token_from(browser.client.get("/monitor/login", base_url=base_url))
    form = {"username": USERNAME, "password": PASSWORD, "csrf_token": token}
    response = browser.client.post("/monitor/login", data=form, base_url=base_url)
    assert response.status_code == 302
    return response.headers["Set-Cookie"]


def test_over_https_the_session_cookie_is_secure(sqlite_app):
    assert "; Secure" in login_cookie_header(sqlite_app, "https://localhost")


def test_over_plain_http_it_is_not_unless_configured(sqlite_app, tmp_path):
    always = create_app(
        settings(SESSION_COOKIE_SECURE=True, REDIS_URL=None, SQLITE_PATH=str(tmp_path / "q"))
    )

    assert "; Secure" not in login_cookie_header(sqlite_app, "http://localhost")
    assert "; Secure" in login_cookie_header(always, "http://localhost")
