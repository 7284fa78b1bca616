"""Fields that trace a job end to end, and text lines nothing can forge.

Every worker line about a job (Huey's own included) carries the job's name,
id, attempt and the id of the request that queued it; the dispatch writes one
"queued" line with both ids; gunicorn's access lines carry the request's
fields. In the text format, control characters in a message are escaped.
"""

import io
import json
import logging
import re

import pytest

from acme_jobs import create_app
from acme_jobs.kit import registry
from acme_jobs.kit.logs import (
    AccessLogFields,
    JobContextFilter,
    JSONFormatter,
    TextFormatter,
    job_log_context,
)

PESSOA = {"nome": "Ana", "idade": 30}
# time LEVEL pid logger [job] message
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \d+ \S+ \[\S+\] ")


@pytest.fixture
def failing_app(tmp_path):
    """A real SQLite queue with no worker, and a job that always fails."""

    @registry.job("testAlwaysBreaks", schema=registry.NoPayload)
    def always_breaks(data: dict) -> None:
        raise RuntimeError("the disk is full")

    yield create_app(
        {"TESTING": True, "REDIS_URL": None, "SQLITE_PATH": str(tmp_path / "queue.sqlite3")}
    )
    del registry._registry["testAlwaysBreaks"]


def run_next(app) -> None:
    """What a worker does, outside of any request: take the next job and run it."""
    huey = app.extensions["jobkit"].huey
    huey.execute(huey.dequeue())


def dispatch(app, name: str, payload: dict, request_id: str) -> str:
    response = app.test_client().post(
        f"/jobs/{name}", json=payload, headers={"X-Request-ID": request_id}
    )
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def test_huey_lines_about_a_job_carry_the_job_fields(queue_app, json_lines):
    job_id = dispatch(queue_app, "testGreet", PESSOA, "req-77")

    run_next(queue_app)

    huey_lines = [line for line in json_lines() if line["logger"].startswith("huey")]
    executing = next(line for line in huey_lines if line["message"].startswith("Executing"))
    executed = next(line for line in huey_lines if " executed in " in line["message"])
    for line in (executing, executed):
        assert line["job_name"] == "testGreet"
        assert line["job_id"] == job_id
        assert line["attempt"] == 1
        assert line["request_id"] == "req-77"


def test_the_failure_line_and_its_traceback_carry_the_job_fields(failing_app, json_lines):
    job_id = dispatch(failing_app, "testAlwaysBreaks", {}, "req-failing")

    run_next(failing_app)

    failure = next(
        line for line in json_lines() if line["message"].startswith("Unhandled exception in task")
    )
    assert failure["job_name"] == "testAlwaysBreaks"
    assert failure["job_id"] == job_id
    assert failure["attempt"] == 1
    assert failure["request_id"] == "req-failing"
    assert "RuntimeError: the disk is full" in failure["exception"]


def test_a_retried_job_logs_its_next_attempt(queue_app, json_lines):
    job_id = dispatch(queue_app, "testGreet", PESSOA, "req-retry")
    huey = queue_app.extensions["jobkit"].huey
    task = huey.dequeue()
    task.retries -= 1  # as Huey leaves it after a first failed attempt

    huey.execute(task)

    executing = next(line for line in json_lines() if line["message"].startswith("Executing"))
    assert (executing["job_id"], executing["attempt"]) == (job_id, 2)


def test_a_dispatch_writes_one_queued_line_with_both_ids(queue_app, json_lines):
    job_id = dispatch(queue_app, "testGreet", PESSOA, "req-queued")

    queued = [line for line in json_lines() if line["message"] == "queued"]

    assert len(queued) == 1
    assert queued[0]["job_id"] == job_id
    assert queued[0]["job_name"] == "testGreet"
    assert queued[0]["request_id"] == "req-queued"
    assert queued[0]["logger"].endswith("kit.queue")


# -- gunicorn's access lines ------------------------------------------------------


def access_record(atoms: dict) -> logging.LogRecord:
    """An access line as gunicorn logs it: the atoms are the record's arguments."""
    return logging.LogRecord(
        "gunicorn.access", logging.INFO, __file__, 1, '"%(r)s" %(s)s', (atoms,), None
    )


def as_json(record: logging.LogRecord) -> dict:
    for check in (AccessLogFields(), JobContextFilter()):
        check.filter(record)
    return json.loads(JSONFormatter().format(record))


def test_an_access_line_has_the_request_fields():
    atoms = {"r": "POST /jobs/testGreet HTTP/1.1", "s": "202", "m": "POST"}
    atoms |= {"U": "/jobs/testGreet", "D": "1534", "{x-request-id}o": "trace-9"}

    line = as_json(access_record(atoms))

    assert line["request_id"] == "trace-9"
    assert line["method"] == "POST"
    assert line["path"] == "/jobs/testGreet"
    assert line["status"] == 202
    assert line["duration_ms"] == 1.534
    assert line["message"] == '"POST /jobs/testGreet HTTP/1.1" 202'


def test_an_access_line_without_a_sane_request_id_has_none():
    atoms = {"r": "GET / HTTP/1.1", "s": "200", "m": "GET", "U": "/", "D": "10"}

    line = as_json(access_record(atoms | {"{x-request-id}o": "-"}))

    assert line["request_id"] is None


# -- text lines --------------------------------------------------------------


@pytest.fixture
def text_lines():
    """Capture a logger's records as the text format writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(JobContextFilter())
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("forgery.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, lambda: stream.getvalue().splitlines()
    logger.removeHandler(handler)


FORGED = "Ana\n2026-01-01 00:00:00,000 ERROR 1 acme_jobs [-] admin password changed"


def test_a_line_break_in_a_payload_cannot_forge_a_text_line(text_lines):
    logger, lines = text_lines

    with job_log_context("testGreet", "id-1"):
        logger.info("processing %s", FORGED)

    (line,) = lines()
    assert TEXT_LINE.match(line)
    assert line.endswith(
        "processing Ana\\n2026-01-01 00:00:00,000 ERROR 1 acme_jobs [-] admin password changed"
    )


@pytest.mark.parametrize(
    ("raw", "written"),
    [
        ("a\rb", "a\\rb"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),  # an ANSI colour
        ("\x9b31m", "\\x9b31m"),  # the one-byte ANSI escape (CSI)
        ("nul\x00", "nul\\x00"),
        ("tab\tbell\x07", "tab\\tbell\\x07"),
        ("sep\u2028arator", "sep\\u2028arator"),
    ],
)
def test_control_characters_are_escaped_in_text_lines(text_lines, raw, written):
    logger, lines = text_lines

    logger.warning("value: %s", raw)

    (line,) = lines()
    assert line.endswith(f"value: {written}")


def test_a_traceback_keeps_its_lines_indented_and_escaped(text_lines):
    logger, lines = text_lines

    try:
        raise ValueError(FORGED)
    except ValueError:
        logger.exception("it broke")

    first, *rest = lines()
    assert TEXT_LINE.match(first) and first.endswith("it broke")
    assert rest and all(line.startswith("    ") for line in rest)
    assert not any(TEXT_LINE.match(line) for line in rest)
    assert any("ValueError: Ana" in line for line in rest)
