"""Wake-ups: a job queued in SQLite rings the workers that sleep on this host.

SQLite cannot block a reader until a row arrives, so Huey's workers poll it:
an empty take makes a worker sleep, longer each time (``--delay``, times
``--backoff``, up to ``--max-delay``). A job queued after a quiet spell then
waits out the rest of that sleep. Here each sleeping worker (thread or
process) sleeps on a Unix datagram socket of its own, bound in a directory
next to the database file (``<file>.wake/``), for just as long as Huey would
have slept; whoever commits a job to the queue sends one byte to every
socket in that directory, and the workers take at once.

Nothing else changes: a worker that is not rung (on another host, behind a
path that is too long for a socket, on a platform without Unix sockets)
still polls with Huey's backoff. A ring never fails nor holds up a dispatch:
it is non-blocking, and every error is ignored; a socket file whose worker
is gone is removed by the ring that finds it.

Socket names are ``<consumer pid>.<worker pid>.<n>``: a consumer that stops
rings only its own workers (``prefix``), so that they see the stop flag now.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import select
import socket
import stat
import time

from .portability import WAKEUPS

log = logging.getLogger(__name__)

SUFFIX = ".wake"  # the directory next to the database file
# A ring sends to at most this many sockets: a directory full of them (a
# leak, a hostile user) costs a dispatch no more than that.
MAX_SOCKETS = 64
# AF_UNIX paths are short (108 bytes on Linux, 104 on macOS).
MAX_PATH = 100
# A listing is reused while the directory's mtime has not changed, once that
# mtime is this old: file systems stamp changes with a coarse clock, so two
# changes close together may leave the same mtime.
SETTLED_NS = 100_000_000
SOCKET_NAME = re.compile(r"\d+\.\d+\.\d+")  # what Listener binds; nothing else is touched

_counter = itertools.count()
_sender: tuple[int, socket.socket] | None = None  # (pid, socket): one per process
_listings: dict[str, tuple[int, int, list[str]]] = {}  # dir -> (mtime, listed at, names)


def directory_for(filename: str) -> str | None:
    """Where the sockets of the workers of this database file live; None: no wake-ups."""
    if not WAKEUPS or not filename or filename == ":memory:" or filename.startswith("file:"):
        return None
    return os.path.abspath(filename) + SUFFIX


def ring(directory: str, prefix: str = "") -> int:
    """Send one byte to each sleeper in ``directory``; how many were sent.

    Never raises, never blocks: a full socket already has a wake-up waiting.
    """
    try:
        return _ring(directory, prefix)
    except Exception:  # a ring is a hint: the workers poll anyway
        log.debug("wake-up failed", exc_info=True)
        return 0


def _ring(directory: str, prefix: str) -> int:
    names = _listing(directory)
    if not names:
        return 0
    sender = _sender_socket()
    sent = 0
    for name in names:
        if not name.startswith(prefix):
            continue
        path = os.path.join(directory, name)
        try:
            sender.sendto(b"!", path)
            sent += 1
        except ConnectionRefusedError:
            # A socket file no one listens on: its worker is gone (killed).
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
        except OSError:  # full (BlockingIOError), just removed, no permission
            pass
    return sent


def _listing(directory: str) -> list[str]:
    """The socket names in ``directory``; a cached listing while it has not changed."""
    try:
        mtime = os.stat(directory).st_mtime_ns
    except OSError:  # no worker ever slept here
        return []
    cached = _listings.get(directory)
    if cached is not None and cached[0] == mtime and cached[1] - mtime > SETTLED_NS:
        return cached[2]
    listed_at = time.time_ns()
    names = [n for n in os.listdir(directory) if SOCKET_NAME.fullmatch(n)][:MAX_SOCKETS]
    _listings[directory] = (mtime, listed_at, names)
    return names


def _sender_socket() -> socket.socket:
    global _sender
    if _sender is None or _sender[0] != os.getpid():  # not one a forked parent made
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender.setblocking(False)
        _sender = (os.getpid(), sender)
    return _sender[1]


class Listener:
    """One sleeping worker's socket: ``wait`` sleeps until rung, or for ``seconds``."""

    def __init__(self, directory: str, owner: int):
        """Bind a new socket in ``directory`` for a worker of consumer ``owner``.

        Raises OSError where it cannot (path too long, no permission): the
        worker then sleeps as Huey does.
        """
        path = os.path.join(directory, f"{owner}.{os.getpid()}.{next(_counter)}")
        if len(os.fsencode(path)) > MAX_PATH:
            raise OSError(f"the wake-up socket path is too long for AF_UNIX: {path}")
        os.makedirs(directory, exist_ok=True)
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._socket.bind(path)
        except OSError:
            self._socket.close()
            raise
        self._socket.setblocking(False)
        self._poll = select.poll()  # no FD_SETSIZE limit, unlike select()
        self._poll.register(self._socket, select.POLLIN)

    def wait(self, seconds: float) -> bool:
        """Sleep until rung or for ``seconds``; True if rung.

        Every byte waiting is read: rings that came while the worker was busy
        make one wake-up, not one each.
        """
        if not self._poll.poll(max(seconds, 0) * 1000):
            return False
        with contextlib.suppress(OSError):
            while self._socket.recv(64):
                pass
        return True

    def close(self) -> None:
        """Close the socket and remove its file; never raises."""
        self._socket.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
