"""The real thing: a web server and a huey_consumer, over real HTTP.

Each test runs on both backends: the embedded SQLite queue and Redis.
"""

import pytest

pytestmark = pytest.mark.slow

PESSOA = {"nome": "João", "idade": 30}


@pytest.fixture(params=["sqlite", "redis"])
def stack(request, start_stack):
    if request.param == "redis":
        return start_stack(redis_url=request.getfixturevalue("redis_url"))
    return start_stack()


def test_a_dispatched_job_runs_in_the_worker_and_its_result_is_visible(stack):
    code, body = stack.request("POST", "/jobs/testGreet", PESSOA)
    assert code == 202

    record = stack.wait_for_status(body["id"], {"complete", "failed"})

    assert record["status"] == "complete"
    assert record["result"]["greeting"] == "Olá, João!"
    assert record["worker"] != ""


def test_job_log_lines_carry_the_job_name_and_id(stack):
    _, body = stack.request("POST", "/jobs/testGreet", PESSOA)
    stack.wait_for_status(body["id"], {"complete"})

    assert f"[testGreet:{body['id']}] processing João" in stack.read_logs()


def test_many_jobs_all_complete(stack):
    ids = [
        stack.request("POST", "/jobs/testGreet", {"nome": f"P{i}", "idade": i})[1]["id"]
        for i in range(20)
    ]

    records = [stack.wait_for_status(job_id, {"complete", "failed"}) for job_id in ids]

    assert {record["status"] for record in records} == {"complete"}


def test_a_job_queued_while_no_worker_runs_waits_and_then_completes(start_stack):
    stack = start_stack(worker=False)
    _, body = stack.request("POST", "/jobs/testGreet", PESSOA)
    assert stack.request("GET", f"/jobs/{body['id']}")[1]["status"] == "queued"

    stack.start_worker()

    assert stack.wait_for_status(body["id"], {"complete"})["status"] == "complete"
