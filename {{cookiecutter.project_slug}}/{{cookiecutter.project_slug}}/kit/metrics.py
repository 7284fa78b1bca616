"""``GET /metrics``: what the jobs are doing, in Prometheus' text format.

Series (``job_name`` is the job's registered name)::

    jobs_enqueued_total{job_name}        jobs queued (web, CLI, code)
    jobs_completed_total{job_name}       jobs that ran to completion
    jobs_failed_total{job_name}          jobs that failed for good (no retry left)
    jobs_retried_total{job_name}         failed attempts scheduled to run again
    jobs_recovered_total{job_name}       jobs re-queued after their worker died
    jobs_timed_out_total{job_name}       attempts stopped at their timeout
    jobs_duration_seconds{job_name}      histogram of attempt run times
    jobs_queue_depth{queue}              jobs waiting to start
    jobs_scheduled{queue}                jobs waiting for a later time (retries, ETAs)
    jobs_oldest_queued_age_seconds{queue}  how long the next job has waited
    jobs_workers_alive{queue}            huey workers (threads or processes) heartbeating

Where the numbers live
----------------------
A job is queued by one of many web processes and run by one of many worker
processes, usually on other machines. So every process adds its counts to
the queue's own backend (a Redis hash, or two tables in the SQLite file) and
``/metrics`` reads the totals from there when it is scraped. Any web
process on any machine answers with the same cluster-wide numbers and
nothing is served from process memory, which is what makes the endpoint
safe under gunicorn's many workers without prometheus_client's
multiprocess directory, and lets worker machines stay unscraped. Scrape
one web instance (or take ``max`` over several): they all report the same
totals, which survive restarts of every process.

Counting costs no round trip per job: a process adds its counts up in
memory and writes them in one batch (pipelined ``HINCRBY``, or one SQLite
transaction) every ``METRICS_FLUSH_INTERVAL`` seconds, together with the
heartbeat of the workers it runs. A process that is killed outright loses
at most that interval of counts.

Access needs credentials, like the monitor: a bearer token
(``METRICS_TOKEN``, what Prometheus' ``authorization`` setting sends) or
the monitor's HTTP Basic user (``MONITOR_USERNAME``/``MONITOR_PASSWORD``).
With neither configured the endpoint answers 403 and says so.
"""

import atexit
import base64
import bisect
import collections
import datetime
import hmac
import json
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from huey import Huey
from huey import signals as S
from huey.api import Task
from huey.storage import RedisStorage, SqliteStorage
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from .monitor import security
from .queue import BACKEND_ERRORS
from .state import kit_state

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

COUNTERS = {
    "enqueued": "Jobs queued, by the HTTP API, the CLI or code.",
    "completed": "Jobs whose run finished without an error.",
    "failed": "Jobs that failed for good: an attempt raised or timed out with no retry left.",
    "retried": "Failed attempts that were scheduled to run again.",
    "recovered": "Jobs put back in the queue because the worker running them died.",
    "timed_out": "Attempts stopped because they ran past the job's timeout.",
}

_SEP = "\t"  # between the parts of a stored key: event, job name, bucket


def _key(*parts: str) -> str:
    return _SEP.join(parts)


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


