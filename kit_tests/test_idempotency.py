"""The Idempotency-Key header: a request sent again gets its first job back.

On SQLite, on Redis and in immediate mode: the same key with the same payload
within the window answers 200 with the first job; with another payload or
for another job, 422; after the window, the key is free again. The key is
written in the job's own write, so a write that fails leaves no key behind.
"""

import json
import shutil
import sqlite3

import pytest
import redis
from marshmallow import Schema, fields

from acme_jobs import create_app
from acme_jobs.kit import IdempotencyKeyReused, InvalidIdempotencyKey, dispatch, registry
from support import PrivateRedis, free_port, pending, unique_queue_name, wait_for

ANA = {"nome": "Ana", "idade": 30}
BIA = {"nome": "Bia", "idade": 41}
KEY = "7f0c1a52-5f0e-4c55-9d8e-6c1b1e0a2b44"


@pytest.fixture(params=["sqlite", "redis", "immediate"])
def make_app(request, tmp_path):
    """Apps on one backend (each of the three in turn), with extra settings."""

    def make(**settings):
        config = {"TESTING": True, "QUEUE_NAME": unique_queue_name(), "REDIS_URL": None}
        if request.param == "redis":
            config["REDIS_URL"] = request.getfixturevalue("redis_url")
        else:
            config["SQLITE_PATH"] = str(tmp_path / "queue.sqlite3")
            config["QUEUE_IMMEDIATE"] = request.param == "immediate"
        return create_app({**config, **settings})

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def unique_job():
    """A unique job (one per e-mail for 60 s), registered for one test."""

    class Signup(Schema):
        email = fields.Email(required=True)
        plan = fields.String(load_default="free")

    @registry.job("testSignup", schema=Signup, unique_key=("email",), unique_for=60)
    def signup(data):
        return data["email"]

    yield "testSignup"
    del registry._registry["testSignup"]


def post(client, body, key=KEY, name="testGreet"):
    headers = {} if key is None else {"Idempotency-Key": key}
    response = client.post(f"/jobs/{name}", data=json.dumps(body), headers=headers)
    return response.status_code, response.get_json()


def queued(app) -> int | None:
    """Jobs waiting in the queue; None in immediate mode, where jobs run at once."""
    return None if app.config["QUEUE_IMMEDIATE"] else pending(app)


def test_the_same_key_and_payload_answer_200_with_the_first_job(app):
    client = app.test_client()

    first = post(client, ANA)
    again = post(client, ANA)

    assert first[0] == 202
    assert again[0] == 200
    assert again[1]["id"] == first[1]["id"]
    assert again[1]["duplicate"] is True
    assert again[1]["status"] in {"queued", "complete"}
    assert queued(app) in (None, 1)


def test_a_payload_that_loads_to_the_same_data_is_the_same_request(app):
    client = app.test_client()
    first = post(client, ANA)

    again = post(client, {"idade": 30, "nome": "Ana"})  # other key order

    assert (again[0], again[1]["id"]) == (200, first[1]["id"])


def test_the_same_key_with_another_payload_answers_422_and_queues_nothing(app):
    client = app.test_client()
    post(client, ANA)

    status, body = post(client, BIA)

    assert status == 422
    assert body["error"] == "idempotency_key_reused"
    assert "different payload" in body["message"]
    assert queued(app) in (None, 1)


def test_the_same_key_for_another_job_answers_422(app):
    client = app.test_client()
    post(client, ANA)

    status, body = post(client, {"pessoas": [ANA], "atraso": 0}, name="testImport")

    assert status == 422
    assert body["error"] == "idempotency_key_reused"
    assert "another job (testGreet)" in body["message"]


def test_another_key_queues_another_job(app):
    client = app.test_client()

    first = post(client, ANA)
    other = post(client, ANA, key="another-key")

    assert (first[0], other[0]) == (202, 202)
    assert first[1]["id"] != other[1]["id"]


def test_without_a_key_the_same_payload_queues_another_job(app):
    client = app.test_client()

    codes = [post(client, ANA, key=None)[0], post(client, ANA, key=None)[0]]

    assert codes == [202, 202]


def test_after_the_window_the_key_is_free_again(make_app):
    app = make_app(IDEMPOTENCY_WINDOW=0.3)
    client = app.test_client()
    first = post(client, ANA)
    keys = app.extensions["jobkit"].idempotency

    wait_for(lambda: keys.held(KEY) is None, "the key outlived its window", timeout=10)
    later = post(client, BIA)  # another payload: refused inside the window

    assert later[0] == 202
    assert later[1]["id"] != first[1]["id"]


@pytest.mark.parametrize(
    "value",
    ["", "x" * 256, "two words", '"unterminated', "a,b", "clé", '"bad \\escape"', '"k";p=1'],
)
def test_a_malformed_key_answers_400_and_queues_nothing(queue_app, value):
    status, body = post(queue_app.test_client(), ANA, key=value)

    assert status == 400
    assert body["error"] == "invalid_idempotency_key"
    assert pending(queue_app) == 0


def test_two_key_headers_answer_400(queue_app):
    headers = [("Idempotency-Key", "a"), ("Idempotency-Key", "b")]

    response = queue_app.test_client().post("/jobs/testGreet", json=ANA, headers=headers)

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_idempotency_key"


