"""Shared fixtures.

Unit tests use ``app`` (Huey's immediate mode: a job runs inside the request
that queues it) or ``queue_app`` (a real SQLite queue with no worker, to see
exactly what was queued). Integration tests start the real thing, a web
server and a ``huey_consumer``, with ``start_stack``.
"""

import contextlib
import errno
import io
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask

from acme_jobs import create_app
from acme_jobs.kit import registry
from acme_jobs.kit.logs import JobContextFilter, JSONFormatter
from support import (
    API_KEYS,
    AUTHORIZATION,
    ApiKeyClient,
    descendants,
    free_port,
    redis_answers,
    start_time,
    unique_queue_name,
    wait_for,
    without_key,
)

# The baked project under test: the template's tests/test_kit.py bakes the
# default answers and points KIT_PROJECT_ROOT at the result.
PROJECT_ROOT = Path(os.environ.get("KIT_PROJECT_ROOT", os.getcwd())).resolve()
PACKAGE = "acme_jobs"
TESTS_DIR = Path(__file__).resolve().parent
# Processes started by the tests import the project and the test-only jobs.
KIT_PYTHONPATH = os.pathsep.join([str(PROJECT_ROOT), str(TESTS_DIR)])
# The kit's tests run on test-only jobs (kit_jobs/), never on the project's
# example jobs: every app, in this process or started by a test, reads this.
os.environ["FLASK_JOBS_PACKAGE"] = "kit_jobs"
# The jobs API stays closed, as it ships: every app has the tests' key (see
# support.API_KEY), and every Flask test client sends it.
os.environ["FLASK_JOBS_API_KEYS"] = json.dumps(API_KEYS)
Flask.test_client_class = ApiKeyClient
# The app factory reads .env (kit/environment.py); the tests' settings are
# the ones written here, whatever .env a machine has. Tests of .env itself
# start processes without this.
os.environ.setdefault("FLASK_SKIP_DOTENV", "1")

# The worker flags the README recommends, with short polling for SQLite.
WORKER_FLAGS = ["--worker-type", "process", "--workers", "2", "--delay", "0.01"]
WORKER_FLAGS += ["--max-delay", "0.25", "--graceful-signal", "TERM", "--shutdown-timeout", "10"]
# No periodic runs on their own: the example testPeriodic (every 5 minutes)
# would add a job to the counts of a test that straddles such a minute.
WORKER_FLAGS += ["--no-periodic"]


@pytest.fixture
def app(tmp_path):
    return create_app(
        {
            "TESTING": True,
            "QUEUE_IMMEDIATE": True,
            "REDIS_URL": None,  # whatever the environment says
            "SQLITE_PATH": str(tmp_path / "queue.sqlite3"),
        }
    )


