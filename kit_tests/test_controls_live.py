"""Job controls with real workers: a web server and huey_consumer processes.

Progress and logs seen while a job runs, cancel of running and queued jobs,
pause and resume of the queue and of one job name across two workers, and
periodic runs started by hand; each on SQLite and on Redis.
"""

import base64
import json
import time
import urllib.request

import pytest

from acme_jobs import create_app
from conftest import KIT_PYTHONPATH
from support import SECRET_KEY, wait_for

pytestmark = pytest.mark.slow


USERNAME, PASSWORD = "operator", "correct horse battery staple"
QUICK = {
    "FLASK_JOB_PROGRESS_INTERVAL": "0.2",
    "FLASK_PAUSE_CHECK_INTERVAL": "0.2",
    "FLASK_JOB_MODULES": json.dumps(["control_jobs"]),
    "PYTHONPATH": KIT_PYTHONPATH,
    "FLASK_SECRET_KEY": SECRET_KEY,
    "FLASK_MONITOR_USERNAME": USERNAME,
    "FLASK_MONITOR_PASSWORD": PASSWORD,
}
PEOPLE = [{"nome": f"P{i}", "idade": 20 + i} for i in range(100)]


@pytest.fixture(params=["sqlite", "redis"])
def live(request, start_stack):
    """Start a web server (and, with ``worker=True``, a worker) on each backend."""

    def start(worker: bool = True):
        redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
        stack = start_stack(redis_url=redis_url, worker=worker, env=QUICK)
        stack.app = operator_app(stack)
        return stack

    return start


def operator_app(stack):
    """An app on the stack's queue, for an operator's actions from a shell."""
    env = stack.env
    config = {"TESTING": True, "QUEUE_NAME": env["FLASK_QUEUE_NAME"], "JOB_MODULES": []}
    config["REDIS_URL"] = env.get("REDIS_URL")
    if "FLASK_SQLITE_PATH" in env:
        config["SQLITE_PATH"] = json.loads(env["FLASK_SQLITE_PATH"])
    return create_app(config)


def controls(stack):
    return stack.app.extensions["jobkit"].controls


def dispatch(stack, name: str, payload: dict) -> str:
    code, body = stack.request("POST", f"/jobs/{name}", payload)
    assert code == 202, body
    return body["id"]


def monitor_api(stack, path: str) -> dict:
    """GET /monitor/api/<path> with HTTP Basic, as a script would."""
    request = urllib.request.Request(f"{stack.base_url}/monitor/api/{path}")
    token = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def progress_of(stack, job_id: str) -> dict:
    return stack.request("GET", f"/jobs/{job_id}")[1].get("progress") or {}


def running_with_progress(stack, job_id: str, done: int) -> bool:
    record = stack.request("GET", f"/jobs/{job_id}")[1]
    return record["status"] == "running" and (record.get("progress") or {}).get("done", 0) >= done


def test_progress_and_logs_show_while_the_job_runs(live):
    stack = live()
    job_id = dispatch(stack, "testImport", {"pessoas": PEOPLE[:15], "atraso": 0.2})

    wait_for(lambda: 3 <= progress_of(stack, job_id).get("done", 0) < 15, "progress midway")
    midway = monitor_api(stack, f"job/{job_id}")
    assert midway["status"] == "running"
    assert midway["progress"]["total"] == 15 and midway["progress"]["eta"] > 0
    assert midway["elapsed"] > 0 and midway["timeout"] == 3600
    assert "importing 15 people" in [line["message"] for line in midway["logs"]["lines"]]
    (row,) = monitor_api(stack, "jobs/running")["jobs"]
    assert row["progress"]["done"] >= 3

    record = stack.wait_for_status(job_id, {"complete", "failed"})
    assert record["status"] == "complete"
    assert record["progress"]["done"] == 15 and record["progress"]["percent"] == 100
    logs = monitor_api(stack, f"job/{job_id}/logs")
    assert len(logs["lines"]) == 17
    assert logs["lines"][-1]["message"] == "import done: 15 people, 15 adults"


def test_a_failing_jobs_logs_are_kept_with_its_error(live):
    stack = live()
    job_id = dispatch(stack, "testLogsThenFails", {"steps": 2})

    record = stack.wait_for_status(job_id, {"failed"})

    assert record["error"]["message"] == "the disk is full"
    lines = monitor_api(stack, f"job/{job_id}/logs")["lines"]
    assert [line["message"] for line in lines] == ["step 1 of 2", "step 2 of 2", "about to fail"]


