"""Logging for the web and worker processes.

Every log line a job writes carries the job's name and id, so the lines of
one run can be found with a single grep, even with many workers.

Two formats, chosen with ``LOG_FORMAT`` (``FLASK_LOG_FORMAT`` in the
environment):

* ``text`` (the default): ``time LEVEL logger [jobModelo:<id>] message``.
* ``json``: one JSON object per line, for log collectors::

    {"timestamp": "2026-01-31T12:00:00.123Z", "level": "INFO",
     "logger": "acme.jobs.job_modelo", "message": "processing João",
     "job_name": "jobModelo", "job_id": "3f2c...", "attempt": 1,
     "request_id": "9b1e..."}

Request ids: every HTTP request gets one, taken from its ``X-Request-ID``
header when that is a sane value (a proxy or the client made it) or freshly
generated, and sent back in the response's ``X-Request-ID``. A job queued
while handling the request carries the id with it, so the worker's log lines
for that job name the request that asked for it.
"""

import contextlib
import contextvars
import datetime
import json
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from flask import Flask, Response, g, request

# The job running in this thread (or process), if any, as "name:id".
current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_job", default=None
)


@dataclass(frozen=True)
class JobInfo:
    name: str
    id: str
    attempt: int | None = None


current_job_info: contextvars.ContextVar[JobInfo | None] = contextvars.ContextVar(
    "current_job_info", default=None
)
# The request being served, or the request that queued the running job.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_request_id", default=None
)

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(job)s] %(message)s"
FORMATS = ("text", "json")

REQUEST_ID_HEADER = "X-Request-ID"
# What an incoming id may look like: UUIDs, hex, ULIDs, trace headers such as
# "Root=1-5759e988-bd862e3fe1be46a994272793". Anything else (too long, line
# breaks, quotes) is replaced, so a client cannot forge or break log lines.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:;=+/@-]{1,128}")


class JobContextFilter(logging.Filter):
    """Add the job and request context to each record.

    ``record.job`` is "jobModelo:<id>" inside a job and "-" outside;
    ``job_name``, ``job_id``, ``attempt`` and ``request_id`` are None when
    they do not apply.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        info = current_job_info.get()
        record.job = current_job.get() or "-"
        record.job_name = info.name if info else None
        record.job_id = info.id if info else None
        record.attempt = info.attempt if info else None
        record.request_id = current_request_id.get()
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line; the context keys are always present."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry = {
            "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        info = current_job_info.get()
        entry["job_name"] = getattr(record, "job_name", info.name if info else None)
        entry["job_id"] = getattr(record, "job_id", info.id if info else None)
        entry["attempt"] = getattr(record, "attempt", info.attempt if info else None)
        entry["request_id"] = getattr(record, "request_id", current_request_id.get())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


@contextlib.contextmanager
def job_log_context(
    name: str, job_id: str, attempt: int | None = None, request_id: str | None = None
) -> Iterator[None]:
    """Tag the log lines written inside the block with this job (and request)."""
    tokens = (
        current_job.set(f"{name}:{job_id}"),
        current_job_info.set(JobInfo(name, job_id, attempt)),
        current_request_id.set(request_id or current_request_id.get()),
    )
    try:
        yield
    finally:
        current_request_id.reset(tokens[2])
        current_job_info.reset(tokens[1])
        current_job.reset(tokens[0])


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return JSONFormatter() if fmt == "json" else logging.Formatter(FORMAT)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send log records to stderr with the job context, once per process.

    Left alone when something else (gunicorn, pytest) already configured the
    root logger.
    """
    formatter = make_formatter(fmt)
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.addFilter(JobContextFilter())
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level)


def configure_consumer_logging(fmt: str) -> None:
    """Decide where ``huey_consumer``'s own log lines go.

    Text: huey_consumer gives the "huey" logger a handler of its own (with
    the worker's pid or thread); it stops there, or each line would also
    reach ours and be printed twice. JSON: huey_consumer only sets the level
    it was asked for (``-q``, ``-v``), and its lines go through the app's
    JSON handler like every other line.
    """
    if fmt != "json":
        logging.getLogger("huey").propagate = False
        return
    from huey.consumer_options import ConsumerConfig

    def level_only(self: ConsumerConfig, logger: logging.Logger | None = None) -> None:
        (logger or logging.getLogger()).setLevel(self.loglevel)

    ConsumerConfig.setup_logger = level_only


def init_request_ids(app: Flask) -> None:
    """Give every request an id, for its log lines and the jobs it queues."""

    @app.before_request
    def assign_request_id() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        g.request_id = request_id
        g.request_id_token = current_request_id.set(request_id)

    @app.after_request
    def send_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers.setdefault(REQUEST_ID_HEADER, g.request_id)
        return response

    @app.teardown_request
    def forget_request_id(exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            with contextlib.suppress(ValueError):  # set in another context
                current_request_id.reset(token)
