"""Who gets into /monitor: closed by default, credentials, sessions, Basic."""

import base64
import hmac
import time

import pytest

from acme_jobs import create_app
from acme_jobs.kit.monitor.throttle import LoginThrottle
from support import SECRET_KEY

from .monitor_helpers import PASSWORD, USERNAME, MonitorClient

PAGES = ["/monitor/", "/monitor/jobs/failed", "/monitor/workers", "/monitor/api/counts"]


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def app_with(tmp_path, **settings):
    base = {"TESTING": True, "SECRET_KEY": SECRET_KEY, "REDIS_URL": None}
    return create_app({**base, "SQLITE_PATH": str(tmp_path / "q.db"), **settings})


@pytest.mark.parametrize("path", PAGES)
def test_without_configured_credentials_the_monitor_refuses_everyone(tmp_path, path):
    response = app_with(tmp_path).test_client().get(path)

    assert response.status_code == 403
    assert "FLASK_MONITOR_USERNAME" in response.text
    assert "FLASK_MONITOR_PASSWORD" in response.text


def test_open_access_needs_both_the_setting_and_debug_mode(tmp_path):
    not_debug = app_with(tmp_path, MONITOR_OPEN_IN_DEBUG=True)
    debug = app_with(tmp_path, MONITOR_OPEN_IN_DEBUG=True, DEBUG=True)

    assert not_debug.test_client().get("/monitor/").status_code == 403
    assert debug.test_client().get("/monitor/").status_code == 200


def test_configured_credentials_are_required_even_in_debug_mode(tmp_path):
    app = app_with(
        tmp_path, MONITOR_OPEN_IN_DEBUG=True, DEBUG=True, MONITOR_USERNAME="a", MONITOR_PASSWORD="b"
    )

    assert app.test_client().get("/monitor/").status_code == 302


def test_a_browser_without_a_session_is_sent_to_the_login_page(anonymous):
    response = anonymous.get("/monitor/jobs/failed?name=testGreet")

    assert response.status_code == 302
    assert (
        response.headers["Location"] == "/monitor/login?next=/monitor/jobs/failed?name%3DtestGreet"
    )


def test_the_right_credentials_open_the_monitor_and_return_to_the_page_asked_for(anonymous):
    token = anonymous.token_from(anonymous.get("/monitor/login"))
    form = {"username": USERNAME, "password": PASSWORD, "csrf_token": token}

    response = anonymous.client.post("/monitor/login?next=/monitor/workers", data=form)

    assert response.status_code == 302
    assert response.headers["Location"] == "/monitor/workers"
    assert anonymous.get("/monitor/workers").status_code == 200


@pytest.mark.parametrize(
    ("username", "password"), [(USERNAME, "wrong"), ("root", PASSWORD), ("", "")]
)
def test_wrong_credentials_are_refused(anonymous, username, password):
    response = anonymous.log_in(username, password)

    assert response.status_code == 401
    assert "Wrong username or password" in response.text
    assert anonymous.get("/monitor/").status_code == 302


def test_credentials_are_compared_in_constant_time(anonymous, monkeypatch):
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    anonymous.log_in("root", "guess")

    assert (b"root", USERNAME.encode()) in compared
    assert (b"guess", PASSWORD.encode()) in compared


def test_login_never_redirects_off_the_site(anonymous):
    token = anonymous.token_from(anonymous.get("/monitor/login"))
    form = {"username": USERNAME, "password": PASSWORD, "csrf_token": token}

    response = anonymous.client.post("/monitor/login?next=//evil.example/x", data=form)

    assert response.headers["Location"] == "/monitor/"


def test_logging_out_ends_the_session(anonymous):
    anonymous.log_in()

    anonymous.post("/monitor/logout")

    assert anonymous.get("/monitor/").status_code == 302


def test_a_login_expires_after_the_configured_hours(anonymous, monkeypatch):
    anonymous.log_in()
    later = time.time() + 8 * 3600 + 1
    monkeypatch.setattr(time, "time", lambda: later)

    assert anonymous.get("/monitor/").status_code == 302


