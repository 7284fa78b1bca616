"""Jobs that misbehave on purpose, for the reliability tests.

Worker processes started by those tests import this module through the
``JOB_MODULES`` setting. Every run appends lines to the file named by
``$RELIABILITY_LOG``::

    <start|end> <job id> <attempt> <pid> <unix time> <tag>

so a test can count how often each job ran, where and when.
"""

import os
import signal
import time

from marshmallow import Schema, fields

from acme_jobs.kit import registry
from acme_jobs.kit.logs import current_job_info


class Work(Schema):
    tag = fields.String(required=True)
    seconds = fields.Float(load_default=0.0)


def note(event: str, tag: str) -> None:
    path = os.environ.get("RELIABILITY_LOG")
    if not path:
        return
    info = current_job_info.get()
    job_id, attempt = (info.id, info.attempt) if info else ("-", 0)
    line = f"{event} {job_id} {attempt} {os.getpid()} {time.time():.6f} {tag}\n"
    # One write() with O_APPEND: lines from many processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@registry.job("testSleep", schema=Work, retries=5, retry_delay=0.1)
def sleep(data: dict) -> dict:
    """Sleep for ``seconds``: a job long enough to be killed in."""
    note("start", data["tag"])
    time.sleep(data["seconds"])
    note("end", data["tag"])
    return {"slept": data["seconds"]}


@registry.job("testDefaults", schema=Work)
def with_defaults(data: dict) -> dict:
    """``testSleep`` with every option at its default (no retries)."""
    return sleep(data)


@registry.job("testAtMostOnce", schema=Work, retries=3, on_worker_lost="fail")
def at_most_once(data: dict) -> dict:
    """``testSleep`` for a job that must never run twice."""
    return sleep(data)


@registry.job("testLedger", schema=Work)
def ledger(data: dict) -> None:
    """Sleep for ``seconds``, logging start and end: the chaos runs' job.

    Registered with the defaults (no retries), as most jobs are: delivery
    must not depend on a job's retries.
    """
    note("start", data["tag"])
    time.sleep(data["seconds"])
    note("end", data["tag"])


@registry.job("testTimeout", schema=Work, retries=1, retry_delay=0.1, timeout=1)
def too_slow(data: dict) -> None:
    """Sleep for longer than its one-second timeout allows."""
    note("start", data["tag"])
    time.sleep(data["seconds"])
    note("end", data["tag"])


@registry.job("testAlwaysFails", schema=Work, retries=3, retry_delay=0.4, retry_backoff=2)
def always_fails(data: dict) -> None:
    """Fail every time: retried three times with a growing delay, then failed."""
    note("start", data["tag"])
    raise RuntimeError("still broken")


@registry.job("testPermanent", schema=Work, retries=3)
def permanent(data: dict) -> None:
    """Fail in a way no retry can fix."""
    note("start", data["tag"])
    raise registry.PermanentError("this record does not exist")


@registry.job("testPoisonPill", schema=Work, retries=10)
def poison_pill(data: dict) -> None:
    """Kill the worker process that runs it, every time."""
    note("start", data["tag"])
    os.kill(os.getpid(), signal.SIGKILL)


@registry.job("testUrgent", schema=Work, queue="critical")
def urgent(data: dict) -> dict:
    """``testSleep`` in the named queue "critical"."""
    return sleep(data)
