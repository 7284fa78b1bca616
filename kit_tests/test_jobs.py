"""The job registry: finding jobs, validating payloads, retries."""

import pytest
from marshmallow import Schema, ValidationError, fields, post_load

from acme_jobs import create_app
from acme_jobs.kit import registry
from acme_jobs.kit.queue import UnknownJob, enqueue
from kit_jobs.greet import Pessoa, greet


def test_discovery_imports_every_module_of_the_jobs_package():
    found = registry.discover("kit_jobs")

    assert found["testGreet"].func is greet
    assert found["testGreet"].schema is Pessoa
    assert found["testPeriodic"].schema is registry.NoPayload


def test_discovery_imports_extra_modules_too(job_modules_for_one_test):
    found = registry.discover("kit_jobs", ["control_jobs"])

    assert "testChecksCancel" in found


def test_the_app_discovers_the_jobs_package_it_is_given(app):
    assert app.config["JOBS_PACKAGE"] == "kit_jobs"
    assert set(app.extensions["jobkit"].tasks) >= {"testGreet", "testImport", "testPeriodic"}


def test_enqueue_from_code_returns_the_job_id(app):
    with app.app_context():
        job_id = enqueue("testGreet", {"nome": "Ana", "idade": 40})
        record = app.extensions["jobkit"].history.get(job_id)

    assert record["status"] == "complete"
    assert record["result"]["nome"] == "Ana"


def test_enqueue_from_code_validates_like_the_api(app):
    with app.app_context(), pytest.raises(ValidationError) as error:
        enqueue("testGreet", {"nome": "", "idade": 40})

    assert "nome" in error.value.messages


def test_enqueue_rejects_unknown_jobs(app):
    with app.app_context(), pytest.raises(UnknownJob):
        enqueue("noSuchJob", {})


def payload_job(schema: type[Schema]) -> registry.Job:
    """A job of ``schema``, not registered: only its load and dump are used."""
    return registry.Job("testPayload", schema, lambda data: data)


def test_a_flat_schema_of_json_values_is_queued_as_loaded_without_a_dump():
    job = payload_job(Pessoa)
    loaded = job.load({"nome": "Ana", "idade": 40})

    assert job.loads_json
    assert job.dump(loaded) is loaded


class Renamed(Schema):
    nome = fields.String(data_key="name")


class Dated(Schema):
    when = fields.Date()


class Defaulted(Schema):
    nome = fields.String()
    idade = fields.Integer(dump_default=0)


class Built(Schema):
    nome = fields.String()

    @post_load
    def build(self, data: dict, **kwargs) -> dict:
        return {"person": data}


class AsText(Schema):
    price = fields.Float(as_string=True)


@pytest.mark.parametrize(
    ("schema", "payload", "queued"),
    [
        (Renamed, {"name": "Ana"}, {"name": "Ana"}),
        (Dated, {"when": "2026-01-31"}, {"when": "2026-01-31"}),
        (Defaulted, {"nome": "Ana"}, {"nome": "Ana", "idade": 0}),
        (Built, {"nome": "Ana"}, {}),
        (AsText, {"price": 1.5}, {"price": "1.5"}),
    ],
    ids=["data_key", "date", "dump_default", "post_load", "as_string"],
)
def test_a_schema_whose_dump_differs_from_its_load_is_still_dumped(schema, payload, queued):
    job = payload_job(schema)
    loaded = job.load(payload)

    assert not job.loads_json
    assert job.dump(loaded) == queued


def test_two_modules_cannot_claim_the_same_job_name():
    def impostor(data):
        return data

    impostor.__module__ = "somewhere.else"
    with pytest.raises(ValueError, match="must be unique"):
        registry.job("testGreet", schema=Pessoa)(impostor)


@pytest.fixture
def flaky_jobs(tmp_path):
    """Register two extra jobs that fail, then remove them again."""
    calls = {"retryable": 0, "permanent": 0}

    @registry.job("testRetryable", schema=Pessoa, retries=2)
    def retryable(data):
        calls["retryable"] += 1
        raise RuntimeError("temporary outage")

    @registry.job("testPermanent", schema=Pessoa, retries=2)
    def permanent(data):
        calls["permanent"] += 1
        raise registry.PermanentError("this person does not exist")

    app = create_app(
        {
            "TESTING": True,
            "QUEUE_IMMEDIATE": True,
            "REDIS_URL": None,
            "SQLITE_PATH": str(tmp_path / "q.db"),
        }
    )
    yield app, calls
    del registry._registry["testRetryable"], registry._registry["testPermanent"]


def test_a_failing_job_is_retried_then_recorded_as_failed(flaky_jobs):
    app, calls = flaky_jobs
    with app.app_context():
        job_id = enqueue("testRetryable", {"nome": "Ana", "idade": 1})
        record = app.extensions["jobkit"].history.get(job_id)

    assert calls["retryable"] == 3
    assert record["status"] == "failed"
    assert record["error"]["type"] == "RuntimeError"
    assert "temporary outage" in record["error"]["traceback"]


def test_a_permanent_error_is_not_retried(flaky_jobs):
    app, calls = flaky_jobs
    with app.app_context():
        job_id = enqueue("testPermanent", {"nome": "Ana", "idade": 1})
        record = app.extensions["jobkit"].history.get(job_id)

    assert calls["permanent"] == 1
    assert record["status"] == "failed"
    assert record["error"]["message"] == "this person does not exist"
