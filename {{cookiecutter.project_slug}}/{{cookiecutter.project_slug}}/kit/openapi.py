"""The jobs API as an OpenAPI 3.1 document, for client generators, gateways and fuzzers.

Served at ``GET /jobs/openapi.json`` and printed by ``flask jobs openapi``.
It is generated from the registry each time, by apispec and its marshmallow
plugin: every job's payload schema becomes the request body of its own
``POST /jobs/<name>``, with its constraints (required fields, lengths,
ranges, unknown fields refused), so a new job module shows up here with no
other edit. The response bodies are marshmallow schemas too (below),
converted the same way: nothing here writes JSON Schema by hand.
"""

import copy
import decimal
import importlib.metadata
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify
from marshmallow import INCLUDE, Schema, fields

from . import job_ids, registry

bp = Blueprint("jobs_openapi", __name__)

OPENAPI_VERSION = "3.1.0"
BEARER = "bearerAuth"
KEY_REQUIRED: list[dict[str, list]] = [{BEARER: []}]
# An empty requirement makes the key optional: reading works without one,
# with fewer fields (see the status view).
KEY_OPTIONAL: list[dict[str, list]] = [{}, {BEARER: []}]


class Open(Schema):
    """A response body: clients must accept fields added in later versions."""

    class Meta:
        unknown = INCLUDE


class ApiError(Open):
    """Every error: a stable code to match on, and a message for people."""

    error = fields.String(required=True, metadata={"description": "A stable code, snake_case."})
    message = fields.String(required=True)
    field_errors = fields.Dict(
        data_key="fields",
        metadata={"description": "422: what is wrong with each payload field."},
    )
    jobs = fields.List(fields.String(), metadata={"description": "404: the known job names."})


class Accepted(Open):
    """A queued job (202), or the job already queued for the same request (200)."""

    id = fields.String(required=True)
    name = fields.String(required=True)
    status = fields.String(
        required=True, metadata={"description": "`queued` when new; `scheduled` when delayed."}
    )
    eta = fields.String(
        metadata={"format": "date-time", "description": "`scheduled`: when it runs (UTC)."}
    )
    status_url = fields.String(required=True, metadata={"format": "uri"})
    duplicate = fields.Boolean(metadata={"description": "True on a 200: nothing new was queued."})


class JobRecord(Open):
    """A job's record. Without a key allowed to read the job: no payload,
    result or traceback, only what says how it is going."""

    id = fields.String(required=True)
    name = fields.String(required=True)
    status = fields.String(required=True)
    attempt = fields.Integer(allow_none=True)
    enqueued_at = fields.Float(allow_none=True, metadata={"description": "Unix time."})
    started_at = fields.Float(allow_none=True)
    finished_at = fields.Float(allow_none=True)
    progress = fields.Dict(allow_none=True, metadata={"description": "What the job reported."})
    error = fields.Raw(allow_none=True, metadata={"description": "The last failure."})
    payload = fields.Raw(metadata={"description": "Redacted as in the monitor."})
    result = fields.Raw(metadata={"description": "Redacted as in the monitor."})


class JobInfo(Open):
    """A registered job, described for people (the schemas are in this document)."""

    name = fields.String(required=True)
    description = fields.String()
    payload_fields = fields.Dict(data_key="fields")
    retries = fields.Integer()
    timeout = fields.Float(allow_none=True)
    unique_for = fields.Float(allow_none=True)
    queue = fields.String(metadata={"description": "The named queue its jobs wait in."})
    schedule = fields.Dict(allow_none=True, metadata={"description": "Periodic jobs: when."})


class JobList(Open):
    jobs = fields.List(fields.Nested(JobInfo), required=True)


