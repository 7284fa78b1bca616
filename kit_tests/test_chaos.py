"""Chaos: jobs flow while workers, and Redis, are killed at random moments.

Whole workers (a consumer and its processes: a lost machine) and single
worker processes (the OOM killer's choice) are killed while the jobs run,
and the dead are restarted. The first test runs 1,000 jobs that have retries
on Redis: every job must complete at least once, the history must count
exactly 1,000 completed jobs, and no job may be left "running" on a worker
that is gone. Prints what happened: jobs, kills, duplicate executions, jobs
lost and how long recovery took.

The second runs the chaos harness (chaos_harness.py, which scripts/chaos.py
runs at full size) on each backend: jobs registered with the defaults (no
retries), kills of both kinds, and on Redis a SIGKILL of its redis-server.
"""

import contextlib
import os
import random
import re
import shutil
import signal
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import chaos_harness
from support import wait_for
from test_reliability import (
    RECOVERY_BOUND,
    descendants,
    history,
    kill_worker,
    reliable_stack,  # noqa: F401 - the fixture
    runs,
    start_kit_worker,
    started,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]

JOBS = 1000
WORKERS = ("w1", "w2", "w3")
KILLS = 12
SEED = 20261127


def test_every_job_completes_through_random_kills(reliable_stack, capsys):  # noqa: F811
    rng = random.Random(SEED)
    stack = reliable_stack("redis", FLASK_MAX_RECOVERIES="10", FLASK_LOG_LEVEL="WARNING")
    for name in WORKERS:
        start_kit_worker(stack, name, "-q")
    started_at = time.monotonic()

    def dispatch(i: int) -> str:
        payload = {"tag": f"c{i}", "seconds": rng.uniform(0.01, 0.08)}
        code, body = stack.request("POST", "/jobs/testSleep", payload)
        assert code == 202, body
        return body["id"]

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(dispatch, range(JOBS)))
    store = history(stack)

    def completed() -> int:
        return store.counts("testSleep")["complete"]

    # Kill while the queue drains; the dead come back after a moment.
    deaths: dict[int, float] = {}  # pid -> when it was killed
    kills = {"worker": 0, "process": 0}
    while kills["worker"] + kills["process"] < KILLS and completed() < JOBS * 0.9:
        time.sleep(rng.uniform(0.3, 0.8))
        name = rng.choice(WORKERS)
        if rng.random() < 0.6:
            for pid in kill_worker(stack, name):
                deaths[pid] = time.time()
            kills["worker"] += 1
            time.sleep(rng.uniform(0.1, 0.6))
            start_kit_worker(stack, name, "-q")
        else:
            children = descendants(stack.processes[name].pid)
            if not children:
                continue
            victim = rng.choice(children)
            deaths[victim] = time.time()
            kill_process(victim)
            kills["process"] += 1  # its consumer starts a new one within a second

    wait_for(lambda: completed() >= JOBS, f"only {completed()} of {JOBS} completed", 60)
    wall = time.monotonic() - started_at

    ends = [r["id"] for r in runs(stack) if r["event"] == "end"]
    executions = {job_id: ends.count(job_id) for job_id in set(ends)}
    lost = [job_id for job_id in ids if not executions.get(job_id)]
    duplicates = sum(n - 1 for n in executions.values())
    assert not lost, [(store.detail(job_id), started(stack, job_id)) for job_id in lost]
    assert store.counts("testSleep")["complete"] == JOBS
    assert all(store.get(job_id)["status"] == "complete" for job_id in ids)

    # Nothing recorded as running on a worker that is gone.
    alive = {w["id"] for w in store.workers() if w["alive"]}
    running, _, _ = store.page("running", limit=1000)
    assert all(row["worker"] in alive for row in running), running

    # How long each recovered job waited after its worker was killed.
    waits, recovered = [], 0
    for job_id in ids:
        detail = store.detail(job_id)
        if not detail.get("recovered"):
            continue
        recovered += detail["recovered"]
        for event in detail["events"]:
            found = re.search(r"worker \S+:(\d+) was lost", event.get("message") or "")
            if event["kind"] == "worker_lost" and found and int(found[1]) in deaths:
                waits.append(event["at"] - deaths[int(found[1])])
    with capsys.disabled():
        print(
            f"\nchaos: jobs={JOBS} kills={sum(kills.values())} "
            f"(whole workers {kills['worker']}, single processes {kills['process']}) "
            f"recovered={recovered} duplicates_executed={duplicates} lost={len(lost)} "
            f"time_to_recover median={statistics.median(waits) if waits else 0:.2f}s "
            f"max={max(waits, default=0):.2f}s wall={wall:.1f}s"
        )
    assert recovered >= 1  # the kills did hit running jobs
    assert max(waits, default=0) < RECOVERY_BOUND + 2


def kill_process(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# Small enough for CI (about 35 s a backend on two cores, plus the outage on
# Redis), with the lease timings of the reliability tests so that a dead
# worker's jobs come back within seconds.
CI_SIZE = {
    "jobs": 400,
    "kills": 10,
    "duration": 40.0,
    "job_seconds": (0.01, 0.1),
    "outage": 20.0,
    "settle": 30.0,  # a dead worker's jobs are back within ~3 s here
    "settings": chaos_harness.FAST_SETTINGS,
    "worker_flags": chaos_harness.FAST_WORKER_FLAGS,
}


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_no_job_with_default_retries_is_lost_through_kills_and_a_redis_crash(backend, tmp_path):
    if backend == "redis" and shutil.which("redis-server") is None:
        pytest.skip("the Redis chaos run starts its own redis-server, and there is none")
    # A new seed each run, printed on failure; CHAOS_SEED=<n> repeats one.
    seed = int(os.environ.get("CHAOS_SEED") or random.randrange(1, 2**31))
    scenario = chaos_harness.Scenario(backend=backend, seed=seed, **CI_SIZE)

    report = chaos_harness.run(scenario, tmp_path)

    problems = report.problems()
    assert not problems, f"CHAOS_SEED={seed}\n{report.summary()}"
    assert report.kills["consumer"] and report.kills["process"]
    assert sorted(report.redis) == (["20 s outage", "crash"] if backend == "redis" else [])
