"""The OpenAPI document: valid, generated from the jobs, complete."""

import json
import sys
import uuid

import pytest
from openapi_spec_validator import validate

from acme_jobs import create_app
from acme_jobs.kit import registry

# A job module as a user would add it: a schema with constraints.
INVOICE_JOB = '''
from marshmallow import Schema, fields, validate

from acme_jobs.kit import job


class Invoice(Schema):
    customer = fields.Email(required=True)
    amount = fields.Decimal(required=True, as_string=True, validate=validate.Range(min=0))
    lines = fields.List(fields.String(validate=validate.Length(max=80)), load_default=list)


@job("{name}", schema=Invoice)
def send_invoice(data: dict) -> dict:
    """Send an invoice by e-mail."""
    return {{"sent": True}}
'''


@pytest.fixture
def document(client) -> dict:
    return client.get("/jobs/openapi.json").get_json()


@pytest.fixture
def added_job(tmp_path, monkeypatch):
    """A jobs package with one new module in it, and an app whose jobs package it is.

    The job is taken out of the kit's registry afterwards, so other tests
    see only the test-only jobs.
    """
    package = f"extra_jobs_{uuid.uuid4().hex[:8]}"
    name = f"testSendInvoice{uuid.uuid4().hex[:6]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "send_invoice.py").write_text(INVOICE_JOB.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    app = create_app(
        {
            "TESTING": True,
            "REDIS_URL": None,
            "SQLITE_PATH": str(tmp_path / "queue.sqlite3"),
            "JOBS_PACKAGE": package,
        }
    )
    yield app, name
    registry._registry.pop(name, None)
    sys.modules.pop(f"{package}.send_invoice", None)
    sys.modules.pop(package, None)


def schema_of(document: dict, ref_holder: dict) -> dict:
    """The component a ``{"$ref": "#/components/schemas/X"}`` points at."""
    return document["components"]["schemas"][ref_holder["$ref"].rsplit("/", 1)[1]]


def request_schema(document: dict, job_name: str) -> dict:
    body = document["paths"][f"/jobs/{job_name}"]["post"]["requestBody"]
    return schema_of(document, body["content"]["application/json"]["schema"])


def test_the_document_is_valid_openapi_3_1(document):
    validate(document)

    assert document["openapi"] == "3.1.0"


def test_every_registered_job_has_a_dispatch_path(document):
    dispatch_paths = {
        path for path, operations in document["paths"].items() if "post" in operations
    }

    assert dispatch_paths == {f"/jobs/{name}" for name in registry.all_jobs()}


def test_a_jobs_payload_schema_keeps_its_constraints(document):
    schema = request_schema(document, "testGreet")

    assert sorted(schema["required"]) == ["idade", "nome"]
    assert schema["properties"]["nome"] == {"type": "string", "minLength": 1, "maxLength": 200}
    assert schema["properties"]["idade"] == {"type": "integer", "minimum": 0, "maximum": 150}
    assert schema["additionalProperties"] is False  # marshmallow refuses unknown fields


def test_nested_schemas_become_components(document):
    pessoas = request_schema(document, "testImport")["properties"]["pessoas"]

    assert pessoas["minItems"] == 1
    assert schema_of(document, pessoas["items"])["required"] == ["idade", "nome"]


def test_a_periodic_job_takes_an_empty_object(document):
    schema = request_schema(document, "testPeriodic")

    assert schema["properties"] == {}
    assert schema["additionalProperties"] is False


def test_a_job_module_added_to_the_app_is_described_with_no_other_edit(added_job):
    app, name = added_job
    document = app.test_client().get("/jobs/openapi.json").get_json()

    validate(document)
    operation = document["paths"][f"/jobs/{name}"]["post"]
    assert operation["summary"] == "Send an invoice by e-mail."
    schema = request_schema(document, name)
    assert schema["properties"]["customer"]["format"] == "email"
    assert schema["properties"]["lines"]["items"]["maxLength"] == 80


def test_dispatch_describes_every_answer_it_can_give(document):
    responses = document["paths"]["/jobs/testGreet"]["post"]["responses"]

    assert set(responses) == {
        "200",
        "202",
        "400",
        "401",
        "403",
        "404",
        "413",
        "415",
        "422",
        "429",
        "503",
    }


def test_a_queued_job_comes_with_its_location_and_a_link_to_its_status(document):
    accepted = document["paths"]["/jobs/testGreet"]["post"]["responses"]["202"]

    assert accepted["headers"]["Location"] == {"$ref": "#/components/headers/Location"}
    assert accepted["links"]["GetJob"]["operationId"] == "getJob"
    assert accepted["links"]["GetJob"]["parameters"] == {"job_id": "$response.body#/id"}


def test_the_status_and_list_endpoints_are_described(document):
    status = document["paths"]["/jobs/{job_id}"]["get"]
    listing = document["paths"]["/jobs"]["get"]

    assert status["operationId"] == "getJob"
    assert {"200", "404", "503"} <= set(status["responses"])
    assert "200" in listing["responses"]


def test_dispatch_needs_a_bearer_key_and_reading_works_without(document):
    scheme = document["components"]["securitySchemes"]["bearerAuth"]

    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert document["paths"]["/jobs/testGreet"]["post"]["security"] == [{"bearerAuth": []}]
    assert {} in document["paths"]["/jobs/{job_id}"]["get"]["security"]


def test_dispatch_takes_an_optional_idempotency_key_header(document):
    parameter = document["components"]["parameters"]["IdempotencyKey"]

    assert parameter["in"] == "header"
    assert parameter["name"] == "Idempotency-Key"
    assert parameter["required"] is False


@pytest.mark.parametrize(
    ("response", "header"),
    [("Unauthorized", "WWW-Authenticate"), ("TooManyRequests", "Retry-After")],
)
def test_refusals_declare_the_headers_they_carry(document, response, header):
    declared = document["components"]["responses"][response]["headers"][header]

    assert declared["required"] is True


def test_the_413_response_states_the_apps_body_limit(app, document):
    description = document["components"]["responses"]["PayloadTooLarge"]["description"]

    assert str(app.config["MAX_CONTENT_LENGTH"]) in description


def test_the_document_is_the_same_on_every_request(client, document):
    assert client.get("/jobs/openapi.json").get_json() == document


def test_flask_jobs_openapi_prints_the_served_document(app, document):
    result = app.test_cli_runner().invoke(args=["jobs", "openapi"])

    assert result.exit_code == 0
    assert json.loads(result.output) == document
