"""Fixtures for testing your app and its jobs.

* ``app`` / ``client``: Huey's immediate mode, so a job runs inside the
  request that queues it. The quickest way to test what a job does.
* ``queue_app`` / ``queue_client``: a real SQLite queue and no worker, so
  a test can see exactly what was queued.
* ``start_worker``: a real ``python -m {{ cookiecutter.project_slug }}.worker`` process on SQLite
  or on Redis, for end-to-end tests.

Every app here has an API key for the jobs API (``helpers.API_KEY``), and
its test clients send it: the API stays closed, as it ships.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from helpers import API_KEYS, ApiKeyClient, wait_until

from {{ cookiecutter.project_slug }} import create_app

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# create_app reads .env; the tests' settings are the ones written here,
# whatever your .env says (its REDIS_URL would otherwise reach the tests).
os.environ.setdefault("FLASK_SKIP_DOTENV", "1")


def make_app(settings: dict) -> Flask:
    """``create_app`` for tests, with the tests' API key, which its clients send."""
    app = create_app({"TESTING": True, "JOBS_API_KEYS": API_KEYS, **settings})
    app.test_client_class = ApiKeyClient
    return app


@pytest.fixture
def app(tmp_path):
    return make_app(
        {
            "QUEUE_IMMEDIATE": True,
            "REDIS_URL": None,  # whatever the environment says
            "SQLITE_PATH": str(tmp_path / "queue.sqlite3"),
        }
    )


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def queue_app(tmp_path):
    """An app with a real SQLite queue and no worker: queued jobs stay put."""
    return make_app({"REDIS_URL": None, "SQLITE_PATH": str(tmp_path / "queue.sqlite3")})


@pytest.fixture
def queue_client(queue_app):
    return queue_app.test_client()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A Redis to test against: $REDIS_URL, else a private redis-server.

    With neither, Redis tests are skipped; REQUIRE_REDIS=1 (as in CI) makes
    that a failure instead.
    """
    url = os.environ.get("REDIS_URL")
    if url:
        if not _redis_answers(url):
            _no_redis(f"REDIS_URL={url} does not answer PING")
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        _no_redis("no REDIS_URL and no redis-server binary")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path_factory.mktemp("redis"),
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: _redis_answers(url), "redis-server did not start")
        yield url
    finally:
        server.terminate()
        server.wait(10)


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _no_redis(reason: str) -> None:
    if os.environ.get("REQUIRE_REDIS") == "1":
        pytest.fail(f"REQUIRE_REDIS=1 but Redis is unavailable: {reason}")
    pytest.skip(f"Redis unavailable: {reason}")


@pytest.fixture(params=["sqlite", "redis"])
def start_worker(request, tmp_path) -> Iterator[Callable[[], object]]:
    """``start_worker()`` runs a real worker and returns an app on the same queue.

    Parametrised: each test using it runs once on SQLite and once on Redis.
    """
    settings = {"QUEUE_NAME": f"test_{uuid.uuid4().hex[:12]}"}
    if request.param == "redis":
        settings["REDIS_URL"] = request.getfixturevalue("redis_url")
    else:
        settings.update(REDIS_URL=None, SQLITE_PATH=str(tmp_path / "queue.sqlite3"))
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update({f"FLASK_{key}": json.dumps(value) for key, value in settings.items()})
    env.update(PYTHONPATH=str(PROJECT_ROOT), FLASK_SKIP_DOTENV="1")
    workers: list[subprocess.Popen] = []

    def start():
        argv = [sys.executable, "-m", "{{ cookiecutter.project_slug }}.worker", "--workers", "1", "--no-periodic"]
        with open(tmp_path / "worker.log", "ab") as log:  # the worker keeps its own copy
            workers.append(
                subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log)
            )
        return make_app(settings)

    yield start
    for worker in workers:
        worker.terminate()  # a graceful stop, as a deploy would do it
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
