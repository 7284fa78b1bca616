"""Chaos runs: real processes killed, and Redis crashed, while jobs flow.

``run`` starts a web server, a few kit workers (``python -m <package>.worker``)
and, on Redis, a ``redis-server`` of its own that writes every command to its
append-only file before answering. It dispatches jobs over HTTP at a steady
pace and meanwhile, at moments drawn from a seed, SIGKILLs single worker
processes and whole consumers (each restarted after a moment) and, on Redis,
crashes the server, stops it for an outage, or freezes it. Then it waits until
every dispatched job has run to its end, or can no longer, and reads the
ledger that the job ``testLedger`` (reliability_jobs.py, registered with the
defaults: no retries) appends to (the SIGKILLs go to ``kills.log``)::

    <start|end> <job id> <attempt> <pid> <unix time> <tag>

A job with no ``end`` is lost. A job started more often than the kills
explain is a duplicate: a run cut short by the SIGKILL of its process must
run again (that is the delivery promise), any other second run must not.

test_chaos.py runs this at a small size; the template's scripts/chaos.py at
full size, with the kit's default settings.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import random
import shutil
import signal
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from acme_jobs.kit.history.model import ACTIVE
from conftest import KIT_PYTHONPATH, PACKAGE, Stack, _answers
from support import PrivateRedis, descendants, free_port, wait_for
from test_reliability import LEASES, history, kill_worker, runs

JOB = "testLedger"
# A scenario fails when more jobs than this (percent) ran twice unexplained.
DUPLICATE_LIMIT = 1.0
# --fast: the lease timings of the reliability tests (a dead worker's jobs
# are back within ~2.5 s instead of ~40 s) and Huey's check for dead worker
# processes every second instead of every ten.
FAST_SETTINGS = dict(LEASES)
# Seconds after a job's end within which a kill may still beat the kit's
# record of it (see tally).
RECORD_WINDOW = 2.0
FAST_WORKER_FLAGS = ("-c", "1")


@dataclass(frozen=True)
class Scenario:
    """What one chaos run does; the defaults are the full-size run."""

    backend: str  # "redis" or "sqlite"
    seed: int
    jobs: int = 1000
    kills: int = 15
    consumers: int = 3
    # Jobs are dispatched evenly over this many seconds, and the disturbances
    # fall within them.
    duration: float = 60.0
    job_seconds: tuple[float, float] = (0.05, 0.45)
    # Redis only: SIGKILL-and-restart count, outage length, freeze length.
    redis_crashes: int = 1
    outage: float = 20.0
    freeze: float = 0.0
    # Longest wait, after the last disturbance, for every job to end.
    settle: float = 180.0
    settings: Mapping[str, str] = field(default_factory=dict)  # FLASK_<NAME> values
    worker_flags: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"{self.backend}: {self.jobs} jobs, {self.kills} kills", f"seed {self.seed}"]
        if self.backend == "redis":
            parts.append(f"{self.redis_crashes} redis crash(es)")
            if self.outage:
                parts.append(f"{self.outage:g} s outage")
            if self.freeze:
                parts.append(f"{self.freeze:g} s freeze")
        parts.append("fast leases" if self.settings else "default settings")
        return ", ".join(parts)


@dataclass(order=True)
class Event:
    """One disturbance (or its end), ``at`` seconds after the start."""

    at: float
    action: str
    target: str = field(default="", compare=False)
    pause: float = field(default=0.0, compare=False)  # until the matching restart


@dataclass
class Report:
    scenario: Scenario
    jobs: int  # dispatched: the web answered 202
    kills: Counter
    redis: list[str]
    lost: dict[str, str]  # job id -> what the history and the ledger say
    misrecorded: dict[str, str]  # job id -> history status, for jobs that ended
    cut: int  # runs cut short by the SIGKILL of their process
    restarted: int  # jobs cut short by a kill and started again
    duplicates: list[str]  # jobs started more often than the kills explain
    started_twice: int
    ended_twice: int
    recoveries: list[float]  # seconds from a kill to the cut job's next start
    counts: dict[str, int]  # the history's counts for the job
    outcome: str  # how the wait for the last jobs ended
    seconds: float
    errors: list[str] = field(default_factory=list)

    @property
    def duplicate_percent(self) -> float:
        return 100.0 * len(self.duplicates) / max(1, self.jobs)

    def problems(self) -> list[str]:
        found = list(self.errors)
        made = sum(self.kills.values())
        if made < self.scenario.kills:
            found.append(f"only {made} of {self.scenario.kills} kills were made")
        if self.jobs < self.scenario.jobs:
            found.append(f"only {self.jobs} of {self.scenario.jobs} jobs were dispatched")
        if self.lost:
            found.append(f"{len(self.lost)} job(s) lost")
        if self.duplicate_percent >= DUPLICATE_LIMIT:
            found.append(f"duplicates {self.duplicate_percent:.2f}% >= {DUPLICATE_LIMIT}%")
        return found

    def recovery(self) -> str:
        if not self.recoveries:
            return "-"
        return f"{statistics.median(self.recoveries):.1f}/{max(self.recoveries):.1f}s"

    def summary(self) -> str:
        kills = ", ".join(f"{n} {kind}" for kind, n in sorted(self.kills.items()))
        lines = [
            f"{self.scenario.describe()}",
            f"  dispatched {self.jobs}, kills: {kills or 'none'}"
            + (f"; redis: {', '.join(self.redis)}" if self.redis else ""),
            f"  lost {len(self.lost)}; restarted after a kill {self.restarted}; "
            f"duplicates {len(self.duplicates)} ({self.duplicate_percent:.2f}%); "
            f"started twice or more {self.started_twice}; ended twice or more "
            f"{self.ended_twice}",
            f"  runs cut by a kill {self.cut}, started again {len(self.recoveries)}; "
            f"from the kill to the next start p50/max {self.recovery()}",
            f"  history of {JOB}: {format_counts(self.counts)}; jobs that ended but are "
            f"recorded otherwise: {format_counts(Counter(self.misrecorded.values()))}",
            f"  {self.outcome}; {self.seconds:.0f} s in all",
        ]
        lines += [f"  lost {job_id}: {what}" for job_id, what in list(self.lost.items())[:20]]
        if len(self.lost) > 20:
            lines.append(f"  ... and {len(self.lost) - 20} more lost")
        lines += [f"  duplicate {job_id}" for job_id in self.duplicates[:10]]
        lines += [f"  problem: {problem}" for problem in self.problems()]
        return "\n".join(lines)


def format_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items()) if n) or "none"


def plan(scenario: Scenario, rng: random.Random) -> list[Event]:
    """The disturbances, at random moments within the scenario's duration."""
    start, end = 2.0, max(scenario.duration, 4.0)
    kinds = [rng.choice(("consumer", "process")) for _ in range(scenario.kills)]
    if len(kinds) >= 2:  # both kinds, always
        kinds[:2] = ["consumer", "process"]
        rng.shuffle(kinds)
    events = [
        Event(rng.uniform(start, end), f"kill-{kind}", pause=rng.uniform(0.2, 2.0))
        for kind in kinds
    ]
    if scenario.backend != "redis":
        return sorted(events)
    spans = [("redis-kill", rng.uniform(0.5, 2.0))] * scenario.redis_crashes
    spans += [("redis-stop", scenario.outage)] if scenario.outage else []
    spans += [("redis-freeze", scenario.freeze)] if scenario.freeze else []
    rng.shuffle(spans)
    # Redis disturbances never overlap: each gets its span and 5 s after it.
    room = max(0.0, end - start - sum(length + 5 for _, length in spans))
    at = start
    for offset, (action, length) in zip(
        sorted(rng.uniform(0, room) for _ in spans), spans, strict=True
    ):
        events.append(Event(at + offset, action, pause=length))
        at += length + 5
    return sorted(events)


