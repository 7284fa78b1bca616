"""Configuration comes from defaults, then the environment, then test_config."""

import os

import pytest

from acme_jobs import create_app
from acme_jobs.kit.queue import queue_location


def test_without_redis_url_the_queue_is_sqlite_in_the_instance_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = create_app({"TESTING": True})

    huey = app.extensions["jobkit"].huey

    assert app.extensions["jobkit"].backend.name == "sqlite"
    assert huey.storage.filename.startswith(app.instance_path)


def test_redis_url_from_the_environment_selects_redis(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6399/2")

    kit = create_app({"TESTING": True}).extensions["jobkit"]
    huey = kit.huey

    assert kit.backend.name == "redis"
    pool = huey.storage.pool
    assert pool.connection_kwargs["socket_connect_timeout"] == 1.0
    assert pool.connection_kwargs["db"] == 2


def test_prefixed_environment_variables_override_defaults(monkeypatch):
    monkeypatch.setenv("FLASK_MAX_CONTENT_LENGTH", "1024")

    assert create_app({"TESTING": True}).config["MAX_CONTENT_LENGTH"] == 1024


def test_the_queue_uses_the_json_serializer(app):
    assert type(app.extensions["jobkit"].huey.serializer).__name__ == "JSONSerializer"


# -- .env ------------------------------------------------------------------------


@pytest.fixture
def dotenv_dir(monkeypatch, tmp_path):
    """A working directory whose .env sets REDIS_URL and a FLASK_ setting."""
    (tmp_path / ".env").write_text(
        "REDIS_URL=redis://:pw@127.0.0.1:6399/4\nFLASK_MAX_CONTENT_LENGTH=2048\n"
    )
    nested = tmp_path / "sub"
    nested.mkdir()
    monkeypatch.chdir(nested)  # found in a parent directory too, as `flask` finds it
    monkeypatch.delenv("FLASK_SKIP_DOTENV", raising=False)
    for name in ("REDIS_URL", "FLASK_MAX_CONTENT_LENGTH"):
        monkeypatch.delenv(name, raising=False)
    yield
    # load_dotenv wrote them into os.environ: monkeypatch restores only what it set.
    for name in ("REDIS_URL", "FLASK_MAX_CONTENT_LENGTH"):
        os.environ.pop(name, None)


def test_the_factory_reads_dotenv(dotenv_dir):
    app = create_app({"TESTING": True})

    assert app.extensions["jobkit"].backend.name == "redis"
    assert app.config["REDIS_URL"] == "redis://:pw@127.0.0.1:6399/4"
    assert app.config["MAX_CONTENT_LENGTH"] == 2048


def test_the_environment_wins_over_dotenv(dotenv_dir, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6399/5")

    assert create_app({"TESTING": True}).config["REDIS_URL"] == "redis://127.0.0.1:6399/5"


def test_skip_dotenv_turns_the_file_off(dotenv_dir, monkeypatch):
    monkeypatch.setenv("FLASK_SKIP_DOTENV", "1")

    assert create_app({"TESTING": True}).config["REDIS_URL"] is None


@pytest.mark.parametrize(
    ("settings", "location"),
    [
        ({"REDIS_URL": "redis://user:pw@cache.internal:6380/2"}, "redis://cache.internal:6380/2"),
        ({"REDIS_URL": "rediss://:pw@[::1]:6390"}, "rediss://[::1]:6390/0"),
        ({"REDIS_URL": "unix:///run/redis.sock?db=3&password=pw"}, "unix:///run/redis.sock?db=3"),
        ({"REDIS_URL": None, "SQLITE_PATH": "/srv/q.sqlite3"}, "sqlite:///srv/q.sqlite3"),
        ({"QUEUE_IMMEDIATE": True}, "memory (immediate mode)"),
        (
            {
                "REDIS_SENTINELS": "10.0.0.1:26379, [::1]:26380",
                "REDIS_SENTINEL_MASTER": "jobs",
                "REDIS_URL": "redis://:pw@ignored/4",
            },
            "redis+sentinel://10.0.0.1:26379,[::1]:26380/jobs/4",
        ),
    ],
)
def test_the_queue_location_never_shows_a_password(settings, location):
    assert queue_location(settings, "/instance") == location
