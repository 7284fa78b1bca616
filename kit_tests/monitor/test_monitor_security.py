"""The monitor's defences: CSRF, Origin checks, CSP, escaping, redaction, clamping."""

import re

import pytest

from acme_jobs.kit.monitor import present

from .monitor_helpers import (
    XSS_PAYLOADS,
    MonitorClient,
    dispatch,
    fail,
    fail_next,
    record_job,
    run_next,
)


@pytest.fixture
def failed_job(monitor) -> str:
    dispatch(monitor.app)
    return fail_next(monitor.app)


def pages(job_id: str) -> list[str]:
    return [
        "/monitor/",
        "/monitor/?partial=1",
        "/monitor/jobs/failed",
        "/monitor/jobs/complete",
        "/monitor/workers",
        f"/monitor/job/{job_id}",
        "/monitor/jobs/failed/retry",
    ]


# -- headers and markup ----------------------------------------------------------


def test_every_page_forbids_inline_script_and_framing(monitor, failed_job):
    for path in pages(failed_job):
        response = monitor.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"


def test_no_page_carries_inline_script_or_event_handlers(monitor, failed_job):
    for path in pages(failed_job):
        html = monitor.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE), path
        assert "javascript:" not in html


def test_the_login_page_is_protected_by_the_same_headers(anonymous):
    response = anonymous.get("/monitor/login")

    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


# -- CSRF and cross-site requests ------------------------------------------------


def test_a_post_without_its_csrf_token_is_refused(monitor, failed_job):
    response = monitor.client.post(f"/monitor/job/{failed_job}/retry")

    assert response.status_code == 403
    assert monitor.history.get(failed_job)["status"] == "failed"


def test_a_post_with_a_wrong_csrf_token_is_refused(monitor, failed_job):
    response = monitor.client.post(
        f"/monitor/job/{failed_job}/retry", data={"csrf_token": "guessed"}
    )

    assert response.status_code == 403
    assert monitor.history.get(failed_job)["status"] == "failed"


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
    ],
    ids=["cross-site", "same-site", "foreign-origin", "null-origin"],
)
def test_a_post_from_another_site_is_refused_even_with_a_valid_token(monitor, failed_job, headers):
    response = monitor.post(f"/monitor/job/{failed_job}/retry", headers=headers)

    assert response.status_code == 403
    assert "another site" in response.text
    assert monitor.history.get(failed_job)["status"] == "failed"


def test_a_post_from_the_monitors_own_page_is_accepted(monitor, failed_job):
    headers = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}

    response = monitor.post(f"/monitor/job/{failed_job}/retry", headers=headers)

    assert response.status_code == 302
    assert monitor.history.get(failed_job)["status"] == "retried"


def test_the_login_form_needs_its_csrf_token_too(anonymous):
    form = {"username": "admin", "password": "correct horse battery staple"}

    assert anonymous.client.post("/monitor/login", data=form).status_code == 403


@pytest.mark.parametrize("action", ["retry", "revoke", "delete"])
def test_get_never_changes_anything(monitor, failed_job, action):
    response = monitor.get(f"/monitor/job/{failed_job}/{action}")

    assert response.status_code == 405
    assert monitor.history.get(failed_job)["status"] == "failed"


# -- escaping --------------------------------------------------------------------


@pytest.mark.parametrize("evil", XSS_PAYLOADS)
def test_a_hostile_payload_is_shown_as_text(monitor, evil):
    job_id = dispatch(monitor.app, {"nome": evil, "idade": 30})
    run_next(monitor.app)

    for path in [f"/monitor/job/{job_id}", f"/monitor/job/{job_id}?partial=1"]:
        html = monitor.get(path).text
        assert evil not in html
        assert "&lt;" in html


@pytest.mark.parametrize("evil", XSS_PAYLOADS)
def test_a_hostile_error_message_and_traceback_are_shown_as_text(monitor, evil):
    dispatch(monitor.app)
    job_id = fail_next(monitor.app, message=evil)

    for path in ["/monitor/jobs/failed", f"/monitor/job/{job_id}", "/monitor/jobs/retrying"]:
        html = monitor.get(path).text
        assert evil not in html