class Chaos:
    """One run's processes, disturbances and bookkeeping."""

    def __init__(self, scenario: Scenario, workdir: Path, say: Callable[[str], None]):
        self.scenario = scenario
        self.workdir = workdir
        self.say = say
        self.rng = random.Random(scenario.seed)
        self.names = [f"worker{i + 1}" for i in range(scenario.consumers)]
        self.redis: PrivateRedis | None = None
        self.stack: Stack | None = None
        self.deaths: dict[int, float] = {}  # pid -> unix time of its SIGKILL
        self.kills: Counter = Counter()
        self.redis_done: list[str] = []
        self.ids: list[str] = []
        self.errors: list[str] = []
        self.t0 = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # Processes.

    def start(self) -> None:
        port = free_port()
        env = dict(os.environ, PYTHONPATH=KIT_PYTHONPATH, FLASK_SKIP_DOTENV="1")
        env.update(
            FLASK_QUEUE_NAME=f"chaos_{uuid.uuid4().hex[:12]}",
            FLASK_JOB_MODULES=json.dumps(["reliability_jobs"]),
            RELIABILITY_LOG=str(self.workdir / "ledger.log"),
            **self.scenario.settings,
        )
        env.pop("REDIS_URL", None)
        if self.scenario.backend == "redis":
            binary = shutil.which("redis-server")
            if binary is None:
                raise RuntimeError("the Redis scenario needs a redis-server binary")
            self.redis = PrivateRedis(binary, free_port(), self.workdir, aof=True)
            self.redis.start()
            env["REDIS_URL"] = self.redis.url
        else:
            env["FLASK_SQLITE_PATH"] = json.dumps(str(self.workdir / "queue.sqlite3"))
        logs = self.workdir / "logs"
        logs.mkdir()
        self.stack = stack = Stack(f"http://127.0.0.1:{port}", env, logs)
        stack.runs_log = self.workdir / "ledger.log"
        stack.start(
            "web", [sys.executable, "-m", "flask", "--app", PACKAGE, "run", "--port", str(port)]
        )
        for name in self.names:
            self.start_consumer(name)
        wait_for(lambda: _answers(stack.base_url + "/healthz"), "the web server did not start", 30)

    def start_consumer(self, name: str) -> None:
        argv = [sys.executable, "-m", f"{PACKAGE}.worker", *self.scenario.worker_flags]
        self.stack.start(name, argv)

    def stop(self) -> None:
        self._stop.set()
        if self.redis is not None:
            self.redis.thaw()
            if self.redis.process is None:  # so that the workers can stop cleanly
                with contextlib.suppress(TimeoutError):
                    self.redis.start()
        if self.stack is not None:
            for name in list(self.stack.processes):
                self.stack.stop(name)
        if self.redis is not None:
            self.redis.stop()

    # Dispatching.

    def dispatch(self) -> None:
        """POST the jobs at an even pace; a refused one (503) is sent again."""
        rng = random.Random(self.scenario.seed + 1)
        low, high = self.scenario.job_seconds
        interval = self.scenario.duration / max(1, self.scenario.jobs)
        with ThreadPoolExecutor(4) as pool:
            for i in range(self.scenario.jobs):
                payload = {"tag": f"chaos{i}", "seconds": round(rng.uniform(low, high), 3)}
                self._stop.wait(max(0.0, self.t0 + i * interval - time.monotonic()))
                pool.submit(self._send, payload)

    def _send(self, payload: dict) -> None:
        while not self._stop.is_set():
            try:
                code, body = self.stack.request("POST", f"/jobs/{JOB}", payload)
            except (OSError, ValueError):  # no answer, or not JSON
                code, body = 0, {}
            if code == 202:
                with self._lock:
                    self.ids.append(body["id"])
                return
            if code not in (0, 503):
                self.errors.append(f"dispatch answered {code}: {body}")
                return
            self._stop.wait(0.2)

    # Disturbing.

    def disturb(self, events: list[Event]) -> None:
        heap = list(events)
        heapq.heapify(heap)
        while heap:
            event = heapq.heappop(heap)
            # A timeline, not a wait for a condition: each event has its moment.
            time.sleep(max(0.0, self.t0 + event.at - time.monotonic()))
            follow = self.apply(event)
            if follow is not None:
                heapq.heappush(heap, follow)
            self.revive()

    def apply(self, event: Event) -> Event | None:
        stack, redis = self.stack, self.redis
        later = Event(event.at + event.pause, "")
        if event.action == "kill-consumer":
            running = [name for name in self.names if name in stack.processes]
            if not running:
                self.log("no consumer is running: kill skipped")
                return None
            name = self.rng.choice(running)
            pids = kill_worker(stack, name)
            self.died(pids)
            self.kills["consumer"] += 1
            self.log(f"SIGKILL consumer {name} and its processes {pids}")
            later.action, later.target = "start-consumer", name
            return later
        if event.action == "kill-process":
            victim = self.pick_process()
            if victim is None:
                self.log("no worker process to kill: kill skipped")
                return None
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
            self.died([victim])
            self.kills["process"] += 1
            self.log(f"SIGKILL worker process {victim}")
            return None
        if event.action == "start-consumer":
            self.start_consumer(event.target)
            self.log(f"started consumer {event.target} again")
            return None
        if event.action == "redis-kill":
            redis.kill()
            self.redis_done.append("crash")
            self.log("SIGKILL redis-server")
            later.action = "redis-start"
            return later
        if event.action == "redis-stop":
            redis.stop()
            self.redis_done.append(f"{event.pause:g} s outage")
            self.log(f"redis-server stopped for {event.pause:g} s")
            later.action = "redis-start"
            return later
        if event.action == "redis-freeze":
            redis.freeze()
            self.redis_done.append(f"{event.pause:g} s freeze")
            self.log(f"SIGSTOP redis-server for {event.pause:g} s")
            later.action = "redis-thaw"
            return later
        if event.action == "redis-start":
            redis.start()
            self.log("redis-server started again")
        elif event.action == "redis-thaw":
            redis.thaw()
            self.log("SIGCONT redis-server")
        return None

    def pick_process(self) -> int | None:
        """A worker process, preferably one in the middle of a job."""
        children = [
            pid
            for name in self.names
            if name in self.stack.processes
            for pid in descendants(self.stack.processes[name].pid)
            if pid not in self.deaths and alive(pid)
        ]
        busy: dict[int, bool] = {}
        for run in runs(self.stack):
            busy[run["pid"]] = run["event"] == "start"
        for pool in ([p for p in children if busy.get(p)], [p for p in children if p in busy]):
            if pool:
                return self.rng.choice(pool)
        return self.rng.choice(children) if children else None

    def died(self, pids: list[int]) -> None:
        now = time.time()
        with open(self.workdir / "kills.log", "a") as kills:  # for a later look
            for pid in pids:
                self.deaths[pid] = now
                kills.write(f"{pid} {now:.6f}\n")

    def revive(self) -> None:
        """Start again a consumer that exited by itself (as systemd would)."""
        for name in self.names:
            process = self.stack.processes.get(name)
            if process is not None and process.poll() is not None:
                self.stack.processes.pop(name)
                self.errors.append(f"consumer {name} exited by itself ({process.returncode})")
                self.log(f"consumer {name} exited with {process.returncode}; starting it again")
                self.start_consumer(name)

    def log(self, message: str) -> None:
        self.say(f"[{time.monotonic() - self.t0:6.1f}s] {message}")

    # Waiting and counting.

    def settle(self, until: float, dispatcher: threading.Thread) -> str:
        """Wait until every job has ended, or those left can never end."""
        store = history(self.stack)
        final_checks = 0
        while time.monotonic() < until:
            self.revive()
            if not dispatcher.is_alive():
                ended = {run["id"] for run in runs(self.stack) if run["event"] == "end"}
                missing = [job_id for job_id in self.ids if job_id not in ended]
                if not missing:
                    return "every job ended"
                # Lost for good when the history says each is over (failed, ...).
                final_checks = final_checks + 1 if all_final(store, missing) else 0
                if final_checks >= 2:
                    return "the jobs left are over in the history"
            time.sleep(1)
        return f"gave up waiting after {self.scenario.settle:g} s"

    def report(self, outcome: str, seconds: float) -> Report:
        counted = tally(self.ids, runs(self.stack), self.deaths)
        store = history(self.stack)
        statuses = {}
        for job_id in self.ids:
            record = store.get(job_id)
            statuses[job_id] = record["status"] if record else "no history record"
        return Report(
            scenario=self.scenario,
            jobs=len(self.ids),
            kills=self.kills,
            redis=self.redis_done,
            lost={job_id: f"{statuses[job_id]}; {how}" for job_id, how in counted.unended.items()},
            misrecorded={
                job_id: status
                for job_id, status in statuses.items()
                if job_id not in counted.unended and status != "complete"
            },
            cut=counted.cut,
            restarted=counted.restarted,
            duplicates=counted.duplicates,
            started_twice=counted.started_twice,
            ended_twice=counted.ended_twice,
            recoveries=counted.recoveries,
            counts=store.counts(JOB),
            outcome=outcome,
            seconds=seconds,
            errors=self.errors,
        )


