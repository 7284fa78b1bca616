"""Logging for the web and worker processes.

Every log line a job writes carries the job's name and id, so the lines of
one run can be found with a single grep, even with many workers.

Two formats, chosen with ``LOG_FORMAT`` (``FLASK_LOG_FORMAT`` in the
environment):

* ``text`` (the default): ``time LEVEL pid logger [jobModelo:<id>] message``,
  the same layout in the web app, gunicorn and the worker. Control
  characters in a message (line breaks, ANSI escapes) are written escaped,
  so a payload value cannot forge a line; a traceback's lines are indented.
* ``json``: one JSON object per line, for log collectors::

    {"timestamp": "2026-01-31T12:00:00.123Z", "level": "INFO",
     "logger": "acme.jobs.job_modelo", "message": "processing João",
     "job_name": "jobModelo", "job_id": "3f2c...", "attempt": 1,
     "request_id": "9b1e..."}

Request ids: every HTTP request gets one, taken from its ``X-Request-ID``
header when that is a sane value (a proxy or the client made it) or freshly
generated, and sent back in the response's ``X-Request-ID``. A job queued
while handling the request carries the id with it, so the worker's log lines
for that job name the request that asked for it. The dispatch itself writes
one "queued" line with both ids, and gunicorn's access lines (``gunicorn.conf.py``)
carry the request id, method, path, status and duration as fields.
"""

import contextlib
import contextvars
import datetime
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, has_request_context, request

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

FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s [%(job)s] %(message)s"
FORMATS = ("text", "json")

# Record attributes that JSON lines carry as fields when a record has them:
# gunicorn's access lines (AccessLogFields) and the queue's first line.
EXTRA_FIELDS = ("method", "path", "status", "duration_ms", "queue_name", "backend")

# What a text line must not carry raw: C0 and C1 control characters (line
# breaks, ESC of ANSI sequences, NUL), DEL and Unicode's line separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"
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
        # Fields the record already has (an access line's request id, a
        # "queued" line's job) are kept: they were known where it was made.
        if not hasattr(record, "job_id"):
            info = current_job_info.get()
            record.job = current_job.get() or "-"
            record.job_name = info.name if info else None
            record.job_id = info.id if info else None
            record.attempt = info.attempt if info else None
        if getattr(record, "request_id", None) is None:
            record.request_id = get_request_id()
        return True


class AccessLogFields(logging.Filter):
    """Give gunicorn's access lines their request's fields.

    Gunicorn writes each line after the response, outside the request, with
    its "atoms" (status, path, duration...) as the record's arguments; they
    become fields of the JSON line, and the app's X-Request-ID response
    header its ``request_id``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args
        if not isinstance(atoms, Mapping):
            return True
        # "-": gunicorn's word for a missing header (a response the app did not make).
        request_id = atoms.get("{x-request-id}o", "-")
        sane = request_id != "-" and _REQUEST_ID.fullmatch(request_id)
        record.request_id = request_id if sane else None
        record.method = atoms.get("m")
        record.path = atoms.get("U")
        with contextlib.suppress(TypeError, ValueError):
            record.status = int(atoms.get("s"))
        with contextlib.suppress(TypeError, ValueError):
            record.duration_ms = round(int(atoms.get("D")) / 1000, 3)  # D is in µs
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
        entry["request_id"] = getattr(record, "request_id", get_request_id())
        for name in EXTRA_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
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


class TextFormatter(logging.Formatter):
    """One line per record, ``FORMAT``; nothing in it can start another line.

    The message is escaped (a line break becomes ``\\n``, ESC ``\\x1b``), so a
    payload value cannot forge a log line nor colour a terminal. A traceback
    keeps its lines, each escaped and indented: a line that does not start
    with a space always starts a record.
    """

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        # logging keeps the first handler's traceback text on the record;
        # this format's own (indented, escaped) is made afresh.
        cached, record.exc_text = record.exc_text, None
        try:
            return super().format(record)
        finally:
            record.exc_text = cached

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_control(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return _indent(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indent(stack_info)


def escape_control(text: str) -> str:
    """``text`` with every control character written as an escape."""
    # Every character _CONTROL matches is unprintable; most lines have none,
    # and this check costs less than a search for them.
    if text.isprintable():
        return text
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match[0]
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def _indent(text: str) -> str:
    return "\n".join("    " + escape_control(line) for line in text.splitlines())


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return JSONFormatter() if fmt == "json" else TextFormatter()


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


def configure_consumer_logging() -> None:
    """Send ``huey_consumer``'s own log lines through the app's handler.

    huey_consumer would give the "huey" logger a handler and a layout of its
    own; instead it only sets the level it was asked for (``-q``, ``-v``),
    and its lines ("Executing ...", tracebacks) get the app's format and the
    job's fields like every other line, in text and JSON alike.
    """
    from .huey_seam import consumer_logs_level_only

    consumer_logs_level_only()


def init_request_ids(app: Flask) -> None:
    """Send every response's request id back in its ``X-Request-ID`` header."""

    @app.after_request
    def send_request_id(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = get_request_id()
        return response


def get_request_id() -> str | None:
    """The id of the request being served, or of the one that queued the running job.

    A request's id is made when first asked for (by a log line, a dispatch
    or the response) and kept on ``g``, which Flask drops with the request.
    Inside a job, :func:`job_log_context` holds it.
    """
    if not has_request_context():
        return current_request_id.get()
    request_id = g.get("request_id")
    if request_id is None:
        # The WSGI environ is cheaper to read than the parsed headers.
        incoming = request.environ.get(REQUEST_ID_ENVIRON, "")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else os.urandom(16).hex()
        g.request_id = request_id
    return request_id