def test_a_quoted_key_is_the_key_it_quotes(queue_app):
    client = queue_app.test_client()

    first = post(client, ANA, key='"a \\"quoted\\" key"')
    again = post(client, ANA, key='"a \\"quoted\\" key"')
    bare = post(client, ANA, key="plain-key")
    quoted = post(client, ANA, key='"plain-key"')

    assert (first[0], again[0], again[1]["id"]) == (202, 200, first[1]["id"])
    assert (bare[0], quoted[0], quoted[1]["id"]) == (202, 200, bare[1]["id"])


def test_dispatch_from_code_takes_the_same_key(queue_app):
    with queue_app.app_context():
        first = dispatch("testGreet", ANA, idempotency_key=KEY)
        again = dispatch("testGreet", ANA, idempotency_key=KEY)
        with pytest.raises(IdempotencyKeyReused):
            dispatch("testGreet", BIA, idempotency_key=KEY)
        with pytest.raises(InvalidIdempotencyKey):
            dispatch("testGreet", ANA, idempotency_key="")

    assert (first.created, again.created, again.id) == (True, False, first.id)


def test_a_unique_duplicate_sent_with_a_reused_key_answers_422(unique_job, make_app):
    client = make_app().test_client()  # made once the job is registered
    post(client, {"email": "ana@example.com"}, name=unique_job)

    # The same unique key (email), and a payload the idempotency key did not send.
    status, body = post(client, {"email": "ana@example.com", "plan": "pro"}, name=unique_job)

    assert (status, body["error"]) == (422, "idempotency_key_reused")


# -- a failed write records no key ----------------------------------------


@pytest.fixture
def broken_queue_write(app, monkeypatch):
    """Make the queue message's write fail, inside the dispatch's one write.

    Redis: Huey's queue key holds a string, so the script's LPUSH fails
    after it checked the idempotency key. SQLite: the queue row's insert
    fails after the key's row was written in the same transaction.
    Calling the returned function mends the queue.
    """
    if app.config["QUEUE_IMMEDIATE"]:
        pytest.skip("immediate mode has no queue to break")
    store = app.extensions["jobkit"].history.store
    if app.config["REDIS_URL"]:
        store.conn.set(store.queue_key, "not a list")
        return lambda: store.conn.delete(store.queue_key)

    def refuse(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store.tasks, "enqueue", refuse)
    return monkeypatch.undo


def test_a_write_that_fails_answers_503_and_records_no_key(app, broken_queue_write):
    client = app.test_client()

    failed = post(client, ANA)
    broken_queue_write()
    retried = post(client, BIA)  # another payload: refused had the key been kept

    assert failed[0] == 503
    assert failed[1]["error"] == "queue_unavailable"
    assert retried[0] == 202
    assert pending(app) == 1  # the retry's job, and nothing of the failed one


@pytest.mark.slow
@pytest.mark.redis
def test_while_redis_is_down_a_dispatch_answers_503_and_records_no_key(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("this test starts its own redis-server, and there is none")
    # Append-only, so that the restart keeps what was written before the outage.
    server = PrivateRedis(binary, free_port(), tmp_path, aof=True)
    server.start()
    try:
        app = create_app({"TESTING": True, "REDIS_URL": server.url, "QUEUE_NAME": "idem"})
        client = app.test_client()
        before = post(client, ANA, key="before")
        server.stop()
        during = post(client, ANA, key="during")
        server.start()
        after = post(client, BIA, key="during")
        kept = post(client, ANA, key="before")
    finally:
        server.stop()

    assert (before[0], during[0], after[0]) == (202, 503, 202)
    assert (kept[0], kept[1]["id"]) == (200, before[1]["id"])


# -- cost ----------------------------------------------------------------


def test_a_dispatch_without_a_key_is_one_round_trip_to_redis(redis_app, round_trips):
    with redis_app.test_request_context():
        dispatch("testGreet", ANA)  # connect, load the script
        with round_trips() as count:
            dispatch("testGreet", ANA)

    assert count() == 1


def test_a_dispatch_with_a_new_key_is_one_round_trip_to_redis(redis_app, round_trips):
    with redis_app.test_request_context():
        dispatch("testGreet", ANA, idempotency_key="warm-up")  # connect, load the script
        with round_trips() as count:
            dispatch("testGreet", ANA, idempotency_key=KEY)

    assert count() == 1


def test_a_repeated_dispatch_is_one_round_trip_to_redis(redis_app, round_trips):
    with redis_app.test_request_context():
        first = dispatch("testGreet", ANA, idempotency_key=KEY)
        with round_trips() as count:
            again = dispatch("testGreet", ANA, idempotency_key=KEY)

    assert (again.id, count()) == (first.id, 1)


def test_redis_keeps_the_key_no_longer_than_the_window(redis_url):
    config = {"TESTING": True, "REDIS_URL": redis_url, "QUEUE_NAME": unique_queue_name()}
    app = create_app({**config, "IDEMPOTENCY_WINDOW": 3600})
    with app.test_request_context():
        dispatch("testGreet", ANA, idempotency_key=KEY)
    keys = app.extensions["jobkit"].idempotency

    ttl = redis.Redis.from_url(redis_url).pttl(f"{keys.prefix}.{KEY}")

    assert 3_590_000 < ttl <= 3_600_000
