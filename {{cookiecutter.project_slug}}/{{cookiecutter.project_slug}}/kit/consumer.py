"""The kit's worker: Huey's consumer with safe defaults.

``python -m {{ cookiecutter.project_slug }}.worker`` runs it. It takes the same flags as
``huey_consumer`` (``--help`` lists them) with different defaults:

* process workers (``WORKER_TYPE``, ``WORKERS``): a job's ``timeout`` can
  only be enforced in a process of its own, where Huey stops it with a
  timer signal. Thread workers can only *ask* a job to stop;
* short polling (``--delay 0.01 --max-delay 0.25``), so a job queued in
  SQLite starts within a quarter of a second; a job queued on the same host
  wakes a sleeping worker at once (``wakeup.py``);
* SIGTERM and SIGINT both shut down gracefully: take no new job, let the
  running ones finish for ``WORKER_SHUTDOWN_TIMEOUT`` seconds (``-t``), then
  interrupt them and put them back on the queue, unchanged. The same signal
  a second time stops at once (jobs still go back on the queue). Plain
  ``huey_consumer`` treats SIGTERM, which Docker, systemd and Kubernetes
  send, as "stop now" unless given ``-g TERM``.

Where process workers cannot run (Windows: no ``fork()``, no SIGUSR1 nor
SIGALRM), it runs thread workers instead, with a warning that job timeouts
are not enforced. A worker process stops when its consumer dies: on Linux
the kernel kills it (``PR_SET_PDEATHSIG``); elsewhere (macOS) a thread in it
notices that its parent changed.
"""

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from huey.constants import WORKER_PROCESS, WORKER_THREAD
from huey.exceptions import TaskTimeout

from .huey_seam import (
    KitConsumer,
    KitHuey,
    KitProcessEnvironment,
    consumer_option_parser,
    consumer_options,
)
from .portability import PROCESS_WORKERS

log = logging.getLogger(__name__)

# Sent by the consumer to its worker processes when the grace period is
# over: a job still running gets KeyboardInterrupt and goes back on the queue.
# None where the signal does not exist (Windows: no process workers there).
INTERRUPT_SIGNAL = getattr(signal, "SIGUSR1", None)
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# Without PR_SET_PDEATHSIG, how often a worker process looks for its parent.
PARENT_CHECK_SECONDS = 0.5


class GracefulProcessEnvironment(KitProcessEnvironment):
    """Process workers that ignore SIGINT and SIGTERM themselves.

    A terminal's Ctrl-C and systemd's stop reach every process of the group;
    only the consumer decides what they mean, and tells its workers. A worker
    whose consumer dies (SIGKILL) dies with it rather than run on as an
    orphan that no stop signal reaches; its jobs are recovered.
    """

    def __init__(self) -> None:
        super().__init__(signal.SIGINT, INTERRUPT_SIGNAL)
        self._seconds = 0.0  # the running job's timeout, for the alarm's message

    def wrap_worker(self, runnable: Callable[[], None]) -> Callable[[], None]:
        parent = os.getpid()

        def run() -> None:
            _die_with(parent)
            runnable()

        return run

    def child_started(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGALRM, self._alarm)

    def _alarm(self, signum: int, frame: Any) -> None:
        raise TaskTimeout(f"timeout ({self._seconds}s)")

    @contextlib.contextmanager
    def job_timeout(self, seconds: float) -> Iterator[None]:
        """Stop a job that runs longer than ``seconds``, as Huey does.

        Huey sets the SIGALRM handler before each job and restores it after,
        two ``signal()`` calls per job; here the handler is set once per
        worker process (``init_child``) and a job only arms the timer.
        """
        self._seconds = seconds
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)  # disarm


def _die_with(parent: int) -> None:
    """End this process when its parent, the consumer, dies."""
    if not _kill_me_with_my_parent():
        # No PR_SET_PDEATHSIG (macOS, BSDs): an orphan is handed to another
        # parent (init, launchd), so a change of os.getppid() means it died.
        watch = threading.Thread(target=_watch_parent, args=(parent,), daemon=True)
        watch.name = "parent-watch"
        watch.start()
    elif os.getppid() != parent:  # it died before the request was made
        os._exit(1)


def _kill_me_with_my_parent() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    log.warning("the consumer (pid %s) is gone: this worker process stops", parent)
    # At once, as SIGKILL would: the job it was running is recovered (leases).
    os._exit(1)


class GracefulConsumer(KitConsumer):
    """A consumer for which SIGTERM and SIGINT both mean "finish, then stop"."""

    def __init__(self, huey: KitHuey, **options: Any):
        options["graceful_signal"] = "INT"
        super().__init__(huey, **options)
        self.make_graceful(signal.SIGTERM)

    def process_environment(self) -> GracefulProcessEnvironment:
        return GracefulProcessEnvironment()

    def signal_handled(self, graceful: bool, restart: bool) -> None:
        if graceful and not restart:
            # Either signal again: stop now instead of waiting.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.default_int_handler)


def main(huey: KitHuey, config: Mapping[str, Any], argv: Sequence[str] | None = None) -> int:
    """Parse ``huey_consumer``-style flags and run the kit's consumer."""
    parser = consumer_option_parser()
    project = __package__.rpartition(".")[0]  # the kit lives in <project>.kit
    parser.usage = f"python -m {project}.worker [options]"
    parser.remove_option("--graceful-signal")  # both signals are graceful here
    parser.add_option(
        "--queues",
        help="the named queues to serve, with weights: critical=6,default=3,low=1 "
        "(default: WORKER_QUEUES)",
    )
    parser.add_option(
        "--strict-priority",
        action="store_true",
        help="always drain the heaviest non-empty queue first (STRICT_PRIORITY)",
    )
    parser.set_defaults(
        worker_type=config["WORKER_TYPE"],
        workers=int(config["WORKERS"]),
        initial_delay=0.01,
        max_delay=0.25,
        shutdown_timeout=float(config["WORKER_SHUTDOWN_TIMEOUT"]),
    )
    options, args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args:
        parser.error("no positional arguments: the worker runs this app's jobs")
    named, strict = options.queues, options.strict_priority
    del options.queues, options.strict_priority  # not huey_consumer's
    try:
        huey.queues.serve(huey.queues.weights if named is None else named, strict or None)
    except ValueError as exc:
        parser.error(f"--queues: {exc}")
    log.info("serving queues %s", huey.queues.describe())
    values = {k: v for k, v in vars(options).items() if v is not None}
    if values.get("worker_type") == WORKER_PROCESS and not PROCESS_WORKERS:
        # huey_consumer refuses process workers on Windows; the kit's
        # default is process workers, so it falls back to threads and says so.
        log.warning(
            "process workers need fork() and POSIX signals, which %s lacks: running "
            "%s thread workers instead. Job timeouts are NOT enforced: a job that "
            "runs past its timeout is not stopped",
            sys.platform,
            values.get("workers", 1),
        )
        values["worker_type"] = WORKER_THREAD
    # Checked, and the same log lines as huey_consumer's (see
    # logs.configure_consumer_logging).
    checked = consumer_options(values)
    if checked.worker_type == WORKER_THREAD and PROCESS_WORKERS:
        log.warning(
            "thread workers cannot stop a job that runs past its timeout; "
            "use --worker-type process to enforce job timeouts"
        )
    huey.build_consumer(GracefulConsumer, **checked.values).run()
    return 0
