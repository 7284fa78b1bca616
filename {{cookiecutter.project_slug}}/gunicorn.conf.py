"""Gunicorn settings for production.

Used as ``gunicorn --config gunicorn.conf.py "{{ cookiecutter.project_slug }}:create_app()"``.
Environment variables:

* ``PORT``: port to listen on (default 8000), on every interface.
* ``WEB_CONCURRENCY``: upper bound on the number of worker processes; the
  default is ``2 * CPUs + 1``.
* ``GUNICORN_LOG_LEVEL``: gunicorn's own log level (default ``info``).
* ``FLASK_LOG_FORMAT``: gunicorn's lines (access log included) have the app's
  layout, ``text`` or ``json`` (see ``{{ cookiecutter.project_slug }}/kit/logs.py``); in JSON, an
  access line has ``request_id``, ``method``, ``path``, ``status`` and
  ``duration_ms`` fields.

Each may be set in ``.env`` too, which is read here first, as the app reads
it: the real environment wins over the file.
"""

import multiprocessing
import os

from dotenv import find_dotenv, load_dotenv
from flask.helpers import get_load_dotenv

# .env, read as the app reads it ({{ cookiecutter.project_slug }}/kit/environment.py): from the
# working directory or a parent, never over a variable already set, not with
# FLASK_SKIP_DOTENV=1. Done here rather than by importing the app's package,
# which gunicorn makes importable from the working directory only after
# reading this file.
if get_load_dotenv() and (_dotenv := find_dotenv(".env", usecwd=True)):
    load_dotenv(_dotenv, override=False, encoding="utf-8")


def _positive_int(name: str, default: int) -> int:
    """Read a positive integer from the environment, falling back to ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from exc
    if value < 1:
        raise SystemExit(f"{name} must be at least 1, got {value}")
    return value


# Names starting with "_" are helpers, not gunicorn settings.
_port = _positive_int("PORT", 8000)
bind = f"0.0.0.0:{_port}"

# Sync workers: each request holds one process, and slow work goes to the
# queue, so requests stay short. WEB_CONCURRENCY caps the count, e.g. on
# small containers where cpu_count() reports the host's cores.
_cpu_workers = multiprocessing.cpu_count() * 2 + 1
workers = min(_cpu_workers, _positive_int("WEB_CONCURRENCY", _cpu_workers))

# A request taking longer than this is stuck: its worker is killed and
# replaced. Enqueueing a job takes milliseconds, so 30 s is generous.
timeout = 30
# On SIGTERM, workers get this long to finish in-flight requests.
graceful_timeout = 30
# Seconds to hold an idle keep-alive connection (behind a load balancer).
keepalive = 5

# Logs go to stdout/stderr, where containers and process managers collect them.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Client, request line, status, size, duration in ms, user agent, and the
# request id the app answered with (X-Request-ID), which the app's and the
# job's log lines carry too.
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms "%(a)s" %({x-request-id}o)s'

# Every logger through the app's formatter (text or JSON) and job context, so
# gunicorn's lines look like the app's and the worker's; the app then finds
# the root logger configured and keeps it.
_format = os.environ.get("FLASK_LOG_FORMAT", "text").strip().strip('"')
_app_level = os.environ.get("FLASK_LOG_LEVEL", "INFO").strip('"')
_formatter = "JSONFormatter" if _format == "json" else "TextFormatter"
_handler = {"class": "logging.StreamHandler", "formatter": "app", "filters": ["context"]}
logconfig_dict = {
    "formatters": {"app": {"()": f"{{ cookiecutter.project_slug }}.kit.{_formatter}"}},
    "filters": {
        "context": {"()": "{{ cookiecutter.project_slug }}.kit.JobContextFilter"},
        "access": {"()": "{{ cookiecutter.project_slug }}.kit.AccessLogFields"},
    },
    "handlers": {
        # The access line's fields are set before the context filter runs.
        "stdout": dict(_handler, stream="ext://sys.stdout", filters=["access", "context"]),
        "stderr": dict(_handler, stream="ext://sys.stderr"),
    },
    "root": {"level": _app_level, "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {
            "level": loglevel.upper(),
            "handlers": ["stderr"],
            "propagate": False,
        },
        "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
    },
}

# Heartbeat files in memory rather than on a possibly slow container disk.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"