@dataclass
class Tally:
    """What the ledger says of the dispatched jobs, given the kills."""

    unended: dict[str, str] = field(default_factory=dict)  # job id -> its runs
    cut: int = 0
    restarted: int = 0
    recoveries: list[float] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    started_twice: int = 0
    ended_twice: int = 0


def tally(ids: list[str], ledger: list[dict], deaths: Mapping[int, float]) -> Tally:
    """Count lost jobs, runs cut by kills, their recovery, and duplicates.

    ``ledger`` is ``test_reliability.runs``'s reading of the ledger;
    ``deaths`` the unix time of each SIGKILLed pid. A second run is
    explained by a kill of the process of the run before it: one cut short,
    or one that ended so shortly before the kill that the kit may not have
    recorded its end yet (``RECORD_WINDOW``).
    """
    starts: dict[str, list[dict]] = {}
    ends: dict[str, list[dict]] = {}
    for entry in ledger:
        (starts if entry["event"] == "start" else ends).setdefault(entry["id"], []).append(entry)
    counted = Tally()
    for job_id in ids:
        mine, done = starts.get(job_id, []), ends.get(job_id, [])
        cut = [entry for entry in mine if killed_in(entry, done, deaths, 0.0)]
        explained, again = 0, []
        for entry in mine:
            if not killed_in(entry, done, deaths, RECORD_WINDOW):
                continue
            death = deaths[entry["pid"]]
            later = [other["at"] for other in mine if other["at"] > death]
            if later:
                explained += 1
                again.append(min(later) - death)
        counted.cut += len(cut)
        counted.recoveries += again
        counted.restarted += bool(again)
        if len(mine) - 1 > explained:
            counted.duplicates.append(job_id)
        counted.started_twice += len(mine) > 1
        counted.ended_twice += len(done) > 1
        if done:
            continue
        if not mine:
            counted.unended[job_id] = "never started"
        elif cut and cut[-1] is mine[-1]:
            counted.unended[job_id] = f"started {len(mine)}x, last run cut by a kill"
        else:
            counted.unended[job_id] = f"started {len(mine)}x, no end"
    return counted


