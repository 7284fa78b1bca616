"""SQLite on a disk that refuses writes: not ready while it does, ready again after.

A full disk or a read-only file system still lets SQLite read the queue, so a
readiness check that only reads would say "ready" while every dispatch
answers 503. The web app runs as a real process with its queue on a small
tmpfs of the test's own (root only): ``/readyz`` must fail with the
dispatches, both must recover by themselves within seconds of the disk
taking writes again, and a job accepted before the trouble still runs.
"""

import sys
import time
from typing import Any

import pytest

from conftest import PACKAGE, SmallDisk
from support import wait_for

Stack = Any  # conftest.Stack

pytestmark = pytest.mark.slow

PAYLOAD = {"nome": "Ana", "idade": 30}
# Recovery is expected at the first request after the disk takes writes
# again; the bound leaves room for a loaded machine.
RECOVERY_BOUND = 10


@pytest.fixture
def disk_stack(small_disk, start_stack):
    """A web app (no worker) whose SQLite queue is on ``small_disk``."""

    def start() -> Stack:
        env = {"FLASK_SQLITE_PATH": f'"{small_disk.path / "queue.sqlite3"}"'}
        return start_stack(worker=False, env=env)

    return start


def readyz(stack: Stack) -> int:
    return stack.request("GET", "/readyz")[0]


def post(stack: Stack) -> tuple[int, dict]:
    return stack.request("POST", "/jobs/testGreet", PAYLOAD)


def accepted(stack: Stack) -> str:
    code, body = post(stack)
    assert code == 202, body
    return body["id"]


def refused_until_ready_is_refused(stack: Stack) -> None:
    """Wait for /readyz to fail, then check that a dispatch fails too."""
    wait_for(lambda: readyz(stack) == 503, "/readyz kept answering 200", timeout=15)
    code, body = post(stack)
    assert (code, body["error"]) == (503, "queue_unavailable")


def recovery(stack: Stack, what: str) -> tuple[float, str]:
    """Seconds until /readyz and a dispatch both succeed again, and that job's id."""
    started = time.monotonic()
    deadline = started + RECOVERY_BOUND
    while time.monotonic() < deadline:
        if readyz(stack) == 200:
            code, body = post(stack)
            if code == 202:
                seconds = time.monotonic() - started
                print(f"{what}: ready and dispatching again after {seconds:.3f} s")
                return seconds, body["id"]
        time.sleep(0.02)
    raise AssertionError(f"{what}: not recovered in {RECOVERY_BOUND} s\n{stack.read_logs()}")


def start_web_again(stack: Stack) -> None:
    """Start the stopped web app again, on the same port and settings."""
    port = stack.base_url.rsplit(":", 1)[1]
    stack.start("web", [sys.executable, "-m", "flask", "--app", PACKAGE, "run", "--port", port])
    wait_for(lambda: _answers(stack), "the web app did not start again")


def _answers(stack: Stack) -> bool:
    try:
        return stack.request("GET", "/healthz")[0] == 200
    except OSError:
        return False


def all_complete(stack: Stack, job_ids: list[str]) -> None:
    stack.start_worker()
    for job_id in job_ids:
        assert stack.wait_for_status(job_id, {"complete"}, timeout=30)["status"] == "complete"


def test_a_full_disk_makes_the_web_unready_until_space_is_freed(disk_stack, small_disk):
    stack = disk_stack()
    before = accepted(stack)

    small_disk.fill()
    refused_until_ready_is_refused(stack)
    small_disk.free()
    _, after = recovery(stack, "full disk")

    all_complete(stack, [before, after])


def test_a_read_only_file_system_makes_the_web_unready_until_writable(
    disk_stack, small_disk: SmallDisk
):
    """The web app opens its queue while the file system is read-only.

    Linux refuses to remount a file system read-only while a process has a
    file on it open to write (EBUSY), as the running app has its queue: an
    app meets a read-only queue file when it starts (or forks a process)
    while the file system is so, or after the kernel itself remounts it on
    an error. SQLite then opens the file read-only, and without the kit's
    reopening that connection refuses writes for good.
    """
    stack = disk_stack()
    before = accepted(stack)
    stack.stop("web")

    small_disk.remount("ro")
    start_web_again(stack)
    refused_until_ready_is_refused(stack)
    small_disk.remount("rw")
    _, after = recovery(stack, "read-only file system")

    all_complete(stack, [before, after])
