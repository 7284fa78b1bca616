"""The job registry.

A job is one module in this package holding three things: a unique name, a
marshmallow schema for its payload, and the function that does the work,
tied together by the :func:`job` decorator::

    @job("sendWelcomeEmailJob", schema=WelcomeEmail, retries=3)
    def send_welcome_email(data: dict) -> dict: ...

:func:`discover` imports every module here, so the HTTP API, the CLI, the
worker and the monitor all see a new job without any other edit.
"""

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema

JobFunction = Callable[[dict], Any]


@dataclass(frozen=True)
class Job:
    """Everything the kit needs to know about one job."""

    name: str
    schema: type[Schema]
    func: JobFunction
    retries: int = 0
    retry_delay: float = 0
    timeout: float | None = None

    @property
    def module(self) -> str:
        return self.func.__module__

    @property
    def description(self) -> str:
        return (self.func.__doc__ or "").strip().split("\n")[0]

    def load(self, payload: Any) -> dict:
        """Validate a payload, raising marshmallow's ``ValidationError``."""
        return self.schema().load(payload)

    def dump(self, data: dict) -> dict:
        """Turn validated data back into plain JSON for the queue."""
        return self.schema().dump(data)


class PermanentError(Exception):
    """Raise this from a job for a failure that no retry can fix.

    The job is recorded as failed at once instead of being retried: use it
    for bad input or a record that no longer exists, not for a timeout.
    """


_registry: dict[str, Job] = {}


def job(
    name: str,
    *,
    schema: type[Schema],
    retries: int = 0,
    retry_delay: float = 0,
    timeout: float | None = None,
) -> Callable[[JobFunction], JobFunction]:
    """Register the decorated function as the job called ``name``.

    The function receives the payload already validated by ``schema``.
    ``retries`` and ``retry_delay`` (seconds) control what happens when it
    raises; ``timeout`` (seconds) stops it when the worker runs processes.
    """

    def register(func: JobFunction) -> JobFunction:
        existing = _registry.get(name)
        if existing is not None and existing.module != func.__module__:
            raise ValueError(
                f"job name {name!r} is used by both {existing.module} "
                f"and {func.__module__}; job names must be unique"
            )
        _registry[name] = Job(name, schema, func, retries, retry_delay, timeout)
        return func

    return register


def discover() -> dict[str, Job]:
    """Import every module of this package and return the registered jobs.

    The app factory calls this once; importing a module twice is a no-op.
    """
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    return all_jobs()


def all_jobs() -> dict[str, Job]:
    """Return the registered jobs, sorted by name."""
    return dict(sorted(_registry.items()))


def get(name: str) -> Job | None:
    """Return the job called ``name``, or None if there is no such job."""
    return _registry.get(name)