class Recorder:
    """Counts what happens to jobs in this process and writes it in batches.

    One per app (so per Huey instance). Recording is a dict update under a
    lock; a daemon thread per process writes the batch to the backend.
    """

    def __init__(self, huey: Huey, buckets: Iterable[float], flush_interval: float):
        self.huey = huey
        self.buckets = (*sorted(float(b) for b in buckets), float("inf"))
        self.bucket_names = tuple(_bound(b) for b in self.buckets)
        self.flush_interval = float(flush_interval)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: collections.Counter[str] = collections.Counter()
        self._slots = 0  # huey workers (threads) running in this process
        self._announced = False  # whether a heartbeat for this process is stored
        self._owner_pid: int | None = None  # the process whose thread flushes
        self._failing = False
        _recorders.add(self)

    # -- recording -----------------------------------------------------

    def count(self, event: str, job_name: str, amount: int = 1) -> None:
        self._start_flusher()
        with self._lock:
            self._pending[_key(event, job_name)] += amount

    def observe(self, job_name: str, seconds: float) -> None:
        index = bisect.bisect_left(self.buckets, seconds)
        self._start_flusher()
        with self._lock:
            self._pending[_key("duration_count", job_name)] += 1
            self._pending[_key("duration_sum_us", job_name)] += round(seconds * 1_000_000)
            self._pending[_key("duration_bucket", job_name, self.bucket_names[index])] += 1

    def on_signal(self, signal: str, task: Task, *args: Any) -> None:
        """Huey signal handler: runs in the worker for each job transition."""
        if signal == S.SIGNAL_EXECUTING:
            task._metrics_started = time.monotonic()
            return
        name = task.name
        if signal == S.SIGNAL_COMPLETE:
            self.count("completed", name)
        elif signal in (S.SIGNAL_ERROR, S.SIGNAL_TIMEOUT):
            if signal == S.SIGNAL_TIMEOUT:
                self.count("timed_out", name)
            # Huey decides to retry after this signal, from task.retries.
            if not task.retries:
                self.count("failed", name)
        elif signal == S.SIGNAL_RETRYING:
            self.count("retried", name)
        else:
            return
        started = getattr(task, "_metrics_started", None)
        if started is not None and signal != S.SIGNAL_RETRYING:
            self.observe(name, time.monotonic() - started)

    def job_recovered(self, recovery: Any) -> None:
        """Lease reaper listener: a job whose worker died was dealt with.

        Queued again, it counts as recovered; parked (out of attempts or
        recoveries), it failed for good.
        """
        self.count("recovered" if recovery.requeued else "failed", recovery.job_name)

    def worker_started(self) -> None:
        """Huey startup hook: one more worker runs in this process."""
        self._start_flusher()
        with self._lock:
            self._slots += 1
            self._announced = True
        self.flush()

    def worker_stopped(self) -> None:
        """Huey shutdown hook: write the counts; the last worker signs off."""
        with self._lock:
            self._slots = max(0, self._slots - 1)
        self.flush()

    # -- writing -------------------------------------------------------

    def _start_flusher(self) -> None:
        # Once per process: after_fork() clears the owner in a forked child.
        if self._owner_pid is not None:
            return
        with self._lock:
            if self._owner_pid is not None:
                return
            pid = self._owner_pid = os.getpid()
            self.worker_id = f"{socket.gethostname()}:{pid}"
        thread = threading.Thread(target=self._run, name="metrics-flush", daemon=True)
        thread.start()

    def _run(self) -> None:
        pid = os.getpid()
        while self._owner_pid == pid:
            time.sleep(self.flush_interval)
            self.flush()

    def after_fork(self) -> None:
        # A forked child starts with a copy of the parent's unwritten counts
        # (the parent writes them) and with no flushing thread.
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending = collections.Counter()
        self._slots = 0
        self._announced = False
        self._owner_pid = None

    def flush(self) -> None:
        """Write this process's counts (and worker heartbeat) to the backend."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, collections.Counter()
                slots, announced = self._slots, self._announced
                self._announced = slots > 0
            if not pending and not announced:
                return
            # slots == 0 removes this process's heartbeat: its workers stopped.
            heartbeat = (self.worker_id, slots, time.time()) if announced else None
            try:
                store_for(self.huey).add(pending, heartbeat)
            except BACKEND_ERRORS as exc:
                with self._lock:
                    self._pending.update(pending)  # try again next time
                    self._announced = self._announced or announced
                if not self._failing:
                    log.warning("could not write job metrics, will retry: %s", exc)
                self._failing = True
            else:
                self._failing = False


_recorders: "weakref.WeakSet[Recorder]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for recorder in list(_recorders):
        recorder.after_fork()


def _flush_all_at_exit() -> None:
    for recorder in list(_recorders):
        if recorder._owner_pid == os.getpid():
            recorder.flush()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_flush_all_at_exit)


# -- storage ------------------------------------------------------------


@dataclass
class Snapshot:
    """Everything one scrape reads, in one round trip where possible."""

    counters: dict[str, int] = field(default_factory=dict)
    workers: dict[str, tuple[int, float]] = field(default_factory=dict)  # id → (slots, seen)
    depth: int = 0
    scheduled: int = 0
    oldest: bytes | None = None  # the serialized job that will run next


class RedisMetricsStore:
    def __init__(self, storage: RedisStorage):
        self.storage = storage
        self.key = f"huey.metrics.{storage.name}"
        self.workers_key = f"huey.metrics.{storage.name}.workers"

    def add(self, counts: dict[str, int], heartbeat: tuple[str, int, float] | None) -> None:
        pipe = self.storage.conn.pipeline(transaction=False)
        for key, amount in counts.items():
            pipe.hincrby(self.key, key, amount)
        if heartbeat:
            worker, slots, seen = heartbeat
            if slots:
                pipe.hset(self.workers_key, worker, json.dumps([slots, seen]))
            else:
                pipe.hdel(self.workers_key, worker)
        pipe.execute()

    def read(self, stale_after: float) -> Snapshot:
        pipe = self.storage.conn.pipeline(transaction=False)
        pipe.hgetall(self.key)
        pipe.hgetall(self.workers_key)
        pipe.llen(self.storage.queue_key)
        pipe.lindex(self.storage.queue_key, -1)  # LPUSH in, BRPOP out: the tail is next
        pipe.zcard(self.storage.schedule_key)
        counters, workers, depth, oldest, scheduled = pipe.execute()
        snapshot = Snapshot(
            counters={k.decode(): int(v) for k, v in counters.items()},
            depth=depth,
            scheduled=scheduled,
            oldest=oldest,
        )
        snapshot.workers, gone = _split_workers(
            {k.decode(): json.loads(v) for k, v in workers.items()}, stale_after
        )
        if gone:
            self.storage.conn.hdel(self.workers_key, *gone)
        return snapshot


class SqliteMetricsStore:
    DDL = (
        "create table if not exists metrics_counter (queue text not null, key text not null,"
        " value integer not null default 0, primary key (queue, key))",
        "create table if not exists metrics_worker (queue text not null, worker text not null,"
        " slots integer not null, seen real not null, primary key (queue, worker))",
    )

    def __init__(self, storage: SqliteStorage):
        self.storage = storage
        if not getattr(storage, "_metrics_tables", False):
            with storage.db(commit=True) as cursor:
                for statement in self.DDL:
                    cursor.execute(statement)
            storage._metrics_tables = True

    def add(self, counts: dict[str, int], heartbeat: tuple[str, int, float] | None) -> None:
        name = self.storage.name
        with self.storage.db(commit=True) as cursor:
            cursor.executemany(
                "insert into metrics_counter (queue, key, value) values (?, ?, ?)"
                " on conflict (queue, key) do update set value = value + excluded.value",
                [(name, key, amount) for key, amount in counts.items()],
            )
            if heartbeat and heartbeat[1]:
                cursor.execute(
                    "insert or replace into metrics_worker (queue, worker, slots, seen)"
                    " values (?, ?, ?, ?)",
                    (name, *heartbeat),
                )
            elif heartbeat:
                cursor.execute(
                    "delete from metrics_worker where queue = ? and worker = ?",
                    (name, heartbeat[0]),
                )

    def read(self, stale_after: float) -> Snapshot:
        name = self.storage.name
        with self.storage.db() as cursor:
            counters = cursor.execute(
                "select key, value from metrics_counter where queue = ?", (name,)
            ).fetchall()
            workers = cursor.execute(
                "select worker, slots, seen from metrics_worker where queue = ?", (name,)
            ).fetchall()
            oldest = cursor.execute(
                "select data from task where queue = ? order by priority desc, id limit 1",
                (name,),
            ).fetchone()
        snapshot = Snapshot(
            counters=dict(counters),
            depth=self.storage.queue_size(),
            scheduled=self.storage.schedule_size(),
            oldest=bytes(oldest[0]) if oldest else None,
        )
        snapshot.workers, gone = _split_workers(
            {worker: [slots, seen] for worker, slots, seen in workers}, stale_after
        )
        if gone:
            marks = ",".join("?" * len(gone))
            self.storage.sql(
                f"delete from metrics_worker where queue = ? and worker in ({marks})",
                (name, *gone),
                commit=True,
            )
        return snapshot


class MemoryMetricsStore:
    """Immediate mode (tests): Huey's in-memory storage, this process only."""

    def __init__(self, storage: Any):
        self.storage = storage
        if not hasattr(storage, "_metrics"):
            storage._metrics = (collections.Counter(), {})

    def add(self, counts: dict[str, int], heartbeat: tuple[str, int, float] | None) -> None:
        counters, workers = self.storage._metrics
        counters.update(counts)
        if heartbeat and heartbeat[1]:
            workers[heartbeat[0]] = [heartbeat[1], heartbeat[2]]
        elif heartbeat:
            workers.pop(heartbeat[0], None)

    def read(self, stale_after: float) -> Snapshot:
        counters, workers = self.storage._metrics
        items = self.storage.enqueued_items(limit=1)
        snapshot = Snapshot(
            counters=dict(counters),
            depth=self.storage.queue_size(),
            scheduled=self.storage.schedule_size(),
            oldest=items[0] if items else None,
        )
        snapshot.workers, _ = _split_workers(dict(workers), stale_after)
        return snapshot


