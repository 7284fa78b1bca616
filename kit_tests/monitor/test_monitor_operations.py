"""The monitor's job controls: progress, logs, cancel, pause, periodic jobs, audit log.

On both backends, with no worker: a "running" job is made by sending the
signal a worker would, and its progress and log lines are written through
the same store call the worker's background thread makes.
"""

import json
import re
import time

import pytest

from acme_jobs.kit.controls.model import Flush

from .monitor_helpers import XSS_PAYLOADS, dispatch, fail, fail_next, run_next

PEOPLE = [{"nome": f"P{i}", "idade": 20 + i} for i in range(10)]


def controls(monitor):
    return monitor.app.extensions["jobkit"].controls


def start_import(monitor, done: int = 3, message: str = "imported P2", lines=()) -> str:
    """A running testImport that reported ``done`` of 10 and logged ``lines``."""
    response = monitor.app.test_client().post(
        "/jobs/testImport", json={"pessoas": PEOPLE, "atraso": 0}
    )
    job_id = response.get_json()["id"]
    task = monitor.app.extensions["jobkit"].huey.dequeue()
    assert task.id == job_id
    monitor.history.on_signal("executing", task)
    now = time.time()
    progress = {"done": done, "total": 10, "message": message, "at": now, "rate": 2.0}
    entries = [
        json.dumps(
            {"at": now, "level": level, "logger": "jobs.import", "message": text}
            | {"attempt": 1, "seq": n}
        )
        for n, (level, text) in enumerate(lines, start=1)
    ]
    controls(monitor).store.flush([Flush(job_id, progress, entries)])
    return job_id


def takes_nothing(monitor) -> bool:
    """What a worker's dequeue gives now: nothing, while paused."""
    return monitor.app.extensions["jobkit"].huey.dequeue() is None


def audit_actions(monitor) -> list[tuple[str, str, str]]:
    entries, _, _ = controls(monitor).audit_page()
    return [(e["action"], e["target"], e["user"]) for e in entries]


# -- progress, time and logs ------------------------------------------------------------


def test_a_running_jobs_page_shows_its_progress_time_and_logs(monitor):
    job_id = start_import(monitor, lines=[("INFO", "importing 10 people"), ("WARNING", "P1 odd")])

    html = monitor.get(f"/monitor/job/{job_id}").text

    assert '<progress value="3" max="10"' in html
    assert "<strong>3</strong> of 10" in html
    assert "2/s" in html and "left" in html
    assert "imported P2" in html
    assert re.search(r'<meter min="0" max="3600.0"', html)  # testImport: timeout=3600
    assert "importing 10 people" in html
    assert '<span class="log-warning">' in html
    assert 'id="cancel"' in html


def test_the_live_part_of_the_job_page_carries_the_progress(monitor):
    job_id = start_import(monitor, done=7)

    html = monitor.get(f"/monitor/job/{job_id}?partial=1").text

    assert '<progress value="7" max="10"' in html
    assert "<html" not in html


def test_the_running_list_shows_progress_and_time_against_the_timeout(monitor):
    job_id = start_import(monitor, done=4)

    html = monitor.get("/monitor/jobs/running").text

    row = re.search(rf'<tr data-job-id="{job_id}">.*?</tr>', html, re.S).group(0)
    assert '<progress value="4" max="10"' in row
    assert "of 1 h 0 min" in row
    assert f'action="/monitor/job/{job_id}/cancel"' in row


def test_the_api_returns_progress_logs_and_time(monitor):
    job_id = start_import(monitor, lines=[("INFO", "importing 10 people")])

    job = monitor.get(f"/monitor/api/job/{job_id}").get_json()
    (row,) = monitor.get("/monitor/api/jobs/running").get_json()["jobs"]
    logs = monitor.get(f"/monitor/api/job/{job_id}/logs").get_json()

    assert (job["progress"]["done"], job["progress"]["percent"]) == (3, 30.0)
    assert job["timeout"] == 3600.0 and job["elapsed"] >= 0
    assert job["logs"]["lines"][0]["message"] == "importing 10 people"
    assert job["cancel_requested"] is None
    assert (row["id"], row["progress"]["done"], row["timeout"]) == (job_id, 3, 3600.0)
    assert logs == {"lines": job["logs"]["lines"], "cut": 0}
    assert monitor.get("/monitor/api/job/nope/logs").status_code == 404


