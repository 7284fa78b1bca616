"""Unique jobs: a duplicate dispatch inside the window gets the first job's id.

On SQLite, on Redis (7.0 here: claims carry their own expiry, no lock TTLs
needed) and in immediate mode.
"""

import json
import time

import pytest
import redis
from marshmallow import Schema, fields

from acme_jobs import create_app
from acme_jobs.kit import registry
from support import pending, unique_queue_name

WINDOW = 0.5


class Signup(Schema):
    email = fields.Email(required=True)
    plan = fields.String(load_default="free")


@pytest.fixture(params=["sqlite", "redis", "immediate"])
def app(request, tmp_path):
    @registry.job("testWelcome", schema=Signup, unique_key=("email",), unique_for=WINDOW)
    def welcome(data):
        return data["email"]

    config = {"TESTING": True, "QUEUE_NAME": unique_queue_name(), "REDIS_URL": None}
    if request.param == "redis":
        config["REDIS_URL"] = request.getfixturevalue("redis_url")
    else:
        config["SQLITE_PATH"] = str(tmp_path / "queue.sqlite3")
        config["QUEUE_IMMEDIATE"] = request.param == "immediate"
    yield create_app(config)
    del registry._registry["testWelcome"]


def post(client, body):
    response = client.post("/jobs/testWelcome", data=json.dumps(body))
    return response.status_code, response.get_json()


def test_a_duplicate_inside_the_window_returns_the_first_job(app):
    client = app.test_client()

    first = post(client, {"email": "ana@example.com"})
    second = post(client, {"email": "ana@example.com", "plan": "pro"})  # same key

    assert first[0] == 202
    assert second[0] == 200
    assert second[1]["id"] == first[1]["id"]
    assert second[1]["duplicate"] is True
    assert second[1]["status_url"].endswith(f"/jobs/{first[1]['id']}")
    if not app.config["QUEUE_IMMEDIATE"]:
        assert pending(app) == 1  # one job queued, not two


def test_another_key_is_another_job(app):
    client = app.test_client()

    first = post(client, {"email": "ana@example.com"})
    other = post(client, {"email": "bia@example.com"})

    assert (first[0], other[0]) == (202, 202)
    assert first[1]["id"] != other[1]["id"]


def test_after_the_window_the_same_key_queues_a_new_job(app):
    client = app.test_client()
    first = post(client, {"email": "ana@example.com"})

    time.sleep(WINDOW + 0.1)
    later = post(client, {"email": "ana@example.com"})

    assert later[0] == 202
    assert later[1]["id"] != first[1]["id"]


def test_a_dispatch_that_fails_does_not_hold_the_key(app, monkeypatch):
    if app.config["QUEUE_IMMEDIATE"]:
        pytest.skip("immediate mode has no backend to fail")
    client = app.test_client()
    history = app.extensions["jobkit"].history

    def unreachable(*args, **kwargs):
        raise redis.ConnectionError("the queue is down")

    with monkeypatch.context() as patched:
        patched.setattr(history, "enqueue", unreachable)
        assert post(client, {"email": "ana@example.com"})[0] == 503

    assert post(client, {"email": "ana@example.com"})[0] == 202


def test_the_cli_prints_the_existing_id_for_a_duplicate(app):
    runner = app.test_cli_runner()
    args = ["jobs", "enqueue", "testWelcome", '{"email": "ana@example.com"}']

    first = runner.invoke(args=args)
    second = runner.invoke(args=args)

    assert first.exit_code == second.exit_code == 0
    assert first.output == second.output
