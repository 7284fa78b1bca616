"""Three machines against one Redis: one dies whole, and comes back.

Each "machine" is a UTS namespace with a hostname of its own (``unshare
--uts``, which needs root), running a web server and a kit worker in one
process group, so that a single SIGKILL takes down all of it at once, as a
lost host does. The kit names workers ``<hostname>:<pid>``: the monitor's
Workers page groups them by host.

The test dispatches jobs through all three web servers, kills one machine
while its worker runs jobs, and checks that the other machines run them
within the lease bound (LEASE_TIMEOUT + REAPER_INTERVAL, test_reliability's
fast settings), that the monitor marks the dead machine's workers dead and,
once the machine is back under the same hostname, shows it alive again, and
that every job ran. Run with -s to see the recovery times.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import KIT_PYTHONPATH, PACKAGE, PROJECT_ROOT, Stack, _answers
from support import descendants, free_port, wait_for
from test_reliability import LEASES, RECOVERY_BOUND, runs

MONITOR = ("admin", "many-hosts-password")
HEARTBEATS = {"FLASK_HISTORY_HEARTBEAT_SECONDS": "0.3", "FLASK_HISTORY_WORKER_DEAD_AFTER": "1.5"}
HOSTS = ["machine-a", "machine-b", "machine-c"]
JOBS = 90

pytestmark = pytest.mark.slow


def can_unshare() -> str | None:
    """Why a UTS namespace cannot be made here, or None."""
    if shutil.which("unshare") is None:
        return "no unshare binary (util-linux)"
    if os.geteuid() != 0:
        return "unshare --uts needs root (CAP_SYS_ADMIN) to set a hostname per machine"
    probe = subprocess.run(
        ["unshare", "--uts", "hostname", "probe"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"unshare --uts is not allowed here: {probe.stderr.strip()}"
    return None


class Machine:
    """A web server and a worker under their own hostname, in one process group."""

    def __init__(self, host: str, env: dict[str, str], logs: Path):
        self.host, self.env, self.logs = host, env, logs
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        web = f"{sys.executable} -m flask --app {PACKAGE} run --port {self.port}"
        worker = f"{sys.executable} -m {PACKAGE}.worker --workers 2 -c 1"
        # sh sets the namespace's hostname, then runs both; background jobs
        # of a non-interactive shell stay in its process group.
        script = f'hostname "$0" || exit 97; {web} & {worker} & wait'
        log = open(self.logs / f"{self.host}.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            ["unshare", "--uts", "sh", "-c", script, self.host],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to kill it whole
        )
        wait_for(lambda: _answers(self.base_url + "/healthz"), f"{self.host} did not start", 30)

    def pids(self) -> list[int]:
        return [self.process.pid, *descendants(self.process.pid)]

    def kill(self) -> float:
        """SIGKILL every process of the machine at once; return when."""
        os.killpg(self.process.pid, signal.SIGKILL)
        killed_at = time.time()
        self.process.wait(10)
        self.process = None
        return killed_at

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


def monitor_workers(machine: Machine) -> list[dict]:
    """The monitor's Workers page, as its JSON API serves it."""
    request = urllib.request.Request(machine.base_url + "/monitor/api/workers")
    token = base64.b64encode(":".join(MONITOR).encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["workers"]


def hosts(machine: Machine) -> dict[str, set[bool]]:
    """host -> the alive flags of its worker processes."""
    found: dict[str, set[bool]] = {}
    for worker in monitor_workers(machine):
        found.setdefault(worker["host"], set()).add(worker["alive"])
    return found


@pytest.fixture
def machines(redis_url, tmp_path):
    reason = can_unshare()
    if reason:
        pytest.skip(reason)
    env = dict(os.environ, PYTHONPATH=KIT_PYTHONPATH, FLASK_SKIP_DOTENV="1")
    env.update(
        REDIS_URL=redis_url,
        FLASK_QUEUE_NAME=f"hosts_{uuid.uuid4().hex[:12]}",
        FLASK_JOB_MODULES=json.dumps(["reliability_jobs"]),
        FLASK_MONITOR_USERNAME=MONITOR[0],
        FLASK_MONITOR_PASSWORD=MONITOR[1],
        FLASK_SECRET_KEY="many-hosts-secret",
        RELIABILITY_LOG=str(tmp_path / "runs.log"),
        **LEASES,
        **HEARTBEATS,
    )
    started = [Machine(host, env, tmp_path) for host in HOSTS]
    yield started
    for machine in started:
        machine.stop()


def test_a_dead_machines_jobs_run_elsewhere_and_the_monitor_shows_it_die_and_return(
    machines, tmp_path
):
    for machine in machines:
        machine.start()
    a, b = machines[0], machines[1]
    ledger = SimpleNamespace(runs_log=tmp_path / "runs.log")  # what runs() reads
    wait_for(lambda: hosts(a) == {host: {True} for host in HOSTS}, "3 live hosts", 30)

    def send(i: int, via: Machine) -> str:
        stack = Stack(via.base_url, {}, tmp_path)
        code, body = stack.request("POST", "/jobs/testLedger", {"tag": f"job{i}", "seconds": 0.3})
        assert code == 202, body
        return body["id"]

    ids = [send(i, machines[i % 3]) for i in range(JOBS // 3)]
    # Kill machine b while its worker runs jobs.
    b_pids = set(b.pids())
    wait_for(lambda: running_on(ledger, b_pids), "machine b never ran a job", 30)
    killed_at = b.kill()
    cut_short = running_on(ledger, b_pids)  # started on b, never ended there
    ids += [send(i, machines[i % 2 * 2]) for i in range(JOBS // 3, 2 * JOBS // 3)]  # a and c

    wait_for(lambda: hosts(a).get("machine-b") == {False}, "machine b marked dead", 15)
    dead_seen = time.time() - killed_at
    wait_for(lambda: rerun(ledger, cut_short, b_pids), "b's jobs ran again elsewhere", 30)
    recovered = rerun(ledger, cut_short, b_pids)
    waits = [at - killed_at for at in recovered.values()]

    b.start()  # the same hostname, new processes
    wait_for(lambda: True in hosts(a).get("machine-b", set()), "machine b alive again", 30)
    ids += [send(i, machines[i % 3]) for i in range(2 * JOBS // 3, JOBS)]
    wait_for(lambda: ended(ledger) >= set(ids), "every job ran", 60)

    print(
        f"\n{len(cut_short)} jobs cut short on machine-b; run again "
        f"{min(waits):.2f}-{max(waits):.2f} s after the kill (bound {RECOVERY_BOUND} s); "
        f"monitor showed it dead {dead_seen:.2f} s after the kill"
    )
    assert cut_short, "the kill hit no running job"
    # The lease bound, with room for a loaded machine (as test_chaos allows).
    assert max(waits) < RECOVERY_BOUND + 2
    assert {run["pid"] for run in runs(ledger) if run["event"] == "end"} - b_pids
    workers = monitor_workers(a)
    assert {w["host"] for w in workers} == set(HOSTS)


def running_on(stack: SimpleNamespace, pids: set[int]) -> set[str]:
    """Jobs started by one of ``pids`` and not ended by it."""
    started, ended_ = set(), set()
    for run in runs(stack):
        if run["pid"] in pids:
            (started if run["event"] == "start" else ended_).add(run["id"])
    return started - ended_


def rerun(stack: SimpleNamespace, job_ids: set[str], pids: set[int]) -> dict[str, float]:
    """When each job started again outside ``pids``; {} until all of them have."""
    again = {
        run["id"]: run["at"]
        for run in runs(stack)
        if run["event"] == "start" and run["id"] in job_ids and run["pid"] not in pids
    }
    return again if set(again) == job_ids else {}


def ended(stack: SimpleNamespace) -> set[str]:
    return {run["id"] for run in runs(stack) if run["event"] == "end"}
