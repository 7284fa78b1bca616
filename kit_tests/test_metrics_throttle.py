"""/metrics tokens are throttled like passwords, across every web process.

Wrong bearer tokens count against the address in the queue's backend; past
``MONITOR_LOGIN_ATTEMPTS`` the address gets 429 even with the right token,
on every web process that shares the backend.
"""

import json
import urllib.error
import urllib.request

import pytest

from acme_jobs import create_app
from support import unique_queue_name

TOKEN = "a-metrics-token-for-tests"
ATTEMPTS = 3


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def metrics_app(tmp_path):
    return create_app(
        {
            "TESTING": True,
            "REDIS_URL": None,
            "SQLITE_PATH": str(tmp_path / "queue.sqlite3"),
            "METRICS_TOKEN": TOKEN,
            "MONITOR_LOGIN_ATTEMPTS": ATTEMPTS,
            "MONITOR_LOGIN_WINDOW": 600,
        }
    )


def test_wrong_tokens_lock_the_address_out_even_for_the_right_token(metrics_app):
    client = metrics_app.test_client()
    for _ in range(ATTEMPTS):
        assert client.get("/metrics", headers=bearer("guess")).status_code == 401

    response = client.get("/metrics", headers=bearer(TOKEN))

    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 600
    assert "Too many failed tokens" in response.get_data(as_text=True)


def test_fewer_wrong_tokens_than_the_limit_leave_the_right_one_working(metrics_app):
    client = metrics_app.test_client()
    for _ in range(ATTEMPTS - 1):
        client.get("/metrics", headers=bearer("guess"))

    assert client.get("/metrics", headers=bearer(TOKEN)).status_code == 200


def test_a_locked_out_address_does_not_lock_out_others(metrics_app):
    client = metrics_app.test_client()
    for _ in range(ATTEMPTS):
        client.get("/metrics", headers=bearer("guess"))
    elsewhere = metrics_app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "198.51.100.7"

    assert elsewhere.get("/metrics", headers=bearer(TOKEN)).status_code == 200


# -- two real web processes ----------------------------------------------------------


def status(base_url: str, token: str) -> int:
    request = urllib.request.Request(base_url + "/metrics", headers=bearer(token))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_two_web_processes_share_one_count_of_failed_tokens(backend, start_stack, request):
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    # One deployment: the same queue (and, on SQLite, the same file) for both.
    env = {
        "FLASK_QUEUE_NAME": unique_queue_name(),
        "FLASK_METRICS_TOKEN": json.dumps(TOKEN),
        "FLASK_MONITOR_LOGIN_ATTEMPTS": str(ATTEMPTS),
    }
    first = start_stack(redis_url=redis_url, worker=False, env=env)
    second = start_stack(redis_url=redis_url, worker=False, env=env)
    assert status(first.base_url, TOKEN) == status(second.base_url, TOKEN) == 200

    # Fewer failures than the limit on each process, the limit in all.
    assert [status(first.base_url, "guess") for _ in range(ATTEMPTS - 1)] == [401] * (ATTEMPTS - 1)
    assert status(second.base_url, "guess") == 401

    assert status(first.base_url, TOKEN) == 429
    assert status(second.base_url, TOKEN) == 429
