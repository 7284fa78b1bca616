"""testImport: a long job that reports its progress and can be cancelled."""

import logging
import time

from marshmallow import Schema, fields, validate

from acme_jobs.kit import job, report

from .greet import Pessoa

log = logging.getLogger(__name__)


class Import(Schema):
    pessoas = fields.List(
        fields.Nested(Pessoa), required=True, validate=validate.Length(min=1, max=10_000)
    )
    atraso = fields.Float(load_default=0.2, validate=validate.Range(min=0, max=0.3))


@job("testImport", schema=Import, retries=1, retry_delay=10, timeout=3600)
def bulk_import(data: dict) -> dict:
    """Import people one by one, reporting progress after each."""
    pessoas, atraso = data["pessoas"], data["atraso"]
    total = len(pessoas)
    log.info("importing %d people", total)
    report(0, total, message="starting")
    adults = 0
    for done, pessoa in enumerate(pessoas, start=1):
        time.sleep(atraso)
        adults += pessoa["idade"] >= 18
        log.info("imported %s, %d years old", pessoa["nome"], pessoa["idade"])
        report(done, total, message=f"imported {pessoa['nome']}")
    log.info("import done: %d people, %d adults", total, adults)
    return {"imported": total, "adults": adults}
