"""Huey's consumer and its workers, as the kit runs them.

Part of the seam (``huey_seam.USES`` lists what is used here):

* ``KitConsumer``: Huey's consumer, with its private signal handling
  reachable by name (``consumer.py`` sets the kit's policy on it), and
  workers that a queued job wakes up on SQLite;
* ``KitWorker``: Huey's worker, whose idle sleep a job queued on this host
  cuts short (``wakeup.py``);
* ``KitProcessEnvironment``: Huey's process workers with their per-process
  steps reachable by name.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

from huey.constants import WORKER_PROCESS, WORKER_THREAD
from huey.consumer import Consumer, Environment, ProcessEnvironment, Worker

from .. import wakeup

log = logging.getLogger(__name__)


def wake_directory(storage: Any) -> str | None:
    """Where the workers of ``storage`` listen for wake-ups; None: they only poll.

    Only the kit's SQLite storage has one: Redis takes block already.
    """
    return getattr(storage, "wake_directory", None)


class KitWorker(Worker):
    """Huey's worker, whose idle sleep a job queued on this host cuts short.

    Huey sleeps on the stop flag for its backoff delay after an empty take;
    this worker sleeps as long on a socket of its own (``wakeup.Listener``),
    which a commit that queues a job rings. Without a socket it sleeps as
    Huey does. A wake-up that found nothing to take (the job went to another
    worker, or to a queue this one does not serve or is paused) makes the
    next sleep ignore rings for ``--delay`` first: jobs this worker cannot
    take wake it no more often than Huey polls at its fastest.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.owner = os.getpid()  # the consumer's: workers are made there
        self._listener: wakeup.Listener | None = None
        self._can_listen = True
        self._woken_at: int | None = None  # task_count when a ring last woke it

    def sleep(self) -> None:
        # Huey's backoff (Worker.sleep), around a wait that a ring cuts short.
        self.delay = min(self.delay, self.max_delay)
        self.idle(self.delay)
        self.delay *= self.backoff

    def idle(self, seconds: float) -> None:
        listener = self._listen()
        if listener is None:
            self.stop_flag.wait(seconds)
            return
        if self._woken_at == self.task_count:  # the last ring found nothing
            floor = min(self.default_delay, seconds)
            if self.stop_flag.wait(floor):
                return
            seconds -= floor
        self._woken_at = self.task_count if listener.wait(seconds) else None

    def _listen(self) -> wakeup.Listener | None:
        """This worker's socket, bound at its first sleep (in its own process)."""
        if self._listener is None and self._can_listen:
            directory = wake_directory(self.huey.storage)
            self._can_listen = directory is not None
            if directory is not None:
                try:
                    self._listener = wakeup.Listener(directory, self.owner)
                except OSError as exc:
                    self._can_listen = False
                    log.warning("no wake-ups for this worker, it polls (%s)", exc)
        return self._listener

    def shutdown(self) -> None:
        try:
            super().shutdown()
        finally:
            if self._listener is not None:
                self._listener.close()
                self._listener = None


class KitConsumer(Consumer):
    """Huey's consumer, with its private signal handling reachable by name.

    Its thread and process workers are ``KitWorker``s where the storage
    rings them (SQLite, on a platform with Unix sockets).
    """

    def __init__(self, huey: Any, **options: Any):
        worker_type = options.get("worker_type") or WORKER_THREAD
        if worker_type in (WORKER_THREAD, WORKER_PROCESS) and wake_directory(huey.storage):
            self.worker_class = KitWorker
        super().__init__(huey, **options)

    def make_graceful(self, signum: int) -> None:
        """Let ``signum`` mean "finish the running jobs, then stop"."""
        self._signal_actions[signum] = (False, True)

    def process_environment(self) -> Environment | None:
        """The environment of process workers; None: Huey's own."""
        return None

    def get_environment(self, worker_type: str) -> Environment:
        environment = self.process_environment() if worker_type == WORKER_PROCESS else None
        return environment or super().get_environment(worker_type)

    def stop(self, graceful: bool = False) -> None:
        self.stop_flag.set()
        directory = wake_directory(self.huey.storage)
        if self.worker_class is KitWorker and directory is not None:
            # Sleeping workers see the flag now, not at the end of their sleep.
            wakeup.ring(directory, prefix=f"{os.getpid()}.")
        super().stop(graceful)

    def _handle_signal(self, signum: int, frame: Any) -> None:
        super()._handle_signal(signum, frame)
        self.signal_handled(graceful=self._graceful, restart=self._restart)

    def signal_handled(self, graceful: bool, restart: bool) -> None:
        """After Huey handled a stop (or restart) signal: for subclasses."""


class KitProcessEnvironment(ProcessEnvironment):
    """Huey's process workers, with their per-process steps reachable by name."""

    def create_process(self, runnable: Callable[[], None], name: str) -> Any:
        return super().create_process(self.wrap_worker(runnable), name)

    def init_child(self, process: Any) -> None:
        super().init_child(process)
        self.child_started()

    def timeout(self, seconds: float) -> contextlib.AbstractContextManager[None]:
        return self.job_timeout(seconds)

    def wrap_worker(self, runnable: Callable[[], None]) -> Callable[[], None]:
        """What a new worker process runs; by default, Huey's runnable."""
        return runnable

    def child_started(self) -> None:
        """In each worker process, after Huey set its signal handlers."""

    def job_timeout(self, seconds: float) -> contextlib.AbstractContextManager[None]:
        """Stop a job that runs longer than ``seconds``; by default, Huey's way."""
        return super().timeout(seconds)
