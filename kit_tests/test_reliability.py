"""Nothing lost: real workers killed, stopped, timed out and failing.

Each test starts a web server and the kit's worker (``python -m
acme_jobs.worker``) as real processes, with short lease timings so
that a dead worker is noticed within about two seconds. The jobs come from
``reliability_jobs.py`` and log every run to a file.
"""

import contextlib
import datetime
import importlib.util
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from acme_jobs import create_app
from conftest import KIT_PYTHONPATH, PACKAGE, PROJECT_ROOT
from support import descendants, wait_for

# What the Stack fixture offers (tests/conftest.py); imported by value here,
# since another directory's conftest may own the module name "conftest".

Stack = Any

pytestmark = pytest.mark.slow


# Dead after 2 s of silence; every worker looks for the dead twice a second.
LEASES = {
    "FLASK_LEASE_TIMEOUT": "2",
    "FLASK_LEASE_HEARTBEAT": "0.4",
    "FLASK_REAPER_INTERVAL": "0.5",
}
RECOVERY_BOUND = 2 + 0.5


@pytest.fixture(params=["sqlite", "redis"])
def backend(request):
    return request.param


@pytest.fixture
def reliable_stack(start_stack, tmp_path, request):
    """Start web + nothing else; tests start the workers they need."""

    def start(backend: str, **settings: str) -> Stack:
        log = tmp_path / "runs.log"
        env = {
            "PYTHONPATH": KIT_PYTHONPATH,
            "FLASK_JOB_MODULES": json.dumps(["reliability_jobs"]),
            "RELIABILITY_LOG": str(log),
            **LEASES,
            **settings,
        }
        redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
        stack = start_stack(redis_url=redis_url, worker=False, env=env)
        stack.runs_log = log
        return stack

    return start


def start_kit_worker(stack: Stack, name: str, *flags: str) -> subprocess.Popen:
    """The kit's worker entry point, with quick health checks."""
    argv = [sys.executable, "-m", f"{PACKAGE}.worker", "--workers", "2", "-c", "1", *flags]
    return stack.start(name, argv)


def runs(stack: Stack) -> list[dict]:
    path = stack.runs_log
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        event, job_id, attempt, pid, at, tag = line.split(" ", 5)
        found.append(
            {"event": event, "id": job_id, "attempt": int(attempt), "pid": int(pid),
             "at": float(at), "tag": tag}
        )  # fmt: skip
    return found


def started(stack: Stack, job_id: str) -> list[dict]:
    return [r for r in runs(stack) if r["id"] == job_id and r["event"] == "start"]