@pytest.mark.parametrize("evil", XSS_PAYLOADS)
def test_a_hostile_search_or_filter_is_echoed_as_text(monitor, evil):
    html = monitor.get("/monitor/jobs/failed", query_string={"q": evil, "name": evil}).text

    assert evil not in html
    assert "&lt;" in html or "&#34;" in html or "&quot;" in html


def test_a_hostile_job_id_is_not_reflected_raw(monitor):
    response = monitor.get("/monitor/find", query_string={"id": XSS_PAYLOADS[0]})
    page = monitor.get(response.headers["Location"]).text

    assert XSS_PAYLOADS[0] not in page


# -- redaction -------------------------------------------------------------------


def test_secret_looking_payload_keys_are_redacted_on_the_page_and_in_the_api(monitor):
    payload = {
        "nome": "Ana",
        "password": "hunter2",
        "nested": {"api_key": "sk-live-123", "X-Auth-Token": "t0k3n"},
        "items": [{"Secret": "s"}],
    }
    task = record_job(monitor.app, payload)
    fail(monitor.app, task)

    for path in [f"/monitor/job/{task.id}", f"/monitor/api/job/{task.id}"]:
        text = monitor.get(path).text
        for secret in ("hunter2", "sk-live-123", "t0k3n", '"s"'):
            assert secret not in text
        assert "[redacted]" in text
    assert "Ana" in monitor.get(f"/monitor/job/{task.id}").text


def test_retrying_uses_the_real_payload_not_the_redacted_one(monitor):
    payload = {"nome": "Ana", "idade": 30}
    monitor.app.config["MONITOR_REDACT_KEYS"] = ["nome"]
    dispatch(monitor.app, payload)
    failed = fail_next(monitor.app)

    monitor.post(f"/monitor/job/{failed}/retry")

    new_id = monitor.history.get(failed)["retried_by"]
    assert monitor.history.get(new_id)["payload"] == payload


def test_redaction_ignores_case_and_separators():
    value = {"API-Key": 1, "apiKey": 2, "db_password": 3, "name": {"ssn": 4}, "ok": 5}

    shown = present.redact(value, ["apikey", "password", "ssn"])

    assert shown == {
        "API-Key": "[redacted]",
        "apiKey": "[redacted]",
        "db_password": "[redacted]",
        "name": {"ssn": "[redacted]"},
        "ok": 5,
    }


# -- limits on what a request may ask for ----------------------------------------


@pytest.mark.parametrize(("asked", "served"), [("0", 1), ("-5", 1), ("100000", 60), ("x", 5)])
def test_the_refresh_interval_is_clamped_by_the_server(monitor, asked, served):
    html = monitor.get("/monitor/", query_string={"refresh": asked}).text

    assert f'data-refresh="{served}"' in html


def test_a_list_page_never_returns_more_than_200_rows(monitor):
    for _ in range(3):
        dispatch(monitor.app)

    response = monitor.get("/monitor/api/jobs/queued", query_string={"limit": "0"})
    huge = monitor.get("/monitor/api/jobs/queued", query_string={"limit": "10000000"})

    assert len(response.get_json()["jobs"]) == 1
    assert response.get_json()["next_cursor"] is not None
    assert len(huge.get_json()["jobs"]) == 3


def test_the_monitor_client_fixture_logs_in_for_real(mapp):
    client = MonitorClient(mapp)
    assert client.get("/monitor/").status_code == 302
    client.log_in()
    assert client.get("/monitor/").status_code == 200


def test_a_request_without_a_session_cookie_costs_no_cookie_signing(mapp, monkeypatch):
    def no_signing(app):
        raise AssertionError("built a cookie signer for a request with no cookie")

    monkeypatch.setattr(mapp.session_interface, "get_signing_serializer", no_signing)

    client = mapp.test_client()
    assert client.get("/jobs").status_code == 200
    assert client.get("/healthz").status_code == 200
