"""What the kit needs from the operating system, and what it does without it.

The web app, the ``flask`` commands and the tests run everywhere Python does,
Windows included. Process workers need ``fork()`` and POSIX signals (a timer
signal stops a job at its timeout; SIGUSR1 interrupts it at shutdown): where
they are missing (Windows), the worker runs thread workers instead and says
that job timeouts are not enforced (``consumer.py``).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
from collections.abc import Callable

# Everything process workers use: fork, the interrupt signal, the job timer.
PROCESS_WORKERS = (
    sys.platform != "win32"
    and hasattr(os, "fork")
    and all(hasattr(signal, name) for name in ("SIGUSR1", "SIGALRM", "setitimer"))
)

# Wake-ups of sleeping SQLite workers (wakeup.py): Unix datagram sockets and
# poll(). Without them (Windows), the workers poll with Huey's backoff.
WAKEUPS = sys.platform != "win32" and hasattr(socket, "AF_UNIX") and hasattr(select, "poll")


def after_fork_in_child(callback: Callable[[], object]) -> None:
    """Call ``callback`` in each forked child; nothing where there is no fork."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=callback)
