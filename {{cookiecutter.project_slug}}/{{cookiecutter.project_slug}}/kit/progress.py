"""Progress reports and cooperative cancellation, for use inside any job.

::

    from ..progress import report

    @job("importarPessoas", schema=Importacao)
    def importar_pessoas(data: dict) -> dict:
        pessoas = data["pessoas"]
        for done, pessoa in enumerate(pessoas, start=1):
            save(pessoa)
            report(done, len(pessoas), message=f"imported {pessoa['nome']}")
        return {"imported": len(pessoas)}

:func:`report` costs nothing but a few assignments: a background thread of
the worker writes the latest report (at most every ``JOB_PROGRESS_INTERVAL``
seconds), and the monitor shows it as a live bar with the rate and the time
left; ``GET /jobs/<id>`` returns it too.

Cancelling a running job from the monitor is cooperative: the job learns of
it at its next :func:`report` or :func:`check_cancelled`, which raise
:class:`JobCancelled`. Let it propagate (clean up in ``finally`` blocks if
needed): the run stops, is not retried, and is recorded as cancelled with
who asked and when. A job that never reports or checks runs to its end.

Outside a job (a unit test calling the function directly) these functions
do nothing.

Everything the job logs with the standard ``logging`` module while it runs
is kept with its record as well, and shown on its monitor page.
"""

import contextlib
import contextvars
import logging
import numbers
from collections.abc import Iterator
from typing import Any

from flask import current_app
from huey.api import Task
from huey.exceptions import CancelExecution

from . import run_state
from .controls.recorder import Run
from .state import EXTENSION

# The run of the job executing in this thread (or process), if any.
_current: contextvars.ContextVar[Run | None] = contextvars.ContextVar(
    "current_job_run", default=None
)

MESSAGE_CHARS = 500


class JobCancelled(CancelExecution):
    """An operator cancelled this job; raised by :func:`report` and :func:`check_cancelled`.

    A subclass of Huey's ``CancelExecution`` with ``retry=False``: the run
    stops for good.
    """

    def __init__(self, request: dict[str, Any] | None = None):
        self.request = dict(request or {})
        user = self.request.get("user")
        super().__init__(f"cancelled by {user}" if user else "cancelled", retry=False)


def report(done: float, total: float | None = None, message: str | None = None) -> None:
    """Say how far the job has got: ``done`` out of ``total`` (if known).

    Call it as often as you like; it is throttled. Raises
    :class:`JobCancelled` when the job was cancelled.
    """
    run = _current.get()
    if run is None:
        return
    if not isinstance(done, numbers.Real) or done < 0:
        raise ValueError(f"done must be a number >= 0, not {done!r}")
    if total is not None and (not isinstance(total, numbers.Real) or total < 0):
        raise ValueError(f"total must be a number >= 0 or None, not {total!r}")
    if message is not None:
        message = str(message)[:MESSAGE_CHARS]
    request = run.recorder.report(run, done, total, message)
    if request is not None:
        raise JobCancelled(request)


def check_cancelled() -> None:
    """Raise :class:`JobCancelled` if the job was cancelled; else do nothing."""
    if cancel_requested():
        raise JobCancelled(_current.get().cancel)  # type: ignore[union-attr]


def cancel_requested() -> bool:
    """Whether the job was cancelled, without raising (to stop cleanly yourself).

    The answer can lag the request by up to ``JOB_PROGRESS_INTERVAL`` seconds.
    """
    run = _current.get()
    return run is not None and run.recorder.watch(run) is not None


@contextlib.contextmanager
def job_scope(task: Task, attempt: int) -> Iterator[Run | None]:
    """Mark the code inside as the job ``task``, attempt ``attempt``.

    The kit's task wrapper (``queue.py``) runs every job inside it. A
    cancellation is noted in the task's run state, for the history to say
    who did it.
    """
    kit = current_app.extensions.get(EXTENSION)
    controls = kit.controls if kit is not None else None
    if controls is None:
        yield None
        return
    run = controls.recorder.begin(task.id, task.name, attempt, task)
    token = _current.set(run)
    try:
        yield run
    except CancelExecution as exc:
        request = getattr(exc, "request", None)
        if request:
            run_state.of(task).cancelled_by = request
        raise
    finally:
        _current.reset(token)
        controls.recorder.end(run)


class JobLogHandler(logging.Handler):
    """Keeps the log records a job writes while it runs, for its monitor page.

    Installed once per process on the root logger; records written outside a
    job pass by untouched.
    """

    def handle(self, record: logging.LogRecord) -> bool:
        # Most records (Huey's own lines about each run) come from outside a
        # job's code: skip the filters and the lock that logging would take.
        if _current.get() is None:
            return False
        return super().handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        run = _current.get()
        if run is None or record.levelno < run.recorder.level:
            return
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            limit = run.recorder.limits.line_chars
            if len(message) > limit:
                message = message[:limit] + " ... (cut)"
            entry = {
                "at": record.created,
                "level": record.levelname,
                "logger": record.name,
                "message": message,
                "attempt": run.attempt,
            }
            run.recorder.add_line(run, entry)
        except Exception:  # noqa: BLE001 - logging must never break the job
            self.handleError(record)


_handler: JobLogHandler | None = None


def install_log_handler() -> None:
    """Add the job log handler to the root logger (once per process)."""
    global _handler
    if _handler is None:
        _handler = JobLogHandler()
        logging.getLogger().addHandler(_handler)