# Heartbeats older than this are deleted when read, not just ignored.
FORGET_WORKERS_AFTER = 24 * 3600


def _split_workers(
    raw: dict[str, list], stale_after: float
) -> tuple[dict[str, tuple[int, float]], list[str]]:
    now = time.time()
    alive = {w: (int(s), float(t)) for w, (s, t) in raw.items() if now - t <= stale_after}
    gone = [w for w, (_, t) in raw.items() if now - t > FORGET_WORKERS_AFTER]
    return alive, gone


def store_for(huey: Huey) -> RedisMetricsStore | SqliteMetricsStore | MemoryMetricsStore:
    storage = huey.storage  # immediate mode swaps it, so look it up each time
    if isinstance(storage, RedisStorage):
        return RedisMetricsStore(storage)
    if isinstance(storage, SqliteStorage):
        return SqliteMetricsStore(storage)
    return MemoryMetricsStore(storage)


# -- exposition ---------------------------------------------------------


class JobsCollector(Collector):
    """Turns one :class:`Snapshot` into Prometheus metric families."""

    def __init__(self, huey: Huey, snapshot: Snapshot, recorder: Recorder, queue: str):
        self.huey = huey
        self.snapshot = snapshot
        self.recorder = recorder
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        per_event: dict[str, dict[str, int]] = collections.defaultdict(dict)
        buckets: dict[str, dict[str, int]] = collections.defaultdict(dict)
        for key, value in self.snapshot.counters.items():
            event, _, rest = key.partition(_SEP)
            if event == "duration_bucket":
                job_name, _, bound = rest.rpartition(_SEP)
                buckets[job_name][bound] = value
            else:
                per_event[event][rest] = value
        job_names = sorted({n for counts in per_event.values() for n in counts} | set(buckets))

        for event, help_text in COUNTERS.items():
            family = CounterMetricFamily(f"jobs_{event}", help_text, labels=["job_name"])
            for job_name in job_names:
                family.add_metric([job_name], per_event[event].get(job_name, 0))
            yield family

        histogram = HistogramMetricFamily(
            "jobs_duration_seconds", "How long job attempts ran.", labels=["job_name"]
        )
        for job_name in sorted(buckets):
            stored = buckets[job_name]
            bounds = sorted(set(stored) | set(self.recorder.bucket_names), key=float)
            running, cumulative = 0, []
            for bound in bounds:
                running += stored.get(bound, 0)
                cumulative.append((bound, running))
            total_us = per_event["duration_sum_us"].get(job_name, 0)
            histogram.add_metric([job_name], cumulative, total_us / 1_000_000)
        yield histogram

        labels = ["queue"]
        workers = sum(slots for slots, _ in self.snapshot.workers.values())
        scheduled = self.snapshot.scheduled
        for name, help_text, value in (
            ("jobs_queue_depth", "Jobs waiting for a worker.", self.snapshot.depth),
            ("jobs_scheduled", "Jobs waiting for a later time: retries, ETAs.", scheduled),
            ("jobs_workers_alive", "Huey workers with a recent heartbeat.", workers),
        ):
            gauge = GaugeMetricFamily(name, help_text, labels=labels)
            gauge.add_metric([self.queue], value)
            yield gauge
        age = GaugeMetricFamily(
            "jobs_oldest_queued_age_seconds",
            "Seconds the next job to start has been waiting (0 when none waits).",
            labels=labels,
        )
        waited = self.oldest_age()
        if waited is not None:
            age.add_metric([self.queue], waited)
        yield age

    def oldest_age(self) -> float | None:
        if self.snapshot.oldest is None:
            return 0.0
        try:
            message = self.huey.serializer.deserialize(self.snapshot.oldest)
        except (ValueError, TypeError) as exc:
            log.warning("could not read the oldest queued job: %s", exc)
            return None
        meta = (message.kwargs or {}).get("meta") or {}
        since = meta.get("enqueued_at")
        if since is None:  # queued by code that bypasses the kit's enqueue()
            return None
        eta = message.eta
        if eta is not None:  # a retry or a scheduled job: it waits since then
            if eta.tzinfo is None:  # Huey keeps naive UTC times (utc=True)
                eta = eta.replace(tzinfo=datetime.UTC)
            since = max(since, eta.timestamp())
        return max(0.0, time.time() - since)


