"""Make this Python look like another platform's, for the kit's code.

Imported (as ``-p simulated_platform`` for pytest, or first thing in a
``python -c`` bootstrap) with ``KIT_SIMULATED_PLATFORM`` set:

* ``win32``: no ``fork()``, no ``os.register_at_fork``, none of the POSIX-only
  signals (SIGUSR1, SIGALRM, SIGHUP, ...) nor interval timers, and
  ``sys.platform`` says "win32";
* ``darwin``: ``sys.platform`` says "darwin", so no ``PR_SET_PDEATHSIG``.

The standard library and the third-party packages are imported first, the
Linux way (on "win32" they would reach for Windows-only modules that are not
here); only the kit's own code, imported later, sees the other platform.
"""

import contextlib
import importlib
import os
import signal
import sys

# Imported before the switch: everything the kit, its tests and Huey import.
IMPORTED_FIRST = [
    "asyncio",
    "ctypes",
    "ctypes.util",
    "multiprocessing",
    "multiprocessing.context",
    "multiprocessing.popen_fork",
    "pathlib",
    "platform",
    "selectors",
    "shutil",
    "socket",
    "sqlite3",
    "subprocess",
    "tempfile",
    "uuid",
    "apispec",
    "apispec.ext.marshmallow",
    "click",
    "croniter",
    "dotenv",
    "flask",
    "flask.cli",
    "flask.testing",
    "gunicorn",
    "huey",
    "huey.bin.huey_consumer",
    "huey.consumer",
    "marshmallow",
    "prometheus_client",
    "redis",
    "werkzeug",
    "werkzeug.serving",
]
# Imported first when installed: pytest plugins of the test environment.
IMPORTED_FIRST_IF_PRESENT = ["hypothesis", "trio", "schemathesis", "selenium"]
# What Windows' os and signal modules do not have.
POSIX_ONLY_OS = ["fork", "forkpty", "register_at_fork", "killpg", "setsid", "getpgid"]
POSIX_ONLY_SIGNAL = ["SIGUSR1", "SIGUSR2", "SIGALRM", "SIGHUP", "SIGQUIT", "SIGCHLD"]
POSIX_ONLY_SIGNAL += ["SIGKILL", "SIGSTOP", "SIGCONT", "setitimer", "getitimer", "ITIMER_REAL"]
POSIX_ONLY_SIGNAL += ["alarm", "pause", "siginterrupt", "pthread_kill", "pthread_sigmask"]


def simulate(platform: str) -> None:
    for name in IMPORTED_FIRST:
        importlib.import_module(name)
    for name in IMPORTED_FIRST_IF_PRESENT:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if platform == "win32":
        for name in POSIX_ONLY_OS:
            if hasattr(os, name):
                delattr(os, name)
        for name in POSIX_ONLY_SIGNAL:
            if hasattr(signal, name):
                delattr(signal, name)
    elif platform != "darwin":
        raise ValueError(f"KIT_SIMULATED_PLATFORM must be win32 or darwin, not {platform!r}")
    sys.platform = platform


simulate(os.environ["KIT_SIMULATED_PLATFORM"])
