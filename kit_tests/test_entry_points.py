"""One configuration for every process, with the settings only in ``.env``.

Each entry point a project ships is started for real, in a directory whose
``.env`` holds REDIS_URL (with a password), the secret key and the monitor's
user, and with none of them in the environment: gunicorn with the shipped
``gunicorn.conf.py`` (the Procfile's web line and the Docker image's CMD),
``flask run``, ``python -m <package>.worker`` (the Procfile's worker line and
docker-compose's), plain ``huey_consumer`` and ``flask jobs``. All of them must
use that Redis, and say so, without the password, in their first log line.
"""

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import KIT_PYTHONPATH, PACKAGE, PROJECT_ROOT
from support import (
    AUTHORIZATION,
    SECRET_KEY,
    descendants,
    free_port,
    unique_queue_name,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]

PASSWORD = "s3cret-redis-pass"
MONITOR = ("admin", "monitor-pass-0123456789")
REDIS_FLAGS = ["--appendonly", "no", "--requirepass", PASSWORD]
# time LEVEL pid logger [job] message: one layout for every process.
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \d+ (\S+) \[\S+\] (.*)")


class Deployment:
    """The processes of one project directory, started as its entry points are."""

    def __init__(self, root: Path, redis_port: int):
        self.root = root
        self.redis_port = redis_port
        self.web_port, self.dev_port = free_port(), free_port()
        self.queue = unique_queue_name()
        self.processes: dict[str, subprocess.Popen] = {}
        # Nothing of the settings in the environment: only what .env says.
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"REDIS_URL", "FLASK_SKIP_DOTENV", "FLASK_QUEUE_NAME", "PORT"}
            and not key.startswith(("FLASK_MONITOR", "FLASK_SECRET", "FLASK_LOG"))
        }
        self.env["PYTHONPATH"] = KIT_PYTHONPATH

    def write_dotenv(self) -> None:
        lines = [
            f"REDIS_URL=redis://:{PASSWORD}@127.0.0.1:{self.redis_port}/3",
            f"FLASK_SECRET_KEY={SECRET_KEY}",
            f"FLASK_QUEUE_NAME={self.queue}",
            f"FLASK_MONITOR_USERNAME={MONITOR[0]}",
            f"FLASK_MONITOR_PASSWORD={MONITOR[1]}",
            # gunicorn's own settings, read by gunicorn.conf.py.
            f"PORT={self.web_port}",
            "WEB_CONCURRENCY=1",
        ]
        (self.root / ".env").write_text("\n".join(lines) + "\n")

    def start(self, name: str, argv: list[str]) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            argv, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def run(self, argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=60
        )

    def log_lines(self, name: str) -> list[str]:
        """The complete lines of a process's log (not one it is writing now)."""
        return (self.root / f"{name}.log").read_text().split("\n")[:-1]

    def stop(self) -> None:
        for process in self.processes.values():
            children = descendants(process.pid)
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("REQUIRE_REDIS=1 but there is no redis-server binary")
        pytest.skip("no redis-server binary")
    root = tmp_path_factory.mktemp("project")
    redis_port = free_port()
    redis_server = subprocess.Popen(
        [binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", *REDIS_FLAGS],
        cwd=root,
        stdout=subprocess.DEVNULL,
    )
    deployment = Deployment(root, redis_port)
    deployment.write_dotenv()
    py = sys.executable
    try:
        # The Procfile's and the Docker image's commands, and the others.
        conf = str(PROJECT_ROOT / "gunicorn.conf.py")
        deployment.start(
            "gunicorn", [py, "-m", "gunicorn", "--config", conf, f"{PACKAGE}:create_app()"]
        )
        flask_run = [py, "-m", "flask", "--app", PACKAGE, "run", "--port", str(deployment.dev_port)]
        deployment.start("flask-run", flask_run)
        deployment.start("worker", [py, "-m", f"{PACKAGE}.worker", "--workers", "1"])
        consumer = [py, "-m", "huey.bin.huey_consumer", f"{PACKAGE}.worker.huey", "-w", "1"]
        deployment.start("huey-consumer", consumer)
        for port in (deployment.web_port, deployment.dev_port):
            wait_for(
                lambda port=port: get(f"http://127.0.0.1:{port}/healthz")[0] == 200,
                f"the web server on port {port} did not start",
                60,
            )
        yield deployment
    finally:
        deployment.stop()
        redis_server.terminate()
        redis_server.wait(10)


def app_lines(deployment: Deployment, name: str) -> list[tuple[str, str]]:
    """(logger, message) of a process's log lines in the kit's text layout."""
    return [m.groups() for line in deployment.log_lines(name) if (m := TEXT_LINE.fullmatch(line))]


def expected_first_line(deployment: Deployment) -> str:
    return f"queue {deployment.queue} on redis://127.0.0.1:{deployment.redis_port}/3"


@pytest.mark.parametrize("port", ["web_port", "dev_port"], ids=["gunicorn", "flask-run"])
def test_each_web_server_is_ready_on_the_redis_of_dotenv(deployment, port):
    url = f"http://127.0.0.1:{getattr(deployment, port)}"

    assert get(url + "/readyz") == (200, {"status": "ready", "queue": "redis"})
    # The secret key and the monitor's user came from .env too.
    basic = base64.b64encode(":".join(MONITOR).encode()).decode()
    status, counts = get(url + "/monitor/api/counts", {"Authorization": f"Basic {basic}"})
    assert status == 200, counts


@pytest.mark.parametrize("name", ["flask-run", "worker", "huey-consumer"])
def test_the_first_log_line_names_the_queue_and_redis_without_the_password(deployment, name):
    wait_for(lambda: app_lines(deployment, name), f"{name} wrote no log line", 30)

    _logger, message = app_lines(deployment, name)[0]

    assert message == expected_first_line(deployment)
    assert PASSWORD not in "\n".join(deployment.log_lines(name))


def test_gunicorn_workers_name_the_queue_first(deployment):
    """The master's lines are gunicorn's; a worker's first app line names the queue."""
    wait_for(lambda: app_lines(deployment, "gunicorn"), "gunicorn wrote no log line", 30)
    lines = app_lines(deployment, "gunicorn")

    first_app_line = next(message for logger, message in lines if logger != "gunicorn.error")

    assert first_app_line == expected_first_line(deployment)
    assert PASSWORD not in "\n".join(deployment.log_lines("gunicorn"))


def test_every_process_writes_the_same_text_layout(deployment):
    for name in ("gunicorn", "flask-run", "worker", "huey-consumer"):
        lines = [line for line in deployment.log_lines(name) if line.strip()]
        # flask run's banner is printed, not logged.
        logged = [line for line in lines if not line.startswith((" * ", "Press CTRL+C"))]
        assert logged and all(TEXT_LINE.fullmatch(line) for line in logged), (name, logged)


def test_jobs_queued_by_every_entry_point_run_on_the_one_queue(deployment):
    web = f"http://127.0.0.1:{deployment.web_port}"
    payload = json.dumps({"nome": "Cli", "idade": 40})
    queued = deployment.run(
        [sys.executable, "-m", "flask", "--app", PACKAGE, "jobs", "enqueue", "testGreet", payload]
    )
    assert queued.returncode == 0, queued.stderr
    first_stderr_line = TEXT_LINE.fullmatch(queued.stderr.splitlines()[0])
    assert first_stderr_line and first_stderr_line[2] == expected_first_line(deployment)
    ids = [queued.stdout.strip()]
    for url in (web, f"http://127.0.0.1:{deployment.dev_port}"):
        request = urllib.request.Request(
            url + "/jobs/testGreet",
            data=json.dumps({"nome": "Web", "idade": 30}).encode(),
            headers={"Content-Type": "application/json", "Authorization": AUTHORIZATION},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            ids.append(json.load(response)["id"])

    def status(job_id: str) -> str | None:
        code, record = get(f"{web}/jobs/{job_id}", {"Authorization": AUTHORIZATION})
        return record.get("status") if code == 200 else None

    for job_id in ids:
        wait_for(lambda job_id=job_id: status(job_id) == "complete", f"{job_id} never ran", 60)
