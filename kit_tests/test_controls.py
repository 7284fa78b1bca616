"""Job controls in one process: progress, logs, cancel, pause, periodic runs, audit.

Each test runs on SQLite and on Redis with a real queue and plays the
worker's part itself (``run_next`` dequeues and executes as huey_consumer
does, through the kit's own dequeue), so every signal and write is real.
``tests/test_controls_live.py`` does the same with real worker processes.
"""

import json
import logging
import threading
import time

import pytest

from acme_jobs import create_app
from acme_jobs.kit import queue, registry
from acme_jobs.kit.controls.model import (
    Flush,
    LogLimits,
    present_progress,
    trim_logs,
)
from acme_jobs.kit.controls.recorder import Recorder
from acme_jobs.kit.progress import JobCancelled, check_cancelled, report
from support import pending, unique_queue_name, wait_for

SETTINGS = {
    "TESTING": True,
    "JOB_PROGRESS_INTERVAL": 0.05,
    "PAUSE_CHECK_INTERVAL": 0.05,
    "JOB_LOGS_MAX_LINES": 20,
    "AUDIT_MAX_ENTRIES": 5,
}
PEOPLE = [{"nome": "Ana", "idade": 31}, {"nome": "Rui", "idade": 12}, {"nome": "Eva", "idade": 40}]


@pytest.fixture(autouse=True)
def info_logs(caplog):
    """Jobs' INFO lines reach the handlers, as with the kit's LOG_LEVEL."""
    caplog.set_level(logging.INFO)