def kill_worker(stack: Stack, name: str) -> list[int]:
    """SIGKILL a consumer and its worker processes at once (a lost machine)."""
    process = stack.processes.pop(name)
    pids = [process.pid, *descendants(process.pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(10)
    return pids


def stack_app(stack: Stack, job_modules: list[str] | None = None):
    """An app on the stack's queue, in this process (with no worker of its own).

    ``job_modules`` registers more jobs in this process: see ``jobs_here``.
    """
    env = stack.env
    sqlite_path = env.get("FLASK_SQLITE_PATH")
    return create_app(
        {
            "TESTING": True,
            "REDIS_URL": env.get("REDIS_URL"),
            "QUEUE_NAME": env["FLASK_QUEUE_NAME"],
            "SQLITE_PATH": json.loads(sqlite_path) if sqlite_path else None,
            "JOB_MODULES": job_modules or [],
        }
    )


@pytest.fixture
def jobs_here(job_modules_for_one_test):
    """Register the reliability jobs in this process too, for one test only."""
    return ["reliability_jobs"]


def history(stack: Stack):
    """The job history the stack writes, read in this process."""
    return stack_app(stack).extensions["jobkit"].history


def dispatch(stack: Stack, name: str, payload: dict) -> str:
    code, body = stack.request("POST", f"/jobs/{name}", payload)
    assert code == 202, body
    return body["id"]


def test_jobs_of_a_killed_worker_run_again_on_another(reliable_stack, backend):
    stack = reliable_stack(backend)
    start_kit_worker(stack, "doomed")
    ids = [dispatch(stack, "testSleep", {"tag": f"k{i}", "seconds": 3}) for i in range(3)]
    # Both worker processes are in the middle of a job.
    wait_for(lambda: len({r["id"] for r in runs(stack)}) >= 2, "no job started", 20)

    killed_at = time.time()
    kill_worker(stack, "doomed")
    lost = {r["id"] for r in runs(stack)}
    start_kit_worker(stack, "rescuer")

    records = [stack.wait_for_status(job_id, {"complete", "failed"}, 30) for job_id in ids]
    assert [r["status"] for r in records] == ["complete"] * 3, stack.read_logs()
    store = history(stack)
    for job_id in lost:
        detail = store.detail(job_id)
        kinds = [e["kind"] for e in detail["events"]]
        assert "worker_lost" in kinds, kinds
        lost_at = next(e["at"] for e in detail["events"] if e["kind"] == "worker_lost")
        # A new worker (with reaping on its first heartbeat) or a lapsed lease.
        assert lost_at - killed_at < RECOVERY_BOUND + 3
        assert detail["recovered"] == 1
        assert detail["attempt"] == 2
        assert [a["outcome"] for a in detail["attempts"]][-1] == "complete"
    assert store.overview()["recovered"] == len(lost)


def test_jobs_a_worker_took_ahead_run_elsewhere_while_it_is_stuck_on_a_long_one(
    reliable_stack,
):
    stack = reliable_stack("redis")
    long_id = dispatch(stack, "testSleep", {"tag": "long", "seconds": 5})
    quick_ids = [dispatch(stack, "testSleep", {"tag": f"quick{i}"}) for i in range(10)]
    # Taking the long job, the worker takes five quick ones ahead of time.
    start_kit_worker(stack, "stuck", "--workers", "1")
    wait_for(lambda: started(stack, long_id), "the long job did not start", 20)
    start_kit_worker(stack, "free", "--workers", "1")

    for job_id in quick_ids:
        assert stack.wait_for_status(job_id, {"complete"}, 15)["status"] == "complete"

    assert not [r for r in runs(stack) if r["id"] == long_id and r["event"] == "end"]
    stuck_pid = started(stack, long_id)[0]["pid"]
    assert all(started(stack, job_id)[0]["pid"] != stuck_pid for job_id in quick_ids)


def test_a_job_with_default_retries_runs_again_after_its_worker_is_killed(reliable_stack, backend):
    stack = reliable_stack(backend)
    start_kit_worker(stack, "doomed")
    job_id = dispatch(stack, "testDefaults", {"tag": "defaults", "seconds": 2})
    wait_for(lambda: started(stack, job_id), "the job did not start", 20)

    kill_worker(stack, "doomed")
    start_kit_worker(stack, "rescuer")

    record = stack.wait_for_status(job_id, {"complete", "failed"}, 30)
    assert record["status"] == "complete", stack.read_logs()
    assert [r["event"] for r in runs(stack) if r["id"] == job_id] == ["start", "start", "end"]
    lost = [e for e in history(stack).detail(job_id)["events"] if e["kind"] == "worker_lost"]
    assert "retries untouched" in lost[0]["message"]


def test_a_job_that_must_not_run_twice_fails_when_its_worker_is_killed(reliable_stack):
    stack = reliable_stack("redis")
    start_kit_worker(stack, "doomed")
    job_id = dispatch(stack, "testAtMostOnce", {"tag": "once", "seconds": 2})
    wait_for(lambda: started(stack, job_id), "the job did not start", 20)

    kill_worker(stack, "doomed")
    start_kit_worker(stack, "rescuer")

    record = stack.wait_for_status(job_id, {"complete", "failed"}, 30)
    assert record["status"] == "failed"
    assert record["error"]["type"] == "WorkerLost"
    assert len(started(stack, job_id)) == 1


def test_a_recovered_job_runs_before_the_backlog(reliable_stack, backend):
    stack = reliable_stack(backend)
    start_kit_worker(stack, "doomed", "--workers", "1")
    lost = dispatch(stack, "testSleep", {"tag": "lost", "seconds": 3})
    wait_for(lambda: started(stack, lost), "the job did not start", 20)
    backlog = [dispatch(stack, "testSleep", {"tag": f"b{i}", "seconds": 0.1}) for i in range(60)]

    kill_worker(stack, "doomed")
    start_kit_worker(stack, "rescuer", "--workers", "1")

    stack.wait_for_status(lost, {"complete"}, 30)
    second_start = started(stack, lost)[1]["at"]
    backlog_starts = [r["at"] for r in runs(stack) if r["id"] in backlog and r["event"] == "start"]
    # Queued again at the front: it runs while most of the backlog still waits.
    assert len([at for at in backlog_starts if at < second_start]) < len(backlog) // 2


def test_a_lone_worker_killed_and_restarted_recovers_its_own_jobs(reliable_stack):
    stack = reliable_stack("redis")
    start_kit_worker(stack, "only", "--workers", "1")
    job_id = dispatch(stack, "testSleep", {"tag": "alone", "seconds": 2})
    wait_for(lambda: started(stack, job_id), "the job did not start", 20)

    kill_worker(stack, "only")
    start_kit_worker(stack, "only", "--workers", "1")

    record = stack.wait_for_status(job_id, {"complete"}, 30)
    assert record["recovered"] == 1
    assert len(started(stack, job_id)) == 2


def test_worker_processes_die_with_their_killed_consumer(reliable_stack):
    stack = reliable_stack("redis")
    consumer = start_kit_worker(stack, "worker")
    job_id = dispatch(stack, "testSleep", {"tag": "orphan", "seconds": 3})
    wait_for(lambda: started(stack, job_id), "the job did not start", 20)
    children = descendants(consumer.pid)

    consumer.kill()  # the consumer only: no orphan may run on
    consumer.wait(10)
    stack.processes.pop("worker")

    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), "orphans", 5)
    start_kit_worker(stack, "worker")
    assert stack.wait_for_status(job_id, {"complete"}, 20)["recovered"] == 1


