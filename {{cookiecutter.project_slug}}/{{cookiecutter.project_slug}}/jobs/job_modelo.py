"""jobModelo: the example job, a port of the Go kit's ``jobModelo``.

It takes a ``Pessoa`` (a person: ``nome`` and ``idade``) and returns a
greeting. Copy this module to add a job of your own: a name, a schema and a
function are all a job needs.
"""

import logging

from flask import current_app
from marshmallow import Schema, fields, validate

from ..kit import enqueue, job

JOB_NAME = "jobModelo"

log = logging.getLogger(__name__)


class Pessoa(Schema):
    """The payload: the same fields as the Go kit's ``Pessoa`` struct."""

    nome = fields.String(
        required=True, validate=validate.Length(min=1, max=200, error="must not be empty")
    )
    idade = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=150))


@job(JOB_NAME, schema=Pessoa, queue="default", retries=3, retry_delay=5, timeout=60)
def job_modelo(pessoa: dict) -> dict:
    """Greet a person and say whether they are an adult."""
    nome, idade = pessoa["nome"], pessoa["idade"]
    log.info("processing %s, %d years old", nome, idade)
    # Jobs run inside an app context, so config and extensions just work.
    app_name = current_app.name
    return {
        "greeting": f"Olá, {nome}!",
        "nome": nome,
        "idade": idade,
        "adult": idade >= 18,
        "processed_by": app_name,
    }


def enqueue_job_modelo(nome: str, idade: int) -> str:
    """Queue ``jobModelo`` from your own code and return the job id.

    It validates like ``POST /jobs/jobModelo`` (raising marshmallow's
    ``ValidationError``) and needs an app context: a request, a CLI command,
    or ``with app.app_context():``.
    """
    return enqueue(JOB_NAME, {"nome": nome, "idade": idade})
