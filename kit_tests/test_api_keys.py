"""API keys on the jobs API: closed by default, keys with scopes, throttled guessing."""

import base64
import json
import logging
import time

import pytest

from acme_jobs import create_app
from acme_jobs.kit.api_keys import InvalidKeys, parse_keys
from acme_jobs.kit.state import kit_state
from conftest import CI_SECRET, GREETER_SECRET, TEST_KEYS
from support import SECRET_KEY, bearer, pending, without_key

PESSOA = {"nome": "João", "idade": 30}
IMPORT = {"pessoas": [PESSOA], "atraso": 0}


# -- the setting ------------------------------------------------------------------


def test_keys_are_read_with_their_names_and_jobs():
    keys = {key.name: key for key in parse_keys(TEST_KEYS)}

    assert keys["ci"].jobs == {"*"}
    assert keys["greeter"].jobs == {"testGreet"}


def test_keys_are_read_from_the_environment_as_json(monkeypatch, tmp_path):
    monkeypatch.setenv("FLASK_JOBS_API_KEYS", json.dumps({"env": TEST_KEYS["ci"]}))
    app = create_app({"TESTING": True, "SQLITE_PATH": str(tmp_path / "q.db"), "REDIS_URL": None})

    response = without_key(app.test_client()).post(
        "/jobs/testGreet", json=PESSOA, headers=bearer(CI_SECRET)
    )

    assert response.status_code == 202


@pytest.mark.parametrize("value", [None, "", {}])
def test_an_empty_setting_means_no_keys(value):
    assert parse_keys(value) == ()


@pytest.mark.parametrize(
    "value",
    [
        '{"ci": {"key": "' + CI_SECRET + '", "jobs": ["*"]',  # cut short
        json.dumps([CI_SECRET]),
        {"ci": {"key": CI_SECRET}},
        {"ci": {"key": CI_SECRET, "jobs": []}},
        {"ci": {"key": CI_SECRET, "jobs": "*"}},
        {"ci": {"key": CI_SECRET, "jobs": ["*"], "job": ["testGreet"]}},
        {"ci": {"key": CI_SECRET[:15], "jobs": ["*"]}},
        {"ci": {"key": CI_SECRET, "jobs": ["*"]}, "copy": {"key": CI_SECRET, "jobs": ["*"]}},
    ],
    ids=["bad-json", "not-an-object", "no-jobs", "empty-jobs", "jobs-not-a-list",
         "unknown-field", "short-secret", "same-secret"],
)  # fmt: skip
def test_a_malformed_setting_stops_the_app_without_quoting_the_secret(tmp_path, value):
    with pytest.raises(InvalidKeys) as error:
        create_app({"TESTING": True, "SQLITE_PATH": str(tmp_path / "q"), "JOBS_API_KEYS": value})

    assert CI_SECRET[:15] not in str(error.value)


# -- with no key configured -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/jobs/testGreet"), ("GET", "/jobs"), ("GET", "/jobs/abc")]
)
def test_without_keys_the_api_refuses_and_says_how_to_configure_it(api_app, method, path):
    client = api_app(JOBS_API_KEYS=None).test_client()

    response = client.open(path, method=method, json=PESSOA if method == "POST" else None)

    assert response.status_code == 503
    assert response.get_json()["error"] == "api_not_configured"
    assert "FLASK_JOBS_API_KEYS" in response.get_json()["message"]


def test_debug_mode_opens_the_api_when_no_key_is_configured(api_app):
    client = without_key(api_app(JOBS_API_KEYS=None, DEBUG=True).test_client())

    assert client.post("/jobs/testGreet", json=PESSOA).status_code == 202


@pytest.mark.parametrize("flag", [True, 1, "1", "true"])
def test_jobs_api_open_opens_the_api_when_no_key_is_configured(api_app, flag):
    client = without_key(api_app(JOBS_API_KEYS=None, JOBS_API_OPEN=flag).test_client())

    assert client.post("/jobs/testGreet", json=PESSOA).status_code == 202


@pytest.mark.parametrize("flag", [False, 0, "0", "false", ""])
def test_jobs_api_open_set_to_false_keeps_the_api_closed(api_app, flag):
    client = api_app(JOBS_API_KEYS=None, JOBS_API_OPEN=flag).test_client()

    assert client.post("/jobs/testGreet", json=PESSOA).status_code == 503


def test_jobs_api_open_is_read_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FLASK_JOBS_API_OPEN", "1")
    app = create_app({"TESTING": True, "SQLITE_PATH": str(tmp_path / "q"), "JOBS_API_KEYS": None})

    assert without_key(app.test_client()).post("/jobs/testGreet", json=PESSOA).status_code == 202


