"""Configuration comes from defaults, then the environment, then test_config."""

from acme_jobs import create_app


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
