"""The job queue: one Huey instance per app, built from configuration.

``REDIS_URL`` set: Redis, through one shared connection pool with short
timeouts, so an unreachable or frozen Redis fails a request in about a second
instead of hanging it (``backends/redis_pool.py``). ``REDIS_SENTINELS`` set:
the same, to the master the sentinels name (``backends/sentinel.py``). Otherwise: SQLite in the
instance folder, the embedded default that needs no server. Tests use Huey's
immediate mode, which runs each job in the calling process.
"""

import contextlib
import datetime
import logging
import os
import time
import urllib.parse
import uuid
from typing import Any, NamedTuple

from flask import Flask
from huey import Huey
from huey.api import Task, TaskWrapper

from . import delays, idempotency, leases, queues, registry, run_state, unique
from .backends import BACKEND_ERRORS, open_backend, redis_pool, sentinel
from .controls import Controls, register_periodic
from .history import History
from .huey_seam import KitHuey
from .logs import current_job_info, get_request_id, job_log_context
from .progress import job_scope
from .serializer import JSONSerializer
from .state import EXTENSION, KitState, kit_state

log = logging.getLogger(__name__)


class UnknownJob(LookupError):
    """No job is registered under this name."""


class QueueUnavailable(RuntimeError):
    """The queue backend (Redis or the SQLite file) cannot be reached."""


class NotReplicated(QueueUnavailable):
    """The job is on the Redis master, but not on ``REDIS_WAIT_REPLICAS`` replicas in time.

    It runs unless the master dies before it replicates: send the dispatch
    again with the same idempotency key, which finds it rather than queueing
    a second one.
    """


class AlreadyRetried(RuntimeError):
    """The failed job to retry has been retried already (or is not failed)."""