RETRY_AFTER = {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}
# Reusable responses: status -> (component name, description, headers).
# Each operation lists those it can give.
ERRORS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "400": (
        "BadRequest",
        "The body is not JSON, not a JSON object, nests objects and arrays over "
        "32 deep (`json_too_deep`) or holds a lone surrogate (`invalid_unicode`).",
        {},
    ),
    "401": (
        "Unauthorized",
        "No API key, or an unknown one: send `Authorization: Bearer <key>`.",
        {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
    ),
    "403": (
        "Forbidden",
        "The API key may not dispatch or read this job, or a browser sent the "
        "request from another site's page (`cross_site_request`).",
        {},
    ),
    "404": ("NotFound", "No job has this name, or this id.", {}),
    "413": ("PayloadTooLarge", "The body is over {limit} bytes (`MAX_CONTENT_LENGTH`).", {}),
    "415": ("UnsupportedMediaType", "The body is not in a media type the API reads.", {}),
    "422": (
        "InvalidPayload",
        "The payload does not match the job's schema (`fields` says how), the "
        "`Idempotency-Key` was already used with another payload, or `delay` or "
        "`at` cannot schedule the job (`fields` says which).",
        {},
    ),
    "429": (
        "TooManyRequests",
        "Too many failed attempts with bad keys: wait `Retry-After` seconds.",
        {"Retry-After": {**RETRY_AFTER, "required": True}},
    ),
    "503": (
        "Unavailable",
        "The queue or the job store is unreachable; nothing was queued. Try again. "
        "With `not_replicated` (REDIS_WAIT_REPLICAS) the job was queued but not yet "
        "copied to the replicas: send it again with the same `Idempotency-Key`.",
        {"Retry-After": RETRY_AFTER},
    ),
}

LOCATION = {
    "description": "Where to follow the job: its `GET /jobs/{job_id}`.",
    "schema": {"type": "string"},
    "required": True,
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "description": (
        "A key of your choice, unique per operation (the IETF httpapi "
        "Idempotency-Key draft). Sent again with the same payload within "
        "the window, it answers 200 with the first job; with another "
        "payload, 422."
    ),
    # What the kit takes bare (idempotency.BARE); a quoted string works too.
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": r"^[\x21\x23-\x2b\x2d-\x5b\x5d-\x7e]+$",
    },
    "required": False,
}


def schedule_parameters(max_delay: float) -> dict[str, dict[str, Any]]:
    """The query parameters that delay a dispatch (see delays.py)."""
    return {
        "Delay": {
            "name": "delay",
            "in": "query",
            "description": "Run the job this many seconds from now instead of at once.",
            "schema": {"type": "number", "minimum": 0, "maximum": max_delay},
        },
        "At": {
            "name": "at",
            "in": "query",
            "description": (
                "Run the job at this time: ISO 8601 with its UTC offset, not in the "
                f"past, at most {max_delay:g} seconds ahead. Not with `delay`."
            ),
            "schema": {"type": "string", "format": "date-time"},
        },
    }


