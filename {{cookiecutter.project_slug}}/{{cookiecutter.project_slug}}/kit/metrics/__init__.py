"""``GET /metrics``: what the jobs are doing, in Prometheus' text format.

Series (``job_name`` is the job's registered name, ``queue`` the named queue
it declares, ``@job(queue=...)``;
each name starts with ``METRICS_NAMESPACE``, the project's slug by default,
as in ``acme_jobs_jobs_enqueued_total``)::

    jobs_enqueued_total{queue,job_name}     jobs queued (web, CLI, code)
    jobs_completed_total{queue,job_name}    jobs that ran to completion
    jobs_failed_total{queue,job_name}       jobs that failed for good (no retry left)
    jobs_retried_total{queue,job_name}      failed attempts scheduled to run again
    jobs_recovered_total{queue,job_name}    jobs re-queued after their worker died
    jobs_timed_out_total{queue,job_name}    attempts stopped at their timeout
    jobs_duration_seconds{queue,job_name}   histogram of attempt run times
    jobs_queue_depth{queue}                 jobs waiting to start
    jobs_oldest_queued_age_seconds{queue}   how long the queue's next job has waited
    jobs_scheduled                          jobs waiting for a later time (retries, ETAs)
    jobs_workers_alive                      huey workers (threads or processes) heartbeating

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
With neither configured the endpoint answers 403 and says so. Wrong tokens
count against the address like wrong passwords (``MONITOR_LOGIN_ATTEMPTS``
per ``MONITOR_LOGIN_WINDOW``, in the queue's backend): past the limit it gets
429, even with the right token, until the window has passed.

The parts: ``recorder`` counts in each process and writes the batches,
``stores`` keeps the totals in the queue's backend (Redis, SQLite, or memory
in immediate mode), ``collector`` turns one read of them into Prometheus
series; this module is the endpoint and ``init_app``.
"""

import base64
import hmac
import logging
import re
from collections.abc import Iterable

from flask import Blueprint, Flask, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from huey import Huey
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from werkzeug.exceptions import TooManyRequests

from .. import registry
from ..backends import BACKEND_ERRORS
from ..monitor import security
from ..queues import known_queues
from ..registry import all_jobs
from ..state import kit_state
from .collector import JobsCollector
from .recorder import Recorder

__all__ = ["Recorder", "bp", "init_app"]

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)


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
        # Throttled like passwords (monitor/throttle.py): while an address is
        # locked out even the right token is refused, or a guesser would
        # learn which guess was right.
        throttle = kit_state().login_throttle
        address = request.remote_addr or "unknown"
        throttle.check(address, "tokens")
        if hmac.compare_digest(value.encode(), str(token).encode()):
            return True
        log.warning("refused a wrong /metrics token from %s", address)
        throttle.failed(address)
        return False
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
    try:
        allowed = _authorized()
    except TooManyRequests as exc:
        response = Response(f"{exc.description}\n", 429, mimetype="text/plain")
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except BACKEND_ERRORS as exc:  # failed attempts are counted there
        return Response(f"the job store is unreachable: {exc}\n", 503, mimetype="text/plain")
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
    recorder: Recorder = kit.metrics
    recorder.flush()  # this process's own counts are up to date at least
    try:
        snapshot = recorder.store.read(current_app.config["METRICS_WORKER_TTL"])
        jobs = all_jobs()
        names = known_queues(current_app.config, jobs.values())
        named = kit.backend.queue_sizes(names, scan=1)
    except BACKEND_ERRORS as exc:
        return Response(f"the job store is unreachable: {exc}\n", 503, mimetype="text/plain")
    families = CollectorRegistry(auto_describe=False)
    job_queues = {name: job.queue for name, job in jobs.items()}
    families.register(JobsCollector(snapshot, recorder, namespace(current_app), job_queues, named))
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(families), 200, headers={"Content-Type": content_type})


@bp.record_once
def _install(state: BlueprintSetupState) -> None:
    init_app(state.app)


# What Prometheus accepts at the start of a metric name (colons are left to
# recording rules).
_NAMESPACE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def namespace(app: Flask) -> str:
    """The series' name prefix: METRICS_NAMESPACE, or the app's package name."""
    configured = app.config.get("METRICS_NAMESPACE")
    value = app.import_name.partition(".")[0] if configured is None else str(configured)
    if value and not _NAMESPACE.fullmatch(value):
        raise ValueError(
            f"METRICS_NAMESPACE {value!r} is not a Prometheus name prefix:"
            " use letters, digits and underscores, not starting with a digit"
        )
    return value


def duration_buckets(configured: Iterable[float], default_timeout: float) -> list[float]:
    """The configured buckets, plus the longest job timeout when it is above them all.

    Without it, every run longer than the last bucket lands in +Inf alone, and
    a 50-minute import could not be told from one stopped at its timeout.
    """
    buckets = sorted(float(bound) for bound in configured)
    jobs = registry.all_jobs().values()
    timeouts = [default_timeout if job.timeout is None else job.timeout for job in jobs]
    # A timeout of 0 (or None) means none: such runs belong in +Inf.
    longest = max((float(timeout) for timeout in timeouts if timeout), default=0.0)
    if longest > (buckets[-1] if buckets else 0.0):
        buckets.append(longest)
    return buckets


def init_app(app: Flask) -> Recorder:
    """Count job events on the app's Huey (called when the blueprint is registered)."""
    namespace(app)  # a bad METRICS_NAMESPACE stops the app here, not at the first scrape
    kit = kit_state(app)
    huey: Huey = kit.huey
    recorder = Recorder(
        kit.backend.metrics_store(),
        duration_buckets(app.config["METRICS_DURATION_BUCKETS"], app.config["JOB_TIMEOUT"]),
        app.config["METRICS_FLUSH_INTERVAL"],
    )
    huey.signal()(recorder.on_signal)
    huey.on_startup("metrics_heartbeat")(recorder.worker_started)
    huey.on_shutdown("metrics_heartbeat")(recorder.worker_stopped)
    if kit.leases is not None:  # the reaper that re-queues jobs of dead workers
        kit.leases.on_recovery(recorder.job_recovered)
    kit.metrics = recorder
    return recorder