@pytest.fixture
def job_modules_for_one_test() -> Iterator[None]:
    """Forget, after the test, the jobs its imported modules registered.

    The registry is global and Python imports a module once: jobs left there
    would show in every later test's job list and clash with other modules'
    jobs of the same name. The modules are imported afresh next time.
    """
    saved_jobs, saved_modules = dict(registry._registry), set(sys.modules)
    yield
    registry._registry.clear()
    registry._registry.update(saved_jobs)
    for name in set(sys.modules) - saved_modules:
        if name.endswith("_jobs"):
            del sys.modules[name]


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def json_lines():
    """Capture the root logger's records as the JSON format writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(JobContextFilter())
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def read() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield read
    root.removeHandler(handler)
    root.setLevel(old_level)


# Keys of the API key tests: "ci" may use every job, "greeter" only testGreet.
CI_SECRET = "ci-secret-0123456789abcdef"
GREETER_SECRET = "greeter-secret-0123456789"
TEST_KEYS = {
    "ci": {"key": CI_SECRET, "jobs": ["*"]},
    "greeter": {"key": GREETER_SECRET, "jobs": ["testGreet"]},
}


@pytest.fixture
def api_app(tmp_path):
    """``api_app(**settings)``: an immediate-mode app with the keys in TEST_KEYS.

    Settings override them: ``JOBS_API_KEYS=None`` for an app with no key.
    """

    def make(**settings):
        config = {
            "TESTING": True,
            "QUEUE_IMMEDIATE": True,
            "REDIS_URL": None,
            "SQLITE_PATH": str(tmp_path / "queue.sqlite3"),
            "JOBS_API_KEYS": TEST_KEYS,
            **settings,
        }
        return create_app(config)

    return make


@pytest.fixture(params=["sqlite", "redis"])
def keyed(request, tmp_path):
    """A client sending no key of its own, of an app with TEST_KEYS on a real
    queue (SQLite, then Redis) and no worker (``run_next`` plays its part)."""
    config = {"TESTING": True, "QUEUE_NAME": unique_queue_name(), "JOBS_API_KEYS": TEST_KEYS}
    if request.param == "redis":
        config["REDIS_URL"] = request.getfixturevalue("redis_url")
    else:
        config.update(REDIS_URL=None, SQLITE_PATH=str(tmp_path / "queue.sqlite3"))
    return without_key(create_app(config).test_client())


@pytest.fixture
def anonymous_client(api_app):
    """A client of ``api_app()`` that sends no key at all."""
    return without_key(api_app().test_client())


@pytest.fixture
def queue_app(tmp_path):
    """An app with a real SQLite queue and no worker: queued jobs stay put."""
    return create_app(
        {"TESTING": True, "REDIS_URL": None, "SQLITE_PATH": str(tmp_path / "queue.sqlite3")}
    )


@pytest.fixture
def queue_client(queue_app):
    return queue_app.test_client()


@pytest.fixture
def open_read_only(monkeypatch):
    """Make a Huey SQLite storage's next connection read-only, once.

    What SQLite does, silently, when it opens a file it cannot write: on a
    read-only file system, say. The connection after it is opened as usual.
    """

    def make(storage) -> None:
        create = storage._create_connection

        def read_only() -> sqlite3.Connection:
            monkeypatch.setattr(storage, "_create_connection", create)
            uri = f"file:{storage.filename}?mode=ro"
            return sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)

        storage.close()
        monkeypatch.setattr(storage, "_create_connection", read_only)

    return make


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A Redis to test against: $REDIS_URL, else a private redis-server.

    Without either the Redis tests skip, unless REQUIRE_REDIS=1 (as in CI),
    which turns the skip into a failure.
    """
    url = os.environ.get("REDIS_URL")
    if url:
        _require(redis_answers(url), f"REDIS_URL={url} does not answer PING")
        yield url
        return
    binary = shutil.which("redis-server")
    _require(binary is not None, "no REDIS_URL and no redis-server binary")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(lambda: redis_answers(url), "redis-server did not start")
        yield url
    finally:
        server.terminate()
        server.wait(10)


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("REQUIRE_REDIS") == "1":
        pytest.fail(f"REQUIRE_REDIS=1 but Redis is unavailable: {reason}")
    pytest.skip(f"Redis unavailable: {reason}")


@pytest.fixture
def redis_app(redis_url):
    """An app queueing on Redis, with no worker."""
    return create_app({"TESTING": True, "REDIS_URL": redis_url, "QUEUE_NAME": unique_queue_name()})


@pytest.fixture(params=["sqlite", "redis"])
def leased_app(request, tmp_path):
    """An app on a real queue, SQLite then Redis, with leases and no worker.

    Tests play the consumer's parts in-process: its scheduler
    (``huey.read_schedule``), and a worker (``leases.take`` and ``huey.execute``).
    """
    config = {"TESTING": True, "QUEUE_NAME": unique_queue_name()}
    if request.param == "redis":
        config["REDIS_URL"] = request.getfixturevalue("redis_url")
    else:
        config.update(REDIS_URL=None, SQLITE_PATH=str(tmp_path / "queue.sqlite3"))
    return create_app(config)


class Stack:
    """A running web server and worker, driven over real HTTP."""

    def __init__(self, base_url: str, env: dict[str, str], logs: Path):
        self.base_url = base_url
        self.env = env
        self.logs = logs
        self.processes: dict[str, subprocess.Popen] = {}

    def request(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", AUTHORIZATION)
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def wait_for_status(self, job_id: str, statuses: set[str], timeout: float = 20) -> dict:
        """Poll ``GET /jobs/<id>`` until the job reaches one of ``statuses``."""
        deadline = time.monotonic() + timeout
        record: dict = {}
        while time.monotonic() < deadline:
            code, record = self.request("GET", f"/jobs/{job_id}")
            if code == 200 and record["status"] in statuses:
                return record
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} never reached {statuses}: {record}\n{self.read_logs()}")

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            argv, cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes[name] = process
        return process

    def start_worker(self, name: str = "worker", flags: list[str] = WORKER_FLAGS):
        consumer = [sys.executable, "-m", "huey.bin.huey_consumer", f"{PACKAGE}.worker.huey"]
        return self.start(name, consumer + flags)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        children = {pid: start_time(pid) for pid in descendants(process.pid)}
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # A consumer killed, or stopped before its worker processes, leaves
        # them running: they must not outlive the test.
        for pid, started in children.items():
            if started is not None and start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def read_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(self.logs.glob("*.log")))


