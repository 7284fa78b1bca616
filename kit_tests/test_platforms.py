"""Other platforms, simulated on Linux (``simulated_platform.py``).

Windows: no ``fork()``, no ``os.register_at_fork``, no SIGUSR1 nor SIGALRM.
The app, its tests and the kit's unit tests still run; the worker runs
thread workers instead of process workers, and says that job timeouts are
not enforced. macOS: no ``PR_SET_PDEATHSIG``; worker processes still end
when their consumer is killed.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from acme_jobs import create_app
from acme_jobs.kit import enqueue
from conftest import KIT_PYTHONPATH, PACKAGE, PROJECT_ROOT, TESTS_DIR
from support import descendants, kill_tree, unique_queue_name, wait_for

pytestmark = pytest.mark.slow

# Kit tests run again as on Windows: settings, logs, the HTTP API, jobs, health.
KIT_TESTS = ["test_config.py", "test_logging.py", "test_log_fields.py", "test_api.py"]
KIT_TESTS += ["test_jobs.py", "test_health.py"]
# The kit's worker, started the way `python -m <package>.worker` starts it,
# after the platform is simulated.
BOOTSTRAP = (
    "import runpy, sys, simulated_platform; sys.argv[1:] = {flags!r}; "
    f"runpy.run_module('{PACKAGE}.worker', run_name='__main__')"
)


def simulated_env(platform: str, **extra: str) -> dict[str, str]:
    """The environment with none of the kit tests' settings, but ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "REDIS_URL"))}
    env.update(PYTHONPATH=KIT_PYTHONPATH, KIT_SIMULATED_PLATFORM=platform)
    env.update(FLASK_SKIP_DOTENV="1", **extra)
    return env


def run_pytest(platform: str, args: list[str], cwd: Path, redis_url: str) -> None:
    # pytest's fd capture has a Windows branch that needs a Windows console.
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    argv += ["-p", "simulated_platform", "--capture=sys", "-m", "not slow", *args]
    # shutil.which() finds no redis-server "on Windows": the tests get this one.
    env = simulated_env(platform, REDIS_URL=redis_url, REQUIRE_REDIS="1")
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout


def test_the_project_tests_pass_without_fork_and_posix_signals(redis_url):
    run_pytest("win32", ["tests"], PROJECT_ROOT, redis_url)


def test_the_kit_unit_tests_pass_without_fork_and_posix_signals(redis_url):
    args = ["-c", str(TESTS_DIR / "pytest.ini"), "--rootdir", str(TESTS_DIR)]
    args += [str(TESTS_DIR / name) for name in KIT_TESTS]
    run_pytest("win32", args, PROJECT_ROOT, redis_url)


@pytest.fixture
def simulated_worker(tmp_path):
    """Start the kit's worker on a SQLite queue, on a simulated platform."""
    started: list[subprocess.Popen] = []
    settings = {"FLASK_QUEUE_NAME": unique_queue_name(), "FLASK_JOBS_PACKAGE": "kit_jobs"}
    settings["FLASK_SQLITE_PATH"] = json.dumps(str(tmp_path / "queue.sqlite3"))

    def start(platform: str, *flags: str) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"worker-{platform}.log"
        process = subprocess.Popen(
            [sys.executable, "-c", BOOTSTRAP.format(flags=list(flags))],
            cwd=PROJECT_ROOT,
            env=simulated_env(platform, **settings),
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        return process, log

    start.settings = settings
    yield start
    for process in started:
        kill_tree(process)


def alive(pid: int) -> bool:
    """False for a process that is gone, or dead and not yet reaped (a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def app_for(settings: dict[str, str]):
    """An app on the simulated worker's queue, to queue jobs and read their records."""
    return create_app(
        {
            "TESTING": True,
            "REDIS_URL": None,
            "QUEUE_NAME": settings["FLASK_QUEUE_NAME"],
            "SQLITE_PATH": json.loads(settings["FLASK_SQLITE_PATH"]),
        }
    )


def test_on_windows_the_worker_runs_thread_workers_and_says_timeouts_are_not_enforced(
    simulated_worker,
):
    worker, log = simulated_worker("win32", "--workers", "2")
    app = app_for(simulated_worker.settings)
    with app.app_context():
        job_id = enqueue("testGreet", {"nome": "Win", "idade": 9})
    history = app.extensions["jobkit"].history

    def status() -> str | None:
        record = history.get(job_id)
        return record and record["status"]

    wait_for(lambda: status() == "complete", "the job never ran: " + log.read_text(), 60)
    text = log.read_text()
    assert "process workers need fork() and POSIX signals, which win32 lacks" in text
    assert "Job timeouts are NOT enforced" in text
    assert "Huey consumer started with 2 thread," in text
    assert not descendants(worker.pid)  # threads, no worker processes

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def test_on_macos_worker_processes_end_when_their_consumer_is_killed(simulated_worker):
    consumer, log = simulated_worker("darwin", "--workers", "2")
    # Two worker processes and the scheduler's.
    wait_for(lambda: len(descendants(consumer.pid)) == 3, "no worker processes", 60)
    workers = descendants(consumer.pid)

    consumer.kill()  # SIGKILL: the consumer cannot tell its workers anything
    consumer.wait(10)

    wait_for(lambda: not any(alive(pid) for pid in workers), "orphans: " + log.read_text(), 30)
    assert log.read_text().count(f"the consumer (pid {consumer.pid}) is gone") == 3
