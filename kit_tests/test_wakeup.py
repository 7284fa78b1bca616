"""Wake-ups on SQLite: a job queued on this host starts a sleeping worker at once.

The workers here sleep 5 s after every empty take (``--delay 5 --max-delay
5``): without a wake-up, a job queued while they sleep waits for seconds.
A worker's socket file appears in ``<database>.wake/`` as it starts its
first sleep, which is the event the tests wait for.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acme_jobs import create_app
from acme_jobs.kit import enqueue, wakeup
from conftest import KIT_PYTHONPATH, PACKAGE, PROJECT_ROOT
from support import descendants, kill_tree, unique_queue_name, wait_for

SLEEPY = ["--delay", "5", "--max-delay", "5", "--workers", "2"]


def sqlite_app(path: Path, queue_name: str):
    config = {"TESTING": True, "REDIS_URL": None, "QUEUE_NAME": queue_name}
    return create_app({**config, "SQLITE_PATH": str(path)})


def dispatch(app, **options) -> str:
    with app.app_context():
        return enqueue("testGreet", {"nome": "Ana", "idade": 30}, **options)


def record(app, job_id: str) -> dict:
    return app.extensions["jobkit"].history.get(job_id) or {}


def sockets(path: Path) -> list[str]:
    directory = Path(str(path) + wakeup.SUFFIX)
    return sorted(os.listdir(directory)) if directory.is_dir() else []


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of these processes so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def sqlite_worker(tmp_path):
    """``start(*flags)`` runs ``python -m acme_jobs.worker`` on a SQLite file.

    ``sqlite_worker.app`` is an app on the same queue, in this process.
    """
    started: list[subprocess.Popen] = []
    path, name = tmp_path / "q.sqlite3", unique_queue_name()
    log = tmp_path / "worker.log"

    def start(*flags: str) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=KIT_PYTHONPATH, FLASK_QUEUE_NAME=name)
        env.update(FLASK_SKIP_DOTENV="1", FLASK_SQLITE_PATH=json.dumps(str(path)))
        env.pop("REDIS_URL", None)
        argv = [sys.executable, "-m", f"{PACKAGE}.worker", *flags]
        with log.open("ab") as out:
            process = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=out)
        started.append(process)
        return process

    start.path, start.log, start.app = path, log, sqlite_app(path, name)
    yield start
    for process in started:
        kill_tree(process)


def wait_until_asleep(sqlite_worker, workers: int = 2) -> None:
    wait_for(
        lambda: len(sockets(sqlite_worker.path)) >= workers,
        "the workers never slept: " + sqlite_worker.log.read_text(),
        30,
    )


@pytest.mark.slow
@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_a_job_queued_while_workers_sleep_starts_at_once(sqlite_worker, worker_type):
    app = sqlite_worker.app
    sqlite_worker(*SLEEPY, "--worker-type", worker_type)
    wait_until_asleep(sqlite_worker)

    job_id = dispatch(app)

    wait_for(lambda: record(app, job_id).get("status") == "complete", "the job never ran", 15)
    found = record(app, job_id)
    assert found["started_at"] - found["enqueued_at"] < 1.0  # 5 s without a wake-up


@pytest.mark.slow
def test_a_delayed_job_wakes_a_sleeping_worker_when_it_is_due(sqlite_worker):
    app = sqlite_worker.app
    sqlite_worker(*SLEEPY, "--worker-type", "process")
    wait_until_asleep(sqlite_worker)

    job_id = dispatch(app, delay=1)

    wait_for(lambda: record(app, job_id).get("status") == "complete", "the job never ran", 15)
    found = record(app, job_id)
    # Due after 1 s, moved within SCHEDULE_POLL (0.25 s); 5 s without a wake-up.
    assert found["started_at"] - found["enqueued_at"] < 2.5


@pytest.mark.slow
def test_a_stopping_consumer_wakes_its_sleeping_workers_and_their_sockets_go(sqlite_worker):
    worker = sqlite_worker(*SLEEPY, "--worker-type", "thread")
    wait_until_asleep(sqlite_worker)

    began = time.monotonic()
    worker.send_signal(signal.SIGTERM)

    assert worker.wait(15) == 0
    assert time.monotonic() - began < 3  # not the rest of a 5 s sleep
    assert sockets(sqlite_worker.path) == []


@pytest.mark.slow
def test_an_idle_worker_woken_by_a_job_does_not_spin(sqlite_worker):
    app = sqlite_worker.app
    worker = sqlite_worker(*SLEEPY, "--worker-type", "process")
    wait_until_asleep(sqlite_worker)
    job_id = dispatch(app)
    wait_for(lambda: record(app, job_id).get("status") == "complete", "the job never ran", 15)
    pids = [worker.pid, *descendants(worker.pid)]

    before, began = cpu_seconds(pids), time.monotonic()
    time.sleep(2)  # a span to measure over, not a wait for something
    used = cpu_seconds(pids) - before

    assert used < 0.1 * (time.monotonic() - began)


@pytest.mark.slow
def test_a_paused_queue_does_not_wake_its_workers_over_and_over(sqlite_worker):
    app = sqlite_worker.app
    with app.app_context():  # paused before the worker starts: it never sees it open
        assert app.extensions["jobkit"].controls.pause(None, "ops", "maintenance")
    worker = sqlite_worker("--worker-type", "process", "--workers", "2")
    wait_until_asleep(sqlite_worker)
    job_ids = [dispatch(app) for _ in range(20)]
    pids = [worker.pid, *descendants(worker.pid)]

    before, began = cpu_seconds(pids), time.monotonic()
    time.sleep(2)  # a span to measure over, not a wait for something
    used = cpu_seconds(pids) - before

    assert used < 0.1 * (time.monotonic() - began)
    assert {record(app, job_id)["status"] for job_id in job_ids} == {"queued"}


def test_a_dispatch_with_no_worker_around_succeeds(tmp_path):
    app = sqlite_app(tmp_path / "q.sqlite3", unique_queue_name())

    job_id = dispatch(app)

    assert record(app, job_id)["status"] == "queued"
    assert not (tmp_path / ("q.sqlite3" + wakeup.SUFFIX)).exists()


def test_a_dispatch_removes_the_socket_file_of_a_worker_that_is_gone(tmp_path):
    app = sqlite_app(tmp_path / "q.sqlite3", unique_queue_name())
    directory = tmp_path / ("q.sqlite3" + wakeup.SUFFIX)
    directory.mkdir()
    stale = directory / "1.2.3"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as gone:
        gone.bind(str(stale))  # closed without removing its file: a killed worker
    (directory / "4.5.6").write_text("")  # not a socket: left alone

    job_id = dispatch(app)

    assert record(app, job_id)["status"] == "queued"
    assert sorted(os.listdir(directory)) == ["4.5.6"]


def test_a_dispatch_rings_each_sleeping_worker_once(tmp_path):
    app = sqlite_app(tmp_path / "q.sqlite3", unique_queue_name())
    directory = str(tmp_path / "q.sqlite3") + wakeup.SUFFIX
    sleepers = [wakeup.Listener(directory, os.getpid()) for _ in range(3)]
    try:
        dispatch(app)

        assert [sleeper.wait(5) for sleeper in sleepers] == [True] * 3
        assert [sleeper.wait(0) for sleeper in sleepers] == [False] * 3
    finally:
        for sleeper in sleepers:
            sleeper.close()
    assert os.listdir(directory) == []


def test_a_ring_never_raises_whatever_the_directory(tmp_path):
    (tmp_path / "a-file").write_text("")

    assert wakeup.ring(str(tmp_path / "missing")) == 0
    assert wakeup.ring(str(tmp_path / "a-file")) == 0
