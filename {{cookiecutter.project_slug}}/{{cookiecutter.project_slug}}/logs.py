"""Logging for the web and worker processes.

Every log line a job writes carries the job's name and id, so the lines of
one run can be found with a single grep, even with many workers.
"""

import contextlib
import contextvars
import logging
from collections.abc import Iterator

# The job running in this thread (or process), if any.
current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_job", default=None
)

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(job)s] %(message)s"


class JobContextFilter(logging.Filter):
    """Add ``record.job`` ("jobModelo:<id>" inside a job, "-" outside)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job = current_job.get() or "-"
        return True


@contextlib.contextmanager
def job_log_context(name: str, job_id: str) -> Iterator[None]:
    token = current_job.set(f"{name}:{job_id}")
    try:
        yield
    finally:
        current_job.reset(token)


def configure_logging(level: str = "INFO") -> None:
    """Send log records to stderr with the job context, once per process.

    Left alone when something else (gunicorn, pytest) already configured the
    root logger.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.addFilter(JobContextFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
