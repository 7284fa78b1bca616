"""importarPessoas: a bulk import of people that reports its progress.

The second example job. It takes a list of ``Pessoa`` and works through it,
reporting progress as it goes, so the monitor shows a live progress bar
(with the rate and the time left) and the job's log lines as they are
written; an operator can cancel it from there. Try it::

    curl -X POST http://127.0.0.1:5000/jobs/importarPessoas \\
        -H 'Content-Type: application/json' \\
        -d '{"pessoas": [{"nome": "Ana", "idade": 31}, {"nome": "Rui", "idade": 12}]}'

``atraso`` (a delay per person, in seconds) stands in for the real work of
an import (a database write, a call to another service), so that progress
is visible on a first run.
"""

import logging
import time

from marshmallow import Schema, fields, validate

from ..kit import job, report

JOB_NAME = "importarPessoas"

log = logging.getLogger(__name__)


class PessoaImportada(Schema):
    """One person to import (this job's own schema, so it stands alone)."""

    nome = fields.String(required=True, validate=validate.Length(min=1, max=200))
    idade = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=150))


class Importacao(Schema):
    """The payload: the people to import, and the pretend cost of each one."""

    pessoas = fields.List(
        fields.Nested(PessoaImportada), required=True, validate=validate.Length(min=1, max=10_000)
    )
    atraso = fields.Float(load_default=0.2, validate=validate.Range(min=0, max=0.3))


@job(JOB_NAME, schema=Importacao, retries=1, retry_delay=10, timeout=3600)
def importar_pessoas(data: dict) -> dict:
    """Import a list of people, reporting progress after each one."""
    pessoas, atraso = data["pessoas"], data["atraso"]
    total = len(pessoas)
    log.info("importing %d people", total)
    report(0, total, message="starting")
    adults = 0
    for done, pessoa in enumerate(pessoas, start=1):
        time.sleep(atraso)  # the real work of importing one person goes here
        adults += pessoa["idade"] >= 18
        log.info("imported %s, %d years old", pessoa["nome"], pessoa["idade"])
        # Also where a cancel from the monitor stops the job (JobCancelled).
        report(done, total, message=f"imported {pessoa['nome']}")
    log.info("import done: %d people, %d adults", total, adults)
    return {"imported": total, "adults": adults}
