"""jobModelo: its schema, what it does, and every way to queue it.

A job's tests live in one file, like this one: delete the job, delete the file.
"""

import pytest
from helpers import pending, wait_for_status
from marshmallow import ValidationError

from {{ cookiecutter.project_slug }}.jobs.job_modelo import Pessoa, enqueue_job_modelo, job_modelo


def test_pessoa_accepts_a_name_and_an_age():
    assert Pessoa().load({"nome": "João", "idade": 30}) == {"nome": "João", "idade": 30}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"idade": 30}, "nome"),
        ({"nome": "", "idade": 30}, "nome"),
        ({"nome": "João"}, "idade"),
        ({"nome": "João", "idade": "30"}, "idade"),
        ({"nome": "João", "idade": -1}, "idade"),
    ],
)
def test_pessoa_rejects_a_bad_field(payload, field):
    with pytest.raises(ValidationError) as error:
        Pessoa().load(payload)

    assert field in error.value.messages


def test_job_modelo_greets_the_person_and_says_whether_they_are_an_adult(app):
    with app.app_context():
        result = job_modelo({"nome": "Ana", "idade": 17})

    assert result["greeting"] == "Olá, Ana!"
    assert result["adult"] is False


def test_post_queues_the_job_and_answers_202_with_its_id(queue_client, queue_app):
    response = queue_client.post("/jobs/jobModelo", json={"nome": "João", "idade": 30})

    assert response.status_code == 202
    assert response.get_json()["status"] == "queued"
    assert pending(queue_app) == 1


def test_post_with_a_bad_payload_answers_422_and_queues_nothing(queue_client, queue_app):
    response = queue_client.post("/jobs/jobModelo", json={"nome": "João", "idade": "trinta"})

    assert response.status_code == 422
    assert "idade" in response.get_json()["fields"]
    assert pending(queue_app) == 0


def test_the_status_url_shows_the_result_once_the_job_ran(client):
    job_id = client.post("/jobs/jobModelo", json={"nome": "João", "idade": 30}).get_json()["id"]

    record = client.get(f"/jobs/{job_id}").get_json()

    assert record["status"] == "complete"
    assert record["result"]["greeting"] == "Olá, João!"


def test_your_code_can_queue_it_directly(queue_app):
    with queue_app.app_context():
        job_id = enqueue_job_modelo("João", 30)

    assert job_id
    assert pending(queue_app) == 1


def test_the_pessoas_view_queues_the_job_and_answers_202(queue_client, queue_app):
    response = queue_client.post("/pessoas", json={"nome": "João", "idade": 30})

    assert response.status_code == 202
    assert response.get_json()["job_id"]
    assert pending(queue_app) == 1


def test_the_pessoas_view_answers_422_for_a_bad_person(queue_client, queue_app):
    response = queue_client.post("/pessoas", json={"nome": "João"})

    assert response.status_code == 422
    assert pending(queue_app) == 0


def test_the_pessoas_view_answers_400_for_a_body_that_is_not_json(queue_client):
    response = queue_client.post("/pessoas", data="{", content_type="application/json")

    assert response.status_code == 400


def test_flask_jobs_enqueue_prints_the_job_id(queue_app):
    result = queue_app.test_cli_runner().invoke(
        args=["jobs", "enqueue", "jobModelo", '{"nome": "João", "idade": 30}']
    )

    assert result.exit_code == 0
    assert pending(queue_app) == 1


@pytest.mark.slow
def test_a_real_worker_runs_it(start_worker):
    app = start_worker()
    client = app.test_client()

    job_id = client.post("/jobs/jobModelo", json={"nome": "João", "idade": 30}).get_json()["id"]
    record = wait_for_status(client, job_id, {"complete", "failed"})

    assert record["status"] == "complete"
    assert record["result"]["greeting"] == "Olá, João!"
