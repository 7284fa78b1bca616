"""The Queues page, its JSON twin and the queue filter of the lists, on SQLite and on Redis."""

import pytest

from acme_jobs import create_app
from acme_jobs.kit import registry
from acme_jobs.kit.queue import enqueue
from kit_jobs.greet import Pessoa

from .conftest import SETTINGS
from .monitor_helpers import PESSOA, MonitorClient, dispatch, run_next


@pytest.fixture
def qmonitor(mapp):
    """The monitor of an app with testRush, a job in the named queue "critical"."""
    registry.job("testRush", schema=Pessoa, queue="critical")(lambda data: None)
    try:
        app = create_app(
            {**dict(mapp.config), **SETTINGS, "WORKER_QUEUES": {"critical": 6, "default": 3}}
        )
        client = MonitorClient(app)
        client.log_in()
        yield client
    finally:
        del registry._registry["testRush"]


def rush(app, **options) -> str:
    with app.app_context():
        return enqueue("testRush", PESSOA, **options)


def rows(client) -> dict:
    return {row["name"]: row for row in client.get("/monitor/api/queues").get_json()["queues"]}


def test_the_queues_api_gives_each_queues_depth_weight_and_schedule(qmonitor):
    rush(qmonitor.app)
    rush(qmonitor.app, delay=600)
    dispatch(qmonitor.app)

    found = rows(qmonitor)

    assert list(found) == ["critical", "default"]  # heaviest first
    critical = found["critical"]
    assert (critical["depth"], critical["scheduled"], critical["weight"]) == (1, 1, 6)
    assert critical["oldest_age"] >= 0
    assert critical["jobs"] == ["testRush"]
    assert (found["default"]["depth"], found["default"]["scheduled"]) == (1, 0)


def test_the_queues_api_counts_the_last_hours_runs_per_queue(qmonitor):
    rush(qmonitor.app)
    run_next(qmonitor.app)

    assert rows(qmonitor)["critical"]["last_hour"] == {"complete": 1, "failed": 0}


def test_a_queue_paused_from_the_page_shows_paused_and_resumes(qmonitor):
    page = qmonitor.post("/monitor/queues/pause", {"queue": "critical", "reason": "deploy"})
    assert page.status_code == 302
    assert rows(qmonitor)["critical"]["paused"]["reason"] == "deploy"
    assert 'data-queue="critical" data-paused="yes"' in qmonitor.get("/monitor/queues").text

    qmonitor.post("/monitor/queues/resume", {"queue": "critical"})

    assert rows(qmonitor)["critical"]["paused"] is None


def test_the_overview_shows_each_queues_depth(qmonitor):
    rush(qmonitor.app)
    rush(qmonitor.app)

    html = qmonitor.get("/monitor/").text

    assert 'data-queue-depth="critical">critical <strong>2</strong>' in html
    assert qmonitor.get("/monitor/api/overview").get_json()["queue_depths"]["critical"] == 2


def test_a_list_filtered_by_queue_shows_only_that_queues_jobs(qmonitor):
    mine = rush(qmonitor.app)
    other = dispatch(qmonitor.app)

    html = qmonitor.get("/monitor/jobs/queued?queue=critical").text

    assert mine in html
    assert other not in html


def test_the_scheduled_list_shows_the_time_left(qmonitor):
    job_id = rush(qmonitor.app, delay=600)

    html = qmonitor.get("/monitor/jobs/scheduled").text

    assert job_id in html
    assert "(in 10 min" in html or "(in 9 min" in html


def test_pausing_a_queue_is_in_the_audit_log(qmonitor):
    qmonitor.post("/monitor/queues/pause", {"queue": "critical", "reason": "deploy"})

    assert "queue critical" in qmonitor.get("/monitor/audit").text
