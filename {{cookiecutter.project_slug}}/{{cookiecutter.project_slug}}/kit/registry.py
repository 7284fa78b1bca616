"""The job registry.

A job is one module in the project's ``jobs`` package holding three things:
a unique name, a marshmallow schema for its payload, and the function that
does the work, tied together by the :func:`job` decorator::

    @job("sendWelcomeEmailJob", schema=WelcomeEmail, retries=3)
    def send_welcome_email(data: dict) -> dict: ...

:func:`discover` imports every module of that package, so the HTTP API, the
CLI, the worker and the monitor all see a new job without any other edit.
"""

import dataclasses
import functools
import hashlib
import importlib
import json
import pkgutil
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from marshmallow import INCLUDE, Schema, fields, missing
from marshmallow.decorators import POST_DUMP, POST_LOAD, PRE_DUMP

from .queues import check_name as check_queue_name
from .schedules import cron

JobFunction = Callable[[dict], Any]
# What makes two dispatches "the same job": payload field names, or a
# function of the validated payload returning any JSON-able value.
UniqueKey = Sequence[str] | Callable[[dict], Any]


@dataclass(frozen=True)
class Job:
    """Everything the kit needs to know about one job."""

    name: str
    schema: type[Schema]
    func: JobFunction
    retries: int = 0
    retry_delay: float = 0
    timeout: float | None = None
    retry_backoff: float = 2.0
    retry_jitter: float = 0.5
    retry_max_delay: float = 3600.0
    unique_key: UniqueKey | None = None
    unique_for: float = 0
    # What happens to a run lost with its worker (see job()).
    on_worker_lost: str = "retry"
    # Periodic jobs only: when Huey's scheduler runs it (see periodic_job).
    schedule: Any = None
    # The named queue it waits in, and the others a dispatch may send it to.
    queue: str = "default"
    queues: tuple[str, ...] = ()

    def queue_for(self, requested: str | None) -> str:
        """The queue of one dispatch: the job's own, or another it allows."""
        if requested is None or requested == self.queue:
            return self.queue
        if requested not in self.queues:
            allowed = ", ".join((self.queue, *self.queues))
            raise ValueError(f"job {self.name!r} may go to these queues only: {allowed}")
        return requested

    @property
    def module(self) -> str:
        return self.func.__module__

    @property
    def description(self) -> str:
        return (self.func.__doc__ or "").strip().split("\n")[0]

    @functools.cached_property
    def validator(self) -> Schema:
        """One schema instance per job, reused: building one costs more than
        validating a small payload, and a schema keeps no state between loads."""
        return self.schema()

    def load(self, payload: Any) -> dict:
        """Validate a payload, raising marshmallow's ``ValidationError``."""
        return self.validator.load(payload)

    def dump(self, data: dict) -> dict:
        """Turn validated data back into plain JSON for the queue."""
        if self.loads_json:
            return data  # what dump() would give back, without its cost
        return self.validator.dump(data)

    @functools.cached_property
    def loads_json(self) -> bool:
        """Whether the schema's loaded data is already the JSON its dump gives.

        True for the usual flat schema of strings, numbers and booleans with
        no hooks that change data: then the dispatch skips the dump, which
        costs as much as the load. Anything else (nested schemas, dates,
        renamed keys, dump defaults) is dumped as always.
        """
        schema = self.validator
        if schema.unknown == INCLUDE or hook_tags(type(schema)) & DATA_HOOKS:
            return False
        return all(
            type(field) in JSON_FIELDS
            and field.data_key is None
            and field.attribute is None
            and not (field.load_only or field.dump_only)
            and field.dump_default is missing
            and not getattr(field, "as_string", False)
            for field in schema.fields.values()
        )

    def next_retry_delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before the try after failed attempt ``attempt`` (1-based).

        Exponential backoff, ``retry_delay * retry_backoff ** (attempt - 1)``
        capped at ``retry_max_delay``, with jitter: a random part of up to
        ``retry_jitter`` of it is taken off (0.5: "equal jitter"), so jobs that
        failed together do not all come back at the same moment.
        """
        delay = min(self.retry_max_delay, self.retry_delay * self.retry_backoff ** (attempt - 1))
        return delay * (1 - self.retry_jitter * rand())

    def unique_hash(self, data: dict) -> str | None:
        """The uniqueness key of a (dumped) payload, hashed; None if not unique."""
        if not self.unique_for or self.unique_key is None:
            return None
        if callable(self.unique_key):
            value = self.unique_key(data)
        else:
            fields = [self.unique_key] if isinstance(self.unique_key, str) else self.unique_key
            value = [data.get(field) for field in fields]
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


class PermanentError(Exception):
    """Raise this from a job for a failure that no retry can fix.

    The job is recorded as failed at once instead of being retried: use it
    for bad input or a record that no longer exists, not for a timeout.
    """


# Fields whose loaded value is a JSON value that dumps as itself, and hooks
# that could change the data between load and dump (Job.loads_json).
JSON_FIELDS = frozenset(
    {fields.String, fields.Email, fields.Url, fields.Integer, fields.Float, fields.Boolean}
)
DATA_HOOKS = frozenset({POST_LOAD, PRE_DUMP, POST_DUMP})


def hook_tags(schema: type[Schema]) -> set[str]:
    """What a schema's decorated methods hook into (``post_load``, ``validates``...).

    Read from the hooks marshmallow resolved for the class and runs from,
    keyed by tag in marshmallow 4 and by ``(tag, many)`` in marshmallow 3.
    """
    hooks = schema._hooks
    return {key if isinstance(key, str) else key[0] for key, names in hooks.items() if names}


_registry: dict[str, Job] = {}

# on_worker_lost: "retry" queues a lost run again, "fail" records it as failed.
WORKER_LOST_POLICIES = ("retry", "fail")


def job(
    name: str,
    *,
    schema: type[Schema],
    retries: int = 0,
    retry_delay: float = 0,
    timeout: float | None = None,
    retry_backoff: float = 2.0,
    retry_jitter: float = 0.5,
    retry_max_delay: float = 3600.0,
    unique_key: UniqueKey | None = None,
    unique_for: float = 0,
    on_worker_lost: str = "retry",
    queue: str = "default",
    queues: Sequence[str] = (),
) -> Callable[[JobFunction], JobFunction]:
    """Register the decorated function as the job called ``name``.

    The function receives the payload already validated by ``schema``.

    Retries: a job that raises runs again up to ``retries`` more times (so at
    most ``retries + 1`` attempts), waiting ``retry_delay`` seconds before
    the first retry, then ``retry_backoff`` times longer before each next
    one, up to ``retry_max_delay``, minus a random ``retry_jitter`` share.
    Raise :class:`PermanentError` for a failure no retry can fix.

    ``timeout`` (seconds) stops a run that takes longer, counted as a failed
    attempt; None means the app's ``JOB_TIMEOUT``, 0 means no limit. It is
    enforced with process workers (the kit's default), not with threads.

    Unique jobs: with ``unique_for`` (seconds) and ``unique_key`` (payload
    field names, or a function of the payload), a dispatch whose key matches
    a job dispatched less than ``unique_for`` seconds earlier queues nothing
    and returns that job's id.

    A run lost with its worker (SIGKILL, the OOM killer, a lost machine) is
    queued again without using a retry: the job did not fail, its worker
    did. ``on_worker_lost="fail"`` is for a job that must never run twice,
    even at the cost of not running at all: such a run is recorded as failed.

    ``queue`` is the named queue its jobs wait in (workers serve queues with
    weights, see ``WORKER_QUEUES``); ``queues`` lists others that a dispatch
    may choose instead (``enqueue(..., queue="low")``).
    """
    for queue_name in (queue, *queues):
        check_queue_name(queue_name)
    if retries < 0 or retry_delay < 0 or retry_max_delay < 0:
        raise ValueError(f"job {name!r}: retries and retry delays cannot be negative")
    if retry_backoff < 1 or not 0 <= retry_jitter <= 1:
        raise ValueError(f"job {name!r}: retry_backoff must be >= 1 and retry_jitter in [0, 1]")
    if (unique_for > 0) != (unique_key is not None):
        raise ValueError(f"job {name!r}: unique_key and unique_for go together")
    if on_worker_lost not in WORKER_LOST_POLICIES:
        raise ValueError(f"job {name!r}: on_worker_lost must be one of {WORKER_LOST_POLICIES}")

    def register(func: JobFunction) -> JobFunction:
        existing = _registry.get(name)
        if existing is not None and existing.module != func.__module__:
            raise ValueError(
                f"job name {name!r} is used by both {existing.module} "
                f"and {func.__module__}; job names must be unique"
            )
        _registry[name] = Job(
            name,
            schema,
            func,
            retries=retries,
            retry_delay=retry_delay,
            timeout=timeout,
            retry_backoff=retry_backoff,
            retry_jitter=retry_jitter,
            retry_max_delay=retry_max_delay,
            unique_key=unique_key,
            unique_for=unique_for,
            on_worker_lost=on_worker_lost,
            queue=queue,
            queues=tuple(queues),
        )
        return func

    return register


class NoPayload(Schema):
    """The payload of a periodic job: nothing (an empty JSON object)."""


def periodic_job(
    name: str,
    schedule: Any,
    *,
    retries: int = 0,
    retry_delay: float = 0,
    timeout: float | None = None,
    on_worker_lost: str = "retry",
) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Register the decorated function as a job that runs on a schedule::

        @periodic_job("relatorioFila", cron("*/5 * * * *"))
        def relatorio_fila() -> dict: ...

    ``schedule`` is a :func:`~.schedules.cron` schedule (a crontab line also
    works), in UTC. The function takes no arguments. The workers' schedulers
    queue each run once, however many workers there are; the monitor lists
    the job with its last and next run and can run it at once.
    """
    if isinstance(schedule, str):
        schedule = cron(schedule)

    def register(func: Callable[[], Any]) -> Callable[[], Any]:
        @functools.wraps(func)
        def call(_payload: dict) -> Any:
            return func()

        job(
            name,
            schema=NoPayload,
            retries=retries,
            retry_delay=retry_delay,
            timeout=timeout,
            on_worker_lost=on_worker_lost,
        )(call)
        _registry[name] = dataclasses.replace(_registry[name], schedule=schedule)
        return func

    return register


def discover(package: str, extra_modules: Sequence[str] = ()) -> dict[str, Job]:
    """Import every module of the ``package`` of jobs; return the registered jobs.

    ``extra_modules`` (the ``JOB_MODULES`` setting) names more modules to
    import, for jobs kept elsewhere. ``JobKit.init_app`` calls this once;
    importing a module twice is a no-op.
    """
    jobs_package = importlib.import_module(package)
    for module in pkgutil.iter_modules(jobs_package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
    for name in extra_modules:
        importlib.import_module(name)
    return all_jobs()


def all_jobs() -> dict[str, Job]:
    """Return the registered jobs, sorted by name."""
    return dict(sorted(_registry.items()))


def get(name: str) -> Job | None:
    """Return the job called ``name``, or None if there is no such job."""
    return _registry.get(name)


def worker_lost_policy(name: str) -> str:
    """What to do with a run of ``name`` lost with its worker; "retry" if unknown."""
    found = _registry.get(name)
    return "retry" if found is None else found.on_worker_lost