@pytest.fixture(params=["sqlite", "redis"])
def capp(request, tmp_path):
    """The app on each backend with a real queue, quick controls and no worker."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        app = create_app({**SETTINGS, "REDIS_URL": url, "QUEUE_NAME": unique_queue_name()})
    else:
        path = str(tmp_path / "q.sqlite3")
        app = create_app({**SETTINGS, "REDIS_URL": None, "SQLITE_PATH": path})
    yield app
    app.extensions["jobkit"].controls.store.clear()
    app.extensions["jobkit"].history.store.clear()
    app.extensions["jobkit"].huey.flush()


def controls(app):
    return app.extensions["jobkit"].controls


def history(app):
    return app.extensions["jobkit"].history


def dispatch(app, name: str, payload: dict) -> str:
    response = app.test_client().post(f"/jobs/{name}", json=payload)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def run_next(app) -> str | None:
    """Take the next job as a worker would (pauses apply) and run it."""
    huey = app.extensions["jobkit"].huey
    task = huey.dequeue()
    if task is None:
        return None
    huey.execute(task)
    return task.id


def run_in_thread(app) -> threading.Thread:
    thread = threading.Thread(target=run_next, args=(app,), daemon=True)
    thread.start()
    return thread


def register_test_job(app, name: str, func, **options) -> None:
    """A job known to this app's Huey only, not to the kit's global registry."""
    job = registry.Job(name, registry.NoPayload, func, **options)
    app.extensions["jobkit"].tasks[name] = queue._register(app.extensions["jobkit"].huey, app, job)


def enqueue_test_job(app, name: str) -> str:
    task = app.extensions["jobkit"].tasks[name].s({})
    assert history(app).enqueue(task, {})
    return task.id


def events(app, job_id: str) -> list[dict]:
    return history(app).detail(job_id)["events"]


# -- progress and logs ------------------------------------------------------------


def test_a_runs_progress_and_logs_are_kept_with_its_record(capp):
    job_id = dispatch(capp, "testImport", {"pessoas": PEOPLE, "atraso": 0})

    assert run_next(capp) == job_id

    body = capp.test_client().get(f"/jobs/{job_id}").get_json()
    assert body["status"] == "complete"
    progress = body["progress"]
    assert (progress["done"], progress["total"], progress["percent"]) == (3, 3, 100.0)
    assert progress["message"] == "imported Eva"
    logs = controls(capp).logs(job_id)
    assert [line["message"] for line in logs["lines"]] == [
        "importing 3 people",
        "imported Ana, 31 years old",
        "imported Rui, 12 years old",
        "imported Eva, 40 years old",
        "import done: 3 people, 2 adults",
    ]
    assert {(line["level"], line["attempt"]) for line in logs["lines"]} == {("INFO", 1)}
    assert logs["cut"] == 0


def test_progress_and_logs_are_visible_while_the_job_runs(capp):
    people = [{"nome": f"P{i}", "idade": i} for i in range(30)]
    job_id = dispatch(capp, "testImport", {"pessoas": people, "atraso": 0.05})
    worker = run_in_thread(capp)

    def midway() -> bool:
        progress = controls(capp).progress(job_id)
        return progress is not None and 3 <= progress["done"] < 30

    wait_for(midway, "no progress was written while the job ran", timeout=5)
    progress = controls(capp).progress(job_id)
    assert progress["rate"] > 5
    assert 0 < progress["eta"] < 10
    assert len(controls(capp).logs(job_id)["lines"]) >= 3
    worker.join(10)
    assert controls(capp).progress(job_id)["done"] == 30


def test_a_failing_jobs_logs_stay_next_to_its_error(capp):
    def fails() -> None:
        logging.getLogger("tests.fails").warning("about to divide by zero")
        return 1 / 0

    register_test_job(capp, "testFails", lambda _payload: fails())
    job_id = enqueue_test_job(capp, "testFails")

    run_next(capp)

    record = history(capp).detail(job_id)
    assert record["status"] == "failed"
    assert "ZeroDivisionError" in record["attempts"][-1]["error"]["traceback"]
    (line,) = controls(capp).logs(job_id)["lines"]
    assert (line["level"], line["message"]) == ("WARNING", "about to divide by zero")


def test_logs_keep_the_newest_lines_within_the_limits(capp):
    people = [{"nome": f"P{i}", "idade": i} for i in range(50)]
    job_id = dispatch(capp, "testImport", {"pessoas": people, "atraso": 0})

    run_next(capp)

    logs = controls(capp).logs(job_id)
    assert len(logs["lines"]) == 20  # JOB_LOGS_MAX_LINES
    assert logs["cut"] == 52 - 20
    assert logs["lines"][-1]["message"] == "import done: 50 people, 32 adults"
    assert logs["lines"][0]["message"] == "imported P31, 31 years old"


def test_a_deleted_record_takes_its_progress_and_logs_with_it(capp):
    job_id = dispatch(capp, "testImport", {"pessoas": PEOPLE, "atraso": 0})
    run_next(capp)

    assert history(capp).delete(job_id)

    assert controls(capp).logs(job_id) == {"lines": [], "cut": 0}
    assert controls(capp).progress(job_id) is None


def test_progress_and_logs_in_immediate_mode(client):
    response = client.post("/jobs/testImport", json={"pessoas": PEOPLE, "atraso": 0})

    body = client.get(f"/jobs/{response.get_json()['id']}").get_json()
    assert body["status"] == "complete"
    assert body["progress"]["percent"] == 100.0


def test_report_and_check_do_nothing_outside_a_job():
    report(1, 2, message="not in a job")
    check_cancelled()


@pytest.mark.parametrize(("done", "total"), [(-1, 10), ("3", 10), (1, -5), (1, "ten")])
def test_report_refuses_nonsense(client, done, total):
    def bad(_payload: dict) -> None:
        report(done, total)

    register_test_job(client.application, "testBadReport", bad)
    job_id = enqueue_test_job(client.application, "testBadReport")

    record = history(client.application).get(job_id)
    assert record["status"] == "failed"
    assert record["error"]["type"] == "ValueError"


def test_progress_is_presented_with_percent_and_time_left():
    shown = present_progress({"done": 25, "total": 100, "at": 1000.0, "rate": 5.0}, at=1002.0)

    assert shown["percent"] == 25.0
    assert shown["eta"] == pytest.approx(75 / 5 - 2)
    assert present_progress({"done": 3, "total": None, "at": 1000.0, "rate": 1.0})["eta"] is None
    assert present_progress(None) is None


@pytest.mark.parametrize(
    ("lines", "limits", "kept", "cut"),
    [
        (["a", "b", "c"], LogLimits(lines=2, bytes=1024), ["b", "c"], 1),
        (["x" * 600, "y" * 600, "z"], LogLimits(lines=10, bytes=1024), ["y" * 600, "z"], 1),
        (["ü" * 400, "é" * 400], LogLimits(lines=10, bytes=1024), ["é" * 400], 1),
        (["a", "b"], LogLimits(lines=5, bytes=1024), ["a", "b"], 0),
    ],
)
def test_trimming_logs_drops_the_oldest_whole_lines(lines, limits, kept, cut):
    text, count, dropped = trim_logs("".join(f"{line}\n" for line in lines), len(lines), limits)

    assert text.splitlines() == kept
    assert (count, dropped) == (len(kept), cut)


class FlakyStore:
    """A control store that fails its first writes, then works."""

    def __init__(self, failures: int):
        self.failures = failures
        self.written: list[Flush] = []

    def flush(self, items):
        if self.failures:
            self.failures -= 1
            raise OSError("store unreachable")
        self.written.extend(items)
        return {item.job_id: None for item in items}


def test_a_failed_write_is_retried_with_nothing_lost():
    store = FlakyStore(failures=2)
    # A long interval: the background thread stays asleep; the test flushes.
    recorder = Recorder(store, 60, LogLimits(lines=10), (OSError,))
    run = recorder.begin("job-1", "testJob", 1)
    recorder.add_line(run, {"message": "one"})
    recorder.report(run, 1, 4, None)

    for _ in range(3):
        recorder.flush()

    (item,) = [item for item in store.written if item.lines or item.progress]
    assert [json.loads(line)["message"] for line in item.lines] == ["one"]
    assert item.progress["done"] == 1


# -- cancel -------------------------------------------------------------------------


def test_cancelling_a_running_job_stops_it_and_records_who(capp):
    people = [{"nome": f"P{i}", "idade": i} for i in range(60)]
    job_id = dispatch(capp, "testImport", {"pessoas": people, "atraso": 0.05})
    worker = run_in_thread(capp)
    wait_for(lambda: (controls(capp).progress(job_id) or {}).get("done", 0) >= 2, "no progress")

    assert controls(capp).cancel(job_id, "alice", ip="10.0.0.7") == "requested"

    worker.join(5)
    assert not worker.is_alive()
    record = history(capp).detail(job_id)
    assert record["status"] == "cancelled"
    assert record["error"]["message"] == "cancelled by alice"
    assert record["attempts"][-1]["outcome"] == "cancelled"
    kinds = [(e["kind"], e.get("by")) for e in record["events"]]
    assert ("cancel_requested", "alice") in kinds
    assert kinds[-1] == ("cancelled", "alice")
    assert controls(capp).progress(job_id)["done"] < 60
    # testImport has a retry left, but a cancelled job is not retried.
    assert pending(capp) == 0
    assert controls(capp).cancel_request(job_id) is None
    (entry,), _, _ = controls(capp).audit_page()
    assert entry["action"] == "cancel"
    assert (entry["user"], entry["target"], entry["ip"]) == ("alice", job_id, "10.0.0.7")
    assert entry["outcome"] == "requested"


def test_cancelling_a_queued_job_revokes_it(capp):
    job_id = dispatch(capp, "testGreet", {"nome": "Ana", "idade": 31})

    assert controls(capp).cancel(job_id, "alice") == "revoked"
    run_next(capp)

    assert history(capp).get(job_id)["status"] == "revoked"
    assert controls(capp).cancel_request(job_id) is None
    assert "cancel_requested" in [e["kind"] for e in events(capp, job_id)]


def test_cancel_is_a_no_op_for_finished_or_unknown_jobs(capp):
    job_id = dispatch(capp, "testGreet", {"nome": "Ana", "idade": 31})
    run_next(capp)

    assert controls(capp).cancel(job_id, "alice") == "finished"
    assert controls(capp).cancel("no-such-job", "alice") == "unknown"
    assert controls(capp).audit_page()[2] == 0


def test_a_job_that_checks_sees_the_cancel_and_stops(capp):
    seen = []

    def waits(_payload: dict) -> str:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                check_cancelled()
            except JobCancelled as exc:
                seen.append(exc.request["user"])
                raise
            time.sleep(0.01)
        return "never cancelled"

    register_test_job(capp, "testWaits", waits, retries=2)
    job_id = enqueue_test_job(capp, "testWaits")
    worker = run_in_thread(capp)
    wait_for(lambda: history(capp).get(job_id)["status"] == "running", "not running", 5)

    controls(capp).cancel(job_id, "bob")
    worker.join(5)

    assert seen == ["bob"]
    assert history(capp).get(job_id)["status"] == "cancelled"
    assert pending(capp) == 0


# -- pause and resume -----------------------------------------------------------------


def test_a_paused_queue_keeps_its_jobs_until_resumed(capp):
    assert controls(capp).pause(None, "carol", "deploying", ip="10.0.0.8")
    job_id = dispatch(capp, "testGreet", {"nome": "Ana", "idade": 31})

    assert run_next(capp) is None
    assert pending(capp) == 1
    assert controls(capp).pauses()["queue"]["reason"] == "deploying"

    assert controls(capp).resume(None, "carol") == (True, 0)
    assert run_next(capp) == job_id
    assert history(capp).get(job_id)["status"] == "complete"
    actions = [(e["action"], e["target"]) for e in controls(capp).audit_page()[0]]
    assert actions == [("resume", "queue"), ("pause", "queue")]


def test_a_paused_job_name_is_held_while_other_jobs_run(capp):
    assert controls(capp).pause("testGreet", "carol", "bad data upstream")
    held_id = dispatch(capp, "testGreet", {"nome": "Ana", "idade": 31})
    other_id = dispatch(capp, "testImport", {"pessoas": PEOPLE, "atraso": 0})

    assert run_next(capp) is None  # testGreet: set aside
    assert run_next(capp) == other_id
    assert run_next(capp) is None
    assert pending(capp) == 0
    assert controls(capp).pauses()["held"] == {"testGreet": 1}
    assert history(capp).get(held_id)["status"] == "queued"
    held = [e for e in events(capp, held_id) if e["kind"] == "held"]
    assert "bad data upstream" in held[0]["message"]

    assert controls(capp).resume("testGreet", "carol") == (True, 1)
    assert run_next(capp) == held_id
    assert history(capp).get(held_id)["status"] == "complete"
    assert controls(capp).pauses() == {"queue": None, "queues": {}, "jobs": {}, "held": {}}


def test_a_job_set_aside_just_after_its_name_resumed_goes_back_to_the_queue(capp):
    huey = capp.extensions["jobkit"].huey
    task = capp.extensions["jobkit"].tasks["testGreet"].s({"nome": "Ana", "idade": 31})

    held = controls(capp).store.hold("job:testGreet", "testGreet", huey.serialize_task(task), 0)

    assert held is False
    assert pending(capp) == 1


def test_a_job_taken_as_the_queue_was_paused_is_put_back(capp):
    first = dispatch(capp, "testGreet", {"nome": "Ana", "idade": 31})
    second = dispatch(capp, "testGreet", {"nome": "Rui", "idade": 12})
    task = capp.extensions["jobkit"].huey.dequeue()

    assert controls(capp).put_back(task)

    assert {t.id for t in capp.extensions["jobkit"].huey.pending()} == {first, second}
    assert {run_next(capp), run_next(capp)} == {first, second}


def test_pausing_twice_or_an_unknown_job_is_refused(capp):
    assert controls(capp).pause("testGreet", "carol", "first")
    assert not controls(capp).pause("testGreet", "dave", "second")
    assert controls(capp).pauses()["jobs"]["testGreet"]["user"] == "carol"
    with pytest.raises(LookupError):
        controls(capp).pause("noSuchJob", "carol", "")
    assert controls(capp).resume("testImport", "carol") == (False, 0)


# -- periodic jobs ------------------------------------------------------------------------


def test_periodic_jobs_are_listed_with_their_schedule_and_next_run(capp):
    (found,) = controls(capp).periodic_jobs(at=1_800_000_100.0)

    assert found["name"] == "testPeriodic"
    assert found["schedule"] == "every 5 minutes"
    assert found["expression"] == "*/5 * * * *"
    assert found["next_run"] == 1_800_000_300.0
    assert found["last_run"] is None


def test_run_now_queues_a_periodic_job_and_records_the_run(capp):
    with capp.app_context():
        job_id = controls(capp).run_now("testPeriodic", "erin")

    assert run_next(capp) == job_id
    record = history(capp).get(job_id)
    assert record["status"] == "complete"
    assert set(record["result"]) == {"queued", "running", "failed"}
    (found,) = controls(capp).periodic_jobs()
    assert found["last_run"]["id"] == job_id
    assert (found["last_run"]["by"], found["last_run"]["status"]) == ("erin", "complete")
    assert controls(capp).audit_page()[0][0]["action"] == "run_now"
    lines = controls(capp).logs(job_id)["lines"]
    assert lines[0]["message"].startswith("queue report:")


def test_runs_queued_by_the_scheduler_are_recorded(capp):
    import datetime

    huey = capp.extensions["jobkit"].huey
    due = datetime.datetime(2027, 1, 1, 10, 5)
    (task,) = huey.read_periodic(due)

    huey.enqueue(task)  # what the consumer's scheduler does
    run_next(capp)

    (found,) = controls(capp).periodic_jobs()
    assert found["last_run"]["id"] == task.id
    assert found["last_run"]["status"] == "complete"
    assert "by" not in found["last_run"]


def test_several_schedulers_queue_each_periodic_run_once(capp, tmp_path):
    import datetime

    # A second worker's app on the same queue: another scheduler.
    config = {"TESTING": True, "QUEUE_NAME": capp.config["QUEUE_NAME"]}
    config["REDIS_URL"] = capp.config.get("REDIS_URL")
    config["SQLITE_PATH"] = capp.config.get("SQLITE_PATH")
    other = create_app(config)
    due = datetime.datetime(2027, 1, 1, 10, 5)

    first = capp.extensions["jobkit"].huey.read_periodic(due)
    second = other.extensions["jobkit"].huey.read_periodic(due)
    later = other.extensions["jobkit"].huey.read_periodic(due + datetime.timedelta(minutes=5))

    assert [task.name for task in first] == ["testPeriodic"]
    assert second == []
    assert [task.name for task in later] == ["testPeriodic"]


def test_run_now_refuses_jobs_that_are_not_periodic(capp):
    from acme_jobs.kit.controls import NotPeriodic

    with capp.app_context(), pytest.raises(NotPeriodic):
        controls(capp).run_now("testGreet", "erin")


# -- audit log --------------------------------------------------------------------------


def test_the_audit_log_pages_newest_first_and_keeps_the_newest(capp):
    for n in range(8):
        controls(capp).audit("retry", f"job-{n}", "frank")

    first, cursor, total = controls(capp).audit_page(limit=3)
    second, last_cursor, _ = controls(capp).audit_page(cursor, limit=3)

    assert total == 5  # AUDIT_MAX_ENTRIES
    assert [e["target"] for e in first] == ["job-7", "job-6", "job-5"]
    assert [e["target"] for e in second] == ["job-4", "job-3"]
    assert last_cursor is None
