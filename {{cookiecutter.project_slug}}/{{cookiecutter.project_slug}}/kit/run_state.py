"""What the kit's parts tell each other about one task, between Huey's steps.

Huey hands the same ``Task`` object to the dequeue, the run, its hooks and
every signal of one execution, and nothing else: a fact one part learns
(the lease the worker took, who cancelled the job, the job's return value)
and another part needs later has to ride on the task. It rides in one typed
object, ``task.kit_run``, instead of loose attributes.

A run's state is created by the first part that has something to note: the
lease manager's take, in a worker; the history's dispatch, when it records
the job with its message. Readers use :func:`peek`, which creates nothing
(and takes anything, since Huey's revoke checks also accept a bare id).

The object lives as long as the ``Task`` object: a retry queued by Huey is
a new object (read back from its message), but in immediate mode (tests)
the retry runs on the same object, so each flag that is about one signal
is consumed by that signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from huey.api import Task

    from .leases.model import Lease

ATTRIBUTE = "kit_run"


@dataclass
class RunState:
    """One task's notes, each written by one part of the kit and read by another."""

    # leases: the worker's claim on this job, from the take.
    lease: Lease | None = None
    # leases: the worker stopped mid-run and put the job back on the queue,
    # as it was; the history records "back on the queue", not a failure.
    requeued: bool = False
    # history: this run's last write waits in the tracker's next batch, and
    # that write releases the lease, so nothing else may.
    write_pending: bool = False
    # history: the "queued" record was written with the message, so Huey's
    # "enqueued" signal (consumed there) must not write it again.
    recorded: bool = False
    # huey_seam: read off the schedule by the kit's scheduler, which sends
    # "enqueued" before it moves the job (and maybe in vain, if another
    # scheduler moved it first): the history writes "queued" only over
    # "scheduled" or "retrying", never over what a run wrote since.
    from_schedule: bool = False
    # history: the failure already said "will be retried", so Huey's
    # "retrying" signal (consumed there) adds nothing.
    retry_noted: bool = False
    # history: the job's return value, from Huey's post-execute hook to its
    # "complete" signal, which does not carry it (consumed there).
    result: Any = None
    # progress: the operator's cancel request that stopped the run.
    cancelled_by: dict[str, Any] | None = None
    # metrics: when the run started (time.monotonic()), for its duration.
    started: float | None = None
    # history: what the job raised, for a signal that does not carry it
    # (a timeout: its traceback shows where the job was stopped).
    exception: BaseException | None = None


def of(task: Task) -> RunState:
    """The task's run state, created on first use."""
    state = getattr(task, ATTRIBUTE, None)
    if state is None:
        state = RunState()
        setattr(task, ATTRIBUTE, state)
    return state


def peek(task: Any) -> RunState | None:
    """The task's run state if anything was noted on it yet; else None."""
    return getattr(task, ATTRIBUTE, None)