def test_an_api_opened_by_jobs_api_open_says_so_at_startup(api_app, caplog):
    with caplog.at_level(logging.WARNING):
        api_app(JOBS_API_KEYS=None, JOBS_API_OPEN="1")

    assert "the jobs API is open to anyone" in caplog.text


@pytest.mark.parametrize("settings", [{"DEBUG": True}, {"JOBS_API_OPEN": True}])
def test_configured_keys_are_required_even_in_debug_or_open_mode(api_app, settings):
    client = without_key(api_app(**settings).test_client())

    assert client.post("/jobs/testGreet", json=PESSOA).status_code == 401


def test_open_mode_lists_every_job(api_app):
    client = without_key(api_app(JOBS_API_KEYS=None, JOBS_API_OPEN=True).test_client())

    names = [job["name"] for job in client.get("/jobs").get_json()["jobs"]]

    assert names == ["testGreet", "testImport", "testPeriodic"]


# -- keys -------------------------------------------------------------------------


def test_a_dispatch_without_a_key_is_a_401_with_a_bearer_challenge(anonymous_client):
    response = anonymous_client.post("/jobs/testGreet", json=PESSOA)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="jobs"'
    assert response.get_json()["error"] == "api_key_required"


def test_a_dispatch_refused_for_want_of_a_key_queues_nothing(tmp_path):
    app = create_app({"TESTING": True, "REDIS_URL": None, "SQLITE_PATH": str(tmp_path / "q.db")})

    without_key(app.test_client()).post("/jobs/testGreet", json=PESSOA)

    assert pending(app) == 0


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-key-at-all-0123456789",
        f"Bearer {CI_SECRET}x",
        f"Bearer {CI_SECRET[:-1]}",
        "Bearer",
        f"Token {CI_SECRET}",
        "Basic " + base64.b64encode(f"ci:{CI_SECRET}".encode()).decode(),
    ],
    ids=["unknown", "longer", "shorter", "empty", "other-scheme", "basic"],
)
def test_an_unknown_key_is_a_401_saying_the_token_is_invalid(anonymous_client, header):
    response = anonymous_client.post(
        "/jobs/testGreet", json=PESSOA, headers={"Authorization": header}
    )

    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_api_key"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="jobs", error="invalid_token"'


def test_the_bearer_scheme_is_case_insensitive(anonymous_client):
    headers = {"Authorization": f"bearer {CI_SECRET}"}

    assert anonymous_client.post("/jobs/testGreet", json=PESSOA, headers=headers).status_code == 202


def test_a_key_dispatches_a_job_it_names(anonymous_client):
    response = anonymous_client.post("/jobs/testGreet", json=PESSOA, headers=bearer(GREETER_SECRET))

    assert response.status_code == 202


def test_a_key_for_every_job_dispatches_any_job(anonymous_client):
    response = anonymous_client.post("/jobs/testImport", json=IMPORT, headers=bearer(CI_SECRET))

    assert response.status_code == 202


def test_a_key_outside_its_jobs_is_a_403(anonymous_client):
    response = anonymous_client.post(
        "/jobs/testImport", json=IMPORT, headers=bearer(GREETER_SECRET)
    )

    assert response.status_code == 403
    assert response.get_json()["error"] == "job_not_allowed"


def test_a_key_outside_its_jobs_queues_nothing(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "REDIS_URL": None,
            "SQLITE_PATH": str(tmp_path / "q.db"),
            "JOBS_API_KEYS": TEST_KEYS,
        }
    )

    app.test_client().post("/jobs/testImport", json=IMPORT, headers=bearer(GREETER_SECRET))

    assert pending(app) == 0


def test_the_job_list_needs_a_key(anonymous_client):
    response = anonymous_client.get("/jobs")

    assert response.status_code == 401


def test_the_job_list_shows_only_the_jobs_a_key_may_use(anonymous_client):
    response = anonymous_client.get("/jobs", headers=bearer(GREETER_SECRET))

    assert [job["name"] for job in response.get_json()["jobs"]] == ["testGreet"]


def test_options_needs_no_key(anonymous_client):
    response = anonymous_client.options("/jobs/testGreet")

    assert response.status_code == 200
    assert "POST" in response.headers["Allow"]


# -- guessing ---------------------------------------------------------------------


@pytest.fixture
def three_tries(api_app):
    """A client of an app that throttles after three unknown keys."""
    return without_key(api_app(MONITOR_LOGIN_ATTEMPTS=3, MONITOR_LOGIN_WINDOW=600).test_client())


def guess(client, times: int = 3) -> None:
    for _ in range(times):
        response = client.post("/jobs/testGreet", json=PESSOA, headers=bearer("guess" * 4))
        assert response.status_code == 401