@pytest.fixture
def start_stack(tmp_path) -> Iterator:
    """Start a web server and a worker on "sqlite" or on a Redis URL.

    ``env`` adds environment variables (settings as ``FLASK_<NAME>``) for
    both processes.
    """
    stacks: list[Stack] = []

    def start(
        redis_url: str | None = None, worker: bool = True, env: dict[str, str] | None = None
    ) -> Stack:
        port = free_port()
        extra = env or {}
        env = dict(os.environ, PYTHONPATH=KIT_PYTHONPATH, FLASK_QUEUE_NAME=unique_queue_name())
        env["FLASK_SKIP_DOTENV"] = "1"  # no .flaskenv: no debug reloader in tests
        env.pop("REDIS_URL", None)
        if redis_url:
            env["REDIS_URL"] = redis_url
        else:
            env["FLASK_SQLITE_PATH"] = json.dumps(str(tmp_path / "queue.sqlite3"))
        env.update(extra)
        logs = tmp_path / f"logs-{port}"
        logs.mkdir()
        stack = Stack(f"http://127.0.0.1:{port}", env, logs)
        stacks.append(stack)
        stack.start(
            "web", [sys.executable, "-m", "flask", "--app", PACKAGE, "run", "--port", str(port)]
        )
        if worker:
            stack.start_worker()
        wait_for(lambda: _answers(stack.base_url + "/healthz"), "the web server did not start")
        return stack

    yield start
    for stack in stacks:
        for name in list(stack.processes):
            stack.stop(name)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


# What redis-py sends when it opens a connection: not a request of the code
# being measured (another thread may hold the pooled connection meanwhile).
HANDSHAKE = {b"HELLO", b"CLIENT", b"AUTH", b"SELECT"}


def command_name(packed) -> bytes:
    """The first command's name in a RESP-encoded request."""
    data = b"".join(packed) if isinstance(packed, list | tuple) else bytes(packed)
    parts = data.split(b"\r\n", 3)
    return parts[2].upper() if len(parts) > 2 else b""


@pytest.fixture
def round_trips(monkeypatch):
    """Count requests this thread sends to Redis: a pipeline or a script call is one.

    Only the calling thread counts: threads left running by other tests
    (heartbeats, history writers) may send at any moment.
    """
    original = redis.connection.Connection.send_packed_command

    @contextlib.contextmanager
    def counter():
        sent = []
        here = threading.current_thread()

        def counting(self, command, check_health=True):
            if threading.current_thread() is here and command_name(command) not in HANDSHAKE:
                sent.append(command)
            return original(self, command, check_health)

        monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
        try:
            yield lambda: len(sent)
        finally:
            monkeypatch.setattr(redis.connection.Connection, "send_packed_command", original)

    return counter


class SmallDisk:
    """A tmpfs of a few megabytes, for the SQLite queue: to fill up or make read-only."""

    def __init__(self, path: Path):
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        """Write a file until the file system has no space left."""
        chunk = b"\0" * 65536
        with open(self.filler, "wb", buffering=0) as out:
            try:
                while out.write(chunk):
                    pass
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise

    def free(self) -> None:
        self.filler.unlink()

    def remount(self, mode: str) -> None:
        """``ro`` or ``rw``. Linux refuses ``ro`` while a process has a file open to write."""
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[SmallDisk]:
    """An 8 MB tmpfs mounted for the test; skipped unless the test runs as root.

    Request it before ``start_stack``: fixtures are torn down in reverse, so
    the processes using the disk are stopped before it is unmounted.
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = tmp_path / "disk"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(path)], capture_output=True)
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            # Still busy (a process that outlived its test): detach it anyway.
            subprocess.run(["umount", "--lazy", str(path)], check=True)
