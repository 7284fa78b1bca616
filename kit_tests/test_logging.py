"""Log formats, request ids, and the request id travelling into the job's logs."""

import io
import json
import logging
import urllib.request

import pytest

from acme_jobs import create_app
from acme_jobs.kit.logs import (
    JobContextFilter,
    configure_logging,
    current_request_id,
    get_request_id,
    job_log_context,
)
from support import AUTHORIZATION, wait_for

PESSOA = {"nome": "João", "idade": 30}
JSON_KEYS = {"timestamp", "level", "logger", "message", "job_name", "job_id", "attempt"}
JSON_KEYS |= {"request_id"}


def test_a_json_line_outside_a_job_has_every_key(json_lines):
    logging.getLogger("some.module").warning("disk %s%% full", 93)

    (line,) = json_lines()

    assert set(line) == JSON_KEYS
    assert line["message"] == "disk 93% full"
    assert line["level"] == "WARNING"
    assert line["logger"] == "some.module"
    assert line["timestamp"].endswith("Z") and "T" in line["timestamp"]
    assert line["job_id"] is None and line["request_id"] is None


def test_a_json_line_inside_a_job_names_the_job_attempt_and_request(json_lines):
    with job_log_context("testGreet", "abc-123", attempt=2, request_id="req-9"):
        logging.getLogger("jobs").info("working on it")

    (line,) = json_lines()

    assert line["job_name"] == "testGreet"
    assert line["job_id"] == "abc-123"
    assert line["attempt"] == 2
    assert line["request_id"] == "req-9"


def test_exceptions_stay_on_one_json_line(json_lines):
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logging.getLogger("jobs").exception("it broke")

    (line,) = json_lines()

    assert "ValueError: bad\nthing" in line["exception"]


def test_an_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        configure_logging("INFO", "xml")


def test_the_text_format_tags_job_lines(caplog):
    handler = logging.StreamHandler(stream := io.StringIO())
    handler.addFilter(JobContextFilter())
    handler.setFormatter(logging.Formatter("[%(job)s] %(message)s"))
    logger = logging.getLogger("text.test")
    logger.addHandler(handler)
    try:
        with job_log_context("testGreet", "id-1"):
            logger.warning("inside")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)

    assert stream.getvalue().splitlines() == ["[testGreet:id-1] inside", "[-] outside"]


# -- request ids --------------------------------------------------------


def test_every_response_carries_a_generated_request_id(client):
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]

    assert len(first) == 32 and first != second


def test_a_sane_incoming_request_id_is_kept(client):
    response = client.get("/healthz", headers={"X-Request-ID": "Root=1-5759e988-bd862e3f"})

    assert response.headers["X-Request-ID"] == "Root=1-5759e988-bd862e3f"


@pytest.mark.parametrize("bad", ["a b", 'x"y', "x" * 129, "line\\nbreak", "ç"])
def test_a_malformed_incoming_request_id_is_replaced(client, bad):
    response = client.get("/healthz", headers={"X-Request-ID": bad})

    assert response.headers["X-Request-ID"] != bad
    assert len(response.headers["X-Request-ID"]) == 32


def test_the_request_id_does_not_leak_past_its_request(client):
    client.get("/healthz", headers={"X-Request-ID": "req-1"})

    assert get_request_id() is None
    assert current_request_id.get() is None


def test_log_lines_written_while_serving_a_request_carry_its_id(app, json_lines):
    with app.test_request_context(headers={"X-Request-ID": "req-9"}):
        logging.getLogger("web").info("serving")

    (line,) = [line for line in json_lines() if line["message"] == "serving"]
    assert line["request_id"] == "req-9"


def test_a_request_keeps_one_id_however_often_it_is_asked(app):
    with app.test_request_context():
        first = get_request_id()

        assert get_request_id() == first and len(first) == 32


def test_the_request_id_travels_with_the_job_into_its_logs(queue_app, json_lines):
    client = queue_app.test_client()
    response = client.post("/jobs/testGreet", json=PESSOA, headers={"X-Request-ID": "req-42"})
    job_id = response.get_json()["id"]
    huey = queue_app.extensions["jobkit"].huey

    # What a worker does, outside of any request: take the job and run it.
    task = huey.dequeue()
    huey.execute(task)

    job_lines = [line for line in json_lines() if line["job_id"] == job_id]
    assert job_lines, json_lines()
    processing = next(line for line in job_lines if line["message"].startswith("processing"))
    assert processing["request_id"] == "req-42"
    assert processing["job_name"] == "testGreet"
    assert processing["attempt"] == 1


def test_a_job_queued_by_a_job_keeps_the_original_request_id(queue_app):
    with queue_app.app_context(), job_log_context("parentJob", "p-1", request_id="req-7"):
        from acme_jobs.kit.queue import enqueue

        enqueue("testGreet", PESSOA)
    task = queue_app.extensions["jobkit"].huey.dequeue()

    assert task.kwargs["meta"]["request_id"] == "req-7"


def test_json_logging_is_chosen_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FLASK_LOG_FORMAT", "json")

    app = create_app({"TESTING": True, "SQLITE_PATH": str(tmp_path / "q.db")})

    assert app.config["LOG_FORMAT"] == "json"


# -- real processes -------------------------------------------------------


@pytest.mark.slow
def test_worker_logs_are_json_lines_with_the_request_id(start_stack, redis_url, monkeypatch):
    monkeypatch.setenv("FLASK_LOG_FORMAT", "json")
    stack = start_stack(redis_url=redis_url)
    request = urllib.request.Request(
        stack.base_url + "/jobs/testGreet",
        data=json.dumps(PESSOA).encode(),
        headers={
            "Content-Type": "application/json",
            "X-Request-ID": "trace-0001",
            "Authorization": AUTHORIZATION,
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        job_id = json.load(response)["id"]
        assert response.headers["X-Request-ID"] == "trace-0001"
    stack.wait_for_status(job_id, {"complete"})

    def worker_lines() -> list[dict]:
        text = (stack.logs / "worker.log").read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    # Every worker line is JSON, huey_consumer's own included.
    wait_for(
        lambda: any(line["job_id"] == job_id for line in worker_lines()),
        "the job's log line never appeared",
    )
    lines = worker_lines()
    assert any(line["logger"].startswith("huey") for line in lines)
    job_line = next(line for line in lines if line["message"].startswith("processing"))
    assert job_line["job_id"] == job_id
    assert job_line["request_id"] == "trace-0001"
    assert job_line["job_name"] == "testGreet"
    assert job_line["attempt"] == 1