def poll_until(check, message: str, timeout: float) -> None:
    """``wait_for``, looking every few milliseconds: for a moment that lasts little."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.002)


def move_began(huey, store):
    """A check: has a consumer begun to move due jobs since this call?

    It has when one more job is recorded as queued (the "enqueued" signal
    comes before the move), or when jobs left the schedule.
    """
    on_schedule, recorded = huey.scheduled_count(), store.counts()["queued"]
    return lambda: store.counts()["queued"] > recorded or huey.scheduled_count() < on_schedule


# Consumers killed while they move the due jobs; then one more runs them.
DUE_JOBS, KILLS = 200, 5


def test_due_jobs_survive_their_consumer_killed_again_and_again_as_it_moves_them(
    reliable_stack, backend, jobs_here
):
    seed = int(os.environ.get("KILL_SEED") or random.randrange(2**32))
    print(f"KILL_SEED={seed}")  # shown with a failure: set it to replay the kills
    rng = random.Random(seed)
    stack = reliable_stack(backend)
    kit = stack_app(stack, jobs_here).extensions["jobkit"]
    huey, store = kit.huey, kit.history
    # All due in the same second, about three seconds from now, on Huey's
    # schedule (where a worker puts a job with an eta, or a retry).
    eta = huey._get_timestamp() + datetime.timedelta(seconds=3)
    tags = [f"due{i}" for i in range(DUE_JOBS)]
    for tag in tags:
        huey.add_schedule(kit.tasks["testSleep"].s({"tag": tag, "seconds": 0}, eta=eta))
    assert huey.scheduled_count() == DUE_JOBS

    kills = []
    for round_ in range(KILLS):
        if huey.scheduled_count() == 0:
            break
        began = move_began(huey, store)
        consumer = start_kit_worker(stack, f"doomed{round_}", "--no-periodic")
        poll_until(began, f"round {round_}: the consumer never began to move due jobs", 30)
        # Early in the move at first, then later and later: around the step
        # that queues them, and after it.
        delay = rng.uniform(0, 0.04 * (round_ + 1))
        time.sleep(delay)
        consumer.kill()  # the consumer's main process only; its workers die with it
        consumer.wait(10)
        stack.processes.pop(f"doomed{round_}")
        kills.append((round(delay * 1000), huey.scheduled_count(), huey.pending_count()))
    print("killed (ms after the move began, on the schedule, on the queue):", kills)

    start_kit_worker(stack, "survivor", "--no-periodic")

    def ended() -> set[str]:
        return {r["tag"] for r in runs(stack) if r["event"] == "end"}

    with contextlib.suppress(TimeoutError):
        wait_for(lambda: ended() >= set(tags), "jobs lost", 60)
    assert ended() == set(tags), f"seed {seed}: never ran {sorted(set(tags) - ended())[:10]}"
    wait_for(lambda: store.counts()["complete"] == DUE_JOBS, f"seed {seed}: not all complete", 20)
    assert (huey.scheduled_count(), huey.pending_count()) == (0, 0)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_lets_the_running_job_finish(reliable_stack, backend, signum):
    stack = reliable_stack(backend)
    worker = start_kit_worker(stack, "worker", "--shutdown-timeout", "20")
    job_id = dispatch(stack, "testSleep", {"tag": "grace", "seconds": 2})
    wait_for(lambda: started(stack, job_id), "the job did not start", 20)

    worker.send_signal(signum)
    assert worker.wait(20) == 0
    stack.processes.pop("worker")

    record = stack.wait_for_status(job_id, {"complete", "failed", "queued"}, 5)
    assert record["status"] == "complete"
    assert [r["event"] for r in runs(stack) if r["id"] == job_id] == ["start", "end"]
    assert "Shutting down gracefully" in stack.read_logs()


def test_a_job_still_running_after_the_grace_period_is_queued_again(reliable_stack, backend):
    stack = reliable_stack(backend)
    worker = start_kit_worker(stack, "worker", "--shutdown-timeout", "1")
    job_id = dispatch(stack, "testSleep", {"tag": "slow", "seconds": 4})
    wait_for(lambda: started(stack, job_id), "the job did not start", 20)

    worker.send_signal(signal.SIGTERM)
    worker.wait(20)
    stack.processes.pop("worker")

    record = stack.wait_for_status(job_id, {"queued"}, 5)
    assert not record.get("recovered")  # a shutdown is not a lost worker
    start_kit_worker(stack, "next")
    assert stack.wait_for_status(job_id, {"complete"}, 20)["status"] == "complete"
    assert [r["event"] for r in runs(stack) if r["id"] == job_id] == ["start", "start", "end"]


def test_plain_huey_consumer_sigterm_requeues_instead_of_losing(reliable_stack):
    # huey_consumer without -g TERM stops at once on SIGTERM: the job does
    # not finish, but it goes back on the queue rather than vanishing.
    stack = reliable_stack("redis")
    flags = ["--worker-type", "process", "--workers", "1"]
    worker = stack.start_worker("plain", flags)
    job_id = dispatch(stack, "testSleep", {"tag": "plain", "seconds": 3})
    wait_for(lambda: started(stack, job_id), "the job did not start", 20)

    worker.send_signal(signal.SIGTERM)
    worker.wait(20)
    stack.processes.pop("plain")

    stack.wait_for_status(job_id, {"queued"}, 5)
    stack.start_worker("plain", flags)
    assert stack.wait_for_status(job_id, {"complete"}, 20)["status"] == "complete"


def test_a_job_over_its_timeout_is_stopped_recorded_and_retried(reliable_stack, backend):
    stack = reliable_stack(backend)
    start_kit_worker(stack, "worker")
    job_id = dispatch(stack, "testTimeout", {"tag": "slow", "seconds": 5})

    record = stack.wait_for_status(job_id, {"complete", "failed"}, 30)

    assert record["status"] == "failed"
    assert record["error"]["type"] == "TaskTimeout"
    detail = history(stack).detail(job_id)
    attempts = detail["attempts"]
    assert [a["outcome"] for a in attempts] == ["failed", "failed"]  # retries=1
    for attempt in attempts:
        assert attempt["error"]["type"] == "TaskTimeout"
        assert 0.9 <= attempt["duration"] < 2.5  # stopped at one second, not five
        # Where the job was when it was stopped: in its own sleep.
        assert "in too_slow" in attempt["error"]["traceback"]
    assert not [r for r in runs(stack) if r["id"] == job_id and r["event"] == "end"]


def test_retries_back_off_exponentially_with_jitter(reliable_stack):
    stack = reliable_stack("redis")
    start_kit_worker(stack, "worker")
    job_id = dispatch(stack, "testAlwaysFails", {"tag": "flaky"})

    record = stack.wait_for_status(job_id, {"failed"}, 30)

    assert record["attempt"] == 4  # retries=3
    detail = history(stack).detail(job_id)
    waits = [e["eta"] - e["at"] for e in detail["events"] if e["kind"] == "scheduled"]
    # retry_delay 0.4 doubling, minus up to half of it (the default jitter).
    bounds = [(0.2, 0.4), (0.4, 0.8), (0.8, 1.6)]
    assert len(waits) == 3, detail["events"]
    for wait, (low, high) in zip(waits, bounds, strict=True):
        assert low - 0.01 <= wait <= high + 0.01, waits
    starts = [r["at"] for r in started(stack, job_id)]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= low - 0.05 for gap, (low, _) in zip(gaps, bounds, strict=True)), gaps


def test_a_permanent_error_is_not_retried_by_a_real_worker(reliable_stack):
    stack = reliable_stack("redis")
    start_kit_worker(stack, "worker")
    job_id = dispatch(stack, "testPermanent", {"tag": "gone"})

    record = stack.wait_for_status(job_id, {"failed", "complete"}, 20)

    assert record["status"] == "failed"
    assert record["error"]["message"] == "this record does not exist"
    # "failed" is final: a job with a retry left is recorded as "retrying".
    assert len(started(stack, job_id)) == 1


def test_a_job_that_kills_its_workers_is_parked_as_a_poison_pill(reliable_stack, backend):
    stack = reliable_stack(backend, FLASK_MAX_RECOVERIES="2")
    start_kit_worker(stack, "worker")
    job_id = dispatch(stack, "testPoisonPill", {"tag": "pill"})

    record = stack.wait_for_status(job_id, {"failed", "complete"}, 40)

    assert record["status"] == "failed"
    assert record["recovered"] == 2
    assert len(started(stack, job_id)) == 3  # run, recovered twice, then parked
    events = history(stack).detail(job_id)["events"]
    last = [e for e in events if e["kind"] == "worker_lost"][-1]
    assert "poison pill" in last["message"]
    # Jobs after it still run: the worker survived its dead processes.
    other = dispatch(stack, "testSleep", {"tag": "after", "seconds": 0})
    assert stack.wait_for_status(other, {"complete"}, 20)["status"] == "complete"


def test_the_kit_worker_rejects_positional_arguments(tmp_path):
    env = dict(os.environ, PYTHONPATH=KIT_PYTHONPATH, FLASK_SQLITE_PATH=json.dumps(
        str(tmp_path / "q.sqlite3")))  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", f"{PACKAGE}.worker", "some.huey"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "no positional arguments" in result.stderr


def test_the_kit_worker_reads_dotenv_like_flask_run(tmp_path):
    if importlib.util.find_spec("dotenv") is None:
        pytest.skip("python-dotenv is not installed")
    queue = tmp_path / "from-dotenv.sqlite3"
    (tmp_path / ".env").write_text(f"FLASK_SQLITE_PATH={json.dumps(str(queue))}\n")
    unset = ("REDIS_URL", "FLASK_SQLITE_PATH", "FLASK_SKIP_DOTENV")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["PYTHONPATH"] = KIT_PYTHONPATH
    subprocess.run(
        [sys.executable, "-m", f"{PACKAGE}.worker", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert queue.exists()  # the app the worker built used the .env setting