def document(app: Flask | None = None) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s jobs API, as a dict ready for JSON."""
    app = app or current_app
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title=f"{app.config.get('APP_NAME') or app.name}: jobs API",
        version=_version(app),
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={
            "description": (
                "Queue background jobs and follow them. `POST /jobs/<name>` answers "
                "202 Accepted: the job is queued, not done; its `status_url` says when it is."
            )
        },
    )
    plugin.converter.add_attribute_function(decimal_numbers)
    spec.components.security_scheme(
        BEARER,
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from the app's `JOBS_API_KEYS`.",
        },
    )
    # apispec resolves references in place: it gets copies of the constants.
    spec.components.header("Location", copy.deepcopy(LOCATION))
    spec.components.parameter("IdempotencyKey", "header", copy.deepcopy(IDEMPOTENCY_KEY))
    for name, parameter in schedule_parameters(float(app.config["MAX_SCHEDULE_DELAY"])).items():
        spec.components.parameter(name, "query", parameter)
    limit = app.config["MAX_CONTENT_LENGTH"]  # the kit always sets one
    for name, description, headers in ERRORS.values():
        response = {
            "description": description.format(limit=limit),
            "content": {"application/json": {"schema": ApiError}},
        }
        spec.components.response(name, {**response, "headers": copy.deepcopy(headers)})

    spec.path(path="/jobs", operations={"get": _list_operation()})
    spec.path(path="/jobs/{job_id}", operations={"get": _status_operation()})
    for job in registry.all_jobs().values():
        spec.path(path=f"/jobs/{job.name}", operations={"post": _dispatch_operation(job)})
    return spec.to_dict()


NUMERIC_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "default")


def decimal_numbers(converter: Any, field: fields.Field, ret: dict, **kwargs: Any) -> dict:
    """A ``Decimal`` field's bounds and default, as JSON numbers.

    apispec writes them as the field dumps them: ``Decimal`` objects (which
    Flask's JSON turns into strings) or, with ``as_string``, strings. JSON
    Schema wants numbers there, and the payload takes numbers.
    """
    if not isinstance(field, fields.Decimal):
        return {}
    numbers = {}
    for key in NUMERIC_KEYWORDS:
        try:
            number = decimal.Decimal(ret[key])
        except (KeyError, TypeError, ValueError, decimal.InvalidOperation):
            continue
        if number.is_finite():
            integral = number == number.to_integral_value()
            numbers[key] = int(number) if integral else float(number)
    return numbers


def _responses(*statuses: str) -> dict[str, str]:
    return {status: ERRORS[status][0] for status in statuses}


def _list_operation() -> dict[str, Any]:
    return {
        "operationId": "listJobs",
        "summary": "The registered jobs and the fields each payload takes.",
        "tags": ["jobs"],
        "security": KEY_OPTIONAL,
        "responses": {
            "200": {
                "description": "The jobs, sorted by name.",
                "content": {"application/json": {"schema": JobList}},
            },
            **_responses("401", "429"),
        },
    }


def _status_operation() -> dict[str, Any]:
    return {
        "operationId": "getJob",
        "summary": "A job's status, by its id.",
        "tags": ["jobs"],
        "security": KEY_OPTIONAL,
        "parameters": [
            {
                "name": "job_id",
                "in": "path",
                "required": True,
                # The kit's ids are UUIDs (job_ids.py): anything else is a 404.
                "schema": {"type": "string", "pattern": f"^{job_ids.PATTERN}$"},
            }
        ],
        "responses": {
            "200": {
                "description": "The job's record.",
                "content": {"application/json": {"schema": JobRecord}},
            },
            **_responses("401", "403", "404", "429", "503"),
        },
    }


def _accepted(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": Accepted}},
        "headers": {"Location": "Location"},
        # Tells clients (and fuzzers) where the id in this body leads.
        "links": {
            "GetJob": {
                "operationId": "getJob",
                "parameters": {"job_id": "$response.body#/id"},
                "description": "The job's status: `GET /jobs/{job_id}` with this `id`.",
            }
        },
    }


def _dispatch_operation(job: registry.Job) -> dict[str, Any]:
    return {
        "operationId": f"dispatch_{job.name}",
        "summary": job.description or f"Queue {job.name}.",
        "tags": ["jobs"],
        "security": KEY_REQUIRED,
        "parameters": [
            "IdempotencyKey",
            "Delay",
            "At",
            {
                "name": "queue",
                "in": "query",
                "description": "Send it to another named queue the job allows.",
                "schema": {"type": "string", "enum": [job.queue, *job.queues]},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": job.schema}},
        },
        "responses": {
            "202": _accepted("Queued, or scheduled: follow it at `status_url`."),
            "200": _accepted(
                "Already queued within its window (a unique job, or the same "
                "`Idempotency-Key` and payload): that job, `duplicate` true."
            ),
            **_responses("400", "401", "403", "404", "413", "415", "422", "429", "503"),
        },
    }


def _version(app: Flask) -> str:
    """The app's installed version; "0" when it runs from a checkout."""
    try:
        return importlib.metadata.version(app.import_name)
    except importlib.metadata.PackageNotFoundError:
        return "0"


@bp.get("/jobs/openapi.json")
def openapi_json() -> Response:
    return jsonify(document())