def test_a_running_job_stops_when_cancelled(live):
    stack = live()
    job_id = dispatch(stack, "testImport", {"pessoas": PEOPLE, "atraso": 0.2})
    # Recorded as running, not only reporting progress: the history shows a
    # run as running a moment after it starts (HISTORY_RUNNING_PUBLISH_DELAY).
    wait_for(lambda: running_with_progress(stack, job_id, 2), "the import to be running")

    assert controls(stack).cancel(job_id, "alice") == "requested"
    asked = time.monotonic()

    record = stack.wait_for_status(job_id, {"cancelled", "complete", "failed"}, timeout=10)
    assert record["status"] == "cancelled"
    assert time.monotonic() - asked < 5  # about 0.5 s when the machine is not busy
    assert record["progress"]["done"] < 100
    assert record["error"]["message"] == "cancelled by alice"
    events = monitor_api(stack, f"job/{job_id}")["events"]
    assert [e["kind"] for e in events][-2:] == ["cancel_requested", "cancelled"]
    # No retry was queued or scheduled: a cancel is final.
    huey = stack.app.extensions["jobkit"].huey
    assert (huey.pending_count(), huey.scheduled_count()) == (0, 0)
    assert monitor_api(stack, "audit")["entries"][0]["action"] == "cancel"


def test_a_job_that_only_checks_for_cancel_stops_too(live):
    stack = live()
    job_id = dispatch(stack, "testChecksCancel", {"seconds": 30})
    stack.wait_for_status(job_id, {"running"})

    controls(stack).cancel(job_id, "bob")

    record = stack.wait_for_status(job_id, {"cancelled", "complete"}, timeout=10)
    assert (record["status"], record["attempt"]) == ("cancelled", 1)


def test_a_queued_job_cancelled_before_any_worker_runs_is_dropped(live):
    stack = live(worker=False)
    job_id = dispatch(stack, "testGreet", {"nome": "Ana", "idade": 31})

    assert controls(stack).cancel(job_id, "alice") == "revoked"
    stack.start_worker()

    assert stack.wait_for_status(job_id, {"revoked", "complete"})["status"] == "revoked"


def test_a_paused_queue_keeps_its_jobs_across_workers_until_resumed(live):
    stack = live(worker=False)
    stack.start_worker("w1")
    stack.start_worker("w2")
    wait_for(lambda: len(stack.app.extensions["jobkit"].history.workers()) == 4, "4 processes")
    assert controls(stack).pause(None, "carol", "deploying")
    time.sleep(0.5)  # every worker process notices within PAUSE_CHECK_INTERVAL

    ids = [dispatch(stack, "testGreet", {"nome": f"P{i}", "idade": i}) for i in range(4)]
    time.sleep(1.5)
    assert {stack.request("GET", f"/jobs/{i}")[1]["status"] for i in ids} == {"queued"}

    controls(stack).resume(None, "carol")
    records = [stack.wait_for_status(i, {"complete", "failed"}) for i in ids]
    assert {r["status"] for r in records} == {"complete"}


def test_a_paused_job_name_waits_while_other_jobs_run(live):
    stack = live()
    assert controls(stack).pause("testGreet", "carol", "bad data upstream")
    time.sleep(0.5)

    held = dispatch(stack, "testGreet", {"nome": "Ana", "idade": 31})
    other = dispatch(stack, "testImport", {"pessoas": PEOPLE[:2], "atraso": 0})

    assert stack.wait_for_status(other, {"complete"})["status"] == "complete"
    wait_for(lambda: controls(stack).pauses()["held"] == {"testGreet": 1}, "the job held")
    assert stack.request("GET", f"/jobs/{held}")[1]["status"] == "queued"

    assert controls(stack).resume("testGreet", "carol") == (True, 1)
    assert stack.wait_for_status(held, {"complete"})["status"] == "complete"
    events = [e["kind"] for e in monitor_api(stack, f"job/{held}")["events"]]
    assert events[:3] == ["queued", "held", "started"]


def test_a_periodic_job_run_now_runs_in_the_worker(live):
    stack = live(worker=False)
    # No scheduler: its own run of testPeriodic (every 5 minutes) would race ours.
    stack.start_worker(flags=["--workers", "1", "--delay", "0.01", "--max-delay", "0.25", "-n"])
    with stack.app.app_context():
        job_id = controls(stack).run_now("testPeriodic", "erin")

    record = stack.wait_for_status(job_id, {"complete", "failed"})

    assert record["status"] == "complete"
    assert "queued" in record["result"]
    (periodic,) = monitor_api(stack, "periodic")["periodic"]
    assert periodic["last_run"]["id"] == job_id
    assert periodic["last_run"]["status"] == "complete"
