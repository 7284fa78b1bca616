"""What every benchmark script shares.

* :func:`generate_project` bakes the template's default answers into a
  temporary directory (cookiecutter's Python API) and adds the benchmark's
  own jobs to the baked package.
* :func:`start_redis` starts a private ``redis-server`` on a free port, with
  persistence off, and stops it when the script exits.
* :func:`write_support_files` writes the modules the other side of each
  comparison runs: bare Huey, RQ and Celery tasks and a minimal Flask app.
  Every framework's task runs the same body (:data:`BODY`): one Redis INCR,
  plus timestamps on the first and the last task, read with
  :func:`read_drain`.
* :func:`e2e_round` drains N pre-queued jobs with one worker command and
  measures it, including the worker's CPU and Redis commands per job.
* Statistics and a Markdown table printer.

Nothing here is a test: the scripts print numbers, they do not judge them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent
PROJECT_NAME = "Bench Jobs"
SLUG = "bench_jobs"

# The workload's payload: about 200 bytes of JSON, like the baseline's.
PAYLOAD = {"nome": "João", "idade": 30, "pad": "x" * 160}

# The jobs API refuses requests without a key: the kit's apps get this one
# (FLASK_JOBS_API_KEYS), and every request sends it, to the minimal apps too.
API_KEY = "bench-api-key-0123456789abcdef"
API_KEYS = {"bench": {"key": API_KEY, "jobs": ["*"]}}
AUTH = {"Authorization": f"Bearer {API_KEY}"}

_cleanups: list[Callable[[], None]] = []


@atexit.register
def _run_cleanups() -> None:
    while _cleanups:
        with contextlib.suppress(Exception):
            _cleanups.pop()()


def workdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    _cleanups.append(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


# -- the project under test ----------------------------------------------

BENCH_JOBS = '''\
"""Jobs used by the benchmarks (added to the baked project by benchmarks/)."""

from marshmallow import Schema, fields

from bench_body import hit, probe

from ..kit import job


class Payload(Schema):
    nome = fields.String(required=True)
    idade = fields.Integer(required=True)
    pad = fields.String(required=True)


class Probe(Schema):
    ts = fields.Float(required=True)


@job("benchNoop", schema=Payload, queues=["critical", "low"])
def bench_noop(data: dict) -> None:
    """Do nothing but count itself."""
    hit()


@job("benchProbe", schema=Probe)
def bench_probe(data: dict) -> None:
    """Report how long the job waited between enqueue and start."""
    probe(data["ts"])
'''

BODY = '''\
"""The task body every framework runs: one Redis INCR, timestamps at 1 and N."""

import os
import time

import redis

_conn = None


def _redis():
    global _conn
    if _conn is None:
        _conn = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _conn


def hit():
    conn = _redis()
    n = conn.incr("bench:count")
    if n == 1:
        conn.set("bench:t_first", repr(time.time()))
    if n == int(os.environ.get("BENCH_N", "0")):
        conn.set("bench:t_last", repr(time.time()))


def probe(ts):
    _redis().rpush("bench:lat", repr(time.time() - ts))
'''

BARE_HUEY = '''\
"""Bare Huey: the same tasks, Huey's defaults, no kit."""

import os

from huey import RedisHuey, SqliteHuey

from bench_body import hit, probe


def build(sqlite_path=None):
    name = os.environ.get("BENCH_QUEUE", "bare")
    if sqlite_path:
        huey = SqliteHuey(name, filename=sqlite_path)
    else:
        huey = RedisHuey(name, url=os.environ["BENCH_REDIS_URL"])

    @huey.task(name="noop")
    def noop(payload):
        hit()

    @huey.task(name="latency_probe")
    def latency_probe(payload):
        probe(payload["ts"])

    return huey, noop, latency_probe


huey, noop, latency_probe = build(os.environ.get("BENCH_SQLITE"))
'''

PEER_RQ = '''\
"""RQ: the same task body."""

from bench_body import hit


def noop(payload):
    hit()
'''

PEER_CELERY = '''\
"""Celery with its Redis broker: the same task body."""

import os

from celery import Celery

from bench_body import hit