def killed_in(run: dict, ends: list[dict], deaths: Mapping[int, float], window: float) -> bool:
    """True if the process of ``run`` was killed before it ended, or at most
    ``window`` seconds after."""
    death = deaths.get(run["pid"])
    if death is None or death < run["at"]:
        return False
    return not any(
        end["pid"] == run["pid"] and run["at"] <= end["at"] < death - window for end in ends
    )


def alive(pid: int) -> bool:
    """False for a process that is gone, or dead and not yet reaped (a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def all_final(store, job_ids: list[str]) -> bool:
    """True if the history records every one of ``job_ids`` as over."""
    for job_id in job_ids:
        try:
            record = store.get(job_id)
        except Exception:  # noqa: BLE001 - an unreachable store: not over yet
            return False
        if record is None or record["status"] in ACTIVE:
            return False
    return True


def run(scenario: Scenario, workdir: Path, say: Callable[[str], None] = print) -> Report:
    """Run ``scenario`` with its files (queue, ledger, logs) in ``workdir``."""
    chaos = Chaos(scenario, workdir, say)
    say(f"chaos {scenario.describe()}; files in {workdir}")
    try:
        chaos.start()
        chaos.t0 = started = time.monotonic()
        dispatcher = threading.Thread(target=chaos.dispatch, name="dispatch", daemon=True)
        dispatcher.start()
        chaos.disturb(plan(scenario, random.Random(scenario.seed)))
        chaos.log("last disturbance done; waiting for every job to end")
        outcome = chaos.settle(time.monotonic() + scenario.settle, dispatcher)
        chaos.log(outcome)
        return chaos.report(outcome, time.monotonic() - started)
    finally:
        chaos.stop()
