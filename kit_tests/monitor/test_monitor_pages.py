"""Every page of the monitor and its JSON twin, on SQLite and on Redis."""

import re

import pytest

from acme_jobs.kit.history import model

from .monitor_helpers import PESSOA, dispatch, fail_next, run_next


def count_on(html: str, status: str) -> int:
    match = re.search(rf'data-count="{status}">(\d+)<', html)
    assert match, f"no count for {status}"
    return int(match.group(1))


# -- overview --------------------------------------------------------------------


def test_the_overview_counts_jobs_in_each_state(monitor):
    dispatch(monitor.app)
    run_next(monitor.app)
    dispatch(monitor.app)
    fail_next(monitor.app)
    dispatch(monitor.app)

    html = monitor.get("/monitor/").text

    assert count_on(html, "complete") == 1
    assert count_on(html, "failed") == 1
    assert count_on(html, "queued") == 1
    assert "messages in the queue" in html


def test_the_overview_charts_the_last_hour_minute_by_minute(monitor):
    dispatch(monitor.app)
    run_next(monitor.app)

    html = monitor.get("/monitor/").text

    assert html.count('class="bar-done"') == 60
    assert "1 done, 0 failed" in html


def test_the_overview_has_a_row_per_job_with_failure_rate_and_percentiles(monitor):
    dispatch(monitor.app)
    run_next(monitor.app)
    dispatch(monitor.app)
    fail_next(monitor.app)

    html = monitor.get("/monitor/").text

    row = re.search(r"<td>testGreet</td>(.*?)</tr>", html, re.S).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    assert cells[:3] == ["1", "1", "50.0%"]
    assert cells[3].startswith("\u2264")  # p50, read from the histogram


def test_the_overview_live_part_comes_without_the_page_around_it(monitor):
    html = monitor.get("/monitor/?partial=1").text

    assert "<html" not in html
    assert 'data-count="running"' in html


def test_the_overview_links_every_state_to_its_list(monitor):
    html = monitor.get("/monitor/").text

    for status in model.STATUSES:
        assert f'href="/monitor/jobs/{status}"' in html


# -- lists -----------------------------------------------------------------------


@pytest.mark.parametrize("status", model.STATUSES)
def test_every_status_has_a_list_page(monitor, status):
    response = monitor.get(f"/monitor/jobs/{status}")

    assert response.status_code == 200
    assert "Nothing here right now" in response.text


def test_an_unknown_status_is_not_found(monitor):
    assert monitor.get("/monitor/jobs/lost").status_code == 404


def test_completed_jobs_are_listed_newest_first_with_their_duration(monitor):
    ids = []
    for _ in range(3):
        ids.append(dispatch(monitor.app))
        run_next(monitor.app)

    html = monitor.get("/monitor/jobs/complete").text

    shown = re.findall(r'data-job-id="([^"]+)"', html)
    assert shown == list(reversed(ids))
    assert "<strong data-total>3</strong> completed jobs" in html


def test_lists_page_through_with_a_cursor_and_no_job_twice(monitor):
    ids = []
    for _ in range(5):
        ids.append(dispatch(monitor.app))
        run_next(monitor.app)

    seen, url = [], "/monitor/jobs/complete?limit=2"
    while url:
        html = monitor.get(url).text
        seen += re.findall(r'data-job-id="([^"]+)"', html)
        match = re.search(r'<a rel="next" href="([^"]+)"', html)
        url = match.group(1).replace("&amp;", "&") if match else None

    assert seen == list(reversed(ids))


def test_a_list_filters_by_job_name_from_the_query_string(monitor):
    dispatch(monitor.app)
    run_next(monitor.app)

    assert "data-job-id" in monitor.get("/monitor/jobs/complete?name=testGreet").text
    assert "data-job-id" not in monitor.get("/monitor/jobs/complete?name=otherJob").text


def test_failures_can_be_searched_by_error_text(monitor):
    dispatch(monitor.app)
    disk = fail_next(monitor.app, "disk full on /var")
    dispatch(monitor.app)
    fail_next(monitor.app, "connection reset")

    html = monitor.get("/monitor/jobs/failed?q=DISK").text

    assert re.findall(r'data-job-id="([^"]+)"', html) == [disk]
    assert "1 match" in html


def test_failed_rows_show_the_error_and_a_retry_button(monitor):
    dispatch(monitor.app)
    fail_next(monitor.app, "disk full")

    html = monitor.get("/monitor/jobs/failed").text

    assert "<strong>RuntimeError</strong>: disk full" in html
    assert ">Retry</button>" in html


def test_queued_jobs_are_listed_oldest_first_with_their_wait(monitor):
    first, second = dispatch(monitor.app), dispatch(monitor.app)

    html = monitor.get("/monitor/jobs/queued").text

    assert re.findall(r'data-job-id="([^"]+)"', html) == [first, second]
    assert ">Revoke</button>" in html


def test_a_running_job_whose_worker_sent_no_heartbeat_is_flagged(monitor):
    dispatch(monitor.app)
    task = monitor.app.extensions["jobkit"].huey.dequeue()
    monitor.history.on_signal("executing", task)  # and the worker vanishes

    html = monitor.get("/monitor/jobs/running").text

    assert task.id in html
    assert "worker lost?" in html