app = Celery("peer_celery", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop")
def noop(payload):
    hit()
'''

MINIMAL_APP = '''\
"""The minimal endpoint the kit's dispatch is compared with.

``POST /jobs/jobModelo`` validates the body with the kit's own ``Pessoa``
schema and queues it with bare Huey over one pooled connection per process.
``POST /jobs/jobModelo`` on ``seed_app`` does the same but opens a new queue
connection for every request, as the seed's handler does.
"""

import json
import os
import uuid

from flask import Flask, jsonify, request
from huey import RedisHuey
from huey.storage import RedisStorage
from marshmallow import ValidationError

from {slug}.jobs.job_modelo import Pessoa

URL = os.environ["BENCH_REDIS_URL"]
huey = RedisHuey("minimal", url=URL, results=False)


@huey.task()
def job_modelo(payload):
    return payload


def _validated():
    try:
        payload = json.loads(request.get_data())
    except ValueError:
        return None, (jsonify(error="invalid_json"), 400)
    if not isinstance(payload, dict):
        return None, (jsonify(error="invalid_payload"), 400)
    try:
        return Pessoa().load(payload), None
    except ValidationError as exc:
        return None, (jsonify(error="invalid_payload", fields=exc.messages), 422)


app = Flask("minimal")


@app.post("/jobs/jobModelo")
def dispatch():
    data, failure = _validated()
    if failure:
        return failure
    task = job_modelo.s(data, id=str(uuid.uuid4()))
    huey.enqueue(task)
    return jsonify(id=task.id), 202


seed_app = Flask("seed")


@seed_app.post("/jobs/jobModelo")
def dispatch_new_connection():
    data, failure = _validated()
    if failure:
        return failure
    task = job_modelo.s(data, id=str(uuid.uuid4()))
    storage = RedisStorage("minimal", url=URL)  # a new connection pool
    try:
        storage.enqueue(huey.serialize_task(task))
    finally:
        storage.pool.disconnect()
    return jsonify(id=task.id), 202
'''


@dataclass
class Project:
    root: Path  # the baked project directory
    support: Path  # bare Huey, peers, minimal app, the shared task body

    @property
    def pythonpath(self) -> str:
        return os.pathsep.join([str(self.root), str(self.support)])

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, PYTHONPATH=self.pythonpath, PYTHONDONTWRITEBYTECODE="1")
        for key in (
            "REDIS_URL",
            "FLASK_SQLITE_PATH",
            "FLASK_QUEUE_NAME",
            "FLASK_LOG_FORMAT",
        ):
            env.pop(key, None)
        env.update(extra)
        return env

    def import_path(self) -> None:
        for path in (str(self.support), str(self.root)):
            if path not in sys.path:
                sys.path.insert(0, path)


@contextlib.contextmanager
def silenced_stdout():
    """Send file descriptor 1 (also a subprocess's) to /dev/null for a while."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def generate_project() -> Project:
    """Bake the template's default project and add the benchmark jobs."""
    from cookiecutter.main import cookiecutter

    out = workdir("bench-project")
    config = out / "cookiecutter.yaml"
    config.write_text(
        f'replay_dir: "{out / "replay"}"\ncookiecutters_dir: "{out / "cc"}"\n'
    )
    with silenced_stdout():  # the post-generation hook prints next steps
        root = Path(
            cookiecutter(
                str(TEMPLATE_ROOT),
                no_input=True,
                output_dir=str(out),
                config_file=str(config),
                extra_context={"project_name": PROJECT_NAME},
            )
        )
    (root / SLUG / "jobs" / "bench_jobs.py").write_text(BENCH_JOBS)
    support = out / "support"
    support.mkdir()
    files = {
        "bench_body.py": BODY,
        "bare_huey.py": BARE_HUEY,
        "peer_rq.py": PEER_RQ,
        "peer_celery.py": PEER_CELERY,
        "minimal_app.py": MINIMAL_APP.replace("{slug}", SLUG),
    }
    for name, text in files.items():
        (support / name).write_text(text)
    return Project(root, support)


# -- redis-server ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis() -> str:
    """A private redis-server on a free port; returns its URL.

    Also exported as ``BENCH_REDIS_URL``, where the task bodies look for it.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    data = workdir("bench-redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        cwd=data,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    _cleanups.append(lambda: stop(process))
    url = f"redis://127.0.0.1:{port}/0"
    os.environ["BENCH_REDIS_URL"] = url
    import redis

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):
            if redis.Redis.from_url(url).ping():
                return url
        time.sleep(0.05)
    sys.exit("redis-server did not start")


def stop(
    process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30
) -> None:
    """Stop a process started in its own session, and its children."""
    if process.poll() is not None:
        return
    _signal_group(process, sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:  # not a group leader, or gone already
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)


def spawn(
    argv: Sequence[str], env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen:
    """Start a process in a session of its own, output to ``log``."""
    handle = open(log, "ab")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(
        list(argv),
        env=env,
        cwd=cwd,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _cleanups.append(lambda: stop(process, signal.SIGKILL, 5))
    return process


# -- CPU and Redis accounting ----------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """user + system CPU of every live process in a process group."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields[0] is the state; pgrp is the 5th stat field
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def redis_counters(conn) -> tuple[dict[str, int], float]:
    """Calls per command and redis-server's CPU seconds."""
    stats = conn.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}
    cpu = conn.info("cpu")
    return calls, cpu["used_cpu_user"] + cpu["used_cpu_sys"]


# -- end-to-end drains -------------------------------------------------------


@dataclass
class Drain:
    steady: float  # tasks/s between the first and the last task
    wall: float  # tasks/s from spawn to the last task
    startup: float  # seconds from spawn to the first task
    worker_cpu_us: float  # worker CPU per task
    worker_cores: float
    redis_cores: float
    commands: float  # Redis commands per task (the driver's GET polls excluded)
    enqueue_rate: float = 0.0
    by_command: dict[str, float] = field(default_factory=dict)


def read_drain(conn) -> tuple[float, float] | None:
    first, last = conn.mget("bench:t_first", "bench:t_last")
    if first is None or last is None:
        return None
    return float(first), float(last)


def e2e_round(
    conn,
    n: int,
    enqueue: Callable[[int], None],
    argv: Sequence[str],
    env: dict[str, str],
    cwd: Path,
    log: Path,
    timeout: float = 300,
) -> Drain:
    """Flush Redis, queue ``n`` jobs, start the worker, wait for the drain."""
    conn.flushdb()
    started = time.perf_counter()
    enqueue(n)
    enqueue_rate = n / (time.perf_counter() - started)
    spawned = time.time()
    process = spawn(argv, dict(env, BENCH_N=str(n)), cwd, log)
    try:
        deadline = time.monotonic() + timeout
        marks = None
        while time.monotonic() < deadline:
            count = int(conn.get("bench:count") or 0)
            if marks is None and count > 0:
                marks = (
                    count,
                    time.time(),
                    group_cpu_seconds(process.pid),
                    *redis_counters(conn),
                )
            if count >= n:
                break
            if process.poll() is not None:
                raise RuntimeError(f"the worker exited early; see {log}")
            time.sleep(0.05)
        else:
            raise RuntimeError(
                f"only {conn.get('bench:count')} of {n} jobs ran; see {log}"
            )
        end = (n, time.time(), group_cpu_seconds(process.pid), *redis_counters(conn))
    finally:
        stop(process)
    first, last = read_drain(conn)
    assert marks is not None
    done = end[0] - marks[0]
    seconds = end[1] - marks[1]
    calls = {
        name: (end[3].get(name, 0) - marks[3].get(name, 0)) / max(done, 1)
        for name in end[3]
        if name not in ("get", "info", "mget", "flushdb")
    }
    return Drain(
        steady=(n - 1) / (last - first) if last > first else float("nan"),
        wall=n / (last - spawned),
        startup=first - spawned,
        worker_cpu_us=(end[2] - marks[2]) / max(done, 1) * 1e6,
        worker_cores=(end[2] - marks[2]) / seconds if seconds > 0 else float("nan"),
        redis_cores=(end[4] - marks[4]) / seconds if seconds > 0 else float("nan"),
        commands=sum(calls.values()),
        enqueue_rate=enqueue_rate,
        by_command={k: v for k, v in sorted(calls.items()) if v >= 0.01},
    )


def producers(url: str) -> tuple[Any, Callable[[int], None], Callable[[int], None]]:
    """The kit's app on ``url``, and two loops that queue n no-op jobs: the
    kit's ``enqueue()`` and bare Huey's. Call after ``project.import_path()``."""
    from bare_huey import noop
    from bench_jobs import create_app
    from bench_jobs.kit import enqueue

    app = create_app({"REDIS_URL": url, "QUEUE_NAME": "kit", "SECRET_KEY": "bench"})

    def enqueue_kit(n: int) -> None:
        with app.app_context():
            for _ in range(n):
                enqueue("benchNoop", PAYLOAD)

    def enqueue_bare(n: int) -> None:
        for _ in range(n):
            noop(PAYLOAD)

    return app, enqueue_kit, enqueue_bare


def huey_consumer(module: str, flags: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "huey.bin.huey_consumer", module, *flags]


# -- statistics and printing -----------------------------------------------


def median(values: Iterable[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def fmt(value: float, digits: int = 0) -> str:
    if value != value:
        return "-"
    return f"{value:,.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(" --- " for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def versions(*modules: str) -> str:
    from importlib import metadata

    found = []
    for name in modules:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    server = next(
        (part.split("=")[1] for part in redis_version if part.startswith("v=")), "?"
    )
    found.append(f"redis-server {server}")
    return ", ".join(found)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def banner(title: str, *modules: str) -> None:
    print(f"# {title}\n")
    print(f"- machine: {machine()}")
    print(f"- versions: {versions(*modules)}")
    print(f"- started: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {load()}\n", flush=True)


def load() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews results."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f}"


def finish() -> None:
    print(f"\nFinished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {load()}", flush=True)


def dedent(text: str) -> str:
    return textwrap.dedent(text).strip()