def test_a_failed_jobs_logs_sit_next_to_its_traceback(monitor):
    dispatch(monitor.app)
    task = monitor.app.extensions["jobkit"].huey.dequeue()
    line = {"at": time.time(), "level": "ERROR", "logger": "jobs.x", "message": "disk is full"}
    controls(monitor).store.flush([Flush(task.id, None, [json.dumps({**line, "attempt": 1})])])
    fail(monitor.app, task)

    html = monitor.get(f"/monitor/job/{task.id}").text

    attempt = re.search(r'<li class="attempt outcome-failed">.*?</li>', html, re.S).group(0)
    assert "disk is full" in attempt
    assert 'class="traceback"' in attempt
    assert attempt.index("disk is full") < attempt.index('class="traceback"')


# -- cancel -------------------------------------------------------------------------


def test_cancelling_a_running_job_asks_it_to_stop_and_is_audited(monitor):
    job_id = start_import(monitor)

    response = monitor.post(f"/monitor/job/{job_id}/cancel")

    assert response.headers["Location"] == f"/monitor/job/{job_id}"
    assert controls(monitor).cancel_request(job_id)["user"] == "admin"
    html = monitor.get(f"/monitor/job/{job_id}").text
    assert "Cancel requested: the job stops at its next progress report" in html
    assert "data-cancel-requested" in html
    entry = controls(monitor).audit_page()[0][0]
    assert (entry["action"], entry["target"], entry["user"]) == ("cancel", job_id, "admin")
    assert entry["ip"] == "127.0.0.1"


def test_cancel_from_the_running_list_returns_to_the_list(monitor):
    job_id = start_import(monitor)

    response = monitor.post(f"/monitor/job/{job_id}/cancel", {"next": "/monitor/jobs/running"})

    assert response.headers["Location"] == "/monitor/jobs/running"


def test_cancel_never_redirects_off_site(monitor):
    job_id = start_import(monitor)

    response = monitor.post(f"/monitor/job/{job_id}/cancel", {"next": "//evil.example/"})

    assert response.headers["Location"] == f"/monitor/job/{job_id}"


def test_cancelling_a_queued_job_revokes_it(monitor):
    job_id = dispatch(monitor.app)

    page = monitor.post(f"/monitor/job/{job_id}/cancel", follow_redirects=True).text
    run_next(monitor.app)

    assert "a worker will drop this job" in page
    assert monitor.history.get(job_id)["status"] == "revoked"


def test_cancelling_a_finished_job_says_so(monitor):
    dispatch(monitor.app)
    job_id = run_next(monitor.app)

    page = monitor.post(f"/monitor/job/{job_id}/cancel", follow_redirects=True).text

    assert "has finished already" in page
    assert audit_actions(monitor) == []


# -- pause and resume ---------------------------------------------------------------


def test_pausing_the_queue_needs_a_reason_shows_a_banner_and_resumes(monitor):
    page = monitor.post("/monitor/pause", {"name": "", "reason": " "}, follow_redirects=True)
    assert "Say why you pause the queue" in page.text
    assert controls(monitor).pauses()["queue"] is None

    monitor.post("/monitor/pause", {"name": "", "reason": "database upgrade"})
    overview = monitor.get("/monitor/").text
    assert "data-queue-paused" in overview and "database upgrade" in overview
    job_id = dispatch(monitor.app)
    assert takes_nothing(monitor)

    page = monitor.post("/monitor/resume", {"name": ""}, follow_redirects=True).text
    assert "Resumed the queue." in page
    assert run_next(monitor.app) == job_id
    assert "data-queue-paused" not in monitor.get("/monitor/").text
    assert audit_actions(monitor) == [("resume", "queue", "admin"), ("pause", "queue", "admin")]


