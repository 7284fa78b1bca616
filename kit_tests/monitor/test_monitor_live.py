"""The monitor against the real thing: a web server and a huey_consumer.

Jobs go through HTTP, run in the worker processes, and must show up in the
monitor with the worker's heartbeat, on SQLite and on Redis.
"""

import base64
import http.cookiejar
import json
import re
import time
import urllib.parse
import urllib.request

import pytest

from support import SECRET_KEY

from .monitor_helpers import PASSWORD, PESSOA, USERNAME

pytestmark = pytest.mark.slow

AUTH = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()


@pytest.fixture(params=["sqlite", "redis"])
def stack(request, start_stack, monkeypatch):
    # Both processes read their settings from the environment.
    monkeypatch.setenv("FLASK_MONITOR_USERNAME", USERNAME)
    monkeypatch.setenv("FLASK_MONITOR_PASSWORD", PASSWORD)
    monkeypatch.setenv("FLASK_SECRET_KEY", SECRET_KEY)
    if request.param == "redis":
        return start_stack(redis_url=request.getfixturevalue("redis_url"))
    return start_stack()


def api(stack, path: str) -> dict:
    req = urllib.request.Request(stack.base_url + path, headers={"Authorization": AUTH})
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.load(response)


def eventually(check, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_jobs_run_by_the_worker_are_listed_as_completed(stack):
    ids = {stack.request("POST", "/jobs/testGreet", PESSOA)[1]["id"] for _ in range(5)}
    for job_id in ids:
        stack.wait_for_status(job_id, {"complete"})

    listed = {job["id"] for job in api(stack, "/monitor/api/jobs/complete")["jobs"]}
    counts = api(stack, "/monitor/api/counts")["counts"]

    assert ids <= listed
    assert counts["complete"] >= 5
    assert counts["running"] == 0


def test_the_overview_counts_the_runs_of_this_minute(stack):
    job_id = stack.request("POST", "/jobs/testGreet", PESSOA)[1]["id"]
    stack.wait_for_status(job_id, {"complete"})

    overview = api(stack, "/monitor/api/overview")

    assert sum(minute["complete"] for minute in overview["per_minute"][-2:]) >= 1
    (job,) = overview["jobs"]
    assert job["name"] == "testGreet"
    assert job["p95_ms"] is not None


def test_each_worker_process_reports_its_heartbeat(stack):
    workers = eventually(lambda: api(stack, "/monitor/api/workers")["workers"])

    assert workers, stack.read_logs()
    for worker in workers:
        assert worker["alive"]
        assert worker["type"] == "process"
        assert worker["workers"] == 2
        assert worker["id"] == f"{worker['host']}:{worker['pid']}"


def test_a_job_page_shows_the_worker_that_ran_it(stack):
    job_id = stack.request("POST", "/jobs/testGreet", PESSOA)[1]["id"]
    record = stack.wait_for_status(job_id, {"complete"})

    job = api(stack, f"/monitor/api/job/{job_id}")

    assert [e["kind"] for e in job["events"]] == ["queued", "started", "completed"]
    assert job["attempts"][0]["worker"] == record["worker"]


def test_a_browser_logs_in_through_the_form_and_sees_the_overview(stack):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = opener.open(stack.base_url + "/monitor/login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    form = {"username": USERNAME, "password": PASSWORD, "csrf_token": token}

    with opener.open(
        stack.base_url + "/monitor/login", urllib.parse.urlencode(form).encode(), timeout=10
    ) as response:
        page = response.read().decode()
        url = response.geturl()

    assert url.endswith("/monitor/")
    assert 'data-count="complete"' in page
