"""Small helpers shared by the tests and their fixtures."""

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis
from flask.testing import FlaskClient

# The jobs API refuses requests without a key: every app the tests build has
# this one, for every job (conftest.py sets FLASK_JOBS_API_KEYS), and every
# test client sends it. Tests of the keys themselves configure their own.
# A strong secret key, as the monitor requires outside debug mode.
SECRET_KEY = "kit-tests-" + "0123456789abcdef" * 2 + "-signing-key"
API_KEY = "kit-tests-api-key-0123456789"
API_KEYS = {"tests": {"key": API_KEY, "jobs": ["*"]}}
AUTHORIZATION = f"Bearer {API_KEY}"


class ApiKeyClient(FlaskClient):
    """Flask's test client, sending the tests' API key, as a real client would."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.environ_base["HTTP_AUTHORIZATION"] = AUTHORIZATION


def bearer(secret: str) -> dict[str, str]:
    """The header that carries an API key."""
    return {"Authorization": f"Bearer {secret}"}


def without_key(client: FlaskClient) -> FlaskClient:
    """Make a test client stop sending the tests' API key."""
    client.environ_base.pop("HTTP_AUTHORIZATION", None)
    return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_queue_name() -> str:
    """Tests share one Redis: each gets its own queue (and so its own keys)."""
    return f"test_{uuid.uuid4().hex[:12]}"


def pending(app) -> int:
    """How many jobs are waiting in the app's queue."""
    return app.extensions["jobkit"].huey.pending_count()


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def wait_for(check, message: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(message)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL ``process`` and every process below it: none outlives a test."""
    children = descendants(process.pid)
    process.kill()
    process.wait(10)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start_time(pid: int) -> str | None:
    """When a process started (clock ticks since boot), None once it is gone.

    A pid and its start time name one process: a pid alone may be reused.
    """
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class PrivateRedis:
    """A test's own redis-server on ``port``, to stop, kill or freeze at will.

    With ``aof`` every write is in the append-only file before Redis answers
    (``appendfsync always``), so a SIGKILL loses nothing Redis acknowledged:
    what a restart loses after that is the kit's doing.
    """

    def __init__(self, binary: str, port: int, workdir: Path, aof: bool = False):
        self.binary, self.port, self.workdir, self.aof = binary, port, workdir, aof
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.aof:
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no"]
        self.process = subprocess.Popen(argv, cwd=self.workdir, stdout=subprocess.DEVNULL)
        # Replaying a long append-only file takes a while.
        wait_for(lambda: redis_answers(self.url), "redis-server did not start", 60)

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM), as an operator's restart does."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to write anything more."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Freeze the server for the block: connections are accepted, never answered."""
        self.freeze()
        try:
            yield
        finally:
            self.thaw()  # always: a stopped process cannot even be terminated