def test_pausing_a_job_name_holds_its_jobs_until_it_resumes(monitor):
    monitor.post("/monitor/pause", {"name": "testGreet", "reason": "upstream is down"})
    job_id = dispatch(monitor.app)

    assert takes_nothing(monitor)
    html = monitor.get("/monitor/pauses").text
    row = re.search(r'<tr data-job-name="testGreet".*?</tr>', html, re.S).group(0)
    assert 'data-paused="yes"' in row and "upstream is down" in row
    assert '<td class="num">1</td>' in row  # held

    page = monitor.post("/monitor/resume", {"name": "testGreet"}, follow_redirects=True).text
    assert "1 held job queued again" in page
    assert run_next(monitor.app) == job_id
    assert monitor.history.get(job_id)["status"] == "complete"


def test_pausing_an_unknown_job_name_is_a_404(monitor):
    response = monitor.post("/monitor/pause", {"name": "noSuchJob", "reason": "x"})

    assert response.status_code == 404


def test_pausing_twice_says_it_is_paused_already(monitor):
    monitor.post("/monitor/pause", {"name": "testGreet", "reason": "one"})

    page = monitor.post(
        "/monitor/pause", {"name": "testGreet", "reason": "two"}, follow_redirects=True
    )

    assert "Job testGreet is paused already." in page.text
    assert controls(monitor).pauses()["jobs"]["testGreet"]["reason"] == "one"


def test_the_pauses_api(monitor):
    monitor.post("/monitor/pause", {"name": "testGreet", "reason": "why not"})

    body = monitor.get("/monitor/api/pauses").get_json()

    assert body["queue"] is None
    assert body["jobs"]["testGreet"]["reason"] == "why not"


# -- periodic jobs --------------------------------------------------------------------


def test_the_periodic_page_lists_schedules_and_runs_one_now(monitor):
    html = monitor.get("/monitor/periodic").text
    row = re.search(r'<tr data-periodic="testPeriodic">.*?</tr>', html, re.S).group(0)
    assert "every 5 minutes" in row and "*/5 * * * *" in row
    assert "never" in row

    response = monitor.post("/monitor/periodic/testPeriodic/run")
    job_id = response.headers["Location"].rsplit("/", 1)[1]
    assert run_next(monitor.app) == job_id

    row = re.search(
        r'<tr data-periodic="testPeriodic">.*?</tr>', monitor.get("/monitor/periodic").text, re.S
    ).group(0)
    assert f'href="/monitor/job/{job_id}"' in row
    assert "run now by admin" in row
    assert monitor.history.get(job_id)["status"] == "complete"
    assert audit_actions(monitor)[0] == ("run_now", "testPeriodic", "admin")


def test_run_now_refuses_jobs_that_are_not_periodic(monitor):
    assert monitor.post("/monitor/periodic/testGreet/run").status_code == 404


def test_the_periodic_api(monitor):
    (found,) = monitor.get("/monitor/api/periodic").get_json()["periodic"]

    assert found["name"] == "testPeriodic"
    assert found["next_run"] > time.time()
    assert found["next_run"] % 300 == 0


# -- audit log --------------------------------------------------------------------------


def test_every_action_is_in_the_audit_log(monitor):
    dispatch(monitor.app)
    failed = fail_next(monitor.app)
    monitor.post(f"/monitor/job/{failed}/retry")
    revoked = dispatch(monitor.app)
    monitor.post(f"/monitor/job/{revoked}/revoke")
    monitor.post(f"/monitor/job/{failed}/delete")
    monitor.post("/monitor/pause", {"name": "testGreet", "reason": "r"})
    monitor.post("/monitor/resume", {"name": "testGreet"})

    actions = [a for a, _, _ in audit_actions(monitor)]
    html = monitor.get("/monitor/audit").text
    api = monitor.get("/monitor/api/audit").get_json()

    assert actions == ["resume", "pause", "delete", "revoke", "retry"]
    assert html.count("<tr data-action=") == 5
    assert f'href="/monitor/job/{revoked}"' in html
    assert "job name testGreet" in html
    assert [e["action"] for e in api["entries"]] == actions
    assert api["total"] == 5


