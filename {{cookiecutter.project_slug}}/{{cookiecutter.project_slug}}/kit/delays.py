"""Delayed and scheduled dispatch: "run this in 10 minutes", "run this at 03:00".

A dispatch with ``delay`` (seconds) or ``eta`` (an aware datetime) writes the
job's "scheduled" record and puts its message on Huey's schedule in one
atomic write (one round trip on Redis, one transaction on SQLite): it is on
the schedule if and only if it is recorded. Once due, the kit's scheduler
moves it to its named queue in one step (``KitHuey.move_due``), so it keeps
the delivery rules of any job: no process that dies loses it.

Huey's scheduler looks once a second. Workers also look every
``SCHEDULE_POLL`` seconds (a quarter of a second by default) with a cheap
read, so a job due in 2 s starts about 2 s later, not up to 3.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from huey.api import Task

from .history import model
from .history.model import Change, event
from .huey_seam import KitHuey

log = logging.getLogger(__name__)


class BadSchedule(ValueError):
    """A delay or time that cannot schedule a job; ``field`` says which."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class DelayLimits:
    """How far ahead a job may be scheduled, and how late a time may be."""

    max_delay: float = 30 * 24 * 3600.0  # MAX_SCHEDULE_DELAY
    past_tolerance: float = 5.0  # SCHEDULE_PAST_TOLERANCE: clocks differ a little

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DelayLimits:
        return cls(
            float(config.get("MAX_SCHEDULE_DELAY") or cls.max_delay),
            float(config.get("SCHEDULE_PAST_TOLERANCE") or cls.past_tolerance),
        )


def parse_delay(text: str) -> float:
    """A delay from a query string or the CLI, in seconds; BadSchedule if not a number."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise BadSchedule("delay", "Not a number of seconds.") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadSchedule("delay", "Not a number of seconds.")
    return value


def parse_at(text: str) -> datetime.datetime:
    """An ISO 8601 time with its UTC offset; BadSchedule if unparseable or naive."""
    try:
        value = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        # A "+" sent unescaped in a query string arrives as a space.
        hint = " (in a URL, write + as %2B)" if " " in str(text).strip() else ""
        raise BadSchedule("at", f"Not an ISO 8601 date and time{hint}.") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise BadSchedule("at", "The time needs its UTC offset (such as +00:00 or Z).")
    return value


def resolve(
    delay: float | None, eta: datetime.datetime | None, limits: DelayLimits, now: float
) -> float | None:
    """When the job should run, as a Unix time; None: now. BadSchedule if invalid."""
    if delay is not None and eta is not None:
        raise BadSchedule("at", "Give a delay or a time, not both.")
    if delay is not None:
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay != delay:
            raise BadSchedule("delay", "Not a number of seconds.")
        if delay < 0:
            raise BadSchedule("delay", "Must not be negative.")
        if delay > limits.max_delay:
            raise BadSchedule("delay", f"Must be at most {limits.max_delay:g} seconds.")
        return now + delay if delay else None
    if eta is None:
        return None
    if not isinstance(eta, datetime.datetime) or eta.tzinfo is None:
        raise BadSchedule("at", "The time needs its UTC offset (an aware datetime).")
    at = eta.timestamp()
    if at < now - limits.past_tolerance:
        raise BadSchedule("at", "The time is in the past.")
    if at - now > limits.max_delay:
        raise BadSchedule("at", f"Must be at most {limits.max_delay:g} seconds ahead.")
    return at if at > now else None


def naive_utc(at: float) -> datetime.datetime:
    """Huey's form of an eta (``utc=True``): a naive datetime in UTC."""
    return datetime.datetime.fromtimestamp(at, datetime.UTC).replace(tzinfo=None)


def write_scheduled(
    huey: KitHuey,
    backend: Any,
    history: Any,
    task: Task,
    payload: Any,
    at: float,
    guard: Any = None,
) -> None:
    """Record ``task`` as scheduled for ``at`` and put it on the schedule, at once.

    ``guard``: an idempotency key written in the same write (``idempotency``).
    """
    now = model.now()
    meta = task.kwargs.get("meta") or {}
    change = Change(
        task.id,
        task.name,
        now,
        status=model.SCHEDULED,
        score=at,
        fields={"eta": at},
        create={"payload": model.to_json(payload), "enqueued_at": now},
        events=[
            event(
                "scheduled",
                now,
                eta=at,
                queue=meta.get("queue"),
                api_key_name=meta.get("api_key_name"),
            )
        ],
    )
    if task.expires:
        task.resolve_expires(huey.utc)
    task.eta = naive_utc(at)
    message = huey.serialize_task(task)
    history.store.apply([change], extra=backend.schedule_write(message, task.eta), guard=guard)


class DueWatch:
    """Moves due jobs between Huey's scheduler ticks, in the scheduler's process.

    Huey's scheduler calls ``KitHuey.read_schedule`` once a second; its first
    call starts this thread (``tick``), after the consumer forked its workers.
    """

    def __init__(self, huey: KitHuey, interval: float):
        self.huey = huey
        self.interval = interval
        self._pid = 0

    def tick(self) -> None:
        """Huey's scheduler looked at the schedule: make sure this thread runs."""
        if self.interval <= 0 or self._pid == os.getpid():
            return
        self._pid = os.getpid()
        threading.Thread(target=self._run, name="due-watch", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                # Quiet on an outage: read_schedule reports it.
                self.huey.move_due_quietly()
            except Exception:
                log.exception("could not move due jobs")
