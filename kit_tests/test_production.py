"""The production processes, run directly: gunicorn with gunicorn.conf.py and
two workers (``python -m <package>.worker``, the kit's defaults) sharing one
Redis queue. These are docker-compose.yml's commands, with ``--scale
worker=2``, minus the containers."""

import json
import os
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import KIT_PYTHONPATH, PACKAGE, Stack, _answers
from support import AUTHORIZATION, free_port, unique_queue_name, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.redis]

TOKEN = "scrape-me"
JOBS = 40


@pytest.fixture
def launch(tmp_path, redis_url):
    """Start gunicorn and ``workers`` workers, with extra environment."""
    stacks = []

    def start(workers: int = 2, **extra: str) -> Stack:
        port = free_port()
        env = dict(
            os.environ,
            PYTHONPATH=KIT_PYTHONPATH,
            REDIS_URL=redis_url,
            PORT=str(port),
            WEB_CONCURRENCY="2",
            FLASK_QUEUE_NAME=unique_queue_name(),
            FLASK_METRICS_TOKEN=TOKEN,
            FLASK_METRICS_FLUSH_INTERVAL="0.2",
        )
        env.update(extra)
        logs = tmp_path / f"logs-{port}"
        logs.mkdir()
        stack = Stack(f"http://127.0.0.1:{port}", env, logs)
        stacks.append(stack)
        app = f"{PACKAGE}:create_app()"
        stack.start("web", [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", app])
        for index in range(workers):
            stack.start(f"worker-{'ab'[index]}", [sys.executable, "-m", f"{PACKAGE}.worker"])
        wait_for(lambda: _answers(stack.base_url + "/healthz"), "gunicorn did not start", 30)
        return stack

    yield start
    for stack in stacks:
        for name in list(stack.processes):
            stack.stop(name)


@pytest.fixture
def production(launch):
    return launch()


def scrape(stack: Stack) -> dict[tuple[str, str], float]:
    """The samples as {(name, job name or else queue): value}."""
    request = urllib.request.Request(
        stack.base_url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    # Names without METRICS_NAMESPACE (the slug); a job's series by job name.
    return {
        (
            sample.name.removeprefix("acme_jobs_"),
            sample.labels.get("job_name", sample.labels.get("queue", "")),
        ): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "le" not in sample.labels
    }


def test_gunicorn_and_two_workers_on_redis_run_every_dispatched_job(production):
    stack = production
    assert stack.request("GET", "/readyz") == (200, {"status": "ready", "queue": "redis"})

    def dispatch(i: int) -> tuple[int, dict]:
        return stack.request("POST", "/jobs/testGreet", {"nome": f"P{i}", "idade": i})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(dispatch, range(JOBS)))
    assert {code for code, _ in answers} == {202}

    records = [stack.wait_for_status(body["id"], {"complete", "failed"}) for _, body in answers]

    assert {record["status"] for record in records} == {"complete"}
    # Both consumers took jobs: each worker process reports as host:pid.
    workers = {record["worker"] for record in records}
    assert len(workers) >= 2, workers
    # Every process writes its counts within METRICS_FLUSH_INTERVAL.
    counted = (("jobs_enqueued_total", "testGreet"), ("jobs_completed_total", "testGreet"))
    wait_for(
        lambda: [scrape(stack).get(key) for key in counted] == [JOBS, JOBS],
        "the web and worker processes' counts never added up",
    )
    samples = scrape(stack)
    # Two consumers with the default WORKERS = 2 each.
    assert samples["jobs_workers_alive", ""] == 4
    assert samples["jobs_queue_depth", "default"] == 0


def test_gunicorn_runs_the_configured_workers_and_writes_access_logs(production):
    stack = production
    stack.request("POST", "/jobs/testGreet", {"nome": "Ana", "idade": 3})

    def access_logged() -> bool:
        return '"POST /jobs/testGreet HTTP/1.1" 202' in stack.read_logs()

    wait_for(access_logged, "no access log line for the dispatch")
    # The first worker may serve before the second has booted.
    wait_for(
        lambda: stack.read_logs().count("Booting worker with pid") >= 2,
        "gunicorn did not boot two workers",
    )
    logs = stack.read_logs()
    assert logs.count("Booting worker with pid") == 2  # WEB_CONCURRENCY=2
    assert "Listening at: http://0.0.0.0:" in logs


def test_sigterm_stops_gunicorn_and_the_workers_cleanly(production):
    stack = production
    processes = dict(stack.processes)

    for name in list(processes):
        stack.stop(name)

    assert {name: process.returncode for name, process in processes.items()} == {
        "web": 0,
        "worker-a": 0,
        "worker-b": 0,
    }, json.dumps(stack.read_logs())


def test_json_logs_follow_one_job_from_its_request_to_its_end(launch):
    stack = launch(workers=1, FLASK_LOG_FORMAT="json")
    request = urllib.request.Request(
        stack.base_url + "/jobs/testGreet",
        data=json.dumps({"nome": "Ana", "idade": 3}).encode(),
        headers={
            "Content-Type": "application/json",
            "X-Request-ID": "trace-42",
            "Authorization": AUTHORIZATION,
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
        job_id = json.load(response)["id"]
    stack.wait_for_status(job_id, {"complete"})

    def lines(name: str) -> list[dict]:
        text = (stack.logs / f"{name}.log").read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def traced() -> list[dict]:
        every = lines("web") + lines("worker-a")
        return sorted(
            (line for line in every if line["request_id"] == "trace-42"),
            key=lambda line: line["timestamp"],
        )

    def finished() -> bool:
        return any(" executed in " in line["message"] for line in traced())

    wait_for(finished, "the job's last line never appeared")
    wait_for(
        lambda: any(line["logger"] == "gunicorn.access" for line in traced()), "no access line"
    )
    trace = traced()
    print("\n".join(json.dumps(line, ensure_ascii=False) for line in trace))  # the report's sample

    access = next(line for line in trace if line["logger"] == "gunicorn.access")
    assert (access["method"], access["path"], access["status"]) == ("POST", "/jobs/testGreet", 202)
    assert access["duration_ms"] > 0
    assert '"POST /jobs/testGreet HTTP/1.1" 202' in access["message"]
    (queued,) = [line for line in trace if line["message"] == "queued"]
    assert queued["job_id"] == job_id
    # Every worker line about the job, Huey's own included, names it.
    worker_lines = [line for line in lines("worker-a") if line["request_id"] == "trace-42"]
    messages = [line["message"] for line in worker_lines]
    assert any(message.startswith("Executing") for message in messages), messages
    assert any(message.startswith("processing Ana") for message in messages), messages
    for line in worker_lines:
        assert (line["job_name"], line["job_id"], line["attempt"]) == ("testGreet", job_id, 1)
    # gunicorn's own lines are JSON too, and the first line of the app names its queue.
    assert any(line["logger"] == "gunicorn.error" for line in lines("web"))
    assert any(line.get("queue_name") == stack.env["FLASK_QUEUE_NAME"] for line in lines("web"))