def test_retry_all_is_audited_with_its_count(monitor):
    for _ in range(2):
        dispatch(monitor.app)
        fail_next(monitor.app, "disk full")

    monitor.post("/monitor/jobs/failed/retry?q=disk")

    entry = controls(monitor).audit_page()[0][0]
    assert (entry["action"], entry["count"], entry["q"]) == ("retry_all", 2, "disk")


def test_the_audit_log_pages(monitor):
    for n in range(3):
        controls(monitor).audit("retry", f"job-{n}", "admin")

    first = monitor.get("/monitor/audit?limit=2").text
    older = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = monitor.get(older).text

    assert "job-2" in first and "job-1" in first and "job-0" not in first
    assert "job-0" in second and 'rel="next"' not in second


# -- the monitor's rules apply to the new pages and actions -------------------------------


NEW_PAGES = ["/monitor/periodic", "/monitor/pauses", "/monitor/audit"]


def test_the_new_pages_carry_the_security_headers_and_no_inline_script(monitor):
    job_id = start_import(monitor, lines=[("INFO", "x")])
    for path in [*NEW_PAGES, f"/monitor/job/{job_id}", "/monitor/jobs/running"]:
        response = monitor.get(path)
        assert response.status_code == 200, path
        assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", response.text), path
        assert not re.search(r"\sstyle\s*=", response.text), path  # no inline style either
        assert not re.search(r"\son[a-z]+\s*=", response.text, re.I), path


def test_the_new_pages_need_a_login(anonymous):
    for path in NEW_PAGES:
        assert "/monitor/login" in anonymous.get(path).headers["Location"]
    for path in ["/monitor/api/periodic", "/monitor/api/pauses", "/monitor/api/audit"]:
        assert anonymous.get(path).status_code == 401


ACTIONS = [
    ("/monitor/pause", {"name": "testGreet", "reason": "r"}),
    ("/monitor/resume", {"name": "testGreet"}),
    ("/monitor/periodic/testPeriodic/run", {}),
    ("/monitor/job/{job}/cancel", {}),
]


@pytest.mark.parametrize(("path", "form"), ACTIONS)
def test_the_new_actions_refuse_a_missing_token_another_site_and_get(monitor, path, form):
    job_id = start_import(monitor)
    path = path.format(job=job_id)

    assert monitor.client.post(path, data=form).status_code == 403
    cross = monitor.post(path, form, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert monitor.get(path).status_code == 405
    assert audit_actions(monitor) == []
    assert controls(monitor).pauses()["jobs"] == {}
    assert controls(monitor).cancel_request(job_id) is None


@pytest.mark.parametrize(("path", "form"), ACTIONS)
def test_the_new_actions_need_a_login(anonymous, path, form):
    response = anonymous.client.post(path.format(job="some-id"), data=form)

    assert response.status_code in (302, 403)
    assert anonymous.app.extensions["jobkit"].controls.audit_page()[2] == 0


@pytest.mark.parametrize("evil", XSS_PAYLOADS)
def test_hostile_reasons_log_lines_and_messages_are_shown_as_text(monitor, evil):
    job_id = start_import(monitor, message=evil, lines=[("INFO", evil)])
    monitor.post("/monitor/pause", {"name": "", "reason": evil})

    for path in [f"/monitor/job/{job_id}", "/monitor/jobs/running", *NEW_PAGES, "/monitor/"]:
        html = monitor.get(path).text
        assert evil not in html, path
        assert "&lt;" in html, path
