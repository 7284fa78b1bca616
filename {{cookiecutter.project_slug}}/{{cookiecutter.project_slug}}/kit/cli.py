"""``flask jobs``: list the registered jobs, queue one from a shell, read a job by
its id, print the OpenAPI document."""

import json

import click
from flask import Blueprint, current_app
from marshmallow import ValidationError

from . import job_ids, openapi, payloads, registry
from .backends import BACKEND_ERRORS
from .jobs_api import describe
from .queue import QueueUnavailable, UnknownJob, enqueue
from .redaction import redact
from .state import kit_state

bp = Blueprint("jobs_cli", __name__, cli_group="jobs")


@bp.cli.command("list")
def list_command() -> None:
    """List the registered jobs and their payload fields."""
    for job in registry.all_jobs().values():
        info = describe(job)
        click.echo(f"{job.name}  ({job.module})")
        if info["description"]:
            click.echo(f"    {info['description']}")
        for name, field in info["fields"].items():
            required = "required" if field["required"] else "optional"
            click.echo(f"    {name}: {field['type']}, {required}")


@bp.cli.command("openapi")
def openapi_command() -> None:
    """Print the jobs API's OpenAPI document (as served at /jobs/openapi.json)."""
    click.echo(json.dumps(openapi.document(current_app), indent=2, ensure_ascii=False))


@bp.cli.command("enqueue")
@click.argument("name")
@click.argument("payload", default="{}")
def enqueue_command(name: str, payload: str) -> None:
    """Queue the job NAME with a JSON PAYLOAD and print its id.

    Example: flask jobs enqueue jobModelo '{"nome": "João", "idade": 30}'
    """
    try:
        data = payloads.parse(payload)
    except payloads.Refused as exc:
        raise click.ClickException(f"PAYLOAD is refused ({exc.code}): {exc}") from exc
    if not isinstance(data, dict):
        raise click.ClickException("PAYLOAD must be a JSON object")
    try:
        click.echo(enqueue(name, data))
    except UnknownJob as exc:
        known = ", ".join(registry.all_jobs()) or "none"
        raise click.ClickException(f"no job is called {name!r} (known: {known})") from exc
    except ValidationError as exc:
        lines = [
            f"  {field}: {'; '.join(map(str, errs))}" for field, errs in _flatten(exc.messages)
        ]
        raise click.ClickException("invalid payload:\n" + "\n".join(lines)) from exc
    except QueueUnavailable as exc:
        raise click.ClickException(f"the queue is unreachable, nothing was queued: {exc}") from exc


@bp.cli.command("status")
@click.argument("job_id")
def status_command(job_id: str) -> None:
    """Print the job JOB_ID as JSON: its status, payload and result (redacted).

    Example: flask jobs status 3f1c2b9e-6d0a-4e8f-9b7c-1a2b3c4d5e6f
    """
    # Checked before any storage key is built from it (see job_ids.py).
    if not job_ids.is_job_id(job_id):
        raise click.ClickException(
            f"{job_ids.shown(job_id)} is not a job id: ids are UUIDs, as enqueue prints them"
        )
    try:
        record = kit_state().history.get(job_id)
    except BACKEND_ERRORS as exc:
        raise click.ClickException(f"the job store is unreachable: {exc}") from exc
    if record is None:
        raise click.ClickException(f"no job has the id {job_id}")
    hidden = current_app.config["MONITOR_REDACT_KEYS"]
    record["payload"] = redact(record.get("payload"), hidden)
    record["result"] = redact(record.get("result"), hidden)
    click.echo(json.dumps(record, indent=2, ensure_ascii=False, sort_keys=True, default=str))


def _flatten(messages: dict | list) -> list[tuple[str, list]]:
    if isinstance(messages, list):
        return [("_schema", messages)]
    return [(field, errs if isinstance(errs, list) else [errs]) for field, errs in messages.items()]