def test_an_address_that_keeps_guessing_gets_429_even_with_a_valid_key(three_tries):
    guess(three_tries)

    response = three_tries.post("/jobs/testGreet", json=PESSOA, headers=bearer(CI_SECRET))

    assert response.status_code == 429
    assert response.get_json()["error"] == "too_many_attempts"
    assert 0 < int(response.headers["Retry-After"]) <= 600


def test_a_right_key_dispatches_without_reading_the_shared_count(api_app, monkeypatch):
    app = api_app()
    store = kit_state(app).login_throttle.store
    reads = []
    count = store.failures
    monkeypatch.setattr(store, "failures", lambda *args: reads.append(args) or count(*args))

    response = app.test_client().post("/jobs/testGreet", json=PESSOA, headers=bearer(CI_SECRET))

    assert response.status_code == 202
    assert reads == []


def test_guesses_counted_by_other_web_processes_lock_the_address_out_here(api_app):
    app = api_app(MONITOR_LOGIN_ATTEMPTS=3, MONITOR_LOGIN_WINDOW=600)
    store = kit_state(app).login_throttle.store
    for _ in range(3):  # as other processes write them, into the shared store
        store.add_failure("127.0.0.1", time.time(), 600, 3)
    client = without_key(app.test_client())

    wrong = client.post("/jobs/testGreet", json=PESSOA, headers=bearer("guess" * 4))
    right = client.post("/jobs/testGreet", json=PESSOA, headers=bearer(CI_SECRET))

    assert (wrong.status_code, right.status_code) == (429, 429)


def test_guessing_from_one_address_does_not_lock_out_another(three_tries):
    guess(three_tries)

    response = three_tries.post(
        "/jobs/testGreet",
        json=PESSOA,
        headers=bearer(CI_SECRET),
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )

    assert response.status_code == 202


def test_missing_keys_and_refused_scopes_do_not_count_as_guesses(three_tries):
    for _ in range(3):
        three_tries.post("/jobs/testGreet", json=PESSOA)
        three_tries.post("/jobs/testImport", json=IMPORT, headers=bearer(GREETER_SECRET))

    response = three_tries.post("/jobs/testGreet", json=PESSOA, headers=bearer(CI_SECRET))

    assert response.status_code == 202


def test_guessing_keys_also_locks_the_monitor_login_from_that_address(api_app):
    app = api_app(MONITOR_LOGIN_ATTEMPTS=3, MONITOR_USERNAME="admin", MONITOR_PASSWORD="pw")
    client = without_key(app.test_client())
    guess(client)

    basic = base64.b64encode(b"admin:pw").decode()
    response = client.get("/monitor/api/overview", headers={"Authorization": f"Basic {basic}"})

    assert response.status_code == 429


def test_a_refused_key_is_logged_without_the_secret(anonymous_client, caplog):
    wrong = "a-wrong-secret-0123456789"
    with caplog.at_level(logging.WARNING):
        anonymous_client.post("/jobs/testGreet", json=PESSOA, headers=bearer(wrong))

    assert "unknown jobs API key" in caplog.text
    assert wrong not in caplog.text


def test_an_accepted_key_is_never_logged(anonymous_client, caplog):
    with caplog.at_level(logging.DEBUG):
        anonymous_client.post("/jobs/testGreet", json=PESSOA, headers=bearer(CI_SECRET))

    assert CI_SECRET not in caplog.text


# -- who queued it ----------------------------------------------------------------


def test_the_history_records_the_name_of_the_key_that_queued_a_job(api_app):
    app = api_app()
    client = without_key(app.test_client())
    job_id = client.post("/jobs/testGreet", json=PESSOA, headers=bearer(GREETER_SECRET)).json["id"]

    record = app.extensions["jobkit"].history.detail(job_id)

    assert record["api_key_name"] == "greeter"
    assert record["events"][0]["api_key_name"] == "greeter"
    assert GREETER_SECRET not in json.dumps(record)


def test_a_job_queued_in_open_mode_records_no_key(api_app):
    app = api_app(JOBS_API_KEYS=None, JOBS_API_OPEN=True)
    job_id = app.test_client().post("/jobs/testGreet", json=PESSOA).json["id"]

    assert app.extensions["jobkit"].history.get(job_id)["api_key_name"] is None


def test_the_monitor_job_page_shows_the_key_that_queued_the_job(api_app):
    app = api_app(MONITOR_USERNAME="admin", MONITOR_PASSWORD="pw", SECRET_KEY=SECRET_KEY)
    client = without_key(app.test_client())
    job_id = client.post("/jobs/testGreet", json=PESSOA, headers=bearer(GREETER_SECRET)).json["id"]
    basic = base64.b64encode(b"admin:pw").decode()

    page = client.get(f"/monitor/job/{job_id}", headers={"Authorization": f"Basic {basic}"}).text

    assert "data-api-key>API key <code>greeter</code>" in page
    assert GREETER_SECRET not in page
