"""HTTP as RFC 9110 and Werkzeug have it: Allow, HEAD, OPTIONS, JSON errors."""

import pytest
from flask import Blueprint, abort
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import TooManyRequests, Unauthorized

from support import pending

PESSOA = {"nome": "João", "idade": 30}
JOB_ID = "00000000-0000-0000-0000-000000000000"


def allow(response) -> set[str]:
    return {method.strip() for method in response.headers["Allow"].split(",")}


@pytest.fixture
def failing_app(app):
    """The app, plus views under /jobs/ that fail in ways the API's own do not (yet)."""
    bp = Blueprint("failing", __name__, url_prefix="/jobs/_failing")

    @bp.get("/unauthorized")
    def unauthorized():
        raise Unauthorized("no key", www_authenticate=WWWAuthenticate("bearer", {"realm": "jobs"}))

    @bp.get("/throttled")
    def throttled():
        raise TooManyRequests("slow down", retry_after=30)

    @bp.get("/crash")
    def crash():
        raise RuntimeError("a bug")

    @bp.get("/teapot")
    def teapot():
        abort(418)

    app.register_blueprint(bp)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # a bug answers 500, as in production
    return app


def test_a_405_keeps_its_allow_header(client):
    response = client.put("/jobs/testGreet", json=PESSOA)

    assert response.status_code == 405
    assert allow(response) == {"OPTIONS", "POST"}
    assert response.get_json()["error"] == "method_not_allowed"


def test_a_405_on_a_job_id_allows_reading_it(client):
    response = client.delete(f"/jobs/{JOB_ID}")

    assert response.status_code == 405
    assert allow(response) == {"GET", "HEAD", "OPTIONS"}


def test_get_on_a_jobs_dispatch_url_is_a_405_that_allows_post(client):
    response = client.get("/jobs/testGreet")

    assert response.status_code == 405
    assert allow(response) == {"OPTIONS", "POST"}
    assert response.get_json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/jobs/testGreet", {"OPTIONS", "POST"}),
        (f"/jobs/{JOB_ID}", {"GET", "HEAD", "OPTIONS"}),
        ("/jobs", {"GET", "HEAD", "OPTIONS"}),
        ("/jobs/openapi.json", {"GET", "HEAD", "OPTIONS"}),
    ],
    ids=["dispatch", "status", "list", "openapi"],
)
def test_options_answers_200_with_the_methods_of_the_resource(client, path, methods):
    response = client.options(path)

    assert response.status_code == 200
    assert allow(response) == methods
    assert response.data == b""


def test_head_answers_like_get_without_a_body(client):
    got = client.get("/jobs")
    head = client.head("/jobs")

    assert head.status_code == 200
    assert head.data == b""
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    assert head.headers["Content-Length"] == got.headers["Content-Length"]


def test_head_of_an_unknown_job_id_is_a_404_without_a_body(client):
    response = client.head(f"/jobs/{JOB_ID}")

    assert response.status_code == 404
    assert response.data == b""


def test_head_on_a_jobs_dispatch_url_queues_nothing(queue_app, queue_client):
    response = queue_client.head("/jobs/testGreet")

    assert response.status_code == 405
    assert pending(queue_app) == 0


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/jobs/testGreet/extra", 404, "not_found"),
        ("DELETE", "/jobs", 405, "method_not_allowed"),
        ("GET", "/jobs/_failing/unauthorized", 401, "unauthorized"),
        ("GET", "/jobs/_failing/throttled", 429, "too_many_requests"),
        ("GET", "/jobs/_failing/crash", 500, "internal_error"),
        ("GET", "/jobs/_failing/teapot", 418, "i_m_a_teapot"),
    ],
)
def test_every_error_under_jobs_is_json_with_a_stable_code(failing_app, method, path, status, code):
    response = failing_app.test_client().open(path, method=method)

    assert response.status_code == status
    assert response.content_type == "application/json"
    body = response.get_json()
    assert body["error"] == code
    assert body["message"]


def test_a_401_keeps_its_www_authenticate_header(failing_app):
    response = failing_app.test_client().get("/jobs/_failing/unauthorized")

    assert response.headers["WWW-Authenticate"] == "Bearer realm=jobs"


def test_a_429_keeps_its_retry_after_header(failing_app):
    response = failing_app.test_client().get("/jobs/_failing/throttled")

    assert response.headers["Retry-After"] == "30"


def test_errors_outside_the_api_are_left_to_the_app(client):
    response = client.get("/no-such-page")

    assert response.status_code == 404
    assert response.content_type.startswith("text/html")


def test_a_json_number_with_a_zero_fraction_is_an_integer(queue_app, queue_client):
    # 30.0 is the integer 30 to JSON Schema, and so to the OpenAPI document.
    response = queue_client.post("/jobs/testGreet", data='{"nome": "João", "idade": 30.0}')

    assert response.status_code == 202
    assert pending(queue_app) == 1


def test_a_json_number_with_a_fraction_is_still_not_an_integer(queue_app, queue_client):
    response = queue_client.post("/jobs/testGreet", data='{"nome": "João", "idade": 30.5}')

    assert response.status_code == 422
    assert pending(queue_app) == 0
