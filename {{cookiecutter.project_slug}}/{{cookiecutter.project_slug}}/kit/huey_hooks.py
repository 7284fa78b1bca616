"""What the kit's parts plug into its Huey (``huey_seam.KitHuey.hooks``).

Huey is extended in one way only: the kit's Huey subclass calls these
hooks at the points Huey's own code reaches (taking a job, running it,
reading the schedule, building a consumer), and each part of the kit
fills in its hook once, when ``queue.init_app`` builds the app's queue.
Nothing here touches Huey's internals; ``huey_seam`` does that.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from huey.api import Task


class OutageLog(Protocol):
    """Logs a backend outage once when it starts and once when it ends."""

    def failed(self, exc: BaseException) -> None: ...
    def ok(self) -> None: ...


class Delivery(Protocol):
    """At-least-once delivery (``leases.LeaseManager``), as KitHuey uses it."""

    outage: OutageLog

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """What the queue's store raises when it is unreachable."""
        ...

    def take(self) -> Task | None:
        """Huey's dequeue: the next job, with a lease on it."""
        ...

    def finish(self, task: Task, over: bool = True) -> None:
        """Huey's execute returned: release the lease; ``over=False``: give the job back."""
        ...

    def taken_flags(self, task: Any) -> dict[str, bytes | None] | None:
        """Huey's revoke flags as the take read them, once; None: read them now."""
        ...

    def clear_on_release(self, task: Task, key: str) -> bool:
        """Clear the running job's revoke flag with its release; False: do it now."""
        ...


class DequeueGate(Protocol):
    """Pauses (``controls.PauseGate``): whether workers take jobs now, and which."""

    idle_wait: float  # seconds a worker waits, while closed, before it looks again

    def is_open(self) -> bool: ...

    def admit(self, task: Task) -> Task | None:
        """The job a worker just took, or None if it was put back or aside."""
        ...


@dataclass(frozen=True)
class ConsumerStart:
    """What consumer listeners learn when a consumer is built."""

    worker_type: str
    workers: int
    stopping: Callable[[], bool]  # True once the consumer began to shut down


# Of the periodic jobs due at a moment, those this scheduler may queue.
PeriodicClaim = Callable[[list[Task], datetime.datetime], list[Task]]


@dataclass
class Hooks:
    """Where the kit's parts plug into its Huey; each is set once, by ``queue.init_app``."""

    delivery: Delivery | None = None  # leases: take with a lease, release after the run
    gate: DequeueGate | None = None  # controls: pauses
    # Called each time Huey's scheduler reads the schedule (delays.DueWatch).
    schedule_tick: Callable[[], None] | None = None
    periodic_claim: PeriodicClaim | None = None  # controls: one scheduler per periodic run
    consumer_listeners: list[Callable[[ConsumerStart], None]] = field(default_factory=list)
    # logs: the context (job name, id, attempt, request id) of a job's whole
    # run, so that Huey's own lines about it carry the job's fields too.
    job_context: Callable[[Task], contextlib.AbstractContextManager[None]] | None = None