def create_huey(config: dict[str, Any], instance_path: str) -> KitHuey:
    """Build the Huey instance described by the app's configuration.

    One class for both backends (``huey_seam.KitHuey``): the parts of the kit
    plug into its hooks in :func:`init_app`.
    """
    options = {"serializer": JSONSerializer(), "results": False, "utc": True}
    name = config["QUEUE_NAME"]
    if config.get("REDIS_SENTINELS"):
        # The master the sentinels name, found again after a failover.
        pool = sentinel.connection_pool(config)
    elif config.get("REDIS_URL"):
        # Short timeouts, no retry of a timeout, and fail-fast for a moment
        # after one (backends/redis_pool.py).
        pool = redis_pool.connection_pool(
            config["REDIS_URL"], config["REDIS_CONNECT_TIMEOUT"], config["REDIS_SOCKET_TIMEOUT"]
        )
    if config.get("REDIS_SENTINELS") or config.get("REDIS_URL"):
        huey = KitHuey(name, "redis", connection_pool=pool, **options)
        # A process that runs a consumer is a worker: its blocking takes wait
        # for a job longer than a web request waits for a reply.
        worker_timeout = config["REDIS_WORKER_SOCKET_TIMEOUT"]
        huey.hooks.consumer_listeners.append(
            lambda start: redis_pool.use_socket_timeout(pool, worker_timeout)
        )
    else:
        path = sqlite_path(config, instance_path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        huey = KitHuey(name, "sqlite", filename=path, **options)
    huey.immediate = bool(config.get("QUEUE_IMMEDIATE"))
    # The named queues its workers serve (``--queues`` may change them).
    huey.queues = queues.selection_from_config(config)
    return huey


def sqlite_path(config: dict[str, Any], instance_path: str) -> str:
    """The SQLite queue's file: ``SQLITE_PATH``, or ``queue.sqlite3`` in the instance folder."""
    return config.get("SQLITE_PATH") or os.path.join(instance_path, "queue.sqlite3")


def queue_location(config: dict[str, Any], instance_path: str) -> str:
    """Where the queue lives, for people: never a password or a user name.

    ``redis://host:6379/0`` (scheme, host, port and database), the SQLite
    file's path, or "memory" in immediate mode.
    """
    if config.get("QUEUE_IMMEDIATE"):
        return "memory (immediate mode)"
    url = config.get("REDIS_URL")
    if config.get("REDIS_SENTINELS"):
        # The master is whichever one the sentinels name: say whom they are asked.
        sentinels = ",".join(
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            for host, port in sentinel.parse_sentinels(config["REDIS_SENTINELS"])
        )
        db = redis_db(urllib.parse.urlsplit(url)) if url else "0"
        return f"redis+sentinel://{sentinels}/{config['REDIS_SENTINEL_MASTER']}/{db}"
    if not url:
        return "sqlite:///" + os.path.abspath(sqlite_path(config, instance_path)).lstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "unix":
        query = dict(urllib.parse.parse_qsl(parts.query))
        return f"unix://{parts.path}?db={query.get('db', '0')}"
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # redis-py would have refused it already; say nothing more
        port = ""
    return f"{parts.scheme}://{host}{port}/{redis_db(parts)}"


def redis_db(parts: urllib.parse.SplitResult) -> str:
    """The database a Redis URL names: its path, or its ``?db=``, else 0."""
    query = dict(urllib.parse.parse_qsl(parts.query))
    return parts.path.strip("/") or query.get("db", "0")


def init_app(app: Flask) -> Huey:
    """Create the app's Huey, register every job on it and record history."""
    huey = create_huey(app.config, app.instance_path)
    # Redis or SQLite, picked once: every store below comes from it.
    backend = open_backend(huey)
    history = History(huey, app.config, backend)
    huey.signal()(history.on_signal)
    # The heartbeat reports the worker type and count the consumer runs.
    huey.hooks.consumer_listeners.append(history.consumer_started)
    # Huey's own lines about a job ("Executing ...", a traceback) carry its fields.
    huey.hooks.job_context = _job_context
    found = registry.discover(app.config["JOBS_PACKAGE"], app.config["JOB_MODULES"])
    wrappers = {job.name: _register(huey, app, job) for job in found.values()}
    # The overview's queue depth counts every named queue (kit/queues.py).
    backend.count_queues(history.store, queues.known_queues(app.config, found.values()))
    # Every job a worker takes is leased until its run is over, so a worker
    # that dies mid-job loses nothing (see leases/).
    settings = leases.LeaseSettings.from_config(app.config)
    manager = leases.install(huey, settings, backend.leases(), registry.worker_lost_policy)
    if manager is not None:
        # Lease releases ride on the history's last write of each run.
        history.write_hooks.append(manager.write_hook)
        manager.on_recovery(lambda recovery: _record_recovery(history, recovery))
        # Due jobs move to their queue every SCHEDULE_POLL seconds (delays.py).
        huey.hooks.schedule_tick = delays.DueWatch(huey, app.config["SCHEDULE_POLL"]).tick
    app.extensions[EXTENSION] = KitState(
        huey=huey,
        backend=backend,
        history=history,
        # Progress, per-job logs, cancel, pause and periodic runs (see controls/).
        controls=Controls(huey, history, app.config, backend).install(),
        claims=backend.claims(),
        idempotency=backend.idempotency_keys(history.store, app.config["IDEMPOTENCY_WINDOW"]),
        tasks=wrappers,
        leases=manager,
        delay_limits=delays.DelayLimits.from_config(app.config),
    )
    return huey


def _job_context(task: Task) -> contextlib.AbstractContextManager[None]:
    """The log context of a job a worker is about to run, from its message."""
    job = registry.get(task.name)
    meta = (task.kwargs or {}).get("meta") or {}
    attempt = None if job is None else job.retries - task.retries + 1
    return job_log_context(task.name, task.id, attempt, meta.get("request_id"))


def _register(huey: Huey, app: Flask, job: registry.Job) -> TaskWrapper:
    """Turn a registered job into a Huey task that runs in an app context."""

    timeout = app.config["JOB_TIMEOUT"] if job.timeout is None else job.timeout

    def run(payload: dict, task: Task, meta: dict | None = None) -> Any:
        # ``meta`` comes from enqueue(): the request id that queued the job
        # (for the logs) and when (for the metrics' oldest-queued age).
        meta = meta or {}
        attempt = job.retries - task.retries + 1
        # KitHuey.execute has set this run's log context (_job_context)
        # already; only a run that did not go through it needs one here.
        info = current_job_info.get()
        if info is not None and info.id == task.id and info.attempt == attempt:
            context: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        else:
            context = job_log_context(job.name, task.id, attempt, meta.get("request_id"))
        # A fresh app context per run: sharing one between worker threads
        # breaks Flask's context variables.
        with app.app_context(), context, job_scope(task, attempt):
            try:
                result = job.func(job.load(payload))
            except registry.PermanentError:
                task.retries = 0  # Huey retries only while this is above zero.
                raise
            except Exception as exc:
                # Huey's "timeout" signal does not carry the exception: keep
                # it, so that the record shows where the job was stopped.
                run_state.of(task).exception = exc
                # Huey reads the wait before the next try from the task: set
                # it from the job's backoff (a TaskTimeout lands here too).
                # Immediate mode (tests) retries at once.
                if task.retries:
                    task.retry_delay = 0 if huey.immediate else job.next_retry_delay(attempt)
                raise
            # Huey's "complete" signal does not carry the return value: the
            # history's post-execute hook keeps it in the task's run state.
            return result

    if job.schedule is not None:
        return register_periodic(huey, job, run, timeout or None)
    run.__module__ = job.module
    run.__qualname__ = run.__name__ = job.name
    return huey.task(
        name=job.name,
        retries=job.retries,
        retry_delay=job.retry_delay,
        timeout=timeout or None,
        context=True,
    )(run)


class Dispatched(NamedTuple):
    """What a dispatch did."""

    id: str
    # False for a duplicate (a unique job's, or a request's sent again with
    # its idempotency key): nothing was queued, and ``id`` is the earlier job.
    created: bool
    # When a scheduled job runs (Unix time); None: queued to run now.
    eta: float | None = None


def enqueue(
    name: str,
    payload: Any,
    retry_of: str | None = None,
    idempotency_key: str | None = None,
    *,
    queue: str | None = None,
    delay: float | None = None,
    eta: datetime.datetime | None = None,
) -> str:
    """Validate ``payload`` for the job ``name``, queue it, return its id.

    ``retry_of`` is the id of a failed job this one re-runs (the monitor's
    Retry button): the two records are linked.

    For a unique job (``unique_key``/``unique_for``) dispatched again within
    its window, nothing is queued and the id is the earlier job's; likewise
    for a dispatch repeated with the same ``idempotency_key`` within
    ``IDEMPOTENCY_WINDOW``. Use :func:`dispatch` to tell the two apart.

    Raises :class:`UnknownJob`, marshmallow's ``ValidationError``,
    :class:`QueueUnavailable`, :class:`AlreadyRetried`,
    ``InvalidIdempotencyKey`` or ``IdempotencyKeyReused`` (the key was sent
    with another payload, or for another job); in each case nothing is queued.

    ``queue`` sends the job to another of the named queues it allows (see
    ``registry.job``). ``delay`` (seconds) or ``eta`` (an aware datetime)
    schedules it instead of queueing it now; a bad value raises
    ``delays.BadSchedule`` (a ``ValueError``) and nothing is queued.
    """
    return dispatch(name, payload, retry_of, idempotency_key, queue=queue, delay=delay, eta=eta).id


def dispatch(
    name: str,
    payload: Any,
    retry_of: str | None = None,
    idempotency_key: str | None = None,
    *,
    api_key_name: str | None = None,
    queue: str | None = None,
    delay: float | None = None,
    eta: datetime.datetime | None = None,
) -> Dispatched:
    """:func:`enqueue`, saying whether a job was queued or found.

    ``api_key_name`` is the name of the API key that asked for the job (the
    HTTP API passes it), kept in the job's ``meta`` for its history.
    """
    job = registry.get(name)
    if job is None:
        raise UnknownJob(name)
    data = job.dump(job.load(payload))
    kit = kit_state()
    history: History = kit.history
    now = time.time()
    run_at = delays.resolve(delay, eta, kit.delay_limits, now)
    meta = {"request_id": get_request_id(), "enqueued_at": now, "queue": job.queue_for(queue)}
    if api_key_name:
        meta["api_key_name"] = api_key_name  # the history's "queued" event shows it
    task = kit.tasks[name].s(data, meta=meta, id=str(uuid.uuid4()))
    if kit.huey.immediate:
        run_at = None  # immediate mode (tests) runs every job at once
    # A retry from the monitor is an operator's explicit wish: never a duplicate.
    key = None if retry_of else job.unique_hash(data)
    claims: unique.Claims = kit.claims
    # An idempotency key is written by the job's own write, with the job.
    claim, guard = None, None
    if idempotency_key is not None and not retry_of:
        claim = idempotency.Claim.of(idempotency_key, name, data)
        guard = kit.idempotency.guard(claim, task.id)
    try:
        if key is not None:
            existing = claims.claim(name, key, task.id, job.unique_for)
            if existing is not None:
                if claim is not None and (held := kit.idempotency.held(claim.key)):
                    claim.first_id(held)  # raises if the key is another request's
                return Dispatched(existing, created=False)
        try:
            # One atomic write: the job's record, its queue message (or its
            # place on the schedule) and its idempotency key, or none of them.
            if run_at is not None:
                delays.write_scheduled(kit.huey, kit.backend, history, task, data, run_at, guard)
            elif not history.enqueue(task, data, retry_of=retry_of, guard=guard):
                raise AlreadyRetried(retry_of)
        except sentinel.ReplicasBehind:
            raise  # written, with its claim: a retry must find it
        except BaseException:
            if key is not None:
                with contextlib.suppress(*BACKEND_ERRORS):
                    claims.release(name, key, task.id)
            raise
    except idempotency.KeyHeld as first:
        # Sent again: the first job, if this is the same request.
        return Dispatched(claim.first_id(first.value), created=False)
    except sentinel.ReplicasBehind as exc:
        log.warning("%s %s queued, but not replicated: %s", name, task.id, exc)
        raise NotReplicated(str(exc)) from exc
    except BACKEND_ERRORS as exc:
        log.warning("queue unavailable, %s not queued: %s", name, exc)
        raise QueueUnavailable(str(exc)) from exc
    if kit.metrics is not None:
        kit.metrics.count("enqueued", name)
    # One line links the request (its id) to the job it queued (the job's id).
    # Its fields are given here, cheaper than a job_log_context() around it.
    job_fields = {"job": f"{name}:{task.id}", "job_name": name, "job_id": task.id}
    if run_at is None:
        what = "queued"
    else:
        what = "scheduled for " + datetime.datetime.fromtimestamp(run_at, datetime.UTC).isoformat()
    log.info(
        "%s%s",
        what,
        f" (a retry of {retry_of})" if retry_of else "",
        extra={**job_fields, "attempt": None, "request_id": meta["request_id"]},
    )
    return Dispatched(task.id, created=True, eta=run_at)


def _record_recovery(history: History, recovery: leases.Recovery) -> None:
    """Write a recovered (or parked) job's "worker lost" into its history."""
    if recovery.requeued:
        history.record_recovered(recovery.job_id, recovery.reason, recovery.counted)
    else:
        history.record_parked(recovery.job_id, recovery.reason)


def ping() -> None:
    """Make one round trip to the queue backend; raise QueueUnavailable."""
    huey: Huey = kit_state().huey
    try:
        huey.pending_count()
    except BACKEND_ERRORS as exc:
        raise QueueUnavailable(str(exc)) from exc


def check_writable() -> None:
    """Commit one small write to the queue backend; raise QueueUnavailable.

    A store may answer reads and refuse writes (SQLite on a full disk or a
    read-only file system): :func:`ping` alone would call it ready.
    """
    try:
        kit_state().backend.check_writable()
    except BACKEND_ERRORS as exc:
        raise QueueUnavailable(str(exc)) from exc


def backend_name() -> str:
    """The current app's queue backend: "redis" or "sqlite"."""
    return kit_state().backend.name


def record_event(job_id: str, kind: str, message: str | None = None) -> bool:
    """Add an entry to a job's timeline, shown on its monitor page.

    For code outside the job that does something about it (a webhook that
    arrived, a refund issued). Returns False if there is no such job.
    """
    return kit_state().history.record_event(job_id, kind, message)


def queue_overview(hours: float = 1) -> dict[str, Any]:
    """What the monitor's overview shows: counts by status, and the last ``hours``.

    ``counts`` holds how many jobs are queued, running and failed;
    ``complete`` and ``failed`` how many ended so in the window; ``latency``
    the age in seconds of the oldest queued job.
    """
    return kit_state().history.overview(hours=hours)
