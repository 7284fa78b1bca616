"""POST /jobs/<name> and GET /jobs/<id>: every answer the API can give."""

import pytest

from support import free_port, pending

PESSOA = {"nome": "João", "idade": 30}


def test_dispatch_answers_202_with_the_job_id_and_where_to_follow_it(client):
    response = client.post("/jobs/testGreet", json=PESSOA)

    assert response.status_code == 202
    body = response.get_json()
    assert body["name"] == "testGreet"
    assert body["status"] == "queued"
    assert body["status_url"] == f"http://localhost/jobs/{body['id']}"
    # The same URL, relative, as Flask's own redirects are.
    assert response.headers["Location"] == f"/jobs/{body['id']}"


def test_dispatch_accepts_json_sent_without_a_content_type(client):
    response = client.post("/jobs/testGreet", data='{"nome": "João", "idade": 30}')

    assert response.status_code == 202


def test_status_shows_the_result_of_a_finished_job(client):
    status_url = client.post("/jobs/testGreet", json=PESSOA).get_json()["status_url"]

    record = client.get(status_url).get_json()

    assert record["status"] == "complete"
    assert record["payload"] == PESSOA
    assert record["result"]["greeting"] == "Olá, João!"
    assert record["attempt"] == 1


def test_a_valid_dispatch_queues_exactly_one_job(queue_app, queue_client):
    response = queue_client.post("/jobs/testGreet", json=PESSOA)

    assert response.status_code == 202
    assert pending(queue_app) == 1
    assert queue_client.get(response.headers["Location"]).get_json()["status"] == "queued"


@pytest.mark.parametrize(
    "body",
    [b"{", b"nome=Jo%C3%A3o", b"\xff\xfe", b""],
    ids=["truncated", "form-encoded", "not-utf8", "empty"],
)
def test_invalid_json_is_a_400_and_queues_nothing(queue_app, queue_client, body):
    response = queue_client.post("/jobs/testGreet", data=body)

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_json"
    assert pending(queue_app) == 0


@pytest.mark.parametrize("body", ["[]", '"João"', "30", "null", '[{"nome": "João"}]'])
def test_a_body_that_is_not_an_object_is_a_400(queue_app, queue_client, body):
    response = queue_client.post("/jobs/testGreet", data=body)

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_payload"
    assert pending(queue_app) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"idade": 30}, "nome"),
        ({"nome": "", "idade": 30}, "nome"),
        ({"nome": 42, "idade": 30}, "nome"),
        ({"nome": "João"}, "idade"),
        ({"nome": "João", "idade": "30"}, "idade"),
        ({"nome": "João", "idade": 30.5}, "idade"),
        ({"nome": "João", "idade": True}, "idade"),
        ({"nome": "João", "idade": -1}, "idade"),
        ({"nome": "João", "idade": 151}, "idade"),
        ({"nome": "João", "idade": 30, "extra": 1}, "extra"),
    ],
)
def test_schema_errors_are_a_422_with_per_field_messages(queue_app, queue_client, body, field):
    response = queue_client.post("/jobs/testGreet", json=body)

    assert response.status_code == 422
    assert field in response.get_json()["fields"]
    assert pending(queue_app) == 0


def test_an_unknown_job_is_a_404_listing_the_known_jobs(queue_app, queue_client):
    response = queue_client.post("/jobs/noSuchJob", json=PESSOA)

    assert response.status_code == 404
    assert response.get_json()["jobs"] == ["testGreet", "testImport", "testPeriodic"]
    assert pending(queue_app) == 0


def test_a_body_over_the_limit_is_a_413(queue_app, queue_client):
    limit = queue_app.config["MAX_CONTENT_LENGTH"]
    body = {"nome": "x" * limit, "idade": 30}

    response = queue_client.post("/jobs/testGreet", json=body)

    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
    assert pending(queue_app) == 0


def test_an_unknown_job_id_is_a_404(client):
    response = client.get("/jobs/00000000-0000-0000-0000-000000000000")

    assert response.status_code == 404
    assert response.get_json()["error"] == "unknown_job_id"


def test_wrong_methods_get_a_json_405(client):
    response = client.put("/jobs/testGreet", json=PESSOA)

    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"


def test_the_job_list_describes_each_payload(client):
    found = {job["name"]: job for job in client.get("/jobs").get_json()["jobs"]}

    assert sorted(found) == ["testGreet", "testImport", "testPeriodic"]
    assert found["testGreet"]["fields"]["idade"] == {"type": "Integer", "required": True}
    assert found["testGreet"]["schedule"] is None
    assert found["testImport"]["fields"]["pessoas"] == {"type": "List", "required": True}
    assert found["testPeriodic"]["fields"] == {}
    assert found["testPeriodic"]["schedule"] == {
        "cron": "*/5 * * * *",
        "description": "every 5 minutes",
    }


@pytest.fixture
def unreachable_app(tmp_path):
    """An app whose Redis is a port where nothing listens."""
    from acme_jobs import create_app

    return create_app({"TESTING": True, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})


def test_dispatch_is_a_503_when_redis_is_unreachable(unreachable_app):
    response = unreachable_app.test_client().post("/jobs/testGreet", json=PESSOA)

    assert response.status_code == 503
    assert response.get_json()["error"] == "queue_unavailable"
    assert response.headers["Retry-After"]


def test_status_is_a_503_when_redis_is_unreachable(unreachable_app):
    response = unreachable_app.test_client().get("/jobs/00000000-0000-4000-8000-000000000000")

    assert response.status_code == 503


def test_validation_comes_before_the_queue_so_bad_input_is_422_even_when_redis_is_down(
    unreachable_app,
):
    response = unreachable_app.test_client().post("/jobs/testGreet", json={"nome": ""})

    assert response.status_code == 422