# -- job page --------------------------------------------------------------------


def test_the_job_page_shows_payload_result_and_timeline(monitor):
    job_id = dispatch(monitor.app)
    run_next(monitor.app)

    html = monitor.get(f"/monitor/job/{job_id}").text

    assert "Olá, João!" in html  # the result
    assert "&#34;idade&#34;: 30" in html  # the payload, as escaped JSON
    for event in ("queued", "started", "completed"):
        assert f'class="event-{event}"' in html
    assert 'data-status="complete"' in html


def test_the_job_page_shows_each_failed_attempt_with_its_traceback(monitor):
    dispatch(monitor.app)
    job_id = fail_next(monitor.app, "disk full")

    html = monitor.get(f"/monitor/job/{job_id}").text

    assert "Attempt 1" in html
    assert "Traceback (most recent call last)" in html
    assert "RuntimeError: disk full" in html
    assert 'id="retry"' in html


def test_a_retried_job_and_its_original_link_to_each_other(monitor):
    dispatch(monitor.app)
    original = fail_next(monitor.app)
    monitor.post(f"/monitor/job/{original}/retry")
    new_id = monitor.history.get(original)["retried_by"]

    assert f'href="/monitor/job/{new_id}"' in monitor.get(f"/monitor/job/{original}").text
    assert f'href="/monitor/job/{original}"' in monitor.get(f"/monitor/job/{new_id}").text


def test_an_unknown_job_is_not_found(monitor):
    assert monitor.get("/monitor/job/no-such-id").status_code == 404


def test_finding_a_job_by_id_opens_its_page(monitor):
    job_id = dispatch(monitor.app)

    response = monitor.get("/monitor/find", query_string={"id": f"  {job_id} "})

    assert response.headers["Location"] == f"/monitor/job/{job_id}"


def test_finding_an_unknown_id_says_so(monitor):
    response = monitor.get("/monitor/find?id=nope", follow_redirects=True)

    assert "No job has the id &#39;nope&#39;." in response.text


# -- workers ---------------------------------------------------------------------


def test_the_workers_page_shows_each_worker_with_its_heartbeat_and_current_job(monitor):
    tracker = monitor.history.tracker
    tracker.worker_started()
    try:
        job_id = dispatch(monitor.app)
        monitor.history.on_signal("executing", monitor.app.extensions["jobkit"].huey.dequeue())
        tracker.tick(model.now() + 1)

        html = monitor.get("/monitor/workers").text
    finally:
        tracker.worker_stopped()

    assert model.worker_id() in html
    assert ">online<" in html
    assert f'href="/monitor/job/{job_id}">testGreet</a>' in html


def test_a_worker_with_a_stale_heartbeat_shows_as_dead(monitor):
    monitor.history.tracker.tick(model.now() - 60)  # its last beat, a minute ago

    html = monitor.get("/monitor/workers").text

    assert ">dead<" in html


def test_without_workers_the_page_says_how_to_start_one(monitor):
    assert "huey_consumer" in monitor.get("/monitor/workers").text


# -- JSON API --------------------------------------------------------------------


def test_the_api_says_how_many_jobs_are_running_now(monitor):
    dispatch(monitor.app)
    monitor.history.on_signal("executing", monitor.app.extensions["jobkit"].huey.dequeue())

    body = monitor.get("/monitor/api/counts").get_json()

    assert body["counts"]["running"] == 1
    assert body["queue_depth"] == 0


def test_the_api_overview_has_the_pages_numbers(monitor):
    dispatch(monitor.app)
    run_next(monitor.app)

    body = monitor.get("/monitor/api/overview").get_json()

    assert body["counts"]["complete"] == 1
    assert len(body["per_minute"]) == 60
    assert body["jobs"][0]["name"] == "testGreet"
    assert body["workers"] == []


def test_the_api_lists_jobs_page_by_page(monitor):
    for _ in range(3):
        dispatch(monitor.app)
        run_next(monitor.app)

    first = monitor.get("/monitor/api/jobs/complete?limit=2").get_json()
    second = monitor.get(
        "/monitor/api/jobs/complete", query_string={"limit": 2, "cursor": first["next_cursor"]}
    ).get_json()

    assert first["total"] == 3
    assert len(first["jobs"]) == 2
    assert len(second["jobs"]) == 1
    assert second["next_cursor"] is None


def test_the_api_returns_a_job_with_its_attempts_and_timeline(monitor):
    dispatch(monitor.app)
    job_id = fail_next(monitor.app)

    body = monitor.get(f"/monitor/api/job/{job_id}").get_json()

    assert body["payload"] == PESSOA
    assert body["attempts"][0]["error"]["type"] == "RuntimeError"
    assert [e["kind"] for e in body["events"]] == ["queued", "started", "failed"]


def test_the_api_answers_404_in_json(monitor):
    response = monitor.get("/monitor/api/job/nope")

    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


def test_the_api_lists_workers(monitor):
    assert monitor.get("/monitor/api/workers").get_json() == {"workers": []}
