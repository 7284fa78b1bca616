"""The job queue: one Huey instance per process, built from configuration.

``REDIS_URL`` set: Redis, through one shared connection pool with short
timeouts, so an unreachable Redis fails a request in about a second instead
of hanging it. Otherwise: SQLite in the instance folder, the embedded default
that needs no server. Tests use Huey's immediate mode, which runs each job
in the calling process.
"""

import logging
import os
import sqlite3
import uuid
from typing import Any

import redis
from flask import Flask, current_app
from huey import Huey, RedisHuey, SqliteHuey
from huey.api import Task, TaskWrapper
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import jobs
from .history import History
from .logs import job_log_context
from .serializer import JSONSerializer

log = logging.getLogger(__name__)

# What a broken queue backend raises: turned into "503, try again later".
BACKEND_ERRORS = (redis.RedisError, sqlite3.Error, OSError)


class UnknownJob(LookupError):
    """No job is registered under this name."""


class QueueUnavailable(RuntimeError):
    """The queue backend (Redis or the SQLite file) cannot be reached."""


class AlreadyRetried(RuntimeError):
    """The failed job to retry has been retried already (or is not failed)."""


def create_huey(config: dict[str, Any], instance_path: str) -> Huey:
    """Build the Huey instance described by the app's configuration."""
    options = {"serializer": JSONSerializer(), "results": False, "utc": True}
    name = config["QUEUE_NAME"]
    if config.get("REDIS_URL"):
        pool = redis.ConnectionPool.from_url(
            config["REDIS_URL"],
            socket_connect_timeout=config["REDIS_CONNECT_TIMEOUT"],
            socket_timeout=config["REDIS_SOCKET_TIMEOUT"],
            health_check_interval=30,
            # One quick retry covers a dropped idle connection; more would
            # only make a real outage slower to report.
            retry=Retry(NoBackoff(), 1),
        )
        huey = RedisHuey(name, connection_pool=pool, **options)
    else:
        path = config.get("SQLITE_PATH") or os.path.join(instance_path, "queue.sqlite3")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        huey = SqliteHuey(name, filename=path, **options)
    huey.immediate = bool(config.get("QUEUE_IMMEDIATE"))
    return huey


def init_app(app: Flask) -> Huey:
    """Create the app's Huey, register every job on it and record history."""
    huey = create_huey(app.config, app.instance_path)
    history = History(huey, app.config)
    huey.signal()(history.on_signal)
    wrappers = {job.name: _register(huey, app, job) for job in jobs.discover().values()}
    app.extensions["huey"] = huey
    app.extensions["job_tasks"] = wrappers
    app.extensions["job_history"] = history
    return huey


def _register(huey: Huey, app: Flask, job: jobs.Job) -> TaskWrapper:
    """Turn a registered job into a Huey task that runs in an app context."""

    def run(payload: dict, task: Task) -> Any:
        # A fresh app context per run: sharing one between worker threads
        # breaks Flask's context variables.
        with app.app_context(), job_log_context(job.name, task.id):
            try:
                result = job.func(job.load(payload))
            except jobs.PermanentError:
                task.retries = 0  # Huey retries only while this is above zero.
                raise
            # Huey's "complete" signal does not carry the return value, so it
            # travels on the task to the history recorder.
            task.job_result = result
            return result

    run.__module__ = job.module
    run.__qualname__ = run.__name__ = job.name
    return huey.task(
        name=job.name,
        retries=job.retries,
        retry_delay=job.retry_delay,
        timeout=job.timeout,
        context=True,
    )(run)


def enqueue(name: str, payload: Any, retry_of: str | None = None) -> str:
    """Validate ``payload`` for the job ``name``, queue it, return its id.

    ``retry_of`` is the id of a failed job this one re-runs (the monitor's
    Retry button): the two records are linked.

    Raises :class:`UnknownJob`, marshmallow's ``ValidationError``,
    :class:`QueueUnavailable` or :class:`AlreadyRetried`; in each case
    nothing is queued.
    """
    job = jobs.get(name)
    if job is None:
        raise UnknownJob(name)
    data = job.dump(job.load(payload))
    history: History = current_app.extensions["job_history"]
    task = current_app.extensions["job_tasks"][name].s(data, id=str(uuid.uuid4()))
    try:
        # One atomic write: the job's record and its queue message, or neither.
        if not history.enqueue(task, data, retry_of=retry_of):
            raise AlreadyRetried(retry_of)
    except BACKEND_ERRORS as exc:
        log.warning("queue unavailable, %s not queued: %s", name, exc)
        raise QueueUnavailable(str(exc)) from exc
    return task.id


def ping() -> None:
    """Make one round trip to the queue backend; raise QueueUnavailable."""
    huey: Huey = current_app.extensions["huey"]
    try:
        huey.pending_count()
    except BACKEND_ERRORS as exc:
        raise QueueUnavailable(str(exc)) from exc


def backend_name(huey: Huey) -> str:
    return "redis" if isinstance(huey, RedisHuey) else "sqlite"
