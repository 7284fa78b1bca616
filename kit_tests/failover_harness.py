"""Redis Sentinel failover with real processes, while jobs are dispatched.

``run`` starts a Redis primary, one replica and three sentinels on loopback
(``redis-server --sentinel``, ``down-after-milliseconds`` 1000), a web
server and a kit worker that find the master through the sentinels
(``REDIS_SENTINELS``), and dispatches jobs over HTTP at an even pace. A third
of the way in it SIGKILLs the primary; once the sentinels have promoted the
replica it starts the old primary again, which they turn into the new
master's replica. Each job is sent with an ``Idempotency-Key`` and sent again
on a 503 until it is accepted (202, or 200 for a dispatch found again).

Then it waits for every accepted job to run (the job ``testLedger`` of
reliability_jobs.py writes a ledger line when it ends) and reports what it
saw: the answers by status, accepted jobs that never ran (lost), and how
long the web refused dispatches after the kill.

test_sentinel.py runs it small; for the full size::

    KIT_PROJECT_ROOT=<baked project> PYTHONPATH=<baked project>:kit_tests \\
        python kit_tests/failover_harness.py --jobs 1000 [--wait-replicas 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import redis

from conftest import KIT_PYTHONPATH, PACKAGE, Stack, _answers
from support import AUTHORIZATION, free_port, redis_answers, wait_for
from test_reliability import LEASES

MASTER = "mymaster"
JOB = "testLedger"


class SentinelCluster:
    """One primary, one replica and three sentinels, on free loopback ports."""

    def __init__(self, workdir: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("a Sentinel failover needs a redis-server binary")
        self.binary, self.workdir = binary, workdir
        self.primary_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.servers: dict[int, subprocess.Popen] = {}

    @property
    def sentinels(self) -> str:
        """The REDIS_SENTINELS value for this cluster."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def start(self) -> None:
        self._server(self.primary_port)
        self._server(self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
        replica = redis.Redis(port=self.replica_port)
        wait_for(lambda: replica.info("replication")["master_link_status"] == "up", "no sync")
        for port in self.sentinel_ports:
            conf = self.workdir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.primary_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 3000\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            self._start(port, [self.binary, str(conf), "--sentinel"])
        # Every sentinel knows the replica and the other sentinels: only then
        # can they agree on a failover.
        wait_for(self._sentinels_ready, "the sentinels did not find each other", 30)

    def _server(self, port: int, *extra: str) -> None:
        argv = [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        # A replica that (re)joins syncs at once, not after Redis' default 5 s
        # wait for more replicas to share the transfer.
        argv += ["--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        self._start(port, [*argv, *extra])
        wait_for(lambda: redis_answers(f"redis://127.0.0.1:{port}/0"), "redis did not start")

    def _start(self, port: int, argv: list[str]) -> None:
        log = open(self.workdir / f"redis-{port}.log", "ab")  # noqa: SIM115 - closed with the process
        self.servers[port] = subprocess.Popen(
            argv, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
        )

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            state = redis.Redis(port=port).sentinel_master(MASTER)
            if state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                return False
        return True

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers names it."""
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError):
                address = redis.Redis(port=port).sentinel_get_master_addr_by_name(MASTER)
                return int(address[1]) if address else None
        return None

    def kill(self, port: int) -> None:
        process = self.servers.pop(port)
        process.kill()
        process.wait(10)

    def restart(self, port: int, master: int) -> None:
        """Start a killed server again, empty, as the new master's replica.

        The sentinels would turn it into one on their own, some seconds
        after it comes back; an operator's replacement is a replica at once.
        """
        self._server(port, "--replicaof", "127.0.0.1", str(master))

    def stop(self) -> None:
        for process in self.servers.values():
            process.terminate()
        for process in self.servers.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.servers.clear()


@dataclass
class Report:
    jobs: int
    wait_replicas: int
    answers: Counter = field(default_factory=Counter)  # status code -> count, every try
    accepted: set[str] = field(default_factory=set)
    ran: set[str] = field(default_factory=set)
    refused_from: float | None = None  # seconds after the kill: first refusal
    accepted_again: float | None = None  # seconds after the kill: first 202 after a refusal
    promoted_after: float | None = None  # seconds after the kill: the sentinels' new master
    slowest: float = 0.0  # seconds of the slowest answer
    unaccepted: int = 0  # jobs never accepted before the deadline
    no_retry_after: int = 0  # 503s without a Retry-After header

    @property
    def lost(self) -> set[str]:
        return self.accepted - self.ran

    def summary(self) -> str:
        answers = ", ".join(f"{code}: {n}" for code, n in sorted(self.answers.items()))
        return (
            f"{self.jobs} jobs, REDIS_WAIT_REPLICAS={self.wait_replicas}: "
            f"{len(self.accepted)} accepted, {len(self.lost)} lost, "
            f"{self.unaccepted} never accepted; answers {answers}; "
            f"first refusal {_seconds(self.refused_from)}, "
            f"promoted {_seconds(self.promoted_after)}, "
            f"accepted again {_seconds(self.accepted_again)} after the kill; "
            f"slowest answer {self.slowest:.2f} s"
        )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


class Failover:
    """One run: the cluster, the web and the worker, and the dispatching."""

    def __init__(self, workdir: Path, jobs: int, wait_replicas: int, duration: float):
        self.workdir, self.duration = workdir, duration
        self.report = Report(jobs, wait_replicas)
        self.cluster = SentinelCluster(workdir)
        self.stack: Stack | None = None
        self.killed_at: float | None = None
        self.lock = threading.Lock()
        self.give_up = 0.0

    def start(self) -> None:
        self.cluster.start()
        port = free_port()
        env = dict(os.environ, PYTHONPATH=KIT_PYTHONPATH, FLASK_SKIP_DOTENV="1")
        env.pop("REDIS_URL", None)
        env.update(
            FLASK_QUEUE_NAME=f"failover_{uuid.uuid4().hex[:12]}",
            FLASK_JOB_MODULES=json.dumps(["reliability_jobs"]),
            FLASK_REDIS_SENTINELS=self.cluster.sentinels,
            FLASK_REDIS_SENTINEL_MASTER=MASTER,
            FLASK_REDIS_WAIT_REPLICAS=str(self.report.wait_replicas),
            RELIABILITY_LOG=str(self.workdir / "ledger.log"),
            **LEASES,
        )
        logs = self.workdir / "logs"
        logs.mkdir()
        self.stack = stack = Stack(f"http://127.0.0.1:{port}", env, logs)
        stack.start(
            "web", [sys.executable, "-m", "flask", "--app", PACKAGE, "run", "--port", str(port)]
        )
        worker = [sys.executable, "-m", f"{PACKAGE}.worker", "--workers", "2", "-c", "1"]
        stack.start("worker", worker)
        wait_for(lambda: _answers(stack.base_url + "/healthz"), "the web server did not start", 30)

    def stop(self) -> None:
        if self.stack is not None:
            for name in list(self.stack.processes):
                self.stack.stop(name)
        self.cluster.stop()

    def run(self, settle: float = 60.0) -> Report:
        t0 = time.monotonic()
        self.give_up = t0 + self.duration + settle
        interval = self.duration / self.report.jobs
        killer = threading.Thread(target=self._fail_over, args=(t0 + self.duration / 3,))
        killer.start()
        with ThreadPoolExecutor(8) as pool:
            for i in range(self.report.jobs):
                time.sleep(max(0.0, t0 + i * interval - time.monotonic()))
                pool.submit(self._send, i)
        killer.join()
        self._wait_for_runs(time.monotonic() + settle)
        return self.report

    def _fail_over(self, at: float) -> None:
        time.sleep(max(0.0, at - time.monotonic()))
        old = self.cluster.primary_port
        self.killed_at = time.monotonic()
        self.cluster.kill(old)
        wait_for(lambda: self.cluster.master_port() not in (old, None), "no failover", 30)
        self.report.promoted_after = time.monotonic() - self.killed_at
        self.cluster.restart(old, self.cluster.master_port())

    def _send(self, i: int) -> None:
        key = uuid.uuid4().hex
        body = json.dumps({"tag": f"failover{i}", "seconds": 0}).encode()
        while time.monotonic() < self.give_up:
            code, answer, took = self._post(body, key)
            now = time.monotonic()
            with self.lock:
                self.report.answers[code] += 1
                self.report.slowest = max(self.report.slowest, took)
                since_kill = None if self.killed_at is None else now - self.killed_at
                if code in (200, 202):
                    self.report.accepted.add(answer["id"])
                    refused = self.report.refused_from is not None
                    if refused and since_kill is not None and self.report.accepted_again is None:
                        self.report.accepted_again = since_kill
                    return
                if since_kill is not None and self.report.refused_from is None:
                    self.report.refused_from = since_kill
            if code != 503:
                return  # a 500 or no answer: counted, and the test says so
            time.sleep(0.1)
        with self.lock:
            self.report.unaccepted += 1

    def _post(self, body: bytes, key: str) -> tuple[int, dict, float]:
        request = urllib.request.Request(
            f"{self.stack.base_url}/jobs/{JOB}", data=body, method="POST"
        )
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", AUTHORIZATION)
        request.add_header("Idempotency-Key", key)
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                code, answer = response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            code, answer = exc.code, {}
            if code == 503 and not exc.headers.get("Retry-After"):
                with self.lock:
                    self.report.no_retry_after += 1
        except (OSError, ValueError):  # no answer in 30 s, or not JSON
            code, answer = 0, {}
        return code, answer, time.monotonic() - started

    def _wait_for_runs(self, deadline: float) -> None:
        """Until every accepted job ran, or nothing new ran for a while."""
        quiet_since, seen = time.monotonic(), -1
        while time.monotonic() < deadline:
            self.report.ran = self._ended()
            if not self.report.lost:
                return
            if len(self.report.ran) != seen:
                quiet_since, seen = time.monotonic(), len(self.report.ran)
            # A dead worker's jobs are back within LEASE_TIMEOUT + REAPER_INTERVAL.
            if time.monotonic() - quiet_since > 10:
                return
            time.sleep(0.2)

    def _ended(self) -> set[str]:
        path = self.workdir / "ledger.log"
        if not path.exists():
            return set()
        lines = (line.split(" ") for line in path.read_text().splitlines())
        return {words[1] for words in lines if words[0] == "end"}


def run(workdir: Path, jobs: int, wait_replicas: int, duration: float = 6.0) -> Report:
    failover = Failover(workdir, jobs, wait_replicas, duration)
    try:
        failover.start()
        return failover.run()
    finally:
        failover.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--wait-replicas", type=int, default=0)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of dispatching")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        report = run(Path(workdir), args.jobs, args.wait_replicas, args.duration)
    print(report.summary())
    return 1 if report.answers[500] or report.answers[0] else 0


if __name__ == "__main__":
    sys.exit(main())