def test_scripts_can_use_http_basic(anonymous):
    response = anonymous.get("/monitor/api/counts", headers=basic(USERNAME, PASSWORD))

    assert response.status_code == 200
    assert "running" in response.get_json()["counts"]


def test_wrong_http_basic_gets_401_and_a_challenge(anonymous):
    response = anonymous.get("/monitor/api/counts", headers=basic(USERNAME, "nope"))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="monitor"'
    assert response.get_json()["error"] == "Login required"


@pytest.fixture
def three_tries(tmp_path) -> MonitorClient:
    """A monitor that refuses an address after three wrong sign-ins in a minute."""
    app = app_with(
        tmp_path,
        MONITOR_USERNAME=USERNAME,
        MONITOR_PASSWORD=PASSWORD,
        MONITOR_LOGIN_ATTEMPTS=3,
        MONITOR_LOGIN_WINDOW=60,
    )
    return MonitorClient(app)


def test_an_address_that_keeps_failing_is_refused_even_with_the_right_password(three_tries):
    for _ in range(3):
        assert three_tries.log_in(password="guess").status_code == 401

    response = three_tries.log_in()

    assert response.status_code == 429
    assert "Too many" in response.text
    assert 0 < int(response.headers["Retry-After"]) <= 60


def test_wrong_http_basic_counts_towards_the_same_limit(three_tries):
    for _ in range(3):
        wrong = three_tries.get("/monitor/api/counts", headers=basic(USERNAME, "x"))
        assert wrong.status_code == 401

    response = three_tries.get("/monitor/api/counts", headers=basic(USERNAME, PASSWORD))

    assert response.status_code == 429
    assert response.get_json()["error"] == "Too many attempts"
    assert response.headers["Retry-After"]


def test_metrics_basic_auth_is_held_to_the_same_limit(three_tries):
    for _ in range(3):
        assert three_tries.get("/metrics", headers=basic(USERNAME, "x")).status_code == 401

    assert three_tries.get("/metrics", headers=basic(USERNAME, PASSWORD)).status_code == 429


def test_other_addresses_can_still_sign_in(three_tries):
    for _ in range(3):
        three_tries.log_in(password="guess")
    elsewhere = MonitorClient(three_tries.app)
    elsewhere.client.environ_base["REMOTE_ADDR"] = "198.51.100.7"

    assert elsewhere.log_in().status_code == 302


def test_failures_older_than_the_window_no_longer_count():
    throttle = LoginThrottle(limit=2, window=60)
    throttle.failed("192.0.2.1", now=0)
    throttle.failed("192.0.2.1", now=10)

    assert throttle.wait("192.0.2.1", now=11) == 49
    assert throttle.wait("192.0.2.1", now=61) == 0


def test_the_throttle_remembers_a_bounded_number_of_addresses():
    throttle = LoginThrottle(limit=1, window=60, max_addresses=2)
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        throttle.failed(address, now=0)

    assert throttle.wait("192.0.2.1", now=1) == 0  # forgotten: the oldest
    assert throttle.wait("192.0.2.3", now=1) == 59


def test_without_a_secret_key_the_monitor_stays_off_in_production(tmp_path):
    app = create_app(
        {
            "REDIS_URL": None,
            "SQLITE_PATH": str(tmp_path / "q.db"),
            "SECRET_KEY": None,
            "MONITOR_USERNAME": USERNAME,
            "MONITOR_PASSWORD": PASSWORD,
        }
    )

    response = app.test_client().get("/monitor/")

    assert response.status_code == 503
    assert "FLASK_SECRET_KEY" in response.text


def test_in_debug_a_missing_secret_key_is_replaced_by_a_random_one(tmp_path):
    app = app_with(tmp_path, SECRET_KEY=None, DEBUG=True, TESTING=False)

    assert len(app.secret_key) == 64
    assert MonitorClient(app).get("/monitor/").status_code == 403  # locked, but on
