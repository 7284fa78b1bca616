"""The job kit: background jobs for this Flask app, as one Flask extension.

Everything your code needs is imported from here, never from the kit's
modules, which may change when the kit is updated (see ``README.md`` here)::

    from {{ cookiecutter.project_slug }}.kit import JobKit, job, enqueue

* ``JobKit`` wires the queue, the HTTP API, the ``flask jobs`` CLI, health
  checks, metrics and the monitor into an app (``kit.init_app(app)``).
* ``job`` and ``periodic_job`` (with ``cron``) define jobs.
* ``enqueue`` and ``dispatch`` queue a job from your own code; ``status_url``
  is where a client follows it, ``record_event`` adds to its timeline. With
  ``idempotency_key=``, a repeated dispatch returns the first job's id (or
  raises ``IdempotencyKeyReused`` for another payload; ``InvalidIdempotencyKey``).
  With ``delay=`` (seconds) or ``eta=`` (an aware datetime) the job waits;
  a bad value raises ``BadSchedule``. ``queue=`` picks another named queue.
* ``report`` and ``check_cancelled`` are for long jobs: progress, and a stop
  requested from the monitor (``JobCancelled``).
* ``PermanentError`` fails a job at once, with no retry.
* ``JSONFormatter``, ``TextFormatter``, ``JobContextFilter`` and
  ``AccessLogFields`` are for logging configs outside the app, like
  ``gunicorn.conf.py``.
* ``load_environment`` reads ``.env`` and the environment into the app's
  config, the same way in every process (``read_dotenv``: ``.env`` alone).
"""

from .delays import BadSchedule
from .environment import load_environment, read_dotenv
from .extension import JobKit
from .idempotency import IdempotencyKeyReused, InvalidIdempotencyKey
from .jobs_api import status_url
from .logs import AccessLogFields, JobContextFilter, JSONFormatter, TextFormatter
from .progress import JobCancelled, check_cancelled, report
from .queue import (
    AlreadyRetried,
    Dispatched,
    QueueUnavailable,
    UnknownJob,
    dispatch,
    enqueue,
    queue_overview,
    record_event,
)
from .registry import Job, PermanentError, all_jobs, job, periodic_job
from .registry import get as get_job
from .schedules import cron
from .worker import load_worker_app, run_worker

__all__ = [
    "AccessLogFields",
    "AlreadyRetried",
    "BadSchedule",
    "Dispatched",
    "IdempotencyKeyReused",
    "InvalidIdempotencyKey",
    "JSONFormatter",
    "Job",
    "JobCancelled",
    "JobContextFilter",
    "JobKit",
    "PermanentError",
    "QueueUnavailable",
    "TextFormatter",
    "UnknownJob",
    "all_jobs",
    "check_cancelled",
    "cron",
    "dispatch",
    "enqueue",
    "get_job",
    "job",
    "load_environment",
    "load_worker_app",
    "periodic_job",
    "queue_overview",
    "read_dotenv",
    "record_event",
    "report",
    "run_worker",
    "status_url",
]
