"""testGreet: a small job with a person as payload, three retries and a timeout."""

import logging

from flask import current_app
from marshmallow import Schema, fields, validate

from acme_jobs.kit import job

log = logging.getLogger(__name__)


class Pessoa(Schema):
    nome = fields.String(
        required=True, validate=validate.Length(min=1, max=200, error="must not be empty")
    )
    idade = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=150))


@job("testGreet", schema=Pessoa, retries=3, retry_delay=5, timeout=60)
def greet(pessoa: dict) -> dict:
    """Greet a person and say whether they are an adult."""
    nome, idade = pessoa["nome"], pessoa["idade"]
    log.info("processing %s, %d years old", nome, idade)
    return {
        "greeting": f"Olá, {nome}!",
        "nome": nome,
        "idade": idade,
        "adult": idade >= 18,
        "processed_by": current_app.name,
    }