# -- the endpoint -------------------------------------------------------


def _authorized() -> bool | None:
    """True/False for good/bad credentials; None when none are configured."""
    config = current_app.config
    token = config.get("METRICS_TOKEN")
    username, password = config.get("MONITOR_USERNAME"), config.get("MONITOR_PASSWORD")
    if not token and not (username and password):
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if token and scheme.lower() == "bearer":
        return hmac.compare_digest(value.encode(), str(token).encode())
    if username and password and scheme.lower() == "basic":
        try:
            given = base64.b64decode(value, validate=True).decode()
        except ValueError:  # also bytes that are not UTF-8
            return False
        user, _, secret = given.partition(":")
        # The monitor's check: constant time, and the same limit on failures.
        return security.check_credentials(user, secret)
    return False


@bp.get("/metrics")
def metrics() -> Response:
    allowed = _authorized()
    if allowed is None:
        return Response(
            "/metrics is closed: set FLASK_METRICS_TOKEN (sent as 'Authorization: Bearer"
            " <token>') or FLASK_MONITOR_USERNAME and FLASK_MONITOR_PASSWORD (HTTP Basic).\n",
            403,
            mimetype="text/plain",
        )
    if not allowed:
        challenge = 'Basic realm="metrics"' if current_app.config.get("MONITOR_USERNAME") else ""
        response = Response("credentials required\n", 401, mimetype="text/plain")
        response.headers["WWW-Authenticate"] = challenge or 'Bearer realm="metrics"'
        return response

    kit = kit_state()
    huey: Huey = kit.huey
    recorder: Recorder = kit.metrics
    recorder.flush()  # this process's own counts are up to date at least
    try:
        snapshot = store_for(huey).read(current_app.config["METRICS_WORKER_TTL"])
    except BACKEND_ERRORS as exc:
        return Response(f"the job store is unreachable: {exc}\n", 503, mimetype="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(huey, snapshot, recorder, current_app.config["QUEUE_NAME"]))
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(registry), 200, headers={"Content-Type": content_type})


@bp.record_once
def _install(state: BlueprintSetupState) -> None:
    init_app(state.app)


def init_app(app: Flask) -> Recorder:
    """Count job events on the app's Huey (called when the blueprint is registered)."""
    kit = kit_state(app)
    huey: Huey = kit.huey
    recorder = Recorder(
        huey, app.config["METRICS_DURATION_BUCKETS"], app.config["METRICS_FLUSH_INTERVAL"]
    )
    huey.signal()(recorder.on_signal)
    huey.on_startup("metrics_heartbeat")(recorder.worker_started)
    huey.on_shutdown("metrics_heartbeat")(recorder.worker_stopped)
    if kit.leases is not None:  # the reaper that re-queues jobs of dead workers
        kit.leases.on_recovery(recorder.job_recovered)
    kit.metrics = recorder
    return recorder
