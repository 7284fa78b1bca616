"""GET /jobs/<id>: the whole record for a key that may read it, public fields for others."""

import re

from acme_jobs.kit.api_keys import PUBLIC_FIELDS
from conftest import CI_SECRET, GREETER_SECRET, PROJECT_ROOT
from monitor.monitor_helpers import fail, run_next
from support import bearer

PESSOA = {"nome": "João", "idade": 30}
# A payload the job's schema would refuse: recorded directly, as the example.
LEAKY = {"texto": "olá", "password": "hunter2", "nested": {"api_key": "sk-live-123"}}
PUBLIC = {*PUBLIC_FIELDS, "error"}


def failed_leaky_job(app) -> str:
    """A failed testGreet whose payload holds secrets, with a real traceback."""
    kit = app.extensions["jobkit"]
    task = kit.tasks["testGreet"].s(LEAKY)
    kit.history.job_enqueued(task, LEAKY)
    return fail(app, task, "the printer is on fire")


def completed_job(client) -> str:
    job_id = client.post("/jobs/testGreet", json=PESSOA, headers=bearer(CI_SECRET)).json["id"]
    run_next(client.application)
    return job_id


# -- with a key that may read the job -----------------------------------------------


def test_a_key_that_may_read_the_job_sees_the_whole_record(keyed):
    job_id = completed_job(keyed)

    record = keyed.get(f"/jobs/{job_id}", headers=bearer(GREETER_SECRET)).json

    assert record["payload"] == PESSOA
    assert record["result"]["greeting"] == "Olá, João!"
    assert "worker" in record
    assert record["api_key_name"] == "ci"


def test_the_whole_record_redacts_the_payload_as_the_monitor_does(keyed):
    job_id = failed_leaky_job(keyed.application)

    record = keyed.get(f"/jobs/{job_id}", headers=bearer(CI_SECRET)).json

    assert record["payload"] == {
        "texto": "olá",
        "password": "[redacted]",
        "nested": {"api_key": "[redacted]"},
    }


def test_the_whole_record_redacts_the_result_as_the_monitor_does(keyed):
    keyed.application.config["MONITOR_REDACT_KEYS"] = ["greeting"]
    job_id = completed_job(keyed)

    record = keyed.get(f"/jobs/{job_id}", headers=bearer(CI_SECRET)).json

    assert record["result"]["greeting"] == "[redacted]"


def test_the_whole_record_keeps_the_traceback(keyed):
    job_id = failed_leaky_job(keyed.application)

    record = keyed.get(f"/jobs/{job_id}", headers=bearer(CI_SECRET)).json

    assert "Traceback" in record["error"]["traceback"]


# -- without a key, or with one for other jobs ------------------------------------------


def test_without_a_key_the_status_has_only_the_public_fields(keyed):
    job_id = completed_job(keyed)

    record = keyed.get(f"/jobs/{job_id}").json

    assert set(record) == PUBLIC
    assert record["status"] == "complete"
    assert record["attempt"] == 1
    assert record["error"] is None


def test_the_public_status_of_a_failure_has_its_error_type_and_message_only(keyed):
    job_id = failed_leaky_job(keyed.application)

    response = keyed.get(f"/jobs/{job_id}")

    assert response.json["error"] == {"type": "RuntimeError", "message": "the printer is on fire"}
    for leak in ("hunter2", "sk-live-123", "texto", "Traceback", ".py"):
        assert leak not in response.get_data(as_text=True)


def test_a_key_for_other_jobs_sees_only_the_public_fields(keyed):
    job_id = keyed.post("/jobs/testImport", json={"pessoas": [PESSOA]}, headers=bearer(CI_SECRET))
    job_id = job_id.json["id"]

    record = keyed.get(f"/jobs/{job_id}", headers=bearer(GREETER_SECRET)).json

    assert set(record) == PUBLIC


def test_open_mode_shows_only_the_public_fields_even_with_a_key(api_app):
    client = api_app(JOBS_API_KEYS=None, JOBS_API_OPEN=True).test_client()
    job_id = client.post("/jobs/testGreet", json=PESSOA).json["id"]

    record = client.get(f"/jobs/{job_id}", headers=bearer(CI_SECRET)).json

    assert set(record) == PUBLIC


def test_an_unknown_key_on_the_status_is_a_401_not_the_public_view(keyed):
    job_id = completed_job(keyed)

    response = keyed.get(f"/jobs/{job_id}", headers=bearer("not-a-key-0123456789"))

    assert response.status_code == 401


def test_an_unknown_job_id_is_a_404_without_a_key(anonymous_client):
    assert anonymous_client.get("/jobs/no-such-id").status_code == 404


def test_the_status_varies_with_the_authorization_header(keyed):
    job_id = completed_job(keyed)

    assert "Authorization" in keyed.get(f"/jobs/{job_id}").headers["Vary"]


def test_the_readme_table_lists_exactly_the_public_fields():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- public status fields -->")[1]
    rows = re.findall(r"^\| `(\w+)` \|", section.split("\n\n")[1], re.M)

    assert set(rows) == PUBLIC
