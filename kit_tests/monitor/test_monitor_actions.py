"""The monitor's actions: retry, retry all matching, revoke, delete."""

import re

from .monitor_helpers import PESSOA, dispatch, fail, fail_next, record_job, run_next


def test_retry_queues_a_new_job_linked_to_the_failed_one(monitor):
    dispatch(monitor.app)
    failed = fail_next(monitor.app)

    response = monitor.post(f"/monitor/job/{failed}/retry")

    new_id = monitor.history.get(failed)["retried_by"]
    assert response.headers["Location"] == f"/monitor/job/{new_id}"
    assert monitor.history.get(failed)["status"] == "retried"
    new = monitor.history.get(new_id)
    assert (new["status"], new["payload"], new["retry_of"]) == ("queued", PESSOA, failed)


def test_the_retried_job_runs_and_completes(monitor):
    dispatch(monitor.app)
    failed = fail_next(monitor.app)
    monitor.post(f"/monitor/job/{failed}/retry")

    new_id = run_next(monitor.app)

    assert monitor.history.get(new_id)["status"] == "complete"
    assert monitor.history.get(new_id)["retry_of"] == failed


def test_a_failed_job_is_retried_only_once(monitor):
    dispatch(monitor.app)
    failed = fail_next(monitor.app)
    monitor.post(f"/monitor/job/{failed}/retry")

    page = monitor.post(f"/monitor/job/{failed}/retry", follow_redirects=True).text

    assert "Only failed jobs can be retried; this one is retried." in page
    assert monitor.app.extensions["jobkit"].huey.pending_count() == 1


def test_a_job_whose_payload_no_longer_fits_its_schema_is_not_retried(monitor):
    task = record_job(monitor.app, {"nome": "Ana"})  # idade is required now
    fail(monitor.app, task)

    page = monitor.post(f"/monitor/job/{task.id}/retry", follow_redirects=True).text

    assert "no longer passes the job&#39;s schema" in page
    assert monitor.history.get(task.id)["status"] == "failed"
    assert monitor.app.extensions["jobkit"].huey.pending_count() == 0


def test_retry_all_first_says_how_many_jobs_it_will_touch(monitor):
    for message in ("disk full", "disk full", "timeout"):
        dispatch(monitor.app)
        fail_next(monitor.app, message)

    html = monitor.get("/monitor/jobs/failed/retry?q=disk").text

    assert re.search(r"<strong data-count>2</strong> failed jobs", html)
    assert "Retry 2 jobs" in html


def test_retry_all_retries_only_the_jobs_matching_the_filter(monitor):
    for message in ("disk full", "disk full", "timeout"):
        dispatch(monitor.app)
        fail_next(monitor.app, message)

    response = monitor.post("/monitor/jobs/failed/retry?q=disk")

    counts = monitor.history.counts()
    assert (counts["retried"], counts["failed"], counts["queued"]) == (2, 1, 2)
    assert response.headers["Location"] == "/monitor/jobs/failed?q=disk"


def test_retry_all_is_capped_per_click(monitor):
    monitor.app.config["MONITOR_BULK_LIMIT"] = 2
    for _ in range(3):
        dispatch(monitor.app)
        fail_next(monitor.app)

    html = monitor.get("/monitor/jobs/failed/retry").text
    monitor.post("/monitor/jobs/failed/retry")

    assert "1 more match" in html
    assert monitor.history.counts()["failed"] == 1


def test_a_queued_job_can_be_revoked_and_is_then_dropped_by_the_worker(monitor):
    job_id = dispatch(monitor.app)

    monitor.post(f"/monitor/job/{job_id}/revoke")
    run_next(monitor.app)

    record = monitor.history.detail(job_id)
    assert record["status"] == "revoked"
    assert "revoke_requested" in [e["kind"] for e in record["events"]]


def test_a_finished_job_cannot_be_revoked(monitor):
    job_id = dispatch(monitor.app)
    run_next(monitor.app)

    page = monitor.post(f"/monitor/job/{job_id}/revoke", follow_redirects=True).text

    assert "Only queued or scheduled jobs can be revoked." in page


def test_a_finished_record_can_be_deleted(monitor):
    job_id = dispatch(monitor.app)
    run_next(monitor.app)

    response = monitor.post(f"/monitor/job/{job_id}/delete")

    assert response.headers["Location"] == "/monitor/jobs/complete"
    assert monitor.history.get(job_id) is None
    assert monitor.history.counts()["complete"] == 0


def test_a_queued_record_cannot_be_deleted(monitor):
    job_id = dispatch(monitor.app)

    page = monitor.post(f"/monitor/job/{job_id}/delete", follow_redirects=True).text

    assert "revoke a queued job first" in page
    assert monitor.history.get(job_id)["status"] == "queued"
